"""`run_experiment(config, workdir)`: the alternating ESAPN loop (DESIGN.md §3, §5).

For each batch `t` of the train stream, with `SearchConfig.reward`:

* 'tentative' (DESIGN.md §3 as written):
  1. policy update on the previous batch `t-1`: each side's collect policy
     samples actions, the batch is scored under the tentative sizes without
     training the recommender, rewards `mean(last T losses) - L` are computed
     and each `ReinforceAgent` takes one REINFORCE step;
  2. on batch `t`: the greedy policies pick actions, the chosen ids are
     enlarged (function-preserving), the recommender takes one Adam step and
     the loss histories are updated.
* 'next_appearance' (default): on batch `t`, the collect policies sample one
  action per id (at its last copy in the batch), the chosen ids are enlarged,
  the recommender takes one Adam step; then the decisions that batch `t`'s
  first copies resolve get their reward `mean(last T losses) - L`, `L` being
  the loss at the id's next appearance before the recommender learned from
  it, and each agent takes one REINFORCE step. (Why: search/environment.py.)

Then the test stream is scored batch by batch before each batch is learned
from (prequential, "test-then-train"; both the recommender and the policies
keep learning), or only scored (`test_mode='frozen'`).
"""
import os
import resource
import signal
import threading
import time
from typing import Any, Dict, Optional

import tensorflow as tf

from esapn_tf import config as config_lib
from esapn_tf import errors
from esapn_tf import files
from esapn_tf.data import stream as stream_lib
from esapn_tf.distribute import strategy as strategy_lib
from esapn_tf.layers import memory
from esapn_tf.search import diagnostics as diagnostics_lib
from esapn_tf.training import compile_cache
from esapn_tf.training import jit
from esapn_tf.training import outputs
from esapn_tf.training import trainer as trainer_lib
from esapn_tf.training import workdir as workdir_lib

def run_experiment(cfg: config_lib.ExperimentConfig, workdir: str,
                   verbose: bool = True,
                   process_start: Optional[float] = None,
                   restart: bool = False) -> Dict[str, Any]:
  """Trains and evaluates one configuration; writes the run's outputs.

  Writes, in `workdir`: `config.json` (first), TensorBoard event files under
  `events/`, `per_frequency.csv`, checkpoints under `checkpoints/` (every
  `checkpoint_every` steps and at the end), `results.json` (DESIGN.md §5
  metrics and memory table) and then, for a policy, `policy_heatmap.png`.
  `cfg.train.jit_compile=None` (auto) is decided from the train part's length
  first (`jit.resolve_jit_compile`); config.json and results.json record
  the choice. After results.json, the XLA programs the run compiled are
  listed as trusted in the compilation cache (`compile_cache.record`).

  A workdir holding an interrupted run (a checkpoint, no results.json) is
  resumed from its latest checkpoint, exactly: the same results as an
  uninterrupted run. Otherwise an earlier run's outputs are first moved to
  `previous/<UTC time>/`. SIGINT and SIGTERM write a checkpoint and raise
  `RunInterrupted`. One live run per workdir (`workdir.WorkdirLock`).

  Args:
    cfg: the experiment.
    workdir: output folder (created if missing).
    verbose: print progress lines and the results table.
    process_start: `time.perf_counter()` at process start, so that
      `wall_seconds` covers imports too; now when None.
    restart: discard an interrupted run instead of resuming it (it is moved
      to `previous/` like any earlier run).

  Returns:
    The content of `results.json`.

  Raises:
    errors.UserInputError: bad data or settings, a workdir in use, or a
      resume with another configuration or a checkpoint of another layout
      (nothing written then).
    TrainingError: a non-finite loss (the last checkpoint is kept).
    RunInterrupted: SIGINT or SIGTERM (a checkpoint was written).
  """
  wall_start = time.perf_counter() if process_start is None else process_start
  if cfg.train.deterministic:
    tf.config.experimental.enable_op_determinism()
  tf.keras.utils.set_random_seed(cfg.train.seed)
  d = cfg.data
  ratings = stream_lib.load_ratings(
      d.dataset, d.data_dir, d.loader, d.max_ratings,
      d.synthetic_num_ratings, cfg.train.seed, d.tfds_download)
  s = stream_lib.build_stream(ratings, cfg.model.task, d.order,
                              d.train_fraction, cfg.train.seed)
  if (verbose and d.dataset != 'synthetic' and s.name.startswith('ml-') and
      s.name != d.dataset):
    print(f'warning: --dataset={d.dataset} but {d.data_dir} holds {s.name}; '
          f'results.json records dataset={d.dataset}, '
          f'data_source={s.name}', flush=True)
  if s.num_train == 0 or s.num_test == 0:
    part = 'train' if s.num_train == 0 else 'test'
    raise errors.UserInputError(
        f'the {part} part is empty ({s.num_examples} examples, '
        f'train_fraction={d.train_fraction}); use more data or another '
        '--train_fraction')
  if cfg.train.batch_size > 1 and 1 in (s.num_train, s.num_test):
    # One example cannot make a batch (BatchNorm in training mode) and has
    # no batch before it to merge into (`stream.batch_bounds`).
    part = 'train' if s.num_train == 1 else 'test'
    raise errors.UserInputError(
        f'the {part} part holds a single example ({s.num_examples} examples, '
        f'train_fraction={d.train_fraction}); use more data or another '
        '--train_fraction')
  # --jit_compile=auto decided now, so that config.json records the choice.
  cfg = jit.resolve_jit_compile(cfg, s.num_train)
  _check_the_tables_fit(cfg, s)  # before the workdir is touched
  files.make_folder(workdir)
  with files.WorkdirLock(workdir) as lock:
    if lock.took_over_from is not None and verbose:
      print(f'Took over the stale lock of process {lock.took_over_from} in '
            f'{workdir}', flush=True)
    return _run_locked(cfg, workdir, s, verbose, wall_start, restart)


