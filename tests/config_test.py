"""Tests for esapn_tf.config: the methods' settings."""

import tensorflow as tf

from esapn_tf import config
from esapn_tf import errors


class MethodConfigTest(tf.test.TestCase):

  def _cfg(self, **search):
    return config.ExperimentConfig(
        model=config.ModelConfig(candidate_sizes=(2, 4, 8)),
        search=config.SearchConfig(**search))

  def test_embedding_sizes_per_method(self):
    for method in ('esapn', 'darts', 'autoemb', 'mde'):
      self.assertEqual(self._cfg(method=method).embedding_sizes, (2, 4, 8))
    self.assertEqual(self._cfg(method='fixed').embedding_sizes, (8,))
    self.assertEqual(
        self._cfg(method='fixed', fixed_size=4).embedding_sizes, (4,))
    self.assertEqual(
        self._cfg(method='pruned', prune_user_fraction=0.5,
                  prune_item_fraction=0.2).embedding_sizes, (8,))

  def test_pruned_needs_both_fractions(self):
    with self.assertRaisesRegex(errors.UserInputError,
                                'prune_item_fraction=0.0 is invalid.*pruned'):
      config.SearchConfig(method='pruned', prune_user_fraction=0.5)
    with self.assertRaisesRegex(errors.UserInputError, 'prune_user_fraction'):
      config.SearchConfig(method='pruned', prune_user_fraction=1.5,
                          prune_item_fraction=0.5)

  def test_fractions_only_for_pruned(self):
    with self.assertRaisesRegex(errors.UserInputError, 'method=pruned only'):
      config.SearchConfig(method='esapn', prune_user_fraction=0.5)

  def test_unknown_method_and_bad_temperature(self):
    with self.assertRaisesRegex(errors.UserInputError,
                                "method='dart' is invalid: use one of .*mde"):
      config.SearchConfig(method='dart')
    with self.assertRaisesRegex(errors.UserInputError, 'mde_temperature'):
      config.SearchConfig(method='mde', mde_temperature=-0.1)
    with self.assertRaisesRegex(errors.UserInputError,
                                'architecture_learning_rate'):
      config.SearchConfig(method='darts', architecture_learning_rate=0.0)

  def test_synthetic_reads_no_data_dir(self):
    with self.assertRaisesRegex(errors.UserInputError,
                                'synthetic set reads no files.*--dataset='):
      config.DataConfig(dataset='synthetic', data_dir='ml-latest-small.zip')

  def test_pruned_budget_is_a_share_of_the_largest_size(self):
    cfg = config.ExperimentConfig(
        model=config.ModelConfig(candidate_sizes=(2, 4, 8)),
        search=config.SearchConfig(method='pruned', fixed_size=4,
                                   prune_user_fraction=0.5,
                                   prune_item_fraction=0.25))
    self.assertEqual(cfg.embedding_sizes, (4,))
    with self.assertRaisesRegex(errors.UserInputError,
                                'a 4-dim table holds at most 0.5'):
      config.ExperimentConfig(
          model=config.ModelConfig(candidate_sizes=(2, 4, 8)),
          search=config.SearchConfig(method='pruned', fixed_size=4,
                                     prune_user_fraction=0.6,
                                     prune_item_fraction=0.25))

  def test_round_trip(self):
    cfg = self._cfg(method='pruned', prune_user_fraction=0.9985,
                    prune_item_fraction=0.2902)
    self.assertEqual(config.ExperimentConfig.from_dict(cfg.to_dict()), cfg)


class TrainConfigTest(tf.test.TestCase):

  def test_batch_size_below_2_is_refused(self):
    # One example per batch: BatchNorm in training mode maps it to the same
    # vector whatever the ids, so the model would train silently wrong.
    for size in (1, 0, -5):
      with self.assertRaisesRegex(
          errors.UserInputError,
          f'^batch_size={size} is invalid: use 2 or more'):
        config.TrainConfig(batch_size=size)
    self.assertEqual(config.TrainConfig(batch_size=2).batch_size, 2)


if __name__ == '__main__':
  tf.test.main()
