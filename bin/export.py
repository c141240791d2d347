"""Exports a trained run as a compact SavedModel for TensorFlow Serving.

  python bin/export.py --workdir=runs/ml-latest-small-binary \
      --export_dir=runs/exports/esapn

Writes `<export_dir>/<next version>/` (SavedModel, warm-up requests,
export_report.json); see README.md, "Serving with TensorFlow Serving".
Bad input prints one line starting with 'error:' and exits with status 2.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

from esapn_tf import errors  # noqa: E402
from esapn_tf import startup  # noqa: E402

flags.DEFINE_string('workdir', None, 'A finished bin/train.py run.')
flags.DEFINE_string('export_dir', None,
                    'Model base folder; the export goes to <export_dir>/'
                    '<next integer version>/.')
flags.DEFINE_string('model_name', 'esapn',
                    'Model name in the warm-up requests (TF Serving '
                    '--model_name).')
flags.DEFINE_string('reference_dir', '',
                    'If set, also keep the FIXED-128 reference export there '
                    '(<reference_dir>/<version>/), e.g. to compare latency.')
flags.mark_flags_as_required(['workdir', 'export_dir'])
FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  startup.import_tensorflow(
      FLAGS.verbosity if FLAGS['verbosity'].present else None)
  from esapn_tf.serving import export  # pylint: disable=g-import-not-at-top
  try:
    result = export.export_run(FLAGS.workdir, FLAGS.export_dir,
                               model_name=FLAGS.model_name,
                               reference_dir=FLAGS.reference_dir or None)
  except errors.UserInputError as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)
  print(export.summary_text(result), flush=True)


if __name__ == '__main__':
  app.run(main)
