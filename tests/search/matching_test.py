"""Tests for esapn_tf.search.matching: closed-form memory of the ablations."""

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from esapn_tf.search import baselines
from esapn_tf.search import frequency_matching
from esapn_tf.search import matching

_SIZES = (2, 4, 8, 16, 64, 128)

# Stream of 7 examples, batch_size 3, num_train 5:
#   position  0 1 2 | 3 4 || 5 6
#   id        0 1 0 | 2 3 || 3 1
# Train batches [0, 3) and [3, 5) (partial); the test part restarts the
# batching at 5: batch [5, 7) (partial). A single global batching
# (position // 3) would put 3, 4, 5 together and count id 3 once.
_STREAM = np.array([0, 1, 0, 2, 3, 3, 1])


class DecisionsPerIdTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.named_parameters(
      # id 0: twice in batch 0 -> 1. id 1: batches 0 and 2 -> 2.
      # id 2: batch 1 -> 1. id 3: last train batch 1 (partial) and first test
      # batch 2 (partial) -> 2. id 4: never -> 0.
      ('prequential', 7, [1, 2, 1, 2, 0]),
      # Test part frozen: only batches 0 and 1.
      ('frozen_test', 5, [1, 1, 1, 1, 0]),
      # Only position 5 of the test part: id 3 gets its second batch, id 1
      # not yet.
      ('one_test_example', 6, [1, 1, 1, 2, 0]),
      ('nothing', 0, [0, 0, 0, 0, 0]),
  )
  def test_known_stream(self, stop, expected):
    decisions = matching.decisions_per_id(_STREAM, num_ids=5, num_train=5,
                                          stop=stop, batch_size=3)
    self.assertEqual(decisions.dtype, np.int64)
    self.assertAllEqual(decisions, expected)

  def test_matches_a_loop_over_batches(self):
    rng = np.random.RandomState(0)
    ids = rng.randint(0, 30, size=1000)
    expected = np.zeros(30, np.int64)
    for start, end in [(0, 700), (700, 1000)]:  # the two parts
      for b in range(start, end, 64):
        expected[np.unique(ids[b:min(b + 64, end)])] += 1
    self.assertAllEqual(
        matching.decisions_per_id(ids, 30, 700, 1000, 64), expected)

  @parameterized.named_parameters(
      ('empty', np.array([], np.int64), 3, 0, 0, 2, 'non-empty'),
      ('id_too_large', _STREAM, 3, 5, 7, 3, r'ids must lie in \[0, 3\)'),
      ('negative_id', -_STREAM, 5, 5, 7, 3, r'\[-3, 0\]'),
      ('float_ids', _STREAM * 1.0, 5, 5, 7, 3, 'integers'),
      ('stop', _STREAM, 5, 5, 8, 3, r'stop must lie in \[0, 7\]'),
      ('num_train', _STREAM, 5, -1, 7, 3, 'num_train'),
      ('batch_size', _STREAM, 5, 5, 7, 0, 'batch_size'),
  )
  def test_bad_input(self, ids, num_ids, num_train, stop, batch_size, message):
    with self.assertRaisesRegex(ValueError, message):
      matching.decisions_per_id(ids, num_ids, num_train, stop, batch_size)


