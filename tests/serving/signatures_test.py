"""The exported signatures under TF Serving's batching, and bad input shapes.

Exports of random-weight models (no training; `module_test._random_model`)
are loaded the two ways TF Serving's clients meet them: through the TF1
session loader, as the C++ server does, and with `tf.saved_model.load`.

* With `--enable_batching`, TF Serving concatenates requests along
  dimension 0: it refuses scalar inputs ("Batching Run() input tensors must
  have at least one dimension") and inputs of unequal first dimension, and
  splits every output along dimension 0; a warm-up request that fails
  fails the model's load. Every warm-up record is replayed here and held
  to those rules.
* Inputs of the wrong rank or of unequal batch sizes get an
  `InvalidArgumentError` that names the input and the shape it expects.
"""

import os
import tempfile

from absl.testing import parameterized
import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import config_pb2
from tensorflow_serving.apis import prediction_log_pb2

from esapn_tf.serving import export
from esapn_tf.serving import module
from esapn_tf.serving import params
from tests.serving import module_test

_TASKS = (('binary', 'binary'), ('multiclass', 'multiclass'))
_NUM_USERS, _NUM_ITEMS = 30, 50


def _vocab():
  return {'user': np.arange(_NUM_USERS, dtype=np.int64) * 7 + 1,
          'item': np.arange(_NUM_ITEMS, dtype=np.int64) * 11 + 1}


def save_random_export(task: str, root: str) -> str:
  """Saves a random-weight model's SavedModel (with warm-up file); its path."""
  random_model = module_test._random_model  # pylint: disable=protected-access
  model = random_model(task, (2, 4, 8), _NUM_USERS, _NUM_ITEMS)
  path = os.path.join(root, task, '1')
  export.save_servable(params.compact_params(model, _vocab()), path)
  return path


def _warmup_requests(path):
  records = tf.data.TFRecordDataset(os.path.join(path, export.WARMUP_FILE))
  return [prediction_log_pb2.PredictionLog.FromString(r.numpy())
          .predict_log.request for r in records]


def _session_run(path, signature, inputs):
  """Runs a signature as TF Serving's C++ server does: TF1 loader, feeds
  passed to the C++ session without Python's check of their shapes."""
  with tf.Graph().as_default() as graph:
    with tf.compat.v1.Session(graph=graph) as sess:
      meta = tf.compat.v1.saved_model.loader.load(sess, ['serve'], path)
      sig = meta.signature_def[signature]
      names = sorted(inputs)
      outputs = sorted(sig.outputs)
      # A callable skips `Session.run`'s Python feed-shape check, which the
      # C++ server does not have.
      make = sess._make_callable_from_options  # pylint: disable=protected-access
      run = make(
          config_pb2.CallableOptions(
              feed=[sig.inputs[k].name for k in names],
              fetch=[sig.outputs[k].name for k in outputs]))
      values = run(*[np.asarray(inputs[k], np.int64) for k in names])
  return dict(zip(outputs, values))


