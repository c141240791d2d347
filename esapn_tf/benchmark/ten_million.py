"""Training memory with large id spaces (issue 12): `benchmark.json`'s
`train_state_bytes` (ml-20m size) and `ten_million_ids` (ESAPN with ten
million users and ten million items on one machine).

`train_state_bytes`: the bytes of the embedding tables, their Adam moments,
the per-id index and the search's per-id state of FIXED-128 and of ESAPN
with pooled storage under a budget, as built for a stream. Under a budget
the pooled arena is sized once, up front, and never changes shape, so the
bytes at the start are the bytes of the whole run.

The stream (`coverage_ratings`): every user and every item appears at least
once, so every id really holds a row, plus power-law draws on both sides
(the popular ids of MovieLens). It is written once as a GroupLens
`ratings.csv` under the benchmark's cache folder and trained on by
`bin/train.py` in a child process, as a user would run it:

* ESAPN with pooled storage and a memory budget (`--embedding_storage=pooled
  --memory_budget=0.2`): each id is stored at its current size only, and the
  budget sizes the arena once, up front (`layers/pooled_embedding.py`).
* FIXED-128 on the same stream, in a child process whose address space is
  limited (`resource.RLIMIT_AS`), so that a model that does not fit fails in
  its own process and never takes the machine down. Its tables and Adam
  moments alone take `2 x num_ids x 128 x 4 x 3` bytes (30.7 GB at 10M ids).

Each child's peak resident memory comes from `os.wait4`'s resource usage,
taken by a small intermediate process (`_MEASURE`).
"""

import json
import os
import re
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional

import numpy as np

from esapn_tf.benchmark import num_ids as num_ids_lib
from esapn_tf.data import grouplens_format
from esapn_tf.data import ratings as ratings_lib

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
TEN_MILLION = 10_000_000
# Runs a command and writes its exit code and peak RSS to a file. Linux
# starts a child's `ru_maxrss` at its parent's RSS (the memory it held until
# `exec`), so a child of the benchmark (gigabytes) would report at least
# that; a child of this small process reports its own. argv[1]: RLIMIT_AS
# in bytes (0 = none); argv[2]: the JSON file; argv[3:]: the command.
_MEASURE = """
import json, os, resource, subprocess, sys
limit, out, command = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
def set_limit():
  if limit:
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
child = subprocess.Popen(command, preexec_fn=set_limit)
_, status, usage = os.wait4(child.pid, 0)
with open(out, 'w') as f:
  json.dump({'returncode': os.waitstatus_to_exitcode(status),
             'maxrss_kib': usage.ru_maxrss}, f)
"""


def state_bytes(trainer) -> int:
  """Bytes of a trainer's per-id training state, both sides.

  The embedding storage (`Trainer.train_state_bytes`: rows, Adam moments,
  per-id index) plus the search's per-id state (loss histories, counts,
  pending decisions: `search.state.PerIdState.per_id_variables`), when the
  method has one.
  """
  total = int(trainer.train_state_bytes()['total'])
  core = trainer.core
  if hasattr(core, 'per_id_variables'):
    for side in ('user', 'item'):
      for _, var in core.per_id_variables(side):
        total += int(np.prod(var.shape)) * var.dtype.size
  return total


def train_state_bytes(s, budget: float = 0.3,
                      batch_size: int = 500) -> Dict[str, Any]:
  """FIXED-128's and budgeted ESAPN's training state on stream `s`.

  Args:
    s: the stream (ml-20m size in the benchmark).
    budget: ESAPN's `memory_budget`, with pooled storage.
    batch_size: the batch (sizes the pooled arena's slack).

  Returns:
    `{'fixed': bytes, 'esapn': bytes, 'esapn_budget': budget,
    'esapn_over_fixed': ratio}` (`state_bytes`).
  """
  # pylint: disable=g-import-not-at-top
  from esapn_tf import config as config_lib
  from esapn_tf.training import trainer as trainer_lib
  # pylint: enable=g-import-not-at-top
  out = {}
  for name, model, search in (
      ('fixed', config_lib.ModelConfig(),
       config_lib.SearchConfig(method='fixed')),
      ('esapn', config_lib.ModelConfig(embedding_storage='pooled'),
       config_lib.SearchConfig(method='esapn', memory_budget=budget))):
    cfg = config_lib.ExperimentConfig(
        model=model, search=search,
        train=config_lib.TrainConfig(batch_size=batch_size, seed=0,
                                     jit_compile=False))
    out[name] = state_bytes(trainer_lib.Trainer(cfg, s))
  out['esapn_budget'] = budget
  out['esapn_over_fixed'] = out['esapn'] / out['fixed']
  return out


