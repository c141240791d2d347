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

  def test_specs(self):
    obs = agent_lib.observation_spec(6)
    self.assertEqual(obs['size_index'].maximum, 5)
    self.assertEqual(obs['frequency'].minimum, 1)
    self.assertEqual(agent_lib.action_spec().maximum, 1)


if __name__ == '__main__':
  tf.test.main()
