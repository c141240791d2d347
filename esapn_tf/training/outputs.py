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
from typing import Any, Dict, List

import numpy as np

RUN_OUTPUTS = ('config.json', 'results.json', 'per_frequency.csv',
               'checkpoints', 'events')


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
  """Prints `phase done/total examples, examples/s, ETA, metrics` lines."""

  def __init__(self, total_examples: int, every_seconds: float = 10.0,
               stream=None, enabled: bool = True):
    self.enabled = enabled
    self.total = int(total_examples)
    self.every = float(every_seconds)
    self.stream = stream or sys.stdout
    self.start = time.perf_counter()
    self.last = self.start
    self.done = 0
    self.last_done = 0

  def update(self, examples: int, phase: str, metrics: Dict[str, float],
             force: bool = False) -> None:
    self.done += int(examples)
    if not self.enabled:
      return
    now = time.perf_counter()
    if self.last_done == 0:
      # The first step traces the graphs (and compiles them, with XLA):
      # report it on its own and start measuring the rate after it.
      print(f'[{phase}] first step took {now - self.start:.1f} s (tracing '
            'and compilation)', file=self.stream, flush=True)
      self.last, self.last_done = now, self.done
      return
    if not force and now - self.last < self.every:
      return
    # The rate since the last line: the first steps include XLA compilation
    # and would make a whole-run average (and its ETA) too pessimistic.
    window = max(now - self.last, 1e-9)
    rate = (self.done - self.last_done) / window
    self.last, self.last_done = now, self.done
    eta = (self.total - self.done) / rate if rate > 0 else float('inf')
    shown = ' '.join(f'{k}={v:.4f}' for k, v in metrics.items())
    print(f'[{phase}] {self.done:,}/{self.total:,} examples '
          f'({100.0 * self.done / max(self.total, 1):.1f}%) '
          f'{rate:,.0f} ex/s ETA {_format_seconds(eta)} {shown}',
          file=self.stream, flush=True)


def _format_seconds(seconds: float) -> str:
  if not np.isfinite(seconds):
    return '?'
  seconds = int(round(seconds))
  h, rest = divmod(seconds, 3600)
  m, s = divmod(rest, 60)
  return f'{h}h{m:02d}m{s:02d}s' if h else f'{m}m{s:02d}s'


def results_table(results: Dict[str, Any]) -> str:
  """A small human-readable summary of `results.json`."""
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
  lines.append(f"wall {results['wall_seconds']:.1f} s, train "
               f"{results['train_examples_per_second']:,.0f} ex/s")
  return '\n'.join(lines)

