"""`PooledEmbedding`: each id stored at its current size only (issue 12).

`MultiSizeEmbedding` keeps one `[num_ids, d_n]` table (each id's row in its
first `d_s` columns), so with Adam's two moments an id costs
`3 x 4 x d_n` bytes whatever its size. Here each id's row takes `d_s`
floats, and so do its moments (`lazy_adam.LazyAdam.apply_block_gradients`).

Storage: one *arena* per side, float32 `[num_blocks + 1, g]` where `g` is
the greatest common divisor of the candidate sizes (2 for the paper's) and
the last block is a sink for masked writes. A row of size `d_k` is `d_k / g`
consecutive blocks; `start_block` int32 `[num_ids]` says where each id's row
starts. The arena is split into one *pool* per size: pool `k` holds rows of
`d_k / g` blocks, and a stack of its free rows' start blocks
(`free_stack`, one region per pool at `stack_offset[k]`, `num_free[k]`
entries in use). Lookups gather `d_n / g` blocks per id (blocks past the
id's size read the sink and are never used), so the rows come out in
`MultiSizeEmbedding`'s `[batch, d_n]` layout and the lift chain, the trials
and the serving export read them unchanged.

`enlarge` (and `move_up`, used by the trials' adoption) pops a row from pool
`k+1`'s stack, writes the new row and its moments there, and pushes the old
row onto pool `k`'s stack, all with static shapes (XLA). An enlargement into
a pool with no free row is masked out (the id keeps its size; the returned
mask says so); `reserve` makes that not happen in practice.

`reserve()` (`pool_layout.PoolLayout`, a mixin) re-lays the arena out
between steps, eagerly, when a pool might run out of free rows.
"""

import math
from functools import reduce
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from esapn_tf.layers import embedding
from esapn_tf.layers import pool_layout


def _rows(var: tf.Variable) -> tf.Tensor:
  """int32 scalar: `var`'s first dimension, read from its handle.

  `tf.shape(var)` reads the variable's value first, and with a scatter of
  the same step that read is a copy of the whole arena (100 ms per call at
  3M ids: the step then grew with the id count).
  """
  return tf.raw_ops.VariableShape(input=var.handle, out_type=tf.int32)[0]


