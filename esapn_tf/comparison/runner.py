"""The comparison runner: one run per task, method and seed (issue 3).

Cells = tasks x methods x seeds, run one after another with a `run_fn` of
`loop.run_experiment`'s signature (`loop.run_experiment` itself, in this
process, or `isolated.run_in_subprocess`, in a child process; bin/compare.py
uses the latter), each in its own workdir
`<workdir>/runs/<task>/<method>/seed<k>/`, so that
`tensorboard --logdir=<workdir>` shows every run side by side. Order: for each
task, for each seed, the methods as given, except that 'pruned' runs after
'esapn': it keeps, per side, the share of FIXED-128 memory that the esapn run
of the same task and seed ended with (`search.prune_user_fraction`,
`search.prune_item_fraction`).

A cell whose workdir holds a finished run with the same configuration is
reused, not rerun (unless `rerun`); an interrupted one is resumed by
`run_experiment` itself. An exception in a cell marks it failed (its one-line
message is kept) and the other cells still run; `RunInterrupted` and
`KeyboardInterrupt` stop the comparison once the report is written. The
report is rewritten after every cell, the plots once at the end. The cells, their
configurations and their reuse are in `cells.py`.
"""

import os
import platform
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from esapn_tf import config as config_lib
from esapn_tf import errors
from esapn_tf import files
from esapn_tf.comparison import cells as cells_lib
from esapn_tf.comparison import plots
from esapn_tf.comparison import report
from esapn_tf.data import stream as stream_lib
from esapn_tf.training import loop
from esapn_tf.training import workdir as workdir_lib

# `run_fn(cfg, workdir, verbose=..., restart=...) -> results dict`, as
# `loop.run_experiment`.
RunFn = Callable[..., Dict[str, Any]]


def check_data(base: config_lib.ExperimentConfig) -> None:
  """Loads the ratings once, so that a bad data path stops everything early.

  Raises:
    errors.UserInputError, errors.DataError: as `stream.load_ratings`.
  """
  d = base.data
  stream_lib.load_ratings(d.dataset, d.data_dir, d.loader, d.max_ratings,
                          d.synthetic_num_ratings, base.train.seed,
                          d.tfds_download)


def run_meta(base: config_lib.ExperimentConfig, tasks: Sequence[str],
             methods: Sequence[str], num_seeds: int,
             **extra: Any) -> Dict[str, Any]:
  """The report's description of a grid of runs, before any runs.

  Returns:
    `{'dataset', 'data_dir', 'tasks', 'methods', 'num_seeds', **extra,
    'machine', 'cpu_count', 'started_utc', 'wall_seconds': 0.0}`; the
    runner sets `wall_seconds` each time it writes the report.
  """
  return {'dataset': base.data.dataset, 'data_dir': base.data.data_dir,
          'tasks': list(tasks), 'methods': list(methods),
          'num_seeds': num_seeds, **extra, 'machine': platform.node(),
          'cpu_count': os.cpu_count(),
          'started_utc': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()),
          'wall_seconds': 0.0}


