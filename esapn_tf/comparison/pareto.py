"""The Pareto report: accuracy against memory under budgets (issue 11).

Cells, for each task and seed: one FIXED run (every id at the largest
candidate size, no budget: the reference point at memory ratio 1), then for
each memory budget B (share of FIXED dims per side) first ESAPN with
`memory_budget=B`, then every other method matched to the memory THAT esapn
run ended with, per side (results.json `memory[side]['ratio']`):

* mde, random, threshold get it as `user_memory_budget` and
  `item_memory_budget` (clipped to [smallest / largest candidate size, 1]):
  they fit their one parameter so that they end there;
* pruned gets it as `prune_user_fraction` and `prune_item_fraction`
  (clipped to at most 1).

A matched cell whose esapn run failed fails with a one-line message. Each
cell runs in `<workdir>/runs/<task>/budget<B>/<method>/seed<k>/` (FIXED in
`<workdir>/runs/<task>/fixed/seed<k>/`) through `runner.run_cells`, so
reuse of finished cells, `rerun`, failures and interruptions behave as in
the comparison. Outputs in the workdir (`pareto_report`): `pareto.md` and
`pareto.json` (atomically after every cell) and, at the end,
`pareto_<task>.png`.
"""

import dataclasses
import os
import sys
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

from esapn_tf import config as config_lib
from esapn_tf import errors
from esapn_tf import files
from esapn_tf.comparison import cells as cells_lib
from esapn_tf.comparison import pareto_report
from esapn_tf.comparison import runner
from esapn_tf.training import loop

# Methods a budget point compares (esapn sets the point, the others are
# matched to it); FIXED always runs as the reference.
METHODS = config_lib.BUDGET_METHODS + ('pruned',)
SIDES = pareto_report.SIDES


@dataclasses.dataclass
class Cell(cells_lib.Cell):
  """One run of the Pareto grid and, once done, its outcome."""
  budget: float = 0.0  # B of the budget point; 0 for the FIXED reference
  targets: Optional[Dict[str, float]] = None  # matched cells: per side,
  # the share of FIXED dims they were given (esapn's ratio, clipped)

  @property
  def label(self) -> str:
    if self.method == 'fixed':
      return f'{self.task} fixed seed {self.seed}'
    return f'{self.task} budget {self.budget:g} {self.method} seed {self.seed}'


def parse_budgets(values: Sequence[str]) -> Tuple[float, ...]:
  """The --memory_budgets entries as shares of FIXED memory, ascending.

  Raises:
    errors.UserInputError: an entry that is not a number in (0, 1], or none.
  """
  budgets = []
  for value in values:
    value = value.strip()
    if not value:
      continue
    try:
      budget = float(value)
    except ValueError:
      budget = float('nan')
    if not 0.0 < budget <= 1.0:  # also rejects nan
      raise errors.UserInputError(
          f'--memory_budgets={",".join(values)} is invalid ({value!r} is '
          'not a share of FIXED memory in (0, 1]): give a comma list such '
          'as 0.1,0.2,0.3,0.5')
    if budget not in budgets:
      budgets.append(budget)
  if not budgets:
    raise errors.UserInputError(
        '--memory_budgets is empty: give a comma list of shares of FIXED '
        'memory in (0, 1], such as 0.1,0.2,0.3,0.5')
  return tuple(sorted(budgets))


def parse_methods(values: Sequence[str]) -> Tuple[str, ...]:
  """The --methods entries, esapn first (added if missing: it sets the
  budget points the others are matched to).

  Raises:
    errors.UserInputError: an entry not in `METHODS`, or none.
  """
  names = cells_lib.parse_names('methods', values, METHODS)
  return ('esapn',) + tuple(n for n in names if n != 'esapn')


def cell_workdir(workdir: str, task: str, method: str, seed: int,
                 budget: float) -> str:
  if method == 'fixed':
    return os.path.join(workdir, 'runs', task, 'fixed', f'seed{seed}')
  return os.path.join(workdir, 'runs', task, f'budget{budget:g}', method,
                      f'seed{seed}')


def plan_cells(workdir: str, tasks: Sequence[str], methods: Sequence[str],
               budgets: Sequence[float], num_seeds: int) -> List[Cell]:
  """The cells in run order: task, seed, then FIXED, then per budget esapn
  and the other `methods` as given.

  Raises:
    errors.UserInputError: `num_seeds` < 1.
  """
  cells_lib.check_num_seeds(num_seeds)
  order = ('esapn',) + tuple(m for m in methods if m != 'esapn')
  cells = []
  for task in tasks:
    for seed in range(num_seeds):
      cells.append(Cell(task, 'fixed', seed,
                        cell_workdir(workdir, task, 'fixed', seed, 0.0)))
      for budget in budgets:
        cells += [Cell(task, m, seed, cell_workdir(workdir, task, m, seed,
                                                   budget), budget=budget)
                  for m in order]
  return cells


def matched_targets(esapn_results: Dict[str, Any], method: str,
                    smallest_share: float) -> Dict[str, float]:
  """Per side, the share of FIXED dims a matched cell is given.

  Args:
    esapn_results: results.json of the esapn run of the same task, seed and
      budget; `memory[side]['ratio']` = its live dims / FIXED dims.
    method: the matched method.
    smallest_share: smallest / largest candidate size, the least memory a
      multi-size method can end with (every id at the smallest size).

  Returns:
    {'user': share, 'item': share}: the esapn ratio, clipped to at most 1
    and, except for pruned (which can keep fewer entries), at least
    `smallest_share`.
  """
  low = 0.0 if method == 'pruned' else smallest_share
  return {side: float(min(1.0, max(low, esapn_results['memory'][side][
      'ratio']))) for side in SIDES}