def coverage_ratings(num_ids: int, num_examples: int, exponent: float = 1.05,
                     seed: int = 0) -> ratings_lib.Ratings:
  """Ratings over `num_ids` users and `num_ids` items, every id at least once.

  The first `num_ids` rows pair a random permutation of the users with one
  of the items; the other `num_examples - num_ids` rows draw both ids from a
  power law (`num_ids.power_law_ids`). The rows are then shuffled, and the
  timestamps follow the shuffled order. Stars are drawn uniformly from 1 to 5
  (the benchmark measures memory and speed, not accuracy).

  Args:
    num_ids: users, and items (raw ids `1..num_ids`).
    num_examples: rows, at least `num_ids`.
    exponent: the power law's exponent.
    seed: seeds everything.

  Returns:
    `Ratings` with int64 ids, float32 stars and int64 timestamps.

  Raises:
    ValueError: `num_examples < num_ids` or `num_ids < 1`.
  """
  if num_ids < 1 or num_examples < num_ids:
    raise ValueError(f'need num_examples >= num_ids >= 1, got '
                     f'{num_examples} and {num_ids}.')
  rng = np.random.default_rng(seed)
  extra = num_examples - num_ids
  user = np.concatenate([
      rng.permutation(num_ids).astype(np.int32),
      num_ids_lib.power_law_ids(num_ids, extra, exponent, rng)])
  item = np.concatenate([
      rng.permutation(num_ids).astype(np.int32),
      num_ids_lib.power_law_ids(num_ids, extra, exponent, rng)])
  order = rng.permutation(num_examples)
  return ratings_lib.Ratings(
      user_id=user[order].astype(np.int64) + 1,
      item_id=item[order].astype(np.int64) + 1,
      rating=rng.integers(1, 6, num_examples).astype(np.float32),
      timestamp=np.arange(num_examples, dtype=np.int64) + 1_000_000_000,
      name=f'coverage-{num_ids}')


def cached_csv(cache_dir: str, num_ids: int, num_examples: int) -> str:
  """Folder of the `coverage_ratings` GroupLens ratings.csv (written once).

  Returns:
    The folder, named `coverage-<num_ids>-<num_examples>`.
  """
  folder = os.path.join(cache_dir, f'coverage-{num_ids}-{num_examples}')
  path = os.path.join(folder, 'ratings.csv')
  if not os.path.exists(path):
    os.makedirs(folder, exist_ok=True)
    print(f'Writing {path} once ({num_examples:,} ratings)...', flush=True)
    grouplens_format.write_grouplens_csv(coverage_ratings(num_ids, num_examples),
                                  path)
  return folder


def run_child(argv: List[str], log_path: str,
              address_space_bytes: Optional[int] = None) -> Dict[str, Any]:
  """Runs `argv` with its output in `log_path`; its status and peak RSS.

  Args:
    argv: the command.
    log_path: stdout and stderr go there.
    address_space_bytes: `RLIMIT_AS` of the child, None for none.

  Returns:
    `{'returncode', 'peak_rss_bytes', 'seconds', 'last_line'}`; the last
    line is the log's last line that names an error (`Fatal Python error:
    ...`, `error: ...`, `MemoryError: ...`), else its last non-empty line.
  """
  measured = log_path + '.rusage.json'
  env = dict(os.environ, TF_USE_LEGACY_KERAS='1', TF_CPP_MIN_LOG_LEVEL='2')
  start = time.perf_counter()
  with open(log_path, 'w') as log:
    subprocess.run([sys.executable, '-c', _MEASURE,
                    str(int(address_space_bytes or 0)), measured] +
                   list(argv), cwd=_REPO, env=env, stdout=log,
                   stderr=subprocess.STDOUT, check=True)
  with open(measured) as f:
    usage = json.load(f)
  with open(log_path, errors='replace') as f:
    lines = [line.strip() for line in f if line.strip()]
  # The line that says what failed: Python's fatal-error line (a crash
  # dumps the loaded modules after it), the error line, else the last one.
  said = [line for line in lines
          if line.startswith(('Fatal Python error', 'error:')) or
          re.match(r'^\w+(\.\w+)*(Error|Exception)\b', line)]
  return {'returncode': usage['returncode'],
          'peak_rss_bytes': int(usage['maxrss_kib']) * 1024,
          'seconds': time.perf_counter() - start,
          'last_line': (said or lines or [''])[-1]}


