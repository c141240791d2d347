"""Tests for esapn_tf.data.synthetic."""

import functools
import os
import tempfile

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from esapn_tf import errors
from esapn_tf.data import grouplens_format
from esapn_tf.data import movielens
from esapn_tf.data import ratings
from esapn_tf.data import synthetic
from tests import real_data


@functools.lru_cache(maxsize=1)
def _load_grouplens(path: str) -> ratings.Ratings:
  """The real set, read once for all the tests that compare with it."""
  return movielens.load_grouplens(path)


def _degrees(ids: np.ndarray) -> np.ndarray:
  """Ratings per distinct id, int64 [distinct ids], for raw ids int64 [n]."""
  return np.unique(ids, return_counts=True)[1]


def _repeated_pairs(r: ratings.Ratings) -> int:
  """Rows whose (user, movie) pair appeared on an earlier row."""
  return r.num_ratings - len(np.unique(np.stack([r.user_id, r.item_id]),
                                       axis=1)[0])


class GenerateTest(tf.test.TestCase, parameterized.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.r = synthetic.generate(50_000, seed=0)

  def test_same_seed_same_arrays_other_seed_different(self):
    a = synthetic.generate(5_000, seed=3)
    b = synthetic.generate(5_000, seed=3)
    c = synthetic.generate(5_000, seed=4)
    for column in ('user_id', 'item_id', 'rating', 'timestamp'):
      self.assertAllEqual(getattr(a, column), getattr(b, column))
    self.assertNotAllEqual(a.rating, c.rating)
    self.assertNotAllEqual(a.item_id, c.item_id)

  def test_columns_and_name(self):
    r = self.r
    r.validate('synthetic')
    self.assertEqual(r.name, 'synthetic-50000')
    self.assertEqual(r.num_ratings, 50_000)
    self.assertEqual(r.user_id.dtype, np.int64)
    self.assertEqual(r.item_id.dtype, np.int64)
    self.assertEqual(r.rating.dtype, np.float32)
    self.assertEqual(r.timestamp.dtype, np.int64)

  def test_default_sizes_scale_like_ml20m(self):
    self.assertEqual(synthetic.default_sizes(20_000_263), (138_493, 26_744))
    self.assertEqual(synthetic.default_sizes(100_000), (1_998, 1_113))
    self.assertEqual(synthetic.default_sizes(100), (50, 20))  # The minimums.
    self.assertEqual(synthetic.default_sizes(30), (30, 20))  # <= n users.
    users, items = synthetic.default_sizes(50_000)
    self.assertLen(np.unique(self.r.user_id), users)  # Users are 1..U.
    self.assertAllEqual(np.unique(self.r.user_id), np.arange(1, users + 1))
    self.assertLen(np.unique(self.r.item_id), items)  # Every movie is rated.

  def test_explicit_sizes(self):
    r = synthetic.generate(1_000, seed=1, num_users=10, num_items=30)
    self.assertAllEqual(np.unique(r.user_id), np.arange(1, 11))
    self.assertLen(np.unique(r.item_id), 30)
    self.assertLessEqual(r.item_id.max(), 90)  # Sparse ids in 1..3 * items.

  def test_ratings_are_half_stars_with_movielens_shape(self):
    r = self.r
    twice = r.rating * 2
    self.assertAllEqual(twice, np.rint(twice))
    self.assertAllEqual(np.unique(r.rating), np.arange(1, 11) / 2)
    self.assertBetween(float(r.rating.mean()), 3.3, 3.7)
    self.assertBetween(float((r.rating > 3.5).mean()), 0.42, 0.55)

  def test_every_user_has_twenty_ratings(self):
    counts = np.bincount(self.r.user_id)[1:]
    self.assertEqual(counts.min(), 20)  # GroupLens's floor.
    self.assertGreater(counts.max(), 5 * counts.mean())  # A heavy tail.

  def test_no_pair_repeats_at_small_sizes(self):
    self.assertEqual(_repeated_pairs(self.r), 0)

  def test_item_popularity_is_skewed(self):
    counts = np.sort(np.unique(self.r.item_id, return_counts=True)[1])[::-1]
    top = counts[:len(counts) // 10].sum() / counts.sum()
    self.assertGreater(top, 0.4)

  def test_signal_is_learnable(self):
    # User and item means on half the ratings predict the other half.
    r = self.r
    known = np.random.default_rng(0).random(r.num_ratings) < 0.5
    mean = r.rating[known].mean()

    def shrunk_means(ids):
      rows = np.unique(ids, return_inverse=True)[1]
      size = rows.max() + 1
      total = np.bincount(rows[known], r.rating[known], minlength=size)
      count = np.bincount(rows[known], minlength=size)
      return ((total + 5 * mean) / (count + 5))[rows]

    prediction = shrunk_means(r.user_id) + shrunk_means(r.item_id) - mean
    correlation = np.corrcoef(prediction[~known], r.rating[~known])[0, 1]
    self.assertGreater(correlation, 0.3)
    accuracy = ((prediction[~known] > 3.5) == (r.rating[~known] > 3.5)).mean()
    self.assertGreater(accuracy, 0.6)

  def test_timestamps_increase_within_each_user(self):
    r = self.r
    self.assertAllGreaterEqual(np.diff(r.user_id), 0)  # Rows by user.
    same_user = np.diff(r.user_id) == 0
    self.assertAllGreaterEqual(np.diff(r.timestamp)[same_user], 0)
    self.assertAllInRange(r.timestamp, 789_652_800, 1_427_760_000)
    self.assertGreater(np.ptp(r.timestamp), 10 * 365 * 86_400)  # Years.

  @parameterized.named_parameters(
      ('no_ratings', dict(num_ratings=0), 'num_ratings is 0'),
      ('too_many_users', dict(num_ratings=10, num_users=11),
       'num_users is 11; it must lie in 1..num_ratings'),
      ('no_items', dict(num_ratings=10, num_items=0), 'num_items is 0'),
  )
  def test_bad_arguments(self, kwargs, message):
    with self.assertRaisesRegex(errors.UserInputError, message):
      synthetic.generate(**kwargs)


class DegreesTest(tf.test.TestCase, parameterized.TestCase):
  """Ratings per user and per movie: floors, long tails, small sets."""

  @parameterized.named_parameters(('seed0', 0), ('seed1', 1), ('seed2', 2))
  def test_user_floor_and_no_movie_floor_at_ml20m_ratios(self, seed):
    # ml-20m's 5.18 users per movie (138,493 / 26,744), 1/27 of its users.
    r = synthetic.generate(200_000, seed=seed, num_users=5_179,
                           num_items=1_000)
    users, movies = _degrees(r.user_id), _degrees(r.item_id)
    self.assertLen(users, 5_179)
    self.assertLen(movies, 1_000)  # Every movie has a rating.
    self.assertEqual(users.min(), 20)  # The floor; many users sit near it,
    self.assertGreater((users < 25).mean(), 0.2)
    self.assertGreater(users.max(), 5 * users.mean())  # below a long tail.
    self.assertEqual(movies.min(), 1)  # No floor for movies (9% have one).
    self.assertGreater((movies == 1).mean(), 0.05)
    self.assertGreater(movies.max(), 30 * np.median(movies))

  def test_fewer_than_twenty_per_user_only_when_ratings_run_out(self):
    r = synthetic.generate(1_000, seed=0, num_users=100, num_items=30)
    self.assertAllEqual(_degrees(r.user_id), np.full(100, 10))  # n / U.
    r = synthetic.generate(1_000, seed=0, num_users=40, num_items=30)
    self.assertEqual(_degrees(r.user_id).min(), 20)  # 25 each on average.

  def test_more_movies_than_ratings_rates_n_of_them_once(self):
    r = synthetic.generate(10, seed=0, num_users=2, num_items=30)
    self.assertAllEqual(_degrees(r.item_id), np.ones(10))
    self.assertAllInRange(r.item_id, 1, 90)

  def test_degrees_are_exact_and_heavy_tailed(self):
    rng = np.random.default_rng(0)
    degrees = synthetic._degrees(rng, count=1_000, total=100_000, floor=20,
                                 sigma=1.6, cap=4_000)
    self.assertEqual(degrees.sum(), 100_000)
    self.assertEqual(degrees.min(), 20)
    self.assertLess(np.median(degrees), 0.6 * degrees.mean())  # Skewed.
    # A cap below the mean is raised: the degrees still sum to the total.
    degrees = synthetic._degrees(rng, count=10, total=1_000, floor=1,
                                 sigma=2.0, cap=5)
    self.assertEqual(degrees.sum(), 1_000)


class MovieLensShapeTest(tf.test.TestCase, parameterized.TestCase):
  """At ml-latest-small's sizes the degrees look like ml-latest-small's."""

  def setUp(self):
    super().setUp()
    self.real = _load_grouplens(real_data.ml_latest_small_path(self))

  @parameterized.named_parameters(('seed0', 0), ('seed1', 1), ('seed2', 2))
  def test_quantiles_match_ml_latest_small(self, seed):
    real = self.real
    real_users, real_movies = _degrees(real.user_id), _degrees(real.item_id)
    # 100,836 ratings, 610 users, 9,724 movies.
    r = synthetic.generate(real.num_ratings, seed=seed,
                           num_users=len(real_users),
                           num_items=len(real_movies))
    users, movies = _degrees(r.user_id), _degrees(r.item_id)
    self.assertLen(movies, len(real_movies))
    # Movies (real: 35% with one rating, 62% under 5, 87% under 20, median 3).
    for below in (2, 5, 20):
      self.assertNear((movies < below).mean(), (real_movies < below).mean(),
                      0.07, msg=f'share of movies with < {below} ratings')
    self.assertBetween(np.median(movies), np.median(real_movies) - 1,
                       np.median(real_movies) + 1)
    # Users (real: at least 20, median 70.5, mean 165, max 2,698).
    self.assertEqual(real_users.min(), 20)
    self.assertEqual(users.min(), 20)
    self.assertNear(np.median(users), np.median(real_users),
                    0.25 * np.median(real_users))
    self.assertNear(users.mean(), real_users.mean(), 0.01)  # n / U.
    self.assertBetween(users.max(), 1_000, 5_000)
    self.assertEqual(_repeated_pairs(r), 0)  # MovieLens has no repeats.


class WriteGroupLensCsvTest(tf.test.TestCase):

  def test_round_trip_through_the_grouplens_reader(self):
    r = synthetic.generate(2_000, seed=5)
    folder = os.path.join(tempfile.mkdtemp(dir=self.get_temp_dir()),
                          'ml-synthetic')
    os.makedirs(folder)
    path = os.path.join(folder, 'ratings.csv')
    grouplens_format.write_grouplens_csv(r, path)
    self.assertEqual(os.listdir(folder), ['ratings.csv'])  # No temp file left.
    with open(path) as f:
      self.assertEqual(f.readline(), 'userId,movieId,rating,timestamp\n')
      first = f.readline().strip().split(',')
    self.assertEqual(first, [str(r.user_id[0]), str(r.item_id[0]),
                             f'{r.rating[0]:.1f}', str(r.timestamp[0])])
    back = movielens.load_grouplens(folder)
    self.assertEqual(back.name, 'ml-synthetic')
    for column in ('user_id', 'item_id', 'rating', 'timestamp'):
      self.assertAllEqual(getattr(back, column), getattr(r, column))


if __name__ == '__main__':
  tf.test.main()