@tf.keras.utils.register_keras_serializable(package='esapn_tf')
class PooledEmbedding(pool_layout.PoolLayout, embedding.MultiSizeEmbedding):
  """`MultiSizeEmbedding` whose storage holds each id at its size only.

  Same input, output, lifting chain and BN as `MultiSizeEmbedding`; the
  storage interface (`gather_rows`, `move_up`, `enlarge`, `reserve`,
  `apply_gradients`, `storage_bytes`) is shared by both.

  Extra constructor arguments:
    budget: the side's memory budget as a share of `num_ids x d_n` dims, in
      (0, 1], or 0 for none (arena grows as needed).
    headroom: the most ids of this side one step can move (the batch size):
      a pool never needs more free rows than this.
    step_dims: under a budget, the dims its pace adds per step (0: not
      known); the arena's slack is sized for twice that.
  """

  def __init__(self, num_ids: int, candidate_sizes: Sequence[int],
               budget: float = 0.0, headroom: int = 512,
               step_dims: float = 0.0, **kwargs):
    super().__init__(num_ids, candidate_sizes, **kwargs)
    if not 0.0 <= budget <= 1.0:
      raise ValueError(f'budget must be in [0, 1], got {budget}.')
    if headroom < 1:
      raise ValueError(f'headroom must be >= 1, got {headroom}.')
    self.budget = float(budget)
    self.headroom = int(headroom)
    if step_dims < 0:
      raise ValueError(f'step_dims must be >= 0, got {step_dims}.')
    self.step_dims = float(step_dims)
    self.block = reduce(math.gcd, self.candidate_sizes)
    self.widths = tuple(d // self.block for d in self.candidate_sizes)
    self.relayouts = 0  # eager re-layouts so far (not checkpointed)

  def _build_storage(self) -> None:
    n, g = self.num_ids, self.block
    blocks = self._initial_blocks()
    values = np.zeros([blocks + 1, g], np.float32)
    values[:n * self.widths[0]] = np.reshape(
        self.embeddings_initializer([n, self.candidate_sizes[0]]).numpy(),
        [-1, g])
    self.arena = tf.Variable(values, shape=tf.TensorShape([None, g]),
                             name='arena', trainable=True)
    self.start_block = tf.Variable(
        np.arange(n, dtype=np.int32) * self.widths[0], name='start_block',
        trainable=False)
    counts = self._initial_counts()
    self.counts = tf.Variable(counts.astype(np.int32), name='counts',
                              trainable=False)
    capacity = self._plan(counts, blocks, self.headroom)
    region = np.concatenate(
        [[0], np.cumsum(capacity * np.asarray(self.widths))[:-1]])
    stack, offsets, free = self._stacks(blocks, region, capacity, counts)
    self.free_stack = tf.Variable(stack, shape=tf.TensorShape([None]),
                                  name='free_stack', trainable=False)
    self.stack_offset = tf.Variable(offsets, name='stack_offset',
                                    trainable=False)
    self.num_free = tf.Variable(free, name='num_free', trainable=False)

  @property
  def sink(self) -> tf.Tensor:
    return _rows(self.arena) - 1

  @property
  def table_variable(self) -> tf.Variable:
    return self.arena

  def _blocks(self, ids: tf.Tensor, start: tf.Tensor,
              size: tf.Tensor) -> tf.Tensor:
    """int32 `[batch, d_n / g]`: the blocks of each row, the sink past it."""
    del ids
    col = tf.range(self.widths[-1], dtype=tf.int32)
    width = tf.gather(tf.constant(self.widths, tf.int32), size)
    return tf.where(col[tf.newaxis] < width[:, tf.newaxis],
                    start[:, tf.newaxis] + col[tf.newaxis], self.sink)

  def gather_rows(self, ids: tf.Tensor) -> tf.Tensor:
    """float32 `[batch, d_n]`: each id's row in its first `d_s` columns."""
    ids = tf.cast(ids, tf.int32)
    blocks = self._blocks(ids, tf.gather(self.start_block, ids),
                          tf.gather(self.size_index, ids))
    return tf.reshape(tf.gather(self.arena, blocks), [-1, self.output_dim])

  def table(self, k: int) -> tf.Tensor:
    """Size `k`'s table, float32 `[num_ids, d_k]` (eager, O(num_ids)): the
    rows of the ids at size `k`; the other rows hold other sizes' values."""
    return self.gather_rows(tf.range(self.num_ids))[:, :self.candidate_sizes[k]]

  def assign_table(self, k: int, values) -> None:
    raise NotImplementedError(
        'PooledEmbedding stores each id at its size only; write rows with '
        'assign_rows, or use MultiSizeEmbedding (dense layout).')

  def assign_rows(self, ids, rows) -> None:
    """Writes float32 `[batch, d_n]` rows (first `d_s` columns) for `ids`."""
    ids = tf.cast(ids, tf.int32)
    blocks = self._blocks(ids, tf.gather(self.start_block, ids),
                          tf.gather(self.size_index, ids))
    keep = tf.not_equal(blocks, self.sink)[..., tf.newaxis]
    old = tf.gather(self.arena, blocks)
    new = tf.reshape(rows, tf.shape(old))
    self.arena.scatter_nd_update(blocks[..., tf.newaxis],
                                 tf.where(keep, new, old))

  # ---------------------------------------------------------- training
  def apply_gradients(self, optimizer, grad, ids: tf.Tensor) -> None:
    """Row-sparse Adam on the arena from the gradient of one `call`.

    Args:
      optimizer: the `lazy_adam.LazyAdam` holding the arena's moments.
      grad: `tf.IndexedSlices`, the gradient of the arena through one
        `gather_rows(ids)` (values `[batch * d_n / g, g]` in batch order).
      ids: int32 `[batch]`, the ids that were gathered.
    """
    blocks = tf.reshape(grad.indices, [-1, self.widths[-1]])
    values = tf.reshape(grad.values, [-1, self.widths[-1], self.block])
    optimizer.apply_block_gradients(ids, blocks, values, self.arena,
                                    self.sink)

  def move_up(self, ids: tf.Tensor, mask: tf.Tensor, rows: tf.Tensor,
              optimizer=None, moments: Optional[Tuple[tf.Tensor,
                                                       tf.Tensor]] = None):
    """Moves the masked ids one size up, writing `rows` as their new rows.

    Static shapes (XLA). Each moved id pops a free row of pool `k+1`
    (rank among the batch's moving ids, in batch order of first copies)
    and pushes its old row onto pool `k`'s stack. An id whose pool `k+1`
    has no free row left is not moved.

    Args:
      ids: int `[batch]`, repeats allowed.
      mask: bool `[batch]`, the same for every copy of an id.
      rows: float32 `[batch, d_n]`, the new rows (first `d_{k+1}` columns).
      optimizer: the `LazyAdam` holding the arena's moments, or None.
      moments: (m, v) float32 `[batch, d_n]` to write, or None for zeros.

    Returns:
      bool `[batch]`: which entries' ids were moved.
    """
    ids = tf.cast(ids, tf.int32)
    batch = tf.shape(ids)[0]
    cur = tf.gather(self.size_index, ids)
    sel = tf.logical_and(mask, cur < self.num_sizes - 1)
    if self.num_sizes == 1:
      return sel
    order = tf.argsort(ids, stable=True)
    sorted_ids = tf.gather(ids, order)
    is_new = tf.concat([tf.ones([1], tf.bool),
                        sorted_ids[1:] != sorted_ids[:-1]], 0)
    segment_sorted = tf.cumsum(tf.cast(is_new, tf.int32)) - 1
    index = tf.expand_dims(order, -1)
    first = tf.scatter_nd(index, tf.cast(is_new, tf.int32), [batch]) > 0
    segment = tf.scatter_nd(index, segment_sorted, [batch])
    num_free = tf.identity(self.num_free)
    offsets = tf.identity(self.stack_offset)
    stack_sink = _rows(self.free_stack) - 1
    moved = tf.zeros([batch], tf.bool)
    new_start = tf.zeros([batch], tf.int32)
    popped, leaving = [], []
    for k in range(self.num_sizes - 1):
      cand = tf.logical_and(tf.logical_and(first, sel), tf.equal(cur, k))
      rank = tf.cumsum(tf.cast(cand, tf.int32), exclusive=True)
      ok = tf.logical_and(cand, rank < num_free[k + 1])
      pos = offsets[k + 1] + num_free[k + 1] - 1 - rank
      start = tf.gather(self.free_stack, tf.where(ok, pos, stack_sink))
      moved = tf.logical_or(moved, ok)
      new_start = tf.where(ok, start, new_start)
      popped.append(tf.reduce_sum(tf.cast(ok, tf.int32)))
      leaving.append(ok)
    # Every copy of an id takes its first copy's outcome.
    moved = tf.gather(tf.math.unsorted_segment_max(
        tf.cast(moved, tf.int32), segment, batch), segment) > 0
    new_start = tf.gather(tf.math.unsorted_segment_max(
        new_start, segment, batch), segment)
    after_pop = num_free - tf.stack([0] + popped)
    old_start = tf.gather(self.start_block, ids)
    for k in range(self.num_sizes - 1):  # push the rows left behind
      rank = tf.cumsum(tf.cast(leaving[k], tf.int32), exclusive=True)
      pos = tf.where(leaving[k], offsets[k] + after_pop[k] + rank,
                     stack_sink)
      self.free_stack.scatter_nd_update(tf.expand_dims(pos, -1), old_start)
    pushed = tf.stack(popped + [0])
    self.num_free.assign(after_pop + pushed)
    self.counts.assign_add(tf.stack([0] + popped) - pushed)
    new_size = cur + tf.cast(moved, tf.int32)
    blocks = self._blocks(ids, new_start, new_size)
    blocks = tf.where(moved[:, tf.newaxis], blocks, self.sink)
    values = [(self.arena, rows)]
    if optimizer is not None:
      m, v = optimizer.slots(self.arena)
      if moments is None:
        moments = (tf.zeros_like(rows), tf.zeros_like(rows))
      values += [(m, moments[0]), (v, moments[1])]

    # Masked entries write to the sink block, whose value is never used
    # (`lift_rows` reads only an id's first `d_s` columns). Written at every
    # step: skipping the writes in a `tf.cond` when no id moves made XLA
    # copy the whole arena and both moments around the conditional, every
    # step (44 ms a step at 1M ids against 15 ms at 10,000).
    index = blocks[..., tf.newaxis]
    shape = [-1, self.widths[-1], self.block]
    for var, value in values:
      var.scatter_nd_update(index, tf.reshape(value, shape))
    id_index = tf.expand_dims(ids, -1)
    self.start_block.scatter_nd_update(
        id_index, tf.where(moved, new_start, old_start))
    self.size_index.scatter_nd_update(id_index, new_size)
    return moved

  def attach_optimizer(self, optimizer) -> None:
    """The optimizer whose arena moments a re-layout moves with the rows."""
    self._optimizer = optimizer

  # ------------------------------------------------------------- bytes
  def storage_bytes(self, slots_per_value: int = 2) -> Dict[str, int]:
    """Bytes of the training storage (see `embedding.storage_bytes`)."""
    arena = int(tf.size(self.arena)) * 4
    index = 4 * (2 * self.num_ids + int(tf.size(self.free_stack)) +
                 3 * self.num_sizes)
    return {'tables': arena, 'slots': slots_per_value * arena,
            'index': index}

  def get_config(self):
    config = super().get_config()
    config.update({'budget': self.budget, 'headroom': self.headroom,
                   'step_dims': self.step_dims})
    return config
