"""XLA's persistent compilation cache, so that a second run skips compiling.

TensorFlow's XLA keeps the executables it compiles in a folder when
`TF_XLA_FLAGS` holds `--tf_xla_persistent_cache_directory=<folder>`; a later
process that compiles the same program (same HLO, same shapes, same device)
loads it instead. TensorFlow 2.21 reads `TF_XLA_FLAGS` once, at the first
XLA compilation (not at `import tensorflow`), and with
`--tf_xla_persistent_cache_device_types` left empty (its default) caches on
every device, the CPU included (measured: an `XLA_CPU_JIT` entry is written
and read back: a tiny synthetic ESAPN run with `--jit_compile` took 53.7 s,
then 10.8 s on the same cache, on the loaded 2-core machine).

`configure` sets the variable; the `bin/` scripts call it before TensorFlow is
imported (this module imports no TensorFlow). Later is too late once anything
has read XLA's flags: importing TF-Agents and Keras first was enough to leave
the cache off. The folder is
`$ESAPN_TF_COMPILE_CACHE`, else `$XDG_CACHE_HOME/esapn_tf/xla`, else
`~/.cache/esapn_tf/xla`, with one subfolder per TensorFlow version and CPU
(an executable compiled for other CPU features or by another XLA must never
be loaded).

A damaged entry must never break a run: TensorFlow fails the step with
`DataLossError: Can't parse ... as binary proto` on an unreadable entry and
keeps that failure for the rest of the process. So an entry is only read if
it is listed in the folder's `manifest.json` with its size and BLAKE2b hash,
and `record` lists entries only after a run that used them ended well;
`configure` deletes every other entry (truncated, overwritten, left by a
killed run) before TensorFlow can see it. The folder is kept under
`MAX_BYTES` (least recently written entries go first).
"""

import hashlib
import importlib.metadata
import json
import os
import platform
import re
import shlex
import sys
import tempfile
from typing import Dict, List, Optional

ENV_FOLDER = 'ESAPN_TF_COMPILE_CACHE'  # overrides the cache's root folder
FLAG = '--tf_xla_persistent_cache_directory'
MANIFEST = 'manifest.json'
MAX_BYTES = 512 * 2**20  # entries beyond this are dropped, oldest first
# TensorFlow's entry names (`--tf_xla_persistent_cache_prefix` default);
# its temporary files do not match, so a write in progress is never touched.
_ENTRY = re.compile(r'^xla_compile_cache__.*\.pb$')
# An entry written less than this before its manifest is hashed by `verify`
# even when its size and mtime match (file timestamps are coarse).
_RACY_NS = 2 * 10**9

_folder: Optional[str] = None  # set by `configure`


def default_root() -> str:
  """The cache's root folder (not created): see the module docstring."""
  if os.environ.get(ENV_FOLDER):
    return os.environ[ENV_FOLDER]
  base = os.environ.get('XDG_CACHE_HOME') or os.path.join(
      os.path.expanduser('~'), '.cache')
  return os.path.join(base, 'esapn_tf', 'xla')


def _tensorflow_version() -> str:
  for name in ('tensorflow', 'tensorflow-cpu', 'tf-nightly'):
    try:
      return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      continue
  return 'unknown'


def _cpu_tag() -> str:
  """Machine type and a short hash of the CPU's feature flags (Linux)."""
  flags = ''
  try:
    with open('/proc/cpuinfo', encoding='utf-8', errors='replace') as f:
      for line in f:
        if line.startswith(('flags', 'Features')):
          flags = line
          break
  except OSError:
    pass
  digest = hashlib.blake2b(flags.encode(), digest_size=4).hexdigest()
  return f'{platform.machine() or "cpu"}-{digest}'


def folder_for(root: str) -> str:
  """`root`'s subfolder for this TensorFlow version and CPU."""
  return os.path.join(root, f'tf-{_tensorflow_version()}-{_cpu_tag()}')


def _flag_folder(value: str) -> Optional[str]:
  """The folder a `TF_XLA_FLAGS` value names, or None."""
  for part in shlex.split(value):
    if part.startswith(FLAG + '='):
      return part.split('=', 1)[1] or None
  return None


def _entries(folder: str) -> List[str]:
  try:
    return sorted(n for n in os.listdir(folder) if _ENTRY.match(n))
  except OSError:
    return []


def _digest(path: str) -> str:
  h = hashlib.blake2b(digest_size=16)
  with open(path, 'rb') as f:
    for block in iter(lambda: f.read(1 << 20), b''):
      h.update(block)
  return h.hexdigest()


def _read_manifest(folder: str) -> Dict[str, Dict[str, object]]:
  try:
    with open(os.path.join(folder, MANIFEST), encoding='utf-8') as f:
      manifest = json.load(f)
    return manifest if isinstance(manifest, dict) else {}
  except (OSError, ValueError):
    return {}  # missing or damaged: no entry is trusted


def _remove(path: str) -> None:
  try:
    os.remove(path)
  except OSError:
    pass


