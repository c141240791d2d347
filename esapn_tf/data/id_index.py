"""Raw ids to contiguous rows, and the ids' running frequencies.

The id map of a run: `contiguous_rows` gives each distinct raw id of a side
a row `0..k-1` (ascending raw id), from one pass over the whole stream when
the stream is built (`stream.build_stream`). What it costs per id: the
vocabulary the run keeps, int64 (8 bytes per id: `Stream.user_vocab`, and
the checkpoint's `user_vocab` / `item_vocab` variables, which the serving
export reads), and, while it is built, either a bool and an int32 entry per
possible id value (ids below 8x the row count: a lookup table, linear time)
or `np.unique`'s sort of the column.
"""

import numpy as np

# Ids up to this multiple of the row count are mapped with a lookup table
# (linear time); larger ids fall back to np.unique (a sort).
_DENSE_ID_FACTOR = 8


def running_frequency(ids: np.ndarray) -> np.ndarray:
  """How often each id has appeared so far, this occurrence included.

  The state `f` of DESIGN.md section 3. For [7, 3, 7, 7, 3, 9] it is
  [1, 1, 2, 3, 2, 1]. One sort of (id, position), no Python loop (0.5 s for
  20M ids).

  Args:
    ids: integer [n], in stream order.

  Returns:
    int32 [n]: at position t, the count of positions s <= t with
    ids[s] == ids[t] (1 on first sight).
  """
  ids = np.asarray(ids)
  n = ids.shape[0]
  if n == 0:
    return np.zeros([0], np.int32)
  order, ordered = stable_sort(ids)
  starts = np.flatnonzero(np.concatenate([[True], ordered[1:] != ordered[:-1]]))
  lengths = np.diff(np.append(starts, n))
  rank = np.arange(1, n + 1, dtype=np.int32)
  rank -= np.repeat(starts.astype(np.int32), lengths)
  frequency = np.empty(n, np.int32)
  frequency[order] = rank
  return frequency


def contiguous_rows(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Maps raw ids to contiguous rows, like np.unique(return_inverse=True).

  Args:
    ids: int64 [n], non-negative raw ids.

  Returns:
    (vocab int64 [k] the distinct ids ascending, rows int32 [n] with
    vocab[rows] == ids).
  """
  if ids.shape[0] and 0 <= ids.min() and ids.max() < _DENSE_ID_FACTOR * (
      ids.shape[0] + 1024):
    present = np.zeros(int(ids.max()) + 1, bool)
    present[ids] = True
    vocab = np.flatnonzero(present).astype(np.int64)
    lookup = np.cumsum(present, dtype=np.int64).astype(np.int32) - 1
    return vocab, lookup[ids]
  vocab, rows = np.unique(ids, return_inverse=True)
  return vocab.astype(np.int64), rows.astype(np.int32).reshape(-1)


def stable_sort(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Like (np.argsort(values, kind='stable'), sorted values), but faster.

  Sorts (value, position) packed into one unique int64 key, which numpy sorts
  about 4x faster than a stable argsort (0.5 s for 20M values); values too
  spread out to pack fall back to the stable argsort.

  Args:
    values: integer [n], n >= 1.

  Returns:
    (order int64 [n], values[order] as int64 [n]).
  """
  n = values.shape[0]
  low = int(values.min())
  if int(values.max()) - low < (2**62) // n:
    key = (values.astype(np.int64) - low) * n + np.arange(n)
    key.sort()
    return key % n, key // n + low
  order = np.argsort(values, kind='stable')
  return order, values[order].astype(np.int64)
