"""The Pareto report's files: `pareto.md`, `pareto.json`, `pareto_<task>.png`.

Per task, one row per (budget, method) and one for the FIXED reference:
test accuracy (%) and loss as mean ± sample std over seeds (ddof=1; the
mean alone for one seed), the user, item and total memory ratio (mean over
seeds; total = (user + item live dims) / (user + item FIXED dims)) and the
number of seeds; then, per budget, ESAPN against each method paired by seed
with `report.verdict`. The figure: test accuracy and loss against the total
memory ratio (log x), one line per method through its budgets, error bars
= std over seeds in both axes, FIXED as one marked point.

The functions read `pareto.Cell`-like objects (`task`, `method`, `seed`,
`budget`, `targets`, `workdir`, `status`, `error`, `results`, `seconds`,
`finished`, `label`) and the report's `meta` (`tasks`, `methods` with esapn
first, `budgets`, `num_seeds`, `fixed_size`, `command`, `dataset`, and what
`report.header_lines` reads). The text files are written atomically.
"""

import os
import textwrap
from typing import Any, Dict, List, Optional, Sequence, Tuple

import matplotlib
matplotlib.use('Agg')  # files only, no display
from matplotlib import pyplot as plt  # noqa: E402
from matplotlib import ticker  # noqa: E402
import numpy as np  # noqa: E402

from esapn_tf import files
from esapn_tf.comparison import plots  # noqa: E402
from esapn_tf.comparison import report  # noqa: E402

SIDES = report.SIDES
_FAILED = 'failed'  # cells.FAILED


def total_ratio(results: Dict[str, Any]) -> float:
  """(user + item live dims) / (user + item FIXED dims) of one run."""
  memory = results['memory']
  return (sum(memory[s]['total_dims'] for s in SIDES) /
          sum(memory[s]['fixed_dims'] for s in SIDES))


def _ratios(results: Dict[str, Any]) -> Dict[str, float]:
  ratios = {s: results['memory'][s]['ratio'] for s in SIDES}
  ratios['total'] = total_ratio(results)
  return ratios


def _points(meta) -> List[Tuple[Optional[float], str]]:
  """The report's rows: (budget, method) per budget, then (None, 'fixed')."""
  return [(b, m) for b in meta['budgets'] for m in meta['methods']] + [
      (None, 'fixed')]


def _group(cells, task, budget, method) -> List[Any]:
  return [c for c in cells if (c.task, c.method) == (task, method) and
          (method == 'fixed' or c.budget == budget)]


def aggregate(cells, meta: Dict[str, Any]) -> Dict[str, List[Dict]]:
  """Means and stds over seeds per task, budget and method (pareto.json).

  Returns:
    `{task: [{'budget' (None for FIXED), 'method', 'seeds', 'finished',
    'failed', 'test_accuracy', 'test_loss', 'memory_ratio': {'user',
    'item', 'total'}}]}`, rows in `_points` order, where each statistic
    is `report.stats` over the finished seeds (`{'mean', 'std', 'values'}`).
  """
  result = {}
  for task in meta['tasks']:
    result[task] = []
    for budget, method in _points(meta):
      group = _group(cells, task, budget, method)
      done = [_ratios(c.results) | {'test': c.results['test']}
              for c in group if c.finished]
      result[task].append({
          'budget': budget, 'method': method, 'seeds': len(group),
          'finished': len(done),
          'failed': sum(c.status == _FAILED for c in group),
          'test_accuracy': report.stats([d['test']['accuracy']
                                         for d in done]),
          'test_loss': report.stats([d['test']['loss'] for d in done]),
          'memory_ratio': {k: report.stats([d[k] for d in done])
                           for k in SIDES + ('total',)}})
  return result


