"""Mirrored training on two logical CPU devices against one device.

Not collected by pytest (the name does not end in `_test`):
`mirrored_test.py` runs this module in a child process, because the CPU can
be split into logical devices only before TensorFlow runs its first op, and
a pytest process has long done so.

Both trainers start from the same values (the mirrored trainer's checkpoint,
written at step 0, is read into the one-device trainer: this also checks that
the two layouts share their checkpoints) and learn from the same batches; the
last batch holds an odd number of examples, so the replicas' shares differ.
"""

import os
import tempfile

import tensorflow as tf

_CPU = tf.config.list_physical_devices('CPU')[0]
tf.config.set_logical_device_configuration(
    _CPU, [tf.config.LogicalDeviceConfiguration()] * 2)

# pylint: disable=g-import-not-at-top,wrong-import-position
from absl.testing import absltest
from absl.testing import parameterized
import numpy as np

from esapn_tf import config
from esapn_tf.data import stream
from esapn_tf.distribute import strategy as strategy_lib
from esapn_tf.training import trainer as trainer_lib
# pylint: enable=g-import-not-at-top,wrong-import-position

_BATCH = 100


def _config(method, reward, distribution):
  return config.ExperimentConfig(
      model=config.ModelConfig(candidate_sizes=(2, 4, 8), hidden_units=16),
      search=config.SearchConfig(method=method, policy_hidden_units=16,
                                 reward=reward),
      train=config.TrainConfig(batch_size=_BATCH, seed=0, jit_compile=False,
                               distribution=distribution,
                               num_replicas=2 if distribution != 'none'
                               else 0))


_DISTRIBUTION = []


def _distribution():
  """The process's one mirrored `Distribution`: strategies made in turn
  would reuse each other's collective instance keys in TensorFlow's
  runtime (one per process, as `bin/train.py` makes it)."""
  if not _DISTRIBUTION:
    _DISTRIBUTION.append(
        strategy_lib.make(_config('fixed', 'paired', 'mirrored')))
  return _DISTRIBUTION[0]


def _sure_policies(t):
  """Policies sure of "enlarge" (logits -20, 20 for keep, enlarge): the two
  layouts' rounding cannot flip a sampled action (`trainer_test`)."""
  for agent in t.method.agents.values():
    kernel, bias = agent._actor_network._projection.weights  # pylint: disable=protected-access
    kernel.assign(tf.zeros_like(kernel))
    bias.assign([-20.0, 20.0])


def _copies(var):
  """The replicas' copies of a mirrored variable."""
  return [v.numpy() for v in var.values]


class MirroredMatchesOneDeviceTest(tf.test.TestCase, parameterized.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.stream = stream.build_stream(
        stream.load_ratings('synthetic', synthetic_num_ratings=2000, seed=0),
        'binary', 'random', 0.8, 0)
    cls.batches = list(stream.make_dataset(cls.stream, 0, 5 * _BATCH,
                                           _BATCH))
    # An odd batch: shares of 33 and 34 examples.
    cls.batches += list(stream.make_dataset(cls.stream, 5 * _BATCH,
                                            5 * _BATCH + 67, 67))

  def _pair(self, method, reward):
    """(mirrored trainer, one-device trainer) from the same values."""
    cfg = _config(method, reward, 'mirrored')
    mirrored = trainer_lib.Trainer(cfg, self.stream, _distribution())
    one = trainer_lib.Trainer(_config(method, reward, 'none'), self.stream)
    for t in (mirrored, one):
      # Adam's epsilon above rounding noise (`trainer_test`): a gradient
      # that is 0 up to rounding would move a row by a learning rate.
      t.optimizer.epsilon = 1e-3
      if getattr(t.method, 'shadow_optimizer', None) is not None:
        t.method.shadow_optimizer.epsilon = 1e-3
      if hasattr(t.method, 'agents'):
        _sure_policies(t)
    path = mirrored.checkpoint().write(
        os.path.join(tempfile.mkdtemp(), 'ckpt'))
    one.checkpoint().read(path).assert_existing_objects_matched()
    return mirrored, one

  def test_the_replicas_are_two_cpu_devices(self):
    distribution = _distribution()
    self.assertEqual(distribution.strategy.num_replicas_in_sync, 2)
    self.assertEqual(strategy_lib.describe(distribution, {}, None, None),
                     {'strategy': 'mirrored', 'num_replicas': 2,
                      'devices': ['/device:CPU:0', '/device:CPU:1']})

  @parameterized.named_parameters(
      dict(testcase_name='esapn_paired', method='esapn', reward='paired'),
      dict(testcase_name='esapn_next_appearance', method='esapn',
           reward='next_appearance'),
      dict(testcase_name='fixed', method='fixed', reward='paired'))
  def test_steps_match(self, method, reward):
    mirrored, one = self._pair(method, reward)
    enlarged = 0
    for batch in self.batches:
      a = mirrored.learn(batch)
      b = one.learn(batch)
      self.assertAllClose(a['loss'], b['loss'], rtol=1e-4, atol=1e-6)
      self.assertAllEqual(a['correct'], b['correct'])
      for side in ('user', 'item'):
        self.assertAllEqual(a[f'{side}_enlarged'], b[f'{side}_enlarged'])
        enlarged += int(np.sum(a[f'{side}_enlarged']))
        if f'{side}_reward' in b:
          self.assertAllClose(a[f'{side}_reward'], b[f'{side}_reward'],
                              rtol=1e-4, atol=1e-5)
    if method == 'esapn':
      self.assertGreater(enlarged, 50)
    self.assertEqual(int(mirrored.step.numpy()), len(self.batches))
    # Both replicas hold the same values, those of the one-device run.
    pairs = [(mirrored.model.user_embedding.table_variable,
              one.model.user_embedding.table_variable),
             (mirrored.model.item_embedding.size_index,
              one.model.item_embedding.size_index),
             (mirrored.model.hidden.kernel, one.model.hidden.kernel),
             (mirrored.model.input_norm.moving_variance,
              one.model.input_norm.moving_variance)]
    if method == 'esapn':
      pairs += list(zip(mirrored.method.agents['item'].policy.variables(),
                        one.method.agents['item'].policy.variables()))
    for m, o in pairs:
      first, second = _copies(m)
      self.assertAllEqual(first, second, msg=m.name)
      self.assertAllClose(first, o.numpy(), rtol=1e-4, atol=1e-5,
                          msg=m.name)
    # The test part's scoring.
    a, b = mirrored._evaluate(self.batches[0]), one._evaluate(self.batches[0])  # pylint: disable=protected-access
    self.assertAllClose(a['loss'], b['loss'], rtol=1e-4, atol=1e-6)

  def test_the_batch_is_split(self):
    # Ablation of the split: each replica's share of the step's examples
    # is half the batch (the step's BatchNorm statistics are the whole
    # batch's only through its synchronization).
    distribution = _distribution()
    # pylint: disable-next=g-import-not-at-top
    from esapn_tf.distribute import mirrored as mirrored_lib

    def share_size(batch):
      share = mirrored_lib.ReplicaShare(batch)
      return tf.shape(share.local(batch)['user'])[0]

    batch = self.batches[-1]
    strategy = distribution.strategy
    out = strategy.run(tf.function(share_size), args=(batch,))
    sizes = [int(v) for v in strategy.experimental_local_results(out)]
    self.assertEqual(sizes, [33, 34])


if __name__ == '__main__':
  absltest.main()
