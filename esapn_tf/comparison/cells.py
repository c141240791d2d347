"""The cells of a comparison: one run per task, method and seed (issue 3).

A `Cell` is one run and, once done, its outcome; `plan_cells` lays the grid
out in run order (for each task, for each seed, the methods as given, except
that 'pruned' runs after 'esapn'), `cell_config` makes each cell's
configuration, and `finished_results` tells whether a cell's workdir already
holds the finished run of that configuration. `runner.py` runs them.
"""

import dataclasses
import json
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

from esapn_tf import config as config_lib
from esapn_tf import errors
from esapn_tf.training import workdir as workdir_lib

PENDING = 'pending'  # not run yet
OK = 'ok'  # run (or resumed) by this comparison
REUSED = 'reused'  # finished earlier with the same configuration
FAILED = 'failed'  # raised an exception; `Cell.error` holds it
INTERRUPTED = 'interrupted'  # SIGINT/SIGTERM; rerunning resumes it

PRUNED_NEEDS_ESAPN = ('pruned needs the esapn run of the same task and seed: '
                      'add esapn to --methods')

@dataclasses.dataclass
class Cell:
  """One run of the comparison and, once done, its outcome."""
  task: str  # 'binary' or 'multiclass'
  method: str  # a search method (config.METHODS)
  seed: int  # train.seed of the run
  workdir: str  # the run's own workdir
  status: str = PENDING  # PENDING, OK, REUSED, FAILED or INTERRUPTED
  error: str = ''  # FAILED, INTERRUPTED: '<exception type>: <message>'
  results: Optional[Dict[str, Any]] = None  # the run's results.json
  seconds: float = 0.0  # wall seconds this comparison spent running it

  @property
  def finished(self) -> bool:
    return self.status in (OK, REUSED)

  @property
  def label(self) -> str:
    return f'{self.task} {self.method} seed {self.seed}'


def parse_names(flag: str, values: Sequence[str],
                allowed: Sequence[str]) -> Tuple[str, ...]:
  """Checks a comma-list flag's entries against `allowed`.

  Args:
    flag: the flag's name, for the message ('methods').
    values: its entries, as absl's DEFINE_list gives them.
    allowed: the valid names.

  Returns:
    The entries, stripped, duplicates dropped, in the given order.

  Raises:
    errors.UserInputError: an unknown entry, or none at all.
  """
  names = []
  for value in values:
    value = value.strip()
    if value and value not in names:
      names.append(value)
  unknown = [n for n in names if n not in allowed]
  if unknown or not names:
    what = ('unknown ' + ', '.join(repr(n) for n in unknown) if unknown
            else 'empty')
    raise errors.UserInputError(
        f'--{flag}={",".join(values)} is invalid ({what}): give a comma '
        f'list of {", ".join(allowed)}')
  return tuple(names)


def run_order(methods: Sequence[str]) -> Tuple[str, ...]:
  """`methods` with 'pruned' moved right after 'esapn' if it came before."""
  order = list(methods)
  if ('pruned' in order and 'esapn' in order and
      order.index('pruned') < order.index('esapn')):
    order.remove('pruned')
    order.insert(order.index('esapn') + 1, 'pruned')
  return tuple(order)


def cell_workdir(workdir: str, task: str, method: str, seed: int) -> str:
  return os.path.join(workdir, 'runs', task, method, f'seed{seed}')


def check_num_seeds(num_seeds: int) -> None:
  """Raises errors.UserInputError unless `num_seeds` >= 1 (`--seeds`)."""
  if num_seeds < 1:
    raise errors.UserInputError(
        f'--seeds={num_seeds} is invalid: give the number of seeds (>= 1); '
        'seeds 0..n-1 are run')


def plan_cells(workdir: str, tasks: Sequence[str], methods: Sequence[str],
               num_seeds: int) -> List[Cell]:
  """The cells in run order: task, then seed, then `run_order(methods)`.

  Raises:
    errors.UserInputError: `num_seeds` < 1.
  """
  check_num_seeds(num_seeds)
  return [Cell(task, method, seed, cell_workdir(workdir, task, method, seed))
          for task in tasks for seed in range(num_seeds)
          for method in run_order(methods)]


def cell_config(base: config_lib.ExperimentConfig, cell: Cell,
                esapn_results: Optional[Dict[str, Any]] = None
                ) -> config_lib.ExperimentConfig:
  """`base` with the cell's task, seed and method.

  Args:
    base: the configuration every cell shares.
    cell: the cell.
    esapn_results: for method 'pruned', the results.json of the esapn run
      of the same task and seed: its memory ratios (live dims / FIXED dims,
      per side) become `prune_user_fraction` and `prune_item_fraction`.

  Raises:
    errors.UserInputError: 'pruned' without `esapn_results`, or a value the
      config rejects.
  """
  if cell.method == 'pruned':
    if esapn_results is None:
      raise errors.UserInputError(PRUNED_NEEDS_ESAPN)
    memory = esapn_results['memory']
    search = dataclasses.replace(
        base.search, method='pruned',
        prune_user_fraction=memory['user']['ratio'],
        prune_item_fraction=memory['item']['ratio'])
  else:
    search = dataclasses.replace(base.search, method=cell.method)
  return with_cell(base, cell.task, cell.seed, search)


def with_cell(base: config_lib.ExperimentConfig, task: str, seed: int,
              search: config_lib.SearchConfig
              ) -> config_lib.ExperimentConfig:
  """`base` with a cell's task, seed and search configuration.

  Raises:
    errors.UserInputError: a combination the config rejects.
  """
  return dataclasses.replace(
      base, model=dataclasses.replace(base.model, task=task), search=search,
      train=dataclasses.replace(base.train, seed=seed))


def finished_results(run_dir: str, cfg: config_lib.ExperimentConfig
                     ) -> Optional[Dict[str, Any]]:
  """results.json of a finished run in `run_dir` made with `cfg`, else None.

  The configurations are compared as `workdir.config_differences` does
  (fields that do not change the results, such as `log_every_seconds`, may
  differ).
  """
  try:
    with open(os.path.join(run_dir, 'results.json'), encoding='utf-8') as f:
      results = json.load(f)
    with open(os.path.join(run_dir, 'config.json'), encoding='utf-8') as f:
      old = json.load(f)
  except (OSError, ValueError):
    return None
  if workdir_lib.config_differences(old, cfg.to_dict()):
    return None
  return results
