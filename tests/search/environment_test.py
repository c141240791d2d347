"""Tests for the search core and the PyEnvironment (DESIGN.md §3)."""

import re

import esapn_tf  # noqa: F401
import numpy as np
import tensorflow as tf
from absl.testing import parameterized
from tf_agents.environments import utils as env_utils

from esapn_tf.models import recommender
from esapn_tf.search import environment


def _core(num_users=6, num_items=9, history_length=5, jit_compile=False,
          epsilon=1e-7):
  model = recommender.Recommender(num_users, num_items, (2, 4, 8),
                                  hidden_units=8)
  model.build_all()
  return environment.SearchCore(
      model, tf.keras.optimizers.Adam(1e-3, epsilon=epsilon), history_length,
      jit_compile=jit_compile)


def _batches(batch_size, num_users=6, num_items=9, seed=0):
  rng = np.random.default_rng(seed)
  step = 0
  while True:
    step += 1
    yield {
        'user': rng.integers(0, num_users, batch_size).astype(np.int32),
        'item': rng.integers(0, num_items, batch_size).astype(np.int32),
        'label': rng.integers(0, 2, batch_size).astype(np.float32),
        'user_frequency': np.full(batch_size, step, np.int32),
        'item_frequency': np.full(batch_size, step, np.int32),
    }


