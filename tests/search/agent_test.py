"""Tests for the policy network and its ReinforceAgent (DESIGN.md §3)."""

import esapn_tf  # noqa: F401
import numpy as np
import tensorflow as tf
from absl.testing import parameterized
from tf_agents.trajectories import time_step as ts
from tf_agents.trajectories import trajectory

from esapn_tf.search import agent as agent_lib


def _experience(frequency, size_index, action, reward):
  n = len(action)
  col = lambda x, dtype: tf.constant(np.asarray(x).reshape(n, 1), dtype)
  return trajectory.Trajectory(
      step_type=col([ts.StepType.FIRST] * n, tf.int32),
      observation={'frequency': col(frequency, tf.int32),
                   'size_index': col(size_index, tf.int32)},
      action=col(action, tf.int32), policy_info=(),
      next_step_type=col([ts.StepType.LAST] * n, tf.int32),
      reward=col(reward, tf.float32), discount=col([0.0] * n, tf.float32))


class AgentTest(tf.test.TestCase, parameterized.TestCase):

  def test_frequency_bucket_known_answers(self):
    # floor(log2 f): 1->0, 2,3->1, 4..7->2, 1024->10; clamp at 31 buckets-1.
    f = tf.constant([1, 2, 3, 4, 7, 8, 1023, 1024, 2**31 - 1, 0])
    self.assertAllEqual(agent_lib.frequency_bucket(f, 32),
                        [0, 1, 1, 2, 2, 3, 9, 10, 30, 0])
    self.assertAllEqual(agent_lib.frequency_bucket(f, 4),
                        [0, 1, 1, 2, 2, 3, 3, 3, 3, 0])

  def test_enlarge_masked_at_largest_size(self):
    agent = agent_lib.make_agent(num_sizes=3, hidden_units=8)
    obs = {'frequency': tf.constant([1, 50, 10**6]),
           'size_index': tf.constant([0, 2, 2])}
    dist = agent.collect_policy.distribution(
        ts.restart(obs, batch_size=3)).action
    probs = dist.probs_parameter().numpy()
    self.assertAllClose(probs[1:, 1], [0.0, 0.0])
    self.assertGreater(probs[0, 1], 0.1)
    for _ in range(5):
      actions = agent.collect_policy.action(ts.restart(obs, batch_size=3))
      self.assertAllEqual(actions.action[1:], [0, 0])

  def test_reinforce_learns_rewarded_action(self):
    # Enlarge (1) earns +1 for rare ids (f < 4) and -1 for frequent ones;
    # unchanged (0) earns the opposite. REINFORCE must learn both.
    tf.keras.utils.set_random_seed(0)
    agent = agent_lib.make_agent(num_sizes=4, learning_rate=1e-2,
                                 hidden_units=16)
    rng = np.random.default_rng(0)
    train = tf.function(agent.train)
    for _ in range(150):
      freq = rng.choice([1, 2, 100, 200], size=64)
      action = rng.integers(0, 2, size=64)
      rare = freq < 4
      reward = np.where(action == 1, 1.0, -1.0) * np.where(rare, 1.0, -1.0)
      train(_experience(freq, np.zeros(64), action, reward))
    obs = {'frequency': tf.constant([1, 2, 100, 200]),
           'size_index': tf.zeros([4], tf.int32)}
    greedy = agent.policy.action(ts.restart(obs, batch_size=4)).action
    self.assertAllEqual(greedy, [1, 1, 0, 0])

  def test_entropy_regularization_keeps_the_policy_from_saturating(self):
    # Enlarge always earns +1, keep -1: plain REINFORCE drives P(enlarge)
    # to 1; the entropy bonus holds it back (the ml-20m-size collapse,
    # BUILD_NOTES "The policies collapse at scale").
    def final_probability(entropy):
      tf.keras.utils.set_random_seed(0)
      agent = agent_lib.make_agent(num_sizes=4, learning_rate=1e-2,
                                   hidden_units=16,
                                   entropy_regularization=entropy)
      train = tf.function(agent.train)
      obs = {'frequency': tf.fill([64], 5), 'size_index': tf.zeros([64],
                                                                 tf.int32)}
      for _ in range(150):  # on-policy: actions from the collect policy
        action = agent.collect_policy.action(
            ts.restart(obs, batch_size=64)).action.numpy()
        train(_experience(np.full(64, 5), np.zeros(64), action,
                          np.where(action == 1, 1.0, -1.0)))
      dist = agent.collect_policy.distribution(
          ts.restart(obs, batch_size=64)).action
      return float(dist.probs_parameter()[0, 1])

    # With weight c the bonus balances the reward at P = 1 / (1 + e^(-2/c))
    # (0.73 for c = 2).
    plain, regularised = final_probability(0.0), final_probability(2.0)
    self.assertGreater(plain, 0.99)
    self.assertLess(regularised, 0.9)

  def test_buckets_in_use(self):
    # bucket(f) + 1, at least 1, at most the network's buckets.
    self.assertEqual(agent_lib.buckets_in_use(0, 32), 1)
    self.assertEqual(agent_lib.buckets_in_use(1, 32), 1)
    self.assertEqual(agent_lib.buckets_in_use(2698, 32), 12)  # 2^11 <= 2698
    self.assertEqual(agent_lib.buckets_in_use(2**20, 8), 8)

  def test_distinct_states_known_answer(self):
    # Buckets: 1 -> 0, 3 -> 1, 2 -> 1, 5 -> 2. With 3 buckets and 3 sizes
    # the group is bucket * 3 + size: 0, 3, 3, 7, 0; 9 groups in all.
    obs = {'frequency': tf.constant([1, 3, 2, 5, 1]),
           'size_index': tf.constant([0, 0, 0, 1, 0])}
    group, states = agent_lib.distinct_states(obs, num_sizes=3,
                                              num_buckets=3)
    self.assertAllEqual(group, [0, 3, 3, 7, 0])
    # Largest member frequency per group, 1 where a group has no member.
    self.assertAllEqual(states['frequency'], [1, 1, 1, 3, 1, 1, 1, 5, 1])
    self.assertAllEqual(states['size_index'], [0, 1, 2] * 3)
    # Members share their group's bucket.
    self.assertAllEqual(
        agent_lib.frequency_bucket(tf.gather(states['frequency'], group), 3),
        agent_lib.frequency_bucket(obs['frequency'], 3))
    # With actions, key 2 * group + action: states (0, 0) and (1, 0) split
    # by action.
    group, states = agent_lib.distinct_states(
        obs, 3, 3, tf.constant([0, 1, 0, 0, 1]))
    self.assertAllEqual(group, [0, 7, 6, 14, 1])
    self.assertEqual(int(tf.size(states['size_index'])), 18)
    self.assertAllEqual(states['size_index'][:6], [0, 0, 1, 1, 2, 2])
    # A frequency beyond the last bucket joins it.
    group, _ = agent_lib.distinct_states(
        {'frequency': tf.constant([100]), 'size_index': tf.constant([2])},
        3, 3)
    self.assertAllEqual(group, [8])

  def test_distinct_states_compile_with_xla(self):
    obs = {'frequency': tf.constant([1, 3, 2, 5, 1]),
           'size_index': tf.constant([0, 0, 0, 1, 0])}
    fn = lambda o: agent_lib.distinct_states(o, 3, 3)
    graph = fn(obs)
    xla = tf.function(fn, jit_compile=True)(obs)
    self.assertAllEqual(graph[0], xla[0])
    self.assertAllEqual(graph[1]['frequency'], xla[1]['frequency'])

  def test_logits_per_distinct_state_are_the_rows_logits(self):
    agent = agent_lib.make_agent(num_sizes=3, hidden_units=8)
    rng = np.random.default_rng(1)
    obs = {'frequency': tf.constant(rng.integers(1, 5000, 300), tf.int32),
           'size_index': tf.constant(rng.integers(0, 3, 300), tf.int32)}
    logits = lambda o: agent.collect_policy.distribution(
        agent_lib.first_time_step(o)).action.logits_parameter()
    group, states = agent_lib.distinct_states(
        obs, 3, agent_lib.buckets_in_use(5000, 32))
    self.assertEqual(int(tf.size(states['size_index'])), 13 * 3)
    self.assertAllClose(tf.gather(logits(states), group), logits(obs),
                        rtol=1e-6, atol=1e-6)

  def test_grouped_rewards_known_answer(self):
    # Rows (state, action): A=(f1,s0,a0) twice, B=(f5,s1,a1) twice.
    # A: w = 1, 0, R = 2, 7 -> W = 1, R_g = 2. B: w = 1, 1, R = 1, 3 ->
    # W = 2, R_g = 2. With 3 buckets, 3 sizes and 2 actions there are
    # G = 18 groups for B = 4 rows: weights W * 18 / 4. A is group 0,
    # B is group 2 * (2 * 3 + 1) + 1 = 15.
    obs = {'frequency': tf.constant([1, 1, 5, 5]),
           'size_index': tf.constant([0, 0, 1, 1])}
    states, action, reward, weight = agent_lib.grouped_rewards(
        obs, tf.constant([0, 0, 1, 1]), tf.constant([2.0, 7.0, 1.0, 3.0]),
        tf.constant([1.0, 0.0, 1.0, 1.0]), num_sizes=3, num_buckets=3)
    self.assertEqual(int(tf.size(action)), 18)
    self.assertAllEqual(tf.gather(states['size_index'], [0, 15]), [0, 1])
    self.assertAllEqual(tf.gather(states['frequency'], [0, 15]), [1, 5])
    # Action g % 2, except 0 at the largest size (groups 4, 5, 10, 11, ...).
    self.assertAllEqual(action, [0, 1, 0, 1, 0, 0] * 3)
    expected_reward = np.zeros(18)
    expected_reward[[0, 15]] = 2.0
    self.assertAllClose(reward, expected_reward)
    expected_weight = np.zeros(18)
    expected_weight[[0, 15]] = [1.0 * 18 / 4, 2.0 * 18 / 4]
    self.assertAllClose(weight, expected_weight)

  def test_grouped_episodes_train_like_the_rows(self):
    # One REINFORCE step on the 40 rows and one on their (state, action)
    # groups must give the same loss and the same new weights.
    rng = np.random.default_rng(0)
    n = 40
    frequency = rng.integers(1, 200, n)
    size_index = rng.integers(0, 3, n)
    action = rng.integers(0, 2, n) * (size_index < 2)
    reward = rng.normal(size=n).astype(np.float32)
    weight = (rng.random(n) < 0.7).astype(np.float32)
    agents = []
    for _ in range(2):
      tf.keras.utils.set_random_seed(4)
      agents.append(agent_lib.make_agent(num_sizes=3, hidden_units=8,
                                         learning_rate=0.1))
    initial = [v.numpy() for v in agents[0].policy.variables()]
    rows = agents[0].train(
        _experience(frequency, size_index, action, reward),
        weights=tf.constant(weight.reshape(n, 1)))
    states, g_action, g_reward, g_weight = agent_lib.grouped_rewards(
        {'frequency': tf.constant(frequency, tf.int32),
         'size_index': tf.constant(size_index, tf.int32)},
        tf.constant(action, tf.int32), tf.constant(reward),
        tf.constant(weight), num_sizes=3,
        num_buckets=agent_lib.buckets_in_use(200, 32))
    self.assertEqual(int(tf.size(g_action)), 8 * 3 * 2)
    grouped = agents[1].train(
        _experience(states['frequency'], states['size_index'], g_action,
                    g_reward),
        weights=tf.reshape(g_weight, [-1, 1]))
    self.assertAllClose(rows.loss, grouped.loss, rtol=1e-5)
    # Adam's first step is lr * g / (|g| + eps): about lr = 0.1 for every
    # entry with a gradient, so both moved alike to well within 0.1%
    # (rounding differs where g is tiny, |g| ~ eps).
    moved = 0
    for a, b, before in zip(agents[0].policy.variables(),
                            agents[1].policy.variables(), initial):
      self.assertAllClose(a, b, rtol=0, atol=1e-4)
      moved += int(np.sum(np.abs(a.numpy() - before) > 0.05))
    # Entries with a gradient: the hidden kernel rows of the 8 buckets
    # present, the log-frequency row and 3 size rows (12 x 8), its bias (8)
    # and the projection (8 x 2 + 2): 122; all but rounding-level ones move.
    self.assertGreater(moved, 90)

  def test_specs(self):
    obs = agent_lib.observation_spec(6)
    self.assertEqual(obs['size_index'].maximum, 5)
    self.assertEqual(obs['frequency'].minimum, 1)
    self.assertEqual(agent_lib.action_spec().maximum, 1)


if __name__ == '__main__':
  tf.test.main()