def verify(folder: str) -> List[str]:
  """Deletes the entries of `folder` that `manifest.json` does not vouch for.

  An entry is kept if the manifest lists its size and BLAKE2b hash and the
  file still has them. The hash is only computed when the file's mtime
  differs from the listed one or lies within `_RACY_NS` of the manifest's
  write: hashing the whole 512 MiB cache took 0.3-0.4 s of every run's
  start (measured 2026-12-03).

  Args:
    folder: a cache folder (`folder_for`).

  Returns:
    The names of the deleted entries (sorted).
  """
  manifest = _read_manifest(folder)
  try:
    settled = (os.stat(os.path.join(folder, MANIFEST)).st_mtime_ns -
               _RACY_NS)
  except OSError:
    settled = 0
  dropped = []
  for name in _entries(folder):
    path = os.path.join(folder, name)
    known = manifest.get(name)
    try:
      st = os.stat(path)
      ok = isinstance(known, dict) and known.get('bytes') == st.st_size
      if ok and not known.get('mtime_ns') == st.st_mtime_ns < settled:
        # Changed, or written within `_RACY_NS` of the listing: a rewrite
        # in the same timestamp tick keeps the mtime (as git's "racy"
        # index entries), so only the hash can tell.
        ok = known.get('blake2b') == _digest(path)
    except OSError:
      ok = False
    if not ok:
      _remove(path)
      dropped.append(name)
  return dropped


def configure(enabled: bool = True, root: Optional[str] = None,
              quiet: bool = False) -> Optional[str]:
  """Points XLA's persistent compilation cache at this user's cache folder.

  Call before TensorFlow is imported (the `bin/` scripts do, once their
  flags are checked): XLA reads `TF_XLA_FLAGS` once, and importing TF-Agents
  or Keras may make it read them. Adds `--tf_xla_persistent_cache_directory` to
  `TF_XLA_FLAGS` after `verify` has removed unlisted or damaged entries. A
  folder the user already named in `TF_XLA_FLAGS` is kept (and verified).

  Args:
    enabled: False (`--nocompile_cache`) leaves `TF_XLA_FLAGS` alone.
    root: the cache's root folder; `default_root()` when None.
    quiet: no note on stderr when the folder cannot be created.

  Returns:
    The cache folder, or None when disabled or when the folder cannot be
    created (the run then compiles as without a cache; never an error).
  """
  global _folder
  _folder = None
  if not enabled:
    return None
  current = os.environ.get('TF_XLA_FLAGS', '')
  folder = _flag_folder(current)
  if folder is None:
    folder = folder_for(root or default_root())
  try:
    os.makedirs(folder, exist_ok=True)
  except OSError as e:
    if not quiet:
      print(f'note: no XLA compilation cache ({e.strerror}: {folder}); '
            f'set {ENV_FOLDER} to a writable folder or pass '
            '--nocompile_cache', file=sys.stderr)
    return None
  verify(folder)
  if _flag_folder(current) is None:
    os.environ['TF_XLA_FLAGS'] = f'{current} {FLAG}={folder}'.strip()
  _folder = folder
  return folder


def active_folder() -> Optional[str]:
  """The folder `configure` set, or the one `TF_XLA_FLAGS` names, or None."""
  return _folder or _flag_folder(os.environ.get('TF_XLA_FLAGS', ''))


def record(folder: Optional[str] = None,
           max_bytes: int = MAX_BYTES) -> Dict[str, Dict[str, object]]:
  """Lists `folder`'s entries in its manifest; call after a run ended well.

  TensorFlow writes each entry under a temporary name and renames it, so
  every entry present is complete. The least recently written entries are
  deleted first until the folder holds at most `max_bytes`.

  Args:
    folder: the cache folder; `active_folder()` when None (nothing is done
      when there is none).
    max_bytes: the size cap of the entries, in bytes.

  Returns:
    The manifest written: `{entry name: {'bytes': int, 'blake2b': str}}`.
  """
  folder = folder or active_folder()
  if not folder or not os.path.isdir(folder):
    return {}
  old = _read_manifest(folder)
  stats = []
  for name in _entries(folder):
    try:
      stats.append((os.stat(os.path.join(folder, name)), name))
    except OSError:
      continue
  stats.sort(key=lambda s: s[0].st_mtime_ns, reverse=True)
  manifest, total = {}, 0
  for st, name in stats:
    path = os.path.join(folder, name)
    total += st.st_size
    if total > max_bytes:
      _remove(path)
      continue
    known = old.get(name)
    if (isinstance(known, dict) and known.get('bytes') == st.st_size and
        known.get('mtime_ns') == st.st_mtime_ns):
      manifest[name] = known  # checked by `verify` at this run's start
      continue
    try:
      manifest[name] = {'bytes': st.st_size, 'mtime_ns': st.st_mtime_ns,
                        'blake2b': _digest(path)}
    except OSError:
      continue
  try:
    fd, tmp = tempfile.mkstemp(dir=folder, prefix='.manifest-')
    with os.fdopen(fd, 'w', encoding='utf-8') as f:
      json.dump(manifest, f, indent=1, sort_keys=True)
    os.replace(tmp, os.path.join(folder, MANIFEST))
  except OSError:
    pass  # a read-only cache still works; its new entries are dropped later
  return manifest
