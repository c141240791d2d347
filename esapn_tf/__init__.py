"""esapn_tf: automated embedding size search (ESAPN, SIGIR 2020) in TensorFlow.

TF-Agents needs Keras 2 (`tf_keras`). TensorFlow 2.16+ routes `tf.keras` to
Keras 3 unless `TF_USE_LEGACY_KERAS` is true when `tf.keras` is first used
(TensorFlow's `KerasLazyLoader` reads it then, not at `import tensorflow`).
This package sets it, and refuses to load, as TensorFlow Recommenders does,
when `tf.keras` is or would be Keras 3.

Importing the package does not import TensorFlow: `esapn_tf.config` and
`esapn_tf.errors` stay light, so that `bin/` scripts check their flags first
(`esapn_tf/startup.py`).
"""

import importlib.util
import os
import sys

__version__ = '0.1.0'

# The values TensorFlow's lazy loader takes for true
# (tensorflow/python/util/lazy_loader.py, KerasLazyLoader._initialize).
_LEGACY_KERAS_VALUES = ('true', 'True', '1')
_FIX = ('Install tf-keras and set TF_USE_LEGACY_KERAS=1 before tf.keras is '
        'first used (e.g. `export TF_USE_LEGACY_KERAS=1`).')


def _is_keras_2(module) -> bool:
  """Whether a `tf.keras` module is Keras 2 (tf_keras, or keras 2.x)."""
  where = getattr(module, '__file__', None) or ''
  return (getattr(module, '__name__', '').startswith('tf_keras') or
          f'{os.sep}tf_keras{os.sep}' in where or
          str(getattr(module, '__version__', '')).startswith('2.'))


def _keras_2_api_dir() -> str:
  """The folder holding tf_keras's `keras` API package.

  The same folder as TensorFlow's
  `module_util.get_parent_dir_for_name('tf_keras.api._v2.keras')`.
  """
  spec = importlib.util.find_spec('tf_keras')
  return os.path.join(spec.submodule_search_locations[0], 'api', '_v2')


def check_keras_2() -> None:
  """Makes `tf.keras` Keras 2 (`tf_keras`), or raises if it cannot be.

  Sets `TF_USE_LEGACY_KERAS=1` unless it is set already. When TensorFlow is
  not imported yet, nothing is imported: the variable and an installed
  `tf_keras` are enough. When it is, `tf.keras` is resolved now, which binds
  it to `tf_keras` unless it was already used as Keras 3; and
  `tensorflow.__path__` gets tf_keras's API folder first, as TensorFlow's own
  `__init__` does when the variable is set at import, so that
  `import tensorflow.keras...` (as TF-Agents and TF Probability do) finds
  Keras 2 too.

  Raises:
    ImportError: `TF_USE_LEGACY_KERAS` is set to something other than true,
      `tf_keras` is not installed, or `tf.keras` is already Keras 3.
  """
  os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
  value = os.environ['TF_USE_LEGACY_KERAS']
  if value not in _LEGACY_KERAS_VALUES:
    raise ImportError(
        'esapn_tf requires Keras 2 (tf_keras) because TF-Agents does, but '
        f'TF_USE_LEGACY_KERAS={value!r} selects Keras 3. ' + _FIX)
  if importlib.util.find_spec('tf_keras') is None:
    raise ImportError('esapn_tf requires Keras 2 (tf_keras) because '
                      'TF-Agents does, but tf_keras is not installed. ' + _FIX)
  tf = sys.modules.get('tensorflow')
  keras = getattr(tf, 'keras', None)
  if keras is None:
    return  # TensorFlow will read the variable when tf.keras is first used.
  imported = sys.modules.get('tensorflow.keras')
  if not _is_keras_2(keras) or (imported is not None and
                                not _is_keras_2(imported)):
    version = getattr(keras, '__version__', '3')
    raise ImportError(
        'esapn_tf requires Keras 2 (tf_keras) because TF-Agents does, but '
        f'tf.keras was already used as Keras {version} before esapn_tf was '
        'imported. ' + _FIX)
  api_dir = _keras_2_api_dir()
  path = getattr(tf, '__path__', None)
  if path is not None and (not path or path[0] != api_dir):
    tf.__path__ = [api_dir] + list(path)


check_keras_2()
