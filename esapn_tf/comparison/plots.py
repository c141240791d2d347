"""The comparison's figures: PNG files under `<workdir>/plots/` (Agg backend).

Per task, from the finished cells (mean over seeds, one line or bar group
per method):

* `<task>_by_user_frequency.png`, `<task>_by_item_frequency.png`: test
  accuracy and loss against the log2 frequency bucket of the example's user
  (item) at test time (bucket b: frequencies 2^b .. 2^(b+1) - 1), from each
  run's `per_frequency.csv`;
* `<task>_size_distribution.png`: per side, the final share of ids at each
  size (dims), from results.json's memory counts;
* `<task>_mean_size.png`: per side, the mean embedding size (dims) over the
  stream (x: examples = step x batch size), from the TensorBoard scalars
  `embedding/<side>_mean_size` in each run's `events/`.

A figure without data (e.g. every cell failed) is skipped with a note; no
error in a figure stops the report.
"""

import os
from typing import Dict, List, Sequence

import matplotlib
matplotlib.use('Agg')  # files only, no display
from matplotlib import pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorboard.backend.event_processing import event_accumulator  # noqa: E402

SIDES = ('user', 'item')
LOSS_LABELS = {'binary': 'test MSE', 'multiclass': 'test cross-entropy'}


class NoData(Exception):
  """A figure has nothing to show."""


def write_plots(workdir: str, cells, tasks: Sequence[str],
                methods: Sequence[str], batch_size: int) -> List[str]:
  """Writes every figure for `tasks`; returns one note per figure.

  Args:
    workdir: the comparison's folder; figures go to `workdir/plots/`.
    cells: `cells.Cell`s (`task`, `method`, `workdir`, `results`,
      `finished` are read).
    tasks: the tasks to plot.
    methods: the methods, in legend order.
    batch_size: examples per step (TensorBoard steps -> examples).

  Returns:
    'plot: <path>' for a figure written, 'plot skipped: <name> (<why>)'
    otherwise.
  """
  folder = os.path.join(workdir, 'plots')
  os.makedirs(folder, exist_ok=True)
  notes = []
  for task in tasks:
    done = [c for c in cells if c.task == task and c.finished]
    figures = [(f'{task}_by_{side}_frequency.png',
                lambda s=side: frequency_figure(task, s, done, methods))
               for side in SIDES]
    figures += [
        (f'{task}_size_distribution.png',
         lambda: size_distribution_figure(task, done, methods)),
        (f'{task}_mean_size.png',
         lambda: mean_size_figure(task, done, methods, batch_size))]
    for name, make in figures:
      path = os.path.join(folder, name)
      try:
        save_figure(make(), path)
        notes.append(f'plot: {path}')
      except NoData as e:
        notes.append(f'plot skipped: {name} ({e})')
      except Exception as e:  # pylint: disable=broad-except
        # A figure is a by-product: never lose the report over one.
        notes.append(f'plot skipped: {name} ({type(e).__name__}: {e})')
  return notes


def save_figure(fig, path: str) -> None:
  """Saves `fig` as PNG atomically (temporary name, then rename)."""
  tmp = f'{path}.tmp-{os.getpid()}'
  try:
    fig.savefig(tmp, format='png', dpi=100, bbox_inches='tight')
  finally:
    plt.close(fig)
  os.replace(tmp, path)


def _by_method(cells, methods):
  """(method, its cells) for each method with finished cells."""
  return [(m, [c for c in cells if c.method == m]) for m in methods
          if any(c.method == m for c in cells)]


def frequency_table(cells, side: str) -> pd.DataFrame:
  """Per-bucket test accuracy and loss of `side`, mean over `cells`' runs.

  Returns:
    Indexed by bucket (int, ascending): frequency_min, frequency_max
    (interactions seen), accuracy (fraction), loss (mean per example).

  Raises:
    NoData: no run has rows for `side`.
  """
  frames = []
  for c in cells:
    path = os.path.join(c.workdir, 'per_frequency.csv')
    if os.path.exists(path):
      df = pd.read_csv(path)
      frames.append(df[df['side'] == side])
  if not frames or all(f.empty for f in frames):
    raise NoData(f'no per_frequency.csv rows for side {side}')
  return (pd.concat(frames).groupby('bucket')
          [['frequency_min', 'frequency_max', 'accuracy', 'loss']]
          .mean().sort_index())


