"""Tests for `PooledEmbedding`: the pooled layout against the dense one.

`layers/pooled_embedding.py`; the trainer-level comparison (a whole ESAPN
run, pooled against dense) is `tests/training/pooled_storage_test.py`.
"""

import numpy as np
import tensorflow as tf

from esapn_tf.layers import embedding
from esapn_tf.layers import pooled_embedding
from esapn_tf.optimizers import lazy_adam

_SIZES = (2, 4, 8)


def _pair(num_ids, headroom=2, budget=0.0):
  """A dense and a pooled layer holding the same values."""
  tf.keras.utils.set_random_seed(0)
  dense = embedding.MultiSizeEmbedding(num_ids, _SIZES)
  dense.build(None)
  pooled = pooled_embedding.PooledEmbedding(num_ids, _SIZES, budget=budget,
                                            headroom=headroom)
  pooled.build(None)
  others = [v for v in dense.weights if v is not dense.embeddings and
            v is not dense.size_index]
  mine = [v for v in pooled.weights if v.name in {o.name for o in others}]
  for a, b in zip(others, mine):
    b.assign(a)
  pooled.assign_rows(tf.range(num_ids), dense.embeddings)
  return dense, pooled


class PooledEmbeddingTest(tf.test.TestCase):

  def test_same_outputs_and_adam_as_dense_with_reuse(self):
    """Random enlargements and Adam steps: pooled == dense at every step.

    Enlargements reach every size, so every pool receives rows, frees rows
    (pushed on its stack) and re-lays out; a freed start block is used
    again by another id (row reuse).
    """
    n = 7
    dense, pooled = _pair(n)
    opt_d = lazy_adam.LazyAdam(dense.trainable_weights, 0.05)
    opt_p = lazy_adam.LazyAdam(pooled.trainable_weights, 0.05)
    pooled.attach_optimizer(opt_p)
    rng = np.random.RandomState(0)
    owners = {}  # start block -> ids that held it
    for _ in range(30):
      pooled.reserve(3)
      ids = tf.constant(rng.randint(0, n, size=6), tf.int32)
      mask = tf.constant((rng.rand(n) < 0.3)[ids.numpy()])
      self.assertAllEqual(dense.enlarge(ids, mask, opt_d),
                          pooled.enlarge(ids, mask, opt_p))
      for layer, opt in ((dense, opt_d), (pooled, opt_p)):
        with tf.GradientTape() as tape:
          y = layer(ids, training=True)
          loss = tf.reduce_sum(y * tf.range(8, dtype=tf.float32))
        table = layer.table_variable
        rest = [v for v in layer.trainable_weights if v is not table]
        grads = tape.gradient(loss, [table] + rest)
        opt.apply_gradients(zip(grads[1:], rest))
        layer.apply_gradients(opt, grads[0], ids)
      self.assertAllClose(dense(tf.range(n), training=False),
                          pooled(tf.range(n), training=False), atol=1e-6)
      for i, s in enumerate(pooled.start_block.numpy()):
        owners.setdefault((int(pooled.size_index[i]), int(s)), set()).add(i)
    self.assertAllEqual(dense.size_index, pooled.size_index)
    self.assertAllEqual(pooled.counts, np.bincount(
        pooled.size_index.numpy(), minlength=3))
    self.assertAllEqual(pooled.size_index, [2] * n)
    self.assertGreater(pooled.relayouts, 0)
    self.assertTrue(any(len(v) > 1 for v in owners.values()))
    # Moments of every id's stored entries agree too.
    m_d, _ = opt_d.slots(dense.embeddings)
    m_p, _ = opt_p.slots(pooled.arena)
    blocks = pooled.start_block.numpy()[:, None] + np.arange(4)
    self.assertAllClose(m_p.numpy()[blocks].reshape(n, 8), m_d.numpy(),
                        atol=1e-6)

  def test_enlarging_into_a_full_pool_is_refused(self):
    """No free row in pool 1 and no reserve: the enlargement is masked."""
    _, pooled = _pair(4, headroom=1)
    # Pool 2 can receive nothing before pool 1 holds an id: no free row.
    self.assertAllEqual(pooled.num_free, [0, 1, 0])
    before = pooled(tf.range(4), training=False)
    moved = pooled.enlarge(tf.constant([0, 1, 1, 2]))
    # Id 0 takes pool 1's only free row; ids 1 and 2 are refused.
    self.assertAllEqual(moved, [True, False, False, False])
    self.assertAllEqual(pooled.size_index, [1, 0, 0, 0])
    self.assertAllEqual(pooled.counts, [3, 1, 0])
    self.assertAllEqual(pooled.num_free, [1, 0, 0])
    # Function-preserving, and the refused ids read their old rows.
    self.assertAllClose(pooled(tf.range(4), training=False), before,
                        atol=1e-6)
    # After a re-layout there is room again.
    self.assertTrue(pooled.reserve(1))
    self.assertAllEqual(pooled.enlarge(tf.constant([1])), [True])

  def test_budget_sizes_the_arena_once(self):
    """With a budget the arena holds B x N x d_n floats plus headroom.

    N = 100, B = 0.25, d_n = 8, g = 2: ceil(0.25 * 100 * 4) = 100 blocks
    for the live rows, plus headroom 5 rows in pools 1 and 2 (widths 2, 4):
    30 blocks, plus the sink: 131 blocks of 2 floats.
    """
    pooled = pooled_embedding.PooledEmbedding(100, _SIZES, budget=0.25,
                                              headroom=5)
    pooled.build(None)
    self.assertEqual(int(tf.shape(pooled.arena)[0]), 131)
    bytes_ = pooled.storage_bytes()
    self.assertEqual(bytes_['tables'], 131 * 2 * 4)
    self.assertEqual(bytes_['slots'], 2 * 131 * 2 * 4)
    # Per-id index: size_index and start_block (8 bytes per id), the free
    # stacks (min(N, blocks // w_k) per pool: 100 + 65 + 32, plus a sink)
    # and three int32 [n] vectors.
    self.assertEqual(bytes_['index'], 4 * (200 + 198 + 9))
    # Re-layouts keep the arena's size under a budget.
    pooled.enlarge(tf.range(5))
    pooled.reserve()
    self.assertEqual(int(tf.shape(pooled.arena)[0]), 131)

  def test_every_pool_gets_free_rows_up_front(self):
    """A pool no id can reach yet (its size below is empty) still gets a
    share of the spare blocks, so the first ids to reach each size cost no
    re-layout (an O(arena) numpy pass: seconds at 10M ids).

    N = 1000, B = 0.5, d_n = 8, headroom 10: 2000 blocks for the budget
    plus 10 + 10 rows of slack, 1000 live blocks at size 2. Pools 1 and 2
    (widths 2 and 4) share the spare in proportion to their headroom
    times width.
    """
    pooled = pooled_embedding.PooledEmbedding(1000, _SIZES, budget=0.5,
                                              headroom=10)
    pooled.build(None)
    free = pooled.num_free.numpy()
    self.assertEqual(free[0], 0)
    self.assertGreaterEqual(free[1], 10)
    self.assertGreaterEqual(free[2], 10)
    # The spare blocks (2,060 - 1,000) are all given out: 2 x free[1] +
    # 4 x free[2] of them, to within a row of each pool.
    self.assertGreater(2 * free[1] + 4 * free[2], 1060 - 2 - 4)
    # Ids that reach size 1, then size 2, need no re-layout.
    pooled.enlarge(tf.range(10))
    self.assertFalse(pooled.needs_relayout())
    pooled.enlarge(tf.range(10))
    self.assertFalse(pooled.needs_relayout())
    self.assertEqual(pooled.relayouts, 0)

  def test_headroom_is_what_one_step_can_move_in(self):
    """Pool k needs free rows only for ids that can come from pool k-1.

    N = 100, sizes (2, 4, 8), headroom 30. Counts (95, 5, 0): pool 1 can
    receive min(30, 95, 95) = 30 ids, pool 2 min(30, 5, 100) = 5. With a
    budget B = 0.3 (240 dims) and 95 x 2 + 5 x 4 = 210 live dims, the room
    is 30 dims: 15 ids into pool 1 (2 dims each), 7.5 -> 8 into pool 2.
    """
    layer = pooled_embedding.PooledEmbedding(100, _SIZES, headroom=30)
    self.assertAllEqual(layer._wanted(np.array([95, 5, 0])), [0, 30, 5])  # pylint: disable=protected-access
    self.assertAllEqual(layer._wanted(np.array([100, 0, 0])), [0, 30, 0])  # pylint: disable=protected-access
    budget = pooled_embedding.PooledEmbedding(100, _SIZES, budget=0.3,
                                              headroom=30)
    self.assertAllEqual(budget._wanted(np.array([95, 5, 0])), [0, 15, 5])  # pylint: disable=protected-access
    self.assertAllEqual(budget._wanted(np.array([80, 10, 10])), [0, 0, 0])  # pylint: disable=protected-access

  def test_budget_slack_follows_the_pace(self):
    """The slack is two steps of the pace's dims, per pool, at most.

    N = 100, B = 0.25, d_n = 8: 100 blocks of live rows; step_dims 3: pool
    1 (2 more dims) min(5, ceil(6 / 2)) = 3 rows of 2 blocks, pool 2 (4
    more dims) ceil(6 / 4) = 2 rows of 4 blocks: 14 blocks, + the sink.
    """
    pooled = pooled_embedding.PooledEmbedding(100, _SIZES, budget=0.25,
                                              headroom=5, step_dims=3.0)
    pooled.build(None)
    self.assertEqual(int(tf.shape(pooled.arena)[0]), 115)

  def test_dense_storage_bytes(self):
    layer = embedding.MultiSizeEmbedding(10, _SIZES)
    layer.build(None)
    self.assertEqual(layer.storage_bytes(),
                     {'tables': 320, 'slots': 640, 'index': 40})


if __name__ == '__main__':
  tf.test.main()
