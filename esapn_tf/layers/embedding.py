"""`MultiSizeEmbedding`: one embedding table per candidate size (DESIGN.md §2).

Each id (a user or an item row) has a current size index `s(id)` in
`0..n-1`. Its vector is the row `E_s[id]` of the table of size `d_s`, lifted
to the largest size `d_n` by the chain of affine maps
`e_{k+1} = e_k W_{k->k+1} + b_{k->k+1}`, then batch-normalised and squashed by
tanh. `enlarge(ids)` moves ids one size up and initialises their new row with
the lift of the old one, so the layer's output is unchanged at the switch.
"""

from typing import List, Optional, Sequence

import numpy as np
import tensorflow as tf


# Rows of the packed tables are padded to a multiple of this many floats
# (64 bytes: a cache line, one AVX-512 vector).
ROW_ALIGNMENT = 16


class SizedTables(tf.keras.layers.Layer):
  """Base of the embedding layers: one table per candidate size, per id.

  Holds the constructor's validation, the tables `E_k` float32
  `[num_ids, d_k]` (`_build_tables`), the non-trainable `size_index` int32
  `[num_ids]` (0 at the start) and `get_config`.

  The tables are stored side by side in one variable, `packed_tables`
  float32 `[num_ids, packed_dim]`: `E_k` is its columns
  `table_offsets[k] : table_offsets[k] + d_k`, and the row is padded with
  zero columns to a multiple of `ROW_ALIGNMENT` (222 -> 224 columns for the
  paper's sizes). A batch then reads all its rows with one gather, and the
  optimizer updates a side's rows in one row-sparse step instead of one per
  size (BUILD_NOTES.md, "Speed": XLA's CPU scatters are about 3 times
  slower on 222-float rows than on aligned ones). The padding never gets a
  gradient, so it stays 0. `table(k)` and `tables` read the tables one by
  one.
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
      embeddings_initializer: Keras initializer for the tables (called once
        per table, with the table's own shape `[num_ids, d_k]`).
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
    # Column where each size's table starts in `packed_tables`.
    self.table_offsets = tuple(int(o) for o in np.cumsum([0] + sizes[:-1]))
    self.embeddings_initializer = tf.keras.initializers.get(
        embeddings_initializer)
    self.batch_norm_momentum = float(batch_norm_momentum)

  @property
  def num_sizes(self) -> int:
    return len(self.candidate_sizes)

  @property
  def output_dim(self) -> int:
    return self.candidate_sizes[-1]

  @property
  def packed_dim(self) -> int:
    """Columns of `packed_tables`: `sum_k d_k` rounded up to a multiple of
    `ROW_ALIGNMENT` (224 for the paper's sizes)."""
    return -(-sum(self.candidate_sizes) // ROW_ALIGNMENT) * ROW_ALIGNMENT

  def _build_tables(self) -> None:
    """Creates `packed_tables` (every size's table) and `size_index`."""
    init = self.embeddings_initializer

    def initial_value(shape, dtype=None):
      # A fresh initializer per table, called with the table's own shape, so
      # each table starts as it would as a variable of its own (and one
      # unseeded instance is not asked twice for the same shape).
      del shape
      padding = self.packed_dim - sum(self.candidate_sizes)
      return tf.concat([
          init.__class__.from_config(init.get_config())(
              (self.num_ids, d), dtype=dtype)
          for d in self.candidate_sizes] + [
              tf.zeros((self.num_ids, padding), dtype)], axis=1)

    self.packed_tables = self.add_weight(
        name='packed_tables', shape=(self.num_ids, self.packed_dim),
        initializer=initial_value, trainable=True)
    self.size_index = self.add_weight(
        name='size_index', shape=(self.num_ids,), dtype=tf.int32,
        initializer='zeros', trainable=False)

  def split_rows(self, rows: tf.Tensor) -> List[tf.Tensor]:
    """Per size, the columns of `rows` float32 `[..., packed_dim]` of `E_k`.

    Returns:
      float32 `[..., d_k]` for each size `k`.
    """
    return [rows[..., o:o + d]
            for o, d in zip(self.table_offsets, self.candidate_sizes)]

  def table(self, k: int) -> tf.Tensor:
    """The current values of size `k`'s table: float32 `[num_ids, d_k]`."""
    o = self.table_offsets[k]
    return self.packed_tables[:, o:o + self.candidate_sizes[k]]

  @property
  def tables(self) -> List[tf.Tensor]:
    """Every size's table, `table(k)` for each `k` (read-only values)."""
    return [self.table(k) for k in range(self.num_sizes)]

  def assign_table(self, k: int, values) -> None:
    """Overwrites size `k`'s table with float32 `[num_ids, d_k]` values."""
    o = self.table_offsets[k]
    self.packed_tables[:, o:o + self.candidate_sizes[k]].assign(values)

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

  Variables: tables `E_k` float32 `[num_ids, d_k]` (packed in one variable,
  `SizedTables`), lifting kernels
  `W_{k->k+1}` `[d_k, d_{k+1}]` and biases `[d_{k+1}]`, one BatchNormalization
  over `d_n`, and the non-trainable `size_index` int32 `[num_ids]` (all 0 at
  the start: every id begins at the smallest size). Constructor arguments:
  `SizedTables`.
  """

  def build(self, input_shape):
    self._build_tables()
    self.lift_kernels = []
    self.lift_biases = []
    for d_in, d_out in zip(self.candidate_sizes, self.candidate_sizes[1:]):
      self.lift_kernels.append(self.add_weight(
          name=f'lift_{d_in}_to_{d_out}_kernel', shape=(d_in, d_out),
          initializer='glorot_uniform', trainable=True))
      self.lift_biases.append(self.add_weight(
          name=f'lift_{d_in}_to_{d_out}_bias', shape=(d_out,),
          initializer='zeros', trainable=True))
    self.batch_norm = tf.keras.layers.BatchNormalization(
        momentum=self.batch_norm_momentum, name='batch_norm')
    self.batch_norm.build((None, self.output_dim))
    super().build(input_shape)

  def lift(self, ids: tf.Tensor, size_indices: tf.Tensor) -> tf.Tensor:
    """Lifted, pre-BN vectors: float32 `[batch, d_n]`.

    Row `i` is `E_{s_i}[ids_i]` pushed through the lifting chain from size
    `s_i` to the largest size (DESIGN.md §2). All tables are read with one
    gather and the chain is evaluated once for the whole batch, so the cost
    does not depend on the mix of sizes.

    Args:
      ids: int `[batch]` rows.
      size_indices: int32 `[batch]` size index to read each row at.
    """
    size_indices = tf.expand_dims(tf.cast(size_indices, tf.int32), -1)
    rows = self.split_rows(tf.gather(self.packed_tables, ids))
    x = rows[0]
    for k in range(1, self.num_sizes):
      x = tf.matmul(x, self.lift_kernels[k - 1]) + self.lift_biases[k - 1]
      x = tf.where(size_indices == k, rows[k], x)
    return x

  def call(self, ids, training=None, size_indices=None):
    """Embeds ids at their current sizes (or at `size_indices` if given).

    Args:
      ids: int32/int64 `[batch]` rows in `0..num_ids-1`.
      training: whether the BN uses batch statistics (and updates its moving
        ones).
      size_indices: optional int32 `[batch]` size index per example; the
        stored `size_index` of each id when None.

    Returns:
      float32 `[batch, d_n]`.
    """
    if size_indices is None:
      size_indices = tf.gather(self.size_index, ids)
    x = self.lift(ids, size_indices)
    return tf.tanh(self.batch_norm(x, training=training))

  def enlarge(self, ids: tf.Tensor, mask: Optional[tf.Tensor] = None):
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

    Returns:
      bool `[batch]`: which entries were actually enlarged.
    """
    ids = tf.cast(ids, tf.int32)
    current = tf.gather(self.size_index, ids)
    selected = current < self.num_sizes - 1
    if mask is not None:
      selected = tf.logical_and(selected, mask)
    scatter_ids = tf.expand_dims(ids, -1)
    # Every size's row of each id at once: `E_{k+1}` takes the lift of `E_k`
    # where the id moves from k, its old value elsewhere; one row write.
    rows = tf.gather(self.packed_tables, ids)
    old = self.split_rows(rows)
    new = [old[0]]
    for k in range(self.num_sizes - 1):
      at_k = tf.logical_and(selected, tf.equal(current, k))
      lifted = tf.matmul(old[k], self.lift_kernels[k]) + self.lift_biases[k]
      new.append(tf.where(tf.expand_dims(at_k, -1), lifted, old[k + 1]))
    if self.num_sizes > 1:
      padding = rows[:, sum(self.candidate_sizes):]
      self.packed_tables.scatter_nd_update(scatter_ids,
                                           tf.concat(new + [padding], -1))
    self.size_index.scatter_nd_update(
        scatter_ids, current + tf.cast(selected, tf.int32))
    return selected
