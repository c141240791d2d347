"""Tests for esapn_tf.serving.export and report, bin/export.py, bin/train.py.

The tests train two tiny runs once (a binary ESAPN on the first 20,000 ml-latest-small ratings,
a multiclass one on synthetic data), export them, and load the exports in a
fresh process, as TF Serving would: with `tf.saved_model.load` and with the
TF1 session loader (restore op, init op, SignatureDef tensor names), which is
the C++ server's path. TensorFlow Serving's binary is not installable here
(DESIGN.md §7).
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from unittest import mock

from absl.testing import parameterized
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

from esapn_tf import config
from esapn_tf import errors
from esapn_tf.data import stream
from esapn_tf.serving import export
from esapn_tf.serving import params
from esapn_tf.serving import report
from esapn_tf.training import loop
from tests import real_data

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
_PAPER_SIZES = (2, 4, 8, 16, 64, 128)
_TASKS = (('binary', 'binary'), ('multiclass', 'multiclass'))
_ENV = dict(os.environ, TF_USE_LEGACY_KERAS='1', TF_CPP_MIN_LOG_LEVEL='2')

# Run in a fresh process: loads every export both ways and writes all
# outputs to an .npz (keys '<export>/<case>/<output>').
_LOADER = r'''
import json, os, sys
os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

spec = json.load(open(sys.argv[1]))
inputs = np.load(spec['inputs'])
out = {}
for name, path in spec['exports'].items():
  loaded = tf.saved_model.load(path)
  serve = loaded.signatures['serving_default']
  ranked = loaded.signatures['predict_ranked']
  for case in spec['cases']:
    res = serve(user_id=tf.constant(inputs[f'{name}/{case}/user']),
                movie_id=tf.constant(inputs[f'{name}/{case}/movie']))
    out.update({f'{name}/{case}/{k}': v.numpy() for k, v in res.items()})
  for case in spec['ranked_cases']:  # one row: one user, its candidates
    res = ranked(user_id=tf.constant(inputs[f'{name}/{case}/user'])[None],
                 movie_ids=tf.constant(inputs[f'{name}/{case}/movies'])[None])
    out.update({f'{name}/{case}/{k}': v.numpy()[0] for k, v in res.items()})
  with tf.Graph().as_default() as graph:
    with tf.compat.v1.Session(graph=graph) as sess:
      meta = tf.compat.v1.saved_model.loader.load(sess, ['serve'], path)
      sig = meta.signature_def['serving_default']
      res = sess.run({k: v.name for k, v in sig.outputs.items()},
                     {sig.inputs['user_id'].name: inputs[f'{name}/real/user'],
                      sig.inputs['movie_id'].name: inputs[f'{name}/real/movie']})
  out.update({f'{name}/session/{k}': v for k, v in res.items()})
  warmup = os.path.join(path, 'assets.extra', 'tf_serving_warmup_requests')
  for i, record in enumerate(tf.data.TFRecordDataset(warmup)):
    request = prediction_log_pb2.PredictionLog.FromString(
        record.numpy()).predict_log.request
    fn = loaded.signatures[request.model_spec.signature_name]
    res = fn(**{k: tf.constant(tf.make_ndarray(v))
                for k, v in request.inputs.items()})
    out.update({f'{name}/warmup{i}/{k}': v.numpy() for k, v in res.items()})
np.savez(spec['output'], **out)
'''


def _expected_head(model, v_user, v_item):
  """The trained model's MLP on given side vectors (inference mode)."""
  x = model.input_norm(tf.concat([v_user, v_item], -1), training=False)
  x = tf.tanh(model.hidden_norm(model.hidden(x), training=False))
  logits = model.out(x)
  return tf.squeeze(logits, -1) if model.task == 'binary' else logits


def _fallback(layer):
  """The documented unknown-id vector, computed from the Keras layer."""
  lifted = layer.lift(tf.range(layer.num_ids))
  mean = tf.reduce_mean(tf.cast(lifted, tf.float64), 0, keepdims=True)
  return tf.tanh(layer.batch_norm(tf.cast(mean, tf.float32), training=False))


