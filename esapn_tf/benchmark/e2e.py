"""End-to-end time of `bin/train.py`: process start to `results.json`.

Each run is a child process, as a user runs it; its time ends when its
`results.json` is written (the file's modification time), so the exit's
tear-down is not counted (`exit` figures count it, and ESAPN's heat map,
drawn after results.json). "Cold" runs start with an empty XLA compilation
cache folder (`training/compile_cache.py`, via `$ESAPN_TF_COMPILE_CACHE`),
"warm" runs repeat the same command on the folder the cold run filled.
This module imports no TensorFlow.
"""

import os
import subprocess
import sys
import tempfile
import time
from typing import Dict, Sequence, Tuple

from esapn_tf import errors
from esapn_tf.training import compile_cache

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
TRAIN = os.path.join(_REPO, 'bin', 'train.py')
ML_LATEST_SMALL_BINARY = os.path.join(_REPO, 'configs',
                                      'ml-latest-small-binary.flags')


def run_seconds(args: Sequence[str], workdir: str,
                cache_root: str) -> Tuple[float, float]:
  """Seconds from starting `bin/train.py args` to its `results.json`.

  Args:
    args: `bin/train.py`'s flags, without `--workdir`.
    workdir: the run's `--workdir` (an earlier run there is restarted).
    cache_root: the compilation cache's root (`$ESAPN_TF_COMPILE_CACHE`).

  Returns:
    Wall seconds from process start to `results.json` written, and to the
    process's exit.

  Raises:
    errors.UserInputError: the run failed or wrote no `results.json` (its
      last stderr line is quoted).
  """
  env = dict(os.environ, **{compile_cache.ENV_FOLDER: cache_root})
  results = os.path.join(workdir, 'results.json')
  start = time.time()
  proc = subprocess.run(
      [sys.executable, TRAIN, *args, f'--workdir={workdir}', '--restart',
       '--log_every_seconds=100000'],
      env=env, capture_output=True, text=True, check=False)
  exit_seconds = time.time() - start
  if proc.returncode != 0 or not os.path.exists(results):
    last = (proc.stderr.strip().splitlines() or ['no output'])[-1]
    raise errors.UserInputError(
        f'bin/train.py {" ".join(args)} failed (exit {proc.returncode}): '
        f'{errors.quote(last, width=300)}')
  return os.stat(results).st_mtime - start, exit_seconds


def cold_and_warm(
    runs: Dict[str, Sequence[str]]) -> Dict[str, Dict[str, float]]:
  """Each run twice: on an empty compilation cache, then on the one it filled.

  The runs are interleaved (all cold runs, then all warm ones), each run with
  its own cache folder, so that a change of machine load hits all alike.

  Args:
    runs: `{name: bin/train.py flags}` (no `--workdir`).

  Returns:
    `{'results': {'<name>_cold': seconds, '<name>_warm': seconds, ...},
    'exit': {the same to the process's exit}}`.
  """
  seconds = {'results': {}, 'exit': {}}
  with tempfile.TemporaryDirectory(prefix='esapn-e2e-') as tmp:
    for phase in ('cold', 'warm'):
      for name, args in runs.items():
        key = f'{name}_{phase}'
        seconds['results'][key], seconds['exit'][key] = run_seconds(
            args, os.path.join(tmp, f'run-{name}'),
            os.path.join(tmp, f'cache-{name}'))
  return seconds


def ml_latest_small_binary(data_dir: str) -> Dict[str, Dict[str, float]]:
  """`cold_and_warm` of ESAPN and FIXED on ml-latest-small binary.

  Args:
    data_dir: the ml-latest-small archive or folder.

  Returns:
    `cold_and_warm`'s figures, keys `esapn_cold`, `fixed_cold`, `esapn_warm`,
    `fixed_warm` (`configs/ml-latest-small-binary.flags` with
    `--method=esapn` / `--method=fixed`, default `--jit_compile=auto`).
  """
  base = [f'--flagfile={ML_LATEST_SMALL_BINARY}', f'--data_dir={data_dir}']
  return cold_and_warm({'esapn': base + ['--method=esapn'],
                        'fixed': base + ['--method=fixed']})
