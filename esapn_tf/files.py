"""Files a run or an export writes, and who may write them.

Used by training and by serving alike, so it sits below both (STYLE.md,
"Layout"); nothing here imports TensorFlow.

* `atomic_write_text` / `atomic_write_json`: a file is written to a
  temporary name in the same folder and renamed into place, so a reader
  never sees it half-written and a failed run never corrupts an earlier
  run's file.
* `WorkdirLock`: one live run per workdir. The lock file `.lock` names the
  holder's process id; a lock whose process is gone is stale and taken over.
* `make_folder`: creates an output folder, with a one-line error naming the
  flag when it cannot.
"""

import json
import os
from typing import Any

from esapn_tf import errors

LOCK_NAME = '.lock'


def atomic_write_text(path: str, text: str) -> None:
  """Writes `text` to `path` via a temporary file and `os.replace`."""
  tmp = f'{path}.tmp-{os.getpid()}'
  with open(tmp, 'w', encoding='utf-8') as f:
    f.write(text)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)


def atomic_write_json(path: str, obj: Any) -> None:
  atomic_write_text(path, json.dumps(obj, indent=2) + '\n')


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