def frequency_figure(task, side, cells, methods):
  """Test accuracy and loss by frequency bucket, one line per method."""
  tables = []
  for method, group in _by_method(cells, methods):
    try:
      tables.append((method, frequency_table(group, side)))
    except NoData:
      continue
  if not tables:
    raise NoData('no finished run with per_frequency.csv')
  fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
  labels = {}
  for method, t in tables:
    for b, lo, hi in zip(t.index, t['frequency_min'], t['frequency_max']):
      labels[int(b)] = str(int(lo)) if lo == hi else f'{int(lo)}-{int(hi)}'
    axes[0].plot(t.index, 100.0 * t['accuracy'], marker='o', label=method)
    axes[1].plot(t.index, t['loss'], marker='o', label=method)
  ticks = sorted(labels)
  for ax, ylabel in zip(axes, ('test accuracy %', LOSS_LABELS.get(task,
                                                                 'loss'))):
    ax.set_xticks(ticks)
    ax.set_xticklabels([labels[b] for b in ticks], rotation=45, ha='right')
    ax.set_xlabel(f'{side} frequency (interactions seen, log2 buckets)')
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
  axes[0].legend()
  fig.suptitle(f'{task}: test metrics by {side} frequency (mean over seeds)')
  return fig


def size_distribution_figure(task, cells, methods):
  """Per side, the share of ids at each final size, bars per method."""
  fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
  groups = _by_method(cells, methods)
  if not groups:
    plt.close(fig)
    raise NoData('no finished run')
  for ax, side in zip(axes, SIDES):
    sizes = sorted({k for _, g in groups for c in g
                    for k in c.results['memory'][side]['counts']}, key=float)
    width = 0.8 / len(groups)
    for i, (method, group) in enumerate(groups):
      counts = np.array([np.mean([c.results['memory'][side]['counts'].get(k, 0)
                                  for c in group]) for k in sizes])
      share = counts / max(counts.sum(), 1e-12)
      ax.bar(np.arange(len(sizes)) + (i - (len(groups) - 1) / 2) * width,
             share, width, label=method)
    ax.set_xticks(np.arange(len(sizes)))
    ax.set_xticklabels(sizes)
    ax.set_xlabel('final embedding size (dims)')
    ax.set_ylabel(f'fraction of {side}s')
    ax.set_title(side)
    ax.grid(alpha=0.3, axis='y')
  axes[0].legend()
  fig.suptitle(f'{task}: final size distribution (mean over seeds)')
  return fig


def read_scalar(events_dir: str, tag: str) -> pd.Series:
  """A TF2 scalar summary as a Series indexed by step (int, ascending).

  TF2's `tf.summary.scalar` stores tensors, hence the `tensors` guidance. A
  resumed run writes some steps twice (in a later event file): the value
  written last (largest wall time) is kept; not the file order, since event
  file names from one process in one second sort 0, 1, 10, 11, 2, ...

  Raises:
    NoData: no event file or no such tag.
  """
  if not os.path.isdir(events_dir):
    raise NoData(f'no {events_dir}')
  acc = event_accumulator.EventAccumulator(
      events_dir, size_guidance={event_accumulator.TENSORS: 0})
  acc.Reload()
  if tag not in acc.Tags().get(event_accumulator.TENSORS, []):
    raise NoData(f'no {tag} in {events_dir}')
  latest = {}  # step -> (wall time, value)
  for event in acc.Tensors(tag):
    step = int(event.step)
    if step not in latest or event.wall_time >= latest[step][0]:
      latest[step] = (event.wall_time,
                      float(tf.make_ndarray(event.tensor_proto)))
  return pd.Series({k: v for k, (_, v) in latest.items()},
                   dtype=np.float64).sort_index()


def mean_size_curves(cells, side: str, batch_size: int) -> pd.Series:
  """Mean `side` embedding size (dims) by examples seen, mean over cells.

  Raises:
    NoData: no cell has the scalar.
  """
  curves = []
  for c in cells:
    try:
      curves.append(read_scalar(os.path.join(c.workdir, 'events'),
                                f'embedding/{side}_mean_size'))
    except NoData:
      continue
  if not curves:
    raise NoData(f'no embedding/{side}_mean_size scalars')
  mean = pd.concat(curves, axis=1).mean(axis=1).sort_index()
  mean.index = mean.index * batch_size
  return mean


def mean_size_figure(task, cells, methods, batch_size):
  """Per side, mean embedding size over the stream, one line per method."""
  curves: Dict[str, Dict[str, pd.Series]] = {side: {} for side in SIDES}
  for method, group in _by_method(cells, methods):
    for side in SIDES:
      try:
        curves[side][method] = mean_size_curves(group, side, batch_size)
      except NoData:
        continue
  if not any(curves.values()):
    raise NoData('no run with embedding/<side>_mean_size scalars')
  fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
  for ax, side in zip(axes, SIDES):
    for method, series in curves[side].items():
      # Short runs have few summaries (every `summary_every` steps): mark
      # the points so that a single one still shows.
      ax.plot(series.index, series.values, label=method,
              marker='o' if len(series) <= 30 else None, markersize=3)
    ax.set_xlabel('examples seen (step x batch size)')
    ax.set_ylabel(f'mean {side} embedding size (dims)')
    ax.set_title(side)
    ax.grid(alpha=0.3)
    if curves[side]:
      ax.legend()
  fig.suptitle(f'{task}: mean embedding size over the stream '
               '(mean over seeds)')
  return fig
