"""Tests of bin/benchmark.py (tiny windows, no ml-20m parts) and its e2e runs."""

import json
import os
import subprocess
import sys
import tempfile

import tensorflow as tf

from esapn_tf import errors
from esapn_tf.benchmark import e2e
from esapn_tf.benchmark import suite
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
         '--windows=2', '--warmup_steps=1', '--noe2e',
         '--num_ids=2000,30000',
         f'--output={output}'],
        env=env, capture_output=True, text=True, timeout=600, check=False)
    self.assertEqual(result.returncode, 0, result.stderr[-3000:])
    with open(output) as f:
      figures = json.load(f)
    self.assertStartsWith(figures['device'], 'CPU')
    for key in ('fixed_train_examples_per_second',
                'esapn_train_examples_per_second'):
      self.assertGreater(figures[key], 0.0, key)
    self.assertLen(figures['esapn_over_fixed_per_window'], 2)
    self.assertBetween(figures['esapn_over_fixed'],
                       min(figures['esapn_over_fixed_per_window']),
                       max(figures['esapn_over_fixed_per_window']))
    self.assertCountEqual(
        figures['esapn_phase_seconds_per_step'],
        ['environment_step', 'enlargement', 'recommender_step',
         'policy_update', 'host_device_transfers'])
    self.assertCountEqual(figures['step_ms_by_num_ids'], ['2000', '30000'])
    for ms in figures['step_ms_by_num_ids'].values():
      self.assertGreater(ms, 0.0)
    self.assertIn('30,000 ids', result.stdout)
    self.assertNotIn('load_20m_seconds', figures)
    self.assertNotIn('e2e_seconds', figures)  # --noe2e
    self.assertIn('ESAPN / FIXED', result.stdout)


_TINY = ['--dataset=synthetic', '--synthetic_num_ratings=1000',
         '--batch_size=100', '--candidate_sizes=2,4', '--hidden_units=8',
         '--method=fixed', '--checkpoint_every=0']


class EndToEndTest(tf.test.TestCase):

  def test_cold_and_warm_time_each_run_to_its_results(self):
    figures = e2e.cold_and_warm({'tiny': _TINY + ['--jit_compile']})
    self.assertCountEqual(figures, ['results', 'exit'])
    for part in ('results', 'exit'):
      self.assertCountEqual(figures[part], ['tiny_cold', 'tiny_warm'])
    for key, seconds in figures['results'].items():
      # Interpreter start to results.json: more than the imports alone.
      self.assertBetween(seconds, 1.0, figures['exit'][key], key)

  def test_a_failed_run_is_one_line_with_its_last_error(self):
    with self.assertRaisesRegex(errors.UserInputError,
                                r'exit 2\): .*batch_size=1 is invalid'):
      e2e.run_seconds(_TINY + ['--batch_size=1'], self.get_temp_dir(),
                      self.get_temp_dir())

  def test_table_shows_the_ratios(self):
    report = {
        'device': 'CPU (2 cores)', 'batch_size': 500,
        'fixed_train_examples_per_second': 2.0e4,
        'esapn_train_examples_per_second': 1.0e4, 'esapn_over_fixed': 2.0,
        'esapn_phase_seconds_per_step': {'enlargement': 1e-3},
        'e2e_seconds': {'esapn_cold': 13.0, 'fixed_cold': 10.0,
                        'esapn_warm': 9.0, 'fixed_warm': 7.5},
        'e2e_esapn_over_fixed': {'cold': 1.3, 'warm': 1.2}}
    text = suite.table(report)
    self.assertIn('cold XLA cache', text)
    self.assertRegex(text, r'ESAPN\s+13\.0 s\s+FIXED\s+10\.0 s\s+'
                     r'ESAPN/FIXED 1\.30')

  def test_table_shows_the_ml20m_scale_ratio(self):
    report = {
        'device': 'CPU (2 cores)', 'batch_size': 500,
        'fixed_train_examples_per_second': 2.0e4,
        'esapn_train_examples_per_second': 1.0e4, 'esapn_over_fixed': 0.5,
        'esapn_phase_seconds_per_step': {},
        'load_20m_seconds': 8.0, 'load_20m_peak_rss_bytes': 3 * 2**30,
        'ml20m_scale_train_examples_per_second': 12_000.0,
        'ml20m_scale_fixed_train_examples_per_second': 40_000.0,
        'ml20m_scale_esapn_over_fixed': 0.31,
        'ml20m_scale_state_bytes': 2**20}
    text = suite.table(report)
    self.assertRegex(text, r'ml-20m-scale FIXED train\s+40,000 ex/s')
    self.assertRegex(text, r'ESAPN / FIXED at ml-20m scale\s+0\.310')


if __name__ == '__main__':
  tf.test.main()
