"""The package refuses Keras 3 with a message that names the fix."""

import os
import subprocess
import sys

import tensorflow as tf

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(code, legacy):
  env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL='3')
  env.pop('TF_USE_LEGACY_KERAS', None)
  if legacy is not None:
    env['TF_USE_LEGACY_KERAS'] = legacy
  return subprocess.run([sys.executable, '-c', code], env=env, cwd=REPO,
                        capture_output=True, text=True, timeout=300)


class KerasGuardTest(tf.test.TestCase):

  def test_refuses_keras_3(self):
    # TensorFlow imported first without the variable: tf.keras is Keras 3.
    proc = _run('import tensorflow; import esapn_tf', legacy='0')
    self.assertNotEqual(proc.returncode, 0)
    self.assertIn('TF_USE_LEGACY_KERAS=1', proc.stderr)
    self.assertIn('requires Keras 2', proc.stderr)

  def test_sets_legacy_keras_when_imported_first(self):
    proc = _run('import esapn_tf, tensorflow as tf; '
                'print(tf.keras.__name__)', legacy=None)
    self.assertEqual(proc.returncode, 0, proc.stderr)
    self.assertIn('tf_keras', proc.stdout)


if __name__ == '__main__':
  tf.test.main()
