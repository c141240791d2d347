"""Tests for esapn_tf.layers.memory: the memory table."""

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from esapn_tf.layers import memory


class MemoryTableTest(tf.test.TestCase, parameterized.TestCase):

  def test_known_answer(self):
    # Four ids at sizes (2, 2, 4, 8): total 2 + 2 + 4 + 8 = 16 dims;
    # FIXED-8 needs 4 * 8 = 32 dims; ratio 16 / 32 = 0.5.
    table = memory.memory_table(np.array([0, 0, 1, 2]), (2, 4, 8), 8)
    self.assertEqual(table, {
        'counts': {'2': 2, '4': 1, '8': 1},
        'total_dims': 16,
        'fixed_dims': 32,
        'ratio': 0.5,
    })

  def test_unused_sizes_are_listed_with_zero_count(self):
    # Three ids all at size 4 of (2, 4, 8, 16): 12 of 3 * 16 = 48 dims.
    table = memory.memory_table(np.array([1, 1, 1]), (2, 4, 8, 16), 16)
    self.assertEqual(table['counts'], {'2': 0, '4': 3, '8': 0, '16': 0})
    self.assertEqual(table['total_dims'], 12)
    self.assertEqual(table['fixed_dims'], 48)
    self.assertEqual(table['ratio'], 0.25)

  @parameterized.named_parameters(
      dict(testcase_name='largest', size=8, ratio=1.0),
      dict(testcase_name='smallest', size=2, ratio=0.25))
  def test_single_size_as_fixed_baseline(self, size, ratio):
    # method=fixed: one candidate, every id at index 0.
    table = memory.memory_table(np.zeros([5], np.int32), (size,), 8)
    self.assertEqual(table['counts'], {str(size): 5})
    self.assertEqual(table['total_dims'], 5 * size)
    self.assertEqual(table['fixed_dims'], 40)
    self.assertEqual(table['ratio'], ratio)

  def test_no_ids(self):
    table = memory.memory_table(np.zeros([0], np.int64), (2, 4), 4)
    self.assertEqual(table['counts'], {'2': 0, '4': 0})
    self.assertEqual(table['fixed_dims'], 0)
    self.assertEqual(table['ratio'], 0.0)


if __name__ == '__main__':
  tf.test.main()
