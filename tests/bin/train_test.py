"""Tests for bin/train.py as users run it: a subprocess, flags, exit status.

Bad input must end in one line `error: ...` on stderr, exit status 2 and no
traceback, before anything is written to the workdir. Each subprocess pays
TensorFlow's import (3-5 s), so the cases are few and small.
"""

import json
import os
import subprocess
import sys
import tempfile
import zipfile

from absl.testing import parameterized
import tensorflow as tf

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
_TRAIN = os.path.join(_REPO, 'bin', 'train.py')
_HEADER = 'userId,movieId,rating,timestamp\n'

# Name -> (content of ratings.csv, text the error line must contain).
_BAD_DATA = {
    'wrong_columns': ('user,movie,stars,time\n1,2,3.0,4\n',
                      'expected the columns userId,movieId,rating,timestamp'),
    'non_numeric': (_HEADER + '1,2,3.0,4\n1,x,4.0,5\n',
                    "column movieId holds a non-numeric value 'x'"),
    'rating_7': (_HEADER + '1,2,3.0,4\n1,3,7,5\n', 'rating 7.0'),
    'empty_file': ('', 'contains no ratings'),
}
# Name -> (flags, text the error line must contain).
_BAD_FLAGS = {
    'decreasing_sizes': (['--candidate_sizes=8,4'], 'strictly increasing'),
    'batch_size_0': (['--batch_size=0'], 'batch_size=0 is invalid'),
    'negative_learning_rate': (['--learning_rate=-1'],
                               'learning_rate=-1.0 is invalid'),
    'unknown_task': (['--task=ranking'], "task='ranking' is invalid"),
    'unknown_dataset': (['--dataset=ml-2m'], "dataset='ml-2m' is invalid"),
    'pruned_without_budget': (['--method=pruned'],
                              'prune_user_fraction=0.0 is invalid: '
                              '--method=pruned needs the share'),
    'pruned_budget_beyond_its_table': (
        ['--method=pruned', '--fixed_size=16', '--prune_user_fraction=0.5',
         '--prune_item_fraction=0.1'], 'a 16-dim table holds at most 0.125'),
    'fraction_for_another_method': (['--prune_item_fraction=0.5'],
                                    'applies to --method=pruned only'),
    'mde_temperature': (['--method=mde', '--mde_temperature=2'],
                        'mde_temperature=2.0 is invalid'),
}


def _run(args, cwd=_REPO):
  env = dict(os.environ, TF_USE_LEGACY_KERAS='1', TF_CPP_MIN_LOG_LEVEL='2')
  return subprocess.run([sys.executable, _TRAIN] + args, cwd=cwd, env=env,
                        capture_output=True, text=True, timeout=300,
                        check=False)


