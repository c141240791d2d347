"""The memory table: what a side's embedding storage costs (DESIGN.md §5).

Beside the storage it describes (`layers/embedding.py`), so that training,
the search methods and the serving export all count dimensions one way.
"""

from typing import Any, Dict, Sequence

import numpy as np


def memory_table(size_indices: np.ndarray,
                 candidate_sizes: Sequence[int],
                 reference_size: int) -> Dict[str, Any]:
  """The paper's memory table for one side (DESIGN.md §5).

  Args:
    size_indices: int `[num_ids]` final size index of each id.
    candidate_sizes: the sizes the indices refer to (dimensions).
    reference_size: the FIXED reference size, the largest candidate of the
      paper's search space (128 there).

  Returns:
    `{'counts': {'2': int, ...}, 'total_dims': int, 'fixed_dims': int,
      'ratio': float}` where `total_dims = sum(count_d * d)`,
    `fixed_dims = num_ids * reference_size` and `ratio = total / fixed`.
  """
  counts = np.bincount(np.asarray(size_indices, np.int64),
                       minlength=len(candidate_sizes))
  total = int(sum(int(c) * int(d) for c, d in zip(counts, candidate_sizes)))
  fixed = int(len(size_indices) * reference_size)
  return {
      'counts': {str(d): int(c) for d, c in zip(candidate_sizes, counts)},
      'total_dims': total,
      'fixed_dims': fixed,
      'ratio': total / fixed if fixed else 0.0,
  }


def train_state_bytes(layers: Sequence[Any], reference_size: int,
                      slots_per_value: int = 2) -> Dict[str, Any]:
  """Bytes of the embedding storage while training, against FIXED's.

  Counted, per side: the float32 rows (`tables`), their optimizer moments
  (`slots`, Adam: 2 per float) and the per-id index (`index`: int32 size
  index, and for a pooled layout the int32 row index, the free-row stacks
  and the per-pool counters), from each layer's `storage_bytes`. Not
  counted: the MLP, the search's per-id state (loss histories, pending
  decisions, trial rows) and the id map.

  Args:
    layers: the sides' embedding layers (`storage_bytes()`, `num_ids`).
    reference_size: the FIXED size the ratio is taken against (dims).
    slots_per_value: optimizer slots per stored float.

  Returns:
    `{'tables': int, 'slots': int, 'index': int, 'total': int,
      'fixed_total': int, 'ratio': float}`: sums over the sides;
    `fixed_total = sum_sides num_ids x reference_size x 4 x (1 +
    slots_per_value)` (FIXED's rows and moments, 1,536 bytes per id at 128
    with Adam) and `ratio = total / fixed_total`.
  """
  out = {'tables': 0, 'slots': 0, 'index': 0}
  fixed = 0
  for layer in layers:
    for key, value in layer.storage_bytes(slots_per_value).items():
      out[key] += int(value)
    fixed += int(layer.num_ids) * int(reference_size) * 4 * (
        1 + slots_per_value)
  out['total'] = out['tables'] + out['slots'] + out['index']
  out['fixed_total'] = fixed
  out['ratio'] = out['total'] / fixed if fixed else 0.0
  return out


def embedding_floor_bytes(num_ids: Sequence[int],
                          candidate_sizes: Sequence[int],
                          budgets: Sequence[float], pooled: bool,
                          slots_per_value: int = 2) -> int:
  """Bytes the embedding rows and their Adam moments take from the start.

  A lower bound of a run's memory, known before anything is allocated:
  dense storage holds `num_ids x d_n` floats per side; pooled storage holds
  `budget x num_ids x d_n` under a budget (its arena is sized up front),
  else `num_ids x d_0`. Each float has `slots_per_value` moments. The MLP,
  the per-id index and search state, the stream and TensorFlow itself come
  on top.

  Args:
    num_ids: ids per side, e.g. `(num_users, num_items)`.
    candidate_sizes: the sizes (dims), ascending.
    budgets: each side's memory budget (0 = none).
    pooled: the storage is `--embedding_storage=pooled`.
    slots_per_value: optimizer moments per float (2 for Adam).

  Returns:
    Bytes (int).
  """
  total = 0
  for n, budget in zip(num_ids, budgets):
    if not pooled:
      dims = n * candidate_sizes[-1]
    elif budget:
      dims = max(budget * n * candidate_sizes[-1], n * candidate_sizes[0])
    else:
      dims = n * candidate_sizes[0]
    total += int(dims) * 4 * (1 + slots_per_value)
  return total