# Address space TensorFlow takes on top of the model (its libraries, thread
# stacks and allocator arenas). Measured on the 2-core machine with a small
# FIXED run under `ulimit -v`: 2.9 GiB aborted in TensorFlow (or hung after
# `std::bad_alloc`), 4.8 GiB ran.
TF_ADDRESS_SPACE_BYTES = 4 * 2**30


def memory_limit_bytes() -> int:
  """The most memory this process can hold: the machine's RAM, or the
  address-space limit (`ulimit -v`) when it is lower."""
  limit = os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE')
  soft, _ = resource.getrlimit(resource.RLIMIT_AS)
  if soft != resource.RLIM_INFINITY:
    limit = min(limit, soft)
  return int(limit)


def _check_the_tables_fit(cfg: config_lib.ExperimentConfig, s) -> None:
  """Refuses, in one line, a model whose embedding tables and Adam moments
  alone exceed `memory_limit_bytes()` (with `ulimit -v`, after
  `TF_ADDRESS_SPACE_BYTES` for TensorFlow itself): TensorFlow would
  otherwise crash (a segmentation fault or an abort under an address-space
  limit) or swap.

  Raises:
    errors.UserInputError: the tables cannot fit.
  """
  need = memory.embedding_floor_bytes(
      (s.num_users, s.num_items), cfg.embedding_sizes,
      (cfg.search.budget('user'), cfg.search.budget('item')),
      cfg.pooled_storage)
  limit = memory_limit_bytes()
  limited = resource.getrlimit(resource.RLIMIT_AS)[0] == limit
  overhead = TF_ADDRESS_SPACE_BYTES if limited else 0
  if need + overhead > limit:
    extra = (f' and TensorFlow about {overhead / 1e9:.1f} GB of address '
             'space' if overhead else '')
    fix = ('train ESAPN with --embedding_storage=pooled and a '
           '--memory_budget, or with more memory' if need > limit / 2 else
           f'raise ulimit -v to at least {(need + overhead) / 1e9:.1f} GB')
    raise errors.UserInputError(
        f'the embedding tables and their Adam moments need at least '
        f'{need / 1e9:.1f} GB for {s.num_users:,} users and '
        f'{s.num_items:,} items{extra}, more than the {limit / 1e9:.1f} GB '
        f'this process may use{" (ulimit -v)" if limited else ""}; {fix}')


