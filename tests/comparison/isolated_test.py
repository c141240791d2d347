"""Tests for esapn_tf.comparison.isolated: one cell in a child process."""

import json
import os
import sys
import tempfile
from unittest import mock

import tensorflow as tf

from esapn_tf import config
from esapn_tf import errors
from esapn_tf.comparison import isolated


def _config(num_ratings=600, data_dir='', dataset='synthetic'):
  return config.ExperimentConfig(
      data=config.DataConfig(dataset=dataset, data_dir=data_dir,
                             synthetic_num_ratings=num_ratings),
      model=config.ModelConfig(candidate_sizes=(2, 8), hidden_units=8),
      search=config.SearchConfig(method='fixed'),
      train=config.TrainConfig(batch_size=100, jit_compile=False))


class RunInSubprocessTest(tf.test.TestCase):

  def _workdir(self):
    return os.path.join(tempfile.mkdtemp(dir=self.get_temp_dir()), 'cell')

  def test_a_run_returns_its_results(self):
    workdir = self._workdir()
    results = isolated.run_in_subprocess(_config(), workdir)
    with open(os.path.join(workdir, 'results.json')) as f:
      self.assertEqual(results, json.load(f))
    self.assertEqual(results['method'], 'fixed')
    self.assertEqual(results['test']['examples'], 120)
    with open(os.path.join(workdir, 'config.json')) as f:
      self.assertEqual(config.ExperimentConfig.from_dict(json.load(f)),
                       _config())
    # The temporary config file is gone.
    self.assertFalse([n for n in os.listdir(workdir)
                      if n.startswith('.cell-config-')])

  def test_bad_input_is_a_user_input_error(self):
    missing = os.path.join(self.get_temp_dir(), 'nowhere.zip')
    with self.assertRaisesRegex(errors.UserInputError, 'nowhere.zip'):
      isolated.run_in_subprocess(
          _config(dataset='ml-latest-small', data_dir=missing),
          self._workdir())

  def test_a_crash_fails_with_the_signal_name(self):
    crash = [sys.executable, '-c',
             'import os, signal, sys; print("dying", file=sys.stderr); '
             'os.kill(os.getpid(), signal.SIGSEGV)']
    with mock.patch.object(isolated, 'command', return_value=crash):
      with self.assertRaisesRegex(
          isolated.CellCrashed,
          r'died of SIGSEGV; .*rerun resumes it \(last output: dying\)'):
        isolated.run_in_subprocess(_config(), self._workdir())

  def test_exit_statuses_map_to_the_library_errors(self):
    for status, line, error, text in (
        (1, 'error: training stopped: non-finite loss', errors.TrainingError,
         '^non-finite loss$'),
        (130, 'interrupted: stopped by SIGTERM at step 3',
         errors.RunInterrupted, '^stopped by SIGTERM at step 3$'),
        (7, 'odd', isolated.CellCrashed, 'status 7: odd')):
      child = [sys.executable, '-c',
               f'import sys; print({line!r}, file=sys.stderr); '
               f'sys.exit({status})']
      with mock.patch.object(isolated, 'command', return_value=child):
        with self.assertRaisesRegex(error, text):
          isolated.run_in_subprocess(_config(), self._workdir())


if __name__ == '__main__':
  tf.test.main()