class RandomGrowthTest(tf.test.TestCase, parameterized.TestCase):

  def test_p_zero_and_one(self):
    decisions = np.array([0, 1, 2, 7])
    # p = 0: every id stays at 2: 2 / 16.
    self.assertAllClose(
        matching.random_growth_ratio(decisions, 0.0, (2, 4, 8, 16)), 2 / 16)
    # p = 1: index min(k, 3): 2 + 4 + 8 + 16 = 30 over 4 * 16 = 64.
    self.assertAllClose(
        matching.random_growth_ratio(decisions, 1.0, (2, 4, 8, 16)), 30 / 64)

  @parameterized.named_parameters(
      # Binomial(2, 1/2) = 0, 1, 2 w.p. 1/4, 1/2, 1/4:
      # E = 2/4 + 4/2 + 8/4 = 4.5 -> 4.5 / 8.
      ('two_decisions', [2], 4.5 / 8),
      # Capped: P(0) = 1/32, P(1) = 5/32, P(>=2) = 26/32:
      # E = (2 + 20 + 208) / 32 = 7.1875 -> / 8.
      ('five_decisions_capped', [5], 7.1875 / 8),
      # Adding an id without decisions (size 2): (4.5 + 2) / (2 * 8).
      ('with_an_unseen_id', [2, 0], 6.5 / 16),
  )
  def test_half(self, decisions, expected):
    self.assertAllClose(
        matching.random_growth_ratio(np.array(decisions), 0.5, (2, 4, 8)),
        expected, atol=1e-12)

  def test_large_decision_counts_do_not_overflow(self):
    # P(index < 5) = P(Binomial(10^6, 0.01) < 5) ~ 0: every id ends at 128.
    self.assertAllClose(
        matching.random_growth_ratio(np.array([10**6]), 0.01, _SIZES), 1.0)
    # With a tiny p the small indices keep their mass: k p = 10^-3, so
    # E ~ 2 + 10^-3 * (4 - 2) and the ratio stays near 2 / 128.
    ratio = matching.random_growth_ratio(np.array([10**6]), 1e-9, _SIZES)
    self.assertAllClose(ratio, (2 + 1e-3 * 2) / 128, rtol=1e-5)

  def test_matches_a_simulation_of_the_growth(self):
    # Simulates the rule itself on a stream (one coin per id per batch that
    # holds it, capped), not Binomial draws: also checks decisions_per_id.
    rng = np.random.RandomState(1)
    num_ids, num_train, batch_size, p = 40, 500, 16, 0.13
    ids = np.minimum(rng.zipf(1.4, size=620) - 1, num_ids - 1)
    sizes = np.array(_SIZES, np.float64)
    replicates = 2000
    index = np.zeros((replicates, num_ids), np.int64)
    starts = [(b, min(b + batch_size, num_train))
              for b in range(0, num_train, batch_size)]
    starts += [(b, min(b + batch_size, ids.size))
               for b in range(num_train, ids.size, batch_size)]
    for start, end in starts:
      present = np.unique(ids[start:end])
      grow = rng.random_sample((replicates, present.size)) < p
      index[:, present] = np.minimum(index[:, present] + grow, len(_SIZES) - 1)
    ratios = sizes[index].mean(axis=1) / sizes[-1]
    standard_error = ratios.std(ddof=1) / np.sqrt(replicates)
    decisions = matching.decisions_per_id(ids, num_ids, num_train, ids.size,
                                          batch_size)
    expected = matching.random_growth_ratio(decisions, p, _SIZES)
    self.assertLess(abs(ratios.mean() - expected), 3 * standard_error,
                    (ratios.mean(), expected, standard_error))

  @parameterized.named_parameters(
      ('low', 0.05), ('middle', 0.2), ('high', 0.33), ('at_p_zero', 2 / 128))
  def test_probability_round_trip(self, target):
    decisions = np.random.RandomState(2).zipf(1.6, size=5000).clip(max=10**4)
    p = matching.random_probability_for_ratio(decisions, target, _SIZES)
    self.assertBetween(p, 0.0, 1.0)
    self.assertAllClose(matching.random_growth_ratio(decisions, p, _SIZES),
                        target, atol=1e-4)

  def test_probability_for_a_hand_case(self):
    # One id, 2 decisions, sizes (2, 4, 8): E = 2(1-p)^2 + 8p(1-p) + 8p^2
    # = 2 + 4p + 2p^2; ratio 4.5 / 8 at p = 1/2 (the case above).
    p = matching.random_probability_for_ratio(np.array([2]), 4.5 / 8,
                                              (2, 4, 8))
    self.assertAllClose(p, 0.5, atol=1e-9)

  def test_unreachable_target_names_the_range(self):
    # p = 0: 2 / 8 = 0.25; p = 1: (2 + 8) / 16 = 0.625.
    with self.assertRaisesRegex(ValueError, r'\[0.25 \(p=0\), 0.625 \(p=1\)\]'):
      matching.random_probability_for_ratio(np.array([0, 3]), 0.7, (2, 4, 8))

  @parameterized.named_parameters(
      ('p_above_one', [1], 1.5, _SIZES, r'p must lie in \[0, 1\], got 1.5'),
      ('p_nan', [1], float('nan'), _SIZES, 'p must lie'),
      ('negative', [1, -2], 0.5, _SIZES, 'non-negative, got minimum -2'),
      ('fractional', [1.5], 0.5, _SIZES, 'whole numbers'),
      ('empty', [], 0.5, _SIZES, 'non-empty'),
      ('sizes_not_increasing', [1], 0.5, (4, 2, 8), 'strictly increasing'),
      ('no_sizes', [1], 0.5, (), 'non-empty'),
  )
  def test_bad_input(self, decisions, p, sizes, message):
    with self.assertRaisesRegex(ValueError, message):
      matching.random_growth_ratio(np.array(decisions), p, sizes)


