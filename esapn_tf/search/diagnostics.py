"""What shows whether a policy learned (issue 11), per side and state.

A state is (log2 frequency bucket, size index), `G = num_buckets * n`
states, state `g = bucket * n + size_index` (`agent.frequency_bucket`).
Per state the run counts the decisions per sampled action, sums their
rewards and squared rewards (mean and standard error per action), and the
paired trials' benefit `b` (`trials.py`); P(enlarge) is read from the
policy at the start and at the end.
"""

from typing import Any, Dict, Sequence

import numpy as np
import tensorflow as tf

from esapn_tf.search import agent as agent_lib


class PolicyDiagnostics(tf.Module):
  """Sums per state: float64 `decisions [G, 2]`, `reward_sum [G, 2]`,
  `reward_sq [G, 2]`, `benefit [G, 3]` (count, sum, sum of squares), and the
  policy's initial P(enlarge) float32 `[G]`."""

  def __init__(self, num_buckets: int, num_sizes: int, name: str):
    super().__init__(name=name)
    self.num_buckets = int(num_buckets)
    self.num_sizes = int(num_sizes)
    g = self.num_buckets * self.num_sizes
    zeros = lambda shape, n: tf.Variable(tf.zeros(shape, tf.float64),
                                         trainable=False, name=n)
    self.decisions = zeros([g, 2], 'decisions')
    self.reward_sum = zeros([g, 2], 'reward_sum')
    self.reward_sq = zeros([g, 2], 'reward_sq')
    self.benefit = zeros([g, 3], 'benefit')
    self.initial_probability = tf.Variable(tf.zeros([g]), trainable=False,
                                           name='initial_probability')

  def state(self, observation) -> tf.Tensor:
    """int32 `[batch]` state index of each observation."""
    bucket = agent_lib.frequency_bucket(observation['frequency'],
                                        self.num_buckets)
    return bucket * self.num_sizes + tf.cast(observation['size_index'],
                                             tf.int32)

  def record(self, observation, action, reward, benefit, weight) -> None:
    """Adds the decisions with weight 1 (float32 `[batch]` each)."""
    g = self.num_buckets * self.num_sizes
    key = self.state(observation) * 2 + tf.cast(action, tf.int32)
    w = tf.cast(weight, tf.float64)
    r = tf.cast(reward, tf.float64)
    per_action = lambda x: tf.reshape(
        tf.math.unsorted_segment_sum(x, key, 2 * g), [g, 2])
    self.decisions.assign_add(per_action(w))
    self.reward_sum.assign_add(per_action(w * r))
    self.reward_sq.assign_add(per_action(w * r * r))
    b = tf.cast(benefit, tf.float64)
    state = self.state(observation)
    self.benefit.assign_add(tf.stack([
        tf.math.unsorted_segment_sum(w, state, g),
        tf.math.unsorted_segment_sum(w * b, state, g),
        tf.math.unsorted_segment_sum(w * b * b, state, g)], -1))

  def states(self):
    """All G states as an observation dict of int32 `[G]`."""
    g = np.arange(self.num_buckets * self.num_sizes)
    return {'frequency': tf.constant(2**(g // self.num_sizes), tf.int32),
            'size_index': tf.constant(g % self.num_sizes, tf.int32)}


def size_histogram(name: str, counts: tf.Tensor, step) -> None:
  """Writes a TensorBoard histogram of ids per size index from counts.

  The same plot as `tf.summary.histogram(name, size_index)`, one bucket
  per size index `k` (`[k - 0.5, k + 0.5)`), but built from the running
  counts (`size_counts.SizeCounts`), so its cost does not grow with the
  id count. The tensor is the histogram plugin's `[k, 3]` float64 (left
  edge, right edge, count).

  Args:
    name: the summary's tag, e.g. 'embedding/user_size_index'.
    counts: int `[n]` ids per size index.
    step: int64 step.
  """
  # pylint: disable-next=g-import-not-at-top
  from tensorboard.plugins.histogram import metadata
  counts = tf.cast(counts, tf.float64)
  k = tf.range(tf.shape(counts)[0], dtype=tf.float64)
  tf.summary.write(
      tag=name, tensor=tf.stack([k - 0.5, k + 0.5, counts], -1), step=step,
      metadata=metadata.create_summary_metadata(display_name=None,
                                                description=None))


def enlarge_probability(agent, observation) -> tf.Tensor:
  """float32 `[k]`: the collect policy's P(enlarge) at the observations."""
  dist = agent.collect_policy.distribution(
      agent_lib.first_time_step(observation)).action
  return dist.probs_parameter()[:, agent_lib.ENLARGE]


def _mean_and_error(count, total, squares):
  """Mean and standard error of the mean (nan where count < 2)."""
  with np.errstate(invalid='ignore', divide='ignore'):
    mean = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    var = (squares - count * mean**2) / np.maximum(count - 1, 1)
    se = np.where(count > 1, np.sqrt(np.maximum(var, 0) / count), np.nan)
  return mean, se


def report(diagnostics: PolicyDiagnostics, final_probability: np.ndarray,
           sizes: Sequence[int]) -> Dict[str, Any]:
  """The JSON-able table of the states with at least one decision.

  Returns:
    `{'columns': [...], 'rows': [[frequency bucket low end, size (dims),
    P(enlarge) start, P(enlarge) end, decisions keep, decisions enlarge,
    mean reward keep, s.e., mean reward enlarge, s.e., mean benefit, s.e.],
    ...]}`; nan shown as None.
  """
  decisions = diagnostics.decisions.numpy()
  mean_r, se_r = _mean_and_error(decisions, diagnostics.reward_sum.numpy(),
                                 diagnostics.reward_sq.numpy())
  benefit = diagnostics.benefit.numpy()
  mean_b, se_b = _mean_and_error(benefit[:, 0], benefit[:, 1], benefit[:, 2])
  start = diagnostics.initial_probability.numpy()
  n = diagnostics.num_sizes
  rows = []
  clean = lambda x: None if not np.isfinite(x) else round(float(x), 6)
  for g in range(len(decisions)):
    if decisions[g].sum() == 0:
      continue
    rows.append([int(2**(g // n)), int(sizes[g % n]), clean(start[g]),
                 clean(final_probability[g]), int(decisions[g, 0]),
                 int(decisions[g, 1]), clean(mean_r[g, 0]),
                 clean(se_r[g, 0]), clean(mean_r[g, 1]), clean(se_r[g, 1]),
                 clean(mean_b[g]), clean(se_b[g])])
  return {'columns': ['frequency_from', 'size', 'p_enlarge_start',
                      'p_enlarge_end', 'decisions_keep',
                      'decisions_enlarge', 'reward_keep', 'reward_keep_se',
                      'reward_enlarge', 'reward_enlarge_se', 'benefit',
                      'benefit_se'],
          'rows': rows}


def write_heatmap(tables: Dict[str, Dict[str, Any]], path: str) -> None:
  """Writes the per-state diagnostics as a PNG heat map (atomically).

  One row of panels per side: P(enlarge) at the start, at the end, and the
  mean paired benefit; rows are log2 frequency buckets, columns sizes;
  states without decisions are blank.

  Args:
    tables: `{side: report(...)}` (`results.json: policy_diagnostics`).
    path: the PNG to write.
  """
  import os  # pylint: disable=g-import-not-at-top
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  panels = (('p_enlarge_start', 'P(enlarge), start', 'viridis', (0, 1)),
            ('p_enlarge_end', 'P(enlarge), end', 'viridis', (0, 1)),
            ('benefit', 'mean benefit L_real - L_shadow', 'RdBu', None))
  fig, axes = plt.subplots(len(tables), 3, squeeze=False,
                           figsize=(14, 4.2 * len(tables)),
                           layout='constrained')
  for row, (side, table) in enumerate(sorted(tables.items())):
    col = {name: i for i, name in enumerate(table['columns'])}
    freqs = sorted({r[0] for r in table['rows']})
    sizes = sorted({r[1] for r in table['rows']})
    for j, (key, title, cmap, limits) in enumerate(panels):
      grid = np.full((max(len(freqs), 1), max(len(sizes), 1)), np.nan)
      for r in table['rows']:
        if r[col[key]] is not None:
          grid[freqs.index(r[0]), sizes.index(r[1])] = r[col[key]]
      if limits is None:
        bound = np.nanmax(np.abs(grid)) if np.isfinite(grid).any() else 1.0
        limits = (-bound, bound)
      ax = axes[row][j]
      image = ax.imshow(grid, cmap=cmap, vmin=limits[0], vmax=limits[1],
                        aspect='auto', origin='lower')
      ax.set_xticks(range(len(sizes)), [str(d) for d in sizes])
      ax.set_yticks(range(len(freqs)), [f'{f}+' for f in freqs])
      ax.set_xlabel('size (dims)')
      ax.set_ylabel('running frequency')
      ax.set_title(f'{side}s: {title}', fontsize=10)
      fig.colorbar(image, ax=ax)
  tmp = f'{path}.tmp-{os.getpid()}'
  try:
    fig.savefig(tmp, format='png', dpi=90, bbox_inches='tight')
  finally:
    plt.close(fig)
  os.replace(tmp, path)


def policy_table(agents, sizes: Sequence[int],
                 max_bucket: int = 12) -> Dict[str, Any]:
  """P(enlarge) of each side's final policy on a (frequency, size) grid.

  Args:
    agents: `{side: ReinforceAgent}` (`agent.make_agent`).
    sizes: the candidate sizes (dims), in order.
    max_bucket: frequencies 1, 2, 4, ..., `2**max_bucket`.

  Returns:
    `{side: {'frequency': [1, 2, 4, ...], 'size': the candidate sizes
    (dims), 'probability': [[p per size] per frequency]}}` (results.json's
    `policy_enlarge_probability`).
  """
  table = {}
  frequencies = [2**b for b in range(max_bucket + 1)]
  n = len(sizes)
  f = tf.constant(np.repeat(frequencies, n), tf.int32)
  s = tf.constant(np.tile(np.arange(n), len(frequencies)), tf.int32)
  for side, agent in agents.items():
    p = enlarge_probability(
        agent, {'frequency': f, 'size_index': s}).numpy()
    table[side] = {'frequency': frequencies, 'size': list(sizes),
                   'probability': np.round(p.reshape(-1, n), 4).tolist()}
  return table
