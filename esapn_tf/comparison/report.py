"""The comparison's report: `comparison.md`, `comparison.json`, the summary.

The paper's layout (DESIGN.md §5): one row per method; per task the test
accuracy (%) and loss (binary: MSE, multiclass: cross-entropy), each
"mean ± std" over seeds (sample std, ddof=1; the mean alone for one seed).
Then, per task and side, the memory table: ids at each size (mean over
seeds, rounded), total dims, FIXED dims and their ratio. Then every cell on
its own row.

The functions read `cells.Cell`-like objects: `task`, `method`, `seed`,
`workdir`, `status`, `error`, `results` (results.json), `seconds` and
`finished`. Both files are written atomically, so an interrupted or failed
comparison never leaves a half-written report.
"""

import math
import os
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from esapn_tf import files

SIDES = ('user', 'item')
LOSS_NAMES = {'binary': 'MSE', 'multiclass': 'CE'}
_SIDE_TITLES = {'user': 'users', 'item': 'items (movies)'}


def format_duration(seconds: Optional[float]) -> str:
  """'42s', '3m12s' or '1h02m03s'; '?' for None or a non-finite value."""
  if seconds is None or not math.isfinite(seconds):
    return '?'
  seconds = int(round(seconds))
  h, rest = divmod(seconds, 3600)
  m, s = divmod(rest, 60)
  if h:
    return f'{h}h{m:02d}m{s:02d}s'
  return f'{m}m{s:02d}s' if m else f'{s}s'


def mean_std(values: Sequence[float], scale: float = 1.0,
             decimals: int = 4) -> str:
  """'mean ± std' of `values * scale` (sample std); the mean alone for one.

  E.g. accuracies 0.70, 0.72, 0.74 with scale 100, 2 decimals:
  '72.00 ± 2.00'. '' for no values.
  """
  if len(values) == 0:
    return ''
  v = np.asarray(values, np.float64) * scale
  if len(v) == 1:
    return f'{v[0]:.{decimals}f}'
  return f'{v.mean():.{decimals}f} ± {v.std(ddof=1):.{decimals}f}'


def stats(values: Sequence[float]) -> Dict[str, Any]:
  v = np.asarray(values, np.float64)
  return {'mean': float(v.mean()) if len(v) else None,
          'std': float(v.std(ddof=1)) if len(v) > 1 else None,
          'values': [float(x) for x in v]}


def _group(cells, task, method):
  return [c for c in cells if c.task == task and c.method == method]


def size_keys(cells, task: str, side: str) -> List[str]:
  """The union of the finished cells' size keys, sorted numerically."""
  keys = set()
  for c in cells:
    if c.task == task and c.finished:
      keys.update(c.results['memory'][side]['counts'])
  return sorted(keys, key=float)


def aggregate(cells, tasks: Sequence[str],
              methods: Sequence[str]) -> Dict[str, Any]:
  """Means and stds over seeds per task and method (comparison.json).

  Returns:
    `{task: {method: {'seeds', 'finished', 'failed', 'test_accuracy',
    'test_loss', 'memory': {side: {'counts': {size: mean ids},
    'total_dims', 'fixed_dims', 'ratio'}}}}}` where each statistic is
    `{'mean', 'std', 'values'}` (None where undefined).
  """
  result = {}
  for task in tasks:
    result[task] = {}
    for method in methods:
      group = _group(cells, task, method)
      done = [c.results for c in group if c.finished]
      row = {
          'seeds': len(group), 'finished': len(done),
          'failed': sum(c.status == 'failed' for c in group),
          'test_accuracy': stats([r['test']['accuracy'] for r in done]),
          'test_loss': stats([r['test']['loss'] for r in done]),
          'memory': {}}
      for side in SIDES:
        tables = [r['memory'][side] for r in done]
        row['memory'][side] = {
            'counts': {k: float(np.mean([t['counts'].get(k, 0)
                                         for t in tables]))
                       for k in size_keys(group, task, side)},
            'total_dims': stats([t['total_dims'] for t in tables]),
            'fixed_dims': stats([t['fixed_dims'] for t in tables]),
            'ratio': stats([t['ratio'] for t in tables])}
      result[task][method] = row
  return result


def footnotes(cells) -> Dict[int, int]:
  """id(cell) -> footnote number, for every failed cell."""
  failed = [c for c in cells if c.status == 'failed']
  return {id(c): i + 1 for i, c in enumerate(failed)}


def entry(group, value, decimals, notes) -> str:
  """A table entry: mean ± std of `value(results)`, failures, cells left."""
  done = [c for c in group if c.finished]
  failed = [c for c in group if c.status == 'failed']
  text = mean_std([value(c.results) for c in done], 1.0, decimals)
  if failed:
    marks = ','.join(str(notes[id(c)]) for c in failed)
    flag = f'failed ({len(failed)}/{len(group)}) [{marks}]'
    text = f'{text}, {flag}' if text else flag
  left = len(group) - len(done) - len(failed)
  if left:
    text = f'{text} ({left} to run)' if text else 'not run yet'
  return text


