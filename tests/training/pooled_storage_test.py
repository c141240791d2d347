"""ESAPN with pooled storage against the dense layout (issue 12).

The same run (seed, stream, policy) on `--embedding_storage=pooled` (pooled,
`layers/pooled_embedding.py`) and `dense` must give the same losses and
predictions to float tolerance, with enlargements into every pool and rows
freed and reused; and the compact serving export of both is the same.
"""

import numpy as np
import tensorflow as tf

from esapn_tf import config
from esapn_tf.data import stream
from esapn_tf.layers import pooled_embedding
from esapn_tf.serving import params
from esapn_tf.training import trainer as trainer_lib

_BATCH = 100
_SIZES = (2, 4, 8, 16)


def _trainer(s, storage, **search):
  tf.keras.utils.set_random_seed(0)
  cfg = config.ExperimentConfig(
      model=config.ModelConfig(candidate_sizes=_SIZES, hidden_units=16,
                               embedding_storage=storage),
      search=config.SearchConfig(method='esapn', policy_hidden_units=16,
                                 trial_length=1, memory_cost=0.0, **search),
      train=config.TrainConfig(batch_size=_BATCH, seed=0, jit_compile=False))
  t = trainer_lib.Trainer(cfg, s)
  for agent in t.method.agents.values():  # a policy sure to enlarge
    kernel, bias = agent._actor_network._projection.weights  # pylint: disable=protected-access
    kernel.assign(tf.zeros_like(kernel))
    bias.assign([-20.0, 20.0])
  return t


class PooledStorageTest(tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.stream = stream.build_stream(
        stream.load_ratings('synthetic', synthetic_num_ratings=3000, seed=0),
        'binary', 'random', 0.8, 0)
    cls.batches = list(stream.make_dataset(cls.stream, 0, 24 * _BATCH,
                                           _BATCH))
    cls.trainers = None  # (dense, pooled) after the run test

  def _trained(self):
    if PooledStorageTest.trainers is None:
      self.test_pooled_run_equals_dense_run()
    return PooledStorageTest.trainers

  def test_pooled_run_equals_dense_run(self):
    if PooledStorageTest.trainers is not None:
      return  # already run (by the export test)
    dense = _trainer(self.stream, 'dense')
    pooled = _trainer(self.stream, 'pooled')
    self.assertIsInstance(pooled.model.item_embedding,
                          pooled_embedding.PooledEmbedding)
    self.assertNotIsInstance(dense.model.item_embedding,
                             pooled_embedding.PooledEmbedding)
    # Same initial values: the pooled layer drew its own first columns.
    for side in ('user', 'item'):
      d, p = dense.core.embeddings[side], pooled.core.embeddings[side]
      p.assign_rows(tf.range(d.num_ids), d.embeddings)
    owners = {}  # (side, size, start block) -> ids that held the row
    peak = {side: np.zeros(len(_SIZES), np.int64) for side in ('user', 'item')}
    for batch in self.batches:
      a, b = dense.learn(batch), pooled.learn(batch)
      for t in (dense, pooled):
        t.position.assign_add(_BATCH)
      self.assertAllClose(a['loss'], b['loss'], atol=1e-5)
      for side in ('user', 'item'):
        self.assertAllEqual(a[f'{side}_enlarged'], b[f'{side}_enlarged'])
        p = pooled.core.embeddings[side]
        peak[side] = np.maximum(peak[side], p.counts.numpy())
        for i, (k, start) in enumerate(zip(p.size_index.numpy(),
                                           p.start_block.numpy())):
          owners.setdefault((side, int(k), int(start)), set()).add(i)
    for side in ('user', 'item'):
      d, p = dense.core.embeddings[side], pooled.core.embeddings[side]
      self.assertAllEqual(d.size_index, p.size_index)
      self.assertTrue(np.all(peak[side] > 0), peak)  # every pool used
      ids = tf.range(d.num_ids)
      self.assertAllClose(d(ids, training=False), p(ids, training=False),
                          atol=1e-5)
    # Rows freed by one id were taken by another.
    self.assertTrue(any(len(v) > 1 for v in owners.values()))
    test = self.batches[-1]
    self.assertAllClose(dense.model(test, training=False),
                        pooled.model(test, training=False), atol=1e-5)
    PooledStorageTest.trainers = (dense, pooled)

  def test_compact_export_equals_dense_export(self):
    dense, pooled = self._trained()
    vocab = {'user': np.arange(self.stream.num_users, dtype=np.int64) + 7,
             'item': np.arange(self.stream.num_items, dtype=np.int64) + 9}
    a = params.compact_params(dense.model, vocab)
    b = params.compact_params(pooled.model, vocab)
    for side in ('user', 'item'):
      sa, sb = getattr(a, side), getattr(b, side)
      self.assertAllEqual(sa.codes, sb.codes)
      self.assertLen(sb.tables, len(_SIZES))
      self.assertGreater(sum(len(t) for t in sb.tables[1:]), 0)
      for ta, tb in zip(sa.tables, sb.tables):
        self.assertAllClose(ta, tb, atol=1e-5)
      self.assertAllClose(sa.unknown_embedding, sb.unknown_embedding,
                          atol=1e-5)
    self.assertAllClose(a.hidden_kernel, b.hidden_kernel, atol=1e-5)


if __name__ == '__main__':
  tf.test.main()
