"""Tests for esapn_tf.layers.memory: the memory table."""

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from esapn_tf.layers import embedding
from esapn_tf.layers import memory
from esapn_tf.layers import pooled_embedding


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


class EmbeddingFloorBytesTest(tf.test.TestCase):

  def test_known_answers(self):
    sizes = (2, 4, 8)
    # Dense: 10 + 20 ids x 8 floats x 4 bytes x 3 (row and two moments).
    self.assertEqual(memory.embedding_floor_bytes((10, 20), sizes, (0, 0),
                                                  pooled=False), 30 * 96)
    # Pooled under budgets 0.5 and 0.25: 40 and 40 floats; without a
    # budget: every id at size 2.
    self.assertEqual(memory.embedding_floor_bytes((10, 20), sizes,
                                                  (0.5, 0.25), pooled=True),
                     80 * 12)
    self.assertEqual(memory.embedding_floor_bytes((10, 20), sizes, (0, 0),
                                                  pooled=True), 60 * 12)
    # A budget below the smallest size still holds every id at it.
    self.assertEqual(memory.embedding_floor_bytes((10,), sizes, (0.1,),
                                                  pooled=True), 20 * 12)


class TrainStateBytesTest(tf.test.TestCase):

  def test_dense_fixed_layout_is_the_reference(self):
    """FIXED-8 (dense, one size): rows + 2 moments = the reference, plus
    its 4-byte size index per id."""
    layer = embedding.MultiSizeEmbedding(10, (8,))
    layer.build(None)
    out = memory.train_state_bytes([layer, layer], 8)
    self.assertEqual(out['fixed_total'], 2 * 10 * 8 * 4 * 3)
    self.assertEqual(out['tables'] + out['slots'], out['fixed_total'])
    self.assertEqual(out['total'], out['fixed_total'] + 2 * 40)

  def test_pooled_budget_is_about_the_budget(self):
    """B = 0.25 of FIXED-8 on 100 ids: 131 blocks of 2 floats (see
    pooled_embedding_test) x 3, against 100 x 8 x 12 bytes."""
    layer = pooled_embedding.PooledEmbedding(100, (2, 4, 8), budget=0.25,
                                             headroom=5)
    layer.build(None)
    out = memory.train_state_bytes([layer], 8)
    self.assertEqual(out['tables'] + out['slots'], 131 * 2 * 4 * 3)
    self.assertAllClose(out['ratio'],
                        (131 * 24 + out['index']) / 9600.0)


if __name__ == '__main__':
  tf.test.main()
