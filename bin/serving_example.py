"""Prints the README's TF Serving REST examples with the answers of an export.

  python bin/serving_example.py --export_dir=runs/exports/esapn

Loads the export (a version folder, or a model base folder: its latest
version) with `tf.saved_model.load` and answers each REST request of the
README ("Serving with TensorFlow Serving") in-process, as TF Serving's REST
API would (`esapn_tf/serving/rest.py`); no server is needed. Prints each
`curl` command and the JSON answer, ready to paste into the README.
Bad input prints one line starting with 'error:' and exits with status 2.
"""

import os
import sys

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

from esapn_tf import errors  # noqa: E402

flags.DEFINE_string('export_dir', None,
                    'An export of bin/export.py: a version folder or the '
                    'model base folder (its latest version is used).')
flags.DEFINE_string('model_name', 'esapn', 'Model name in the printed URLs.')
flags.mark_flag_as_required('export_dir')
FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  # pylint: disable=g-import-not-at-top
  import tensorflow as tf
  from esapn_tf.serving import export
  from esapn_tf.serving import rest
  # pylint: enable=g-import-not-at-top
  try:
    path = export.resolve(FLAGS.export_dir)
  except errors.UserInputError as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)
  signatures = tf.saved_model.load(path).signatures
  print(f'# answers of {path}, computed in-process (esapn_tf/serving/rest.py)')
  for body in rest.EXAMPLE_REQUESTS:
    try:
      answer = rest.predict(signatures, body)
    except (TypeError, ValueError, tf.errors.InvalidArgumentError):
      print(f'error: {path}: its {body["signature_name"]} signature does not '
            "take the README's request (an export older than the batchable "
            'predict_ranked?); re-export the run with bin/export.py',
            file=sys.stderr)
      sys.exit(2)
    print()
    print(rest.curl_text(body, FLAGS.model_name))
    print()
    print(rest.response_text(answer), flush=True)


if __name__ == '__main__':
  app.run(main)
