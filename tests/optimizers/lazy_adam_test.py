"""Tests for LazyAdam: Adam's update on touched rows, nothing elsewhere."""

import esapn_tf  # noqa: F401
import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from esapn_tf.optimizers import lazy_adam


class SumDuplicateRowsTest(tf.test.TestCase):

  def test_known_answer(self):
    # Rows 3, 1, 3, 0: row 3 appears twice -> [1,1] + [5,5] = [6,6].
    unique, summed, valid = lazy_adam.sum_duplicate_rows(
        tf.constant([3, 1, 3, 0]),
        tf.constant([[1.0, 1.0], [2.0, 2.0], [5.0, 5.0], [7.0, 7.0]]))
    self.assertAllEqual(valid, [True, True, True, False])
    self.assertAllEqual(unique[:3], [0, 1, 3])
    self.assertAllClose(summed, [[7, 7], [2, 2], [6, 6], [0, 0]])


class LazyAdamTest(tf.test.TestCase, parameterized.TestCase):

  def _sparse_grad(self, table, ids, upstream):
    with tf.GradientTape() as tape:
      loss = tf.reduce_sum(tf.gather(table, ids) * upstream)
    return tape.gradient(loss, table)

  @parameterized.named_parameters(('eager', False), ('xla', True))
  def test_matches_keras_adam_on_touched_rows(self, jit_compile):
    # Every row is touched every step (rows 0 and 2 twice): the lazy update
    # must equal Keras' Adam, whose dense update is then the same thing.
    init = np.arange(12, dtype=np.float32).reshape(4, 3) / 10.0
    lazy_var = tf.Variable(init)
    keras_var = tf.Variable(init)
    lazy = lazy_adam.LazyAdam([lazy_var], learning_rate=0.1)
    keras = tf.keras.optimizers.Adam(learning_rate=0.1, epsilon=1e-7)
    ids = tf.constant([0, 1, 2, 3, 0, 2])
    rng = np.random.default_rng(0)

    def step(upstream):
      lazy.apply_gradients(
          [(self._sparse_grad(lazy_var, ids, upstream), lazy_var)])
    step = tf.function(step, jit_compile=jit_compile)
    for _ in range(3):
      upstream = tf.constant(rng.normal(size=(6, 3)), tf.float32)
      step(upstream)
      grad = self._sparse_grad(keras_var, ids, upstream)
      keras.apply_gradients([(tf.convert_to_tensor(grad), keras_var)])
    self.assertAllClose(lazy_var, keras_var, atol=1e-6)

  def test_untouched_rows_do_not_move(self):
    # Step 1 touches rows 0 and 1; step 2 only row 1. Row 0 keeps its value
    # after step 1 (dense Adam would keep moving it by momentum), rows 2, 3
    # never move.
    var = tf.Variable(tf.zeros([4, 2]))
    opt = lazy_adam.LazyAdam([var], learning_rate=0.5)
    g1 = self._sparse_grad(var, tf.constant([0, 1]), tf.ones([2, 2]))
    opt.apply_gradients([(g1, var)])
    # First Adam step moves each touched coordinate by -lr * sign(g).
    self.assertAllClose(var[:2], -0.5 * np.ones([2, 2]), atol=1e-5)
    row0 = var[0].numpy()
    g2 = self._sparse_grad(var, tf.constant([1]), tf.ones([1, 2]))
    opt.apply_gradients([(g2, var)])
    self.assertAllClose(var[0], row0)
    self.assertAllClose(var[2:], np.zeros([2, 2]))
    self.assertAllClose(opt.m[0][0], 0.1 * np.ones(2))  # not decayed

  def test_row_gradients_equal_indexed_slices(self):
    # Two tables gathered with the same (repeated) ids: the shared
    # bookkeeping must give exactly what one IndexedSlices update per table
    # gives.
    rng = np.random.default_rng(1)
    ids = tf.constant([4, 0, 4, 2])
    tables = [rng.normal(size=(5, d)).astype(np.float32) for d in (2, 3)]
    a = [tf.Variable(t) for t in tables]
    b = [tf.Variable(t) for t in tables]
    opt_a = lazy_adam.LazyAdam(a, learning_rate=0.1)
    opt_b = lazy_adam.LazyAdam(b, learning_rate=0.1)
    for _ in range(2):
      grads = [tf.constant(rng.normal(size=(4, t.shape[1])), tf.float32)
               for t in tables]
      opt_a.apply_row_gradients(ids, list(zip(grads, a)))
      opt_b.apply_gradients(
          [(tf.IndexedSlices(g, ids), v) for g, v in zip(grads, b)])
    for x, y in zip(a, b):
      self.assertAllClose(x, y)
    self.assertAllClose(a[1][1], tables[1][1])  # row 1 never touched

  def test_dense_gradient_is_plain_adam(self):
    a = tf.Variable([1.0, -2.0])
    b = tf.Variable([1.0, -2.0])
    lazy = lazy_adam.LazyAdam([a], learning_rate=0.01)
    keras = tf.keras.optimizers.Adam(learning_rate=0.01, epsilon=1e-7)
    for g in ([0.5, -1.0], [0.1, 0.3]):
      lazy.apply_gradients([(tf.constant(g), a)])
      keras.apply_gradients([(tf.constant(g), b)])
    self.assertAllClose(a, b, atol=1e-7)

  def test_checkpoint_round_trip(self):
    var = tf.Variable(tf.ones([3, 2]))
    opt = lazy_adam.LazyAdam([var])
    opt.apply_gradients([(self._sparse_grad(var, tf.constant([1]),
                                            tf.ones([1, 2])), var)])
    path = tf.train.Checkpoint(opt=opt).save(self.get_temp_dir() + '/ckpt')
    fresh = lazy_adam.LazyAdam([tf.Variable(tf.ones([3, 2]))])
    tf.train.Checkpoint(opt=fresh).restore(path).assert_consumed()
    self.assertEqual(int(fresh.iterations), 1)
    self.assertAllClose(fresh.m[0], opt.m[0])


if __name__ == '__main__':
  tf.test.main()
