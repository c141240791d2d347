"""Tests for esapn_tf.comparison.pareto and .pareto_report with a fake run.

The fake writes what `loop.run_experiment` writes for these modules
(config.json, results.json) with numbers that depend on the cell: the esapn
run ends at a memory set by its budget and seed, a matched run exactly at
the memory it was given. So the order, the matching, failures, reuse and
the aggregates can be checked by hand. The configurations are real
`ExperimentConfig`s (the matched budgets must pass its validation).
"""

import io
import json
import os
import tempfile

from absl.testing import parameterized
import tensorflow as tf

from esapn_tf import config
from esapn_tf import errors
from esapn_tf.comparison import cells as cells_lib
from esapn_tf.comparison import pareto

_PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
_FIXED_DIMS = {'user': 1000, 'item': 3000}
_ACCURACY = {'fixed': 0.60, 'esapn': 0.70, 'mde': 0.65, 'threshold': 0.69,
             'random': 0.75, 'pruned': 0.64}


def _esapn_ratios(budget, seed):
  """The fake esapn run's final memory ratio per side."""
  return {'user': min(1.0, budget + 0.02 * seed), 'item': budget / 2}


def _fake_results(cfg):
  """results.json of a fake run: accuracy = method base + 0.02 * seed."""
  search, seed = cfg.search, cfg.train.seed
  if search.method == 'fixed':
    ratios = {'user': 1.0, 'item': 1.0}
  elif search.method == 'esapn':
    ratios = _esapn_ratios(search.memory_budget, seed)
  elif search.method == 'pruned':
    ratios = {'user': search.prune_user_fraction,
              'item': search.prune_item_fraction}
  else:
    ratios = {'user': search.user_memory_budget,
              'item': search.item_memory_budget}
  memory = {side: {'counts': {'2': 1, '128': 1},
                   'total_dims': round(ratios[side] * _FIXED_DIMS[side]),
                   'fixed_dims': _FIXED_DIMS[side], 'ratio': ratios[side]}
            for side in ('user', 'item')}
  return {'method': search.method, 'task': cfg.model.task,
          'data_source': 'synthetic-3000', 'num_ratings': 3000,
          'test': {'examples': 600, 'loss': 0.25 - 0.01 * seed,
                   'accuracy': _ACCURACY[search.method] + 0.02 * seed},
          'memory': memory, 'memory_budget': search.memory_budget,
          'wall_seconds': 1.5}


class _FakeRun:
  """Stands in for `loop.run_experiment`; records its calls."""

  def __init__(self, root, fail=()):
    self.root = root  # the grid's workdir: calls are recorded relative
    self.fail = set(fail)  # relative cell workdirs raising TrainingError
    self.calls = []  # (relative workdir, restart)
    self.configs = {}  # relative workdir -> cfg

  def __call__(self, cfg, workdir, verbose=True, restart=False):
    del verbose
    where = os.path.relpath(workdir, os.path.join(self.root, 'runs'))
    self.calls.append((where, restart))
    self.configs[where] = cfg
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, 'config.json'), 'w') as f:
      f.write(cfg.to_json())
    if where in self.fail:
      raise errors.TrainingError('non-finite training loss\nat step 3')
    results = _fake_results(cfg)
    with open(os.path.join(workdir, 'results.json'), 'w') as f:
      json.dump(results, f)
    return results


def _base(**search):
  return config.ExperimentConfig(
      data=config.DataConfig(synthetic_num_ratings=3000),
      search=config.SearchConfig(**search))


