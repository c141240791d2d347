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

  def test_accepts_tensorflow_imported_first(self):
    # TensorFlow reads TF_USE_LEGACY_KERAS when tf.keras is first used, and
    # TF-Agents imports `tensorflow.keras` as a module: both must be tf_keras.
    proc = _run('import sys; import tensorflow as tf; import esapn_tf; '
                'from esapn_tf.models import recommender; '
                'from esapn_tf.search import agent; '
                'print(tf.keras.__name__, tf.keras.__file__); '
                "print(sys.modules['tensorflow.keras'].__file__)",
                legacy=None)
    self.assertEqual(proc.returncode, 0, proc.stderr[-3000:])
    lines = proc.stdout.splitlines()
    self.assertLen(lines, 2)
    self.assertIn(os.path.join('tf_keras', 'api'), lines[0])
    self.assertIn(os.path.join('tf_keras', 'api'), lines[1])

  def test_refuses_tf_keras_already_bound_to_keras_3(self):
    proc = _run('import tensorflow as tf; tf.keras.layers; import esapn_tf',
                legacy=None)
    self.assertNotEqual(proc.returncode, 0)
    last = proc.stderr.strip().splitlines()[-1]
    self.assertStartsWith(last, 'ImportError: esapn_tf requires Keras 2')
    self.assertIn('already used as Keras 3', last)
    self.assertIn('TF_USE_LEGACY_KERAS=1', last)

  def test_package_and_config_do_not_import_tensorflow(self):
    # bin/ scripts check flags and the config before TensorFlow loads.
    proc = _run('import sys; import esapn_tf; '
                'from esapn_tf import config, errors, startup; '
                "config.ExperimentConfig(); print('tensorflow' in sys.modules)",
                legacy=None)
    self.assertEqual(proc.returncode, 0, proc.stderr[-3000:])
    self.assertEqual(proc.stdout.strip(), 'False')

  def test_sets_legacy_keras_when_imported_first(self):
    proc = _run('import esapn_tf, tensorflow as tf; '
                'print(tf.keras.__name__)', legacy=None)
    self.assertEqual(proc.returncode, 0, proc.stderr)
    self.assertIn('tf_keras', proc.stdout)


if __name__ == '__main__':
  tf.test.main()