class SignaturesTest(tf.test.TestCase, parameterized.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.root = tempfile.mkdtemp()
    cls.paths = {task: save_random_export(task, cls.root)
                 for task, _ in _TASKS}

  @parameterized.named_parameters(*_TASKS)
  def test_every_warmup_record_is_batchable_in_the_tf1_session(self, task):
    path = self.paths[task]
    requests = _warmup_requests(path)
    self.assertLen(requests, 3)
    used = set()
    with tf.Graph().as_default() as graph:
      with tf.compat.v1.Session(graph=graph) as sess:
        meta = tf.compat.v1.saved_model.loader.load(sess, ['serve'], path)
        for i, request in enumerate(requests):
          name = request.model_spec.signature_name
          used.add(name)
          sig = meta.signature_def[name]
          self.assertEqual(set(request.inputs), set(sig.inputs))
          feeds = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
          for key, value in feeds.items():
            self.assertGreaterEqual(value.ndim, 1, f'record {i} {name}: {key} '
                                    f'is a scalar')
          batch = {v.shape[0] for v in feeds.values()}
          self.assertLen(batch, 1, f'record {i} {name}: first dimensions '
                         f'{ {k: v.shape for k, v in feeds.items()} }')
          batch = batch.pop()
          self.assertGreater(batch, 0)
          outputs = sess.run(
              {k: v.name for k, v in sig.outputs.items()},
              {sig.inputs[k].name: v for k, v in feeds.items()})
          self.assertSameElements(outputs, sig.outputs)
          for key, value in outputs.items():
            # The batching session splits every output along dimension 0.
            self.assertGreaterEqual(value.ndim, 1, f'{name}: {key}')
            self.assertEqual(value.shape[0], batch, f'{name}: {key}')
          score = 'scores' if name == module.PREDICT_RANKED else (
              'probability' if task == 'binary' else 'probabilities')
          self.assertTrue(np.all(np.isfinite(outputs[score])))
    # Both signatures are warmed up.
    self.assertEqual(used, {module.SERVING_DEFAULT, module.PREDICT_RANKED})

  @parameterized.named_parameters(*_TASKS)
  def test_every_signature_has_a_batch_dimension(self, task):
    # Static shapes of every SignatureDef input and output: rank >= 1,
    # first dimension unknown (-1), so requests can be concatenated.
    with tf.Graph().as_default() as graph:
      with tf.compat.v1.Session(graph=graph) as sess:
        meta = tf.compat.v1.saved_model.loader.load(sess, ['serve'],
                                                    self.paths[task])
    for name in (module.SERVING_DEFAULT, module.PREDICT_RANKED):
      sig = meta.signature_def[name]
      for key, info in list(sig.inputs.items()) + list(sig.outputs.items()):
        self.assertFalse(info.tensor_shape.unknown_rank, f'{name}: {key}')
        self.assertNotEmpty(info.tensor_shape.dim, f'{name}: {key}')
        self.assertEqual(info.tensor_shape.dim[0].size, -1, f'{name}: {key}')

  def test_predict_ranked_ranks_each_row_by_its_own_user(self):
    loaded = tf.saved_model.load(self.paths['binary'])
    vocab = _vocab()
    users = vocab['user'][[3, 11]]
    movies = np.stack([vocab['item'][:6], vocab['item'][6:12]])
    movies[1, 2] = -1  # an unknown movie
    out = loaded.signatures['predict_ranked'](
        user_id=tf.constant(users), movie_ids=tf.constant(movies))
    for row in range(2):
      expected = loaded.signatures['serving_default'](
          user_id=tf.constant(np.full(6, users[row])),
          movie_id=tf.constant(movies[row]))['probability'].numpy()
      order = np.argsort(-expected, kind='stable')
      self.assertAllEqual(out['movie_ids'][row], movies[row][order])
      self.assertAllClose(out['scores'][row], expected[order], atol=1e-6,
                          rtol=0)
      self.assertAllEqual(out['known_movie'][row], movies[row][order] != -1)
    self.assertAllEqual(out['known_user'], [True, True])

  @parameterized.named_parameters(
      dict(testcase_name='matrix_user_id', signature='serving_default',
           inputs={'user_id': np.ones([2, 3]), 'movie_id': np.ones([2])},
           session=r'serving_default: user_id must be int64 \[batch\]; got '
           r'shape\] \[2 3\]',
           eager=r'tensor user_id \[2,3\] is not compatible with expected '
           r'shape \[\?\]'),
      dict(testcase_name='scalar_ids', signature='serving_default',
           inputs={'user_id': np.int64(1), 'movie_id': np.int64(1)},
           session=r'serving_default: user_id must be int64 \[batch\]; got '
           r'shape\] \[\]',
           eager=r'tensor user_id \[\] is not compatible with expected '
           r'shape \[\?\]'),
      dict(testcase_name='unequal_lengths', signature='serving_default',
           inputs={'user_id': np.ones([3]), 'movie_id': np.ones([2])},
           session=r'serving_default: user_id and movie_id must have the same'
           r' first dimension \(batch\); got shapes\] \[3\] \[and\] \[2\]',
           eager=r'serving_default: user_id and movie_id must have the same'
           r' first dimension \(batch\); got shapes\] \[3\] \[and\] \[2\]'),
      dict(testcase_name='ranked_vector_candidates',
           signature='predict_ranked',
           inputs={'user_id': np.ones([1]), 'movie_ids': np.ones([4])},
           session=r'predict_ranked: movie_ids must be int64 \[batch, n\]; '
           r'got shape\] \[4\]',
           eager=r'tensor movie_ids \[4\] is not compatible with expected '
           r'shape \[\?,\?\]'),
      dict(testcase_name='ranked_unequal_batch', signature='predict_ranked',
           inputs={'user_id': np.ones([2]), 'movie_ids': np.ones([3, 4])},
           session=r'predict_ranked: user_id and movie_ids must have the same'
           r' first dimension \(batch\); got shapes\] \[2\] \[and\] \[3 4\]',
           eager=r'predict_ranked: user_id and movie_ids must have the same'
           r' first dimension \(batch\); got shapes\] \[2\] \[and\] \[3 4\]'),
  )
  def test_wrong_shapes_name_the_input_and_its_shape(self, signature, inputs,
                                                     session, eager):
    path = self.paths['binary']
    with self.assertRaisesRegex(tf.errors.InvalidArgumentError, session):
      _session_run(path, signature, inputs)
    fn = tf.saved_model.load(path).signatures[signature]
    with self.assertRaisesRegex(tf.errors.InvalidArgumentError, eager):
      fn(**{k: tf.constant(v, tf.int64) for k, v in inputs.items()})

  def test_right_shapes_pass_the_checks_in_both_loaders(self):
    path = self.paths['multiclass']
    inputs = {'user_id': _vocab()['user'][:4], 'movie_id': [-1, 1, 12, 2**62]}
    session = _session_run(path, 'serving_default', inputs)
    eager = tf.saved_model.load(path).signatures['serving_default'](
        **{k: tf.constant(v, tf.int64) for k, v in inputs.items()})
    self.assertEqual(session['probabilities'].shape, (4, 5))
    for key, value in eager.items():
      self.assertAllClose(session[key], value, atol=1e-6, rtol=0)
    self.assertAllEqual(session['known_movie'], [False, True, True, False])


if __name__ == '__main__':
  tf.test.main()
