"""esapn_tf: automated embedding size search (ESAPN, SIGIR 2020) in TensorFlow.

TF-Agents needs Keras 2 (`tf_keras`). TensorFlow 2.16+ uses Keras 3 unless
`TF_USE_LEGACY_KERAS=1` is set before TensorFlow is first imported; this
package sets it when TensorFlow has not been imported yet, and refuses to run
under Keras 3 otherwise (as TensorFlow Recommenders does).
"""

import os
import sys

__version__ = '0.1.0'

if 'tensorflow' not in sys.modules:
  os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')

import tensorflow as _tf  # pylint: disable=g-import-not-at-top

if not _tf.keras.__name__.startswith('tf_keras') and not getattr(
    _tf.keras, '__version__', '3').startswith('2.'):
  raise ImportError(
      'esapn_tf requires Keras 2 (tf_keras) because TF-Agents does, but '
      f'TensorFlow is using Keras {getattr(_tf.keras, "__version__", "3")}. '
      'Install tf-keras and set TF_USE_LEGACY_KERAS=1 before importing '
      'TensorFlow (e.g. `export TF_USE_LEGACY_KERAS=1`).')
