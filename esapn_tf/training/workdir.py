"""Who may use a workdir, and whether a run there can be resumed.

* `WorkdirLock`: one live run per workdir. The lock file `.lock` names the
  holder's process id; a lock whose process is gone is stale and taken over.
* `incomplete_run`: a workdir with a checkpoint and no `results.json` holds a
  run that was interrupted; rerunning the same command resumes it.
* `config_differences`: a resumed run must use the configuration it started
  with; the fields that differ are named.
"""

import json
import os
from typing import Any, Dict, List, Tuple

from esapn_tf import errors

LOCK_NAME = '.lock'
# Fields that do not change what a run computes, so may differ on resume.
RESUMABLE_CHANGES = ('train.log_every_seconds', 'train.checkpoint_every',
                     'train.summary_every')


def _alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # exists, owned by someone else
    return True
  return True


class WorkdirLock:
  """Context manager holding `workdir/.lock` for this process.

  Raises:
    errors.UserInputError: on entry, when a live process holds the lock or
      the workdir is not writable.
  """

  def __init__(self, workdir: str):
    self.path = os.path.join(workdir, LOCK_NAME)
    self.took_over_from = None  # pid of a stale holder, if any

  def __enter__(self) -> 'WorkdirLock':
    for _ in range(2):
      try:
        fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
      except FileExistsError:
        pid = self._holder()
        if pid is None and not os.path.isfile(self.path):
          raise errors.UserInputError(
              f'cannot take the lock {self.path}: it is not a file; pass '
              'another --workdir')
        if pid is not None and pid != os.getpid() and _alive(pid):
          raise errors.UserInputError(
              f'{os.path.dirname(self.path)} is in use by the run of process '
              f'{pid}; wait for it to finish or pass another --workdir')
        self.took_over_from = pid
        os.remove(self.path)  # stale: its process is gone
        continue
      except OSError as e:
        raise errors.UserInputError(
            f'cannot write in workdir {os.path.dirname(self.path)!r} '
            f'({e.strerror}); pass a writable --workdir') from e
      with os.fdopen(fd, 'w') as f:
        f.write(f'{os.getpid()}\n')
      return self
    raise errors.UserInputError(f'cannot take the lock {self.path}')

  def _holder(self):
    try:
      with open(self.path, encoding='utf-8') as f:
        return int(f.read().strip() or -1)
    except (OSError, ValueError):
      return None

  def __exit__(self, *exc) -> None:
    if self._holder() == os.getpid():
      os.remove(self.path)


def make_folder(path: str, flag: str = '--workdir') -> None:
  """Creates the folder `path` (and its parents) if missing.

  Raises:
    errors.UserInputError: `path` is a file, or cannot be created; the
      message names `flag`.
  """
  if os.path.exists(path) and not os.path.isdir(path):
    raise errors.UserInputError(
        f'{flag} {path!r} is a file, not a folder; pass another {flag}')
  try:
    os.makedirs(path, exist_ok=True)
  except OSError as e:
    raise errors.UserInputError(
        f'cannot create {flag} {path!r} ({e.strerror}); pass a writable '
        f'{flag}') from e


def latest_checkpoint_present(workdir: str) -> bool:
  return os.path.exists(os.path.join(workdir, 'checkpoints', 'checkpoint'))


def incomplete_run(workdir: str) -> bool:
  """True when `workdir` holds a checkpoint but no results.json."""
  return (latest_checkpoint_present(workdir) and
          not os.path.exists(os.path.join(workdir, 'results.json')))


def _flatten(d: Dict[str, Any], prefix: str = '') -> Dict[str, Any]:
  out = {}
  for k, v in d.items():
    key = f'{prefix}{k}'
    if isinstance(v, dict):
      out.update(_flatten(v, key + '.'))
    else:
      out[key] = list(v) if isinstance(v, (list, tuple)) else v
  return out


def config_differences(old: Dict[str, Any], new: Dict[str, Any]
                       ) -> List[Tuple[str, Any, Any]]:
  """(field, old value, new value) for each field that matters and differs."""
  a, b = _flatten(old), _flatten(new)
  return [(k, a.get(k), b.get(k)) for k in sorted(set(a) | set(b))
          if a.get(k) != b.get(k) and k not in RESUMABLE_CHANGES]


def read_config(workdir: str) -> Dict[str, Any]:
  """The `config.json` of the run in `workdir`.

  Raises:
    errors.UserInputError: unreadable or not JSON.
  """
  path = os.path.join(workdir, 'config.json')
  try:
    with open(path, encoding='utf-8') as f:
      return json.load(f)
  except (OSError, ValueError) as e:
    raise errors.UserInputError(
        f'cannot resume: {path} is unreadable ({e}); pass --restart to '
        'discard the interrupted run') from e
