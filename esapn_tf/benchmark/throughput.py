"""Step throughput of FIXED and ESAPN, ESAPN's phases, and ml-20m scale.

The steps timed are the production ones (`Trainer.learn`), compiled with XLA
as at ml-20m scale; windows of FIXED and ESAPN are interleaved so that a
change of machine load hits both alike (BUILD_NOTES.md, "Benchmark").
"""

import json
import os
import subprocess
import sys
import time
from typing import Any, Callable, Dict, List, Sequence

import numpy as np
import tensorflow as tf

from esapn_tf import config as config_lib
from esapn_tf.data import grouplens_format
from esapn_tf.data import movielens
from esapn_tf.data import stream as stream_lib
from esapn_tf.data import synthetic
from esapn_tf.search import environment
from esapn_tf.training import trainer as trainer_lib

ML20M_RATINGS = 20_000_263
ML20M_USERS = 138_493
ML20M_ITEMS = 26_744
_REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


def sync(out) -> None:
  """Waits for every tensor of `out` (a nest) to be computed."""
  for x in tf.nest.flatten(out):
    if hasattr(x, 'numpy'):
      x.numpy()


def median_step_seconds(fn: Callable, batches: Sequence, steps_per_window: int,
                        windows: int, warmup: int) -> float:
  """Median over windows of the mean seconds per call (after a warm-up).

  Args:
    fn: the step, called on one batch.
    batches: the batches, reused cyclically.
    steps_per_window: calls per timed window.
    windows: timed windows.
    warmup: untimed calls after the first (compiling) one.

  Returns:
    Seconds per call (the median of the windows' means).
  """
  return float(np.median(paired_step_seconds(
      {'fn': fn}, batches, steps_per_window, windows, warmup)['fn']))


def paired_step_seconds(fns: Dict[str, Callable], batches: Sequence,
                        steps_per_window: int, windows: int,
                        warmup: int) -> Dict[str, List[float]]:
  """Times several steps on the same batches, their windows interleaved.

  Window `w` times every function in turn (the order rotates from window to
  window), so a change of machine load between windows hits all of them
  alike and the ratio of two functions' times within a window is meaningful.

  Args:
    fns: `{name: step function}`.
    batches: the batches, reused cyclically.
    steps_per_window: calls per timed window.
    windows: timed windows per function.
    warmup: untimed calls per function after its first (compiling) one.

  Returns:
    `{name: [mean seconds per call in window w, ...]}`.
  """
  needed = warmup + 1 + steps_per_window * windows
  batches = [batches[i % len(batches)] for i in range(needed)]
  for fn in fns.values():
    for b in batches[:warmup + 1]:
      sync(fn(b))
  names = list(fns)
  seconds = {name: [] for name in names}
  for w in range(windows):
    start = warmup + 1 + w * steps_per_window
    for name in names[w % len(names):] + names[:w % len(names)]:
      t0 = time.perf_counter()
      for b in batches[start:start + steps_per_window]:
        out = fns[name](b)
      sync(out)
      seconds[name].append((time.perf_counter() - t0) / steps_per_window)
  return seconds


def make_trainer(method: str, s: stream_lib.Stream,
                 batch_size: int) -> trainer_lib.Trainer:
  """A `Trainer` of `method` with default settings and XLA on."""
  cfg = config_lib.ExperimentConfig(
      search=config_lib.SearchConfig(method=method),
      train=config_lib.TrainConfig(batch_size=batch_size, jit_compile=True))
  return trainer_lib.Trainer(cfg, s)


def throughput(s: stream_lib.Stream, batch_size: int, window_steps: int,
               windows: int, warmup: int) -> Dict[str, Any]:
  """FIXED and ESAPN steps on the same batches; ESAPN's phases one by one.

  Args:
    s: the stream (its first 200 batches of the train part are used).
    batch_size: examples per step.
    window_steps: steps per timed window.
    windows: timed windows per method (median reported).
    warmup: untimed steps after compilation.

  Returns:
    `{'fixed': s/step, 'esapn': s/step, 'ratios': [FIXED/ESAPN per window],
    'phases': {phase: s/step}}`.
  """
  n = min(s.num_train, 200 * batch_size) // batch_size * batch_size
  batches = list(stream_lib.make_dataset(s, 0, n, batch_size))
  timing = lambda fn: median_step_seconds(fn, batches, window_steps, windows,
                                          warmup)
  # The ratio is the median of the windows' ratios (the machine's load
  # moves both alike within a window).
  per_window = paired_step_seconds(
      {method: make_trainer(method, s, batch_size).learn
       for method in ('fixed', 'esapn')},
      batches, window_steps, windows, warmup)
  result = {method: float(np.median(w)) for method, w in per_window.items()}
  result['ratios'] = _window_ratios(per_window)
  result['phases'] = _phases(make_trainer('esapn', s, batch_size), timing)
  return result


def _window_ratios(per_window: Dict[str, List[float]]) -> List[float]:
  """ESAPN's throughput over FIXED's in each window (FIXED's seconds per
  step over ESAPN's), from `paired_step_seconds`' 'fixed' and 'esapn'."""
  return [f / e for f, e in zip(per_window['fixed'], per_window['esapn'])]


