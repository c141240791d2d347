"""Measures training speed and memory: FIXED versus ESAPN, and ml-20m scale.

  python bin/benchmark.py [--data_dir=../shared/data/ml-latest-small.zip]
                          [--skip_20m] [--output=benchmark.json]

In one process (plus two child processes, for the end-to-end run and for the
peak memory of loading), on the same data and batch size:
  * training throughput of FIXED and ESAPN (median of timed windows after a
    warm-up, the two methods' windows interleaved) and their ratio (the
    median of the windows' ratios), with ESAPN's step broken down by phase;
  * the wall time of the ml-latest-small binary run, process start to
    results.json (bin/train.py in a child process);
  * loading a GroupLens-format ratings.csv of ml-20m size (20,000,263 rows,
    written once by the synthetic generator to a cache outside the
    repository) into the training stream: seconds and peak resident memory;
  * at ml-20m scale, training throughput and the bytes of the embedding
    tables and optimizer slots.
Prints a table and writes the figures to --output as JSON.
"""

import json
import os
import subprocess
import sys
import tempfile
import time

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, _REPO)

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
import numpy as np  # noqa: E402

flags.DEFINE_string(
    'data_dir', os.path.join(_REPO, '..', 'shared', 'data',
                             'ml-latest-small.zip'),
    'GroupLens ml-latest-small archive or folder.')
flags.DEFINE_integer('batch_size', 500, 'Examples per step.')
flags.DEFINE_integer('window_steps', 20, 'Steps per timed window.')
flags.DEFINE_integer(
    'windows', 15,
    'Timed windows (the median is reported). FIXED and ESAPN windows are '
    'interleaved; on this shared 2-core machine single windows vary by '
    '+-20%, so the median needs many.')
flags.DEFINE_integer('warmup_steps', 5, 'Untimed steps after compilation.')
flags.DEFINE_bool('skip_20m', False, 'Leave out the ml-20m-scale parts.')
flags.DEFINE_string('cache_dir',
                    os.path.join(os.path.expanduser('~'), '.cache',
                                 'esapn_tf'),
                    'Where the synthetic ml-20m-size ratings.csv is kept.')
flags.DEFINE_string('output', 'benchmark.json', 'JSON file of the figures.')
FLAGS = flags.FLAGS

ML20M_RATINGS = 20_000_263
ML20M_USERS = 138_493
ML20M_ITEMS = 26_744


def _median_step_seconds(fn, batches, steps_per_window, windows, warmup):
  """Median over windows of the mean seconds per call (after a warm-up)."""
  needed = warmup + 1 + steps_per_window * windows
  batches = [batches[i % len(batches)] for i in range(needed)]
  for b in batches[:warmup + 1]:
    _sync(fn(b))
  medians = []
  for w in range(windows):
    start = warmup + 1 + w * steps_per_window
    t0 = time.perf_counter()
    for b in batches[start:start + steps_per_window]:
      out = fn(b)
    _sync(out)
    medians.append((time.perf_counter() - t0) / steps_per_window)
  return float(np.median(medians))


