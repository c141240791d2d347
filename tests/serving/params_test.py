"""Known answers for esapn_tf.serving.params: the compact serving layout."""

import os

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from esapn_tf import config
from esapn_tf.layers import embedding
from esapn_tf.layers import pooled_embedding
from esapn_tf.serving import params
from esapn_tf.training import loop


def _side_layer(sizes, num_ids, size_index, seed=0):
  """A built MultiSizeEmbedding with random weights and given sizes."""
  layer = embedding.MultiSizeEmbedding(num_ids, sizes)
  layer.build((None,))
  rng = np.random.default_rng(seed)
  for w in layer.trainable_weights:
    w.assign(rng.normal(size=w.shape).astype(np.float32))
  bn = layer.batch_norm
  bn.moving_mean.assign(rng.normal(size=bn.moving_mean.shape))
  bn.moving_variance.assign(rng.uniform(0.5, 2.0, bn.moving_variance.shape))
  layer.size_index.assign(np.asarray(size_index, np.int32))
  return layer


class SideParamsTest(tf.test.TestCase, parameterized.TestCase):
  """Which rows are kept, their codes, the BN folding, the fallback."""

  def test_tables_hold_only_live_rows(self):
    # Sizes (2, 4, 8); ids 10, 20, 30, 40 at size indices 0, 2, 2, 1:
    # table_2 holds id 10, table_4 id 40, table_8 ids 20 and 30 (row order).
    layer = _side_layer((2, 4, 8), 4, [0, 2, 2, 1])
    layer.batch_norm.gamma.assign([2.0] * 8)
    layer.batch_norm.beta.assign([1.0] * 8)
    layer.batch_norm.moving_mean.assign([0.5] * 8)
    layer.batch_norm.moving_variance.assign([3.0] * 8)
    p = params.side_params(layer, np.array([10, 20, 30, 40]))
    self.assertEqual([t.shape for t in p.tables], [(1, 2), (1, 4), (2, 8)])
    self.assertAllEqual(p.codes, [0, (2 << 32) | 0, (2 << 32) | 1,
                                  (1 << 32) | 0])
    self.assertEqual(p.live_dims, 2 + 4 + 16)
    self.assertAllEqual(p.tables[0], layer.tables[0].numpy()[[0]])
    self.assertAllEqual(p.tables[1], layer.tables[1].numpy()[[3]])
    # BN folded into the largest table and the last lift: x * s + t with
    # s = 2 / sqrt(3 + 0.001) = 1.15450..., t = 1 - 0.5 * s = 0.42274...
    s, t = 2.0 / np.sqrt(3.001), 1.0 - 0.5 * 2.0 / np.sqrt(3.001)
    self.assertAllClose(p.tables[2], layer.tables[2].numpy()[[1, 2]] * s + t)
    self.assertAllClose(p.lift_kernels[1], layer.lift_kernels[1].numpy() * s)
    self.assertAllClose(p.lift_biases[1],
                        layer.lift_biases[1].numpy() * s + t)
    self.assertAllEqual(p.lift_kernels[0], layer.lift_kernels[0].numpy())

  def test_unknown_embedding_is_the_mean_id(self):
    # Sizes (2, 4); id 0 at size 2 with row [1, 1] and W = 0.5 everywhere,
    # b = 0: lifted [1, 1, 1, 1]; id 1 at size 4 with row [3, 3, 3, 3].
    # Mean [2, 2, 2, 2]; BN at its initial statistics divides by
    # sqrt(1 + 0.001): fallback = tanh(2 / 1.0005) = 0.96393...
    layer = embedding.MultiSizeEmbedding(2, (2, 4))
    layer.build((None,))
    # Each id's current row (MultiSizeEmbedding.embeddings); id 0's last
    # two columns are not read.
    layer.embeddings.assign([[1.0, 1.0, 9.0, 9.0], [3.0] * 4])
    layer.lift_kernels[0].assign(np.full((2, 4), 0.5, np.float32))
    layer.size_index.assign([0, 1])
    p = params.side_params(layer, np.array([7, 8]))
    self.assertAllClose(p.unknown_embedding, [np.tanh(2 / np.sqrt(1.001))] * 4)

  def test_rejects_a_vocab_with_duplicates(self):
    layer = _side_layer((2, 4), 3, [0, 1, 0])
    with self.assertRaisesRegex(ValueError, 'unique'):
      params.side_params(layer, np.array([1, 1, 2]))


class RestoreRunTest(tf.test.TestCase, parameterized.TestCase):
  """`restore_run` rebuilds the storage layout that wrote the checkpoint."""

  @parameterized.named_parameters(('pooled', 'pooled', True),
                                  ('dense', 'dense', False))
  def test_restores_the_layout_of_the_run(self, storage, pooled):
    workdir = os.path.join(self.get_temp_dir(), f'run-{storage}')
    cfg = config.ExperimentConfig(
        data=config.DataConfig(synthetic_num_ratings=2000),
        model=config.ModelConfig(candidate_sizes=(2, 4, 8), hidden_units=8,
                                 embedding_storage=storage),
        search=config.SearchConfig(policy_hidden_units=8),
        train=config.TrainConfig(batch_size=100, jit_compile=False))
    loop.run_experiment(cfg, workdir, verbose=False)
    run = params.restore_run(workdir)
    reader = tf.train.load_checkpoint(run.checkpoint)
    for side in params.SIDES:
      layer = run.embedding(side)
      self.assertEqual(
          isinstance(layer, pooled_embedding.PooledEmbedding), pooled)
      # A variable is saved under its first path in the object graph.
      key = [k for k in reader.get_variable_to_shape_map()
             if k.endswith('size_index/.ATTRIBUTES/VARIABLE_VALUE') and
             k.split('/')[0] in ('model', f'{side}_trials') and
             side in k.split('/')[0] + k.split('/')[1]][0]
      self.assertAllEqual(layer.size_index, reader.get_tensor(key))
      if pooled:  # the restored index and pools agree
        self.assertAllEqual(
            np.bincount(layer.size_index.numpy(), minlength=3),
            layer.counts)
    compact = params.compact_params(run.model, run.vocab)
    self.assertEqual(compact.item.live_dims,
                     int(np.sum(np.take((2, 4, 8),
                                        run.model.item_embedding.size_index))))


if __name__ == '__main__':
  tf.test.main()
