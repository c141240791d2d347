"""Tests for esapn_tf.layers.soft_embedding.SoftSizeEmbedding."""

import numpy as np
import tensorflow as tf

from esapn_tf.layers import soft_embedding

_SIZES = (2, 4, 8)


def _layer(num_ids=6):
  tf.keras.utils.set_random_seed(0)
  layer = soft_embedding.SoftSizeEmbedding(num_ids, _SIZES)
  layer.build((None,))
  return layer


class SoftSizeEmbeddingTest(tf.test.TestCase):

  def test_output_is_the_weighted_mixture_of_each_sizes_path(self):
    layer = _layer()
    ids = tf.constant([0, 3, 5])
    w = tf.constant([[0.2, 0.3, 0.5], [1.0, 0.0, 0.0], [0.0, 0.1, 0.9]])
    out = layer(ids, training=False, weights=w).numpy()
    self.assertEqual(out.shape, (3, 8))
    expected = np.zeros((3, 8))
    for k, table in enumerate(layer.tables):
      bn = layer.batch_norms[k]
      lifted = (table.numpy()[ids.numpy()] @ layer.map_kernels[k].numpy() +
                layer.map_biases[k].numpy())
      lifted = ((lifted - bn.moving_mean.numpy()) /
                np.sqrt(bn.moving_variance.numpy() + bn.epsilon) *
                bn.gamma.numpy() + bn.beta.numpy())
      expected += w.numpy()[:, k:k + 1] * lifted
    self.assertAllClose(out, np.tanh(expected), atol=1e-5)

  def test_default_weights_are_the_stored_hard_sizes(self):
    layer = _layer()
    layer.size_index.assign([0, 2, 1, 0, 0, 2])
    ids = tf.constant([1, 2, 0])
    self.assertAllClose(
        layer(ids, training=False),
        layer(ids, training=False,
              weights=tf.one_hot([2, 1, 0], len(_SIZES))))

  def test_gradients_reach_only_sizes_with_weight(self):
    layer = _layer()
    ids = tf.constant([1])
    with tf.GradientTape() as tape:
      out = layer(ids, training=False, weights=tf.constant([[0.0, 1.0, 0.0]]))
      loss = tf.reduce_sum(out)
    grads = layer.split_rows(
        tape.gradient(loss, layer.packed_tables).values)
    self.assertEqual(float(tf.reduce_sum(tf.abs(grads[0]))), 0.0)
    self.assertGreater(float(tf.reduce_sum(tf.abs(grads[1]))), 0.0)
    self.assertEqual(float(tf.reduce_sum(tf.abs(grads[2]))), 0.0)

  def test_config_round_trip(self):
    layer = _layer(num_ids=4)
    clone = soft_embedding.SoftSizeEmbedding.from_config(layer.get_config())
    self.assertEqual(clone.num_ids, 4)
    self.assertEqual(clone.candidate_sizes, _SIZES)

  def test_bad_sizes(self):
    with self.assertRaisesRegex(ValueError, 'strictly increasing'):
      soft_embedding.SoftSizeEmbedding(3, (4, 2))


if __name__ == '__main__':
  tf.test.main()
