"""`run_benchmark`: what `bin/benchmark.py` reports, in one process.

On the same data and batch size:
  * training throughput of FIXED and ESAPN (`throughput.py`: median of timed
    windows after a warm-up, the two methods' windows interleaved) and their
    ratio, with ESAPN's step broken down by phase;
  * the end-to-end time of ESAPN and FIXED on ml-latest-small binary, process
    start to results.json, cold (empty XLA compilation cache) and warm
    (`e2e.py`: `bin/train.py` in child processes);
  * loading a GroupLens-format ratings.csv of ml-20m size (20,000,263 rows,
    written once by the synthetic generator to a cache outside the
    repository) into the training stream: seconds and peak resident memory;
  * at ml-20m scale, training throughput and the bytes of the embedding
    tables and optimizer slots.
"""

import dataclasses
import json
import os
from typing import Any, Dict, Tuple

from esapn_tf import startup
from esapn_tf.benchmark import e2e
from esapn_tf.training import compile_cache


@dataclasses.dataclass(frozen=True)
class BenchmarkOptions:
  """What to measure, and how long (`bin/benchmark.py`'s flags)."""
  data_dir: str  # ml-latest-small archive or folder
  batch_size: int = 500  # examples per step
  window_steps: int = 20  # steps per timed window
  windows: int = 15  # timed windows per method (median reported)
  warmup_steps: int = 5  # untimed steps after compilation
  e2e: bool = True  # the four end-to-end runs (child processes)
  skip_20m: bool = False  # leave out the ml-20m-scale parts
  num_ids: Tuple[int, ...] = (10_000, 1_000_000,
                              10_000_000)  # ids per side, step time
  ten_million_ids: bool = False  # the 10M-id runs (ten_million.py)
  cache_dir: str = ''  # where the ml-20m-size ratings.csv is kept
  output: str = 'benchmark.json'  # JSON file of the figures


def run_benchmark(options: BenchmarkOptions) -> Dict[str, Any]:
  """Measures everything the module docstring lists; writes `output`.

  The end-to-end runs come first, before this process holds TensorFlow's
  threads and memory.

  Args:
    options: the settings.

  Returns:
    The figures written to `options.output`: `device`, `batch_size`,
    `{fixed,esapn}_train_examples_per_second`, `esapn_over_fixed` (and per
    window), `esapn_phase_seconds_per_step`, `e2e_seconds` (`{'esapn_cold',
    'esapn_warm', 'fixed_cold', 'fixed_warm'}`, wall seconds from process
    start to results.json), `e2e_exit_seconds` (the same to the exit) and
    `e2e_esapn_over_fixed` (`{'cold', 'warm'}`), and without `skip_20m`
    `load_20m_seconds`, `load_20m_peak_rss_bytes`,
    `step_ms_by_num_ids` (`{'10000': ms, ...}`, `benchmark/num_ids.py`),
    `ml20m_scale_train_examples_per_second` (ESAPN),
    `ml20m_scale_fixed_train_examples_per_second`,
    `ml20m_scale_esapn_over_fixed`, `ml20m_scale_state_bytes`,
    `train_state_bytes` (`ten_million.train_state_bytes`), and with
    `ten_million_ids` the key of that name (`ten_million.ten_million_ids`).

  Raises:
    errors.UserInputError: an end-to-end run failed, or the data is bad.
  """
  report: Dict[str, Any] = {'batch_size': options.batch_size}
  if options.e2e:
    figures = e2e.ml_latest_small_binary(options.data_dir)
    report['e2e_seconds'] = seconds = figures['results']
    report['e2e_exit_seconds'] = figures['exit']
    report['e2e_esapn_over_fixed'] = {
        phase: seconds[f'esapn_{phase}'] / seconds[f'fixed_{phase}']
        for phase in ('cold', 'warm')}
  # This process's own XLA programs (the steps timed) may use the user's
  # cache; the end-to-end runs above had their own, empty ones.
  compile_cache.configure()
  tf = startup.import_tensorflow(agents=True)  # quietly, after the e2e runs
  # pylint: disable=g-import-not-at-top
  import numpy as np
  from esapn_tf.benchmark import throughput
  from esapn_tf.data import stream as stream_lib
  # pylint: enable=g-import-not-at-top
  gpus = tf.config.list_physical_devices('GPU')
  report['device'] = (
      tf.config.experimental.get_device_details(gpus[0]).get(
          'device_name', 'GPU') if gpus else f'CPU ({os.cpu_count()} cores)')
  bs = options.batch_size
  s = stream_lib.build_stream(
      stream_lib.load_ratings('ml-latest-small', options.data_dir), 'binary',
      'random', 0.8, 0)
  tp = throughput.throughput(s, bs, options.window_steps, options.windows,
                             options.warmup_steps)
  report.update({
      'fixed_train_examples_per_second': bs / tp['fixed'],
      'esapn_train_examples_per_second': bs / tp['esapn'],
      'esapn_over_fixed': float(np.median(tp['ratios'])),
      'esapn_over_fixed_per_window': tp['ratios'],
      'esapn_phase_seconds_per_step': tp['phases'],
  })
  if options.num_ids:
    # pylint: disable-next=g-import-not-at-top
    from esapn_tf.benchmark import num_ids as num_ids_lib
    report['step_ms_by_num_ids'] = num_ids_lib.step_ms_by_num_ids(
        options.num_ids, batch_size=bs, steps_per_window=options.window_steps,
        windows=options.windows, warmup=options.warmup_steps)
  if not options.skip_20m:
    folder = throughput.cached_20m_csv(options.cache_dir)
    load = throughput.load_20m(folder)
    report['load_20m_seconds'] = load['seconds']
    report['load_20m_peak_rss_bytes'] = load['peak_rss_bytes']
    rate, state, s20m = throughput.ml20m_scale(
        folder, bs, options.window_steps, options.windows,
        options.warmup_steps)
    report['ml20m_scale_train_examples_per_second'] = rate['esapn']
    report['ml20m_scale_fixed_train_examples_per_second'] = rate['fixed']
    report['ml20m_scale_esapn_over_fixed'] = rate['esapn_over_fixed']
    report['ml20m_scale_state_bytes'] = state
    # pylint: disable-next=g-import-not-at-top
    from esapn_tf.benchmark import ten_million
    report['train_state_bytes'] = ten_million.train_state_bytes(
        s20m, batch_size=bs)
    del s20m
  if options.ten_million_ids:
    # pylint: disable-next=g-import-not-at-top
    from esapn_tf.benchmark import ten_million
    report['ten_million_ids'] = ten_million.ten_million_ids(
        options.cache_dir, os.path.join(options.cache_dir, 'ten-million-runs'))
  tmp = options.output + '.tmp'
  with open(tmp, 'w', encoding='utf-8') as f:
    json.dump(report, f, indent=2, sort_keys=True)
  os.replace(tmp, options.output)
  compile_cache.record()
  return report


