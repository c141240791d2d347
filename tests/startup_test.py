"""Tests for esapn_tf.startup: what is silenced, and what is not lost."""

import os
import subprocess
import sys
import tempfile
import textwrap

from absl.testing import parameterized
import tensorflow as tf

from esapn_tf import startup

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Modules that write to file descriptor 2 on import, as TensorFlow's shared
# libraries do; one of them then fails.
_MODULES = {
    'noisy_ok.py': "import os\nos.write(2, b'banner from C\\n')\n",
    'noisy_fail.py': ("import os\nos.write(2, b'why it failed\\n')\n"
                      "raise ImportError('boom')\n"),
}


class StderrCapturedTest(tf.test.TestCase):

  def _run(self, code):
    folder = tempfile.mkdtemp(dir=self.get_temp_dir())
    for name, text in _MODULES.items():
      with open(os.path.join(folder, name), 'w') as f:
        f.write(text)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([REPO, folder]))
    return subprocess.run([sys.executable, '-c', textwrap.dedent(code)],
                          env=env, cwd=REPO, capture_output=True, text=True,
                          timeout=120, check=False)

  def test_output_of_a_successful_import_is_dropped(self):
    proc = self._run("""
        import sys
        from esapn_tf import startup
        with startup.stderr_captured():
          import noisy_ok
        sys.stderr.write('ours\\n')
        """)
    self.assertEqual(proc.returncode, 0, proc.stderr)
    self.assertEqual(proc.stderr, 'ours\n')

  def test_output_of_a_failing_import_is_replayed(self):
    proc = self._run("""
        from esapn_tf import startup
        with startup.stderr_captured():
          import noisy_fail
        """)
    self.assertNotEqual(proc.returncode, 0)
    self.assertIn('why it failed\n', proc.stderr)
    self.assertIn('ImportError: boom', proc.stderr)
    # The captured lines come before the traceback, as without capture.
    self.assertLess(proc.stderr.index('why it failed'),
                    proc.stderr.index('Traceback'))


class VerboseTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.named_parameters(
      ('default', {}, None, False),
      ('env', {'ESAPN_VERBOSE': '1'}, None, True),
      ('env_off', {'ESAPN_VERBOSE': '0'}, None, False),
      ('debug_verbosity', {}, 1, True),
      ('info_verbosity', {}, 0, False))
  def test_is_verbose(self, env, verbosity, expected):
    saved = os.environ.pop(startup.VERBOSE_ENV, None)
    try:
      os.environ.update(env)
      self.assertEqual(startup.is_verbose(verbosity), expected)
    finally:
      os.environ.pop(startup.VERBOSE_ENV, None)
      if saved is not None:
        os.environ[startup.VERBOSE_ENV] = saved


if __name__ == '__main__':
  tf.test.main()