def cell_config(base: config_lib.ExperimentConfig, cell: Cell,
                targets: Optional[Dict[str, float]] = None
                ) -> config_lib.ExperimentConfig:
  """`base` with the cell's task, seed, method and memory setting.

  Every budget field of `base` is cleared first; then esapn gets
  `memory_budget=cell.budget`, a matched cell its `targets` (pruned as
  prune fractions, the others as per-side budgets), FIXED nothing. The
  memory cost (lambda's start value) stays for esapn only.

  Raises:
    errors.UserInputError: a matched cell without `targets`, or a value the
      config rejects.
  """
  # One replace: each intermediate SearchConfig would be validated too.
  fields = dict(
      method=cell.method, memory_budget=0.0, user_memory_budget=0.0,
      item_memory_budget=0.0, prune_user_fraction=0.0,
      prune_item_fraction=0.0,
      memory_cost=base.search.memory_cost if cell.method == 'esapn' else 0.0)
  if cell.method == 'esapn':
    fields['memory_budget'] = cell.budget
  elif cell.method != 'fixed':
    if targets is None:
      raise errors.UserInputError(
          f'{cell.method} is matched to the esapn run of the same task, '
          'seed and budget, which has not run')
    prefix = 'prune_{}_fraction' if cell.method == 'pruned' else (
        '{}_memory_budget')
    fields.update({prefix.format(side): targets[side] for side in SIDES})
  search = dataclasses.replace(base.search, **fields)
  return cells_lib.with_cell(base, cell.task, cell.seed, search)


def _esapn_results(cells: Sequence[Cell], cell: Cell) -> Dict[str, Any]:
  """results.json of the esapn cell a matched cell takes its memory from."""
  [esapn] = [c for c in cells if (c.task, c.seed, c.budget, c.method) ==
             (cell.task, cell.seed, cell.budget, 'esapn')]
  if esapn.finished:
    return esapn.results
  what = f'failed ({esapn.error})' if esapn.status == cells_lib.FAILED else (
      'has not finished')
  raise errors.UserInputError(
      f'{cell.method} is matched to the memory of the esapn run of the same '
      f'task, seed and budget, which {what}')


def run_pareto(base: config_lib.ExperimentConfig, workdir: str,
               methods: Sequence[str], tasks: Sequence[str],
               budgets: Sequence[float], num_seeds: int,
               run_fn: Optional[runner.RunFn] = None, rerun: bool = False,
               verbose_runs: bool = False, out=None, command: str = ''
               ) -> Tuple[List[Cell], Dict[str, Any]]:
  """Runs the grid, writes the report after every cell, the figures at the end.

  Args:
    base: the configuration every cell shares (task, seed, method and the
      memory fields are set per cell).
    workdir: the report's folder (created if missing).
    methods: from `METHODS`; esapn is run whether listed or not.
    tasks: the tasks.
    budgets: shares of FIXED memory per side, in (0, 1] (run ascending).
    num_seeds: seeds 0..num_seeds-1.
    run_fn: runs one cell; `loop.run_experiment` when None.
    rerun: run finished cells again instead of reusing them.
    verbose_runs: let each run print its own progress lines.
    out: stream for the progress lines (stdout when None).
    command: the command line, for the report and the figures' titles.

  Returns:
    (cells, meta): the cells with their outcomes in run order, and the
    report's header data.

  Raises:
    errors.UserInputError: `num_seeds` < 1, a budget outside (0, 1],
      settings the esapn or FIXED cells' config rejects (checked before
      anything runs), an unwritable workdir or one in use.
    errors.RunInterrupted, KeyboardInterrupt: as `runner.run_cells`.
  """
  methods = parse_methods(methods)
  budgets = parse_budgets([str(b) for b in budgets])
  cells = plan_cells(workdir, tasks, methods, budgets, num_seeds)
  for cell in cells:
    if cell.method in ('esapn', 'fixed'):
      cell_config(base, cell)  # bad settings stop everything here
  sizes = base.model.candidate_sizes
  smallest_share = sizes[0] / sizes[-1]
  files.make_folder(workdir)
  meta = runner.run_meta(base, tasks, methods, num_seeds,
                         budgets=list(budgets),
                         fixed_size=base.search.fixed_size or sizes[-1],
                         command=command)
  start = time.perf_counter()

  def write_report():
    meta['wall_seconds'] = time.perf_counter() - start
    pareto_report.write_files(workdir, cells, meta)

  def make_config(cell):
    targets = None
    if cell.method not in ('esapn', 'fixed'):
      targets = matched_targets(_esapn_results(cells, cell), cell.method,
                                smallest_share)
      cell.targets = targets
    return cell_config(base, cell, targets)

  out = out or sys.stdout
  with files.WorkdirLock(workdir):
    runner.run_cells(cells, make_config, run_fn or loop.run_experiment,
                     write_report, rerun=rerun, verbose_runs=verbose_runs,
                     out=out, start=start)
    for task in tasks:
      print(pareto_report.write_figure(workdir, task, cells, meta),
            file=out, flush=True)
    write_report()
  return cells, meta
