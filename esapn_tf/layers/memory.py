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
