"""Compares search methods over tasks and seeds; see README.md.

  python bin/compare.py --flagfile=configs/compare-ml-latest-small.flags \
      --data_dir=../shared/data/ml-latest-small.zip --workdir=runs/compare

Every bin/train.py flag sets the configuration all cells share (they are
defined once, in train.py, imported here); --task, --seed and --method are
set per cell from --tasks, --seeds and --methods. Kept short on purpose:
flags -> `runner.run_comparison` -> summary. Bad input prints one `error:`
line and exits 2; Ctrl-C exits 130 (rerunning continues); exit 1 when every
cell failed.
"""

import logging
import os
import sys

import train  # bin/ is sys.path[0]: defines train.py's flags

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

from esapn_tf import config as config_lib  # noqa: E402
from esapn_tf import errors  # noqa: E402

flags.DEFINE_list('methods', list(config_lib.METHODS),
                  'Methods to compare, in the order of the report rows '
                  '(pruned runs after esapn, whose memory it matches).')
flags.DEFINE_list('tasks', list(config_lib.TASKS), 'Tasks to compare.')
flags.DEFINE_integer('seeds', 3, 'Number of seeds: 0..n-1.')
flags.DEFINE_bool('rerun', False,
                  'Rerun cells that already finished with the same '
                  'configuration (by default they are reused).')
flags.DEFINE_bool('isolate_runs', True,
                  'Run each cell in a process of its own (a crash fails '
                  'only its cell; costs a TensorFlow import per cell). '
                  '--noisolate_runs runs them all in this process.')
flags.DEFINE_bool('verbose_runs', False,
                  "Print each run's own progress lines and results.")
FLAGS = flags.FLAGS
FLAGS.set_default('workdir', 'runs/compare')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  # TensorBoard's event reader logs every file it reads at INFO, and
  # TensorFlow's checkpoint saver every save.
  logging.getLogger('tensorboard').setLevel(logging.WARNING)
  train.start_tensorflow()
  from esapn_tf.comparison import report  # pylint: disable=g-import-not-at-top
  from esapn_tf.comparison import isolated  # pylint: disable=g-import-not-at-top
  from esapn_tf.comparison import cells as cells_lib  # pylint: disable=g-import-not-at-top
  from esapn_tf.comparison import runner  # pylint: disable=g-import-not-at-top
  try:
    for name in ('export_dir', 'restart'):
      if FLAGS[name].present:
        raise errors.UserInputError(
            f'--{name} is a bin/train.py flag that compare does not take '
            '(finished cells are reused; --rerun runs them again)')
    for name, source in (('task', 'tasks'), ('seed', 'seeds'),
                         ('method', 'methods')):
      if FLAGS[name].present:
        print(f'note: --{name} is set per cell from --{source}; ignored',
              file=sys.stderr)
    methods = cells_lib.parse_names('methods', FLAGS.methods,
                                    config_lib.METHODS)
    tasks = cells_lib.parse_names('tasks', FLAGS.tasks, config_lib.TASKS)
    if FLAGS.seeds < 1:
      raise errors.UserInputError(
          f'--seeds={FLAGS.seeds} is invalid: give the number of seeds '
          '(>= 1); seeds 0..n-1 are run')
    cfg = train.build_config()
    runner.check_data(cfg)
    cells, meta = runner.run_comparison(
        cfg, FLAGS.workdir, methods, tasks, FLAGS.seeds, rerun=FLAGS.rerun,
        verbose_runs=FLAGS.verbose_runs,
        run_fn=isolated.run_in_subprocess if FLAGS.isolate_runs else None)
  except errors.UserInputError as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)
  except (errors.RunInterrupted, KeyboardInterrupt) as e:
    report_path = os.path.join(FLAGS.workdir, 'comparison.md')
    message = str(e) or 'Ctrl-C'
    if 'Run the same command again' not in message:
      message += '; rerun the same command to continue'
    if os.path.exists(report_path):
      message += f' ({report_path} shows the cells done so far)'
    print(f'interrupted: {message}', file=sys.stderr)
    sys.exit(130)
  print('\n' + report.summary_text(cells, meta, FLAGS.workdir), flush=True)
  if not any(c.finished for c in cells):
    print('error: every cell failed (see the footnotes above)',
          file=sys.stderr)
    sys.exit(1)


if __name__ == '__main__':
  app.run(main, flags_parser=train.parse_flags)
