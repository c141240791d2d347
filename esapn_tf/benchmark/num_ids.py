"""ESAPN's step time against the id space (issue 12: "step_ms_by_num_ids").

The same ESAPN step (`Trainer.learn`, default settings, with the storage a
large id space needs: pooled rows under `--memory_budget=0.2`), the same
batch size and seed, on synthetic streams whose ids per side differ: if the
step's cost follows the batch, the times match. Each stream draws its ids
from a power law over the id space, as MovieLens' popularity is: the id of
popularity rank `r` (1 = most frequent) has probability proportional to
`r ** -exponent`, and the ranks are scattered over the table's rows by a
seeded permutation, so that the rows a batch touches lie all over the table
as in a real id map. Every id has a row, seen or not (the table is sized by
the id space).

Pooled storage runs as a graph, not XLA (`jit.resolve_jit_compile`):
XLA copied the arena at every step. `storage='dense'` times the dense
layout with XLA instead.

The trainers of all sizes are built first, then timed in interleaved
windows (the order rotating), so that a change of machine load hits every
size alike. With dense tables, a side costs `num_ids * 128 * 4 * 3` bytes
(table and two Adam moments): 1.5 GB at 1,000,000 ids, 15 GB at
10,000,000, which does not fit this machine's memory next to the other.
Pooled under a budget B, a side's arena and moments take about
`B x num_ids x 128 x 4 x 3` bytes (3.1 GB at 10M ids and B = 0.2).
"""

import time
from typing import Dict, List, Sequence

import numpy as np
import tensorflow as tf

from esapn_tf import config as config_lib
from esapn_tf.data import id_index
from esapn_tf.data import stream as stream_lib
from esapn_tf.training import trainer as trainer_lib


def power_law_ids(num_ids: int, size: int, exponent: float,
                  rng: np.random.Generator) -> np.ndarray:
  """int32 `[size]` ids in `[0, num_ids)` with power-law popularity.

  Ranks follow the continuous power law `p(r) ~ r ** -exponent` on
  `[1, num_ids + 1)` (inverse-CDF sampling), floored to integers, then
  mapped to rows by a random permutation of the id space.

  Args:
    num_ids: ids of the side (rows of its table).
    size: ids to draw.
    exponent: the power law's exponent, > 0 and != 1 (about 1 for
      MovieLens' items).
    rng: the generator (draws the ranks, then the permutation).

  Returns:
    int32 `[size]`.
  """
  u = rng.random(size)
  a = 1.0 - exponent
  top = float(num_ids + 1) ** a
  rank = np.floor((1.0 + u * (top - 1.0)) ** (1.0 / a)).astype(np.int64)
  rank = np.clip(rank, 1, num_ids)
  return rng.permutation(num_ids).astype(np.int32)[rank - 1]


def power_law_stream(num_ids: int, num_examples: int, exponent: float = 1.05,
                     seed: int = 0) -> stream_lib.Stream:
  """A binary-task stream with `num_ids` users and `num_ids` items.

  Every id of `0..num_ids-1` has a row (vocabularies `arange(num_ids)`),
  whether or not the stream draws it. Labels are fair coin flips (the
  benchmark times steps; it does not measure accuracy).

  Args:
    num_ids: ids per side.
    num_examples: examples of the stream (all in the train part).
    exponent: the power law's exponent (`power_law_ids`).
    seed: seeds the ids and labels.

  Returns:
    The `Stream`.
  """
  rng = np.random.default_rng(seed)
  user = power_law_ids(num_ids, num_examples, exponent, rng)
  item = power_law_ids(num_ids, num_examples, exponent, rng)
  label = rng.integers(0, 2, num_examples).astype(np.float32)
  vocab = np.arange(num_ids, dtype=np.int64)
  return stream_lib.Stream(
      user=user, item=item, label=label, rating=label * 4.0 + 1.0,
      timestamp=np.arange(num_examples, dtype=np.int64),
      user_frequency=id_index.running_frequency(user),
      item_frequency=id_index.running_frequency(item),
      user_vocab=vocab, item_vocab=vocab.copy(), num_train=num_examples,
      task='binary', order='random', name=f'power-law-{num_ids}')


