"""Tests for esapn_tf.flag_values (the flags' meanings, without absl)."""

import unittest

from esapn_tf import errors
from esapn_tf import flag_values


class FlagValuesTest(unittest.TestCase):

  def test_bool_or_auto(self):
    self.assertIsNone(flag_values.bool_or_auto('Auto'))
    self.assertIs(flag_values.bool_or_auto(' yes '), True)
    self.assertIs(flag_values.bool_or_auto('0'), False)
    self.assertIs(flag_values.bool_or_auto(False), False)
    with self.assertRaisesRegex(ValueError, "not 'maybe'"):
      flag_values.bool_or_auto('maybe')

  def test_dataset_from_data_dir(self):
    self.assertEqual(
        flag_values.dataset_from_data_dir('../data/ml-latest-small.zip'),
        'ml-latest-small')
    self.assertEqual(flag_values.dataset_from_data_dir('/d/ml-20m/'),
                     'ml-20m')
    with self.assertRaisesRegex(errors.UserInputError,
                                "'ratings' is not a GroupLens name"):
      flag_values.dataset_from_data_dir('/d/ratings')

  def test_notes_name_only_the_flags_the_method_ignores(self):
    notes = flag_values.ignored_flag_notes(
        'fixed', ['fixed_size', 'mde_temperature', 'embedding_storage'])
    self.assertEqual(notes, [
        'note: --mde_temperature applies to --method=mde only; ignored',
        'note: --embedding_storage applies to --method=esapn only; ignored'])
    self.assertEqual(flag_values.ignored_flag_notes('esapn', []), [])


if __name__ == '__main__':
  unittest.main()
