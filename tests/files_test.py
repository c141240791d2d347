"""Tests for esapn_tf.files: atomic writes and the lock's errors."""

import json
import os
import tempfile
from unittest import mock

import tensorflow as tf

from esapn_tf import errors
from esapn_tf import files


class WorkdirLockTest(tf.test.TestCase):

  def test_unwritable_workdir_is_a_user_input_error(self):
    workdir = tempfile.mkdtemp(dir=self.get_temp_dir())
    denied = PermissionError(13, 'Permission denied')
    with mock.patch.object(files.os, 'open', side_effect=denied):
      with self.assertRaisesRegex(
          errors.UserInputError,
          r"cannot write in workdir .* \(Permission denied\); pass a "
          'writable --workdir'):
        with files.WorkdirLock(workdir):
          pass

  def test_a_folder_named_like_the_lock(self):
    workdir = tempfile.mkdtemp(dir=self.get_temp_dir())
    os.mkdir(os.path.join(workdir, files.LOCK_NAME))
    with self.assertRaisesRegex(errors.UserInputError, 'is not a file'):
      with files.WorkdirLock(workdir):
        pass

  def test_lock_is_released(self):
    workdir = tempfile.mkdtemp(dir=self.get_temp_dir())
    with files.WorkdirLock(workdir):
      with open(os.path.join(workdir, files.LOCK_NAME)) as f:
        self.assertEqual(int(f.read()), os.getpid())
    self.assertFalse(os.path.exists(os.path.join(workdir,
                                                 files.LOCK_NAME)))


class AtomicWriteTest(tf.test.TestCase):

  def test_json_round_trip_and_no_temporary_left(self):
    folder = tempfile.mkdtemp(dir=self.get_temp_dir())
    path = os.path.join(folder, 'results.json')
    files.atomic_write_json(path, {'b': [1, 2], 'a': 0.5})
    files.atomic_write_json(path, {'c': 'second'})  # Overwrites in place.
    with open(path, encoding='utf-8') as f:
      text = f.read()
    self.assertEqual(json.loads(text), {'c': 'second'})
    self.assertTrue(text.endswith('\n'))
    self.assertEqual(os.listdir(folder), ['results.json'])

  def test_text(self):
    folder = tempfile.mkdtemp(dir=self.get_temp_dir())
    path = os.path.join(folder, 'a.csv')
    files.atomic_write_text(path, 'x,y\n1,2\n')
    with open(path, encoding='utf-8') as f:
      self.assertEqual(f.read(), 'x,y\n1,2\n')
    self.assertEqual(os.listdir(folder), ['a.csv'])


if __name__ == '__main__':
  tf.test.main()