def _row(entries) -> str:
  return '| ' + ' | '.join(entries) + ' |'


def table(header, rows) -> List[str]:
  return [_row(header), _row(['---'] * len(header))] + [_row(r) for r in rows]


def main_table(cells, tasks, methods) -> List[str]:
  """Markdown lines: one row per method, accuracy % and loss per task."""
  notes = footnotes(cells)
  header = ['method']
  for task in tasks:
    header += [f'{task} accuracy %', f'{task} {LOSS_NAMES.get(task, "loss")}']
  rows = []
  for method in methods:
    row = [method]
    for task in tasks:
      group = _group(cells, task, method)
      row.append(entry(group, lambda r: 100.0 * r['test']['accuracy'], 2,
                       notes))
      row.append(entry(group, lambda r: r['test']['loss'], 4, notes))
    rows.append(row)
  return table(header, rows)


def verdict(reference: Sequence[float], other: Sequence[float],
            higher_is_better: bool = True) -> str:
  """Whether `reference` beats `other` beyond the spread across seeds.

  "Beyond the spread" means the intervals mean ± sample std of the two do
  not overlap: `|mean_r - mean_o| > std_r + std_o`. With fewer than two
  values on a side there is no spread to judge: 'one seed'.

  Returns:
    'better', 'worse' (for `reference`) or 'within spread', 'one seed'.
  """
  if len(reference) < 2 or len(other) < 2:
    return 'one seed'
  r, o = np.asarray(reference, np.float64), np.asarray(other, np.float64)
  gap = r.mean() - o.mean()
  if abs(gap) <= r.std(ddof=1) + o.std(ddof=1):
    return 'within spread'
  return 'better' if (gap > 0) == higher_is_better else 'worse'


def versus_table(cells, tasks, methods, reference: str = 'esapn'
                 ) -> List[str]:
  """Markdown lines: `reference` against each other method, seed by seed.

  Seeds fix the split and the stream order, so seed k of every method saw
  the same data: the per-seed differences are paired. The verdict columns
  apply `verdict` to the accuracies and to the losses.
  """
  header = ['task', 'method', f'{reference} − method, accuracy pp per seed',
            'mean', 'accuracy verdict', f'{reference} − method, loss mean',
            'loss verdict']
  rows = []
  for task in tasks:
    ref = {c.seed: c.results for c in _group(cells, task, reference)
           if c.finished}
    if not ref:
      continue
    for method in methods:
      if method == reference:
        continue
      other = {c.seed: c.results for c in _group(cells, task, method)
               if c.finished}
      columns = paired_columns(ref, other)
      if columns:
        rows.append([task, method] + columns)
  return table(header, rows) if rows else []


def paired_columns(reference: Dict[int, Dict[str, Any]],
                   other: Dict[int, Dict[str, Any]]) -> List[str]:
  """A reference method against another, over the seeds both finished.

  Args:
    reference: seed -> results.json of the reference method's run.
    other: seed -> results.json of the other method's run.

  Returns:
    Five table entries: the accuracy differences in points per seed, their
    mean, the accuracy `verdict`, the mean loss difference, the loss
    `verdict`; [] when no seed is in both.
  """
  seeds = sorted(set(reference) & set(other))
  if not seeds:
    return []
  ref, oth = ([r[k]['test'] for k in seeds] for r in (reference, other))
  acc = [100.0 * (r['accuracy'] - o['accuracy']) for r, o in zip(ref, oth)]
  loss = [r['loss'] - o['loss'] for r, o in zip(ref, oth)]
  return [', '.join(f'{d:+.2f}' for d in acc), f'{np.mean(acc):+.2f}',
          verdict([r['accuracy'] for r in ref],
                  [o['accuracy'] for o in oth]),
          f'{np.mean(loss):+.4f}',
          verdict([r['loss'] for r in ref], [o['loss'] for o in oth],
                  higher_is_better=False)]


def footnote_lines(cells) -> List[str]:
  notes = footnotes(cells)
  return [f'[{notes[id(c)]}] {c.label}: {c.error}' for c in cells
          if id(c) in notes]


def memory_tables(cells, tasks, methods) -> List[str]:
  """Markdown lines: per task and side, ids at each size and the ratio."""
  notes = footnotes(cells)
  lines = []
  for task in tasks:
    for side in SIDES:
      keys = size_keys(cells, task, side)
      lines += ['', f'### {task}: {_SIDE_TITLES[side]}, ids at each size '
                '(dims; mean over seeds)', '']
      rows = []
      for method in methods:
        group = _group(cells, task, method)
        tables = [c.results['memory'][side] for c in group if c.finished]
        if not tables:
          rows.append([method] + ['—'] * (len(keys) + 2) +
                      [entry(group, None, 4, notes)])
          continue
        counts = [f'{round(np.mean([t["counts"].get(k, 0) for t in tables])):,}'
                  for k in keys]
        rows.append(
            [method] + counts +
            [f'{round(np.mean([t["total_dims"] for t in tables])):,}',
             f'{round(np.mean([t["fixed_dims"] for t in tables])):,}',
             entry(group, lambda r, s=side: r['memory'][s]['ratio'], 4,
                   notes)])
      lines += table(['method'] + keys + ['total dims', 'FIXED dims',
                                          'ratio'], rows)
  return lines


