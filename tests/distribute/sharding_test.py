"""Tests for `distribute/sharding.py` on local `ShardedVariable`s (no cluster).

A `ShardedVariable` is built here from plain variables in TF's "div" layout
(the first shards one row longer when the rows do not divide evenly: 10
rows in 3 shards = 4, 3, 3), the layout a `variable_partitioner` gives under
`tf.distribute.ParameterServerStrategy`. Every row op is checked against the
same op on one plain variable holding the whole table. The cluster runs are
in `parameter_server_test.py`.
"""

import os
import tempfile

import esapn_tf  # noqa: F401
import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from esapn_tf.distribute import sharding
from esapn_tf.optimizers import lazy_adam

# 10 rows, "div" layout over 3 shards: rows 0-3, 4-6, 7-9.
_SPLITS = (4, 7)
# Unsorted, repeated (1 twice, 8 twice), touching every shard.
_IDS = np.array([8, 1, 5, 1, 9, 0, 8], dtype=np.int32)


def _table(dtype=np.float32, cols=3):
  """Known values `[10, cols]` (`[10]` for cols=0): row r holds 10*r + col."""
  rows = np.arange(10)[:, None] * 10 + np.arange(max(cols, 1))[None, :]
  return (rows if cols else rows[:, 0]).astype(dtype)


def _sharded(values, splits=_SPLITS):
  """A `ShardedVariable` over `values` split at `splits` (axis 0)."""
  return tf.__internal__.distribute.ShardedVariable(
      [tf.Variable(part) for part in np.split(values, splits)])


def _dense(var) -> np.ndarray:
  """The whole table of a plain or sharded variable."""
  return tf.convert_to_tensor(var).numpy()


class GatherTest(tf.test.TestCase):

  def test_rows_in_ids_order(self):
    values = _table()
    table = _sharded(values)
    self.assertLen(table.variables, 3)
    ids = tf.constant(_IDS)
    self.assertAllEqual(sharding.gather(table, ids), values[_IDS])
    self.assertAllEqual(sharding.gather(tf.Variable(values), ids),
                        values[_IDS])

  def test_inside_tf_function(self):
    values = _table()
    table = _sharded(values)
    read = tf.function(lambda ids: sharding.gather(table, ids))
    self.assertAllEqual(read(tf.constant(_IDS)), values[_IDS])

  def test_plain_tf_gather_on_sharded_is_in_shard_order(self):
    # Why `sharding.gather` exists: TF 2.21's ShardedVariable.sparse_read
    # concatenates each shard's rows in shard order. [8, 1, 5, 1, 9, 0, 8]
    # comes back as shard 0's [1, 1, 0], shard 1's [5], shard 2's [8, 9, 8].
    # (Tensor ids, as in a step: with numpy ids sparse_read fails and
    # tf.gather falls back to a gather from the whole table, in ids order.)
    values = _table()
    got = tf.gather(_sharded(values), tf.constant(_IDS)).numpy()
    self.assertFalse(
        np.array_equal(got, values[_IDS]),
        'tf.gather on a ShardedVariable now returns rows in ids order: TF '
        'fixed sparse_read, so sharding.gather could use tf.gather again')
    self.assertAllEqual(got, values[[1, 1, 0, 5, 8, 9, 8]])


class ScatterTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.named_parameters(('float_2d', np.float32, 3),
                                  ('int32_1d', np.int32, 0))
  def test_scatter_add_matches_plain(self, dtype, cols):
    values = _table(dtype, cols)
    table, plain = _sharded(values), tf.Variable(values)
    delta = (np.arange(len(_IDS)) + 1).astype(dtype)
    if cols:
      delta = np.repeat(delta[:, None], cols, axis=1)
    for var in (table, plain):
      sharding.scatter_add(var, tf.constant(_IDS), tf.constant(delta))
    expected = values.copy()
    np.add.at(expected, _IDS, delta)
    # Repeats add up: row 1 gets 2 + 4, row 8 gets 1 + 7.
    self.assertAllEqual(expected[1], values[1] + 6)
    self.assertAllEqual(expected[8], values[8] + 8)
    self.assertAllEqual(_dense(table), expected)
    self.assertAllEqual(_dense(plain), expected)
    self.assertEqual(table.dtype, tf.as_dtype(dtype))

  @parameterized.named_parameters(('float_2d', np.float32, 3),
                                  ('int32_1d', np.int32, 0))
  def test_scatter_update_matches_plain(self, dtype, cols):
    values = _table(dtype, cols)
    table, plain = _sharded(values), tf.Variable(values)
    # Every copy of a repeated id writes the same value (the contract).
    new = (-1000 - _table(dtype, cols)[_IDS]).astype(dtype)
    for var in (table, plain):
      sharding.scatter_update(var, tf.constant(_IDS), tf.constant(new))
    expected = values.copy()
    expected[_IDS] = new
    self.assertAllEqual(_dense(table), expected)
    self.assertAllEqual(_dense(plain), expected)
    # Rows 2, 3, 4, 6, 7 were not written.
    untouched = [2, 3, 4, 6, 7]
    self.assertAllEqual(_dense(table)[untouched], values[untouched])


class GradientTest(tf.test.TestCase):

  def _weights(self):
    return tf.constant(np.linspace(-1.0, 1.0, len(_IDS) * 3,
                                   dtype=np.float32).reshape(-1, 3))

  def _loss(self, rows):
    # d loss / d row = 2 * row * weight (summed over the copies of an id).
    return tf.reduce_sum(tf.square(rows) * self._weights())

  def test_sharded_gradient_equals_plain(self):
    values = _table()
    table, plain = _sharded(values), tf.Variable(values)
    with tf.GradientTape() as tape:
      loss = self._loss(sharding.gather(table, tf.constant(_IDS)))
    grads = sharding.regroup_gradients(
        tape.gradient(loss, sharding.gradient_sources([table])), [table])
    with tf.GradientTape() as tape:
      loss = self._loss(tf.gather(plain, tf.constant(_IDS)))
    (plain_grad,) = tape.gradient(loss, [plain])
    self.assertLen(grads, 1)
    self.assertIsInstance(grads[0], tf.IndexedSlices)
    self.assertAllEqual(grads[0].dense_shape, [10, 3])
    expected = np.zeros_like(values)
    np.add.at(expected, _IDS, 2.0 * values[_IDS] * self._weights().numpy())
    self.assertAllClose(tf.convert_to_tensor(grads[0]), expected)
    self.assertAllClose(tf.convert_to_tensor(plain_grad), expected)
    # The same by segment sum over the regrouped (global) indices.
    self.assertAllClose(
        tf.math.unsorted_segment_sum(grads[0].values, grads[0].indices, 10),
        expected)

  def test_mixed_list_keeps_alignment(self):
    values = _table()
    first = tf.Variable([2.0, 3.0])
    table = _sharded(values)
    unused_table = _sharded(values + 1)
    unused = tf.Variable(5.0)
    last = tf.Variable(7.0)
    variables = [first, unused_table, table, unused, last]
    sources = sharding.gradient_sources(variables)
    self.assertLen(sources, 1 + 3 + 3 + 1 + 1)
    with tf.GradientTape() as tape:
      loss = (self._loss(sharding.gather(table, tf.constant(_IDS))) +
              tf.reduce_sum(first * first) + 3.0 * last)
    grads = sharding.regroup_gradients(tape.gradient(loss, sources),
                                       variables)
    self.assertLen(grads, 5)
    self.assertAllClose(grads[0], [4.0, 6.0])
    self.assertIsNone(grads[1])
    expected = np.zeros_like(values)
    np.add.at(expected, _IDS, 2.0 * values[_IDS] * self._weights().numpy())
    self.assertAllClose(tf.convert_to_tensor(grads[2]), expected)
    self.assertIsNone(grads[3])
    self.assertAllClose(grads[4], 3.0)

  def test_known_answer_with_a_shard_without_gradient(self):
    # Shards of 4, 3, 3 rows start at rows 0, 4, 7. Shard 0's local row 1
    # is row 1; shard 1 has no gradient (None) but still moves the offset;
    # shard 2's local rows 2, 0 are rows 9, 7.
    table = _sharded(_table())
    grads = [tf.IndexedSlices(tf.constant([[1.0, 1.0, 1.0]]),
                              tf.constant([1], tf.int64)),
             None,
             tf.IndexedSlices(tf.constant([[2.0, 2.0, 2.0], [3.0, 3.0, 3.0]]),
                              tf.constant([2, 0], tf.int64))]
    (grad,) = sharding.regroup_gradients(grads, [table])
    self.assertAllEqual(grad.indices, [1, 9, 7])
    self.assertAllEqual(grad.values[:, 0], [1.0, 2.0, 3.0])
    self.assertAllEqual(grad.dense_shape, [10, 3])

  def test_dense_shard_gradient_raises(self):
    table = _sharded(_table())
    with tf.GradientTape() as tape:
      loss = tf.reduce_sum(tf.square(tf.concat(table.variables, 0)))
    grads = tape.gradient(loss, sharding.gradient_sources([table]))
    with self.assertRaisesRegex(TypeError, 'dense'):
      sharding.regroup_gradients(grads, [table])


