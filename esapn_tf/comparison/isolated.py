"""Runs one comparison cell in a Python process of its own.

`run_in_subprocess` has `loop.run_experiment`'s signature and outcome
(results dict, or `UserInputError`, `TrainingError`, `RunInterrupted`), but
the run happens in a child process (`python -m esapn_tf.comparison.isolated`).
Why: on this project's 2-core machine, a comparison running all 36 cells in
one process was killed by a segmentation fault inside TensorFlow at the 27th
cell (4.3 GB resident); the same cell then ran cleanly in a fresh process. A
crash in a child only fails its cell: the other cells still run, and the
crashed cell's checkpoint (if any) lets a rerun resume it. The cost is one
TensorFlow import per cell (a few seconds).

Exit statuses of the child, as `bin/train.py`'s: 0 done, 1 training error,
2 bad input, 130 interrupted (checkpoint written); the message is the last
line of its standard error.
"""

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
from typing import Any, Dict, List, Optional

from esapn_tf import config as config_lib
from esapn_tf import errors

# Seconds a child may take to write its checkpoint and exit after Ctrl-C.
_INTERRUPT_GRACE_SECONDS = 120.0


class CellCrashed(RuntimeError):
  """The child process died of a signal or exited with an unknown status."""


def command(config_path: str, workdir: str, verbose: bool,
            restart: bool) -> List[str]:
  """The child's command line."""
  cmd = [sys.executable, '-m', 'esapn_tf.comparison.isolated',
         config_path, workdir]
  if verbose:
    cmd.append('--verbose')
  if restart:
    cmd.append('--restart')
  return cmd


def run_in_subprocess(cfg: config_lib.ExperimentConfig, workdir: str,
                      verbose: bool = False,
                      restart: bool = False) -> Dict[str, Any]:
  """`loop.run_experiment(cfg, workdir, verbose, restart=restart)`, isolated.

  Ctrl-C (SIGINT reaches the child too) and SIGTERM (forwarded) let the
  child checkpoint and exit before `RunInterrupted` is raised here.

  Args:
    cfg: the run's configuration.
    workdir: the run's workdir.
    verbose: let the child print its progress lines (else they are dropped).
    restart: discard an interrupted run in `workdir` instead of resuming.

  Returns:
    The run's results (its `results.json`).

  Raises:
    errors.UserInputError, errors.TrainingError, errors.RunInterrupted: as
      `run_experiment`, with the child's message.
    CellCrashed: the child died of a signal (e.g. SIGSEGV) or exited with
      another status.
  """
  os.makedirs(workdir, exist_ok=True)
  fd, config_path = tempfile.mkstemp(prefix='.cell-config-', suffix='.json',
                                     dir=workdir)
  with os.fdopen(fd, 'w', encoding='utf-8') as f:
    f.write(cfg.to_json())
  try:
    status, message = _run_child(
        command(config_path, workdir, verbose, restart), verbose)
  finally:
    if os.path.exists(config_path):  # the child removes it once read
      os.remove(config_path)
  if status == 0:
    with open(os.path.join(workdir, 'results.json'), encoding='utf-8') as f:
      return json.load(f)
  raise _error(status, message)


def _run_child(cmd: List[str], verbose: bool):
  """(exit status, last stderr line) of `cmd`, waiting through signals."""
  # The child imports this package from where this process found it.
  root = os.path.dirname(os.path.dirname(os.path.dirname(
      os.path.abspath(__file__))))
  env = dict(os.environ)
  env['PYTHONPATH'] = os.pathsep.join(
      p for p in (root, env.get('PYTHONPATH', '')) if p)
  with subprocess.Popen(cmd, stdout=None if verbose else subprocess.DEVNULL,
                        stderr=subprocess.PIPE, text=True,
                        env=env) as child:
    forwarded = None
    if threading.current_thread() is threading.main_thread():
      forwarded = signal.signal(
          signal.SIGTERM, lambda signum, frame: child.send_signal(signum))
    try:
      try:
        _, stderr = child.communicate()
      except KeyboardInterrupt:
        # Pass the SIGINT on (a Ctrl-C reaches the child too, a `kill -INT`
        # of this process does not) and let the child save its checkpoint.
        if child.poll() is None:
          child.send_signal(signal.SIGINT)
        try:
          _, stderr = child.communicate(timeout=_INTERRUPT_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
          child.kill()
          _, stderr = child.communicate()
        status = child.returncode
        raise errors.RunInterrupted(
            _strip(_last_line(stderr), 'interrupted:') or
            f'the run stopped (status {status})') from None
    finally:
      if forwarded is not None:
        signal.signal(signal.SIGTERM, forwarded)
  if verbose and stderr:
    sys.stderr.write(stderr)
  return child.returncode, _last_line(stderr)


def _last_line(text: Optional[str]) -> str:
  lines = [line for line in (text or '').splitlines() if line.strip()]
  return lines[-1].strip() if lines else ''


def _strip(message: str, prefix: str) -> str:
  return message[len(prefix):].strip() if message.startswith(prefix) else (
      message)


def _error(status: int, message: str) -> Exception:
  """The exception `run_experiment` would have raised for a child status."""
  if status == 2:
    return errors.UserInputError(_strip(message, 'error:'))
  if status == 1 and message.startswith('error:'):
    return errors.TrainingError(_strip(message, 'error: training stopped:'))
  if status == 130:
    return errors.RunInterrupted(_strip(message, 'interrupted:'))
  if status < 0:
    name = signal.Signals(-status).name
    return CellCrashed(
        f'the run process died of {name}; its last checkpoint (if any) is '
        f'kept and a rerun resumes it (last output: {message or "none"})')
  return CellCrashed(f'the run process exited with status {status}: '
                     f'{message or "no message"}')


def _stop_with_parent() -> None:
  """Linux: SIGTERM this process when its parent dies (even by SIGKILL),
  so that the run checkpoints and exits instead of holding its workdir."""
  try:
    import ctypes  # pylint: disable=g-import-not-at-top
    libc = ctypes.CDLL('libc.so.6', use_errno=True)
    libc.prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
  except (OSError, AttributeError):
    pass  # not Linux: an orphaned run finishes on its own


def main(argv: List[str]) -> int:
  """Child entry point: `<config.json> <workdir> [--verbose] [--restart]`."""
  # pylint: disable=g-import-not-at-top
  _stop_with_parent()
  from esapn_tf import startup
  from esapn_tf.training import compile_cache
  compile_cache.configure()  # before TensorFlow, as bin/train.py does
  startup.import_tensorflow(agents=True)  # quiet: the parent shows stderr
  from esapn_tf.training import loop
  args = [a for a in argv if not a.startswith('--')]
  if len(args) != 2:
    print('error: usage: python -m esapn_tf.comparison.isolated CONFIG.json '
          'WORKDIR [--verbose] [--restart]', file=sys.stderr)
    return 2
  try:
    with open(args[0], encoding='utf-8') as f:
      cfg = config_lib.ExperimentConfig.from_dict(json.load(f))
    os.remove(args[0])
    loop.run_experiment(cfg, args[1], verbose='--verbose' in argv,
                        restart='--restart' in argv)
  except errors.UserInputError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  except errors.TrainingError as e:
    print(f'error: training stopped: {e}', file=sys.stderr)
    return 1
  except (errors.RunInterrupted, KeyboardInterrupt) as e:
    print(f'interrupted: {e}', file=sys.stderr)
    return 130
  return 0


if __name__ == '__main__':
  sys.exit(main(sys.argv[1:]))
