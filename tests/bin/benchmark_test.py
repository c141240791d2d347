"""Smoke test of bin/benchmark.py: tiny windows, no ml-20m parts."""

import json
import os
import subprocess
import sys
import tempfile

import tensorflow as tf

from tests import real_data

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


class BenchmarkScriptTest(tf.test.TestCase):

  def test_prints_the_table_and_writes_the_figures(self):
    data = real_data.ml_latest_small_path(self)
    output = os.path.join(tempfile.mkdtemp(dir=self.get_temp_dir()), 'b.json')
    env = dict(os.environ, TF_USE_LEGACY_KERAS='1', TF_CPP_MIN_LOG_LEVEL='2')
    result = subprocess.run(
        [sys.executable, os.path.join(_REPO, 'bin', 'benchmark.py'),
         f'--data_dir={data}', '--skip_20m', '--window_steps=2',
         '--windows=2', '--warmup_steps=1', f'--output={output}'],
        env=env, capture_output=True, text=True, timeout=600, check=False)
    self.assertEqual(result.returncode, 0, result.stderr[-3000:])
    with open(output) as f:
      figures = json.load(f)
    self.assertStartsWith(figures['device'], 'CPU')
    for key in ('fixed_train_examples_per_second',
                'esapn_train_examples_per_second',
                'e2e_ml_latest_small_seconds'):
      self.assertGreater(figures[key], 0.0, key)
    self.assertLen(figures['esapn_over_fixed_per_window'], 2)
    self.assertBetween(figures['esapn_over_fixed'],
                       min(figures['esapn_over_fixed_per_window']),
                       max(figures['esapn_over_fixed_per_window']))
    self.assertCountEqual(
        figures['esapn_phase_seconds_per_step'],
        ['environment_step', 'enlargement', 'recommender_step',
         'policy_update', 'host_device_transfers'])
    self.assertNotIn('load_20m_seconds', figures)
    self.assertIn('ESAPN / FIXED', result.stdout)


if __name__ == '__main__':
  tf.test.main()