class SearchCoreTest(tf.test.TestCase, parameterized.TestCase):

  def _push(self, core, side, ids, freqs, losses):
    core._push_history(side, tf.constant(ids, tf.int32),
                       tf.constant(freqs, tf.int32),
                       tf.constant(losses, tf.float32))

  def test_history_mean_fewer_than_t(self):
    # Id 2 saw losses 0.4 and 0.2 (frequencies 1, 2): mean = 0.3.
    core = _core()
    self._push(core, 'user', [2], [1], [0.4])
    self._push(core, 'user', [2], [2], [0.2])
    mean, has = core.history_mean('user', tf.constant([2, 3]))
    self.assertAllClose(mean, [0.3, 0.0])
    self.assertAllEqual(has, [True, False])

  @parameterized.named_parameters(('jit', True), ('graph', False))
  def test_history_keeps_last_t_in_one_batch(self, jit_compile):
    # T = 3. Id 1 occurs 5 times in one batch with losses 1..5 at
    # frequencies 1..5: only the last three (3, 4, 5) remain, mean 4.
    core = _core(history_length=3)
    push = tf.function(core._push_history, jit_compile=jit_compile)
    push('item', tf.constant([1, 1, 1, 1, 1]), tf.constant([1, 2, 3, 4, 5]),
         tf.constant([1.0, 2.0, 3.0, 4.0, 5.0]))
    mean, _ = core.history_mean('item', tf.constant([1]))
    self.assertAllClose(mean, [4.0])
    self.assertEqual(int(core.history_count['item'][1]), 5)

  def test_history_window_slides(self):
    # T = 2: losses 0.9, 0.5, 0.1 pushed one by one -> last two: 0.3.
    core = _core(history_length=2)
    for f, loss in enumerate([0.9, 0.5, 0.1], start=1):
      self._push(core, 'user', [0], [f], [loss])
    mean, _ = core.history_mean('user', tf.constant([0]))
    self.assertAllClose(mean, [0.3])

  def test_reward_formula_hand_worked(self):
    # User 0 history [0.5, 0.3, 0.1] (mean 0.3); item 4 history [0.2]
    # (mean 0.2); user 1 has none. R = mean - L for each example, 0 without
    # history; weight 1 only with history (sizes all below the largest).
    core = _core()
    for f, loss in enumerate([0.5, 0.3, 0.1], start=1):
      self._push(core, 'user', [0], [f], [loss])
    self._push(core, 'item', [4], [1], [0.2])
    batch = {'user': tf.constant([0, 1]), 'item': tf.constant([4, 4]),
             'label': tf.constant([1.0, 0.0]),
             'user_frequency': tf.constant([4, 1]),
             'item_frequency': tf.constant([2, 3])}
    logits = core.model(batch, training=False)
    loss = recommender.per_example_loss('binary', batch['label'], logits)
    actions = {'user': tf.constant([1, 0]), 'item': tf.constant([0, 1])}
    rewards, weights = core.rewards(batch, actions)
    self.assertAllClose(rewards['user'], [0.3 - loss[0], 0.0])
    self.assertAllClose(rewards['item'], [0.2 - loss[0], 0.2 - loss[1]])
    self.assertAllEqual(weights['user'], [1.0, 0.0])
    self.assertAllEqual(weights['item'], [1.0, 1.0])

  def test_tentative_reward_ignores_action(self):
    # DESIGN.md §2's function-preserving enlargement makes the tentative
    # score of "enlarge" equal to that of "unchanged" (BUILD_NOTES.md).
    core = _core()
    batch = next(_batches(16))
    batch = {k: tf.constant(v) for k, v in batch.items()}
    core.model(batch, training=True)  # non-trivial BN statistics
    for side, n in (('user', 6), ('item', 9)):
      core._push_history(side, tf.range(n), tf.ones([n], tf.int32),
                         tf.fill([n], 0.5))
    zeros = tf.zeros([16], tf.int32)
    ones = tf.ones([16], tf.int32)
    r0, _ = core.rewards(batch, {'user': zeros, 'item': zeros})
    r1, _ = core.rewards(batch, {'user': ones, 'item': ones})
    self.assertAllClose(r0['user'], r1['user'], atol=1e-6)
    # ... and the same holds for a real enlargement of every id.
    before = core.model(batch, training=False)
    core.model.user_embedding.enlarge(batch['user'])
    core.model.item_embedding.enlarge(batch['item'])
    self.assertAllClose(core.model(batch, training=False), before, atol=1e-5)

  def test_pending_decisions_resolve_at_next_appearance(self):
    # Batch 1: user 2 occurs twice (frequencies 1, 2); its decision is taken
    # at the last copy. Batch 2: user 2's first copy resolves it with reward
    # baseline - loss; user 5 had no decision, so weight 0.
    core = _core()
    ids = tf.constant([2, 2, 4])
    freq = tf.constant([1, 2, 1])
    first, last = core.occurrence_masks('user', ids, freq)
    self.assertAllEqual(first, [True, False, True])
    self.assertAllEqual(last, [False, True, True])
    observation = {'frequency': freq, 'size_index': tf.constant([0, 0, 0])}
    core.record_decisions('user', ids, observation, tf.constant([0, 1, 0]),
                          last)
    batch = {'user': tf.constant([2, 5, 2]),
             'user_frequency': tf.constant([3, 1, 4])}
    obs, action, reward, weight = core.pending_experience(
        'user', batch, losses=tf.constant([0.2, 0.3, 0.4]),
        baseline=tf.constant([0.5, 0.0, 0.5]))
    self.assertAllEqual(weight, [1.0, 0.0, 0.0])
    self.assertAllEqual(action[:1], [1])
    self.assertAllEqual(obs['frequency'][:1], [2])
    self.assertAllClose(reward, [0.3, 0.0, 0.0])

  def test_train_step_records_losses_and_enlarges(self):
    core = _core(jit_compile=True)
    batch = {'user': tf.constant([0, 0, 3]), 'item': tf.constant([1, 2, 1]),
             'label': tf.constant([1.0, 0.0, 1.0]),
             'user_frequency': tf.constant([1, 2, 1]),
             'item_frequency': tf.constant([1, 1, 2])}
    out = core.train_step(batch, tf.constant([True, True, False]),
                          tf.constant([False, False, False]))
    self.assertAllEqual(out['user_enlarged'], [True, True, False])
    self.assertAllEqual(
        tf.gather(core.model.user_embedding.size_index, [0, 3]), [1, 0])
    # User 0's history holds the two examples' losses.
    mean, _ = core.history_mean('user', tf.constant([0]))
    self.assertAllClose(mean, [np.mean(out['loss'][:2])])

  def test_graph_step_matches_the_xla_step(self):
    # Two identical cores, one step each on batches of 4 and 3: the plain
    # graph (what the trainer runs for a part's last, partial batch) and
    # XLA agree to float rounding.
    cores = []
    for _ in range(2):
      tf.keras.utils.set_random_seed(5)
      # Adam's epsilon well above rounding noise: a gradient that is 0 up to
      # rounding (biases just before a BN, ~1e-9) must not become a step of
      # up to lr = 1e-3 (g / (|g| + eps)) in one core and not the other.
      cores.append(_core(jit_compile=True, epsilon=1e-3))
    graph_step = tf.function(cores[1]._train_step)  # pylint: disable=protected-access
    batches = _batches(4)
    full = {k: tf.constant(v) for k, v in next(batches).items()}
    partial = {k: tf.constant(v[:3]) for k, v in next(batches).items()}
    for batch in (full, partial):
      n = int(batch['user'].shape[0])
      enlarge = tf.constant([True, False, True, False][:n])
      a = cores[0].train_step(batch, enlarge, enlarge)
      b = graph_step(batch, enlarge, enlarge)
      self.assertAllClose(a['loss'], b['loss'], rtol=1e-5)
      self.assertAllEqual(a['user_enlarged'], b['user_enlarged'])
    for x, y in zip(cores[0].model.variables, cores[1].model.variables):
      self.assertAllClose(x, y, rtol=1e-5, atol=1e-6)

  def test_any_per_id(self):
    flags = environment.any_per_id(tf.constant([3, 1, 3, 2]),
                                   tf.constant([False, False, True, False]), 4)
    self.assertAllEqual(flags, [True, False, True, False])