def _sync(out) -> None:
  for x in tf.nest.flatten(out):
    if hasattr(x, 'numpy'):
      x.numpy()


def step_ms_by_num_ids(num_ids: Sequence[int], batch_size: int = 500,
                       steps_per_window: int = 20, windows: int = 7,
                       warmup: int = 5, num_batches: int = 40,
                       exponent: float = 1.05, seed: int = 0,
                       storage: str = 'pooled',
                       memory_budget: float = 0.2) -> Dict[str, float]:
  """Median ESAPN step time (ms) at each id count per side.

  For each id count: a `power_law_stream` of `num_batches * batch_size`
  examples and an ESAPN `Trainer` (default settings and `storage`, the same
  seed). After one compiling step and `warmup` untimed steps each, the
  trainers are timed in `windows` interleaved windows of
  `steps_per_window` steps (batches reused cyclically); a size's figure is
  the median over its windows of the mean time per step.

  Args:
    num_ids: the id counts per side to measure, e.g. (10_000, 1_000_000).
    batch_size: examples per step (the same for every size).
    steps_per_window: steps per timed window.
    windows: timed windows per size.
    warmup: untimed steps per size after the compiling one.
    num_batches: distinct batches per stream.
    exponent: the ids' power-law exponent.
    seed: seeds the streams and the trainers.
    storage: 'pooled' (graph; with `memory_budget`) or 'dense' (XLA).
    memory_budget: ESAPN's budget with pooled storage.

  Returns:
    `{str(num_ids): milliseconds per step}`, e.g.
    `{'10000': 14.2, '1000000': 14.9}`.

  Raises:
    ValueError: for an empty or repeated list, an id count below 1, or a
      non-positive count of steps, windows or batches.
  """
  sizes: List[int] = [int(n) for n in num_ids]
  if not sizes or min(sizes) < 1 or len(set(sizes)) != len(sizes):
    raise ValueError(f'num_ids must be distinct counts >= 1, got {num_ids}.')
  if min(batch_size, steps_per_window, windows, num_batches) < 1 or (
      warmup < 0):
    raise ValueError('batch_size, steps_per_window, windows and num_batches '
                     'must be >= 1 and warmup >= 0.')
  steps, batches = {}, {}
  for n in sizes:
    s = power_law_stream(n, num_batches * batch_size, exponent, seed)
    tf.keras.utils.set_random_seed(seed)
    pooled = storage == 'pooled'
    cfg = config_lib.ExperimentConfig(
        model=config_lib.ModelConfig(embedding_storage=storage),
        search=config_lib.SearchConfig(
            memory_budget=memory_budget if pooled else 0.0),
        train=config_lib.TrainConfig(batch_size=batch_size, seed=seed,
                                     jit_compile=not pooled))
    t = trainer_lib.Trainer(cfg, s)
    steps[n] = t.learn
    batches[n] = list(stream_lib.make_dataset(s, 0, s.num_examples,
                                              batch_size))
  count = {n: 0 for n in sizes}

  def run(n: int, k: int) -> None:
    out = None
    for _ in range(k):
      out = steps[n](batches[n][count[n] % num_batches])
      count[n] += 1
    _sync(out)

  for n in sizes:
    run(n, 1 + warmup)
  seconds = {n: [] for n in sizes}
  for w in range(windows):
    for n in sizes[w % len(sizes):] + sizes[:w % len(sizes)]:
      start = time.perf_counter()
      run(n, steps_per_window)
      seconds[n].append((time.perf_counter() - start) / steps_per_window)
  return {str(n): 1000.0 * float(np.median(seconds[n])) for n in sizes}
