"""What a run writes: archives of earlier runs, progress lines, tables.

Nothing here is written half-way: every file goes to a temporary name in the
same folder and is renamed into place (`files.atomic_write_text`). A workdir that
holds an earlier run's outputs has them moved to `previous/<UTC time>/` before
the new run writes anything, so a failed run never overwrites or corrupts a
previous run's results.
"""

import csv
import io
import os
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

RUN_OUTPUTS = ('config.json', 'results.json', 'per_frequency.csv',
               'policy_heatmap.png', 'checkpoints', 'events')


def archive_previous_run(workdir: str) -> str:
  """Moves an earlier run's outputs to `workdir/previous/<UTC time>/`.

  Returns:
    The archive folder, or '' when the workdir held no earlier run.
  """
  present = [n for n in RUN_OUTPUTS if os.path.exists(os.path.join(workdir, n))]
  if not present:
    return ''
  stamp = time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())
  archive = os.path.join(workdir, 'previous', stamp)
  suffix = 0
  while os.path.exists(archive):
    suffix += 1
    archive = os.path.join(workdir, 'previous', f'{stamp}-{suffix}')
  os.makedirs(archive)
  for name in present:
    os.replace(os.path.join(workdir, name), os.path.join(archive, name))
  return archive


class FrequencyBuckets:
  """Accumulates test loss and accuracy by log2 frequency bucket, per side.

  Bucket b holds running frequencies `2^b .. 2^(b+1) - 1` (b = 0: first
  sight).
  """

  def __init__(self, num_buckets: int = 32):
    self.num_buckets = num_buckets
    self.sums = {side: np.zeros((3, num_buckets)) for side in ('user', 'item')}

  def add(self, side: str, frequency: np.ndarray, loss: np.ndarray,
          correct: np.ndarray) -> None:
    """Adds a batch: int `[b]` frequencies, float `[b]` losses and hits."""
    bucket = np.minimum(np.floor(np.log2(np.maximum(frequency, 1))),
                        self.num_buckets - 1).astype(np.int64)
    for row, values in enumerate((np.ones_like(loss), loss, correct)):
      self.sums[side][row] += np.bincount(bucket, weights=values,
                                          minlength=self.num_buckets)

  def rows(self) -> List[Dict[str, Any]]:
    out = []
    for side in ('user', 'item'):
      count, loss, correct = self.sums[side]
      for b in range(self.num_buckets):
        if count[b] > 0:
          out.append({'side': side, 'bucket': b, 'frequency_min': 2**b,
                      'frequency_max': 2**(b + 1) - 1,
                      'examples': int(count[b]),
                      'accuracy': correct[b] / count[b],
                      'loss': loss[b] / count[b]})
    return out

  def to_csv(self) -> str:
    buf = io.StringIO()
    fields = ['side', 'bucket', 'frequency_min', 'frequency_max', 'examples',
              'accuracy', 'loss']
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator='\n')
    writer.writeheader()
    for row in self.rows():
      writer.writerow({k: (f'{v:.6f}' if isinstance(v, float) else v)
                       for k, v in row.items()})
    return buf.getvalue()