def _paired_step_seconds(fns, batches, steps_per_window, windows, warmup):
  """Like `_median_step_seconds` for several steps, their windows interleaved.

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
      _sync(fn(b))
  names = list(fns)
  seconds = {name: [] for name in names}
  for w in range(windows):
    start = warmup + 1 + w * steps_per_window
    for name in names[w % len(names):] + names[:w % len(names)]:
      t0 = time.perf_counter()
      for b in batches[start:start + steps_per_window]:
        out = fns[name](b)
      _sync(out)
      seconds[name].append((time.perf_counter() - t0) / steps_per_window)
  return seconds


def _sync(out):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  for x in tf.nest.flatten(out):
    if hasattr(x, 'numpy'):
      x.numpy()


def _trainer(method, s, batch_size):
  from esapn_tf import config as config_lib  # pylint: disable=g-import-not-at-top
  from esapn_tf.training import trainer as trainer_lib  # pylint: disable=g-import-not-at-top
  cfg = config_lib.ExperimentConfig(
      search=config_lib.SearchConfig(method=method),
      train=config_lib.TrainConfig(batch_size=batch_size))
  return trainer_lib.Trainer(cfg, s)


def throughput(s, batch_size):
  """FIXED and ESAPN steps on the same batches; ESAPN phases one by one."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from esapn_tf.data import stream as stream_lib  # pylint: disable=g-import-not-at-top
  from esapn_tf.search import environment  # pylint: disable=g-import-not-at-top
  n = min(s.num_train, 200 * batch_size) // batch_size * batch_size
  batches = list(stream_lib.make_dataset(s, 0, n, batch_size))
  timing = lambda fn: _median_step_seconds(
      fn, batches, FLAGS.window_steps, FLAGS.windows, FLAGS.warmup_steps)
  # FIXED and ESAPN windows interleaved; the ratio is the median of the
  # windows' ratios (the machine's load moves both alike within a window).
  windows = _paired_step_seconds(
      {method: _trainer(method, s, batch_size).learn
       for method in ('fixed', 'esapn')},
      batches, FLAGS.window_steps, FLAGS.windows, FLAGS.warmup_steps)
  result = {method: float(np.median(w)) for method, w in windows.items()}
  result['ratios'] = [f / e for f, e in zip(windows['fixed'],
                                             windows['esapn'])]
  # ESAPN phases, each compiled on its own and timed on the same batches.
  t = _trainer('esapn', s, batch_size)
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
  result['phases'] = {
      'environment_step': timing(environment_step),
      'enlargement': timing(enlarge),
      'recommender_step': timing(recommender_step),
      'policy_update': timing(tf.function(policy_update)),
      'host_device_transfers': timing(transfer),
  }
  result['phases']['recommender_step'] -= result['phases']['enlargement']
  return result


def end_to_end(data_dir):
  """Seconds of `bin/train.py` on ml-latest-small (binary), start to end."""
  with tempfile.TemporaryDirectory() as workdir:
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, os.path.join(_REPO, 'bin', 'train.py'),
         f'--flagfile={os.path.join(_REPO, "configs", "ml-latest-small-binary.flags")}',
         f'--data_dir={data_dir}', f'--workdir={workdir}',
         '--log_every_seconds=1000'],
        capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0 or not os.path.exists(
        os.path.join(workdir, 'results.json')):
      raise RuntimeError(f'bin/train.py failed: {proc.stderr[-2000:]}')
  return seconds


def cached_20m_csv():
  """Path of a GroupLens-format ratings.csv of ml-20m size (made once)."""
  from esapn_tf.data import synthetic  # pylint: disable=g-import-not-at-top
  folder = os.path.join(FLAGS.cache_dir, 'synthetic-ml-20m')
  path = os.path.join(folder, 'ratings.csv')
  if not os.path.exists(path):
    os.makedirs(folder, exist_ok=True)
    print(f'Writing {path} once (20M ratings)...', flush=True)
    r = synthetic.generate(ML20M_RATINGS, seed=0, num_users=ML20M_USERS,
                           num_items=ML20M_ITEMS)
    synthetic.write_grouplens_csv(r, path)
  return folder


_LOAD_CHILD = '''
import os, sys, time, json, resource
sys.path.insert(0, {repo!r})
os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
t0 = time.perf_counter()
from esapn_tf.data import movielens, stream
t1 = time.perf_counter()
r = movielens.load_grouplens({folder!r})
s = stream.build_stream(r, 'binary', 'random', 0.8, 0)
t2 = time.perf_counter()
print(json.dumps({{'seconds': t2 - t1, 'import_seconds': t1 - t0,
                   'ratings': int(s.num_examples), 'users': int(s.num_users),
                   'items': int(s.num_items),
                   'peak_rss_bytes': resource.getrusage(
                       resource.RUSAGE_SELF).ru_maxrss * 1024}}))
'''


def load_20m(folder):
  """Seconds and peak RSS of loading the 20M csv into the stream (child)."""
  proc = subprocess.run(
      [sys.executable, '-c', _LOAD_CHILD.format(repo=_REPO, folder=folder)],
      capture_output=True, text=True, check=True)
  return json.loads(proc.stdout.strip().splitlines()[-1])