class WholeTablesTest(tf.test.TestCase):

  def test_shards_replaced_by_table_in_place(self):
    a = _sharded(_table())
    b = _sharded(_table() + 1, splits=(5,))
    p0, p1, p2 = tf.Variable(0.0), tf.Variable(1.0), tf.Variable(2.0)
    variables = [p0, *a.variables, p1, *b.variables, p2]
    got = sharding.whole_tables(variables, [b, a, p1])
    self.assertLen(got, 5)
    for want, var in zip([p0, a, p1, b, p2], got):
      self.assertIs(var, want)

  def test_first_shard_position_and_each_table_once(self):
    a = _sharded(_table())
    p0 = tf.Variable(0.0)
    s0, s1, s2 = a.variables
    got = sharding.whole_tables([s1, p0, s0, s2], [a])
    self.assertLen(got, 2)
    self.assertIs(got[0], a)
    self.assertIs(got[1], p0)

  def test_plain_tables_unchanged(self):
    p0, p1 = tf.Variable([1.0, 2.0]), tf.Variable(1.0)
    got = sharding.whole_tables([p0, p1], [p0])
    self.assertEqual([id(v) for v in got], [id(p0), id(p1)])


class PerIdPartitionerTest(tf.test.TestCase):

  def test_outside_context_not_split(self):
    partitioner = sharding.PerIdPartitioner(4)
    self.assertFalse(sharding.in_per_id_tables())
    self.assertEqual(partitioner(tf.TensorShape([100, 8]), tf.float32),
                     [1, 1])
    self.assertEqual(partitioner(tf.TensorShape([100]), tf.int32), [1])

  def test_inside_context_split_on_rows(self):
    partitioner = sharding.PerIdPartitioner(4)
    with sharding.per_id_tables():
      self.assertTrue(sharding.in_per_id_tables())
      self.assertEqual(partitioner(tf.TensorShape([100, 8, 2]), tf.float32),
                       [4, 1, 1])
      self.assertEqual(partitioner(tf.TensorShape([100]), tf.int32), [4])
      # Never more shards than rows.
      self.assertEqual(partitioner(tf.TensorShape([3, 8]), tf.float32),
                       [3, 1])
      self.assertEqual(partitioner(tf.TensorShape([]), tf.int64), [])

  def test_nested_contexts(self):
    partitioner = sharding.PerIdPartitioner(2)
    shape = tf.TensorShape([10, 3])
    with sharding.per_id_tables():
      with sharding.per_id_tables():
        self.assertEqual(partitioner(shape, tf.float32), [2, 1])
      # Leaving the inner context keeps the outer one.
      self.assertEqual(partitioner(shape, tf.float32), [2, 1])
    self.assertEqual(partitioner(shape, tf.float32), [1, 1])

  def test_context_left_on_error(self):
    with self.assertRaises(RuntimeError):
      with sharding.per_id_tables():
        raise RuntimeError('boom')
    self.assertFalse(sharding.in_per_id_tables())

  def test_zero_shards_raises(self):
    with self.assertRaisesRegex(ValueError, 'num_shards'):
      sharding.PerIdPartitioner(0)


