"""Serves one worker or parameter-server task of a training cluster.

  TF_CONFIG='{"cluster": {"chief": ["host0:2222"], "worker": ["host1:2222"],
             "ps": ["host2:2222"]}, "task": {"type": "worker", "index": 0}}' \
      python bin/cluster_task.py

Run once per worker and ps task of `TF_CONFIG` (its "task" names which);
the chief runs `bin/train.py --distribution=parameter_server` with the same
cluster. `bin/local_cluster.py` starts a whole cluster on this machine.
A bad TF_CONFIG prints one line and exits with status 2, before TensorFlow
is imported. SIGTERM or SIGINT stops the task with status 0. TensorFlow's
start-up lines are kept out (`esapn_tf/startup.py`); `ESAPN_VERBOSE=1` or
`-v 1` shows them.
"""

import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

# No TensorFlow before TF_CONFIG is checked (startup.py).
from esapn_tf import errors  # noqa: E402
from esapn_tf import startup  # noqa: E402
from esapn_tf.distribute import cluster  # noqa: E402

FLAGS = flags.FLAGS


def _exit_cleanly(signum, frame):
  """Before the server waits for it: a stop signal ends the task with 0."""
  del frame
  print(f'stopped by {signal.Signals(signum).name} while starting',
        flush=True)
  sys.exit(0)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  for signum in (signal.SIGTERM, signal.SIGINT):
    signal.signal(signum, _exit_cleanly)
  try:
    config = cluster.parse_tf_config()
    task = f'{config["task"]["type"]}:{config["task"]["index"]}'
    if config['task']['type'] not in cluster.SERVER_JOBS:
      cluster.start_server(config)  # Raises the error for the chief.
    cluster.set_grpc_fail_fast()  # Before TensorFlow starts.
    startup.import_tensorflow(
        FLAGS.verbosity if FLAGS['verbosity'].present else None)
    signum = cluster.start_server(config)
  except errors.UserInputError as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)
  print(f'{task} stopped by {signal.Signals(signum).name}', flush=True)
  sys.stderr.flush()
  # The server's threads cannot be stopped (TensorFlow has no way to), and
  # the interpreter's shutdown would wait on them: leave at once.
  os._exit(0)  # pylint: disable=protected-access


if __name__ == '__main__':
  app.run(main)