def _phases(t: trainer_lib.Trainer, timing) -> Dict[str, float]:
  """ESAPN's phases, each compiled on its own and timed on the same batches."""
  core = t.core
  no = lambda b: tf.zeros_like(b['user'], tf.bool)

  @tf.function
  def environment_step(b):  # observe, decide (sample), one decision per id
    obs = core.observe(b)
    out = {}
    for side in environment.SIDES:
      _, deciding = core.occurrence_masks(side, b[side],
                                          b[f'{side}_frequency'])
      action = t.method._sample(side, obs[side])  # pylint: disable=protected-access
      out[side] = environment.any_per_id(
          b[side], tf.logical_and(deciding, action > 0),
          core.embeddings[side].num_ids)
      out[f'{side}_mean'] = core.history_mean(side, b[side])[0]
    return out

  enlarge = tf.function(lambda b: (
      core.model.user_embedding.enlarge(b['user'], no(b)),
      core.model.item_embedding.enlarge(b['item'], no(b))),
                        jit_compile=True)

  def policy_update(b):  # both actions present, as in training
    outs = []
    for side in environment.SIDES:
      obs = core.observe(b)[side]
      action = tf.where(obs['size_index'] < len(t.sizes) - 1,
                        tf.math.floormod(obs['frequency'], 2), 0)
      n = tf.shape(b[side])[0]
      outs.append(t.method._train_policy(  # pylint: disable=protected-access
          side, obs, action, tf.zeros([n]), tf.ones([n])))
    return outs

  recommender_step = lambda b: core.train_step(b, no(b), no(b))
  transfer = lambda b: {k: v.numpy() for k, v in b.items()}
  phases = {
      'environment_step': timing(environment_step),
      'enlargement': timing(enlarge),
      'recommender_step': timing(recommender_step),
      'policy_update': timing(tf.function(policy_update)),
      'host_device_transfers': timing(transfer),
  }
  phases['recommender_step'] -= phases['enlargement']
  return phases


def cached_20m_csv(cache_dir: str) -> str:
  """Folder of a GroupLens-format ratings.csv of ml-20m size (made once).

  Args:
    cache_dir: where to keep it (outside the repository).

  Returns:
    The folder holding `ratings.csv` (20,000,263 synthetic ratings).
  """
  folder = os.path.join(cache_dir, 'synthetic-ml-20m')
  path = os.path.join(folder, 'ratings.csv')
  if not os.path.exists(path):
    os.makedirs(folder, exist_ok=True)
    print(f'Writing {path} once (20M ratings)...', flush=True)
    r = synthetic.generate(ML20M_RATINGS, seed=0, num_users=ML20M_USERS,
                           num_items=ML20M_ITEMS)
    grouplens_format.write_grouplens_csv(r, path)
  return folder


_LOAD_CHILD = '''
import os, sys, time, json
sys.path.insert(0, {repo!r})
os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
t0 = time.perf_counter()
from esapn_tf.data import movielens, stream
t1 = time.perf_counter()
r = movielens.load_grouplens({folder!r})
s = stream.build_stream(r, 'binary', 'random', 0.8, 0)
t2 = time.perf_counter()
with open('/proc/self/status') as f:
  hwm = [l for l in f if l.startswith('VmHWM:')][0].split()[1]
print(json.dumps({{'seconds': t2 - t1, 'import_seconds': t1 - t0,
                   'ratings': int(s.num_examples), 'users': int(s.num_users),
                   'items': int(s.num_items),
                   'peak_rss_bytes': int(hwm) * 1024}}))
'''


def load_20m(folder: str) -> Dict[str, Any]:
  """Seconds and peak RSS (bytes) of loading the 20M csv into the stream.

  Runs in a child process, so that the peak memory is the loading's own.
  The peak is the child's `VmHWM` (Linux), not `ru_maxrss`: that one is
  kept across `execve`, so it would start at this process's own peak (over
  10 GiB after the ten-million-id step timings).
  """
  proc = subprocess.run(
      [sys.executable, '-c', _LOAD_CHILD.format(repo=_REPO, folder=folder)],
      capture_output=True, text=True, check=True)
  return json.loads(proc.stdout.strip().splitlines()[-1])


def ml20m_scale(folder: str, batch_size: int, window_steps: int,
                windows: int, warmup: int):
  """FIXED and ESAPN step throughput and state bytes at ml-20m size.

  The two methods' windows are interleaved on the same 200 batches, as in
  `throughput`, so their ratio is the issue's "ESAPN/FIXED throughput ratio
  at ml-20m size" (BUILD_NOTES.md, "Benchmark").

  Args:
    folder: a GroupLens-format folder of ml-20m size (`cached_20m_csv`).
    batch_size: examples per step.
    window_steps: steps per timed window.
    windows: timed windows per method (medians reported).
    warmup: untimed steps after compilation.

  Returns:
    (`{'fixed': ex/s, 'esapn': ex/s, 'esapn_over_fixed': median of the
    windows' ratios}`, bytes of ESAPN's embedding tables and optimizer
    slots, the stream).
  """
  s = stream_lib.build_stream(movielens.load_grouplens(folder), 'binary',
                              'random', 0.8, 0)
  trainers = {method: make_trainer(method, s, batch_size)
              for method in ('fixed', 'esapn')}
  batches = list(stream_lib.make_dataset(s, 0, 200 * batch_size, batch_size))
  per_window = paired_step_seconds(
      {method: t.learn for method, t in trainers.items()}, batches,
      window_steps, windows, warmup)
  rates = {method: batch_size / float(np.median(w))
           for method, w in per_window.items()}
  rates['esapn_over_fixed'] = float(np.median(_window_ratios(per_window)))
  trainer = trainers['esapn']
  tables = [trainer.core.embeddings[side].table_variable
            for side in ('user', 'item')]
  slots = [slot for t in tables for slot in trainer.optimizer.slots(t)]
  state = sum(int(np.prod(v.shape)) * v.dtype.size for v in tables + slots)
  return rates, state, s