class EnvironmentTest(tf.test.TestCase, parameterized.TestCase):

  def test_validate_py_environment(self):
    core = _core()
    env = environment.EmbeddingSizeEnvironment(core, _batches(8), 8)
    env_utils.validate_py_environment(env, episodes=4)

  def test_step_rewards_match_core(self):
    core = _core()
    env = environment.EmbeddingSizeEnvironment(core, _batches(4), 4)
    # Give every user and item a history of 0.7 so rewards are non-zero.
    for side, n in (('user', 6), ('item', 9)):
      core._push_history(side, tf.range(n), tf.ones([n], tf.int32),
                         tf.fill([n], 0.7))
    first = env.reset()
    self.assertEqual(first.observation['user']['frequency'].shape, (4,))
    action = {'user': np.ones(4, np.int32), 'item': np.zeros(4, np.int32)}
    last = env.step(action)
    self.assertTrue(np.all(last.is_last()))
    self.assertEqual(last.reward.shape, (4, 2))
    self.assertTrue(np.all(last.reward < 0.7))
    self.assertTrue(np.all(last.reward > 0.7 - 1.0))  # binary loss <= 1
    # Scoring did not train the recommender or change any size.
    self.assertAllEqual(core.model.user_embedding.size_index, [0] * 6)

  @parameterized.named_parameters(
      ('seven', 'user', np.array([0, 7, 1, 0]), 'user action holds 7'),
      ('minus_three', 'item', np.array([-3, 0, 1, 0]), 'item action holds -3'),
      ('too_short', 'user', np.array([0, 1, 0]), 'user action has shape (3,)'),
      ('too_long', 'item', np.zeros(5, np.int32), 'item action has shape (5,)'),
      ('float', 'item', np.array([0.0, 0.5, 1.0, 0.0]),
       'item action has dtype float64'))
  def test_step_refuses_actions_outside_the_spec(self, side, bad, message):
    core = _core()
    env = environment.EmbeddingSizeEnvironment(core, _batches(4), 4)
    env.reset()
    action = {'user': np.zeros(4, np.int32), 'item': np.zeros(4, np.int32)}
    action[side] = bad
    with self.assertRaisesRegex(ValueError, re.escape(message)):
      env.step(action)
    # A valid action still steps (nothing was left half-done).
    action[side] = np.ones(4, np.int32)
    self.assertTrue(np.all(env.step(action).is_last()))

  def test_step_refuses_an_action_without_a_side(self):
    env = environment.EmbeddingSizeEnvironment(_core(), _batches(4), 4)
    env.reset()
    with self.assertRaisesRegex(ValueError, r"keys \['item', 'user'\]"):
      env.step({'user': np.zeros(4, np.int32)})


if __name__ == '__main__':
  tf.test.main()
