"""Tests for bin/compare.py as users run it: a subprocess, flags, exit status.

One real comparison (fixed and esapn, binary, one seed, tiny synthetic data)
and its rerun, which reuses both cells; and bad input, which must end in one
`error:` line and exit status 2 before anything is written.
"""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time

import tensorflow as tf

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
_COMPARE = os.path.join(_REPO, 'bin', 'compare.py')
_TINY = ['--dataset=synthetic', '--synthetic_num_ratings=3000',
         '--batch_size=200', '--candidate_sizes=2,4', '--hidden_units=8',
         '--jit_compile=false', '--summary_every=2']


_ENV = dict(os.environ, TF_USE_LEGACY_KERAS='1', TF_CPP_MIN_LOG_LEVEL='2')


def _run(args):
  return subprocess.run([sys.executable, _COMPARE] + args, cwd=_REPO,
                        env=_ENV, capture_output=True, text=True, timeout=600,
                        check=False)


class CompareScriptTest(tf.test.TestCase):

  def setUp(self):
    super().setUp()
    self.workdir = os.path.join(tempfile.mkdtemp(dir=self.get_temp_dir()),
                                'compare')

  def test_tiny_comparison_and_its_rerun(self):
    args = _TINY + ['--methods=fixed,esapn', '--tasks=binary', '--seeds=1',
                    f'--workdir={self.workdir}']
    result = _run(args)
    self.assertEqual(result.returncode, 0, result.stderr[-3000:])
    self.assertNotIn('Traceback', result.stderr)
    self.assertIn('[cell 1/2] binary fixed seed 0 (elapsed', result.stdout)
    self.assertIn('[cell 2/2] binary esapn seed 0', result.stdout)
    with open(os.path.join(self.workdir, 'comparison.md')) as f:
      md = f.read()
    self.assertIn('| method | binary accuracy % | binary MSE |', md)
    self.assertRegex(md, r'\| fixed \| \d+\.\d\d \| 0\.\d{4} \|')
    self.assertRegex(md, r'\| esapn \| \d+\.\d\d \| 0\.\d{4} \|')
    self.assertIn('### binary: users', md)
    with open(os.path.join(self.workdir, 'comparison.json')) as f:
      report = json.load(f)
    self.assertEqual([(c['method'], c['status']) for c in report['cells']],
                     [('fixed', 'ok'), ('esapn', 'ok')])
    for cell in report['cells']:
      self.assertEqual(cell['results']['test']['examples'], 600)
      self.assertTrue(os.path.exists(
          os.path.join(cell['workdir'], 'results.json')))
      self.assertNotEmpty(os.listdir(os.path.join(cell['workdir'], 'events')))
    self.assertEqual(report['cells'][1]['workdir'],
                     os.path.join(self.workdir, 'runs', 'binary', 'esapn',
                                  'seed0'))
    fixed = report['aggregate']['binary']['fixed']
    self.assertAllClose(fixed['memory']['item']['ratio']['mean'], 1.0)
    for name in ('by_user_frequency', 'by_item_frequency',
                 'size_distribution', 'mean_size'):
      with open(os.path.join(self.workdir, 'plots',
                             f'binary_{name}.png'), 'rb') as f:
        self.assertEqual(f.read(8), b'\x89PNG\r\n\x1a\n')
    # The same command again reuses both cells (the real config.json
    # round trip) and reports the same numbers.
    again = _run(args)
    self.assertEqual(again.returncode, 0, again.stderr[-3000:])
    self.assertEqual(again.stdout.count('  reusing '), 2)
    with open(os.path.join(self.workdir, 'comparison.json')) as f:
      rerun = json.load(f)
    self.assertEqual([c['status'] for c in rerun['cells']],
                     ['reused', 'reused'])
    self.assertEqual(rerun['aggregate']['binary'],
                     report['aggregate']['binary'])

  def test_ctrl_c_writes_the_report_and_exits_130(self):
    # 100,000 ratings: the first cell is still running when SIGINT comes.
    proc = subprocess.Popen(
        [sys.executable, _COMPARE, '--dataset=synthetic',
         '--synthetic_num_ratings=100000', '--batch_size=200',
         '--candidate_sizes=2,4', '--hidden_units=8', '--jit_compile=false',
         '--methods=esapn,fixed', '--tasks=binary', '--seeds=1',
         f'--workdir={self.workdir}'],
        cwd=_REPO, env=_ENV, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)
    try:
      for line in proc.stdout:
        if line.startswith('[cell 1/2]'):
          break
      time.sleep(1.0)
      proc.send_signal(signal.SIGINT)
      rest, _ = proc.communicate(timeout=300)
    finally:
      if proc.poll() is None:
        proc.kill()
    self.assertEqual(proc.returncode, 130, rest[-3000:])
    self.assertNotIn('Traceback', rest)
    [line] = [l for l in rest.splitlines() if l.startswith('interrupted:')]
    self.assertIn('comparison.md shows the cells done so far)', line)
    self.assertRegex(line, 'Run the same command again to resume|rerun the '
                     'same command to continue')
    self.assertNotIn('interrupted: interrupted', line)
    with open(os.path.join(self.workdir, 'comparison.json')) as f:
      report = json.load(f)
    self.assertEqual([c['status'] for c in report['cells']],
                     ['interrupted', 'pending'])

  def test_unknown_method_fails_cleanly(self):
    result = _run(_TINY + ['--methods=esapn,bogus',
                           f'--workdir={self.workdir}'])
    lines = [line for line in result.stderr.splitlines()
             if line.startswith('error')]
    self.assertEqual(result.returncode, 2, result.stderr)
    self.assertNotIn('Traceback', result.stderr)
    self.assertLen(lines, 1)
    self.assertStartsWith(lines[0], "error: --methods=esapn,bogus is invalid "
                          "(unknown 'bogus')")
    self.assertFalse(os.path.exists(self.workdir))

  def test_missing_data_fails_before_any_cell(self):
    missing = os.path.join(os.path.dirname(self.workdir), 'nope.zip')
    result = _run(['--dataset=ml-latest-small', f'--data_dir={missing}',
                   '--methods=fixed',
                   f'--workdir={self.workdir}'])
    self.assertEqual(result.returncode, 2, result.stderr)
    self.assertIn(f'{missing} does not exist', result.stderr.splitlines()[-1])
    self.assertFalse(os.path.exists(self.workdir))


if __name__ == '__main__':
  tf.test.main()