def _run_locked(cfg, workdir, s, verbose, wall_start, restart):
  """`run_experiment` once the data is loaded and the workdir locked."""
  d = cfg.data
  resume = workdir_lib.incomplete_run(workdir) and not restart
  if resume:
    differences = workdir_lib.config_differences(
        workdir_lib.read_config(workdir), cfg.to_dict())
    if differences:
      shown = '; '.join(f'{k}: {a!r} then, {b!r} now'
                        for k, a, b in differences)
      raise errors.UserInputError(
          f'cannot resume the interrupted run in {workdir}: its configuration '
          f'differs ({shown}); rerun with the same flags, pass --restart to '
          'discard it, or use another --workdir')
  else:
    try:
      archived = outputs.archive_previous_run(workdir)
    except OSError as e:
      raise errors.UserInputError(
          f'cannot prepare workdir {workdir!r} ({e.strerror}: '
          f'{e.filename}); pass a writable --workdir') from e
    if archived and verbose:
      print(f'Moved the earlier run in {workdir} to {archived}', flush=True)
    files.atomic_write_text(os.path.join(workdir, 'config.json'),
                              cfg.to_json() + '\n')
  if verbose:
    print(f'Data {s.name}: {s.num_examples:,} ratings, {s.num_users:,} users, '
          f'{s.num_items:,} items; train {s.num_train:,}, test '
          f'{s.num_test:,} ({d.order} order)', flush=True)

  distribution = strategy_lib.make(cfg)
  if distribution is not None and distribution.kind == 'mirrored':
    if verbose:
      print(f'Mirrored: {len(distribution.devices)} replica(s) on '
            f'{", ".join(distribution.devices)}; each batch split over them',
            flush=True)
  elif distribution is not None and verbose:
    print(f'Cluster: {distribution.num_workers} worker(s), '
          f'{distribution.num_ps} ps task(s); per-id tables in '
          f'{distribution.num_shards} shard(s)', flush=True)
  trainer = trainer_lib.Trainer(cfg, s, distribution)
  manager = tf.train.CheckpointManager(
      trainer.checkpoint(), os.path.join(workdir, 'checkpoints'),
      max_to_keep=2)
  if resume:
    try:
      # A checkpoint of another layout (e.g. the separate per-size tables
      # of older versions) fails on a shape, or would otherwise leave
      # variables at their initial values without a word.
      trainer.checkpoint().restore(
          manager.latest_checkpoint).assert_existing_objects_matched()
    except (AssertionError, ValueError) as e:
      raise errors.UserInputError(
          f'cannot resume the interrupted run in {workdir}: its checkpoint '
          f'{os.path.basename(manager.latest_checkpoint)} does not hold this '
          'version\'s variables (written by an older version?); pass '
          '--restart to discard it, or use another --workdir') from e
    step, done = int(trainer.step.numpy()), int(trainer.position.numpy())
    print(f'Resuming {workdir} from {os.path.basename(manager.latest_checkpoint)}'
          f' (step {step}, {done:,} of {s.num_examples:,} examples done)',
          flush=True)
  writer = tf.summary.create_file_writer(os.path.join(workdir, 'events'))
  progress = outputs.Progress(s.num_examples, cfg.train.log_every_seconds,
                              enabled=verbose)
  stop_signal = []
  last_step = [int(trainer.step.numpy())]

  def on_signal(signum, frame):
    del frame
    stop_signal.append(signum)

  def on_step():
    step = int(trainer.step.numpy())
    if stop_signal:
      trainer.count_train_seconds()
      manager.save(checkpoint_number=step)
      raise errors.RunInterrupted(
          f'stopped by {signal.Signals(stop_signal[0]).name} at step {step}; '
          f'checkpoint saved in {workdir}. Run the same command again to '
          'resume')
    every = cfg.train.checkpoint_every
    # A checkpoint when the step count crosses a multiple of `every` (on a
    # cluster, `on_step` runs once per group of steps).
    if every and step // every > last_step[0] // every:
      trainer.count_train_seconds()
      manager.save(checkpoint_number=step)
    last_step[0] = step

  handlers = {}
  if threading.current_thread() is threading.main_thread():
    for signum in (signal.SIGINT, signal.SIGTERM):
      handlers[signum] = signal.signal(signum, on_signal)
  try:
    metrics = trainer.run(writer, progress, on_step)
  finally:
    for signum, handler in handlers.items():
      signal.signal(signum, handler)

  manager.save(checkpoint_number=int(trainer.step.numpy()))
  files.atomic_write_text(os.path.join(workdir, 'per_frequency.csv'),
                            metrics['per_frequency'].to_csv())
  results = {
      'method': cfg.search.method,
      'task': cfg.model.task,
      'dataset': d.dataset,
      'data_source': s.name,
      'num_ratings': s.num_examples,
      'order': d.order,
      'test_mode': cfg.train.test_mode,
      'candidate_sizes': list(trainer.sizes),
      'test': metrics['test'],
      'train': metrics['train'],
      'memory': trainer.memory(),
      'train_state_bytes': trainer.train_state_bytes(),
      # policy_enlarge_probability, policy_diagnostics, memory_cost (the
      # final lambda per side), method_parameters: `Method.results`.
      **trainer.method.results(),
      'memory_budget': cfg.search.memory_budget,
      'num_users': s.num_users,
      'num_items': s.num_items,
      # Whole train part, compilation included; and the steady state (the
      # progress line's rate: every step after the first; None if resumed
      # after the train part or it had one step).
      'train_examples_per_second': metrics['train_examples_per_second'],
      'train_examples_per_second_steady': progress.steady_rate('train'),
      # The same per quarter of the train part's steady steps: a run that
      # slows down as it goes shows here (issue 12); this process's steps.
      'train_examples_per_second_by_quarter': progress.rate_by_quarter(
          'train'),
      'jit_compile': cfg.train.jit_compile,  # as decided (auto: by length)
      # 'none', or the cluster and the devices of the per-id tables' shards.
      'distribution': trainer.distribution_info(),
      'wall_seconds': time.perf_counter() - wall_start,
      'resumed': resume,
  }
  files.atomic_write_json(os.path.join(workdir, 'results.json'), results)
  # The XLA programs this run compiled are now trusted by the next runs.
  compile_cache.record()
  if verbose:
    print(outputs.results_table(results, progress.steady_rate('train')),
          flush=True)
  if results['policy_diagnostics']:
    # A view of results.json, drawn after it (matplotlib: ~1.5 s CPU).
    diagnostics_lib.write_heatmap(results['policy_diagnostics'],
                                  os.path.join(workdir, 'policy_heatmap.png'))
  return results