class CheckpointTest(tf.test.TestCase):

  def _save(self, var):
    path = os.path.join(tempfile.mkdtemp(dir=self.get_temp_dir()), 'ckpt')
    return tf.train.Checkpoint(table=var).save(path)

  def test_sharded_restores_into_plain(self):
    values = _table()
    path = self._save(_sharded(values))
    plain = tf.Variable(tf.zeros([10, 3]))
    tf.train.Checkpoint(table=plain).restore(path).assert_consumed()
    self.assertAllEqual(plain, values)

  def test_plain_restores_into_sharded(self):
    values = _table()
    path = self._save(tf.Variable(values))
    table = _sharded(np.zeros_like(values), splits=(5,))
    tf.train.Checkpoint(table=table).restore(path).assert_consumed()
    self.assertLen(table.variables, 2)
    self.assertAllEqual(table.variables[0], values[:5])
    self.assertAllEqual(table.variables[1], values[5:])

  def test_three_shards_restore_into_two(self):
    values = _table()
    path = self._save(_sharded(values))
    table = _sharded(np.zeros_like(values), splits=(5,))
    tf.train.Checkpoint(table=table).restore(path).assert_consumed()
    self.assertAllEqual(_dense(table), values)


class LazyAdamShardedTest(tf.test.TestCase):

  def test_matches_plain_for_two_steps(self):
    values = _table() / 100.0
    table, plain = _sharded(values), tf.Variable(values)
    sharded_adam = lazy_adam.LazyAdam([table], learning_rate=0.1)
    plain_adam = lazy_adam.LazyAdam([plain], learning_rate=0.1)
    m, v = sharded_adam.slots(table)
    self.assertEqual(m.shape, [10, 3])
    self.assertEqual(v.shape, [10, 3])
    self.assertAllEqual(sharding.gather(m, tf.range(10)), np.zeros([10, 3]))
    rng = np.random.default_rng(0)
    steps = [_IDS, np.array([2, 9, 2, 6], np.int32)]
    for step_ids in steps:
      ids = tf.constant(step_ids)
      upstream = tf.constant(rng.normal(size=(len(step_ids), 3)), tf.float32)
      with tf.GradientTape() as tape:
        loss = tf.reduce_sum(sharding.gather(table, ids) * upstream)
      (grad,) = sharding.regroup_gradients(
          tape.gradient(loss, sharding.gradient_sources([table])), [table])
      sharded_adam.apply_gradients([(grad, table)])
      with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.gather(plain, ids) * upstream)
      plain_adam.apply_gradients([(tape.gradient(loss, plain), plain)])
    self.assertAllClose(_dense(table), plain.numpy(), atol=1e-6)
    for got, want in zip(sharded_adam.slots(table), plain_adam.slots(plain)):
      self.assertAllClose(sharding.gather(got, tf.range(10)), want,
                          atol=1e-6)
    # Lazy: rows touched by no step (3, 4, 7) did not move; the others did.
    untouched = [3, 4, 7]
    self.assertAllEqual(_dense(table)[untouched], values[untouched])
    touched = sorted(set(np.concatenate(steps)))
    self.assertTrue(np.all(_dense(table)[touched] != values[touched]))


if __name__ == '__main__':
  tf.test.main()
