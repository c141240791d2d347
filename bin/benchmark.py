"""Measures training speed, start-up and memory: FIXED versus ESAPN, ml-20m.

  python bin/benchmark.py [--data_dir=../shared/data/ml-latest-small.zip]
                          [--skip_20m] [--noe2e] [--output=benchmark.json]

What is measured: `esapn_tf/benchmark/suite.py`. Prints a table and writes
the figures to --output as JSON, among them `e2e_seconds`: ESAPN's and
FIXED's `bin/train.py` runs on ml-latest-small binary, process start to
results.json, with an empty XLA compilation cache (cold) and again (warm).
"""

import os
import sys

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, _REPO)

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

from esapn_tf import errors  # noqa: E402

flags.DEFINE_string(
    'data_dir', os.path.join(_REPO, '..', 'shared', 'data',
                             'ml-latest-small.zip'),
    'GroupLens ml-latest-small archive or folder.')
flags.DEFINE_integer('batch_size', 500, 'Examples per step.')
flags.DEFINE_integer('window_steps', 20, 'Steps per timed window.')
flags.DEFINE_integer(
    'windows', 15,
    'Timed windows (the median is reported). FIXED and ESAPN windows are '
    'interleaved; on this shared 2-core machine single windows vary by '
    '+-20%, so the median needs many.')
flags.DEFINE_integer('warmup_steps', 5, 'Untimed steps after compilation.')
flags.DEFINE_bool('e2e', True,
                  'Time bin/train.py end to end (ESAPN and FIXED, cold and '
                  'warm XLA compilation cache: four child processes).')
flags.DEFINE_list('num_ids', ['10000', '1000000', '10000000'],
                  'Ids per side at which the ESAPN step is timed (same '
                  'batch, pooled storage under a 0.2 budget: about '
                  'num_ids * 0.3 KB per side); empty: skip.')
flags.DEFINE_bool('ten_million_ids', False,
                  'Also train ESAPN (pooled, budget 0.2) and try FIXED-128 '
                  'on 12M ratings over 10M users and 10M items, each in a '
                  'child process (about 25 minutes and 11 GiB here; FIXED '
                  'under a 20 GiB address-space limit).')
flags.DEFINE_bool('skip_20m', False, 'Leave out the ml-20m-scale parts.')
flags.DEFINE_string('cache_dir',
                    os.path.join(os.path.expanduser('~'), '.cache',
                                 'esapn_tf'),
                    'Where the synthetic ml-20m-size ratings.csv is kept.')
flags.DEFINE_string('output', 'benchmark.json', 'JSON file of the figures.')
FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  from esapn_tf.benchmark import suite  # pylint: disable=g-import-not-at-top
  if not all(n.isdigit() and int(n) > 0 for n in FLAGS.num_ids):
    print(f'error: --num_ids={",".join(FLAGS.num_ids)}: pass positive '
          'integers, e.g. --num_ids=10000,1000000', file=sys.stderr)
    sys.exit(2)
  options = suite.BenchmarkOptions(
      data_dir=FLAGS.data_dir, batch_size=FLAGS.batch_size,
      window_steps=FLAGS.window_steps, windows=FLAGS.windows,
      warmup_steps=FLAGS.warmup_steps, e2e=FLAGS.e2e,
      skip_20m=FLAGS.skip_20m,
      num_ids=tuple(int(n) for n in FLAGS.num_ids),
      ten_million_ids=FLAGS.ten_million_ids, cache_dir=FLAGS.cache_dir,
      output=FLAGS.output)
  try:
    report = suite.run_benchmark(options)
  except errors.UserInputError as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)
  print(suite.table(report))
  print(f'wrote {FLAGS.output}')


if __name__ == '__main__':
  app.run(main)
