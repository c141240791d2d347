"""Tests for esapn_tf.data.ratings: the checks every reader relies on."""

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from esapn_tf import errors
from esapn_tf.data import ratings


def _ratings(user_id=(1, 2, 3), item_id=(4, 5, 6), rating=(0.5, 3.0, 5.0)):
  return ratings.Ratings(
      user_id=np.array(user_id, np.int64), item_id=np.array(item_id, np.int64),
      rating=np.array(rating, np.float32),
      timestamp=np.arange(len(rating), dtype=np.int64), name='test')


class ValidateTest(tf.test.TestCase, parameterized.TestCase):

  def test_valid(self):
    r = _ratings()
    self.assertIsNone(r.first_invalid_row())
    r.validate('test')

  @parameterized.named_parameters(
      ('rating_zero', dict(rating=(3.0, 0.0, 9.0)), 1,
       r'test: rating 0.0 at row 1 \(0-based\) is outside 0.5..5; expected '
       '0.5 to 5 stars'),
      ('rating_nan', dict(rating=(np.nan, 3.0, 3.0)), 0, 'rating nan at row 0'),
      ('negative_item', dict(item_id=(4, 5, -6)), 2,
       r'test: item_id -6 at row 2 \(0-based\) is negative; expected '
       'non-negative integer ids'),
      ('first_of_two_kinds', dict(user_id=(1, -2, 3), rating=(3, 3, 6)), 1,
       'user_id -2 at row 1'))
  def test_invalid(self, columns, row, message):
    r = _ratings(**columns)
    self.assertEqual(r.first_invalid_row(), row)
    with self.assertRaisesRegex(errors.DataError, message):
      r.validate('test')
    # A file reader's `describe` turns the row into its own message.
    with self.assertRaisesRegex(errors.DataError, f'^line {row + 2}$'):
      r.validate('test', describe=lambda k: f'line {k + 2}')

  def test_empty(self):
    with self.assertRaisesRegex(
        errors.DataError, 'test contains no ratings; expected at least one'):
      _ratings((), (), ()).validate('test')


if __name__ == '__main__':
  tf.test.main()
