"""Tests for bin/train.py as users run it: a subprocess, flags, exit status.

Bad input must end in one line `error: ...` on stderr, exit status 2 and no
traceback, before anything is written to the workdir; bad flags before
TensorFlow is even imported. Nothing from TensorFlow, absl or Gym comes
before the run's own first line. Most subprocesses pay TensorFlow's import
(3-5 s), so the cases are few and small.
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
    'batch_size_1': (['--batch_size=1'],
                     'batch_size=1 is invalid: use 2 or more'),
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


# Lines of third-party start-up output that must not reach the user.
_BANNERS = ('absl::InitializeLog', 'oneDNN', 'cuda', 'cuInit', 'Gym',
            'SyntaxWarning', 'cpu_feature_guard')


def _run(args, cwd=_REPO, **env_vars):
  """Runs bin/train.py as a new user would: no TensorFlow variables set."""
  env = {k: v for k, v in os.environ.items()
         if k not in ('TF_USE_LEGACY_KERAS', 'TF_CPP_MIN_LOG_LEVEL',
                      'ESAPN_VERBOSE')}
  env.update(env_vars)
  return subprocess.run([sys.executable, _TRAIN] + args, cwd=cwd, env=env,
                        capture_output=True, text=True, timeout=300,
                        check=False)


def _run_watching_imports(args):
  """bin/train.py in a process that prints at exit whether TF was loaded."""
  code = ('import atexit, runpy, sys\n'
          'atexit.register(lambda: print("tensorflow loaded:", '
          '"tensorflow" in sys.modules))\n'
          f'sys.argv = [{_TRAIN!r}] + {args!r}\n'
          f'runpy.run_path({_TRAIN!r}, run_name="__main__")\n')
  env = {k: v for k, v in os.environ.items()
         if k not in ('TF_USE_LEGACY_KERAS', 'TF_CPP_MIN_LOG_LEVEL')}
  return subprocess.run([sys.executable, '-c', code], cwd=_REPO, env=env,
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

  @parameterized.named_parameters(
      ('misspelt_flag', ['--methd=esapn'],
       "Unknown command line flag 'methd'. Did you mean: method ?"),
      ('invalid_config_value', ['--batch_size=1'], 'batch_size=1 is invalid'),
      ('invalid_combination', ['--method=fixed', '--fixed_size=3'],
       'fixed_size=3 is invalid'))
  def test_flags_are_checked_before_tensorflow_loads(self, args, message):
    result = _run_watching_imports(args + [f'--workdir={self.workdir}'])
    self.assertEqual(result.returncode, 2, result.stderr)
    self.assertEqual(result.stdout.strip(), 'tensorflow loaded: False')
    lines = result.stderr.splitlines()
    self.assertLen(lines, 1)
    self.assertStartsWith(lines[0], 'error: ')
    self.assertIn(message, lines[0])

  def test_missing_data_is_the_only_line(self):
    # TensorFlow and TF-Agents (Gym) are imported before the data is read:
    # none of their start-up lines come before the error.
    missing = os.path.join(self.root, 'ml-latest-small.zip')
    result = _run([f'--data_dir={missing}', f'--workdir={self.workdir}'])
    self.assertEqual(result.returncode, 2, result.stderr)
    self.assertEqual(result.stdout, '')
    lines = result.stderr.splitlines()
    self.assertLen(lines, 1, result.stderr)
    self.assertStartsWith(lines[0], f'error: {missing} does not exist')

  def test_esapn_verbose_brings_third_party_output_back(self):
    missing = os.path.join(self.root, 'ml-latest-small.zip')
    result = _run([f'--data_dir={missing}', f'--workdir={self.workdir}'],
                  ESAPN_VERBOSE='1')
    self.assertEqual(result.returncode, 2, result.stderr)
    lines = result.stderr.splitlines()
    self.assertStartsWith(lines[-1], f'error: {missing} does not exist')
    self.assertIn('Gym has been unmaintained', result.stderr)
    self.assertIn('absl::InitializeLog', result.stderr)

  def test_tiny_synthetic_run(self):
    result = _run([
        '--dataset=synthetic', '--synthetic_num_ratings=2000',
        '--batch_size=200', '--candidate_sizes=2,4', '--hidden_units=8',
        '--jit_compile=false', f'--workdir={self.workdir}'])
    self.assertEqual(result.returncode, 0, result.stderr[-3000:])
    # Quiet start: the run's own line comes first, nothing on stderr.
    self.assertEqual(result.stderr, '')
    self.assertStartsWith(result.stdout, 'Data synthetic-2000: 2,000 ratings')
    for banner in _BANNERS:
      self.assertNotIn(banner, result.stdout)
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
        '--embedding_storage=pooled', f'--workdir={self.workdir}'])
    self.assertEqual(result.returncode, 0, result.stderr[-3000:])
    self.assertIn('note: --mde_temperature applies to --method=mde only; '
                  'ignored', result.stderr)
    self.assertIn('note: --embedding_storage applies to --method=esapn '
                  'only; ignored', result.stderr)
    self.assertNotIn('--fixed_size applies', result.stderr)


if __name__ == '__main__':
  tf.test.main()