def task_lines(cells, meta, task: str) -> List[str]:
  """Markdown lines of one task: the Pareto table and ESAPN's verdicts."""
  notes = report.footnotes(cells)
  fixed = f'FIXED-{meta["fixed_size"]}'
  loss = report.LOSS_NAMES.get(task, 'loss')
  rows = []
  for budget, method in _points(meta):
    group = _group(cells, task, budget, method)
    done = [_ratios(c.results) for c in group if c.finished]
    ratios = [f'{np.mean([d[k] for d in done]):.4f}' if done else '—'
              for k in SIDES + ('total',)]
    seeds = str(len(done)) + (f' of {len(group)}' if len(done) < len(group)
                              else '')
    rows.append(
        ['none' if budget is None else f'{budget:g}',
         fixed if method == 'fixed' else method,
         report.entry(group, lambda r: 100.0 * r['test']['accuracy'], 2,
                      notes),
         report.entry(group, lambda r: r['test']['loss'], 4, notes)] +
        ratios + [seeds])
  lines = [f'## {task}', ''] + report.table(
      ['budget', 'method', 'test accuracy %', f'test {loss}', 'user ratio',
       'item ratio', 'total ratio', 'seeds'], rows)
  versus = []
  for budget in meta['budgets']:
    ref = {c.seed: c.results for c in _group(cells, task, budget, 'esapn')
           if c.finished}
    for method in [m for m in meta['methods'] if m != 'esapn'] + ['fixed']:
      other = {c.seed: c.results
               for c in _group(cells, task, budget, method) if c.finished}
      columns = report.paired_columns(ref, other)
      if columns:
        versus.append([f'{budget:g}', fixed if method == 'fixed' else method]
                      + columns)
  if versus:
    lines += ['', f'ESAPN against each method at its budget ({fixed}: at '
              'full memory), paired by seed:', ''] + report.table(
                  ['budget', 'method', 'esapn − method, accuracy pp per seed',
                   'mean', 'accuracy verdict', 'esapn − method, loss mean',
                   'loss verdict'], versus)
  return lines


def cell_lines(cells) -> List[str]:
  """Markdown lines: every cell, with the memory it was given and ended at."""
  notes = report.footnotes(cells)
  rows = []
  for c in cells:
    status = f'failed [{notes[id(c)]}]' if id(c) in notes else c.status
    given = (f'{c.budget:g}' if c.method == 'esapn' else
             f'{c.targets["user"]:.4f}, {c.targets["item"]:.4f}' if c.targets
             else '')
    row = [c.task, '' if c.method == 'fixed' else f'{c.budget:g}', c.method,
           str(c.seed), given]
    if c.finished:
      ratios = _ratios(c.results)
      row += [f'{100.0 * c.results["test"]["accuracy"]:.2f}',
              f'{c.results["test"]["loss"]:.4f}'] + [
                  f'{ratios[k]:.4f}' for k in SIDES + ('total',)] + [
                      f'{c.results.get("wall_seconds", 0.0):.1f}']
    else:
      row += [''] * 6
    rows.append(row + [status])
  return report.table(
      ['task', 'budget', 'method', 'seed', 'memory given (user, item)',
       'test accuracy %', 'test loss', 'user ratio', 'item ratio',
       'total ratio', 'wall s', 'status'], rows)


def markdown(cells, meta: Dict[str, Any]) -> str:
  """The whole `pareto.md`."""
  fixed = f'FIXED-{meta["fixed_size"]}'
  lines = ['# Accuracy against memory (Pareto report)', '']
  if meta.get('command'):
    lines += [f'Command: `{meta["command"]}`', '']
  lines += report.header_lines(cells, meta) + [
      f'Budgets: {", ".join(f"{b:g}" for b in meta["budgets"])} (share of '
      f'{fixed} dims per side).', '',
      'Per budget B: esapn with memory budget B; every other method matched '
      'per side to the memory that esapn run (same task and seed) ended '
      'with. Ratio = live dims / FIXED dims; total = (user + item dims) / '
      '(user + item FIXED dims). Test accuracy and loss: mean ± sample std '
      'over seeds; ratios: mean over seeds. Verdicts: "better"/"worse" '
      'when the intervals mean ± std of esapn and the method do not '
      'overlap, else "within spread".']
  for task in meta['tasks']:
    lines += [''] + task_lines(cells, meta, task)
  notes = report.footnote_lines(cells)
  if notes:
    lines += ['', 'Failures:', ''] + [f'- {n}' for n in notes]
  lines += ['', '## Every run', ''] + cell_lines(cells)
  return '\n'.join(lines) + '\n'


def to_json(cells, meta: Dict[str, Any]) -> Dict[str, Any]:
  """The content of `pareto.json`: every cell and the aggregates."""
  return {
      'meta': meta,
      'cells': [{'task': c.task, 'method': c.method, 'seed': c.seed,
                 'budget': None if c.method == 'fixed' else c.budget,
                 'targets': c.targets, 'status': c.status, 'error': c.error,
                 'workdir': c.workdir, 'seconds': c.seconds,
                 'results': c.results} for c in cells],
      'aggregate': aggregate(cells, meta),
  }