class ThresholdTest(tf.test.TestCase, parameterized.TestCase):

  def test_size_indices_and_ratio(self):
    # t0 = 3, 4 sizes: thresholds 3, 6, 12.
    counts = np.array([0, 2, 3, 5, 6, 11, 12, 100])
    index = frequency_matching.threshold_size_indices(counts, 3.0, 4)
    self.assertEqual(index.dtype, np.int32)
    self.assertAllEqual(index, [0, 0, 1, 1, 2, 2, 3, 3])
    # (2 + 2 + 4 + 4 + 8 + 8 + 16 + 16) / (8 * 16) = 60 / 128.
    self.assertAllClose(frequency_matching.threshold_ratio(counts, 3.0, (2, 4, 8, 16)),
                        60 / 128)

  @parameterized.named_parameters(
      # counts 1, 2, 4, 8 with sizes (2, 4, 8) (thresholds t0, 2 t0):
      #   t0 in [1]:     indices 1 2 2 2 -> 4 + 8 + 8 + 8 = 28 -> 0.875
      #   t0 in (1, 2]:  0 1 2 2 -> 22 -> 0.6875
      #   t0 in (2, 4]:  0 0 1 2 -> 16 -> 0.5
      #   t0 in (4, 8]:  0 0 0 1 -> 10 -> 0.3125
      #   t0 > 8:        all 0   ->  8 -> 0.25 (returned as 2 * 8 = 16)
      ('nearest_below', 0.6, 2.0),  # |0.6875 - 0.6| < |0.5 - 0.6|
      ('tie_goes_to_larger', 0.59375, 4.0),  # halfway between 0.6875, 0.5
      ('top', 0.875, 1.0),
      ('bottom', 0.25, 16.0),
      ('between_last_steps', 0.29, 8.0),  # 0.04 from 0.25, 0.0225 from .3125
  )
  def test_threshold_for_a_hand_case(self, target, expected):
    self.assertEqual(
        frequency_matching.threshold_for_ratio(np.array([1, 2, 4, 8]), target,
                                     (2, 4, 8)), expected)

  @parameterized.named_parameters(('low', 0.03), ('middle', 0.1),
                                  ('high', 0.25))
  def test_threshold_is_the_nearest_step(self, target):
    counts = np.random.RandomState(3).zipf(1.5, size=3000).clip(max=5000)
    t0 = frequency_matching.threshold_for_ratio(counts, target, _SIZES)
    self.assertGreaterEqual(t0, 1.0)
    got = abs(frequency_matching.threshold_ratio(counts, t0, _SIZES) - target)
    # Every step: its right end c / 2**j, and a threshold above all counts.
    steps = np.unique(np.concatenate(
        [np.unique(counts)[:, None] / 2.0**np.arange(len(_SIZES) - 1)]
        ).ravel())
    steps = np.append(steps[steps >= 1], 2 * counts.max())
    best = min(abs(frequency_matching.threshold_ratio(counts, t, _SIZES) - target)
               for t in steps)
    self.assertAllClose(got, best, atol=1e-12)
    self.assertLess(got, 0.02)  # zipf counts: steps are fine-grained

  @parameterized.named_parameters(('above', 0.9), ('below', 0.2))
  def test_unreachable_threshold_target(self, target):
    with self.assertRaisesRegex(
        ValueError, r'\[0.25 \(t0=16\), 0.875 \(t0=1\)\]'):
      frequency_matching.threshold_for_ratio(np.array([1, 2, 4, 8]), target, (2, 4, 8))

  @parameterized.named_parameters(
      ('zero_threshold', [1], 0.0, 3, 'base_threshold must be positive'),
      ('negative_counts', [-1, 2], 1.0, 3, 'counts must be non-negative'),
      ('no_sizes', [1], 1.0, 0, 'num_sizes must be >= 1'),
  )
  def test_bad_input(self, counts, base_threshold, num_sizes, message):
    with self.assertRaisesRegex(ValueError, message):
      frequency_matching.threshold_size_indices(np.array(counts), base_threshold,
                                      num_sizes)


