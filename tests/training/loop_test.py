"""End-to-end tests for esapn_tf.training.loop.run_experiment.

Every test calls the library function with a config and a temporary workdir
(never `bin/train.py`'s global FLAGS). Tiny runs use `jit_compile=False`
except one: on CPU, XLA compilation costs more than these runs themselves.
"""

import csv
import glob
import json
import math
import os
import tempfile
from unittest import mock

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from esapn_tf import config
from esapn_tf import errors
from esapn_tf.data import stream
from esapn_tf.training import jit
from esapn_tf.training import loop
from esapn_tf.training import trainer
from esapn_tf.training import workdir as workdir_lib
from tests import real_data

_NUM_RATINGS = 3000
_SIZES = (2, 4, 8)
_CSV_HEADER = ['side', 'bucket', 'frequency_min', 'frequency_max', 'examples',
               'accuracy', 'loss']


def _config(method='esapn', task='binary', reward='next_appearance',
            test_mode='prequential', fixed_size=0, jit_compile=False,
            num_ratings=_NUM_RATINGS, seed=0, data_dir='',
            dataset='synthetic', **search):
  """A small experiment on synthetic data (or on `dataset` at `data_dir`)."""
  return config.ExperimentConfig(
      data=config.DataConfig(dataset=dataset, data_dir=data_dir,
                             synthetic_num_ratings=num_ratings),
      model=config.ModelConfig(task=task, candidate_sizes=_SIZES,
                               hidden_units=16),
      search=config.SearchConfig(method=method, fixed_size=fixed_size,
                                 reward=reward, policy_hidden_units=16,
                                 **search),
      train=config.TrainConfig(batch_size=100, seed=seed, test_mode=test_mode,
                               jit_compile=jit_compile))


def _read(path):
  with open(path, 'rb') as f:
    return f.read()


def _snapshot(folder):
  """{relative path: bytes} of every file under `folder`."""
  files = {}
  for root, _, names in os.walk(folder):
    for name in names:
      path = os.path.join(root, name)
      files[os.path.relpath(path, folder)] = _read(path)
  return files


def _event_tags(workdir):
  tags = set()
  for path in glob.glob(os.path.join(workdir, 'events', 'events.out.*')):
    for event in tf.compat.v1.train.summary_iterator(path):
      tags.update(v.tag for v in event.summary.value)
  return tags


