"""`SoftSizeEmbedding`: a soft mixture over every candidate size (DESIGN.md §4).

The embedding of the DARTS and AutoEmb baselines. Each id has a row in one
table per candidate size `d_k`; each size has its own affine map
`d_k -> d_n` and its own batch normalisation (so that the lifted vectors of
different sizes are on one scale before they are mixed, as in AutoEmb, Zhao
et al. 2020, §2.2), and the output is

    v = tanh(sum_k w_k * BN_k(E_k[id] W_k + b_k))

with per-example mixture weights `w` (softmax outputs, summing to 1) given by
the caller: DARTS' per-id architecture weights or AutoEmb's controller
(`search/baselines.py`). The non-trainable `size_index` holds the hard size
the weights select (their argmax), which is what the memory table counts.
"""

from typing import List, Optional

import numpy as np
import tensorflow as tf

from esapn_tf.layers import embedding

# Rows of the packed tables are padded to a multiple of this many floats
# (64 bytes: a cache line, one AVX-512 vector).
ROW_ALIGNMENT = 16


@tf.keras.utils.register_keras_serializable(package='esapn_tf')
class SoftSizeEmbedding(embedding.SizedTables):
  """Embedding tables of several sizes mixed by soft weights.

  Input: `ids` int32/int64 `[batch]`, rows in `0..num_ids-1`, and `weights`
  float32 `[batch, n]` (rows summing to 1).
  Output: float32 `[batch, candidate_sizes[-1]]`, in (-1, 1) (tanh).

  Variables: tables `E_k` float32 `[num_ids, d_k]`, maps `W_k`
  `[d_k, d_n]` and biases `b_k` `[d_n]`, one BatchNormalization per size,
  and the non-trainable `size_index` int32 `[num_ids]` (0 at the start).
  Constructor arguments: `embedding.SizedTables`.

  Every size of an id is read at every step, so all tables are stored, side
  by side in one variable, `packed_tables` float32 `[num_ids, packed_dim]`:
  `E_k` is its columns `table_offsets[k] : table_offsets[k] + d_k`, and the
  row is padded with zero columns to a multiple of `ROW_ALIGNMENT` (222 ->
  224 columns for the paper's sizes). A batch then reads all its rows with
  one gather, and the optimizer updates a side's rows in one row-sparse step
  instead of one per size (BUILD_NOTES.md, "Speed": XLA's CPU scatters are
  about 3 times slower on 222-float rows than on aligned ones). The padding
  never gets a gradient, so it stays 0.
  """

  def __init__(self, *args, **kwargs):
    super().__init__(*args, **kwargs)
    # Column where each size's table starts in `packed_tables`.
    self.table_offsets = tuple(
        int(o) for o in np.cumsum([0] + list(self.candidate_sizes[:-1])))

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
    self._build_size_index()

  @property
  def table_variable(self) -> tf.Variable:
    return self.packed_tables

  def split_rows(self, rows: tf.Tensor) -> List[tf.Tensor]:
    """Per size, the columns of `rows` float32 `[..., packed_dim]` of `E_k`.

    Returns:
      float32 `[..., d_k]` for each size `k`.
    """
    return [rows[..., o:o + d]
            for o, d in zip(self.table_offsets, self.candidate_sizes)]

  def table(self, k: int) -> tf.Tensor:
    o = self.table_offsets[k]
    return self.packed_tables[:, o:o + self.candidate_sizes[k]]

  def assign_table(self, k: int, values) -> None:
    o = self.table_offsets[k]
    self.packed_tables[:, o:o + self.candidate_sizes[k]].assign(values)

  def build(self, input_shape):
    self._build_tables()
    n_out = self.output_dim
    self.map_kernels = [
        self.add_weight(name=f'map_{d}_kernel', shape=(d, n_out),
                        initializer='glorot_uniform', trainable=True)
        for d in self.candidate_sizes]
    self.map_biases = [
        self.add_weight(name=f'map_{d}_bias', shape=(n_out,),
                        initializer='zeros', trainable=True)
        for d in self.candidate_sizes]
    self.batch_norms = []
    for d in self.candidate_sizes:
      bn = tf.keras.layers.BatchNormalization(
          momentum=self.batch_norm_momentum, name=f'batch_norm_{d}')
      bn.build((None, n_out))
      self.batch_norms.append(bn)
    super().build(input_shape)

  def lifted(self, ids: tf.Tensor, training=None) -> tf.Tensor:
    """Every size's normalised lifted vector: float32 `[batch, n, d_n]`."""
    rows = self.split_rows(tf.gather(self.packed_tables, ids))
    return tf.stack([
        bn(tf.matmul(row, kernel) + bias, training=training)
        for row, kernel, bias, bn in zip(rows, self.map_kernels,
                                         self.map_biases, self.batch_norms)
    ], axis=1)

  def call(self, ids, training=None, weights: Optional[tf.Tensor] = None):
    """Embeds ids as the `weights`-mixture of their sizes.

    Args:
      ids: int32/int64 `[batch]` rows in `0..num_ids-1`.
      training: whether the BNs use batch statistics.
      weights: float32 `[batch, n]` mixture weights; when None, the one-hot
        of each id's stored `size_index` (the hard architecture).

    Returns:
      float32 `[batch, d_n]`.
    """
    if weights is None:
      weights = tf.one_hot(tf.gather(self.size_index, ids), self.num_sizes)
    mixed = tf.einsum('bn,bnd->bd', weights, self.lifted(ids, training))
    return tf.tanh(mixed)
