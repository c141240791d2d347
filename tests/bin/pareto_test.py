"""Tests for bin/pareto.py as users run it: a subprocess, flags, exit status.

Bad --memory_budgets values must end in one `error:` line and exit status 2
before anything is written. Two processes run side by side (each imports
TensorFlow, several seconds on this machine); every bad value (0, empty)
is also tested on `pareto.parse_budgets`, and the grid with a fake run, in
tests/comparison/pareto_test.py.
"""

import os
import subprocess
import sys
import tempfile

import tensorflow as tf

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
_PARETO = os.path.join(_REPO, 'bin', 'pareto.py')
_ENV = dict(os.environ, TF_USE_LEGACY_KERAS='1', TF_CPP_MIN_LOG_LEVEL='2')


class ParetoScriptTest(tf.test.TestCase):

  def test_bad_budgets_fail_cleanly(self):
    root = tempfile.mkdtemp(dir=self.get_temp_dir())
    values = {'1.5': "'1.5' is not a share", 'x': "'x' is not a share"}
    procs = {}
    for i, value in enumerate(values):
      workdir = os.path.join(root, f'pareto{i}')
      procs[value] = (workdir, subprocess.Popen(
          [sys.executable, _PARETO, '--dataset=synthetic',
           f'--memory_budgets=0.1,{value}', f'--workdir={workdir}'],
          cwd=_REPO, env=_ENV, stdout=subprocess.PIPE,
          stderr=subprocess.PIPE, text=True))
    for value, (workdir, proc) in procs.items():
      _, stderr = proc.communicate(timeout=300)
      lines = [line for line in stderr.splitlines()
               if line.startswith('error')]
      self.assertEqual(proc.returncode, 2, stderr)
      self.assertNotIn('Traceback', stderr)
      self.assertLen(lines, 1)
      self.assertStartsWith(lines[0], f'error: --memory_budgets=0.1,{value} '
                            f'is invalid ({values[value]} of FIXED memory in '
                            '(0, 1])')
      self.assertFalse(os.path.exists(workdir))


if __name__ == '__main__':
  tf.test.main()
