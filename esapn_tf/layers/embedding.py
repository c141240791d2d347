"""`MultiSizeEmbedding`: one embedding table per candidate size (DESIGN.md §2).

Each id (a user or an item row) has a current size index `s(id)` in
`0..n-1`. Its vector is the row `E_s[id]` of the table of size `d_s`, lifted
to the largest size `d_n` by the chain of affine maps
`e_{k+1} = e_k W_{k->k+1} + b_{k->k+1}`, then batch-normalised and squashed by
tanh. `enlarge(ids)` moves ids one size up and initialises their new row with
the lift of the old one, so the layer's output is unchanged at the switch.

Sizes only grow, and a new row is written from the current one at the switch,
so an id never reads a table other than its current size's again: the layer
stores only each id's current row (`MultiSizeEmbedding.embeddings`,
BUILD_NOTES.md, "Speed").
"""

from typing import List, Optional, Sequence

import tensorflow as tf

from esapn_tf.distribute import mirrored
from esapn_tf.distribute import sharding


class SizedTables(tf.keras.layers.Layer):
  """Base of the embedding layers: one table per candidate size, per id.

  Holds the constructor's validation, the non-trainable `size_index` int32
  `[num_ids]` (0 at the start), `get_config`, and the interface the search
  code uses whatever the storage: `table_variable` (the trainable variable a
  batch's rows are gathered from, and that the optimizer updates row by row),
  `table(k)`, `tables` and `assign_table(k, values)`.
  """

  def __init__(self,
               num_ids: int,
               candidate_sizes: Sequence[int],
               embeddings_initializer='uniform',
               batch_norm_momentum: float = 0.9,
               **kwargs):
    """Creates the layer.

    Args:
      num_ids: number of rows of every table (users or items).
      candidate_sizes: strictly increasing embedding sizes in dimensions,
        e.g. (2, 4, 8, 16, 64, 128).
      embeddings_initializer: Keras initializer for the tables.
      batch_norm_momentum: momentum of the moving statistics of the BN(s).
      **kwargs: passed to `tf.keras.layers.Layer`.

    Raises:
      ValueError: if `num_ids < 1` or the sizes are empty, not positive or not
        strictly increasing.
    """
    super().__init__(**kwargs)
    sizes = [int(d) for d in candidate_sizes]
    if num_ids < 1:
      raise ValueError(f'num_ids must be >= 1, got {num_ids}.')
    if not sizes or min(sizes) < 1 or any(
        b <= a for a, b in zip(sizes, sizes[1:])):
      raise ValueError(
          f'candidate_sizes must be positive and strictly increasing, got '
          f'{candidate_sizes}.')
    self.num_ids = int(num_ids)
    self.candidate_sizes = tuple(sizes)
    self.embeddings_initializer = tf.keras.initializers.get(
        embeddings_initializer)
    self.batch_norm_momentum = float(batch_norm_momentum)

  @property
  def num_sizes(self) -> int:
    return len(self.candidate_sizes)

  @property
  def output_dim(self) -> int:
    return self.candidate_sizes[-1]

  def _build_size_index(self) -> None:
    with sharding.per_id_tables():
      self.size_index = self.add_weight(
          name='size_index', shape=(self.num_ids,), dtype=tf.int32,
          initializer='zeros', trainable=False)

  @property
  def table_variable(self) -> tf.Variable:
    """The trainable variable holding the tables, float32 `[num_ids, ...]`."""
    raise NotImplementedError

  def table(self, k: int) -> tf.Tensor:
    """Size `k`'s table: float32 `[num_ids, d_k]` (read-only values)."""
    raise NotImplementedError

  @property
  def tables(self) -> List[tf.Tensor]:
    """Every size's table, `table(k)` for each `k` (read-only values)."""
    return [self.table(k) for k in range(self.num_sizes)]

  def assign_table(self, k: int, values) -> None:
    """Overwrites size `k`'s table with float32 `[num_ids, d_k]` values."""
    raise NotImplementedError

  def apply_gradients(self, optimizer, grad, ids: tf.Tensor) -> None:
    """Row-sparse Adam on the storage from the gradient of one `call`.

    The default for a layout that reads `table_variable` with one gather of
    the batch's ids (`PooledEmbedding` overrides it).

    Args:
      optimizer: the `lazy_adam.LazyAdam` over `table_variable`.
      grad: `tf.IndexedSlices`, the gradient of `table_variable`.
      ids: int32 `[batch]`, the ids that were gathered.
    """
    if sharding.is_sharded(self.table_variable):
      # Per-shard rows regrouped (`sharding.regroup_gradients`): the
      # values are not aligned with `ids`.
      optimizer.apply_gradients([(grad, self.table_variable)],
                                count_step=False)
      return
    optimizer.apply_row_gradients(ids, [(grad.values, self.table_variable)],
                                  count_step=False)

  def reserve(self, headroom=None) -> bool:
    """Storage upkeep before a step (nothing for the dense layout)."""
    del headroom
    return False

  def attach_optimizer(self, optimizer) -> None:
    """Nothing to do for the dense layout (`PooledEmbedding` keeps it)."""
    del optimizer

  def storage_bytes(self, slots_per_value: int = 2):
    """Bytes of the training storage of this side.

    Args:
      slots_per_value: optimizer slots per stored float (Adam: 2).

    Returns:
      `{'tables': int, 'slots': int, 'index': int}`: float32 rows, their
      optimizer moments, and the per-id index (int32 size indices, plus
      the row index and free-row stacks of a pooled layout).
    """
    table = int(tf.size(self.table_variable)) * 4
    return {'tables': table, 'slots': slots_per_value * table,
            'index': 4 * self.num_ids}

  def size_counts(self) -> tf.Tensor:
    """int32 `[n]`: how many ids sit at each candidate size."""
    return tf.math.bincount(self.size_index, minlength=self.num_sizes,
                            maxlength=self.num_sizes, dtype=tf.int32)

  def get_config(self):
    config = super().get_config()
    config.update({
        'num_ids': self.num_ids,
        'candidate_sizes': list(self.candidate_sizes),
        'embeddings_initializer': tf.keras.initializers.serialize(
            self.embeddings_initializer),
        'batch_norm_momentum': self.batch_norm_momentum,
    })
    return config