class ParetoTest(tf.test.TestCase, parameterized.TestCase):

  def setUp(self):
    super().setUp()
    self.workdir = os.path.join(tempfile.mkdtemp(dir=self.get_temp_dir()),
                                'pareto')

  def _run(self, fake, methods, budgets=(0.2,), tasks=('binary',), seeds=2,
           rerun=False, base=None):
    out = io.StringIO()
    cells, meta = pareto.run_pareto(
        base or _base(), self.workdir, methods, tasks, budgets, seeds,
        run_fn=fake, rerun=rerun, out=out, command='bin/pareto.py --test')
    return cells, meta, out.getvalue()

  def _read(self, name):
    with open(os.path.join(self.workdir, name)) as f:
      return f.read()

  def test_plan_order_and_workdirs(self):
    fake = _FakeRun(self.workdir)
    cells, _, out = self._run(fake, ('pruned', 'mde'), budgets=(0.3, 0.1),
                              tasks=('binary', 'multiclass'))
    # Per task and seed: FIXED once, then per budget (ascending) esapn
    # (added: it sets the budget point) before its matched cells.
    expected = []
    for task in ('binary', 'multiclass'):
      for seed in (0, 1):
        expected.append(f'{task}/fixed/seed{seed}')
        for budget in ('0.1', '0.3'):
          expected += [f'{task}/budget{budget}/{m}/seed{seed}'
                       for m in ('esapn', 'pruned', 'mde')]
    self.assertEqual([w for w, _ in fake.calls], expected)
    self.assertEqual([c.status for c in cells], ['ok'] * 28)
    self.assertEqual(cells[2].label, 'binary budget 0.1 pruned seed 0')
    self.assertIn('[cell 1/28] binary fixed seed 0 (elapsed ', out)
    self.assertIn('[cell 28/28] multiclass budget 0.3 mde seed 1 (elapsed ',
                  out)
    # The FIXED cells carry no budget; esapn carries its own.
    self.assertEqual(fake.configs['binary/fixed/seed0'].search.memory_budget,
                     0.0)
    self.assertEqual(
        fake.configs['binary/budget0.3/esapn/seed1'].search.memory_budget, 0.3)

  def test_matched_cells_get_the_esapn_ratios(self):
    fake = _FakeRun(self.workdir)
    cells, _, _ = self._run(fake, ('esapn', 'random', 'threshold', 'mde',
                                   'pruned'), budgets=(0.02, 0.5))
    # Budget 0.5, seed 1: esapn ends at user 0.52, item 0.25.
    for method in ('random', 'threshold', 'mde'):
      search = fake.configs[f'binary/budget0.5/{method}/seed1'].search
      self.assertEqual(search.method, method)
      self.assertAllClose([search.user_memory_budget,
                           search.item_memory_budget, search.memory_budget],
                          [0.52, 0.25, 0.0])
    pruned = fake.configs['binary/budget0.5/pruned/seed1'].search
    self.assertAllClose([pruned.prune_user_fraction,
                         pruned.prune_item_fraction], [0.52, 0.25])
    # Budget 0.02: esapn's items end at 0.01, below the smallest share a
    # multi-size method can hold (2 / 128 = 0.015625): clipped, except for
    # pruned.
    mde = fake.configs['binary/budget0.02/mde/seed0'].search
    self.assertAllClose([mde.user_memory_budget, mde.item_memory_budget],
                        [0.02, 0.015625])
    pruned = fake.configs['binary/budget0.02/pruned/seed0'].search
    self.assertAllClose(pruned.prune_item_fraction, 0.01)
    [cell] = [c for c in cells if c.label == 'binary budget 0.02 mde seed 0']
    self.assertAllClose(cell.targets, {'user': 0.02, 'item': 0.015625})
    grid = json.loads(self._read('pareto.json'))
    self.assertAllClose(grid['cells'][2]['targets'],
                        {'user': 0.02, 'item': 0.015625})

  def test_failed_esapn_fails_its_matched_cells(self):
    fake = _FakeRun(self.workdir, fail=['binary/budget0.2/esapn/seed1'])
    cells, _, out = self._run(fake, ('esapn', 'mde', 'pruned'))
    statuses = {c.label: (c.status, c.error) for c in cells}
    self.assertEqual(statuses['binary budget 0.2 mde seed 0'], ('ok', ''))
    for method in ('mde', 'pruned'):
      status, error = statuses[f'binary budget 0.2 {method} seed 1']
      self.assertEqual(status, cells_lib.FAILED)
      self.assertEqual(
          error, f'UserInputError: {method} is matched to the memory of the '
          'esapn run of the same task, seed and budget, which failed '
          '(TrainingError: non-finite training loss at step 3)')
      self.assertNotIn((f'binary/budget0.2/{method}/seed1', False),
                       fake.calls)
    self.assertIn('  failed: UserInputError: mde is matched', out)
    md = self._read('pareto.md')
    self.assertIn('| 0.2 | mde | 65.00, failed (1/2) [2] |', md)
    self.assertIn('[1] binary budget 0.2 esapn seed 1: TrainingError: '
                  'non-finite training loss at step 3', md)

  def test_finished_cells_are_reused_unless_rerun(self):
    self._run(_FakeRun(self.workdir), ('esapn', 'mde'))
    fake = _FakeRun(self.workdir)
    cells, _, out = self._run(fake, ('esapn', 'mde'))
    self.assertEqual(fake.calls, [])
    self.assertEqual([c.status for c in cells], [cells_lib.REUSED] * 6)
    self.assertEqual(out.count('  reusing '), 6)
    # A reused matched cell still records what it was given.
    self.assertAllClose(cells[2].targets, {'user': 0.2, 'item': 0.1})
    fake = _FakeRun(self.workdir)
    cells, _, _ = self._run(fake, ('esapn', 'mde'), rerun=True)
    self.assertLen(fake.calls, 6)
    self.assertTrue(all(restart for _, restart in fake.calls))
    self.assertEqual([c.status for c in cells], [cells_lib.OK] * 6)

  def test_aggregates_by_hand(self):
    cells, meta, _ = self._run(_FakeRun(self.workdir),
                               ('esapn', 'mde', 'threshold', 'random'))
    md = self._read('pareto.md')
    # esapn, budget 0.2: accuracy 0.70, 0.72 -> 71.00 ± 1.41 (sample std
    # 0.02 / sqrt(2)); loss 0.25, 0.24 -> 0.2450 ± 0.0071; user ratios 0.20,
    # 0.22 -> 0.2100; items 0.10; total (200 + 300) / 4000 = 0.125 and
    # (220 + 300) / 4000 = 0.13 -> 0.1275.
    self.assertIn('| 0.2 | esapn | 71.00 ± 1.41 | 0.2450 ± 0.0071 | 0.2100 | '
                  '0.1000 | 0.1275 | 2 |', md)
    # mde matched to the same memory; FIXED at 1.
    self.assertIn('| 0.2 | mde | 66.00 ± 1.41 | 0.2450 ± 0.0071 | 0.2100 | '
                  '0.1000 | 0.1275 | 2 |', md)
    self.assertIn('| none | FIXED-128 | 61.00 ± 1.41 | 0.2450 ± 0.0071 | '
                  '1.0000 | 1.0000 | 1.0000 | 2 |', md)
    # Verdicts, paired by seed: gaps 5 (mde: beyond 1.41 + 1.41), 1
    # (threshold: within), -5 (random) and 10 (FIXED) points; equal losses.
    self.assertIn('| 0.2 | mde | +5.00, +5.00 | +5.00 | better | +0.0000 | '
                  'within spread |', md)
    self.assertIn('| 0.2 | threshold | +1.00, +1.00 | +1.00 | within spread |',
                  md)
    self.assertIn('| 0.2 | random | -5.00, -5.00 | -5.00 | worse |', md)
    self.assertIn('| 0.2 | FIXED-128 | +10.00, +10.00 | +10.00 | better |', md)
    grid = json.loads(self._read('pareto.json'))
    [esapn] = [r for r in grid['aggregate']['binary']
               if (r['budget'], r['method']) == (0.2, 'esapn')]
    self.assertAllClose(esapn['memory_ratio']['total']['values'],
                        [0.125, 0.13])
    self.assertAllClose(esapn['test_accuracy']['mean'], 0.71)
    self.assertEqual(grid['aggregate']['binary'][-1]['method'], 'fixed')
    self.assertLen(grid['cells'], len(cells))
    self.assertEqual(meta['methods'], ['esapn', 'mde', 'threshold', 'random'])

  def test_figure_is_written(self):
    _, _, out = self._run(_FakeRun(self.workdir), ('esapn', 'mde'),
                          budgets=(0.1, 0.3), tasks=('binary', 'multiclass'))
    for task in ('binary', 'multiclass'):
      path = os.path.join(self.workdir, f'pareto_{task}.png')
      self.assertIn(f'plot: {path}', out)
      with open(path, 'rb') as f:
        self.assertEqual(f.read(8), _PNG_SIGNATURE)

  def test_no_figure_without_finished_cells(self):
    fake = _FakeRun(self.workdir, fail=['binary/fixed/seed0',
                                        'binary/budget0.2/esapn/seed0'])
    _, _, out = self._run(fake, ('esapn',), seeds=1)
    self.assertIn('plot skipped: pareto_binary.png (no finished run)', out)

  @parameterized.named_parameters(
      ('zero', ['0']), ('above_one', ['0.1', '1.5']), ('text', ['x']),
      ('empty', []))
  def test_bad_budgets(self, values):
    with self.assertRaisesRegex(errors.UserInputError, '^--memory_budgets'):
      pareto.parse_budgets(values)

  def test_parse(self):
    self.assertEqual(pareto.parse_budgets(['0.5', ' 0.1', '0.5', '1']),
                     (0.1, 0.5, 1.0))
    self.assertEqual(pareto.parse_methods(['mde', 'esapn', 'pruned']),
                     ('esapn', 'mde', 'pruned'))
    with self.assertRaisesRegex(errors.UserInputError, "unknown 'darts'"):
      pareto.parse_methods(['esapn', 'darts'])

  def test_bad_settings_stop_before_anything_runs(self):
    fake = _FakeRun(self.workdir)
    # A budget applies to esapn with the paired reward only.
    with self.assertRaisesRegex(errors.UserInputError, 'memory_budget'):
      self._run(fake, ('esapn',), base=_base(reward='paper'))
    self.assertEqual(fake.calls, [])
    self.assertFalse(os.path.exists(self.workdir))

  def test_interrupt_writes_the_report(self):
    calls = []

    def run_fn(cfg, workdir, verbose=True, restart=False):
      del workdir, verbose, restart
      calls.append(cfg.search.method)
      raise KeyboardInterrupt()

    with self.assertRaises(KeyboardInterrupt):
      self._run(run_fn, ('esapn', 'mde'))
    self.assertEqual(calls, ['fixed'])
    grid = json.loads(self._read('pareto.json'))
    self.assertEqual([c['status'] for c in grid['cells']][:2],
                     ['interrupted', 'pending'])


if __name__ == '__main__':
  tf.test.main()