def table(report: Dict[str, Any]) -> str:
  """The figures of `run_benchmark` as aligned text lines."""
  lines = [f"device: {report['device']}, batch {report['batch_size']}",
           f"{'FIXED train (steady state, XLA)':<34} "
           f"{report['fixed_train_examples_per_second']:>10,.0f} ex/s",
           f"{'ESAPN train (steady state, XLA)':<34} "
           f"{report['esapn_train_examples_per_second']:>10,.0f} ex/s",
           f"{'ESAPN / FIXED':<34} {report['esapn_over_fixed']:>10.3f}"]
  for phase, sec in report['esapn_phase_seconds_per_step'].items():
    lines.append(f'  {phase:<32} {sec * 1e3:>10.2f} ms/step')
  if 'e2e_seconds' in report:
    e = report['e2e_seconds']
    lines.append('e2e ml-latest-small binary (process start to results.json)')
    for phase in ('cold', 'warm'):
      lines.append(
          f"  {phase + ' XLA cache':<32} ESAPN {e[f'esapn_{phase}']:6.1f} s"
          f"  FIXED {e[f'fixed_{phase}']:6.1f} s  ESAPN/FIXED "
          f"{report['e2e_esapn_over_fixed'][phase]:.2f}")
  if 'step_ms_by_num_ids' in report:
    lines.append('ESAPN step, same batch, by ids per side (median)')
    ms = report['step_ms_by_num_ids']
    first = ms[min(ms, key=int)]
    for n in sorted(ms, key=int):
      lines.append(f'  {int(n):>12,} ids {ms[n]:>18.2f} ms '
                   f'({ms[n] / first:.2f}x)')
  if 'load_20m_seconds' in report:
    lines += [
        f"{'load 20M ratings.csv -> stream':<34} "
        f"{report['load_20m_seconds']:>10.1f} s",
        f"{'  peak RSS':<34} "
        f"{report['load_20m_peak_rss_bytes'] / 2**30:>10.2f} GiB",
        f"{'ml-20m-scale ESAPN train':<34} "
        f"{report['ml20m_scale_train_examples_per_second']:>10,.0f} ex/s",
        f"{'ml-20m-scale FIXED train':<34} "
        f"{report['ml20m_scale_fixed_train_examples_per_second']:>10,.0f} "
        'ex/s',
        f"{'  ESAPN / FIXED at ml-20m scale':<34} "
        f"{report['ml20m_scale_esapn_over_fixed']:>10.3f}",
        f"{'  tables + optimizer slots':<34} "
        f"{report['ml20m_scale_state_bytes'] / 2**20:>10.1f} MiB"]
  if 'train_state_bytes' in report:
    b = report['train_state_bytes']
    lines.append(
        f"{'ml-20m-size training state':<34} FIXED {b['fixed'] / 2**20:,.0f} "
        f"MiB, ESAPN (budget {b['esapn_budget']:g}, pooled) "
        f"{b['esapn'] / 2**20:,.0f} MiB ({b['esapn_over_fixed']:.3f}x)")
  if 'ten_million_ids' in report:
    t = report['ten_million_ids']
    fixed = (f"peak RSS {t['fixed_peak_rss_bytes'] / 2**30:.2f} GiB"
             if t['fixed_error'] is None else f"failed: {t['fixed_error']}")
    lines += [
        f"{t['num_ids']:,} users and items, {t['num_examples']:,} ratings:",
        f"  ESAPN (budget 0.2, pooled) peak RSS "
        f"{t['esapn_peak_rss_bytes'] / 2**30:.2f} GiB, "
        f"{t['esapn_examples_per_second']:,.0f} ex/s steady",
        f'  FIXED-128 {fixed}']
  return '\n'.join(lines)