def ml20m_scale(folder, batch_size):
  """ESAPN step throughput and state bytes with ml-20m-size tables."""
  from esapn_tf.data import movielens, stream  # pylint: disable=g-import-not-at-top
  s = stream.build_stream(movielens.load_grouplens(folder), 'binary',
                          'random', 0.8, 0)
  trainer = _trainer('esapn', s, batch_size)
  from esapn_tf.data import stream as stream_lib  # pylint: disable=g-import-not-at-top
  batches = list(stream_lib.make_dataset(s, 0, 200 * batch_size, batch_size))
  seconds = _median_step_seconds(trainer.learn, batches, FLAGS.window_steps,
                                 FLAGS.windows, FLAGS.warmup_steps)
  tables = [trainer.core.embeddings[side].table_variable
            for side in ('user', 'item')]
  slots = [slot for t in tables for slot in trainer.optimizer.slots(t)]
  state = sum(int(np.prod(v.shape)) * v.dtype.size for v in tables + slots)
  return batch_size / seconds, state, s


def main(argv):
  del argv
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from esapn_tf.data import stream as stream_lib  # pylint: disable=g-import-not-at-top
  gpus = tf.config.list_physical_devices('GPU')
  device = (tf.config.experimental.get_device_details(gpus[0]).get(
      'device_name', 'GPU') if gpus else f'CPU ({os.cpu_count()} cores)')
  bs = FLAGS.batch_size
  s = stream_lib.build_stream(
      stream_lib.load_ratings('ml-latest-small', FLAGS.data_dir), 'binary',
      'random', 0.8, 0)
  tp = throughput(s, bs)
  report = {
      'device': device,
      'batch_size': bs,
      'fixed_train_examples_per_second': bs / tp['fixed'],
      'esapn_train_examples_per_second': bs / tp['esapn'],
      'esapn_over_fixed': float(np.median(tp['ratios'])),
      'esapn_over_fixed_per_window': tp['ratios'],
      'esapn_phase_seconds_per_step': tp['phases'],
  }
  report['e2e_ml_latest_small_seconds'] = end_to_end(FLAGS.data_dir)
  if not FLAGS.skip_20m:
    folder = cached_20m_csv()
    load = load_20m(folder)
    report['load_20m_seconds'] = load['seconds']
    report['load_20m_peak_rss_bytes'] = load['peak_rss_bytes']
    rate, state, _ = ml20m_scale(folder, bs)
    report['ml20m_scale_train_examples_per_second'] = rate
    report['ml20m_scale_state_bytes'] = state
  lines = [f"device: {report['device']}, batch {bs}",
           f"{'FIXED train':<34} {report['fixed_train_examples_per_second']:>10,.0f} ex/s",
           f"{'ESAPN train':<34} {report['esapn_train_examples_per_second']:>10,.0f} ex/s",
           f"{'ESAPN / FIXED':<34} {report['esapn_over_fixed']:>10.3f}"]
  for phase, sec in tp['phases'].items():
    lines.append(f"  {phase:<32} {sec * 1e3:>10.2f} ms/step")
  lines.append(f"{'e2e ml-latest-small binary':<34} "
               f"{report['e2e_ml_latest_small_seconds']:>10.1f} s")
  if not FLAGS.skip_20m:
    lines += [
        f"{'load 20M ratings.csv -> stream':<34} {report['load_20m_seconds']:>10.1f} s",
        f"{'  peak RSS':<34} {report['load_20m_peak_rss_bytes'] / 2**30:>10.2f} GiB",
        f"{'ml-20m-scale ESAPN train':<34} {report['ml20m_scale_train_examples_per_second']:>10,.0f} ex/s",
        f"{'  tables + optimizer slots':<34} {report['ml20m_scale_state_bytes'] / 2**20:>10.1f} MiB"]
  print('\n'.join(lines))
  tmp = FLAGS.output + '.tmp'
  with open(tmp, 'w', encoding='utf-8') as f:
    json.dump(report, f, indent=2, sort_keys=True)
  os.replace(tmp, FLAGS.output)
  print(f'wrote {FLAGS.output}')


if __name__ == '__main__':
  app.run(main)
