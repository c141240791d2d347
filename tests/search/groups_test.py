"""Tests for the per-batch groups of equal keys (`search/groups.py`)."""

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from esapn_tf.search import groups

# Keys 9, 2, 9, 5, 2, 9: sorted distinct keys 2, 5, 9 are groups 0, 1, 2.
_KEYS = [9, 2, 9, 5, 2, 9]


def _run(fn, jit_compile, *args):
  """`fn(*args)` eagerly, or inside an XLA program with static shapes."""
  if jit_compile is None:
    return fn(*args)
  return tf.function(fn, jit_compile=jit_compile)(*args)


class GroupsTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.named_parameters(('eager', None), ('graph', False),
                                  ('xla', True))
  def test_known_answers(self, jit_compile):
    keys = tf.constant(_KEYS)
    values = tf.constant([1, 7, 3, 4, 5, 2])
    # Per key: 9 -> {1, 3, 2}, 2 -> {7, 5}, 5 -> {4}.
    self.assertAllEqual(_run(groups.group_index, jit_compile, keys),
                        [2, 0, 2, 1, 0, 2])
    self.assertAllEqual(_run(groups.max_per_key, jit_compile, values, keys),
                        [3, 7, 3, 4, 7, 3])
    self.assertAllEqual(_run(groups.min_per_key, jit_compile, values, keys),
                        [1, 5, 1, 4, 5, 1])
    self.assertAllEqual(_run(groups.one_per_key, jit_compile, keys),
                        [True, True, False, True, False, False])
    flags = tf.constant([False, False, True, False, False, False])
    self.assertAllEqual(_run(groups.any_per_key, jit_compile, flags, keys),
                        [True, False, True, False, False, True])
    # value_at: key 9's masked copy (position 2) holds [3, 30], key 2's
    # (position 4) [5, 50]; key 5 has none -> zeros.
    mask = tf.constant([False, False, True, False, True, False])
    rows = tf.constant([[1.0, 10.0], [7.0, 70.0], [3.0, 30.0], [4.0, 40.0],
                        [5.0, 50.0], [2.0, 20.0]])
    self.assertAllEqual(
        _run(groups.value_at, jit_compile, mask, rows, keys),
        [[3.0, 30.0], [5.0, 50.0], [3.0, 30.0], [0.0, 0.0], [5.0, 50.0],
         [3.0, 30.0]])

  def test_first_and_last_copies_follow_the_running_frequency(self):
    # Id 4 occurs at frequencies 3, 1, 2 (not in stream order on purpose):
    # first copy = frequency 1, last = frequency 3.
    ids = tf.constant([4, 4, 8, 4])
    frequency = tf.constant([3, 1, 6, 2])
    self.assertAllEqual(groups.first_copies(ids, frequency),
                        [False, True, True, False])
    self.assertAllEqual(groups.last_copies(ids, frequency),
                        [True, False, True, False])

  def test_matches_the_reduction_over_every_id(self):
    # The old, `num_ids`-sized reduction gives the same answers on a random
    # batch with many repeats, including negative keys (the -1 of
    # `trials.start`) and int64 keys.
    rng = np.random.default_rng(0)
    keys = rng.integers(-1, 40, 500)
    values = rng.integers(0, 1000, 500).astype(np.int32)
    shift = keys + 1
    expected = tf.gather(tf.math.unsorted_segment_max(values, shift, 41),
                         shift)
    for dtype in (tf.int32, tf.int64):
      self.assertAllEqual(
          groups.max_per_key(values, tf.constant(keys, dtype)), expected)

  def test_empty_batch(self):
    empty = tf.zeros([0], tf.int32)
    self.assertEqual(groups.group_index(empty).shape, (0,))
    self.assertEqual(groups.max_per_key(empty, empty).shape, (0,))
    self.assertEqual(groups.one_per_key(empty).shape, (0,))


if __name__ == '__main__':
  tf.test.main()
