"""Adam for embedding tables that updates only the rows a batch touches.

Keras' Adam applies a sparse (`tf.IndexedSlices`) gradient densely: it decays
the moments of *every* row and moves every row each step, so a step costs
time proportional to the whole table (all candidate sizes of every id). This
is the "lazy" Adam of TensorFlow Addons' `LazyAdam` (and of TF's
`tf.compat.v1.train.AdamOptimizer` with sparse updates in many recommender
code bases): the moments and values of a row change only when the row has a
gradient in the batch, so a step costs time proportional to the batch. Rows
that a batch touches get exactly Adam's update (Kingma and Ba, 2015, Alg. 1,
with Keras' epsilon placement).

TensorFlow Addons is no longer maintained and does not support TF 2.21, so the
update is written here; it is XLA friendly (static shapes, no `tf.unique`).
"""

import contextlib
from typing import Iterable, List, Sequence, Tuple

import tensorflow as tf

from esapn_tf.distribute import sharding


def _row_segments(indices: tf.Tensor):
  """(unique `[k]`, order `[k]`, segment `[k]`, valid `[k]`) of `indices`.

  `order` sorts the indices; `segment[j]` is the slot of the j-th sorted
  index; the first `num_unique` slots (`valid`) hold the distinct indices in
  ascending order, the others 0. Static shapes (XLA).
  """
  k = tf.shape(indices)[0]
  order = tf.argsort(indices, stable=True)
  sorted_ids = tf.gather(indices, order)
  is_new = tf.concat(
      [tf.ones([1], tf.bool), sorted_ids[1:] != sorted_ids[:-1]], 0)
  segment = tf.cumsum(tf.cast(is_new, tf.int32)) - 1
  valid = tf.range(k) < tf.reduce_sum(tf.cast(is_new, tf.int32))
  unique = tf.math.unsorted_segment_max(sorted_ids, segment, k)
  unique = tf.where(valid, unique, tf.zeros_like(unique))
  return unique, order, segment, valid


def sum_duplicate_rows(indices: tf.Tensor, values: tf.Tensor
                       ) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
  """Sums the rows of a sparse gradient that share an index.

  Static shapes throughout (XLA): the output keeps `k` slots, the first
  `num_unique` holding the distinct indices in ascending order.

  Args:
    indices: int `[k]` row indices, possibly repeated.
    values: float32 `[k, d]` gradient rows.

  Returns:
    (unique int `[k]`, 0 in unused slots; summed float32 `[k, d]`, 0 in
     unused slots; valid bool `[k]`, True for the used slots).
  """
  unique, order, segment, valid = _row_segments(indices)
  summed = tf.math.unsorted_segment_sum(tf.gather(values, order), segment,
                                        tf.shape(indices)[0])
  return unique, summed, valid