class Progress:
  """Prints `[phase] done/total examples (%), ex/s, ETA, metrics` lines.

  The rate is the phase's steady state: examples per second over the steps
  of the current phase (train or test) after its first step, which traces
  the graphs (and compiles them, with XLA) and is reported on its own line.
  It is not the whole run's average: that one (`results.json`'s
  `train_examples_per_second`) includes the compilation. The ETA is the
  rest of the whole stream at that rate ('done' once every example is
  seen); before the phase has a steady rate, the rate and ETA show '?'.

  Attributes:
    done: examples seen so far (the trainer sets it when it resumes).
    total: examples of the whole stream.
  """

  def __init__(self, total_examples: int, every_seconds: float = 10.0,
               stream=None, enabled: bool = True,
               clock: Callable[[], float] = time.perf_counter):
    """A progress printer.

    Args:
      total_examples: examples of the whole stream (train and test parts).
      every_seconds: seconds between two lines (forced lines excepted).
      stream: where lines go; sys.stdout when None.
      enabled: False prints nothing (rates are still measured).
      clock: seconds, monotonic; `time.perf_counter` (tests pass a fake).
    """
    self.enabled = enabled
    self.total = int(total_examples)
    self.every = float(every_seconds)
    self.stream = stream or sys.stdout
    self._clock = clock
    self.start = clock()
    self.last = self.start  # When the last line was printed.
    self.done = 0
    self._phase = None
    self._step_end = self.start  # When the previous step ended.
    # Phase -> [examples, seconds] of its steps after its first one.
    self._steady: Dict[str, List[float]] = {}
    # Phase -> [(examples, seconds)] of each of those steps, for the rate
    # per quarter (a run that slows down as it goes).
    self._steps: Dict[str, List[Tuple[int, float]]] = {}

  def steady_rate(self, phase: str) -> Optional[float]:
    """Examples per second of `phase` after its first step.

    Args:
      phase: 'train' or 'test'.

    Returns:
      The rate, or None when the phase has run at most one step.
    """
    examples, seconds = self._steady.get(phase, (0, 0.0))
    return examples / seconds if examples and seconds > 0 else None

  def rate_by_quarter(self, phase: str) -> Optional[List[float]]:
    """Examples per second in each quarter of `phase`'s steady steps.

    The steps after the first are split into four runs of about equal
    examples; each quarter's rate is its examples over its seconds.

    Args:
      phase: 'train' or 'test'.

    Returns:
      Four rates, or None with fewer than four steady steps.
    """
    steps = self._steps.get(phase, [])
    if len(steps) < 4:
      return None
    examples = np.array([e for e, _ in steps], np.float64)
    seconds = np.array([t for _, t in steps], np.float64)
    cut = np.searchsorted(np.cumsum(examples),
                          np.sum(examples) * np.array([0.25, 0.5, 0.75]),
                          side='right')
    bounds = [0]
    for k, c in enumerate(cut.tolist()):  # at least one step per quarter
      bounds.append(min(max(c, bounds[-1] + 1), len(steps) - 3 + k))
    bounds.append(len(steps))
    return [float(examples[a:b].sum() / max(seconds[a:b].sum(), 1e-12))
            for a, b in zip(bounds[:-1], bounds[1:])]

  def update(self, examples: int, phase: str, metrics: Dict[str, float],
             force: bool = False) -> None:
    """Counts a step of `examples`; prints a line when one is due.

    Args:
      examples: examples of the step just done; 0 with `force` at the end of
        a part (the line then shows the part's final figures).
      phase: 'train' or 'test'.
      metrics: running means to show, e.g. {'accuracy': 0.61}.
      force: print now, whatever the time since the last line.
    """
    now = self._clock()
    seconds, self._step_end = now - self._step_end, now
    self.done += int(examples)
    first = phase != self._phase and examples > 0
    if first:  # The phase's first step: tracing and compilation.
      self._phase = phase
      self._steady.setdefault(phase, [0, 0.0])
    elif examples > 0:
      steady = self._steady[phase]
      steady[0] += int(examples)
      steady[1] += seconds
      self._steps.setdefault(phase, []).append((int(examples), seconds))
    if not self.enabled:
      return
    if first:
      print(f'[{phase}] first step took {seconds:.1f} s (tracing '
            'and compilation)', file=self.stream, flush=True)
      self.last = now
      return
    if not force and now - self.last < self.every:
      return
    self.last = now
    rate = self.steady_rate(phase)
    remaining = self.total - self.done
    if remaining <= 0:
      eta = 'done'
    else:
      eta = _format_seconds(remaining / rate if rate else float('inf'))
    shown = ' '.join(f'{k}={v:.4f}' for k, v in metrics.items())
    print(f'[{phase}] {self.done:,}/{self.total:,} examples '
          f'({100.0 * self.done / max(self.total, 1):.1f}%) '
          f'{"?" if rate is None else f"{rate:,.0f}"} ex/s ETA {eta} '
          f'{shown}'.rstrip(), file=self.stream, flush=True)


def _format_seconds(seconds: float) -> str:
  if not np.isfinite(seconds):
    return '?'
  seconds = int(round(seconds))
  h, rest = divmod(seconds, 3600)
  m, s = divmod(rest, 60)
  return f'{h}h{m:02d}m{s:02d}s' if h else f'{m}m{s:02d}s'


def results_table(results: Dict[str, Any],
                  steady_rate: Optional[float] = None) -> str:
  """A small human-readable summary of `results.json`.

  Args:
    results: the content of `results.json`.
    steady_rate: the train part's steady-state examples per second
      (`Progress.steady_rate('train')`), shown beside the whole-part rate,
      which includes tracing and compilation; None leaves it out.

  Returns:
    Lines of text, without a final newline.
  """
  lines = [
      f"ESAPN-TF run: method={results['method']} task={results['task']} "
      f"dataset={results['dataset']} order={results['order']}",
      f"{'part':<6} {'examples':>10} {'accuracy':>9} {'loss':>8}",
  ]
  for part in ('train', 'test'):
    r = results[part]
    lines.append(f"{part:<6} {r['examples']:>10,} {r['accuracy']:>9.4f} "
                 f"{r['loss']:>8.4f}")
  lines.append('memory (dims per id, counts by size):')
  for side in ('user', 'item'):
    m = results['memory'][side]
    counts = ' '.join(f'{d}:{c}' for d, c in m['counts'].items())
    lines.append(f"  {side:<5} ratio {m['ratio']:.4f} "
                 f"({m['total_dims']:,} / {m['fixed_dims']:,} dims)  {counts}")
  steady = ('' if steady_rate is None else
            f', {steady_rate:,.0f} ex/s steady')
  lines.append(f"wall {results['wall_seconds']:.1f} s, train "
               f"{results['train_examples_per_second']:,.0f} ex/s incl. "
               f"compilation{steady}")
  return '\n'.join(lines)

