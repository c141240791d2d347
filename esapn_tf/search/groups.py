"""Per-batch groups of equal keys, with shapes that follow the batch (issue 12).

The step often needs "the largest running frequency among the copies of
this id in the batch", or "does any copy of this id carry the flag". Done
with `tf.math.unsorted_segment_max(values, ids, num_ids)`, such a reduction
allocates and scans `num_ids` entries every step: at ten million ids it is
tens of megabytes of temporaries per call. Here the keys (ids, or trial
slots) are first numbered by their rank among the batch's distinct keys,
and the segment ops run over at most `batch` segments:

  order = argsort(keys); sorted = keys[order]
  new = [True, sorted[1:] != sorted[:-1]]        # first copy of each key
  rank = cumsum(new) - 1                         # in sorted order
  segment[order] = rank                          # back to batch order

This is `tf.unique`'s `idx` output (numbered in ascending key order rather
than order of first appearance), but every shape is `[batch]`, so the ops
run inside an XLA program (`tf.unique`'s output size is dynamic, which XLA
does not support). Cost: one sort of the batch's keys, O(b log b) for a
batch of b examples, whatever the id count.

The reductions below return one value per example (the group's value,
broadcast back to every copy), exactly what the `num_ids`-sized versions
gave: integer max/min/any are exact, and a sum over a group with one
non-zero member (`value_at`) adds only zeros.
"""

import tensorflow as tf


def _sorted(keys: tf.Tensor):
  """(order, is_new, rank), each `[batch]`, in sorted order (module doc)."""
  n = tf.shape(keys)[0]
  order = tf.argsort(keys, stable=True)
  sorted_keys = tf.gather(keys, order)
  # The key before each sorted key (the first compares with itself; it is
  # marked new by position). Written without a `[1]` constant so that an
  # empty batch gives empty tensors.
  previous = tf.concat([sorted_keys[:1], sorted_keys[:-1]], 0)
  is_new = tf.logical_or(tf.equal(tf.range(n), 0),
                         tf.not_equal(sorted_keys, previous))
  rank = tf.cumsum(tf.cast(is_new, tf.int32)) - 1
  return order, is_new, rank


def _unsort(order: tf.Tensor, x: tf.Tensor) -> tf.Tensor:
  """`x` given in sorted order, put back in batch order."""
  return tf.scatter_nd(tf.expand_dims(order, -1), x, tf.shape(x))


def group_index(keys: tf.Tensor) -> tf.Tensor:
  """Each example's group: the rank of its key among the batch's keys.

  Args:
    keys: int32 or int64 `[batch]` (ids, or trial slots); any values.

  Returns:
    int32 `[batch]` in `[0, number of distinct keys)`: equal keys get equal
    groups, groups numbered in ascending key order.
  """
  order, _, rank = _sorted(keys)
  return _unsort(order, rank)


def one_per_key(keys: tf.Tensor) -> tf.Tensor:
  """bool `[batch]`: True at the first example (in batch order) of each key.

  Args:
    keys: int32 or int64 `[batch]`.
  """
  order, is_new, _ = _sorted(keys)
  return _unsort(order, tf.cast(is_new, tf.int32)) > 0


def _reduce(segment_op, values: tf.Tensor, keys: tf.Tensor) -> tf.Tensor:
  """`segment_op` over each group of equal keys, broadcast to its members."""
  group = group_index(keys)
  per_group = segment_op(values, group, tf.shape(keys)[0])
  return tf.gather(per_group, group)


def max_per_key(values: tf.Tensor, keys: tf.Tensor) -> tf.Tensor:
  """`[batch, ...]`: the largest value among the examples with the same key.

  Args:
    values: int32 or float32 `[batch, ...]`.
    keys: int `[batch]`.

  Returns:
    `values`' dtype and shape.
  """
  return _reduce(tf.math.unsorted_segment_max, values, keys)


def min_per_key(values: tf.Tensor, keys: tf.Tensor) -> tf.Tensor:
  """`[batch, ...]`: the smallest value among the examples with the same key.

  Args:
    values: int32 or float32 `[batch, ...]`.
    keys: int `[batch]`.

  Returns:
    `values`' dtype and shape.
  """
  return _reduce(tf.math.unsorted_segment_min, values, keys)


def any_per_key(flags: tf.Tensor, keys: tf.Tensor) -> tf.Tensor:
  """bool `[batch]`: True where any example with the same key is flagged.

  Args:
    flags: bool `[batch]`.
    keys: int `[batch]`.
  """
  return max_per_key(tf.cast(flags, tf.int32), keys) > 0


def value_at(mask: tf.Tensor, values: tf.Tensor, keys: tf.Tensor
             ) -> tf.Tensor:
  """Gives every example the value of the masked example with its key.

  Args:
    mask: bool `[batch]`, True at most at one example of each key.
    values: float32 or int32 `[batch, ...]`.
    keys: int `[batch]`.

  Returns:
    `values`' dtype and shape: the masked example's value on every example
    of its key (0 for a key without a masked example), so that scatters of
    it do not depend on scatter order.
  """
  shape = [-1] + [1] * (values.shape.rank - 1)
  chosen = tf.where(tf.reshape(mask, shape), values, tf.zeros_like(values))
  return _reduce(tf.math.unsorted_segment_sum, chosen, keys)


def first_copies(keys: tf.Tensor, frequency: tf.Tensor) -> tf.Tensor:
  """bool `[batch]`: True at each key's copy with the smallest frequency.

  Running frequencies grow by one per occurrence of an id, so for ids this
  is each id's first copy in the batch.

  Args:
    keys: int `[batch]`.
    frequency: int `[batch]`, running frequency of each example's id.
  """
  frequency = tf.cast(frequency, tf.int32)
  return tf.equal(frequency, min_per_key(frequency, keys))


def last_copies(keys: tf.Tensor, frequency: tf.Tensor) -> tf.Tensor:
  """bool `[batch]`: True at each key's copy with the largest frequency.

  Running frequencies grow by one per occurrence of an id, so for ids this
  is each id's last copy in the batch.

  Args:
    keys: int `[batch]`.
    frequency: int `[batch]`, running frequency of each example's id.
  """
  frequency = tf.cast(frequency, tf.int32)
  return tf.equal(frequency, max_per_key(frequency, keys))