def write_files(workdir: str, cells, meta: Dict[str, Any]) -> None:
  """Writes `pareto.md` and `pareto.json` atomically."""
  files.atomic_write_text(os.path.join(workdir, 'pareto.md'),
                            markdown(cells, meta))
  files.atomic_write_json(os.path.join(workdir, 'pareto.json'),
                            to_json(cells, meta))


def figure(task: str, rows: Sequence[Dict[str, Any]], meta: Dict[str, Any]):
  """Test accuracy and loss against the total memory ratio (log x).

  One line per method through its budgets, error bars = sample std over
  seeds in both axes; FIXED as one marked point.

  Raises:
    plots.NoData: no finished cell.
  """
  if not any(r['finished'] for r in rows):
    raise plots.NoData('no finished run')
  fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
  fixed = f'FIXED-{meta["fixed_size"]}'
  for ax, key, scale, ylabel in (
      (axes[0], 'test_accuracy', 100.0, 'test accuracy %'),
      (axes[1], 'test_loss', 1.0, plots.LOSS_LABELS.get(task, 'test loss'))):
    for method in meta['methods'] + ['fixed']:
      points = [r for r in rows if r['method'] == method and r['finished']]
      if not points:
        continue
      x = np.array([r['memory_ratio']['total']['mean'] for r in points])
      sx = np.array([r['memory_ratio']['total']['std'] or 0.0
                     for r in points])
      y = np.array([r[key]['mean'] for r in points]) * scale
      sy = np.array([r[key]['std'] or 0.0 for r in points]) * scale
      # A log axis cannot show a bar reaching zero: cap the lower one.
      xerr = np.stack([np.minimum(sx, 0.9 * x), sx])
      if method == 'fixed':
        ax.errorbar(x, y, yerr=sy, xerr=xerr, marker='*', markersize=14,
                    color='black', linestyle='none', capsize=3, label=fixed)
      else:
        ax.errorbar(x, y, yerr=sy, xerr=xerr, marker='o', capsize=3,
                    label=method)
    ax.set_xscale('log')
    ax.set_xticks(sorted(set(meta['budgets']) | {1.0}))
    ax.xaxis.set_major_formatter(ticker.FormatStrFormatter('%g'))
    ax.xaxis.set_minor_formatter(ticker.NullFormatter())
    ax.set_xlabel(f'memory: (user + item dims) / {fixed} dims (log scale)')
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3, which='both')
  axes[0].legend()
  fig.suptitle(f'{task} on {meta["dataset"]}: test metrics against memory '
               f'(mean ± sample std over {meta["num_seeds"]} seed'
               f'{"s" if meta["num_seeds"] > 1 else ""})')
  if meta.get('command'):
    fig.text(0.5, -0.02, '\n'.join(textwrap.wrap(meta['command'], 160)),
             ha='center', va='top', fontsize=7, family='monospace')
  return fig


def write_figure(workdir: str, task: str, cells, meta) -> str:
  """Writes `pareto_<task>.png`; returns 'plot: <path>' or why not."""
  name = f'pareto_{task}.png'
  path = os.path.join(workdir, name)
  try:
    plots.save_figure(figure(task, aggregate(cells, meta)[task], meta), path)
  except plots.NoData as e:
    return f'plot skipped: {name} ({e})'
  except Exception as e:  # pylint: disable=broad-except
    # A figure is a by-product: never lose the report over one.
    return f'plot skipped: {name} ({type(e).__name__}: {e})'
  return f'plot: {path}'


def summary_text(cells, meta: Dict[str, Any], workdir: str) -> str:
  """The summary printed at the end: the header and each task's tables."""
  lines = report.header_lines(cells, meta)
  for task in meta['tasks']:
    lines += [''] + task_lines(cells, meta, task)
  notes = report.footnote_lines(cells)
  if notes:
    lines += [''] + notes
  lines += ['', f'Report: {os.path.join(workdir, "pareto.md")} (every run), '
            'pareto.json, pareto_<task>.png; tensorboard '
            f'--logdir={workdir}']
  return '\n'.join(lines)