class MdeTemperatureTest(tf.test.TestCase, parameterized.TestCase):

  def _ratio(self, counts, alpha, sizes):
    index = baselines.mde_size_indices(counts, sizes, alpha)
    return np.take(sizes, index).mean() / sizes[-1]

  @parameterized.named_parameters(
      # counts 0, 1, 4, 16 with sizes (2, 4, 8, 16): log2 d = 4 + alpha
      # log2(c / 16), so c = 16 stays at 16, c = 0 at 2, c = 4 at 4 - 2 alpha
      # (to 8 at alpha = 1/4, to 4 at 3/4) and c = 1 at 4 - 4 alpha (to 8 at
      # 1/8, 4 at 3/8, 2 at 5/8). Sums (over 64):
      # [0, 1/8) 50; [1/8, 1/4) 42; [1/4, 3/8) 34; [3/8, 5/8) 30;
      # [5/8, 3/4) 28; [3/4, 1] 24.
      ('nearer_34', 33 / 64, 34 / 64, 0.25, 0.375),
      ('tie_goes_to_larger_alpha', 32 / 64, 30 / 64, 0.375, 0.625),
      ('top', 50 / 64, 50 / 64, 0.0, 0.125),
      ('bottom', 24 / 64, 24 / 64, 0.75, 1.0 + 1e-9),
  )
  def test_hand_case(self, target, expected_ratio, alpha_low, alpha_high):
    counts, sizes = np.array([0, 1, 4, 16]), (2, 4, 8, 16)
    alpha = frequency_matching.mde_temperature_for_ratio(counts, target, sizes)
    self.assertAllClose(self._ratio(counts, alpha, sizes), expected_ratio)
    # The steps start at the hand values up to float rounding of log2 d.
    self.assertGreaterEqual(alpha, alpha_low - 1e-12)
    self.assertLess(alpha, alpha_high)

  @parameterized.named_parameters(('low', 0.05), ('middle', 0.2),
                                  ('high', 0.5))
  def test_temperature_is_the_nearest_step(self, target):
    counts = np.random.RandomState(4).zipf(1.5, size=3000).clip(max=5000)
    counts[:100] = 0  # unseen in train
    alpha = frequency_matching.mde_temperature_for_ratio(counts, target, _SIZES)
    self.assertBetween(alpha, 0.0, 1.0)
    got = abs(self._ratio(counts, alpha, _SIZES) - target)
    # Every step starts where some id's log2 d crosses a midpoint m between
    # two log2 sizes: alpha = (log2 128 - m) / log2(max / c); check at each
    # start and just before it.
    logs = np.log2(_SIZES)
    seen = np.unique(counts[(counts > 0) & (counts < counts.max())])
    starts = ((logs[-1] - (logs[1:] + logs[:-1]) / 2)[None, :]
              / np.log2(counts.max() / seen)[:, None]).ravel()
    starts = starts[starts <= 1]
    grid = np.concatenate([starts, np.nextafter(starts, 0), [0.0, 1.0]])
    best = min(abs(self._ratio(counts, a, _SIZES) - target) for a in grid)
    self.assertLessEqual(got, best + 1e-12)

  @parameterized.named_parameters(('above', 0.8), ('below', 0.3))
  def test_unreachable_mde_target(self, target):
    # Range [24 / 64, 50 / 64] = [0.375, 0.78125].
    with self.assertRaisesRegex(
        ValueError, r'\[0.375 \(alpha=1\), 0.78125 \(alpha=0\)\]'):
      frequency_matching.mde_temperature_for_ratio(np.array([0, 1, 4, 16]), target,
                                         (2, 4, 8, 16))

  def test_bad_counts(self):
    with self.assertRaisesRegex(ValueError, 'train_counts must be non-neg'):
      frequency_matching.mde_temperature_for_ratio(np.array([3, -1]), 0.5, _SIZES)


if __name__ == '__main__':
  tf.test.main()