class RunExperimentTest(tf.test.TestCase, parameterized.TestCase):

  def _workdir(self):
    return os.path.join(tempfile.mkdtemp(dir=self.get_temp_dir()), 'run')

  @parameterized.named_parameters(
      # The default path (XLA on) once; the other cases skip compilation.
      dict(testcase_name='esapn_binary', jit_compile=True),
      dict(testcase_name='esapn_multiclass', task='multiclass'),
      dict(testcase_name='esapn_tentative_reward', reward='tentative'),
      dict(testcase_name='fixed_largest', method='fixed'),
      dict(testcase_name='fixed_2', method='fixed', fixed_size=2),
      dict(testcase_name='esapn_frozen_test', test_mode='frozen'),
      dict(testcase_name='darts', method='darts'),
      dict(testcase_name='autoemb_multiclass', method='autoemb',
           task='multiclass'),
      dict(testcase_name='autoemb_xla', method='autoemb', jit_compile=True),
      dict(testcase_name='esapn_paired_budget_xla', reward='paired',
           jit_compile=True, search=dict(memory_budget=0.3)),
      dict(testcase_name='random_budget', method='random',
           search=dict(memory_budget=0.3)),
      dict(testcase_name='threshold', method='threshold'),
      dict(testcase_name='mde', method='mde'),
      dict(testcase_name='pruned', method='pruned',
           search=dict(prune_user_fraction=0.5, prune_item_fraction=0.25)),
  )
  def test_smoke(self, method='esapn', task='binary', reward='next_appearance',
                 test_mode='prequential', fixed_size=0, jit_compile=False,
                 search=None):
    cfg = _config(method=method, task=task, reward=reward, test_mode=test_mode,
                  fixed_size=fixed_size, jit_compile=jit_compile,
                  **(search or {}))
    workdir = self._workdir()
    results = loop.run_experiment(cfg, workdir, verbose=False)
    s = stream.build_stream(
        stream.load_ratings('synthetic', synthetic_num_ratings=_NUM_RATINGS,
                            seed=0), task, 'random', 0.8, 0)

    # config.json: the resolved config, read back equal.
    with open(os.path.join(workdir, 'config.json')) as f:
      self.assertEqual(config.ExperimentConfig.from_dict(json.load(f)), cfg)

    # results.json: what run_experiment returned, with the whole schema.
    with open(os.path.join(workdir, 'results.json')) as f:
      on_disk = json.load(f)
    self.assertEqual(on_disk, json.loads(json.dumps(results)))
    self.assertContainsSubset(
        ['method', 'task', 'dataset', 'order', 'test_mode', 'candidate_sizes',
         'test', 'train', 'memory', 'policy_enlarge_probability', 'num_users',
         'num_items', 'wall_seconds', 'train_examples_per_second',
         'policy_diagnostics', 'memory_budget', 'memory_cost',
         'method_parameters'], on_disk)
    # The diagnostics' heat map: a policy's runs only.
    self.assertEqual(
        os.path.exists(os.path.join(workdir, 'policy_heatmap.png')),
        method == 'esapn')
    self.assertEqual(on_disk['method'], method)
    self.assertEqual(on_disk['task'], task)
    self.assertEqual(on_disk['dataset'], 'synthetic')
    self.assertEqual(on_disk['data_source'], s.name)
    self.assertEqual(on_disk['num_ratings'], s.num_examples)
    self.assertEqual(on_disk['order'], 'random')
    self.assertEqual(on_disk['test_mode'], test_mode)
    self.assertEqual(on_disk['num_users'], s.num_users)
    self.assertEqual(on_disk['num_items'], s.num_items)
    for part in ('train', 'test'):
      self.assertCountEqual(on_disk[part], ['accuracy', 'loss', 'examples'])
      self.assertBetween(on_disk[part]['accuracy'], 0.0, 1.0)
      self.assertTrue(math.isfinite(on_disk[part]['loss']))
      self.assertGreater(on_disk[part]['loss'], 0.0)
    self.assertEqual(on_disk['train']['examples'], round(0.8 * _NUM_RATINGS))
    self.assertEqual(
        on_disk['train']['examples'] + on_disk['test']['examples'],
        _NUM_RATINGS)
    self.assertGreater(on_disk['wall_seconds'], 0.0)
    self.assertGreater(on_disk['train_examples_per_second'], 0.0)

    # Memory table, DESIGN.md section 5; the reference is the largest size.
    one_size = method in ('fixed', 'pruned')
    sizes = (fixed_size or _SIZES[-1],) if one_size else _SIZES
    self.assertEqual(on_disk['candidate_sizes'], list(sizes))
    for side, num_ids in (('user', s.num_users), ('item', s.num_items)):
      memory = on_disk['memory'][side]
      self.assertCountEqual(memory,
                            ['counts', 'total_dims', 'fixed_dims', 'ratio'])
      self.assertEqual(sum(memory['counts'].values()), num_ids)
      self.assertEqual(memory['fixed_dims'], num_ids * _SIZES[-1])
      self.assertEqual(memory['ratio'],
                       memory['total_dims'] / memory['fixed_dims'])
      if method == 'pruned':
        # Exactly the budget: round(fraction * ids * 8) kept entries.
        self.assertEqual(list(memory['counts']),
                         ['0'] + [str(d) for d in _SIZES])
        fraction = search[f'prune_{side}_fraction']
        self.assertEqual(memory['total_dims'], round(fraction * num_ids * 8))
        continue
      self.assertEqual(list(memory['counts']), [str(d) for d in sizes])
      self.assertEqual(memory['total_dims'],
                       sum(int(d) * c for d, c in memory['counts'].items()))
      if method == 'fixed':
        self.assertEqual(memory['ratio'], (fixed_size or 8) / 8)
      else:
        self.assertBetween(memory['ratio'], 2 / 8, 1.0)

    # The final policies' P(enlarge) grid; only ESAPN has policies.
    policy = on_disk['policy_enlarge_probability']
    if method != 'esapn':
      self.assertEqual(policy, {})
    else:
      self.assertCountEqual(policy, ['user', 'item'])
      for side in policy:
        p = np.array(policy[side]['probability'])
        self.assertEqual(p.shape, (len(policy[side]['frequency']), len(sizes)))
        self.assertEqual(policy[side]['size'], list(sizes))
        self.assertTrue(np.all((p >= 0) & (p <= 1)))

    # per_frequency.csv: both sides; each side counts every test example once.
    with open(os.path.join(workdir, 'per_frequency.csv')) as f:
      rows = list(csv.reader(f))
    self.assertEqual(rows[0], _CSV_HEADER)
    for side in ('user', 'item'):
      side_rows = [r for r in rows[1:] if r[0] == side]
      self.assertNotEmpty(side_rows)
      self.assertEqual(sum(int(r[4]) for r in side_rows),
                       on_disk['test']['examples'])
      for r in side_rows:
        self.assertBetween(float(r[5]), 0.0, 1.0)

    # Events: the train scalars were written.
    self.assertContainsSubset(['train/loss', 'train/accuracy'],
                              _event_tags(workdir))
    # Checkpoint: one step per learned batch. Prequential learns the test
    # batches too (2400 + 600 examples / 100 = 30); frozen only the train
    # part (24).
    steps = 24 if test_mode == 'frozen' else 30
    self.assertEqual(
        sorted(os.listdir(os.path.join(workdir, 'checkpoints'))),
        ['checkpoint', f'ckpt-{steps}.data-00000-of-00001',
         f'ckpt-{steps}.index'])
    self.assertEqual(
        tf.train.latest_checkpoint(os.path.join(workdir, 'checkpoints')),
        os.path.join(workdir, 'checkpoints', f'ckpt-{steps}'))
    self.assertNotIn('previous', os.listdir(workdir))

  def test_binary_signal_is_learnable(self):
    # Measured (seed 0, CPU): test accuracy 0.665 vs majority rate 0.569, a
    # margin of 0.096 (0.07..0.17 over seeds 0-2, esapn and fixed). 0.05
    # leaves room for numerical differences between machines.
    num_ratings, seed = 20_000, 0
    s = stream.build_stream(
        stream.load_ratings('synthetic', synthetic_num_ratings=num_ratings,
                            seed=seed), 'binary', 'random', 0.8, seed)
    positive = float(np.mean(s.label[s.num_train:]))
    majority = max(positive, 1.0 - positive)
    results = loop.run_experiment(
        _config(num_ratings=num_ratings, seed=seed), self._workdir(),
        verbose=False)
    self.assertEqual(results['test']['examples'], s.num_test)
    self.assertGreater(results['test']['accuracy'], majority + 0.05)

  def test_rerun_archives_the_earlier_run(self):
    workdir = self._workdir()
    cfg = _config(method='fixed')
    loop.run_experiment(cfg, workdir, verbose=False)
    first = _snapshot(workdir)
    loop.run_experiment(cfg, workdir, verbose=False)

    archives = os.listdir(os.path.join(workdir, 'previous'))
    self.assertLen(archives, 1)
    self.assertRegex(archives[0], r'^\d{8}T\d{6}Z(-\d+)?$')
    archive = os.path.join(workdir, 'previous', archives[0])
    # The whole earlier run, byte for byte, under previous/<stamp>/.
    self.assertEqual(_snapshot(archive), first)
    self.assertCountEqual(os.listdir(archive),
                          ['config.json', 'results.json', 'per_frequency.csv',
                           'checkpoints', 'events'])
    # The new run in place.
    self.assertCountEqual(os.listdir(workdir),
                          ['config.json', 'results.json', 'per_frequency.csv',
                           'checkpoints', 'events', 'previous'])
    with open(os.path.join(workdir, 'results.json')) as f:
      self.assertEqual(json.load(f)['method'], 'fixed')

  def test_failed_run_keeps_the_earlier_results(self):
    workdir = self._workdir()
    cfg = _config(method='fixed')
    loop.run_experiment(cfg, workdir, verbose=False)
    earlier = _read(os.path.join(workdir, 'results.json'))
    with mock.patch.object(
        trainer.Trainer, 'run', autospec=True,
        side_effect=errors.TrainingError('non-finite training loss at step 3')):
      with self.assertRaisesRegex(errors.TrainingError, 'non-finite'):
        loop.run_experiment(cfg, workdir, verbose=False)

    # Nothing lost: the earlier results.json, byte for byte, in the archive.
    copies = [p for p, content in _snapshot(workdir).items()
              if os.path.basename(p) == 'results.json' and content == earlier]
    self.assertLen(copies, 1)
    self.assertStartsWith(copies[0], 'previous' + os.sep)
    json.loads(earlier)
    # And no results.json beside the failed run's config.json.
    self.assertFalse(os.path.exists(os.path.join(workdir, 'results.json')))
    self.assertTrue(os.path.exists(os.path.join(workdir, 'config.json')))

  @parameterized.named_parameters(
      dict(testcase_name='missing_data', dataset='ml-latest-small',
           data_dir='/nonexistent/ml-latest-small.zip',
           error=errors.DataError, message='does not exist'),
      dict(testcase_name='empty_train_part', num_ratings=100,
           train_fraction=0.001, error=errors.UserInputError,
           message='train part is empty'),
      # 99 train examples and 1 test example: no batch to merge it into.
      dict(testcase_name='single_example_test_part', num_ratings=100,
           train_fraction=0.99, error=errors.UserInputError,
           message='test part holds a single example'))
  def test_bad_data_leaves_the_workdir_untouched(self, error, message,
                                                 dataset='synthetic',
                                                 data_dir='',
                                                 num_ratings=_NUM_RATINGS,
                                                 train_fraction=0.8):
    workdir = self._workdir()
    loop.run_experiment(_config(method='fixed'), workdir, verbose=False)
    before = _snapshot(workdir)
    bad = config.ExperimentConfig(
        data=config.DataConfig(dataset=dataset, data_dir=data_dir,
                               synthetic_num_ratings=num_ratings,
                               train_fraction=train_fraction))
    with self.assertRaisesRegex(error, message):
      loop.run_experiment(bad, workdir, verbose=False)
    # Validation precedes any write: the earlier run is exactly in place.
    self.assertEqual(_snapshot(workdir), before)

  def test_real_data_subset(self):
    # The first 40,000 ratings of ml-latest-small in file order (274 users).
    # Measured (CPU, seeds 0-2): test accuracy 0.669-0.680 against a majority
    # rate of about 0.52, MSE 0.209 (seed 0); about 10 s. An MSE of 0.25 is
    # what always predicting 0.5 scores.
    path = real_data.ml_latest_small_path(self)
    cfg = config.ExperimentConfig(
        data=config.DataConfig(dataset='ml-latest-small', data_dir=path,
                               max_ratings=40_000),
        model=config.ModelConfig(candidate_sizes=config.PAPER_CANDIDATE_SIZES),
        train=config.TrainConfig(batch_size=500))
    workdir = self._workdir()
    results = loop.run_experiment(cfg, workdir, verbose=False)
    self.assertIn('ml-latest-small', results['dataset'])
    self.assertEqual(results['train']['examples'], 32_000)
    self.assertEqual(results['test']['examples'], 8_000)
    self.assertGreater(results['test']['accuracy'], 0.6)
    self.assertLess(results['test']['loss'], 0.25)
    for side in ('user', 'item'):
      self.assertEqual(results['memory'][side]['fixed_dims'],
                       results[f'num_{side}s'] * 128)
    self.assertTrue(os.path.exists(os.path.join(workdir, 'results.json')))