def run_comparison(base: config_lib.ExperimentConfig, workdir: str,
                   methods: Sequence[str], tasks: Sequence[str],
                   num_seeds: int, run_fn: Optional[RunFn] = None,
                   rerun: bool = False, verbose_runs: bool = False,
                   out=None) -> Tuple[List[cells_lib.Cell], Dict[str, Any]]:
  """Runs every cell, writes the report after each and the plots at the end.

  Args:
    base: the configuration every cell shares (its task, seed and method
      are replaced per cell).
    workdir: the comparison's folder (created if missing): `runs/`,
      `comparison.md`, `comparison.json`, `plots/`.
    methods: the methods, in the order of the report's rows.
    tasks: the tasks.
    num_seeds: seeds 0..num_seeds-1.
    run_fn: runs one cell; `loop.run_experiment` when None.
    rerun: run finished cells again instead of reusing them (the earlier run
      moves to the cell's `previous/`).
    verbose_runs: let each run print its own progress lines.
    out: stream for the progress lines (stdout when None).

  Returns:
    (cells, meta): the cells with their outcomes, in run order, and the
    report's header data (dataset, tasks, methods, machine, wall time).

  Raises:
    errors.UserInputError: `num_seeds` < 1, an unwritable workdir, or one
      in use by another comparison.
    errors.RunInterrupted, KeyboardInterrupt: the comparison was stopped
      (the report shows the cells done so far; rerunning continues).
  """
  run_fn = run_fn or loop.run_experiment
  out = out or sys.stdout
  cells = cells_lib.plan_cells(workdir, tasks, methods, num_seeds)
  files.make_folder(workdir)
  meta = run_meta(base, tasks, methods, num_seeds)
  start = time.perf_counter()

  def write_report():
    meta['wall_seconds'] = time.perf_counter() - start
    report.write_report(workdir, cells, meta)

  def make_config(cell):
    esapn_results = None
    if cell.method == 'pruned':
      esapn_results = _esapn_results(base, workdir, cells, cell)
    return cells_lib.cell_config(base, cell, esapn_results)

  with files.WorkdirLock(workdir):
    run_cells(cells, make_config, run_fn, write_report, rerun=rerun,
              verbose_runs=verbose_runs, out=out, start=start)
    for note in plots.write_plots(workdir, cells, tasks, methods,
                                  base.train.batch_size):
      print(note, file=out, flush=True)
    write_report()
  return cells, meta


def run_cells(cells: Sequence[cells_lib.Cell],
              make_config: Callable[[cells_lib.Cell],
                                    config_lib.ExperimentConfig],
              run_fn: RunFn, write_report: Callable[[], None],
              rerun: bool = False, verbose_runs: bool = False, out=None,
              start: Optional[float] = None) -> None:
  """Runs (or reuses) `cells` in order; records each outcome in its cell.

  One progress line per cell (elapsed time, ETA from the mean time of the
  finished cells of the same method), then the cell's outcome line.

  Args:
    cells: the plan, in run order.
    make_config: a cell's configuration, asked just before it runs (so it
      may depend on cells run before it); an exception (e.g.
      `errors.UserInputError` when the run it depends on failed) fails
      that cell with the one-line message.
    run_fn: runs one cell, as `loop.run_experiment`.
    write_report: called after every cell, and before an interruption is
      raised.
    rerun: run finished cells again instead of reusing them.
    verbose_runs: let each run print its own progress lines.
    out: stream for the progress lines (stdout when None).
    start: `time.perf_counter()` value the elapsed time counts from (now
      when None).

  Raises:
    errors.RunInterrupted, KeyboardInterrupt: the cell in progress is
      marked INTERRUPTED and the report written first.
  """
  out = out or sys.stdout
  start = time.perf_counter() if start is None else start
  durations = {}  # method -> wall seconds of its cells run here
  for i, cell in enumerate(cells):
    elapsed = time.perf_counter() - start
    eta = _eta(cells[i:], durations)
    print(f'[cell {i + 1}/{len(cells)}] {cell.label} (elapsed '
          f'{report.format_duration(elapsed)}, ETA '
          f'{report.format_duration(eta)})', file=out, flush=True)
    try:
      _run_cell(cell, make_config, run_fn, rerun, verbose_runs, out)
    except (errors.RunInterrupted, KeyboardInterrupt) as e:
      cell.status, cell.error = cells_lib.INTERRUPTED, _one_line(e)
      write_report()
      raise
    if cell.status == cells_lib.OK:
      durations.setdefault(cell.method, []).append(cell.seconds)
    write_report()


