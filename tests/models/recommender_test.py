"""Tests for the Recommender and its losses (DESIGN.md §2)."""

import os

import esapn_tf  # noqa: F401
import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from esapn_tf.models import recommender


class RecommenderTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.named_parameters(('binary', 'binary', ()),
                                  ('multiclass', 'multiclass', (5,)))
  def test_output_shape(self, task, tail):
    model = recommender.Recommender(4, 6, (2, 8), task=task, hidden_units=16)
    logits = model({'user': tf.constant([0, 3]), 'item': tf.constant([5, 1])})
    self.assertEqual(logits.shape, (2,) + tail)

  def test_binary_loss_known_answer(self):
    # sigmoid(0) = 0.5 -> (0.5 - 1)^2 = 0.25; sigmoid(log 3) = 0.75 ->
    # (0.75 - 0)^2 = 0.5625.
    loss = recommender.per_example_loss(
        'binary', tf.constant([1.0, 0.0]), tf.constant([0.0, np.log(3.0)]))
    self.assertAllClose(loss, [0.25, 0.5625])

  def test_multiclass_loss_known_answer(self):
    # Uniform logits over 5 classes: CE = log 5 whatever the label.
    loss = recommender.per_example_loss(
        'multiclass', tf.constant([0, 4]), tf.zeros([2, 5]))
    self.assertAllClose(loss, [np.log(5.0)] * 2)

  def test_correct(self):
    self.assertAllEqual(
        recommender.per_example_correct(
            'binary', tf.constant([1.0, 0.0, 1.0]),
            tf.constant([0.3, -2.0, -0.1])), [1.0, 1.0, 0.0])
    logits = tf.constant([[0.0, 3.0, 0, 0, 0], [5.0, 0, 0, 0, 0]])
    self.assertAllEqual(
        recommender.per_example_correct('multiclass', tf.constant([1, 2]),
                                        logits), [1.0, 0.0])

  def test_unknown_task(self):
    with self.assertRaisesRegex(ValueError, 'task'):
      recommender.Recommender(2, 2, (2,), task='ranking')

  def test_config_round_trip_and_saved_model(self):
    tf.keras.utils.set_random_seed(0)
    model = recommender.Recommender(5, 7, (2, 4, 8), task='multiclass',
                                    hidden_units=8)
    model.build_all()
    model.user_embedding.enlarge(tf.constant([1, 2]))
    inputs = {'user': tf.constant([1, 2, 4]), 'item': tf.constant([0, 6, 3])}
    expected = model(inputs, training=False)
    clone = recommender.Recommender.from_config(model.get_config())
    clone.build_all()
    clone.set_weights(model.get_weights())
    self.assertAllClose(clone(inputs, training=False), expected)
    path = os.path.join(self.get_temp_dir(), 'saved')
    tf.saved_model.save(model, path)
    loaded = tf.saved_model.load(path)
    self.assertAllClose(loaded(inputs, training=False), expected, atol=1e-6)


if __name__ == '__main__':
  tf.test.main()
