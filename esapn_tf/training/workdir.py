"""Whether a run in a workdir can be resumed (the lock: `esapn_tf.files`).

* `incomplete_run`: a workdir with a checkpoint and no `results.json` holds a
  run that was interrupted; rerunning the same command resumes it.
* `config_differences`: a resumed run must use the configuration it started
  with; the fields that differ are named.
"""

import json
import os
from typing import Any, Dict, List, Tuple

from esapn_tf import errors

# Fields that do not change what a run computes, so may differ on resume.
# A checkpoint restores on one machine or a cluster alike (per-id tables are
# saved whole, `sharding`), so a run may resume with another distribution.
RESUMABLE_CHANGES = ('train.log_every_seconds', 'train.checkpoint_every',
                     'train.summary_every', 'train.distribution',
                     'train.num_shards', 'train.num_replicas')
# Fields whose None ("auto") a run decides from its data when it starts
# (`jit.resolve_jit_compile`); the other fields pin the data, so a
# recorded decision matches a new None.
AUTO_FIELDS = ('train.jit_compile',)
# Fields added after runs were written: a config.json without one ran with
# this value.
ADDED_FIELDS = {'model.embedding_storage': 'dense',
                'train.distribution': 'none', 'train.num_shards': 0,
                'train.num_replicas': 0, 'search.memory_catch_up': 0.0,
                'search.reward_horizon': 'next'}


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
  for k, value in ADDED_FIELDS.items():
    a.setdefault(k, value)
    b.setdefault(k, value)
  return [(k, a.get(k), b.get(k)) for k in sorted(set(a) | set(b))
          if a.get(k) != b.get(k) and k not in RESUMABLE_CHANGES and
          not (k in AUTO_FIELDS and b.get(k) is None)]


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
