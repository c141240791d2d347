"""Tests for tests/real_data.py and tests/conftest.py.

A run without ml-latest-small must not look like one that read it: it ends
with one line that counts the skipped real-data tests and names the variable
to set (tests/conftest.py); under CI those tests fail instead (issue 14).
`make test-fast` leaves out the tests conftest's SLOW list names.
"""

import os
import re
import subprocess
import sys
import tempfile
import textwrap

import tensorflow as tf

from tests import conftest
from tests import real_data

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
# Two real-data tests and one skipped for another reason.
_TESTS = textwrap.dedent('''\
    import unittest
    from tests import real_data

    class RealDataTest(unittest.TestCase):

      def test_first(self):
        real_data.ml_latest_small_path(self)

      def test_second(self):
        real_data.ml_latest_small_path(self)

      def test_placeholder(self):
        self.skipTest('not a real-data test')
    ''')


class MissingDataLineTest(tf.test.TestCase):

  def test_counts_only_real_data_skips(self):
    reasons = ['Skipped: /data/ml-latest-small.zip not found; set '
               'ESAPN_ML_LATEST_SMALL to the GroupLens ml-latest-small.zip'] * 3
    reasons.append('Skipped: Not a test.')
    self.assertEqual(
        real_data.missing_data_line(reasons),
        '3 real-data test(s) skipped: /data/ml-latest-small.zip not found; '
        'set ESAPN_ML_LATEST_SMALL=/path/to/ml-latest-small.zip (the '
        'GroupLens download) to run them')

  def test_nothing_when_no_real_data_test_skipped(self):
    self.assertIsNone(real_data.missing_data_line(['Skipped: Not a test.']))
    self.assertIsNone(real_data.missing_data_line([]))


class TerminalSummaryTest(tf.test.TestCase):
  """pytest, with tests/conftest.py, on two real-data tests (about 2 s)."""

  def _pytest(self, **env) -> subprocess.CompletedProcess:
    folder = tempfile.mkdtemp(dir=self.get_temp_dir())
    path = os.path.join(folder, 'real_data_user_test.py')
    with open(path, 'w') as f:
      f.write(_TESTS)
    environ = {k: v for k, v in os.environ.items() if k != 'CI'}
    environ[real_data.ML_LATEST_SMALL_ENV] = os.path.join(
        folder, 'absent', 'ml-latest-small.zip')
    environ.update(env)
    return subprocess.run(
        [sys.executable, '-m', 'pytest', '-q', '-p', 'tests.conftest', '-p',
         'no:cacheprovider', path], cwd=_REPO, env=environ,
        capture_output=True, text=True, timeout=120, check=False)

  def test_run_without_data_ends_with_one_line(self):
    result = self._pytest()
    self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
    lines = result.stdout.strip().splitlines()
    # The line, then pytest's count ('3 skipped in 0.1s').
    self.assertRegex(lines[-1], r'^3 skipped')
    self.assertRegex(
        lines[-2], r'^2 real-data test\(s\) skipped: \S+/absent/'
        r'ml-latest-small\.zip not found; set ESAPN_ML_LATEST_SMALL=')
    self.assertLen([x for x in lines if 'real-data test' in x], 1)

  def test_ci_still_fails(self):
    result = self._pytest(CI='true')
    self.assertEqual(result.returncode, 1, result.stdout + result.stderr)
    self.assertIn('CI is set but', result.stdout)
    self.assertNotIn('real-data test(s) skipped', result.stdout)


class SlowMarkerTest(tf.test.TestCase):

  def test_every_slow_entry_names_an_existing_test(self):
    # A renamed file or test would silently move into test-fast.
    for prefix in conftest.SLOW:
      path, _, rest = prefix.partition('::')
      self.assertTrue(os.path.exists(os.path.join(_REPO, path)), prefix)
      if rest:
        name = rest.split('::')[-1]
        with open(os.path.join(_REPO, path)) as f:
          names = re.findall(r'(?:def|class) (\w+)', f.read())
        # A prefix of a test's name, or a test's name and a parameter name.
        self.assertTrue(any(n.startswith(name) or name.startswith(n)
                            for n in names), prefix)

  def test_ids_are_relative_to_the_repository(self):
    class Item:  # What relative_test_id reads of a pytest item.
      path = os.path.join(_REPO, 'tests', 'bin', 'train_test.py')
      nodeid = 'bin/train_test.py::TrainTest::test_x'
    self.assertEqual(conftest.relative_test_id(Item),
                     'tests/bin/train_test.py::TrainTest::test_x')
    self.assertTrue(conftest.relative_test_id(Item).startswith(conftest.SLOW))
    Item.path = os.path.abspath(__file__)
    Item.nodeid = 'real_data_test.py::SlowMarkerTest::test_x'
    self.assertFalse(conftest.relative_test_id(Item).startswith(
        conftest.SLOW))


if __name__ == '__main__':
  tf.test.main()