@tf.keras.utils.register_keras_serializable(package='esapn_tf')
class MultiSizeEmbedding(SizedTables):
  """Embedding tables of several sizes with hard per-id size selection.

  Input: `ids` int32/int64 `[batch]`, rows in `0..num_ids-1`.
  Output: float32 `[batch, candidate_sizes[-1]]`, in (-1, 1) (tanh).

  Variables: `embeddings` float32 `[num_ids, d_n]`, whose row `i` holds
  `E_{s(i)}[i]`, the id's row of its current size's table, in its first
  `d_{s(i)}` columns (the other columns are not read); lifting kernels
  `W_{k->k+1}` `[d_k, d_{k+1}]` and biases `[d_{k+1}]`; one
  BatchNormalization over `d_n`; and the non-trainable `size_index` int32
  `[num_ids]` (all 0 at the start: every id begins at the smallest size).
  Constructor arguments: `SizedTables`; the initializer fills all of
  `embeddings`, so an id placed at any size (MDE) starts with fresh values.

  Storing only the current row is exact: sizes only grow, and `enlarge`
  writes the new row from the current one, so a table `E_k` is never read
  for an id after it leaves size `k`, nor before it gets there. An
  optimizer with per-entry state must reset an enlarged row's state, as a
  new table's row would start with none (`lazy_adam.LazyAdam.reset_rows`,
  done by the search core).
  """

  def build(self, input_shape):
    self._build_storage()
    self._build_size_index()
    self.lift_kernels = []
    self.lift_biases = []
    for d_in, d_out in zip(self.candidate_sizes, self.candidate_sizes[1:]):
      self.lift_kernels.append(self.add_weight(
          name=f'lift_{d_in}_to_{d_out}_kernel', shape=(d_in, d_out),
          initializer='glorot_uniform', trainable=True))
      self.lift_biases.append(self.add_weight(
          name=f'lift_{d_in}_to_{d_out}_bias', shape=(d_out,),
          initializer='zeros', trainable=True))
    # Synchronized over replicas under `--distribution=mirrored`.
    self.batch_norm = mirrored.batch_normalization(
        momentum=self.batch_norm_momentum, name='batch_norm')
    self.batch_norm.build((None, self.output_dim))
    super().build(input_shape)

  def _build_storage(self) -> None:
    """Creates the rows' storage (the dense `embeddings` table here)."""
    with sharding.per_id_tables():
      self.embeddings = self.add_weight(
          name='embeddings', shape=(self.num_ids, self.output_dim),
          initializer=self.embeddings_initializer, trainable=True)

  @property
  def table_variable(self) -> tf.Variable:
    return self.embeddings

  # ---------------------------------------------- the storage interface
  # What the search, the trials and the export use, whatever the layout
  # (`pooled_embedding.PooledEmbedding` stores each id at its size only).
  def gather_rows(self, ids: tf.Tensor) -> tf.Tensor:
    """float32 `[batch, d_n]`: each id's row in its first `d_s` columns."""
    return sharding.gather(self.embeddings, ids)

  def move_up(self, ids: tf.Tensor, mask: tf.Tensor, rows: tf.Tensor,
              optimizer=None, moments=None) -> tf.Tensor:
    """Moves the masked ids one size up with `rows` as their new rows.

    Args:
      ids: int `[batch]` rows, repeats allowed.
      mask: bool `[batch]`, the same for every copy of an id.
      rows: float32 `[batch, d_n]`, the new rows (first `d_{k+1}` columns).
      optimizer: the `lazy_adam.LazyAdam` whose moments of the new rows are
        written (zeros, or `moments`), or None.
      moments: optional (m, v) float32 `[batch, d_n]`.

    Returns:
      bool `[batch]`: which entries were moved (ids below the largest size).
    """
    ids = tf.cast(ids, tf.int32)
    current = sharding.gather(self.size_index, ids)
    selected = tf.logical_and(mask, current < self.num_sizes - 1)
    if self.num_sizes == 1:
      return selected
    keep = tf.expand_dims(selected, -1)
    targets = [(self.embeddings, rows)]
    if optimizer is not None:
      if moments is None:
        moments = (tf.zeros_like(rows), tf.zeros_like(rows))
      targets += list(zip(optimizer.slots(self.embeddings), moments))
    for var, value in targets:
      sharding.scatter_update(var, ids,
                              tf.where(keep, value, sharding.gather(var, ids)))
    sharding.scatter_update(self.size_index, ids,
                            current + tf.cast(selected, tf.int32))
    return selected

  def table(self, k: int) -> tf.Tensor:
    """Size `k`'s table, float32 `[num_ids, d_k]`: the first `d_k` columns
    of `embeddings`. Only the rows of ids at size `k` (`size_index == k`)
    are rows of `E_k`; the others belong to those ids' own sizes."""
    return self.embeddings[:, :self.candidate_sizes[k]]

  def assign_table(self, k: int, values) -> None:
    """Writes float32 `[num_ids, d_k]` values into the first `d_k` columns
    of every row (the rows of the ids at size `k` are their `E_k` rows)."""
    self.embeddings[:, :self.candidate_sizes[k]].assign(values)

  def lift(self, ids: tf.Tensor) -> tf.Tensor:
    """Lifted, pre-BN vectors at the ids' current sizes: float32 `[batch, d_n]`.

    Row `i` is `E_{s_i}[ids_i]` pushed through the lifting chain from size
    `s_i` to the largest size (DESIGN.md §2). The rows are read with one
    gather and the chain is evaluated once for the whole batch, so the cost
    does not depend on the mix of sizes.

    Args:
      ids: int `[batch]` rows.
    """
    return self.lift_rows(self.gather_rows(ids),
                          sharding.gather(self.size_index, ids))

  def lift_rows(self, rows: tf.Tensor, size_indices: tf.Tensor) -> tf.Tensor:
    """`lift` for given rows: float32 `[batch, d_n]`, pre-BN.

    Args:
      rows: float32 `[batch, d_n]`; row `i` holds a size-`s_i` row in its
        first `d_{s_i}` columns (the layout of `embeddings`).
      size_indices: int32 `[batch]`, each row's size index.
    """
    size_indices = tf.expand_dims(size_indices, -1)
    x = rows[:, :self.candidate_sizes[0]]
    for k in range(1, self.num_sizes):
      x = tf.matmul(x, self.lift_kernels[k - 1]) + self.lift_biases[k - 1]
      x = tf.where(size_indices == k, rows[:, :self.candidate_sizes[k]], x)
    return x

  def vectors(self, rows: tf.Tensor, size_indices: tf.Tensor,
              training=None) -> tf.Tensor:
    """The layer's output for given rows: float32 `[batch, d_n]`.

    `tanh(BN(lift_rows(rows, size_indices)))`; `call` is this on the stored
    rows. Used to score a row that is not stored (a trial's shadow row,
    `search/trials.py`); with `training=False` nothing changes.
    """
    return tf.tanh(self.batch_norm(self.lift_rows(rows, size_indices),
                                   training=training))

  def next_size_rows(self, rows: tf.Tensor,
                     size_indices: tf.Tensor) -> tf.Tensor:
    """Function-preserving rows one size up: float32 `[batch, d_n]`.

    Row `i` becomes `E_k W_{k->k+1} + b_{k->k+1}` (DESIGN.md §2) for its
    size index `k < n-1`, zero-padded to `d_n`; rows at the largest size
    are returned as they are. `lift_rows(next_size_rows(r, k), k + 1)`
    equals `lift_rows(r, k)`.

    Args:
      rows: float32 `[batch, d_n]` (layout of `embeddings`).
      size_indices: int32 `[batch]`.
    """
    new = rows
    for k in range(self.num_sizes - 1):
      lifted = (tf.matmul(rows[:, :self.candidate_sizes[k]],
                          self.lift_kernels[k]) + self.lift_biases[k])
      lifted = tf.pad(lifted,
                      [[0, 0], [0, self.output_dim - lifted.shape[-1]]])
      new = tf.where(tf.expand_dims(tf.equal(size_indices, k), -1), lifted,
                     new)
    return new

  def call(self, ids, training=None):
    """Embeds ids at their current sizes.

    Args:
      ids: int32/int64 `[batch]` rows in `0..num_ids-1`.
      training: whether the BN uses batch statistics (and updates its moving
        ones).

    Returns:
      float32 `[batch, d_n]`.
    """
    return tf.tanh(self.batch_norm(self.lift(ids), training=training))

  def enlarge(self, ids: tf.Tensor, mask: Optional[tf.Tensor] = None,
              optimizer=None):
    """Moves ids one size up with function-preserving initialisation.

    For each selected id at size index `k < n-1`, writes
    `E_{k+1}[id] = E_k[id] W_{k->k+1} + b_{k->k+1}` and sets its size index
    to `k+1` (DESIGN.md §2), so `lift` (and the layer's output) is unchanged
    for that id. Ids already at the largest size are left as they are
    (enlarging there is a no-op). Repeated ids are fine: every copy writes
    the same values. Compatible with XLA (no dynamic shapes).

    Args:
      ids: int `[batch]` rows.
      mask: optional bool `[batch]`; only ids whose mask is True are
        enlarged. All copies of an id must carry the same mask value.
      optimizer: optional `lazy_adam.LazyAdam`: the new rows' moments start
        at zero (a new table's row has none).

    Returns:
      bool `[batch]`: which entries were actually enlarged.
    """
    ids = tf.cast(ids, tf.int32)
    if mask is None:
      mask = tf.ones_like(ids, tf.bool)
    rows = self.gather_rows(ids)
    return self.move_up(
        ids, mask, self.next_size_rows(rows, sharding.gather(self.size_index, ids)),
        optimizer)
