"""Tests for esapn_tf.comparison.runner with a fake run function.

The fake writes what `loop.run_experiment` writes (config.json,
per_frequency.csv, results.json) with numbers that depend on the cell, so
the order, the pruned budget, failures and reuse can be checked exactly. A
stand-in config (the real one's shape: data, model, search, train,
`to_dict`) keeps these tests independent of which methods the real config
knows; one test uses the real `ExperimentConfig`.
"""

import dataclasses
import io
import json
import os
import tempfile

import tensorflow as tf

from esapn_tf import config
from esapn_tf import errors
from esapn_tf.comparison import cells as cells_lib
from esapn_tf.comparison import runner


@dataclasses.dataclass(frozen=True)
class _Data:
  dataset: str = 'synthetic'
  data_dir: str = ''


@dataclasses.dataclass(frozen=True)
class _Model:
  task: str = 'binary'


@dataclasses.dataclass(frozen=True)
class _Search:
  method: str = 'esapn'
  prune_user_fraction: float = 0.0
  prune_item_fraction: float = 0.0


@dataclasses.dataclass(frozen=True)
class _Train:
  seed: int = 0
  batch_size: int = 100
  log_every_seconds: float = 10.0


@dataclasses.dataclass(frozen=True)
class _Config:
  data: _Data = _Data()
  model: _Model = _Model()
  search: _Search = _Search()
  train: _Train = _Train()

  def to_dict(self):
    return dataclasses.asdict(self)


_METHOD_ACCURACY = {'esapn': 0.70, 'fixed': 0.60, 'pruned': 0.50}


def _esapn_ratios(seed):
  """The fake esapn run's memory ratios (user, item) for `seed`."""
  return 0.5 + 0.1 * seed, 0.25 + 0.05 * seed


def _fake_results(cfg):
  """results.json of a fake run: accuracy = method base + 0.02 * seed."""
  task, method, seed = cfg.model.task, cfg.search.method, cfg.train.seed
  user, item = _esapn_ratios(seed) if method == 'esapn' else (1.0, 1.0)
  if method == 'pruned':
    user, item = cfg.search.prune_user_fraction, cfg.search.prune_item_fraction
  counts = {'esapn': {'2': 10, '128': 5}, 'pruned': {'0': 3, '128': 12}}.get(
      method, {'128': 15})

  def side(ratio):
    return {'counts': counts, 'total_dims': int(1920 * ratio),
            'fixed_dims': 1920, 'ratio': ratio}

  return {'method': method, 'task': task, 'dataset': 'synthetic',
          'data_source': 'synthetic-3000', 'num_ratings': 3000,
          'test': {'examples': 600, 'loss': 0.25 - 0.01 * seed,
                   'accuracy': _METHOD_ACCURACY[method] + 0.02 * seed},
          'train': {'examples': 2400, 'loss': 0.3, 'accuracy': 0.5},
          'memory': {'user': side(user), 'item': side(item)},
          'wall_seconds': 1.5}


class _FakeRun:
  """Stands in for `loop.run_experiment`; records its calls."""

  def __init__(self, fail=(), interrupt=()):
    self.fail = set(fail)  # (task, method, seed) raising TrainingError
    self.interrupt = set(interrupt)  # ... raising RunInterrupted
    self.calls = []  # (task, method, seed, restart)
    self.configs = {}  # (task, method, seed) -> cfg

  def __call__(self, cfg, workdir, verbose=True, restart=False):
    key = (cfg.model.task, cfg.search.method, cfg.train.seed)
    self.calls.append(key + (restart,))
    self.configs[key] = cfg
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, 'config.json'), 'w') as f:
      json.dump(cfg.to_dict(), f)
    if key in self.interrupt:
      raise errors.RunInterrupted('stopped by SIGINT at step 3')
    if key in self.fail:
      raise errors.TrainingError('non-finite training loss\nat step 3')
    with open(os.path.join(workdir, 'per_frequency.csv'), 'w') as f:
      f.write('side,bucket,frequency_min,frequency_max,examples,accuracy,'
              'loss\nuser,0,1,1,10,0.5,0.25\nuser,1,2,3,20,0.6,0.2\n'
              'item,0,1,1,30,0.7,0.15\n')
    results = _fake_results(cfg)
    with open(os.path.join(workdir, 'results.json'), 'w') as f:
      json.dump(results, f)
    return results