class TrainScriptTest(tf.test.TestCase, parameterized.TestCase):

  def setUp(self):
    super().setUp()
    self.root = tempfile.mkdtemp(dir=self.get_temp_dir())
    self.workdir = os.path.join(self.root, 'run')

  def _data(self, content):
    """Writes `content` as ml-test/ratings.csv; returns the folder."""
    folder = os.path.join(self.root, 'ml-test')
    os.makedirs(folder)
    with open(os.path.join(folder, 'ratings.csv'), 'w') as f:
      f.write(content)
    return folder

  def assertFailsCleanly(self, args, message):
    """Exit 2, one `error:` line naming the problem, nothing written."""
    result = _run(args + [f'--workdir={self.workdir}'])
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    self.assertEqual(result.returncode, 2, result.stderr)
    self.assertNotIn('Traceback', result.stderr)
    self.assertNotEmpty(lines)
    self.assertStartsWith(lines[-1], 'error: ')
    self.assertIn(message, lines[-1])
    self.assertFalse(os.path.exists(os.path.join(self.workdir,
                                                 'results.json')))
    # Validation precedes any write: not even the workdir is created.
    self.assertFalse(os.path.exists(self.workdir))

  @parameterized.named_parameters(*[(k,) + v for k, v in _BAD_DATA.items()])
  def test_bad_ratings_file(self, content, message):
    folder = self._data(content)
    self.assertFailsCleanly(
        ['--dataset=ml-latest-small', f'--data_dir={folder}'], message)

  def test_data_dir_does_not_exist(self):
    missing = os.path.join(self.root, 'ml-latest-small.zip')
    self.assertFailsCleanly(
        ['--dataset=ml-latest-small', f'--data_dir={missing}'],
        f'{missing} does not exist')

  def test_data_dir_alone_names_the_dataset(self):
    # The GroupLens name of the archive is the dataset: ml-latest-small is
    # then read (and found missing) instead of the synthetic set.
    missing = os.path.join(self.root, 'ml-latest-small.zip')
    self.assertFailsCleanly([f'--data_dir={missing}'],
                            f'{missing} does not exist')
    other = os.path.join(self.root, 'my-ratings.zip')
    self.assertFailsCleanly([f'--data_dir={other}'],
                            "'my-ratings' is not a GroupLens name; pass "
                            '--dataset=')

  def test_zip_without_ratings(self):
    path = os.path.join(self.root, 'ml-test.zip')
    with zipfile.ZipFile(path, 'w') as archive:
      archive.writestr('ml-test/movies.csv', 'movieId,title\n1,A\n')
      archive.writestr('ml-test/README.txt', 'no ratings here\n')
    self.assertFailsCleanly(
        ['--dataset=ml-latest-small', f'--data_dir={path}'],
        'holds no ratings file')

  @parameterized.named_parameters(*[(k,) + v for k, v in _BAD_FLAGS.items()])
  def test_bad_flag(self, flags, message):
    self.assertFailsCleanly(
        ['--dataset=synthetic', '--synthetic_num_ratings=1000'] + flags,
        message)

  def test_tiny_synthetic_run(self):
    result = _run([
        '--dataset=synthetic', '--synthetic_num_ratings=2000',
        '--batch_size=200', '--candidate_sizes=2,4', '--hidden_units=8',
        '--jit_compile=false', f'--workdir={self.workdir}'])
    self.assertEqual(result.returncode, 0, result.stderr[-3000:])
    self.assertNotIn('Traceback', result.stderr)
    self.assertIn('accuracy', result.stdout)
    self.assertIn('method=esapn', result.stdout)
    self.assertIn('memory', result.stdout)
    with open(os.path.join(self.workdir, 'results.json')) as f:
      results = json.load(f)
    self.assertEqual(results['train']['examples'], 1600)
    self.assertEqual(results['test']['examples'], 400)
    self.assertBetween(results['test']['accuracy'], 0.0, 1.0)
    # The flags reached the config.
    with open(os.path.join(self.workdir, 'config.json')) as f:
      cfg = json.load(f)
    self.assertEqual(cfg['model']['candidate_sizes'], [2, 4])
    self.assertEqual(cfg['model']['hidden_units'], 8)
    self.assertEqual(cfg['train']['batch_size'], 200)
    self.assertFalse(cfg['train']['jit_compile'])
    self.assertEqual(cfg['data']['synthetic_num_ratings'], 2000)

  def test_flags_of_other_methods_get_a_note(self):
    result = _run([
        '--dataset=synthetic', '--synthetic_num_ratings=1000',
        '--batch_size=200', '--candidate_sizes=2,4', '--hidden_units=8',
        '--jit_compile=false', '--method=fixed', '--mde_temperature=0.3',
        f'--workdir={self.workdir}'])
    self.assertEqual(result.returncode, 0, result.stderr[-3000:])
    self.assertIn('note: --mde_temperature applies to --method=mde only; '
                  'ignored', result.stderr)
    self.assertNotIn('--fixed_size applies', result.stderr)


if __name__ == '__main__':
  tf.test.main()
