"""Runs that survive: exact resume after SIGKILL and SIGTERM, determinism,
the workdir lock and config checks on resume."""

import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from unittest import mock

import tensorflow as tf
from absl.testing import parameterized

from esapn_tf import config
from esapn_tf import errors
from esapn_tf import files
from esapn_tf.data import stream as stream_lib
from esapn_tf.training import loop
from esapn_tf.training import trainer
from esapn_tf.training import workdir as workdir_lib
from tests import real_data

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
# 20,000 real ratings, batch 500: 32 train steps, then 8 test steps.
TRAIN_STEPS, TEST_STEPS = 32, 8
COMPARED = ('test', 'train', 'memory', 'policy_enlarge_probability')


def _train_command(data_path, workdir):
  return [sys.executable, os.path.join(REPO, 'bin', 'train.py'),
          f'--flagfile={os.path.join(REPO, "configs", "ml-latest-small-binary.flags")}',
          f'--data_dir={data_path}', '--max_ratings=20000',
          '--checkpoint_every=1', '--log_every_seconds=1000',
          # Row pools sized from a budget, with re-layouts between steps
          # (issue 12): the layout with the most state to restore.
          '--embedding_storage=pooled', '--memory_budget=0.3',
          # In time order, users and movies keep arriving: some are first
          # seen after the resume, in either part (late_ids_test.py).
          '--order=chronological',
          f'--workdir={workdir}']


def _env():
  return dict(os.environ, TF_USE_LEGACY_KERAS='1', TF_CPP_MIN_LOG_LEVEL='3')


def _checkpoint_step(workdir):
  path = os.path.join(workdir, 'checkpoints', 'checkpoint')
  try:
    with open(path, encoding='utf-8') as f:
      first = f.readline()
  except OSError:
    return -1
  return int(first.rsplit('-', 1)[-1].strip().strip('"') or -1)


def _size_indices(workdir):
  """Both sides' size indices and, for a pooled layout, row index and pools.

  A variable is saved under its first path in the object graph (the item
  side's under `item_trials/layer/`), so every prefix is read.
  """
  reader = tf.train.load_checkpoint(os.path.join(workdir, 'checkpoints'))
  fields = ('size_index', 'start_block', 'num_free', 'counts')
  names = [n for n in reader.get_variable_to_shape_map()
           if 'OPTIMIZER' not in n and n.count('/') >= 2 and
           n.split('/')[-3] in fields]
  assert sum('size_index' in n for n in names) == 2, names
  return {n: reader.get_tensor(n).tolist() for n in sorted(names)}