class ExportTest(tf.test.TestCase, parameterized.TestCase):
  """Trained runs exported, then loaded in a fresh process."""

  _fixture = None

  def setUp(self):
    super().setUp()
    # Built once for the class (setUpClass cannot skip through real_data).
    if ExportTest._fixture is None:
      ExportTest._fixture = self._build_fixture()
    self.__dict__.update(ExportTest._fixture)

  def _build_fixture(self):
    data_path = real_data.ml_latest_small_path(self)
    root = tempfile.mkdtemp(dir=self.get_temp_dir())
    data = {
        'binary': config.DataConfig(dataset='ml-latest-small',
                                    data_dir=data_path, max_ratings=20000),
        'multiclass': config.DataConfig(synthetic_num_ratings=3000),
    }
    cfgs = {
        'binary': config.ExperimentConfig(
            data=data['binary'],
            model=config.ModelConfig(task='binary',
                                     candidate_sizes=_PAPER_SIZES),
            train=config.TrainConfig(batch_size=500, jit_compile=False)),
        'multiclass': config.ExperimentConfig(
            data=data['multiclass'],
            model=config.ModelConfig(task='multiclass',
                                     candidate_sizes=(2, 4, 8),
                                     hidden_units=16),
            search=config.SearchConfig(policy_hidden_units=16),
            train=config.TrainConfig(batch_size=100, jit_compile=False)),
    }
    f = {'root': root, 'workdirs': {}, 'results': {}, 'exports': {},
         'runs': {}, 'pairs': {}}
    for name, cfg in cfgs.items():
      workdir = os.path.join(root, f'run-{name}')
      f['results'][name] = loop.run_experiment(cfg, workdir, verbose=False)
      f['workdirs'][name] = workdir
      f['exports'][name] = export.export_run(
          workdir, os.path.join(root, f'export-{name}'))
      f['runs'][name] = params.restore_run(workdir)
      d = data[name]
      r = stream.load_ratings(d.dataset, d.data_dir,
                              max_ratings=d.max_ratings,
                              synthetic_num_ratings=d.synthetic_num_ratings)
      # 1,000 real (user, movie) pairs: the last rated ones.
      f['pairs'][name] = (r.user_id[-1000:], r.item_id[-1000:])
    f['out'] = self._load_in_fresh_process(root, f)
    return f

  @staticmethod
  def _edge_ids(vocab):
    """Unknown, negative and huge ids next to known ones."""
    u0, m0 = vocab['user'][0], vocab['item'][0]
    users = np.array([-1, 2**62, u0, u0, -2**63, vocab['user'][-1] + 1],
                     np.int64)
    movies = np.array([m0, m0, -7, 2**62, 2**63 - 1, m0], np.int64)
    return users, movies

  def _load_in_fresh_process(self, root, f):
    inputs = {}
    for name, run in f['runs'].items():
      vocab = run.vocab
      users, movies = self._edge_ids(vocab)
      inputs.update({
          f'{name}/real/user': f['pairs'][name][0],
          f'{name}/real/movie': f['pairs'][name][1],
          f'{name}/edge/user': users, f'{name}/edge/movie': movies,
          f'{name}/empty/user': np.zeros([0], np.int64),
          f'{name}/empty/movie': np.zeros([0], np.int64),
          f'{name}/ranked/user': np.int64(vocab['user'][0]),
          f'{name}/ranked/movies': np.concatenate(
              [vocab['item'][:30], [-1], vocab['item'][:2]]),
          f'{name}/ranked_unknown_user/user': np.int64(-5),
          f'{name}/ranked_unknown_user/movies': vocab['item'][:5],
          f'{name}/ranked_empty/user': np.int64(vocab['user'][0]),
          f'{name}/ranked_empty/movies': np.zeros([0], np.int64)})
    np.savez(os.path.join(root, 'inputs.npz'), **inputs)
    spec = {'inputs': os.path.join(root, 'inputs.npz'),
            'output': os.path.join(root, 'outputs.npz'),
            'exports': {n: r.path for n, r in f['exports'].items()},
            'cases': ['real', 'edge', 'empty'],
            'ranked_cases': ['ranked', 'ranked_unknown_user',
                             'ranked_empty']}
    with open(os.path.join(root, 'spec.json'), 'w') as fp:
      json.dump(spec, fp)
    proc = subprocess.run([sys.executable, '-c', _LOADER,
                           os.path.join(root, 'spec.json')], env=_ENV,
                          capture_output=True, text=True, timeout=300,
                          check=False)
    self.assertEqual(proc.returncode, 0, proc.stderr[-3000:])
    out = dict(np.load(spec['output']))
    out.update({'inputs/' + k: v for k, v in inputs.items()})
    return out

  def _outputs(self, name, case):
    prefix = f'{name}/{case}/'
    return {k[len(prefix):]: v for k, v in self.out.items()
            if k.startswith(prefix)}

  def _expected(self, name, users, movies):
    """Reference outputs from the restored Keras model, for any raw ids.

    Known ids are embedded by the trained layers; unknown ones get the
    documented fallback, computed here from the layers independently.
    """
    run = self.runs[name]
    vectors, known = [], []
    for side, ids in (('user', users), ('item', movies)):
      vocab, layer = run.vocab[side], run.embedding(side)
      rows = np.minimum(np.searchsorted(vocab, ids), len(vocab) - 1)
      is_known = vocab[rows] == ids
      v = layer(tf.constant(rows, tf.int32), training=False)
      vectors.append(tf.where(is_known[:, None], v, _fallback(layer)))
      known.append(is_known)
    return _expected_head(run.model, *vectors), known[0], known[1]

  def _assert_matches(self, name, out, users, movies):
    logits, known_user, known_movie = self._expected(name, users, movies)
    self.assertAllEqual(out['known_user'], known_user)
    self.assertAllEqual(out['known_movie'], known_movie)
    if name == 'binary':
      self.assertEqual(out['probability'].dtype, np.float32)
      self.assertAllClose(out['probability'], tf.sigmoid(logits), atol=1e-5,
                          rtol=0)
    else:
      self.assertEqual(out['probabilities'].dtype, np.float32)
      self.assertEqual(out['predicted_class'].dtype, np.int64)
      self.assertAllClose(out['probabilities'], tf.nn.softmax(logits),
                          atol=1e-5, rtol=0)
      top2 = np.sort(logits.numpy(), -1)[:, -2:]
      clear = top2[:, 1] - top2[:, 0] > 1e-4
      self.assertAllEqual(out['predicted_class'][clear],
                          np.argmax(logits.numpy(), -1)[clear])

  @parameterized.named_parameters(*_TASKS)
  def test_fresh_process_matches_in_memory_model(self, name):
    users, movies = self.pairs[name]
    out = self._outputs(name, 'real')
    self.assertLen(out['known_user'], 1000)
    self.assertTrue(out['known_user'].all() and out['known_movie'].all())
    self._assert_matches(name, out, users, movies)

  @parameterized.named_parameters(*_TASKS)
  def test_tf1_session_loader_matches(self, name):
    # TF Serving's C++ loader: restore op, init op, SignatureDef names.
    session, eager = (self._outputs(name, 'session'),
                      self._outputs(name, 'real'))
    self.assertSameElements(session, eager)
    for key in eager:
      self.assertAllClose(session[key], eager[key], atol=1e-6, rtol=0)

  @parameterized.named_parameters(*_TASKS)
  def test_unknown_and_extreme_ids_get_the_fallback(self, name):
    users, movies = self._edge_ids(self.runs[name].vocab)
    out = self._outputs(name, 'edge')
    self.assertAllEqual(out['known_user'], [0, 0, 1, 1, 0, 0])
    self.assertAllEqual(out['known_movie'], [1, 1, 0, 0, 0, 1])
    self._assert_matches(name, out, users, movies)
    # Both unknown ids of one side get the same (deterministic) answer.
    key = 'probability' if name == 'binary' else 'probabilities'
    self.assertAllClose(out[key][0], out[key][1], atol=0, rtol=0)

  def test_empty_batch_gives_empty_outputs(self):
    out = self._outputs('binary', 'empty')
    self.assertEqual({k: v.shape for k, v in out.items()},
                     {'probability': (0,), 'known_user': (0,),
                      'known_movie': (0,)})
    out = self._outputs('multiclass', 'empty')
    self.assertEqual({k: v.shape for k, v in out.items()},
                     {'probabilities': (0, 5), 'predicted_class': (0,),
                      'known_user': (0,), 'known_movie': (0,)})
    for name in ('binary', 'multiclass'):
      self.assertEqual(self._outputs(name, 'ranked_empty')['scores'].shape,
                       (0,))

  @parameterized.named_parameters(*_TASKS)
  def test_predict_ranked_sorts_candidates_by_score(self, name):
    user = self.out[f'inputs/{name}/ranked/user']
    candidates = self.out[f'inputs/{name}/ranked/movies']
    out = self._outputs(name, 'ranked')
    self.assertAllEqual(np.sort(out['movie_ids']), np.sort(candidates))
    self.assertTrue(np.all(np.diff(out['scores']) <= 0))
    self.assertTrue(out['known_user'])
    self.assertAllEqual(out['known_movie'], out['movie_ids'] != -1)
    logits, _, _ = self._expected(
        name, np.full(len(candidates), user), candidates)
    if name == 'binary':
      score = tf.sigmoid(logits).numpy()
    else:  # expected rating class, 1..5
      score = tf.nn.softmax(logits).numpy() @ np.arange(1, 6)
    by_id = dict(zip(candidates.tolist(), score.tolist()))
    self.assertAllClose(out['scores'], [by_id[m] for m in out['movie_ids']],
                        atol=1e-5, rtol=0)
    self.assertFalse(self._outputs(name, 'ranked_unknown_user')['known_user'])

  def test_saved_model_cli_lists_the_signatures(self):
    cli = os.path.join(os.path.dirname(sys.executable), 'saved_model_cli')
    common = {'known_user': ('DT_BOOL', '(-1)'),
              'known_movie': ('DT_BOOL', '(-1)')}
    outputs = {
        'binary': dict(common, probability=('DT_FLOAT', '(-1)')),
        'multiclass': dict(common, probabilities=('DT_FLOAT', '(-1, 5)'),
                           predicted_class=('DT_INT64', '(-1)')),
    }
    ranked = {'inputs': {'user_id': ('DT_INT64', '(-1)'),
                         'movie_ids': ('DT_INT64', '(-1, -1)')},
              'outputs': {'movie_ids': ('DT_INT64', '(-1, -1)'),
                          'scores': ('DT_FLOAT', '(-1, -1)'),
                          'known_movie': ('DT_BOOL', '(-1, -1)'),
                          'known_user': ('DT_BOOL', '(-1)')}}
    procs = {name: subprocess.Popen(
        [cli, 'show', '--dir', result.path, '--all'], env=_ENV,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for name, result in self.exports.items()}
    for name, proc in procs.items():
      stdout, stderr = proc.communicate(timeout=300)
      self.assertEqual(proc.returncode, 0, stderr[-2000:])
      signatures = _parse_cli(stdout)
      self.assertEqual(signatures['serving_default'], {
          'inputs': {'user_id': ('DT_INT64', '(-1)'),
                     'movie_id': ('DT_INT64', '(-1)')},
          'outputs': outputs[name]})
      self.assertEqual(signatures['predict_ranked'], ranked)

  def test_warmup_file_holds_prediction_logs(self):
    result = self.exports['binary']
    path = os.path.join(result.path, 'assets.extra',
                        'tf_serving_warmup_requests')
    logs = [prediction_log_pb2.PredictionLog.FromString(r.numpy())
            for r in tf.data.TFRecordDataset(path)]
    self.assertLen(logs, 3)
    requests = [log.predict_log.request for log in logs]
    self.assertEqual([r.model_spec.signature_name for r in requests],
                     ['serving_default', 'serving_default', 'predict_ranked'])
    self.assertEqual(requests[0].model_spec.name, 'esapn')
    users = tf.make_ndarray(requests[1].inputs['user_id'])
    self.assertEqual(users.dtype, np.int64)
    self.assertEqual(users.shape, (101,))  # 100 known pairs and one unknown
    # Replayed in the fresh process: shapes as the requests ask.
    self.assertEqual(self.out['binary/warmup0/probability'].shape, (1,))
    self.assertEqual(self.out['binary/warmup1/probability'].shape, (101,))
    self.assertEqual(self.out['binary/warmup2/scores'].shape, (2, 100))
    self.assertEqual(self.out['multiclass/warmup1/probabilities'].shape,
                     (101, 5))

  def test_report_shows_the_saving(self):
    result = self.exports['binary']
    with open(os.path.join(result.path, 'export_report.json')) as fp:
      content = json.load(fp)
    self.assertEqual(content, json.loads(json.dumps(result.report)))
    memory = self.results['binary']['memory']
    e, f = content['export'], content['fixed_reference']
    self.assertLess(e['variables_bytes'], f['variables_bytes'])
    self.assertEqual(
        e['parts']['embedding_tables'],
        4 * sum(memory[s]['total_dims'] for s in ('user', 'item')))
    self.assertEqual(
        f['parts']['embedding_tables'],
        4 * sum(memory[s]['fixed_dims'] for s in ('user', 'item')))
    # Disk minus the measured shared parts is the memory table's count.
    self.assertAllClose(e['embedding_bytes_over_memory_table'], 1.0,
                        atol=1e-3)
    self.assertAllClose(f['embedding_bytes_over_memory_table'], 1.0,
                        atol=1e-3)
    self.assertTrue(content['agreement']['within_tolerance'])
    self.assertLess(content['agreement']['relative_difference'], 0.05)
    for side in ('user', 'item'):
      self.assertAllClose(content['embedding_parameter_ratio'][side],
                          memory[side]['ratio'])
      self.assertEqual(e['sides'][side]['rows_per_size'],
                       memory[side]['counts'])
    self.assertTrue(content['memory_table']['matches_checkpoint'])
    self.assertEqual(f['parts']['lookups'], e['parts']['lookups'])
    self.assertEqual(f['parts']['mlp'], e['parts']['mlp'])
    self.assertEqual(f['parts']['lifting_maps'], 0)
    self.assertEqual(e['parts']['other'], 0)

  def test_versions_increase_and_a_failed_export_leaves_nothing(self):
    base = os.path.join(tempfile.mkdtemp(dir=self.get_temp_dir()), 'm')
    os.makedirs(os.path.join(base, '7'))
    os.makedirs(os.path.join(base, 'notes'))
    workdir = self.workdirs['multiclass']
    first = export.export_run(workdir, base)
    second = export.export_run(workdir, base)
    self.assertEqual((first.version, second.version), (8, 9))
    before = sorted(os.listdir(base))
    real_save = export.save_servable
    calls = []

    def fail_second(*args, **kwargs):
      calls.append(1)
      if len(calls) == 2:  # the FIXED reference, after the export itself
        raise OSError('disk full')
      return real_save(*args, **kwargs)

    with mock.patch.object(export, 'save_servable', fail_second):
      with self.assertRaisesRegex(OSError, 'disk full'):
        export.export_run(workdir, base)
    self.assertEqual(sorted(os.listdir(base)), before)
    self.assertEqual(export.versions(base), [7, 8, 9])

  def test_an_unfinished_run_is_exported_with_a_note(self):
    self.assertTrue(self.exports['multiclass'].report['finished_run'])
    self.assertNotIn('unfinished', export.summary_text(
        self.exports['multiclass']))
    workdir = os.path.join(tempfile.mkdtemp(dir=self.get_temp_dir()), 'run')
    shutil.copytree(self.workdirs['multiclass'], workdir)
    os.remove(os.path.join(workdir, 'results.json'))
    result = export.export_run(workdir, os.path.join(workdir, 'export'))
    self.assertFalse(result.report['finished_run'])
    self.assertRegex(export.summary_text(result).splitlines()[0],
                     r'^note: .*/run holds an unfinished run \(no '
                     r'results\.json\); exported its last checkpoint, '
                     r'ckpt-\d+\. Run the same bin/train\.py command')

  def test_reference_dir_keeps_the_fixed_export(self):
    root = tempfile.mkdtemp(dir=self.get_temp_dir())
    result = export.export_run(self.workdirs['multiclass'],
                               os.path.join(root, 'esapn'),
                               reference_dir=os.path.join(root, 'fixed'))
    self.assertEqual(result.reference_path, os.path.join(root, 'fixed', '1'))
    self.assertEqual(
        report.variables_breakdown(result.reference_path)['variables_bytes'],
        result.report['fixed_reference']['variables_bytes'])
    self.assertEqual(sorted(os.listdir(os.path.join(root, 'fixed'))), ['1'])

  def test_benchmark_script_prints_both_models(self):
    proc = subprocess.run(
        [sys.executable, os.path.join(_REPO, 'bin', 'benchmark_serving.py'),
         f'--workdir={self.workdirs["multiclass"]}', '--batch_sizes=1,10',
         '--iterations=5', '--warmup=1'], env=_ENV, capture_output=True,
        text=True, timeout=300, check=False)
    self.assertEqual(proc.returncode, 0, proc.stderr[-2000:])
    lines = proc.stdout.strip().splitlines()
    self.assertRegex(lines[-3], r'^model +variables/ bytes +batch 1 p50 +p99'
                     r' +batch 10 p50 +p99$')
    for line, name in zip(lines[-2:], ('ESAPN', 'FIXED-128')):
      self.assertRegex(line, rf'^{name} +[0-9,]+( +[0-9.]+ ms){{4}}$')

  def test_bad_workdir_is_a_user_input_error(self):
    with self.assertRaisesRegex(errors.UserInputError, 'no config.json'):
      export.export_run(self.get_temp_dir(), os.path.join(self.root, 'x'))

  def test_soft_mixture_and_pruned_runs_are_refused(self):
    workdir = tempfile.mkdtemp(dir=self.get_temp_dir())
    cfg = config.ExperimentConfig(search=config.SearchConfig(method='darts'))
    with open(os.path.join(workdir, 'config.json'), 'w') as f:
      f.write(cfg.to_json())
    with self.assertRaisesRegex(errors.UserInputError,
                                'holds a darts run: .*soft mixture'):
      export.export_run(workdir, os.path.join(self.root, 'soft'))
    self.assertFalse(os.path.exists(os.path.join(self.root, 'soft')))
    cfg = config.ExperimentConfig(search=config.SearchConfig(
        method='pruned', prune_user_fraction=0.5, prune_item_fraction=0.5))
    with open(os.path.join(workdir, 'config.json'), 'w') as f:
      f.write(cfg.to_json())
    with self.assertRaisesRegex(errors.UserInputError,
                                'holds a pruned run: .*sparse export'):
      export.export_run(workdir, os.path.join(self.root, 'soft'))

  def test_export_script(self):
    base = os.path.join(tempfile.mkdtemp(dir=self.get_temp_dir()), 'm')
    script = os.path.join(_REPO, 'bin', 'export.py')
    ok = subprocess.run(
        [sys.executable, script, f'--workdir={self.workdirs["multiclass"]}',
         f'--export_dir={base}'], env=_ENV, capture_output=True, text=True,
        timeout=300, check=False)
    self.assertEqual(ok.returncode, 0, ok.stderr[-2000:])
    self.assertIn(f'Exported version 1 to {base}/1', ok.stdout)
    self.assertIn('within 5%', ok.stdout)
    bad = subprocess.run(
        [sys.executable, script, f'--workdir={base}/missing',
         f'--export_dir={base}'], env=_ENV, capture_output=True, text=True,
        timeout=300, check=False)
    self.assertEqual(bad.returncode, 2)
    self.assertRegex(bad.stderr.strip().splitlines()[-1], r'^error: .*no '
                     'config.json')
    self.assertNotIn('Traceback', bad.stderr)

  def test_train_script_rejects_an_unwritable_export_dir_first(self):
    root = tempfile.mkdtemp(dir=self.get_temp_dir())
    blocker = os.path.join(root, 'file')
    with open(blocker, 'w') as fp:
      fp.write('not a folder')
    proc = subprocess.run(
        [sys.executable, os.path.join(_REPO, 'bin', 'train.py'),
         f'--workdir={root}/run', f'--export_dir={blocker}/models'],
        env=_ENV, capture_output=True, text=True, timeout=300, check=False)
    self.assertEqual(proc.returncode, 2, proc.stderr[-2000:])
    self.assertRegex(proc.stderr.strip().splitlines()[-1],
                     r'^error: --export_dir .* is not a folder')
    self.assertFalse(os.path.exists(os.path.join(root, 'run')))


def _parse_cli(text):
  """`saved_model_cli show --all` -> {signature: {inputs, outputs}}."""
  signatures, current, part, name = {}, None, None, None
  for line in text.splitlines():
    m = re.match(r"signature_def\['(\w+)'\]:", line)
    if m:
      current = signatures.setdefault(m.group(1),
                                      {'inputs': {}, 'outputs': {}})
      continue
    m = re.match(r"\s+(inputs|outputs)\['(\w+)'\] tensor_info:", line)
    if m and current is not None:
      part, name = m.group(1), m.group(2)
      continue
    m = re.match(r'\s+dtype: (\w+)', line)
    if m and part:
      dtype = m.group(1)
      continue
    m = re.match(r'\s+shape: (.+)', line)
    if m and part:
      current[part][name] = (dtype, m.group(1).strip())
      part = None
    if line.startswith('Concrete Functions'):
      break
  signatures.pop('__saved_model_init_op', None)
  return signatures


class UntrainedIdsTest(tf.test.TestCase):
  """Ids of the data that the run never learned from are served as unknown."""

  def test_test_only_ids_of_a_frozen_run_get_the_fallback(self):
    data_path = real_data.ml_latest_small_path(self)
    root = tempfile.mkdtemp(dir=self.get_temp_dir())
    d = config.DataConfig(dataset='ml-latest-small', data_dir=data_path,
                          max_ratings=20000, order='chronological')
    cfg = config.ExperimentConfig(
        data=d, train=config.TrainConfig(batch_size=500, jit_compile=False,
                                         test_mode='frozen'))
    workdir = os.path.join(root, 'run')
    loop.run_experiment(cfg, workdir, verbose=False)
    s = stream.build_stream(
        stream.load_ratings(d.dataset, d.data_dir, max_ratings=d.max_ratings),
        'binary', 'chronological', d.train_fraction, 0)
    train_users = np.unique(s.user_vocab[s.user[:s.num_train]])
    test_only = np.setdiff1d(s.user_vocab[s.user[s.num_train:]], train_users)
    self.assertGreater(len(test_only), 0)
    run = params.restore_run(workdir)
    self.assertEqual(int(run.trained['user'].sum()), len(train_users))
    result = export.export_run(workdir, os.path.join(root, 'export'))
    served = tf.saved_model.load(result.path).signatures['serving_default']
    movie = np.full(len(test_only) + 1, s.item_vocab[s.item[0]], np.int64)
    users = np.append(test_only, train_users[0]).astype(np.int64)
    out = served(user_id=tf.constant(users), movie_id=tf.constant(movie))
    self.assertAllEqual(out['known_user'],
                        [False] * len(test_only) + [True])
    # Every untrained user gets the one fallback answer.
    p = out['probability'].numpy()
    self.assertAllClose(p[:-1], np.full(len(test_only), p[0]), atol=1e-6,
                        rtol=0)


if __name__ == '__main__':
  tf.test.main()
