"""esapn_tf.serving.rest and bin/serving_example.py: REST answers in-process."""

import json
import os
import re
import subprocess
import sys
import tempfile

import tensorflow as tf

from esapn_tf.serving import rest
from tests.serving import signatures_test

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
_ENV = dict(os.environ, TF_USE_LEGACY_KERAS='1', TF_CPP_MIN_LOG_LEVEL='2')


class RestTest(tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.root = tempfile.mkdtemp()
    cls.path = signatures_test.save_random_export('binary', cls.root)
    cls.signatures = tf.saved_model.load(cls.path).signatures

  def _direct(self, signature, **inputs):
    return {k: v.numpy() for k, v in self.signatures[signature](
        **{k: tf.constant(v, tf.int64) for k, v in inputs.items()}).items()}

  def test_row_format_gives_one_prediction_per_instance(self):
    # User 8 and movies 12, 23 are known (vocab 7i+1, 11i+1), 999999 not.
    body = {'signature_name': 'serving_default',
            'instances': [{'user_id': 8, 'movie_id': 12},
                          {'user_id': 8, 'movie_id': 999999},
                          {'user_id': 15, 'movie_id': 23}]}
    direct = self._direct('serving_default', user_id=[8, 8, 15],
                          movie_id=[12, 999999, 23])
    answer = rest.predict(self.signatures, body)
    self.assertEqual([list(p) for p in answer['predictions']],
                     [['probability', 'known_user', 'known_movie']] * 3)
    self.assertAllClose([p['probability'] for p in answer['predictions']],
                        direct['probability'], atol=1e-8, rtol=0)
    self.assertEqual([p['known_movie'] for p in answer['predictions']],
                     [True, False, True])
    # 9 significant digits, as TF Serving writes float32.
    text = json.dumps(answer)
    for value in re.findall(r'"probability": ([0-9.e-]+)', text):
      self.assertLessEqual(len(value.lstrip('0.').replace('.', '')), 9)

  def test_ranked_rows_and_columns_agree(self):
    row = rest.predict(self.signatures, {
        'signature_name': 'predict_ranked',
        'instances': [{'user_id': 8, 'movie_ids': [12, 999999, 23, 1]},
                      {'user_id': 15, 'movie_ids': [1, 23, 12, 999999]}]})
    column = rest.predict(self.signatures, {
        'signature_name': 'predict_ranked',
        'inputs': {'user_id': [8, 15], 'movie_ids': [[12, 999999, 23, 1],
                                                     [1, 23, 12, 999999]]}})
    direct = self._direct('predict_ranked', user_id=[8, 15],
                          movie_ids=[[12, 999999, 23, 1], [1, 23, 12, 999999]])
    self.assertLen(row['predictions'], 2)
    for i, prediction in enumerate(row['predictions']):
      self.assertEqual(prediction['movie_ids'],
                       direct['movie_ids'][i].tolist())
      self.assertEqual(prediction['movie_ids'],
                       column['outputs']['movie_ids'][i])
      self.assertAllClose(prediction['scores'], direct['scores'][i],
                          atol=1e-8, rtol=0)
      self.assertTrue(prediction['known_user'])
    self.assertEqual(sorted(row['predictions'][0]['movie_ids']),
                     [1, 12, 23, 999999])

  def test_malformed_bodies_are_refused(self):
    with self.assertRaisesRegex(ValueError, 'exactly one of'):
      rest.predict(self.signatures, {'signature_name': 'serving_default'})
    with self.assertRaisesRegex(ValueError, 'instance 1 has keys'):
      rest.predict(self.signatures, {'instances': [
          {'user_id': 1, 'movie_id': 1}, {'user_id': 1}]})
    with self.assertRaisesRegex(ValueError, "unknown signature 'nope'"):
      rest.predict(self.signatures, {'signature_name': 'nope',
                                     'instances': [{'user_id': 1}]})

  def test_script_prints_the_readme_requests_and_answers(self):
    script = os.path.join(_REPO, 'bin', 'serving_example.py')
    base = os.path.dirname(self.path)  # the model folder: latest version
    proc = subprocess.run([sys.executable, script, f'--export_dir={base}'],
                          env=_ENV, capture_output=True, text=True,
                          timeout=300, check=False)
    self.assertEqual(proc.returncode, 0, proc.stderr[-2000:])
    self.assertIn(f'# answers of {self.path}', proc.stdout)
    blocks = proc.stdout.split('\n\n')
    for body in rest.EXAMPLE_REQUESTS:
      curl = rest.curl_text(body)
      self.assertIn(curl, blocks)
      answer = json.loads(blocks[blocks.index(curl) + 1])
      self.assertEqual(answer, rest.predict(self.signatures, body))
    # The request in the printed curl command is the body itself.
    first = blocks[blocks.index(rest.curl_text(rest.EXAMPLE_REQUESTS[0]))]
    self.assertEqual(json.loads(first.split("'")[1]),
                     rest.EXAMPLE_REQUESTS[0])
    bad = subprocess.run([sys.executable, script,
                          f'--export_dir={self.root}/missing'], env=_ENV,
                         capture_output=True, text=True, timeout=300,
                         check=False)
    self.assertEqual(bad.returncode, 2)
    self.assertRegex(bad.stderr.strip().splitlines()[-1],
                     r'^error: .*missing.* is neither a SavedModel')


if __name__ == '__main__':
  tf.test.main()
