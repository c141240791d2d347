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

from typing import Optional

import tensorflow as tf

from esapn_tf.layers import embedding


@tf.keras.utils.register_keras_serializable(package='esapn_tf')
class SoftSizeEmbedding(embedding.SizedTables):
  """Embedding tables of several sizes mixed by soft weights.

  Input: `ids` int32/int64 `[batch]`, rows in `0..num_ids-1`, and `weights`
  float32 `[batch, n]` (rows summing to 1).
  Output: float32 `[batch, candidate_sizes[-1]]`, in (-1, 1) (tanh).

  Variables: tables `E_k` float32 `[num_ids, d_k]` (packed in one variable,
  `embedding.SizedTables`), maps `W_k`
  `[d_k, d_n]` and biases `b_k` `[d_n]`, one BatchNormalization per size,
  and the non-trainable `size_index` int32 `[num_ids]` (0 at the start).
  Constructor arguments: `embedding.SizedTables`.
  """

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
