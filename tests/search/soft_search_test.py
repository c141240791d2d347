"""Tests for esapn_tf.search.soft_search: the DARTS and AutoEmb steps."""

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from esapn_tf import config
from esapn_tf.models import recommender
from esapn_tf.optimizers import lazy_adam
from esapn_tf.search import soft_search

_SIZES = (2, 4, 8)


def _core(method, num_users=5, num_items=7, jit_compile=False):
  tf.keras.utils.set_random_seed(0)
  model = recommender.Recommender(num_users, num_items, _SIZES,
                                  hidden_units=8, soft_sizes=True)
  model.build_all()
  optimizer = lazy_adam.LazyAdam(model.trainable_variables, 1e-2)
  search = config.SearchConfig(method=method, architecture_learning_rate=0.1,
                               controller_hidden_units=8)
  return soft_search.SoftSearchCore(model, optimizer, search,
                                    jit_compile=jit_compile)


def _batch(users, items, labels, user_frequency=None, item_frequency=None):
  n = len(users)
  return {
      'user': tf.constant(users, tf.int32),
      'item': tf.constant(items, tf.int32),
      'label': tf.constant(labels, tf.float32),
      'user_frequency': tf.constant(user_frequency or [1] * n, tf.int32),
      'item_frequency': tf.constant(item_frequency or [1] * n, tf.int32),
  }


class SoftSearchCoreTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.parameters('darts', 'autoemb')
  def test_weights_sum_to_one(self, method):
    core = _core(method)
    w = core.weights(_batch([0, 1, 4], [6, 2, 2], [1, 0, 1],
                            [1, 9, 300], [2, 2, 40]))
    for side in ('user', 'item'):
      self.assertEqual(w[side].shape, (3, len(_SIZES)))
      self.assertAllClose(w[side].numpy().sum(-1), np.ones(3), atol=1e-6)

  @parameterized.parameters(('darts', False), ('autoemb', False),
                            ('darts', True))
  def test_architecture_step_moves_only_the_architecture(self, method, xla):
    core = _core(method, jit_compile=xla)
    batch = _batch([0, 1, 1], [2, 3, 4], [1, 0, 1])
    model_before = [v.numpy() for v in core.model.trainable_variables]
    arch_before = [v.numpy() for v in core.architecture_variables]
    loss = core.architecture_step(batch)
    self.assertTrue(np.isfinite(loss.numpy()))
    for before, v in zip(model_before, core.model.trainable_variables):
      self.assertAllEqual(before, v.numpy())
    moved = [np.abs(b - v.numpy()).max()
             for b, v in zip(arch_before, core.architecture_variables)]
    self.assertGreater(max(moved), 0.0)
    if method == 'darts':
      # Row-sparse: only the batch's ids move.
      user_alpha = core.selectors['user'].alpha.numpy()
      changed = np.abs(user_alpha - arch_before[0]).max(-1) > 0
      self.assertAllEqual(changed, [True, True, False, False, False])

  @parameterized.parameters('darts', 'autoemb')
  def test_train_step_holds_the_architecture_and_records_hard_sizes(
      self, method):
    core = _core(method)
    if method == 'darts':
      alpha = np.zeros((5, 3), np.float32)
      alpha[1] = [0.0, 0.0, 5.0]  # user 1 prefers size 8
      core.selectors['user'].alpha.assign(alpha)
    arch_before = [v.numpy() for v in core.architecture_variables]
    batch = _batch([1, 3, 1], [0, 6, 6], [1, 0, 0], [1, 1, 2], [1, 1, 2])
    weights = core.weights(batch)
    out = core.train_step(batch)
    self.assertEqual(out['loss'].shape, (3,))
    for before, v in zip(arch_before, core.architecture_variables):
      self.assertAllEqual(before, v.numpy())
    size_index = core.embeddings['user'].size_index.numpy()
    expected = np.argmax(weights['user'].numpy(), -1)
    self.assertEqual(size_index[3], expected[1])
    self.assertEqual(size_index[1], expected[2])  # the last copy's argmax
    self.assertEqual(size_index[0], 0)  # not in the batch: unchanged
    if method == 'darts':
      self.assertEqual(size_index[1], 2)
    else:
      # AutoEmb stores the weights it used as the ids' current weights.
      current = core.selectors['user'].current.numpy()
      self.assertAllClose(current[3], weights['user'].numpy()[1])
      self.assertAllClose(current[1], weights['user'].numpy()[2])

  def test_learning_lowers_the_loss_on_a_fixed_batch(self):
    core = _core('darts')
    batch = _batch([0, 1, 2, 3, 4], [0, 1, 2, 3, 4], [1, 0, 1, 0, 1])
    first = float(tf.reduce_mean(core.evaluate(batch)['loss']))
    for _ in range(30):
      core.architecture_step(batch)
      core.train_step(batch)
    last = float(tf.reduce_mean(core.evaluate(batch)['loss']))
    self.assertLess(last, first * 0.8)

  def test_rejects_a_hard_method(self):
    model = recommender.Recommender(3, 3, _SIZES, hidden_units=4,
                                    soft_sizes=True)
    model.build_all()
    with self.assertRaisesRegex(ValueError, 'method'):
      soft_search.SoftSearchCore(
          model, lazy_adam.LazyAdam(model.trainable_variables),
          config.SearchConfig(method='esapn'))


if __name__ == '__main__':
  tf.test.main()
