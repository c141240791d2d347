"""`--distribution=mirrored` (issue 13): the step on two logical CPU devices.

The step-level comparisons with one device are in `mirrored_cases.py`, run
here in a child process (the CPU is split into logical devices before
TensorFlow's first op). The end-to-end test trains with `bin/train.py`.
"""

import json
import os
import subprocess
import sys
import tempfile

from absl.testing import absltest

from esapn_tf import config
from esapn_tf import errors

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
_ENV = dict(os.environ, TF_USE_LEGACY_KERAS='1', TF_CPP_MIN_LOG_LEVEL='2')
# Metric difference allowed between 2 mirrored replicas and one device for
# FIXED (no discrete decisions): the same step, summed in another order.
MIRRORED_TOLERANCE = 1e-4


def _run(args, timeout=600):
  return subprocess.run([sys.executable] + args, cwd=_REPO, env=_ENV,
                        capture_output=True, text=True, timeout=timeout,
                        check=False)


class MirroredStepsTest(absltest.TestCase):

  def test_two_replicas_match_one_device_step_by_step(self):
    child = _run(['-m', 'tests.distribute.mirrored_cases'])
    self.assertEqual(child.returncode, 0, child.stderr[-5000:])
    self.assertRegex(child.stderr, r'Ran 6 tests')
    self.assertIn('OK', child.stderr)


class MirroredConfigTest(absltest.TestCase):

  def _config(self, **train):
    return config.ExperimentConfig(
        train=config.TrainConfig(distribution='mirrored', **train))

  def test_xla_is_refused(self):
    with self.assertRaisesRegex(errors.UserInputError,
                                'sums gradients over replicas'):
      self._config(jit_compile=True)

  def test_num_replicas_range(self):
    with self.assertRaisesRegex(errors.UserInputError, 'num_replicas'):
      self._config(num_replicas=-1)

  def test_distribution_flags_need_their_distribution(self):
    with self.assertRaisesRegex(errors.UserInputError,
                                'num_replicas=2 is invalid: it applies to '
                                '--distribution=mirrored only'):
      config.TrainConfig(num_replicas=2)
    with self.assertRaisesRegex(errors.UserInputError,
                                'num_shards=2 is invalid: it applies to '
                                '--distribution=parameter_server only'):
      config.TrainConfig(distribution='mirrored', num_shards=2)

  def test_methods_with_eager_work_are_refused(self):
    with self.assertRaisesRegex(errors.UserInputError,
                                '--distribution=mirrored runs esapn'):
      config.ExperimentConfig(
          search=config.SearchConfig(method='darts'),
          train=config.TrainConfig(distribution='mirrored'))

  def test_pooled_storage_is_refused(self):
    with self.assertRaisesRegex(errors.UserInputError, 'embedding_storage'):
      config.ExperimentConfig(
          model=config.ModelConfig(embedding_storage='pooled'),
          search=config.SearchConfig(memory_budget=0.3),
          train=config.TrainConfig(distribution='mirrored'))


class MirroredEndToEndTest(absltest.TestCase):

  def test_fixed_on_two_cpus_matches_one_process(self):
    tmp = tempfile.mkdtemp()
    flags = ['--method=fixed', '--dataset=synthetic',
             '--synthetic_num_ratings=6000', '--nocompile_cache',
             '--batch_size=100']
    results = {}
    for name, extra in (('one', []),
                        ('mirrored', ['--distribution=mirrored',
                                      '--num_replicas=2'])):
      workdir = os.path.join(tmp, name)
      run = _run([os.path.join('bin', 'train.py'), f'--workdir={workdir}'] +
                 flags + extra)
      self.assertEqual(run.returncode, 0, run.stderr)
      with open(os.path.join(workdir, 'results.json')) as f:
        results[name] = json.load(f)
      if name == 'mirrored':
        self.assertIn('Mirrored: 2 replica(s) on /device:CPU:0, '
                      '/device:CPU:1', run.stdout)
    one, mirrored = results['one'], results['mirrored']
    for part in ('train', 'test'):
      self.assertEqual(one[part]['examples'], mirrored[part]['examples'])
      for metric in ('accuracy', 'loss'):
        self.assertLessEqual(abs(one[part][metric] - mirrored[part][metric]),
                             MIRRORED_TOLERANCE, (part, metric))
    self.assertEqual(mirrored['distribution'],
                     {'strategy': 'mirrored', 'num_replicas': 2,
                      'devices': ['/device:CPU:0', '/device:CPU:1']})
    # The mirrored run's checkpoint serves on one machine.
    export = _run([os.path.join('bin', 'export.py'),
                   f'--workdir={os.path.join(tmp, "mirrored")}',
                   f'--export_dir={tmp}/export'])
    self.assertEqual(export.returncode, 0, export.stderr)
    self.assertTrue(os.path.exists(
        os.path.join(tmp, 'export', '1', 'saved_model.pb')))


if __name__ == '__main__':
  absltest.main()