def _run_cell(cell, make_config, run_fn, rerun, verbose_runs, out):
  """Runs (or reuses) one cell; records its outcome in `cell`."""
  started = time.perf_counter()
  try:
    cfg = make_config(cell)
    reusable = (None if rerun else
                cells_lib.finished_results(cell.workdir, cfg))
    if reusable is not None:
      cell.status, cell.results = cells_lib.REUSED, reusable
      print(f'  reusing {cell.workdir} (finished earlier with the same '
            'configuration)', file=out, flush=True)
      return
    restart = rerun or _other_interrupted_run(cell.workdir, cfg)
    note = _start_note(cell.workdir, rerun, restart)
    if note:
      print(f'  {note}', file=out, flush=True)
    cell.results = run_fn(cfg, cell.workdir, verbose=verbose_runs,
                          restart=restart)
    cell.status = cells_lib.OK
  except errors.RunInterrupted:
    raise
  except Exception as e:  # pylint: disable=broad-except
    # Any failure stays with its cell: the other cells still run.
    cell.status, cell.error = cells_lib.FAILED, _one_line(e)
    print(f'  failed: {cell.error}', file=out, flush=True)
    return
  finally:
    cell.seconds = time.perf_counter() - started
  test = cell.results['test']
  print(f'  done in {cell.seconds:.1f} s: test accuracy '
        f'{test["accuracy"]:.4f}, loss {test["loss"]:.4f}', file=out,
        flush=True)


def _esapn_results(base, workdir, cells, cell):
  """results.json of the esapn run that a pruned cell takes its budget from.

  The esapn cell of this comparison if it finished; else a finished esapn
  run of the same configuration already in its cell workdir.
  """
  esapn = [c for c in cells if (c.task, c.method, c.seed) ==
           (cell.task, 'esapn', cell.seed)]
  if esapn and esapn[0].finished:
    return esapn[0].results
  earlier = cells_lib.Cell(
      cell.task, 'esapn', cell.seed,
      cells_lib.cell_workdir(workdir, cell.task, 'esapn', cell.seed))
  results = cells_lib.finished_results(earlier.workdir,
                                       cells_lib.cell_config(base, earlier))
  if results is None and os.path.exists(
      os.path.join(earlier.workdir, 'results.json')) and not esapn:
    raise errors.UserInputError(
        'pruned needs the esapn run of the same task, seed and settings; '
        f'the one in {earlier.workdir} has other settings: add esapn to '
        '--methods to run it again')
  if results is None and esapn and esapn[0].status == cells_lib.FAILED:
    raise errors.UserInputError(
        'pruned needs the esapn run of the same task and seed, which failed '
        f'({esapn[0].error})')
  if results is None:
    raise errors.UserInputError(cells_lib.PRUNED_NEEDS_ESAPN)
  return results


def _start_note(run_dir: str, rerun: bool, restart: bool) -> str:
  """What happens to an earlier run in `run_dir` (finished results are
  reused before this is asked), or '' for a fresh cell."""
  if workdir_lib.incomplete_run(run_dir):
    if restart and not rerun:
      return ('the interrupted run there has other settings: starting over '
              '(it moves to previous/)')
    return '' if restart else 'resuming the interrupted run there'
  if os.path.exists(os.path.join(run_dir, 'results.json')) and not rerun:
    return ('the finished run there has other settings: running again (it '
            'moves to previous/)')
  return ''


def _other_interrupted_run(run_dir, cfg) -> bool:
  """An interrupted run in `run_dir` that `cfg` cannot resume."""
  if not workdir_lib.incomplete_run(run_dir):
    return False
  try:
    old = workdir_lib.read_config(run_dir)
  except errors.UserInputError:
    return True
  return bool(workdir_lib.config_differences(old, cfg.to_dict()))


def _eta(remaining: Sequence[cells_lib.Cell],
         durations: Dict[str, List[float]]) -> Optional[float]:
  """Seconds left: per cell the mean of its method's cells, else of all."""
  every = [s for seconds in durations.values() for s in seconds]
  if not every:
    return None
  overall = sum(every) / len(every)
  total = 0.0
  for cell in remaining:
    seconds = durations.get(cell.method)
    total += sum(seconds) / len(seconds) if seconds else overall
  return total


def _one_line(e: BaseException) -> str:
  text = ' '.join(str(e).split())
  return f'{type(e).__name__}: {text}' if text else type(e).__name__
