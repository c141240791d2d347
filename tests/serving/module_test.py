"""esapn_tf.serving.module: the serving model computes the recommender's logits.

Random weights, BN statistics and size indices (no training): the compact
model and the FIXED reference, built from `serving.params`, must give the
Keras `Recommender`'s logits for the same raw ids.
"""

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from esapn_tf.models import recommender
from esapn_tf.serving import module
from esapn_tf.serving import params

_PAPER_SIZES = (2, 4, 8, 16, 64, 128)


def _random_model(task, sizes, num_users, num_items, seed=0):
  """A Recommender with random weights, BN statistics and size indices."""
  model = recommender.Recommender(num_users, num_items, sizes, task=task,
                                  hidden_units=32)
  model.build_all()
  rng = np.random.default_rng(seed)
  for w in model.weights:
    if w.dtype == tf.int32:
      w.assign(rng.integers(0, len(sizes), w.shape).astype(np.int32))
    elif 'moving_variance' in w.name:
      w.assign(rng.uniform(0.5, 2.0, w.shape).astype(np.float32))
    else:
      w.assign(rng.normal(size=w.shape).astype(np.float32) * 0.5)
  return model


class ServingModelTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.named_parameters(
      dict(testcase_name='binary_paper_sizes', task='binary',
           sizes=_PAPER_SIZES),
      dict(testcase_name='multiclass_paper_sizes', task='multiclass',
           sizes=_PAPER_SIZES),
      dict(testcase_name='binary_single_size', task='binary', sizes=(16,)),
  )
  def test_serving_model_matches_recommender(self, task, sizes):
    model = _random_model(task, sizes, 30, 50)
    vocab = {'user': np.arange(30) * 7 + 3, 'item': np.arange(50) * 11 + 5}
    rng = np.random.default_rng(1)
    users, items = rng.integers(0, 30, 200), rng.integers(0, 50, 200)
    expected = model({'user': users, 'item': items}, training=False)
    for p in (params.compact_params(model, vocab),
              params.fixed_reference_params(model, vocab, 128)):
      served, known_user, known_movie = module.ServingModel(p).logits(
          tf.constant(vocab['user'][users]), tf.constant(vocab['item'][items]))
      if task == 'binary':
        served = tf.squeeze(served, -1)
      self.assertAllClose(served, expected, atol=1e-4, rtol=1e-5)
      self.assertAllEqual(known_user, [True] * 200)
      self.assertAllEqual(known_movie, [True] * 200)
    self.assertEqual(
        params.fixed_reference_params(model, vocab, 128).user.tables[0].shape,
        (30, 128))


if __name__ == '__main__':
  tf.test.main()
