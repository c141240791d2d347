"""Tests for esapn_tf.training.workdir: the lock's errors."""

import os
import tempfile
from unittest import mock

import tensorflow as tf

from esapn_tf import errors
from esapn_tf.training import workdir as workdir_lib


class WorkdirLockTest(tf.test.TestCase):

  def test_unwritable_workdir_is_a_user_input_error(self):
    workdir = tempfile.mkdtemp(dir=self.get_temp_dir())
    denied = PermissionError(13, 'Permission denied')
    with mock.patch.object(workdir_lib.os, 'open', side_effect=denied):
      with self.assertRaisesRegex(
          errors.UserInputError,
          r"cannot write in workdir .* \(Permission denied\); pass a "
          'writable --workdir'):
        with workdir_lib.WorkdirLock(workdir):
          pass

  def test_a_folder_named_like_the_lock(self):
    workdir = tempfile.mkdtemp(dir=self.get_temp_dir())
    os.mkdir(os.path.join(workdir, workdir_lib.LOCK_NAME))
    with self.assertRaisesRegex(errors.UserInputError, 'is not a file'):
      with workdir_lib.WorkdirLock(workdir):
        pass

  def test_lock_is_released(self):
    workdir = tempfile.mkdtemp(dir=self.get_temp_dir())
    with workdir_lib.WorkdirLock(workdir):
      with open(os.path.join(workdir, workdir_lib.LOCK_NAME)) as f:
        self.assertEqual(int(f.read()), os.getpid())
    self.assertFalse(os.path.exists(os.path.join(workdir,
                                                 workdir_lib.LOCK_NAME)))


if __name__ == '__main__':
  tf.test.main()
