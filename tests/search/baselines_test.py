"""Tests for esapn_tf.search.baselines: each method's size selection."""

import numpy as np
import tensorflow as tf

from esapn_tf.search import baselines

_SIZES = (2, 4, 8, 16, 64, 128)


class DartsWeightsTest(tf.test.TestCase):

  def test_weights_are_a_softmax_of_the_id_rows(self):
    darts = baselines.DartsWeights(num_ids=5, num_sizes=3)
    darts.alpha.assign(np.random.RandomState(0).normal(size=(5, 3)) * 3)
    ids = tf.constant([4, 0, 4, 2])
    w = darts.weights(ids, tf.constant([1, 1, 2, 1])).numpy()
    self.assertAllClose(w.sum(-1), np.ones(4), atol=1e-6)
    self.assertTrue(np.all(w > 0))
    alpha = darts.alpha.numpy()[[4, 0, 4, 2]]
    expected = np.exp(alpha) / np.exp(alpha).sum(-1, keepdims=True)
    self.assertAllClose(w, expected, atol=1e-6)
    # Copies of one id share its weights whatever their frequency.
    self.assertAllEqual(w[0], w[2])

  def test_fresh_ids_have_uniform_weights(self):
    darts = baselines.DartsWeights(num_ids=3, num_sizes=4)
    self.assertAllClose(darts.weights(tf.constant([0, 2]), None),
                        np.full((2, 4), 0.25))


class AutoEmbControllerTest(tf.test.TestCase):

  def test_weights_sum_to_one_and_depend_on_frequency(self):
    tf.keras.utils.set_random_seed(0)
    controller = baselines.AutoEmbController(
        num_ids=6, num_sizes=len(_SIZES), num_frequency_buckets=8,
        frequency_embedding_dim=4, hidden_units=8)
    ids = tf.constant([1, 1, 3, 5])
    w = controller.weights(ids, tf.constant([1, 200, 4, 4])).numpy()
    self.assertEqual(w.shape, (4, len(_SIZES)))
    self.assertAllClose(w.sum(-1), np.ones(4), atol=1e-6)
    self.assertTrue(np.all(w > 0))
    # Same id, frequencies in different buckets: different weights.
    self.assertGreater(np.abs(w[0] - w[1]).max(), 1e-4)

  def test_remember_stores_the_last_copy_of_each_id(self):
    controller = baselines.AutoEmbController(num_ids=4, num_sizes=2,
                                             hidden_units=4)
    ids = tf.constant([2, 0, 2, 2])
    frequency = tf.constant([5, 1, 7, 6])  # the last copy of 2 has f = 7
    weights = tf.constant([[0.1, 0.9], [0.3, 0.7], [0.8, 0.2], [0.6, 0.4]])
    controller.remember(ids, frequency, weights)
    current = controller.current.numpy()
    self.assertAllClose(current[2], [0.8, 0.2])
    self.assertAllClose(current[0], [0.3, 0.7])
    self.assertAllClose(current[1], [0.5, 0.5])  # untouched: uniform
    self.assertAllClose(current[3], [0.5, 0.5])


class MdeTest(tf.test.TestCase):

  def test_more_frequent_ids_get_larger_sizes(self):
    counts = np.array([0, 1, 2, 5, 20, 100, 1000, 3, 1000, 50])
    index = baselines.mde_size_indices(counts, _SIZES, temperature=0.5)
    order = np.argsort(counts, kind='stable')
    self.assertTrue(np.all(np.diff(index[order]) >= 0), index[order])
    self.assertEqual(index[6], len(_SIZES) - 1)  # the most frequent: 128
    self.assertEqual(index[0], 0)  # unseen in train: the smallest size
    # d = 128 * (count / 1000)^0.5 -> nearest size in log2:
    # 1 -> 4.05 -> 4; 5 -> 9.05 -> 8; 20 -> 18.1 -> 16; 100 -> 40.5 -> 64
    # (log2 40.5 = 5.34, nearer 6 than 4).
    self.assertEqual([_SIZES[i] for i in index[[1, 3, 4, 5]]], [4, 8, 16, 64])

  def test_temperature_zero_gives_every_seen_id_the_largest_size(self):
    index = baselines.mde_size_indices(np.array([1, 7, 300, 0]), _SIZES, 0.0)
    self.assertAllEqual(index, [5, 5, 5, 0])

  def test_higher_temperature_uses_less_memory(self):
    counts = np.random.RandomState(0).zipf(1.5, size=2000).clip(max=10**5)
    dims = [np.take(_SIZES, baselines.mde_size_indices(counts, _SIZES, t)).sum()
            for t in (0.1, 0.3, 0.6, 1.0)]
    self.assertTrue(all(a > b for a, b in zip(dims, dims[1:])), dims)

  def test_bad_temperature(self):
    with self.assertRaisesRegex(ValueError, 'temperature'):
      baselines.mde_size_indices(np.array([1]), _SIZES, 1.5)


class PruningTest(tf.test.TestCase):

  def test_budget_is_met_exactly_by_the_largest_magnitudes(self):
    table = np.random.RandomState(1).normal(size=(50, 16)).astype(np.float32)
    for budget in (0, 1, 333, 799, 800):
      mask = baselines.prune_mask(table, budget)
      self.assertEqual(int(mask.sum()), budget)
      if 0 < budget < table.size:
        kept = np.abs(table[mask == 1])
        dropped = np.abs(table[mask == 0])
        self.assertGreaterEqual(kept.min(), dropped.max())

  def test_ties_are_broken_by_position(self):
    table = np.ones((3, 2), np.float32)
    self.assertAllEqual(baselines.prune_mask(table, 3),
                        [[1, 1], [1, 0], [0, 0]])

  def test_budget_out_of_range(self):
    with self.assertRaisesRegex(ValueError, 'kept_entries'):
      baselines.prune_mask(np.zeros((2, 2)), 5)

  def test_kept_entries_rounds(self):
    self.assertEqual(baselines.kept_entries(0.2902, 9724, 128), 361_204)
    self.assertEqual(baselines.kept_entries(1.0, 10, 8), 80)

  def test_pruned_memory_table(self):
    table = baselines.pruned_memory_table(np.array([0, 1, 2, 3, 8, 9, 128]),
                                          _SIZES, 128)
    self.assertEqual(table['counts'], {'0': 1, '2': 2, '4': 1, '8': 1,
                                       '16': 1, '64': 0, '128': 1})
    self.assertEqual(table['total_dims'], 151)
    self.assertEqual(table['fixed_dims'], 7 * 128)
    self.assertAlmostEqual(table['ratio'], 151 / 896)


if __name__ == '__main__':
  tf.test.main()
