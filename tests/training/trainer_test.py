"""Tests for `Trainer.learn`: one XLA program for full batches."""

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from esapn_tf import config
from esapn_tf.data import stream
from esapn_tf.training import jit
from esapn_tf.training import outputs
from esapn_tf.training import trainer as trainer_lib

_BATCH = 100


def _trainer(s, seed=0, reward='paired'):
  tf.keras.utils.set_random_seed(seed)
  cfg = config.ExperimentConfig(
      model=config.ModelConfig(candidate_sizes=(2, 4, 8), hidden_units=16),
      search=config.SearchConfig(method='esapn', policy_hidden_units=16,
                                 reward=reward),
      train=config.TrainConfig(batch_size=_BATCH, seed=seed,
                               jit_compile=True))
  return trainer_lib.Trainer(cfg, s)


class TrainerTest(tf.test.TestCase, parameterized.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.stream = stream.build_stream(
        stream.load_ratings('synthetic', synthetic_num_ratings=2000, seed=0),
        'binary', 'random', 0.8, 0)
    cls.batches = list(stream.make_dataset(cls.stream, 0, 6 * _BATCH,
                                           _BATCH))

  # The paired reward is a difference of two nearly equal losses (real and
  # shadow row, `search/trials.py`), about 1e-5 here: XLA's and the graph's
  # rounding of each loss shows in it at about 2e-6.
  @parameterized.named_parameters(
      dict(testcase_name='paired', reward='paired', reward_atol=1e-5),
      dict(testcase_name='next_appearance', reward='next_appearance',
           reward_atol=1e-6))
  def test_compiled_step_matches_the_graph_step(self, reward, reward_atol):
    # XLA's stateless noise differs from the CPU kernel's, so the policies
    # are made sure of their action: logits (-20, 20) for (keep, enlarge),
    # beyond any Gumbel noise drawn (-log(-log(u)) in (-3.9, 16.7)). Then
    # the XLA program and the graph enlarge the same ids, and compute the
    # same losses, rewards and policy updates.
    compiled = _trainer(self.stream, reward=reward)
    graph = _trainer(self.stream, reward=reward)
    for t in (compiled, graph):
      # Adam's epsilon well above rounding noise in both optimizers: a
      # gradient that is 0 up to rounding (XLA and the graph round
      # differently) would otherwise move a row by a whole learning rate,
      # and enlarged ids adopt their shadow rows (search/trials.py).
      t.optimizer.epsilon = 1e-3
      if t.method.shadow_optimizer is not None:
        t.method.shadow_optimizer.epsilon = 1e-3
    for t in (compiled, graph):
      for agent in t.method.agents.values():
        kernel, bias = agent._actor_network._projection.weights  # pylint: disable=protected-access
        kernel.assign(tf.zeros_like(kernel))
        bias.assign([-20.0, 20.0])
    enlarged = 0
    for batch in self.batches:
      a = compiled._learn_compiled(batch)  # pylint: disable=protected-access
      b = graph._learn_graph(batch)  # pylint: disable=protected-access
      for side in ('user', 'item'):
        self.assertAllEqual(a[f'{side}_enlarged'], b[f'{side}_enlarged'])
        enlarged += int(np.sum(a[f'{side}_enlarged']))
        self.assertAllClose(a[f'{side}_reward'], b[f'{side}_reward'],
                            rtol=1e-4, atol=reward_atol)
      self.assertAllClose(a['loss'], b['loss'], rtol=1e-4, atol=1e-6)
    self.assertGreater(enlarged, 50)
    for side in ('user', 'item'):
      for u, v in zip(compiled.method.agents[side].policy.variables(),
                      graph.method.agents[side].policy.variables()):
        self.assertAllClose(u, v, rtol=1e-4, atol=1e-5)
    self.assertEqual(int(compiled.step), len(self.batches))

  def test_learn_runs_partial_batches_as_a_graph(self):
    t = _trainer(self.stream)
    calls = []
    compiled = t._learn_compiled  # pylint: disable=protected-access

    def spy(batch):
      calls.append(int(batch['user'].shape[0]))
      return compiled(batch)

    t._learn_compiled = spy  # pylint: disable=protected-access
    partial = {k: v[:37] for k, v in self.batches[0].items()}
    out = t.learn(partial)
    self.assertEqual(out['loss'].shape, [37])
    self.assertEqual(calls, [])
    out = t.learn(self.batches[1])
    self.assertEqual(calls, [_BATCH])
    self.assertEqual(int(t.step), 2)

  def test_policy_rows_cover_the_reachable_buckets(self):
    t = _trainer(self.stream)
    for side in ('user', 'item'):
      largest = int(np.bincount(getattr(self.stream, side)).max())
      self.assertEqual(t.method.policy_buckets[side],
                       int(np.floor(np.log2(largest))) + 1)



class JitCompileChoiceTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.named_parameters(
      dict(testcase_name='auto_short', value=None,
           num_train=jit.JIT_MIN_TRAIN_EXAMPLES - 1, expected=False),
      dict(testcase_name='auto_long', value=None,
           num_train=jit.JIT_MIN_TRAIN_EXAMPLES, expected=True),
      dict(testcase_name='forced_on', value=True, num_train=10,
           expected=True),
      dict(testcase_name='forced_off', value=False, num_train=10**9,
           expected=False))
  def test_resolve(self, value, num_train, expected):
    cfg = config.ExperimentConfig(
        train=config.TrainConfig(jit_compile=value))
    resolved = jit.resolve_jit_compile(cfg, num_train)
    self.assertIs(resolved.train.jit_compile, expected)
    self.assertEqual(resolved.search, cfg.search)

  def test_trainer_decides_auto_from_the_stream(self):
    s = stream.build_stream(
        stream.load_ratings('synthetic', synthetic_num_ratings=500, seed=0),
        'binary', 'random', 0.8, 0)
    cfg = config.ExperimentConfig(
        model=config.ModelConfig(candidate_sizes=(2, 4), hidden_units=8),
        search=config.SearchConfig(method='fixed'),
        train=config.TrainConfig(batch_size=_BATCH))
    t = trainer_lib.Trainer(cfg, s)
    self.assertIs(t.cfg.train.jit_compile, False)  # 400 train examples
    self.assertIsNone(t._learn_compiled)  # pylint: disable=protected-access


class TestPassTest(tf.test.TestCase):

  def test_scoring_compiles_no_program_of_its_own(self):
    # 1000 ratings: a test part of 200 examples in batches of 150 and 50,
    # scored by one graph traced once for both shapes; the core's XLA
    # scoring function (one program per shape) is never called.
    s = stream.build_stream(
        stream.load_ratings('synthetic', synthetic_num_ratings=1000, seed=0),
        'binary', 'random', 0.8, 0)
    cfg = config.ExperimentConfig(
        model=config.ModelConfig(candidate_sizes=(2, 4), hidden_units=8),
        search=config.SearchConfig(method='fixed'),
        train=config.TrainConfig(batch_size=150, jit_compile=True))
    t = trainer_lib.Trainer(cfg, s)
    writer = tf.summary.create_noop_writer()
    metrics = t.run(writer, outputs.Progress(s.num_examples, enabled=False))
    self.assertEqual(metrics['test']['examples'], 200)
    self.assertEqual(
        t._evaluate.experimental_get_tracing_count(), 1)  # pylint: disable=protected-access
    self.assertEqual(t.core.evaluate.experimental_get_tracing_count(), 0)


if __name__ == '__main__':
  tf.test.main()
