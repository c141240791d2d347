"""Tests for the running ids-per-size counts (`search/size_counts.py`).

Every place that changes sizes in a step must tell the counts; checked
after every step of each method that changes sizes, through the trainer's
real step, against a count of the size indices themselves.
"""

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from esapn_tf import config
from esapn_tf.data import stream
from esapn_tf.training import trainer as trainer_lib

_BATCH = 100
_SIZES = (2, 4, 8, 16)


def _trainer(s, method, jit_compile=False, **search):
  tf.keras.utils.set_random_seed(0)
  cfg = config.ExperimentConfig(
      model=config.ModelConfig(candidate_sizes=_SIZES, hidden_units=16),
      search=config.SearchConfig(method=method, policy_hidden_units=16,
                                 **search),
      train=config.TrainConfig(batch_size=_BATCH, seed=0,
                               jit_compile=jit_compile))
  return trainer_lib.Trainer(cfg, s)


class SizeCountsTest(tf.test.TestCase, parameterized.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.stream = stream.build_stream(
        stream.load_ratings('synthetic', synthetic_num_ratings=3000, seed=0),
        'binary', 'random', 0.8, 0)
    cls.batches = list(stream.make_dataset(cls.stream, 0, 12 * _BATCH,
                                           _BATCH))

  def _assert_counts(self, t):
    for side in ('user', 'item'):
      emb = t.core.embeddings[side]
      index = emb.size_index.numpy()
      self.assertAllEqual(t.method.size_counts(side),
                          np.bincount(index, minlength=len(_SIZES)))
      self.assertAllClose(t.method.mean_dims(side),
                          np.mean(np.asarray(_SIZES)[index]), rtol=1e-6)

  @parameterized.named_parameters(
      dict(testcase_name='esapn_paired_xla', method='esapn',
           jit_compile=True),
      dict(testcase_name='esapn_paired', method='esapn'),
      dict(testcase_name='esapn_next_appearance', method='esapn',
           reward='next_appearance'),
      dict(testcase_name='random', method='random', growth_probability=0.5),
      # threshold 1: an id passes several thresholds within a batch, so the
      # extra enlargements before the recommender's step are counted too.
      dict(testcase_name='threshold', method='threshold',
           growth_threshold=1.0),
      # A fast architecture step, so that the argmax sizes move.
      dict(testcase_name='darts', method='darts',
           architecture_learning_rate=0.5),
      dict(testcase_name='autoemb', method='autoemb',
           architecture_learning_rate=0.5))
  def test_counts_follow_every_size_change(self, method, jit_compile=False,
                                           **search):
    t = _trainer(self.stream, method, jit_compile, **search)
    if method == 'esapn':
      # Policies sure to enlarge (logits -20 keep, +20 enlarge), so that
      # the trials resolve into enlargements (tests/training/trainer_test).
      for agent in t.method.agents.values():
        kernel, bias = agent._actor_network._projection.weights  # pylint: disable=protected-access
        kernel.assign(tf.zeros_like(kernel))
        bias.assign([-20.0, 20.0])
    t.method.start_phase('train')
    self._assert_counts(t)
    prev = None
    for batch in self.batches:
      t.method.before_learn(prev)
      t.learn(batch)
      prev = batch
      t.position.assign_add(_BATCH)
      self._assert_counts(t)
    # The sizes did change (else the test shows nothing).
    self.assertTrue(any(
        t.method.size_counts(side).numpy()[0] <
        t.core.embeddings[side].num_ids for side in ('user', 'item')))

  def test_recount_at_the_start_of_a_part(self):
    # MDE sets every size before the run; the count at the part's start
    # sees them.
    t = _trainer(self.stream, 'mde', mde_temperature=0.5)
    t.method.start_phase('train')
    self._assert_counts(t)
    self.assertGreater(t.method.size_counts('item').numpy()[1:].sum(), 0)


if __name__ == '__main__':
  tf.test.main()
