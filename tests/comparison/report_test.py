"""Tests for esapn_tf.comparison.report and .plots on known numbers.

The cells are built by hand (no training); the plots read per_frequency.csv
files and real TensorBoard event files written here with
`tf.summary.create_file_writer` and `tf.summary.scalar`, as the trainer does.
"""

import json
import os
import tempfile

import tensorflow as tf

from esapn_tf.comparison import cells as cells_lib
from esapn_tf.comparison import plots
from esapn_tf.comparison import report

_PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'


def _results(accuracy, loss, counts, ratio=0.5):
  def side(r):
    return {'counts': counts, 'total_dims': int(1000 * r),
            'fixed_dims': 1000, 'ratio': r}
  return {'test': {'accuracy': accuracy, 'loss': loss, 'examples': 100},
          'memory': {'user': side(ratio), 'item': side(ratio / 2)},
          'data_source': 'synthetic-3000', 'num_ratings': 3000,
          'wall_seconds': 12.25}


def _cell(method, seed, results=None, status=cells_lib.OK, task='binary',
          error='', workdir=''):
  return cells_lib.Cell(task, method, seed, workdir, status=status, error=error,
                     results=results)


def _meta(tasks=('binary',), methods=('esapn', 'fixed', 'pruned'), seeds=3):
  return {'dataset': 'synthetic', 'data_dir': '', 'tasks': list(tasks),
          'methods': list(methods), 'num_seeds': seeds, 'machine': 'box',
          'cpu_count': 2, 'started_utc': '2026-01-01T00:00:00Z',
          'wall_seconds': 192.0}


def _cells():
  """esapn: 3 seeds; fixed: 2 seeds and a failure; pruned: all failed."""
  esapn = {'2': 10, '16': 3, '128': 1}
  return [
      _cell('esapn', 0, _results(0.70, 0.20, esapn, 0.40)),
      _cell('esapn', 1, _results(0.72, 0.21, {'2': 11, '16': 3, '128': 1},
                                 0.42)),
      _cell('esapn', 2, _results(0.74, 0.22, {'2': 13, '16': 3, '128': 1},
                                 0.44)),
      _cell('fixed', 0, _results(0.60, 0.25, {'128': 14}, 1.0)),
      _cell('fixed', 1, _results(0.64, 0.27, {'128': 14}, 1.0)),
      _cell('fixed', 2, status=cells_lib.FAILED, error='TrainingError: boom'),
      _cell('pruned', 0, status=cells_lib.FAILED,
            error='UserInputError: ' + cells_lib.PRUNED_NEEDS_ESAPN),
      _cell('pruned', 1, status=cells_lib.FAILED, error='ValueError: x'),
      _cell('pruned', 2, status=cells_lib.PENDING),
  ]


