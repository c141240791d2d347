r"""Runs a parameter-server training on a cluster of processes on this machine.

  python bin/local_cluster.py --workers=2 --ps=2 -- \
      --flagfile=configs/ml-latest-small-binary.flags \
      --data_dir=../shared/data/ml-latest-small.zip --workdir=runs/cluster

Everything after `--` goes to bin/train.py, which runs as the chief with
`--distribution=parameter_server`; each worker and ps task runs
bin/cluster_task.py on a free localhost port, its output in
`<log_dir>/<type>-<index>.log` (--log_dir; default: a new temporary
folder). The run stops every task at its end, on
Ctrl-C, or when a task dies (one line names it; the chief writes a
checkpoint, and the same command resumes). Exits with the chief's status
(1 when a task died, 130 after Ctrl-C). See esapn_tf/distribute/.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

from esapn_tf import errors  # noqa: E402
from esapn_tf.distribute import local_cluster  # noqa: E402

flags.DEFINE_integer('workers', 2, 'Worker tasks (>= 1): they run the steps.')
flags.DEFINE_integer('ps', 2, 'Parameter-server tasks (>= 1): they hold '
                     'the variables, the tables sharded over them.')
flags.DEFINE_float('stop_timeout_seconds', 30.0,
                   'Seconds a process may take to stop (the chief writes a '
                   'checkpoint) before it is killed.')
FLAGS = flags.FLAGS
# --log_dir is absl's own flag ("directory to write logfiles into"): here the
# folder of the task logs; '' (default): a new temporary folder, printed in
# the first line.


def main(argv):
  try:
    code = local_cluster.run_local_cluster(
        FLAGS.workers, FLAGS.ps, argv[1:], log_dir=FLAGS.log_dir or None,
        stop_timeout_seconds=FLAGS.stop_timeout_seconds)
  except errors.UserInputError as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)
  sys.exit(code)


def parse_flags(argv):
  """absl flag parsing, with one `error:` line and exit 2 on bad flags."""
  try:
    return FLAGS(argv)
  except flags.Error as e:
    print(f'error: {e}; see --helpfull', file=sys.stderr)
    sys.exit(2)


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