class LazyAdam(tf.Module):
  """Adam with row-sparse updates for `tf.IndexedSlices` gradients.

  Dense gradients get the ordinary (dense) Adam update, so the optimizer can
  take any mix of variables. Moments are float32 slots shaped like each
  variable; `iterations` counts `apply_gradients` calls (for the bias
  correction).
  """

  def __init__(self, variables: Sequence[tf.Variable],
               learning_rate: float = 1e-3, beta_1: float = 0.9,
               beta_2: float = 0.999, epsilon: float = 1e-7,
               name: str = 'lazy_adam'):
    """Creates the slots for `variables` (the only variables it updates).

    In a `tf.distribute` strategy's scope the optimizer is `asynchronous`:
    it reads the second moment as max(v, 0) (`_sparse_update`).

    Args:
      variables: the variables this optimizer will update.
      learning_rate: Adam's step size.
      beta_1: decay of the first moment.
      beta_2: decay of the second moment.
      epsilon: added to the square root of the second moment.
      name: module name.
    """
    super().__init__(name=name)
    # Created in a tf.distribute strategy's scope (parameter-server
    # training): steps may run concurrently, see `_sparse_update`. One
    # process keeps the exact graph it always had.
    self.asynchronous = tf.distribute.has_strategy()
    self.learning_rate = float(learning_rate)
    self.beta_1 = float(beta_1)
    self.beta_2 = float(beta_2)
    self.epsilon = float(epsilon)
    self.iterations = tf.Variable(0, dtype=tf.int64, trainable=False,
                                  name='iterations')
    self._slot_index = {}  # id(variable) -> position in self.m and self.v
    self.m: List[tf.Variable] = []
    self.v: List[tf.Variable] = []
    for var in variables:
      base = var.name.split(':')[0].replace('/', '_')
      # `shape=var.shape`: a variable whose leading dimension may change
      # (a pooled arena, `layers/pooled_embedding.py`) gets slots that can.
      # A sharded per-id table gets moments sharded the same way.
      sharded = sharding.is_sharded(var)
      with (sharding.per_id_tables() if sharded else
            contextlib.nullcontext()):
        m = tf.Variable(self._zeros(var), trainable=False, name=f'{base}_m',
                        shape=var.shape)
        v = tf.Variable(self._zeros(var), trainable=False, name=f'{base}_v',
                        shape=var.shape)
      self.m.append(m)
      self.v.append(v)
      self._slot_index[id(var)] = len(self.m) - 1

  @staticmethod
  def _zeros(var) -> tf.Tensor:
    """Zeros shaped like `var` (a sharded one is not read whole)."""
    if sharding.is_sharded(var):
      return tf.zeros(var.shape, var.dtype)
    return tf.zeros_like(var)

  def slots(self, var: tf.Variable) -> Tuple[tf.Variable, tf.Variable]:
    """The (first, second) moment slots of `var`."""
    i = self._slot_index[id(var)]
    return self.m[i], self.v[i]

  def _learning_rate(self, count_step: bool) -> tf.Tensor:
    """Adam's bias-corrected step size; advances `iterations` if asked."""
    if count_step:
      self.iterations.assign_add(1)
    t = tf.cast(self.iterations, tf.float32)
    return (self.learning_rate * tf.sqrt(1.0 - tf.pow(self.beta_2, t)) /
            (1.0 - tf.pow(self.beta_1, t)))

  def _sparse_update(self, var, lr, rows, order, segment, valid, values):
    """Adam on the rows `rows` of `var` (see `sum_duplicate_rows`)."""
    b1, b2 = self.beta_1, self.beta_2
    m, v = self.slots(var)
    g = tf.math.unsorted_segment_sum(tf.gather(values, order), segment,
                                     tf.shape(values)[0])
    mask = tf.cast(tf.expand_dims(valid, -1), g.dtype)
    m_rows = sharding.gather(m, rows)
    v_rows = sharding.gather(v, rows)
    m_new = b1 * m_rows + (1.0 - b1) * g
    if self.asynchronous:
      # Read as max(v, 0): with asynchronous workers a row reset or moved
      # (`reset_rows`, an enlargement) between another step's read and its
      # additive write below can leave v < 0, and sqrt(v) would turn the
      # row into NaN (seen on a 2-worker cluster).
      v_rows = tf.maximum(v_rows, 0.0)
    v_new = b2 * v_rows + (1.0 - b2) * tf.square(g)
    # Additive scatters: unused slots (mask 0) add nothing, so their
    # placeholder row index cannot clash with a real row. Row scatters, so
    # that a sharded table (`sharding`) routes each row to its shard.
    sharding.scatter_add(m, rows, mask * (m_new - m_rows))
    sharding.scatter_add(v, rows, mask * (v_new - v_rows))
    sharding.scatter_add(
        var, rows, -mask * lr * m_new / (tf.sqrt(v_new) + self.epsilon))

  def reset_rows(self, var: tf.Variable, ids: tf.Tensor,
                 mask: tf.Tensor) -> None:
    """Zeroes both moments of the rows `ids` of `var` where `mask` is True.

    For a row that starts afresh (an enlarged embedding row,
    `embedding.MultiSizeEmbedding`): Adam's state is then that of a row that
    never had a gradient. XLA friendly.

    Args:
      var: a variable this optimizer updates, `[num_ids, d]`.
      ids: int `[k]` rows, possibly repeated.
      mask: bool `[k]`; all copies of a row must carry the same value.
    """
    keep = 1.0 - tf.cast(tf.expand_dims(mask, -1), var.dtype)
    for slot in self.slots(var):
      sharding.scatter_update(slot, ids, sharding.gather(slot, ids) * keep)

  def apply_row_gradients(self, ids: tf.Tensor,
                          grads_and_vars: Iterable[Tuple[tf.Tensor,
                                                         tf.Variable]],
                          count_step: bool = True) -> None:
    """Adam on tables that were all gathered with the same `ids`.

    Equivalent to `apply_gradients` with `tf.IndexedSlices(g, ids)` for each
    pair, but the duplicate-summing bookkeeping is done once for all tables.

    Args:
      ids: int `[batch]` rows gathered from every table.
      grads_and_vars: (float32 `[batch, d]` row gradients aligned with `ids`,
        table `[num_ids, d]`) pairs.
      count_step: advance `iterations` first (False when another call of the
        same step already did).
    """
    lr = self._learning_rate(count_step)
    rows, order, segment, valid = _row_segments(ids)
    for grad, var in grads_and_vars:
      self._sparse_update(var, lr, rows, order, segment, valid, grad)

  def apply_block_gradients(self, ids: tf.Tensor, blocks: tf.Tensor,
                            values: tf.Tensor, var: tf.Variable,
                            sink: tf.Tensor, count_step: bool = False
                            ) -> None:
    """Adam on rows stored as blocks of `var` (a pooled arena).

    Each id's row is the blocks `blocks[i]` of `var` (`[num_blocks, g]`);
    copies of an id share them. The gradients of the copies are summed and
    each distinct row gets exactly `_sparse_update`'s Adam step, block by
    block; entries at the `sink` block are not updated.

    Args:
      ids: int `[batch]`, the ids (copies share a row).
      blocks: int32 `[batch, w]`, each entry's row blocks, `sink` for unused.
      values: float32 `[batch, w, g]` gradients aligned with `blocks`.
      var: the arena, float32 `[num_blocks, g]`.
      sink: int32 scalar, the sink block.
      count_step: advance `iterations` first.
    """
    lr = self._learning_rate(count_step)
    b1, b2 = self.beta_1, self.beta_2
    m, v = self.slots(var)
    n = tf.shape(ids)[0]
    _, order, segment, valid = _row_segments(ids)
    g = tf.math.unsorted_segment_sum(tf.gather(values, order), segment, n)
    rows = tf.math.unsorted_segment_max(tf.gather(blocks, order), segment, n)
    used = tf.logical_and(valid[:, tf.newaxis], tf.not_equal(rows, sink))
    rows = tf.where(used, rows, sink)
    mask = tf.cast(used[..., tf.newaxis], g.dtype)
    m_rows = sharding.gather(m, rows)
    v_rows = sharding.gather(v, rows)
    index = rows[..., tf.newaxis]
    m_new = b1 * m_rows + (1.0 - b1) * g
    v_new = b2 * v_rows + (1.0 - b2) * tf.square(g)
    m.scatter_nd_add(index, mask * (m_new - m_rows))
    v.scatter_nd_add(index, mask * (v_new - v_rows))
    var.scatter_nd_add(index,
                       -mask * lr * m_new / (tf.sqrt(v_new) + self.epsilon))

  def apply_gradients(self, grads_and_vars: Iterable[Tuple[tf.Tensor,
                                                          tf.Variable]],
                      count_step: bool = True):
    """Applies one Adam step; sparse gradients touch only their rows.

    Args:
      grads_and_vars: (gradient, variable) pairs; a gradient may be a
        `tf.IndexedSlices` (rows) or dense.
      count_step: advance `iterations` first (False when another call of the
        same step already did).
    """
    lr = self._learning_rate(count_step)
    b1, b2 = self.beta_1, self.beta_2
    for grad, var in grads_and_vars:
      if grad is None:
        continue
      m, v = self.slots(var)
      if isinstance(grad, tf.IndexedSlices):
        rows, order, segment, valid = _row_segments(grad.indices)
        self._sparse_update(var, lr, rows, order, segment, valid,
                            grad.values)
      else:
        m.assign(b1 * m + (1.0 - b1) * grad)
        v.assign(b2 * v + (1.0 - b2) * tf.square(grad))
        var.assign_sub(lr * m / (tf.sqrt(v) + self.epsilon))