class TablesMustFitTest(tf.test.TestCase):
  """A model whose tables cannot fit is refused before the workdir."""

  def test_refused_in_one_line_and_the_previous_run_is_kept(self):
    cfg = _config(method='fixed')
    workdir = os.path.join(tempfile.mkdtemp(dir=self.get_temp_dir()), 'run')
    loop.run_experiment(cfg, workdir, verbose=False)
    with open(os.path.join(workdir, 'results.json')) as f:
      before = f.read()
    # Synthetic users and items at 128 floats, row and two moments: 1,536
    # bytes an id. A limit of 1 kB is below that for any stream.
    with mock.patch.object(loop, 'memory_limit_bytes', return_value=1000):
      with self.assertRaisesRegex(
          errors.UserInputError,
          r'^the embedding tables and their Adam moments need at least '
          r'[0-9.]+ GB for [0-9,]+ users and [0-9,]+ items, more than the '
          r'0.0 GB this process may use; train ESAPN with '
          r'--embedding_storage=pooled and a --memory_budget'):
        loop.run_experiment(cfg, workdir, verbose=False)
    with open(os.path.join(workdir, 'results.json')) as f:
      self.assertEqual(f.read(), before)
    self.assertFalse(os.path.exists(os.path.join(workdir, 'previous')))

  def test_under_ulimit_v_tensorflow_needs_its_own_room(self):
    # Small tables (about 0.01 GB) under a 3 GiB address-space limit:
    # TensorFlow aborts there, so the run is refused up front.
    cfg = _config(method='fixed')
    workdir = os.path.join(tempfile.mkdtemp(dir=self.get_temp_dir()), 'run')
    with mock.patch.object(loop.resource, 'getrlimit',
                           return_value=(3 * 2**30, 3 * 2**30)):
      with self.assertRaisesRegex(
          errors.UserInputError,
          r'items and TensorFlow about 4.3 GB of address space, more than '
          r'the 3.2 GB this process may use \(ulimit -v\); raise ulimit -v '
          r'to at least 4.3 GB$'):
        loop.run_experiment(cfg, workdir, verbose=False)
    self.assertFalse(os.path.exists(workdir))
    # 5 GiB is enough for them.
    with mock.patch.object(loop.resource, 'getrlimit',
                           return_value=(5 * 2**30, 5 * 2**30)):
      loop._check_the_tables_fit(  # pylint: disable=protected-access
          cfg, stream.build_stream(stream.load_ratings(
              'synthetic', synthetic_num_ratings=3000, seed=0),
                                   'binary', 'random', 0.8, 0))

  def test_the_limit_is_the_lower_of_ram_and_ulimit(self):
    ram = os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE')
    with mock.patch.object(loop.resource, 'getrlimit',
                           return_value=(2**30, 2**31)):
      self.assertEqual(loop.memory_limit_bytes(), min(ram, 2**30))
    with mock.patch.object(loop.resource, 'getrlimit',
                           return_value=(loop.resource.RLIM_INFINITY,) * 2):
      self.assertEqual(loop.memory_limit_bytes(), ram)


