"""Which ids of a run the export serves as known (README, "Unknown ids").

An id of the data that the run never learned from (first seen in the test
part of a `--test_mode=frozen` run) still holds its initial row; the export
serves it the side's fallback vector with `known_* = false`, as an id the
run never saw. `trained_ids` reads which ids have a recorded loss from a
checkpoint; `known_only` drops the others from the lookups of
`params.ServingParams`.
"""

import dataclasses
import re
from typing import Dict, Optional

import numpy as np


def trained_ids(reader, side: str, num_ids: int) -> np.ndarray:
  """bool `[num_ids]`: the ids with a recorded loss (`RestoredRun.trained`).

  Reads `core/history_count/<side>` whole, or as `_variables/<i>` shards
  in order (a layout assumed for parameter-server checkpoints, not tested
  on one); all True when the checkpoint has neither or its length differs.

  Args:
    reader: a `tf.train.CheckpointReader` of the run's checkpoint.
    side: 'user' or 'item'.
    num_ids: the side's vocabulary length.
  """
  prefix = f'core/history_count/{side}/'
  whole = prefix + '.ATTRIBUTES/VARIABLE_VALUE'
  if reader.has_tensor(whole):
    count = reader.get_tensor(whole)
  else:
    shards = sorted(
        (int(m.group(1)), name) for name in reader.get_variable_to_shape_map()
        for m in [re.match(re.escape(prefix) + r'_variables/(\d+)/', name)]
        if m)
    if not shards:
      return np.ones(num_ids, bool)
    count = np.concatenate([reader.get_tensor(n) for _, n in shards])
  count = np.asarray(count).reshape(-1)
  if count.shape[0] != num_ids:
    return np.ones(num_ids, bool)
  return count > 0


def known_only(p, trained: Optional[Dict[str, np.ndarray]]):
  """`p` whose lookups hold only the trained ids (`RestoredRun.trained`).

  The other ids of the data get the fallback vector and `known_*` = false,
  as an id the run never saw; their rows stay in the tables.

  Args:
    p: `params.ServingParams`, compact or FIXED reference, one vocab entry
      per row.
    trained: `{side: bool [num_ids]}`, or None (nothing dropped).

  Returns:
    A `params.ServingParams` like `p` with fewer lookup entries.
  """
  if trained is None:
    return p
  sides = {}
  for side in ('user', 'item'):
    q, keep = getattr(p, side), np.asarray(trained[side], bool)
    sides[side] = dataclasses.replace(q, vocab=q.vocab[keep],
                                      codes=q.codes[keep])
  return dataclasses.replace(p, **sides)
