"""Tests for MultiSizeEmbedding (DESIGN.md §2)."""

import esapn_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TF loads)
import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from esapn_tf.layers import embedding
from esapn_tf.optimizers import lazy_adam

SIZES = (2, 4, 8, 16, 64, 128)


class MultiSizeEmbeddingTest(tf.test.TestCase, parameterized.TestCase):

  def _layer(self, sizes=SIZES, num_ids=10):
    layer = embedding.MultiSizeEmbedding(num_ids, sizes,
                                         embeddings_initializer='ones')
    layer(tf.constant([0]))
    return layer

  def test_lift_known_answer(self):
    # Sizes (1, 2): E_0 = ones [3, 1], W = [[2, 3]], b = [1, -1].
    # Id 0 at size 0: lift = 1 * [2, 3] + [1, -1] = [3, 2].
    # Id 1 at size 1: its own row of E_1 = ones -> [1, 1].
    layer = self._layer(sizes=(1, 2), num_ids=3)
    layer.lift_kernels[0].assign([[2.0, 3.0]])
    layer.lift_biases[0].assign([1.0, -1.0])
    layer.size_index.assign([0, 1, 0])
    lifted = layer.lift(tf.constant([0, 1]))
    self.assertAllClose(lifted, [[3.0, 2.0], [1.0, 1.0]])

  def test_enlarge_known_answer(self):
    # Enlarging id 2 from size 0 writes E_1[2] = [1]*[2, 3] + [1, -1] = [3, 2]
    # and moves its index to 1; id 0 stays.
    layer = self._layer(sizes=(1, 2), num_ids=3)
    layer.lift_kernels[0].assign([[2.0, 3.0]])
    layer.lift_biases[0].assign([1.0, -1.0])
    layer.enlarge(tf.constant([2, 2, 0]),
                  tf.constant([True, True, False]))
    self.assertAllEqual(layer.size_index, [0, 0, 1])
    self.assertAllClose(layer.tables[1][2], [3.0, 2.0])
    self.assertAllClose(layer.tables[1][0], [1.0, 1.0])

  @parameterized.named_parameters(('paper_sizes', SIZES), ('two', (4, 16)),
                                  ('three', (2, 8, 32)))
  def test_enlarge_leaves_output_unchanged(self, sizes):
    tf.keras.utils.set_random_seed(1)
    layer = embedding.MultiSizeEmbedding(50, sizes)
    ids = tf.constant(np.arange(50) % 37, tf.int32)
    layer(ids, training=True)  # give the BN non-trivial statistics
    for _ in range(len(sizes) + 1):  # up to and past the largest size
      before = layer(ids, training=False)
      mask = tf.constant(np.arange(50) % 37 % 2 == 0)
      layer.enlarge(ids, mask)
      after = layer(ids, training=False)
      self.assertAllClose(before, after, atol=1e-5)
    # Even ids reached the largest size, odd ones never moved.
    self.assertAllEqual(tf.gather(layer.size_index, [0, 2, 4]),
                        [len(sizes) - 1] * 3)
    self.assertAllEqual(tf.gather(layer.size_index, [1, 3, 5]), [0, 0, 0])

  def test_enlarge_at_largest_is_noop(self):
    layer = self._layer(sizes=(2, 4), num_ids=2)
    layer.size_index.assign([1, 1])
    row = layer.tables[1].numpy().copy()
    enlarged = layer.enlarge(tf.constant([0, 1]))
    self.assertAllEqual(enlarged, [False, False])
    self.assertAllEqual(layer.size_index, [1, 1])
    self.assertAllClose(layer.tables[1], row)

  def test_embeddings_hold_each_ids_current_row(self):
    # Sizes (1, 2, 3): one [2, 3] variable; table k is its first d_k
    # columns.
    layer = self._layer(sizes=(1, 2, 3), num_ids=2)
    self.assertEqual(layer.embeddings.shape, (2, 3))
    self.assertIs(layer.table_variable, layer.embeddings)
    layer.assign_table(1, [[2.0, 3.0], [4.0, 5.0]])
    self.assertAllEqual(layer.embeddings, [[2, 3, 1], [4, 5, 1]])
    self.assertAllEqual(layer.table(1), [[2, 3], [4, 5]])
    self.assertEqual([t.shape for t in layer.tables], [(2, 1), (2, 2), (2, 3)])
    # Enlarging id 1 from size 1 writes its 3 columns: [4, 5] W + b.
    layer.size_index.assign([1, 1])
    layer.lift_kernels[1].assign([[1.0, 0.0, 2.0], [0.0, 1.0, 0.0]])
    layer.lift_biases[1].assign([0.5, 0.0, 0.0])
    layer.enlarge(tf.constant([1]))
    self.assertAllEqual(layer.embeddings, [[2, 3, 1], [4.5, 5, 8]])

  def test_current_rows_match_separate_tables(self):
    # Storing each id's current row, with Adam's rows reset at enlargement,
    # must compute what one variable per size did: the same lifted vectors,
    # gradients, enlargement writes and LazyAdam rows, over steps with
    # enlargements between them. Reference: separate variables E_k, every
    # table gathered, the per-table code of the first version.
    tf.keras.utils.set_random_seed(3)
    layer = embedding.MultiSizeEmbedding(12, SIZES)
    layer(tf.constant([0]))
    layer.size_index.assign(np.arange(12) % len(SIZES))
    separate = [tf.Variable(t) for t in layer.tables]
    ids = tf.constant([3, 7, 7, 0, 11, 5, 3, 2], tf.int32)

    def reference_lift():
      s = tf.expand_dims(tf.gather(layer.size_index, ids), -1)
      x = tf.gather(separate[0], ids)
      for k in range(1, len(SIZES)):
        x = tf.matmul(x, layer.lift_kernels[k - 1]) + layer.lift_biases[k - 1]
        x = tf.where(s == k, tf.gather(separate[k], ids), x)
      return x

    adam = lazy_adam.LazyAdam([layer.embeddings], 0.01)
    separate_adam = lazy_adam.LazyAdam(separate, 0.01)
    weights = tf.constant(np.linspace(-1.0, 1.0, 8 * 128).reshape(8, 128),
                          tf.float32)
    masks = [[True, False, False, True, True, True, True, False],
             [False, True, True, True, False, False, False, True],
             [True, True, True, False, False, True, True, True]]
    for mask in masks:
      # Two Adam steps, so that the moments matter.
      for _ in range(2):
        with tf.GradientTape(persistent=True) as tape:
          lifted = layer.lift(ids)
          reference = reference_lift()
          loss = tf.reduce_sum(lifted * weights)
          separate_loss = tf.reduce_sum(reference * weights)
        self.assertAllClose(lifted, reference, rtol=1e-5, atol=1e-6)
        grad = tape.gradient(loss, layer.embeddings)
        separate_grads = tape.gradient(separate_loss, separate)
        self.assertAllEqual(grad.indices, ids)
        adam.apply_row_gradients(ids, [(grad.values, layer.embeddings)])
        separate_adam.apply_row_gradients(
            ids, [(g.values, v) for g, v in zip(separate_grads, separate)])
      # Enlargement: E_{k+1}[id] = E_k[id] W_k + b_k for the ids at size k;
      # the new row's moments start at 0, as a new table's row.
      current = tf.gather(layer.size_index, ids).numpy()
      enlarged = layer.enlarge(ids, tf.constant(mask))
      adam.reset_rows(layer.embeddings, ids, enlarged)
      for row in set(ids.numpy()[enlarged.numpy()]):
        k = current[list(ids.numpy()).index(row)]
        lifted = (separate[k][row:row + 1] @ layer.lift_kernels[k] +
                  layer.lift_biases[k])
        separate[k + 1][row].assign(lifted[0])
    self.assertGreater(int(tf.reduce_sum(layer.size_index)),
                       int(np.sum(np.arange(12) % len(SIZES))) + 4)
    m, v = adam.slots(layer.embeddings)
    for row in range(12):
      k = int(layer.size_index[row])
      d = SIZES[k]
      self.assertAllClose(layer.embeddings[row, :d], separate[k][row],
                          rtol=1e-5, atol=1e-6)
      ref_m, ref_v = separate_adam.slots(separate[k])
      self.assertAllClose(m[row, :d], ref_m[row], rtol=1e-5, atol=1e-8)
      self.assertAllClose(v[row, :d], ref_v[row], rtol=1e-5, atol=1e-10)
    # Rows 1, 4 were in no batch: Adam never touched them.
    self.assertAllEqual(tf.gather(m, [1, 4]), tf.zeros([2, 128]))

  def test_output_shape_and_range(self):
    layer = embedding.MultiSizeEmbedding(7, SIZES)
    out = layer(tf.constant([0, 3, 6]), training=False)
    self.assertEqual(out.shape, (3, 128))
    self.assertAllInRange(out, -1.0, 1.0)

  def test_size_counts(self):
    layer = self._layer(num_ids=5)
    layer.size_index.assign([0, 0, 2, 5, 5])
    self.assertAllEqual(layer.size_counts(), [2, 0, 1, 0, 0, 2])

  @parameterized.named_parameters(
      ('not_increasing', (4, 2)), ('repeated', (2, 2, 4)), ('empty', ()),
      ('zero', (0, 2)))
  def test_bad_sizes(self, sizes):
    with self.assertRaisesRegex(ValueError, 'candidate_sizes'):
      embedding.MultiSizeEmbedding(3, sizes)

  def test_get_config_round_trip(self):
    layer = embedding.MultiSizeEmbedding(11, (2, 8), batch_norm_momentum=0.5,
                                         name='emb')
    clone = embedding.MultiSizeEmbedding.from_config(layer.get_config())
    self.assertEqual(clone.num_ids, 11)
    self.assertEqual(clone.candidate_sizes, (2, 8))
    self.assertEqual(clone.batch_norm_momentum, 0.5)
    self.assertEqual(clone.get_config(), layer.get_config())

  def test_xla_enlarge_matches_eager(self):
    tf.keras.utils.set_random_seed(2)
    a = embedding.MultiSizeEmbedding(20, SIZES)
    a(tf.constant([0]))
    b = embedding.MultiSizeEmbedding(20, SIZES)
    b(tf.constant([0]))
    b.set_weights(a.get_weights())
    ids = tf.constant([1, 5, 5, 19, 3], tf.int32)
    mask = tf.constant([True, True, True, False, True])
    a.enlarge(ids, mask)
    tf.function(b.enlarge, jit_compile=True)(ids, mask)
    for x, y in zip(a.get_weights(), b.get_weights()):
      self.assertAllClose(x, y)


if __name__ == '__main__':
  tf.test.main()