class ReportTest(tf.test.TestCase):

  def test_mean_std(self):
    # mean 72, sample std sqrt((4 + 0 + 4) / 2) = 2.
    self.assertEqual(report.mean_std([0.70, 0.72, 0.74], 100.0, 2),
                     '72.00 ± 2.00')
    self.assertEqual(report.mean_std([0.2, 0.21, 0.22]), '0.2100 ± 0.0100')
    self.assertEqual(report.mean_std([0.7023], 100.0, 2), '70.23')
    self.assertEqual(report.mean_std([]), '')

  def test_verdict(self):
    # 0.70..0.74 (mean 0.72, std 0.02) against 0.60/0.64 (0.62, 0.0283):
    # gap 0.10 > 0.0483.
    self.assertEqual(report.verdict([0.70, 0.72, 0.74], [0.60, 0.64]),
                     'better')
    self.assertEqual(report.verdict([0.60, 0.64], [0.70, 0.72, 0.74]),
                     'worse')
    # gap 0.01 < 0.02 + 0.02.
    self.assertEqual(report.verdict([0.70, 0.72, 0.74], [0.69, 0.71, 0.73]),
                     'within spread')
    # Losses: lower is better.
    self.assertEqual(report.verdict([0.20, 0.21], [0.30, 0.31],
                                    higher_is_better=False), 'better')
    self.assertEqual(report.verdict([0.7], [0.6, 0.61]), 'one seed')

  def test_versus_table_pairs_seeds(self):
    md = report.markdown(_cells(), _meta())
    self.assertIn('## ESAPN against each method', md)
    # fixed finished seeds 0 and 1: 70 - 60 = +10, 72 - 64 = +8 points;
    # losses 0.20 - 0.25, 0.21 - 0.27 -> mean -0.055.
    self.assertIn('| binary | fixed | +10.00, +8.00 | +9.00 | better | '
                  '-0.0550 | better |', md)
    # pruned never finished: no row.
    self.assertNotIn('| binary | pruned | +', md)

  def test_format_duration(self):
    self.assertEqual(report.format_duration(192.4), '3m12s')
    self.assertEqual(report.format_duration(3723), '1h02m03s')
    self.assertEqual(report.format_duration(42), '42s')
    self.assertEqual(report.format_duration(None), '?')

  def test_main_table_with_failures(self):
    md = report.markdown(_cells(), _meta())
    self.assertIn('| method | binary accuracy % | binary MSE |', md)
    self.assertIn('| esapn | 72.00 ± 2.00 | 0.2100 ± 0.0100 |', md)
    # fixed: 60 and 64 -> mean 62, std sqrt(8) = 2.83; loss 0.26 ± 0.0141.
    self.assertIn('| fixed | 62.00 ± 2.83, failed (1/3) [1] | '
                  '0.2600 ± 0.0141, failed (1/3) [1] |', md)
    self.assertIn('| pruned | failed (2/3) [2,3] (1 to run) |', md)
    self.assertIn('- [1] binary fixed seed 2: TrainingError: boom', md)
    self.assertIn('- [2] binary pruned seed 0: UserInputError: pruned needs '
                  'the esapn run', md)
    self.assertIn('Dataset: synthetic (synthetic-3000, 3,000 ratings); '
                  'seeds: 3 (0-2)', md)
    self.assertIn('Machine: box, 2 CPUs; wall time 3m12s', md)
    self.assertIn('Cells: 8 of 9 done (5 run, 0 reused from earlier runs, '
                  '3 failed).', md)
    # Every cell: the finished ones with their numbers, the others' status.
    self.assertIn('| binary | esapn | 1 | 72.00 | 0.2100 | 0.4200 | 0.2100 | '
                  '12.2 | ok |', md)
    self.assertIn('| binary | fixed | 2 |  |  |  |  |  | failed [1] |', md)
    self.assertIn('| binary | pruned | 2 |  |  |  |  |  | pending |', md)

  def test_memory_table_takes_the_union_of_size_keys(self):
    cells = [
        _cell('esapn', 0, _results(0.7, 0.2, {'2': 10, '16': 3, '4': 2})),
        _cell('esapn', 1, _results(0.7, 0.2, {'2': 11, '16': 3, '4': 2})),
        _cell('pruned', 0, _results(0.7, 0.2, {'0': 5, '128': 9})),
        _cell('pruned', 1, _results(0.7, 0.2, {'0': 6, '128': 9})),
    ]
    self.assertEqual(report.size_keys(cells, 'binary', 'user'),
                     ['0', '2', '4', '16', '128'])
    md = report.markdown(cells, _meta(methods=('esapn', 'pruned'), seeds=2))
    header = ('| method | 0 | 2 | 4 | 16 | 128 | total dims | FIXED dims | '
              'ratio |')
    self.assertEqual(md.count(header), 2)  # users and items
    # Missing keys count 0; 10.5 ids rounds to 10 (half to even), 5.5 to 6.
    self.assertIn('| esapn | 0 | 10 | 2 | 3 | 0 | 500 | 1,000 | '
                  '0.5000 ± 0.0000 |', md)
    self.assertIn('| pruned | 6 | 0 | 0 | 0 | 9 | 500 | 1,000 |', md)

  def test_memory_table_of_failed_methods(self):
    md = report.markdown(_cells(), _meta())
    self.assertIn('| method | 2 | 16 | 128 | total dims | FIXED dims | ratio |',
                  md)
    # esapn counts 10, 11, 13 -> 11.33 -> 11; ratio 0.42 ± 0.02 (users).
    self.assertIn('| esapn | 11 | 3 | 1 | 420 | 1,000 | 0.4200 ± 0.0200 |', md)
    self.assertIn('| pruned | — | — | — | — | — | failed (2/3) [2,3] '
                  '(1 to run) |', md)

  def test_json_holds_cells_and_aggregates(self):
    workdir = tempfile.mkdtemp(dir=self.get_temp_dir())
    report.write_report(workdir, _cells(), _meta())
    with open(os.path.join(workdir, 'comparison.json')) as f:
      data = json.load(f)
    self.assertLen(data['cells'], 9)
    self.assertEqual(data['cells'][5]['error'], 'TrainingError: boom')
    esapn = data['aggregate']['binary']['esapn']
    self.assertAllClose(esapn['test_accuracy']['mean'], 0.72)
    self.assertAllClose(esapn['test_accuracy']['std'], 0.02)
    self.assertAllClose(esapn['memory']['user']['counts']['2'], 34 / 3)
    fixed = data['aggregate']['binary']['fixed']
    self.assertEqual((fixed['seeds'], fixed['finished'], fixed['failed']),
                     (3, 2, 1))
    pruned = data['aggregate']['binary']['pruned']
    self.assertIsNone(pruned['test_loss']['mean'])
    with open(os.path.join(workdir, 'comparison.md')) as f:
      self.assertIn('| esapn | 72.00 ± 2.00 |', f.read())

  def test_summary_text(self):
    text = report.summary_text(_cells(), _meta(), 'runs/x')
    self.assertIn('| esapn | 72.00 ± 2.00 | 0.2100 ± 0.0100 |', text)
    self.assertIn('[1] binary fixed seed 2: TrainingError: boom', text)
    self.assertIn('runs/x/comparison.md', text)
    self.assertLess(len(text.splitlines()), 25)