def _train_argv(folder: str, workdir: str, extra: List[str]) -> List[str]:
  return [sys.executable, os.path.join(_REPO, 'bin', 'train.py'),
          '--flagfile=' + os.path.join(_REPO, 'configs',
                                       'ml-20m-binary.flags'),
          f'--data_dir={folder}', f'--workdir={workdir}', '--restart',
          '--checkpoint_every=0', '--nocompile_cache'] + extra


def ten_million_ids(cache_dir: str, work_dir: str,
                    num_ids: int = TEN_MILLION,
                    num_examples: int = 12_000_000, budget: float = 0.2,
                    fixed_address_space_bytes: int = 20 * 2**30
                    ) -> Dict[str, Any]:
  """ESAPN (pooled, budget) and FIXED-128 on `coverage_ratings`.

  Args:
    cache_dir: where the ratings.csv is kept.
    work_dir: the two runs' workdirs and logs.
    num_ids: users, and items.
    num_examples: ratings (80% train, the test part prequential as always).
    budget: ESAPN's `--memory_budget`.
    fixed_address_space_bytes: FIXED's `RLIMIT_AS`.

  Returns:
    `{'num_ids', 'num_examples', 'esapn_peak_rss_bytes',
    'esapn_examples_per_second' (training, steady, from results.json),
    'esapn_seconds', 'esapn_train_state_bytes', 'fixed_peak_rss_bytes'
    (None when it failed), 'fixed_error' (its last line, None when it
    ran)}`.

  Raises:
    RuntimeError: the ESAPN run failed (its last line says why).
  """
  folder = cached_csv(cache_dir, num_ids, num_examples)
  os.makedirs(work_dir, exist_ok=True)
  esapn_dir = os.path.join(work_dir, 'esapn')
  esapn = run_child(
      _train_argv(folder, esapn_dir, ['--embedding_storage=pooled',
                                      f'--memory_budget={budget}']),
      os.path.join(work_dir, 'esapn.log'))
  if esapn['returncode'] != 0:
    raise RuntimeError(f'the ESAPN run failed ({esapn["last_line"]}); see '
                       f'{os.path.join(work_dir, "esapn.log")}')
  with open(os.path.join(esapn_dir, 'results.json')) as f:
    results = json.load(f)
  fixed = run_child(
      _train_argv(folder, os.path.join(work_dir, 'fixed'),
                  ['--method=fixed']),
      os.path.join(work_dir, 'fixed.log'), fixed_address_space_bytes)
  ok = fixed['returncode'] == 0
  return {
      'num_ids': num_ids, 'num_examples': num_examples,
      'esapn_peak_rss_bytes': esapn['peak_rss_bytes'],
      'esapn_examples_per_second': results.get(
          'train_examples_per_second_steady',
          results.get('train_examples_per_second')),
      'esapn_seconds': esapn['seconds'],
      'esapn_train_state_bytes': results.get('train_state_bytes'),
      'esapn_memory': results.get('memory'),
      'fixed_peak_rss_bytes': fixed['peak_rss_bytes'] if ok else None,
      'fixed_error': None if ok else (
          f"{fixed['last_line']} (exit status {fixed['returncode']})"),
      'fixed_address_space_bytes': fixed_address_space_bytes,
  }