class KillAndResumeTest(tf.test.TestCase, parameterized.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.tmp = tempfile.mkdtemp()
    cls.reference = None

  def _reference(self, data_path):
    """The uninterrupted run (once per class)."""
    if KillAndResumeTest.reference is None:
      workdir = os.path.join(self.tmp, 'uninterrupted')
      proc = subprocess.run(_train_command(data_path, workdir), env=_env(),
                            cwd=REPO, capture_output=True, text=True,
                            timeout=600, check=False)
      self.assertEqual(proc.returncode, 0, proc.stderr[-3000:])
      with open(os.path.join(workdir, 'results.json')) as f:
        KillAndResumeTest.reference = (json.load(f), _size_indices(workdir))
    return KillAndResumeTest.reference

  def _interrupt_and_resume(self, data_path, name, at_step, signum):
    workdir = os.path.join(self.tmp, name)
    proc = subprocess.Popen(_train_command(data_path, workdir), env=_env(),
                            cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while _checkpoint_step(workdir) < at_step:
      self.assertIsNone(proc.poll(), 'the run ended before it was stopped')
      self.assertLess(time.time(), deadline)
      time.sleep(0.02)
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=120)
    self.assertFalse(os.path.exists(os.path.join(workdir, 'results.json')))
    # The train part's seconds so far are in the checkpoint (the resumed
    # run's `train_examples_per_second` counts them).
    self.train_seconds_saved = tf.train.load_checkpoint(
        os.path.join(workdir, 'checkpoints')).get_tensor(
            'train_seconds/.ATTRIBUTES/VARIABLE_VALUE')
    resumed = subprocess.run(_train_command(data_path, workdir), env=_env(),
                             cwd=REPO, capture_output=True, text=True,
                             timeout=600, check=False)
    self.assertEqual(resumed.returncode, 0, resumed.stderr[-3000:])
    self.assertIn('Resuming', resumed.stdout)
    with open(os.path.join(workdir, 'results.json')) as f:
      results = json.load(f)
    self.assertTrue(results['resumed'])
    return proc.returncode, stderr, results, _size_indices(workdir)

  @parameterized.named_parameters(
      ('train_phase', 2, TRAIN_STEPS - 2),
      ('test_phase', TRAIN_STEPS + 1, TRAIN_STEPS + TEST_STEPS - 2))
  def test_sigkill_then_resume_equals_uninterrupted(self, low, high):
    data_path = real_data.ml_latest_small_path(self)
    expected, expected_sizes = self._reference(data_path)
    at_step = random.randint(low, high)
    print(f'SIGKILL after checkpoint {at_step}')
    returncode, _, results, sizes = self._interrupt_and_resume(
        data_path, f'killed-{at_step}', at_step, signal.SIGKILL)
    self.assertEqual(returncode, -signal.SIGKILL)
    for key in COMPARED:
      self.assertEqual(results[key], expected[key], key)
    self.assertEqual(sizes, expected_sizes)

  def test_sigterm_checkpoints_and_resumes(self):
    data_path = real_data.ml_latest_small_path(self)
    expected, _ = self._reference(data_path)
    returncode, stderr, results, _ = self._interrupt_and_resume(
        data_path, 'terminated', 10, signal.SIGTERM)
    self.assertEqual(returncode, 130)
    last = stderr.strip().splitlines()[-1]
    self.assertIn('stopped by SIGTERM', last)
    self.assertIn('Run the same command again to resume', last)
    self.assertNotIn('Traceback', stderr)
    # Stopped at step 10 of the train part, after its first (compiling)
    # step: seconds of training were spent and saved.
    self.assertGreater(self.train_seconds_saved, 0.1)
    for key in COMPARED:
      self.assertEqual(results[key], expected[key], key)


def _small_config(**train):
  return config.ExperimentConfig(
      data=config.DataConfig(dataset='synthetic', synthetic_num_ratings=3000),
      model=config.ModelConfig(candidate_sizes=(2, 4, 8), hidden_units=16),
      search=config.SearchConfig(policy_hidden_units=16),
      train=config.TrainConfig(batch_size=200, jit_compile=False, **train))


class DeterminismAndWorkdirTest(tf.test.TestCase):

  def test_same_seed_same_results_and_sizes(self):
    runs = []
    for name in ('a', 'b'):
      workdir = tempfile.mkdtemp(dir=self.get_temp_dir())
      results = loop.run_experiment(_small_config(deterministic=True),
                                    workdir, verbose=False)
      runs.append((results, _size_indices(workdir)))
    for key in COMPARED:
      self.assertEqual(runs[0][0][key], runs[1][0][key], key)
    self.assertEqual(runs[0][1], runs[1][1])

  def test_resume_with_other_config_is_refused(self):
    workdir = tempfile.mkdtemp(dir=self.get_temp_dir())
    cfg = _small_config()
    with open(os.path.join(workdir, 'config.json'), 'w') as f:
      f.write(cfg.to_json())
    os.makedirs(os.path.join(workdir, 'checkpoints'))
    with open(os.path.join(workdir, 'checkpoints', 'checkpoint'), 'w') as f:
      f.write('model_checkpoint_path: "ckpt-3"\n')
    other = config.ExperimentConfig(
        data=cfg.data, model=config.ModelConfig(candidate_sizes=(2, 8),
                                                hidden_units=16),
        search=cfg.search, train=cfg.train)
    with self.assertRaisesRegex(
        errors.UserInputError,
        r'cannot resume.*model\.candidate_sizes: \[2, 4, 8\] then, '
        r'\[2, 8\] now.*--restart'):
      loop.run_experiment(other, workdir, verbose=False)
    # Nothing was touched.
    self.assertCountEqual(os.listdir(workdir), ['config.json', 'checkpoints'])

  def test_resume_from_a_checkpoint_of_another_layout_is_refused(self):
    # A checkpoint of an older layout (one variable per candidate size,
    # `table_2`, `table_4`, `table_8`, instead of each id's current row in
    # `embeddings`) must not resume with the rows left at their initial
    # values.
    workdir = tempfile.mkdtemp(dir=self.get_temp_dir())
    cfg = _small_config()
    with open(os.path.join(workdir, 'config.json'), 'w') as f:
      f.write(cfg.to_json())
    d = cfg.data
    s = stream_lib.build_stream(
        stream_lib.load_ratings(d.dataset, d.data_dir, d.loader,
                                d.max_ratings, d.synthetic_num_ratings,
                                cfg.train.seed),
        cfg.model.task, d.order, d.train_fraction, cfg.train.seed)
    parts = dict(trainer.Trainer(cfg, s).checkpoint()._trackable_children())  # pylint: disable=protected-access
    parts.pop('save_counter', None)
    # The older layout: model/<side>_embedding/table_<d> and the search
    # core's list of the 6 tables, core/tables/<i>.
    old_model, old_core = tf.Module(), tf.Module()
    old_core.model, old_core.tables = old_model, []
    for side, num_ids in (('user', s.num_users), ('item', s.num_items)):
      emb = tf.Module()
      for d in cfg.model.candidate_sizes:
        setattr(emb, f'table_{d}', tf.Variable(tf.zeros([num_ids, d])))
        old_core.tables.append(getattr(emb, f'table_{d}'))
      setattr(old_model, f'{side}_embedding', emb)
    parts['model'], parts['core'] = old_model, old_core
    tf.train.CheckpointManager(
        tf.train.Checkpoint(**parts), os.path.join(workdir, 'checkpoints'),
        max_to_keep=2).save(checkpoint_number=3)
    before = sorted(os.listdir(workdir))
    with self.assertRaisesRegex(
        errors.UserInputError,
        r'cannot resume.*ckpt-3 does not hold this version.*--restart'):
      loop.run_experiment(cfg, workdir, verbose=False)
    self.assertEqual(sorted(os.listdir(workdir)), before)

  def test_lock_refuses_a_live_holder_and_takes_over_a_stale_one(self):
    workdir = tempfile.mkdtemp(dir=self.get_temp_dir())
    lock_path = os.path.join(workdir, files.LOCK_NAME)
    with open(lock_path, 'w') as f:
      f.write(f'{os.getppid()}\n')  # the parent process: alive
    with self.assertRaisesRegex(errors.UserInputError,
                                f'in use by the run of process {os.getppid()}'):
      with files.WorkdirLock(workdir):
        pass
    dead = subprocess.Popen([sys.executable, '-c', 'pass'])
    dead.wait()
    with open(lock_path, 'w') as f:
      f.write(f'{dead.pid}\n')
    with files.WorkdirLock(workdir) as lock:
      self.assertEqual(lock.took_over_from, dead.pid)
      with open(lock_path) as f:
        self.assertEqual(int(f.read()), os.getpid())
    self.assertFalse(os.path.exists(lock_path))

  def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(self):
    workdir = tempfile.mkdtemp(dir=self.get_temp_dir())
    init = trainer.Trainer.__init__

    def poisoned_init(trainer, *args, **kwargs):
      init(trainer, *args, **kwargs)
      learn = trainer.learn

      def poisoned(batch):  # step 4's loss comes back NaN
        out = learn(batch)
        if int(trainer.step) == 4:
          out = dict(out, loss=out['loss'] * float('nan'))
        return out
      trainer.learn = poisoned

    with mock.patch.object(trainer.Trainer, '__init__', poisoned_init):
      with self.assertRaisesRegex(errors.TrainingError,
                                  'non-finite training loss at step 4'):
        loop.run_experiment(_small_config(checkpoint_every=1), workdir,
                            verbose=False)
    self.assertEqual(_checkpoint_step(workdir), 3)
    self.assertFalse(os.path.exists(os.path.join(workdir, 'results.json')))

  def test_config_differences_ignore_logging_fields(self):
    a = _small_config().to_dict()
    b = _small_config(log_every_seconds=1.0, checkpoint_every=7).to_dict()
    self.assertEqual(workdir_lib.config_differences(a, b), [])
    c = _small_config(seed=3).to_dict()
    self.assertEqual(workdir_lib.config_differences(a, c),
                     [('train.seed', 0, 3)])


if __name__ == '__main__':
  tf.test.main()