def _write_scalars(events_dir, tag, values_by_step):
  writer = tf.summary.create_file_writer(events_dir)
  with writer.as_default():
    for step, value in values_by_step:
      tf.summary.scalar(tag, value, step=step)
  writer.close()


class PlotsTest(tf.test.TestCase):

  def setUp(self):
    super().setUp()
    self.workdir = tempfile.mkdtemp(dir=self.get_temp_dir())

  def _run(self, method, seed, accuracy, sizes):
    """A finished cell with per_frequency.csv and mean-size scalars."""
    run_dir = os.path.join(self.workdir, 'runs', 'binary', method,
                           f'seed{seed}')
    os.makedirs(run_dir)
    with open(os.path.join(run_dir, 'per_frequency.csv'), 'w') as f:
      f.write('side,bucket,frequency_min,frequency_max,examples,accuracy,'
              'loss\n')
      for side in ('user', 'item'):
        for b in range(5):
          f.write(f'{side},{b},{2**b},{2**(b + 1) - 1},10,{accuracy},'
                  f'{0.25 - 0.01 * b}\n')
    for side in ('user', 'item'):
      _write_scalars(os.path.join(run_dir, 'events'),
                     f'embedding/{side}_mean_size',
                     [(10 * i, s) for i, s in enumerate(sizes)])
    counts = {'2': 4, '128': 6} if method == 'esapn' else {'128': 10}
    return _cell(method, seed, _results(accuracy, 0.2, counts),
                 workdir=run_dir)

  def test_plots_are_png_files(self):
    cells = [self._run('esapn', 0, 0.7, [2.0, 4.0, 8.0]),
             self._run('esapn', 1, 0.72, [2.0, 6.0, 10.0]),
             self._run('fixed', 0, 0.65, [128.0] * 3)]
    notes = plots.write_plots(self.workdir, cells, ['binary'],
                              ['esapn', 'fixed'], batch_size=500)
    names = ['binary_by_user_frequency.png', 'binary_by_item_frequency.png',
             'binary_size_distribution.png', 'binary_mean_size.png']
    self.assertEqual(notes, [
        'plot: ' + os.path.join(self.workdir, 'plots', n) for n in names])
    for name in names:
      with open(os.path.join(self.workdir, 'plots', name), 'rb') as f:
        data = f.read()
      self.assertEqual(data[:8], _PNG_SIGNATURE, name)
      self.assertGreater(len(data), 10_000, name)
    self.assertEqual(sorted(os.listdir(os.path.join(self.workdir, 'plots'))),
                     sorted(names))  # no temporary files left

  def test_mean_size_curve_is_the_mean_over_seeds_by_examples(self):
    cells = [self._run('esapn', 0, 0.7, [2.0, 4.0, 8.0]),
             self._run('esapn', 1, 0.72, [2.0, 6.0, 10.0])]
    curve = plots.mean_size_curves(cells, 'item', batch_size=500)
    # Steps 0, 10, 20 x 500 examples; means (2+2)/2, (4+6)/2, (8+10)/2.
    self.assertEqual(list(curve.index), [0, 5000, 10000])
    self.assertAllClose(curve.values, [2.0, 5.0, 9.0])

  def test_a_resumed_run_keeps_the_last_value_of_each_step(self):
    events = os.path.join(self.workdir, 'events')
    _write_scalars(events, 'embedding/user_mean_size',
                   [(0, 2.0), (10, 3.0), (20, 4.0)])
    # The resumed run (a later event file) repeats step 20 and goes on.
    _write_scalars(events, 'embedding/user_mean_size', [(20, 5.0), (30, 6.0)])
    # Event file names need not sort in writing order (writers 10 and 2 of
    # one process in one second): the last file written here sorts first.
    before = set(os.listdir(events))
    _write_scalars(events, 'embedding/user_mean_size', [(30, 7.0)])
    [last] = set(os.listdir(events)) - before
    os.rename(os.path.join(events, last),
              os.path.join(events, 'events.out.tfevents.1000000000.a.0.v2'))
    self.assertLen(os.listdir(events), 3)
    series = plots.read_scalar(events, 'embedding/user_mean_size')
    self.assertEqual(list(series.index), [0, 10, 20, 30])
    self.assertAllClose(series.values, [2.0, 3.0, 5.0, 7.0])
    with self.assertRaises(plots.NoData):
      plots.read_scalar(events, 'embedding/item_mean_size')

  def test_frequency_table_means_over_seeds(self):
    cells = [self._run('esapn', 0, 0.7, [2.0]),
             self._run('esapn', 1, 0.8, [2.0])]
    table = plots.frequency_table(cells, 'user')
    self.assertEqual(list(table.index), [0, 1, 2, 3, 4])
    self.assertAllClose(table['accuracy'], [0.75] * 5)
    self.assertEqual(list(table['frequency_max']), [1, 3, 7, 15, 31])

  def test_no_data_skips_every_plot(self):
    cells = [_cell('esapn', 0, status=cells_lib.FAILED, error='E: x'),
             _cell('fixed', 0, status=cells_lib.FAILED, error='E: y')]
    notes = plots.write_plots(self.workdir, cells, ['binary', 'multiclass'],
                              ['esapn', 'fixed'], batch_size=500)
    self.assertLen(notes, 8)
    for note in notes:
      self.assertStartsWith(note, 'plot skipped: ')
    self.assertEqual(os.listdir(os.path.join(self.workdir, 'plots')), [])


if __name__ == '__main__':
  tf.test.main()
