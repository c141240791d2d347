"""`MultiSizeEmbedding`: one embedding table per candidate size (DESIGN.md §2).

Each id (a user or an item row) has a current size index `s(id)` in
`0..n-1`. Its vector is the row `E_s[id]` of the table of size `d_s`, lifted
to the largest size `d_n` by the chain of affine maps
`e_{k+1} = e_k W_{k->k+1} + b_{k->k+1}`, then batch-normalised and squashed by
tanh. `enlarge(ids)` moves ids one size up and initialises their new row with
the lift of the old one, so the layer's output is unchanged at the switch.
"""

from typing import Optional, Sequence

import tensorflow as tf


class SizedTables(tf.keras.layers.Layer):
  """Base of the embedding layers: one table per candidate size, per id.

  Holds the constructor's validation, the tables `E_k` float32
  `[num_ids, d_k]` (`_build_tables`), the non-trainable `size_index` int32
  `[num_ids]` (0 at the start) and `get_config`.
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

  def _build_tables(self) -> None:
    """Creates `tables` (one per size) and `size_index`."""
    # A fresh initializer per table: one unseeded instance called twice
    # would give every table of the same shape the same values.
    init = self.embeddings_initializer
    self.tables = [
        self.add_weight(
            name=f'table_{d}', shape=(self.num_ids, d),
            initializer=init.__class__.from_config(init.get_config()),
            trainable=True)
        for d in self.candidate_sizes
    ]
    self.size_index = self.add_weight(
        name='size_index', shape=(self.num_ids,), dtype=tf.int32,
        initializer='zeros', trainable=False)

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

  Variables: tables `E_k` float32 `[num_ids, d_k]`, lifting kernels
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
    `s_i` to the largest size (DESIGN.md §2). All tables are gathered and the
    chain is evaluated once for the whole batch, so the cost does not depend
    on the mix of sizes.

    Args:
      ids: int `[batch]` rows.
      size_indices: int32 `[batch]` size index to read each row at.
    """
    size_indices = tf.expand_dims(tf.cast(size_indices, tf.int32), -1)
    x = tf.gather(self.tables[0], ids)
    for k in range(1, self.num_sizes):
      x = tf.matmul(x, self.lift_kernels[k - 1]) + self.lift_biases[k - 1]
      x = tf.where(size_indices == k, tf.gather(self.tables[k], ids), x)
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
    for k in range(self.num_sizes - 1):
      at_k = tf.logical_and(selected, tf.equal(current, k))
      new_rows = (tf.matmul(tf.gather(self.tables[k], ids),
                            self.lift_kernels[k]) + self.lift_biases[k])
      old_rows = tf.gather(self.tables[k + 1], ids)
      self.tables[k + 1].scatter_nd_update(
          scatter_ids, tf.where(tf.expand_dims(at_k, -1), new_rows, old_rows))
    self.size_index.scatter_nd_update(
        scatter_ids, current + tf.cast(selected, tf.int32))
    return selected