class AutoJitCompileTest(tf.test.TestCase, parameterized.TestCase):
  """`jit_compile=None` (the default) is decided from the train part."""

  @parameterized.named_parameters(
      # 3000 ratings: 2400 in the train part.
      dict(testcase_name='short_stream', threshold=2401, expected=False),
      dict(testcase_name='long_enough', threshold=2400, expected=True))
  def test_the_choice_is_recorded(self, threshold, expected):
    cfg = _config(method='fixed', jit_compile=None)
    workdir = os.path.join(tempfile.mkdtemp(dir=self.get_temp_dir()), 'run')
    with mock.patch.object(jit, 'JIT_MIN_TRAIN_EXAMPLES', threshold):
      results = loop.run_experiment(cfg, workdir, verbose=False)
    self.assertIs(results['jit_compile'], expected)
    with open(os.path.join(workdir, 'config.json')) as f:
      recorded = json.load(f)
    self.assertIs(recorded['train']['jit_compile'], expected)
    # The same command (auto again) still matches the finished run: the
    # comparisons' cache and resume accept it, a forced opposite does not.
    self.assertEqual(workdir_lib.config_differences(recorded, cfg.to_dict()),
                     [])
    forced = _config(method='fixed', jit_compile=not expected)
    self.assertEqual(
        workdir_lib.config_differences(recorded, forced.to_dict()),
        [('train.jit_compile', expected, not expected)])


if __name__ == '__main__':
  tf.test.main()