def cell_table(cells) -> List[str]:
  """Markdown lines: every cell with its metrics and status."""
  notes = footnotes(cells)
  rows = []
  for c in cells:
    status = f'failed [{notes[id(c)]}]' if id(c) in notes else c.status
    if c.finished:
      r = c.results
      rows.append([c.task, c.method, str(c.seed),
                   f'{100.0 * r["test"]["accuracy"]:.2f}',
                   f'{r["test"]["loss"]:.4f}',
                   f'{r["memory"]["user"]["ratio"]:.4f}',
                   f'{r["memory"]["item"]["ratio"]:.4f}',
                   f'{r["wall_seconds"]:.1f}', status])
    else:
      rows.append([c.task, c.method, str(c.seed)] + [''] * 5 + [status])
  return table(['task', 'method', 'seed', 'test accuracy %', 'test loss',
                 'user ratio', 'item ratio', 'wall s', 'status'], rows)


def header_lines(cells, meta) -> List[str]:
  """Dataset, seeds, machine, wall time and cells done (meta: 'dataset',
  'num_seeds', 'tasks', 'machine', 'cpu_count', 'wall_seconds',
  'started_utc')."""
  done = [c for c in cells if c.finished]
  source = ''
  if done:
    r = done[0].results
    source = (f' ({r.get("data_source", "?")}, '
              f'{r.get("num_ratings", 0):,} ratings)')
  n = meta['num_seeds']
  count = {s: sum(c.status == s for c in cells)
           for s in ('ok', 'reused', 'failed')}
  return [
      f'Dataset: {meta["dataset"]}{source}; seeds: {n} '
      f'({"0" if n == 1 else f"0-{n - 1}"}); tasks: '
      f'{", ".join(meta["tasks"])}.',
      f'Machine: {meta["machine"]}, {meta["cpu_count"]} CPUs; wall time '
      f'{format_duration(meta["wall_seconds"])} (this invocation, started '
      f'{meta["started_utc"]}).',
      f'Cells: {len(done) + count["failed"]} of {len(cells)} done '
      f'({count["ok"]} run, {count["reused"]} reused from earlier runs, '
      f'{count["failed"]} failed).',
  ]


def markdown(cells, meta: Dict[str, Any]) -> str:
  """The whole `comparison.md`."""
  tasks, methods = meta['tasks'], meta['methods']
  lines = ['# Method comparison', ''] + header_lines(cells, meta) + [
      '', 'Test accuracy (%) and loss, mean ± sample std over seeds:', '']
  lines += main_table(cells, tasks, methods)
  notes = footnote_lines(cells)
  if notes:
    lines += ['', 'Failures:', ''] + [f'- {n}' for n in notes]
  versus = versus_table(cells, tasks, methods)
  if versus:
    lines += ['', '## ESAPN against each method', '',
              'Seed k of every method saw the same split and stream order, '
              'so differences are paired by seed. "better"/"worse": the '
              'intervals mean ± sample std over seeds of ESAPN and the '
              'method do not overlap; otherwise "within spread".', '']
    lines += versus
  lines += ['', '## Memory', '',
            'Ratio = total dims / FIXED dims (every id at the largest '
            'candidate size); mean ± sample std over seeds.']
  lines += memory_tables(cells, tasks, methods)
  lines += ['', '## Every run', ''] + cell_table(cells)
  return '\n'.join(lines) + '\n'


def to_json(cells, meta: Dict[str, Any]) -> Dict[str, Any]:
  """The content of `comparison.json`: every cell and the aggregates."""
  return {
      'meta': meta,
      'cells': [{'task': c.task, 'method': c.method, 'seed': c.seed,
                 'status': c.status, 'error': c.error, 'workdir': c.workdir,
                 'seconds': c.seconds, 'results': c.results} for c in cells],
      'aggregate': aggregate(cells, meta['tasks'], meta['methods']),
  }


def write_report(workdir: str, cells, meta: Dict[str, Any]) -> None:
  """Writes `comparison.md` and `comparison.json` atomically."""
  files.atomic_write_text(os.path.join(workdir, 'comparison.md'),
                            markdown(cells, meta))
  files.atomic_write_json(os.path.join(workdir, 'comparison.json'),
                            to_json(cells, meta))


def summary_text(cells, meta: Dict[str, Any], workdir: str) -> str:
  """The one-screen summary printed at the end: the accuracy/loss table."""
  lines = header_lines(cells, meta) + [''] + main_table(
      cells, meta['tasks'], meta['methods'])
  notes = footnote_lines(cells)
  if notes:
    lines += [''] + notes
  lines += ['', f'Report: {os.path.join(workdir, "comparison.md")} (memory '
            f'tables, every run), comparison.json, plots/; tensorboard '
            f'--logdir={workdir}']
  return '\n'.join(lines)