class RunnerTest(tf.test.TestCase):

  def setUp(self):
    super().setUp()
    self.workdir = os.path.join(tempfile.mkdtemp(dir=self.get_temp_dir()),
                                'compare')

  def _compare(self, fake, methods, tasks=('binary',), seeds=2,
               base=_Config(), rerun=False):
    out = io.StringIO()
    cells, meta = runner.run_comparison(
        base, self.workdir, methods, tasks, seeds, run_fn=fake, rerun=rerun,
        out=out)
    return cells, meta, out.getvalue()

  def _cell(self, cells, task, method, seed):
    [cell] = [c for c in cells if (c.task, c.method, c.seed) ==
              (task, method, seed)]
    return cell

  def test_order_esapn_before_pruned_and_cell_workdirs(self):
    fake = _FakeRun()
    cells, _, out = self._compare(fake, ('pruned', 'fixed', 'esapn'),
                                  tasks=('binary', 'multiclass'))
    # For each task, each seed: the given order with pruned moved after
    # esapn.
    expected = [(t, m, s, False) for t in ('binary', 'multiclass')
                for s in (0, 1) for m in ('fixed', 'esapn', 'pruned')]
    self.assertEqual(fake.calls, expected)
    self.assertEqual([c.status for c in cells], ['ok'] * 12)
    self.assertEqual(
        self._cell(cells, 'multiclass', 'pruned', 1).workdir,
        os.path.join(self.workdir, 'runs', 'multiclass', 'pruned', 'seed1'))
    self.assertIn('[cell 1/12] binary fixed seed 0 (elapsed ', out)
    self.assertIn('ETA ?)', out.splitlines()[0])
    self.assertIn('[cell 12/12] multiclass pruned seed 1', out)
    for name in ('comparison.md', 'comparison.json', 'plots'):
      self.assertTrue(os.path.exists(os.path.join(self.workdir, name)), name)
    with open(os.path.join(self.workdir, 'comparison.md')) as f:
      md = f.read()
    # Rows in the given order, not the run order.
    self.assertLess(md.index('| pruned |'), md.index('| fixed |'))
    self.assertLess(md.index('| fixed |'), md.index('| esapn |'))

  def test_pruned_takes_the_esapn_memory_ratios(self):
    fake = _FakeRun()
    cells, _, _ = self._compare(fake, ('esapn', 'pruned'))
    for seed in (0, 1):
      search = fake.configs[('binary', 'pruned', seed)].search
      user, item = _esapn_ratios(seed)  # seed 1: 0.6 and 0.3
      self.assertAllClose([search.prune_user_fraction,
                           search.prune_item_fraction], [user, item])
      self.assertEqual(search.method, 'pruned')
    # The esapn cells themselves keep the base's zero fractions.
    self.assertEqual(
        fake.configs[('binary', 'esapn', 1)].search.prune_user_fraction, 0.0)
    self.assertAllClose(
        self._cell(cells, 'binary', 'pruned', 1).results['memory']['item'][
            'ratio'], 0.3)

  def test_a_failing_cell_does_not_stop_the_others(self):
    fake = _FakeRun(fail=[('binary', 'fixed', 1)])
    cells, _, out = self._compare(fake, ('fixed', 'esapn'))
    self.assertLen(fake.calls, 4)
    failed = self._cell(cells, 'binary', 'fixed', 1)
    self.assertEqual(failed.status, cells_lib.FAILED)
    # One line: the type name and the message, newlines folded.
    self.assertEqual(failed.error,
                     'TrainingError: non-finite training loss at step 3')
    self.assertEqual([c.status for c in cells if c is not failed],
                     ['ok'] * 3)
    self.assertIn('  failed: TrainingError: non-finite', out)
    with open(os.path.join(self.workdir, 'comparison.md')) as f:
      md = f.read()
    # fixed: only seed 0 (60.00 %) finished; esapn: 70 and 72 %.
    self.assertIn('| fixed | 60.00, failed (1/2) [1] | 0.2500, failed (1/2) '
                  '[1] |', md)
    self.assertIn('| esapn | 71.00 ± 1.41 | 0.2450 ± 0.0071 |', md)
    self.assertIn('[1] binary fixed seed 1: TrainingError: non-finite '
                  'training loss at step 3', md)
    with open(os.path.join(self.workdir, 'comparison.json')) as f:
      report = json.load(f)
    self.assertEqual([c['status'] for c in report['cells']],
                     ['ok', 'ok', 'failed', 'ok'])
    self.assertEqual(report['aggregate']['binary']['fixed']['failed'], 1)

  def test_pruned_fails_without_esapn(self):
    fake = _FakeRun()
    cells, _, _ = self._compare(fake, ('fixed', 'pruned'), seeds=1)
    pruned = self._cell(cells, 'binary', 'pruned', 0)
    self.assertEqual(pruned.status, cells_lib.FAILED)
    self.assertEqual(pruned.error,
                     'UserInputError: ' + cells_lib.PRUNED_NEEDS_ESAPN)
    self.assertEqual(fake.calls, [('binary', 'fixed', 0, False)])
    self.assertEqual(self._cell(cells, 'binary', 'fixed', 0).status, 'ok')

  def test_pruned_fails_when_its_esapn_failed(self):
    fake = _FakeRun(fail=[('binary', 'esapn', 1)])
    cells, _, _ = self._compare(fake, ('esapn', 'pruned'))
    self.assertEqual(self._cell(cells, 'binary', 'pruned', 0).status, 'ok')
    pruned = self._cell(cells, 'binary', 'pruned', 1)
    self.assertEqual(pruned.status, cells_lib.FAILED)
    self.assertIn('pruned needs the esapn run of the same task and seed, '
                  'which failed (TrainingError: non-finite', pruned.error)
    self.assertNotIn(('binary', 'pruned', 1, False), fake.calls)

  def test_pruned_uses_an_earlier_esapn_run(self):
    self._compare(_FakeRun(), ('esapn',))
    fake = _FakeRun()
    cells, _, _ = self._compare(fake, ('pruned',))
    self.assertEqual([c.status for c in cells], ['ok', 'ok'])
    self.assertAllClose(
        fake.configs[('binary', 'pruned', 1)].search.prune_user_fraction, 0.6)
    # An earlier esapn run made with other settings does not count.
    other = _Config(data=_Data(data_dir='elsewhere'))
    cells, _, _ = self._compare(_FakeRun(), ('pruned',), base=other)
    self.assertEqual([c.status for c in cells], [cells_lib.FAILED] * 2)
    for cell in cells:
      self.assertRegex(
          cell.error, r'^UserInputError: pruned needs the esapn run of the '
          r'same task, seed and settings; the one in .*/runs/binary/esapn/'
          rf'seed{cell.seed} has other settings: add esapn to --methods')

  def test_finished_cells_are_reused_unless_rerun(self):
    self._compare(_FakeRun(), ('esapn', 'pruned'))
    fake = _FakeRun()
    cells, _, out = self._compare(fake, ('esapn', 'pruned'))
    self.assertEqual(fake.calls, [])
    self.assertEqual([c.status for c in cells], [cells_lib.REUSED] * 4)
    self.assertEqual(out.count('  reusing '), 4)
    self.assertAllClose(cells[1].results['test']['accuracy'], 0.50)
    with open(os.path.join(self.workdir, 'comparison.md')) as f:
      self.assertIn('| esapn | 71.00 ± 1.41 |', f.read())
    # --rerun: every cell runs again, with restart.
    fake = _FakeRun()
    cells, _, _ = self._compare(fake, ('esapn', 'pruned'), rerun=True)
    self.assertEqual(fake.calls,
                     [('binary', m, s, True) for s in (0, 1)
                      for m in ('esapn', 'pruned')])
    self.assertEqual([c.status for c in cells], [cells_lib.OK] * 4)

  def test_changed_settings_rerun_the_cells(self):
    self._compare(_FakeRun(), ('fixed',))
    fake = _FakeRun()
    # A field that does not change the results may differ...
    self._compare(fake, ('fixed',),
                  base=_Config(train=_Train(log_every_seconds=1.0)))
    self.assertEqual(fake.calls, [])
    # ... one that does may not, and the rerun says why.
    _, _, out = self._compare(fake, ('fixed',),
                              base=_Config(train=_Train(batch_size=7)))
    self.assertEqual(fake.calls, [('binary', 'fixed', 0, False),
                                  ('binary', 'fixed', 1, False)])
    self.assertEqual(out.count('  the finished run there has other settings: '
                               'running again (it moves to previous/)'), 2)

  def test_interrupted_comparison_writes_the_report_and_continues(self):
    fake = _FakeRun(interrupt=[('binary', 'esapn', 1)])
    with self.assertRaises(errors.RunInterrupted):
      self._compare(fake, ('fixed', 'esapn'))
    self.assertLen(fake.calls, 4)  # fixed 0, esapn 0, fixed 1, esapn 1
    with open(os.path.join(self.workdir, 'comparison.json')) as f:
      report = json.load(f)
    self.assertEqual([c['status'] for c in report['cells']],
                     ['ok', 'ok', 'ok', 'interrupted'])
    self.assertEqual(report['cells'][3]['error'],
                     'RunInterrupted: stopped by SIGINT at step 3')
    self.assertFalse(os.path.exists(os.path.join(self.workdir, '.lock')))
    fake = _FakeRun()
    cells, _, _ = self._compare(fake, ('fixed', 'esapn'))
    self.assertEqual(fake.calls, [('binary', 'esapn', 1, False)])
    self.assertEqual([c.status for c in cells], ['reused'] * 3 + ['ok'])

  def test_keyboard_interrupt_stops_the_comparison(self):
    calls = []

    def run_fn(cfg, workdir, verbose=True, restart=False):
      del workdir, verbose, restart
      calls.append(cfg.search.method)
      raise KeyboardInterrupt()

    with self.assertRaises(KeyboardInterrupt):
      self._compare(run_fn, ('fixed', 'esapn'))
    self.assertEqual(calls, ['fixed'])
    with open(os.path.join(self.workdir, 'comparison.md')) as f:
      self.assertIn('| binary | fixed | 0 |', f.read())

  def test_eta_uses_the_method_mean_then_the_overall_mean(self):
    cells = cells_lib.plan_cells('w', ('binary',), ('esapn', 'fixed', 'mde'), 1)
    self.assertIsNone(runner._eta(cells, {}))
    # esapn: mean 15; fixed and mde: no data, so the overall mean 15.
    self.assertAllClose(runner._eta(cells, {'esapn': [10.0, 20.0]}), 45.0)
    # esapn 10, fixed 30, mde: overall (10 + 30) / 2 = 20.
    self.assertAllClose(
        runner._eta(cells, {'esapn': [10.0], 'fixed': [30.0]}), 60.0)

  def test_parse_names(self):
    self.assertEqual(cells_lib.parse_names('tasks', ['multiclass', ' binary',
                                                  'binary'], config.TASKS),
                     ('multiclass', 'binary'))
    with self.assertRaisesRegex(errors.UserInputError,
                                r"--methods=esapn,bogus is invalid \(unknown "
                                r"'bogus'\): give a comma list of esapn"):
      cells_lib.parse_names('methods', ['esapn', 'bogus'], ('esapn', 'fixed'))
    with self.assertRaisesRegex(errors.UserInputError, 'empty'):
      cells_lib.parse_names('tasks', [], config.TASKS)
    with self.assertRaisesRegex(errors.UserInputError, '--seeds=0'):
      cells_lib.plan_cells('w', ('binary',), ('esapn',), 0)

  def test_real_config_cells_and_reuse(self):
    base = config.ExperimentConfig(
        data=config.DataConfig(synthetic_num_ratings=3000),
        model=config.ModelConfig(candidate_sizes=(2, 4, 8)),
        search=config.SearchConfig(method='esapn', fixed_size=4),
        train=config.TrainConfig(seed=0))
    cell = cells_lib.Cell('multiclass', 'fixed', 2, 'unused')
    cfg = cells_lib.cell_config(base, cell)
    self.assertEqual((cfg.model.task, cfg.search.method, cfg.train.seed),
                     ('multiclass', 'fixed', 2))
    self.assertEqual(cfg.search.fixed_size, 4)
    self.assertEqual(cfg.model.candidate_sizes, (2, 4, 8))
    # A finished run's config.json as the loop writes it (JSON lists for
    # tuples) matches the config it came from.
    run_dir = os.path.join(self.workdir, 'run')
    os.makedirs(run_dir)
    with open(os.path.join(run_dir, 'config.json'), 'w') as f:
      f.write(cfg.to_json())
    self.assertIsNone(cells_lib.finished_results(run_dir, cfg))  # no results
    with open(os.path.join(run_dir, 'results.json'), 'w') as f:
      json.dump({'test': {'accuracy': 0.5}}, f)
    self.assertEqual(cells_lib.finished_results(run_dir, cfg),
                     {'test': {'accuracy': 0.5}})
    other = cells_lib.cell_config(base, cells_lib.Cell('multiclass', 'fixed', 3,
                                                 'unused'))
    self.assertIsNone(cells_lib.finished_results(run_dir, other))


if __name__ == '__main__':
  tf.test.main()
