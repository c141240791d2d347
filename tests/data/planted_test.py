"""Tests for the planted stream (`data/planted.py`)."""

import numpy as np
import tensorflow as tf

from esapn_tf.data import planted


class PlantedTest(tf.test.TestCase):

  def test_counts_and_labels(self):
    r = planted.generate(num_users=20, num_rich=3, num_plain=5,
                         rich_ratings=40, plain_ratings=7, rank=2,
                         noise=0.0, seed=1)
    # 3 * 40 + 5 * 7 rows; rich ids 1..3 have 40 each, plain 4..8 have 7.
    self.assertEqual(r.num_ratings, 155)
    counts = np.bincount(r.item_id, minlength=9)[1:]
    self.assertAllEqual(counts, [40] * 3 + [7] * 5)
    # Without noise a plain movie is liked by everyone or by no one (a
    # bias); a rich movie splits its users (its factor against theirs).
    for item in range(4, 9):
      self.assertLen(set(r.rating[r.item_id == item].tolist()), 1)
    for item in range(1, 4):
      self.assertLen(set(r.rating[r.item_id == item].tolist()), 2)
    self.assertTrue(set(r.rating.tolist()) <= {1.0, 5.0})

  def test_bad_sizes(self):
    with self.assertRaisesRegex(ValueError, 'must be >= 1'):
      planted.generate(num_rich=0)
    with self.assertRaisesRegex(ValueError, 'noise'):
      planted.generate(noise=0.5)


if __name__ == '__main__':
  tf.test.main()
