"""Latency of the exported SavedModels on this CPU: ESAPN next to FIXED-128.

  # Export both from a trained run into a temporary folder, then time them:
  python bin/benchmark_serving.py --workdir=runs/ml-latest-small-binary
  # Or time two existing exports (a version folder or a model base folder):
  python bin/benchmark_serving.py --export_dir=runs/exports/esapn \
      --fixed_export_dir=runs/exports/esapn-fixed128

Loads each model with `tf.saved_model.load` (TensorFlow Serving's server is
not installable here, so this is the in-process TensorFlow runtime that TF
Serving also runs) and calls `serving_default` on random known (user, movie)
pairs. Prints p50 and p99 latency per call for each batch size.
Bad input prints one line starting with 'error:' and exits with status 2.
"""

import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
import numpy as np  # noqa: E402

from esapn_tf import errors  # noqa: E402
from esapn_tf import startup  # noqa: E402

# Before the flags (its functions use `tf`): ESAPN_VERBOSE=1 shows the
# third-party start-up output here, not -v.
tf = startup.import_tensorflow()
# pylint: disable=g-import-not-at-top,g-bad-import-order
from esapn_tf.serving import export  # noqa: E402
from esapn_tf.serving import report  # noqa: E402
# pylint: enable=g-import-not-at-top,g-bad-import-order

flags.DEFINE_string('workdir', '', 'A finished run: both exports are built '
                    'from it in a temporary folder (deleted afterwards).')
flags.DEFINE_string('export_dir', '', 'ESAPN export (version or base folder).')
flags.DEFINE_string('fixed_export_dir', '',
                    'FIXED-128 export (version or base folder).')
flags.DEFINE_list('batch_sizes', ['1', '1000'], 'Batch sizes to time.')
flags.DEFINE_integer('iterations', 500, 'Timed calls per model and batch size.')
flags.DEFINE_integer('warmup', 20, 'Untimed calls per model and batch size.')
flags.DEFINE_integer('seed', 0, 'Seed of the random id pairs.')
FLAGS = flags.FLAGS


def known_ids(saved_model_dir: str):
  """Raw user and movie ids of an export, read from its hash tables."""
  reader = tf.train.load_checkpoint(
      os.path.join(saved_model_dir, 'variables', 'variables'))
  return [reader.get_tensor(f'{side}/lookup/.ATTRIBUTES/table-keys')
          for side in ('user', 'movie')]


def benchmark(models, batch_sizes, iterations, warmup, seed):
  """{name: {batch: (p50 ms, p99 ms)}}; calls alternate between models."""
  rng = np.random.default_rng(seed)
  users, movies = known_ids(next(iter(models.values())))
  fns = {name: tf.saved_model.load(path).signatures['serving_default']
         for name, path in models.items()}
  results = {name: {} for name in models}
  for batch in batch_sizes:
    pool = [(tf.constant(rng.choice(users, batch)),
             tf.constant(rng.choice(movies, batch)))
            for _ in range(min(iterations, 64))]
    times = {name: [] for name in models}
    for i in range(warmup + iterations):
      u, m = pool[i % len(pool)]
      order = list(fns.items())
      if i % 2:
        order.reverse()
      for name, fn in order:
        start = time.perf_counter()
        fn(user_id=u, movie_id=m)
        if i >= warmup:
          times[name].append(time.perf_counter() - start)
    for name in models:
      ms = 1000.0 * np.asarray(times[name])
      results[name][batch] = (np.percentile(ms, 50), np.percentile(ms, 99))
  return results


def table(models, results, batch_sizes) -> str:
  head = f"{'model':<11} {'variables/ bytes':>16}"
  for b in batch_sizes:
    head += f"  {f'batch {b:,} p50':>16} {'p99':>9}"
  lines = [head]
  for name, path in models.items():
    size = report.variables_breakdown(path)['variables_bytes']
    line = f'{name:<11} {size:>16,}'
    for b in batch_sizes:
      p50, p99 = results[name][b]
      line += f'  {p50:>13.3f} ms {p99:>6.3f} ms'
    lines.append(line)
  return '\n'.join(lines)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  try:
    batch_sizes = [int(b) for b in FLAGS.batch_sizes]
    if min(batch_sizes) < 1 or FLAGS.iterations < 1:
      raise ValueError
  except ValueError:
    print('error: --batch_sizes must be positive integers and --iterations '
          '>= 1', file=sys.stderr)
    sys.exit(2)
  try:
    with tempfile.TemporaryDirectory() as tmp:
      if FLAGS.workdir:
        result = export.export_run(FLAGS.workdir, os.path.join(tmp, 'esapn'),
                                   reference_dir=os.path.join(tmp, 'fixed'))
        esapn, fixed = result.path, result.reference_path
      elif FLAGS.export_dir and FLAGS.fixed_export_dir:
        esapn, fixed = (export.resolve(FLAGS.export_dir),
                        export.resolve(FLAGS.fixed_export_dir))
      else:
        raise errors.UserInputError(
            'pass --workdir, or both --export_dir and --fixed_export_dir')
      models = {'ESAPN': esapn, 'FIXED-128': fixed}
      results = benchmark(models, batch_sizes, FLAGS.iterations,
                          FLAGS.warmup, FLAGS.seed)
      print(f'serving_default latency per call, {FLAGS.iterations} calls per '
            f'cell after {FLAGS.warmup} warm-up calls, tf.saved_model.load '
            f'on {os.cpu_count()} CPU cores:')
      print(table(models, results, batch_sizes), flush=True)
  except errors.UserInputError as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)


if __name__ == '__main__':
  app.run(main)
