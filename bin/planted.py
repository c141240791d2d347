"""Where each method puts its memory on the planted stream (issue 11).

  python bin/planted.py [--item_budget=0.2] [--seed=0]

Prints a Markdown table (`esapn_tf/comparison/planted.py`).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

from esapn_tf import startup  # noqa: E402

flags.DEFINE_float('item_budget', 0.2, "ESAPN's item memory budget.")
flags.DEFINE_integer('seed', 0, 'Seed of the stream, split and runs.')
FLAGS = flags.FLAGS


def main(argv):
  del argv
  if not 0.0 < FLAGS.item_budget <= 1.0:
    print(f'error: --item_budget={FLAGS.item_budget} must lie in (0, 1]',
          file=sys.stderr)
    sys.exit(2)
  startup.import_tensorflow(
      FLAGS.verbosity if FLAGS['verbosity'].present else None, agents=True)
  from esapn_tf.comparison import planted  # pylint: disable=g-import-not-at-top
  print(planted.table(planted.run_planted(FLAGS.item_budget, FLAGS.seed)))


if __name__ == '__main__':
  app.run(main)
