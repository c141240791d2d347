"""Size selection of the baselines (DESIGN.md §4; README "Methods").

* DARTS (`DartsWeights`): free per-id architecture logits over the sizes;
  the mixture weights are their softmax.
* AutoEmb (`AutoEmbController`): a controller network maps an id's
  frequency and its current soft weights to new soft weights.
  Both are trained by gradient on the previous batch (`soft_search.py`).
* MDE (`mde_size_indices`): mixed-dimension embeddings by frequency
  (Ginart et al., 2019, "Mixed Dimension Embeddings with Application to
  Memory-Efficient Recommendation Systems", §3): dimension proportional to
  popularity^alpha, from the ids' final train frequencies; no search.
* pruned (`prune_mask`): magnitude pruning of the trained FIXED tables to
  a budget of kept entries.
"""

from typing import Dict, Sequence

import numpy as np
import tensorflow as tf

from esapn_tf.distribute import mirrored
from esapn_tf.search import agent as agent_lib
from esapn_tf.search import groups


def last_copies(ids: tf.Tensor, frequency: tf.Tensor) -> tf.Tensor:
  """bool `[batch]`: True at each id's last copy in the batch.

  Running frequencies grow by one per occurrence, so the last copy is the
  one with the largest frequency. Sized by the batch (`groups.py`).
  """
  return groups.last_copies(ids, frequency)


def per_id_value(ids: tf.Tensor, mask: tf.Tensor,
                 values: tf.Tensor) -> tf.Tensor:
  """Gives every copy of an id the value of its copy where `mask` is True.

  Sized by the batch (`groups.value_at`).

  Args:
    ids: int32 `[batch]` rows.
    mask: bool `[batch]`, True at exactly one copy of each id.
    values: `[batch, ...]` float32 or int32.

  Returns:
    `values`' dtype and shape: the masked copy's value on every copy, so
    that scatters of it do not depend on scatter order.
  """
  return groups.value_at(mask, values, ids)


class DartsWeights(tf.Module):
  """Per-id architecture logits `alpha` float32 `[num_ids, n]` (DARTS).

  Liu et al., 2019, "DARTS: Differentiable Architecture Search", §2.2: the
  mixture weights are `softmax(alpha[id])`; all logits start at 0 (uniform
  weights). The logits are the trainable variable; rows get row-sparse Adam
  updates (only the ids of a batch move).
  """

  def __init__(self, num_ids: int, num_sizes: int, name: str = 'darts'):
    super().__init__(name=name)
    self.num_ids = int(num_ids)
    self.alpha = tf.Variable(tf.zeros([num_ids, num_sizes]), name='alpha')

  @property
  def architecture_variables(self) -> Sequence[tf.Variable]:
    return [self.alpha]

  def weights(self, ids: tf.Tensor, frequency: tf.Tensor) -> tf.Tensor:
    """float32 `[batch, n]` mixture weights (rows sum to 1)."""
    del frequency  # DARTS' weights are free parameters per id.
    return tf.nn.softmax(tf.gather(self.alpha, ids), -1)

  def remember(self, ids: tf.Tensor, frequency: tf.Tensor,
               weights: tf.Tensor) -> None:
    """Nothing to store: the logits are the state."""
    del ids, frequency, weights


class AutoEmbController(tf.Module):
  """AutoEmb's controller: (frequency, current weights) -> new weights.

  Zhao et al., 2020, "AutoEmb: Automated Embedding Dimensionality Search in
  Streaming Recommendations", §2.3: the input is the id's log2 frequency
  bucket (embedded, as in the ESAPN policy, DESIGN.md §3) concatenated
  with its current soft weights; one hidden ReLU layer; softmax over the
  sizes. `current` float32 `[num_ids + 1, n]` holds each id's last weights
  (uniform at the start; the extra row is unused padding).
  """

  def __init__(self, num_ids: int, num_sizes: int,
               num_frequency_buckets: int = 32,
               frequency_embedding_dim: int = 32, hidden_units: int = 64,
               name: str = 'autoemb'):
    super().__init__(name=name)
    self.num_ids = int(num_ids)
    self.num_frequency_buckets = int(num_frequency_buckets)
    self.current = tf.Variable(
        tf.fill([num_ids + 1, num_sizes], 1.0 / num_sizes), trainable=False,
        name='current_weights')
    self.frequency_embedding = tf.keras.layers.Embedding(
        num_frequency_buckets, frequency_embedding_dim,
        name='frequency_embedding')
    self.hidden = tf.keras.layers.Dense(hidden_units, activation='relu',
                                        name='hidden')
    self.logits = tf.keras.layers.Dense(num_sizes, name='logits')
    self.frequency_embedding.build((None,))
    self.hidden.build((None, frequency_embedding_dim + num_sizes))
    self.logits.build((None, hidden_units))

  @property
  def architecture_variables(self) -> Sequence[tf.Variable]:
    return (self.frequency_embedding.trainable_variables +
            self.hidden.trainable_variables + self.logits.trainable_variables)

  def weights(self, ids: tf.Tensor, frequency: tf.Tensor) -> tf.Tensor:
    """float32 `[batch, n]` mixture weights (rows sum to 1)."""
    bucket = agent_lib.frequency_bucket(frequency, self.num_frequency_buckets)
    x = tf.concat([self.frequency_embedding(bucket),
                   tf.gather(self.current, ids)], -1)
    return tf.nn.softmax(self.logits(self.hidden(x)), -1)

  def remember(self, ids: tf.Tensor, frequency: tf.Tensor,
               weights: tf.Tensor) -> None:
    """Stores each id's weights at its last copy as its current weights."""
    last = last_copies(ids, frequency)
    mirrored.own_copy(self.current).scatter_nd_update(
        tf.expand_dims(ids, -1), per_id_value(ids, last, weights))


def mde_size_indices(train_counts: np.ndarray, candidate_sizes: Sequence[int],
                     temperature: float) -> np.ndarray:
  """MDE's size index per id from its train frequency.

  Ginart et al. (2019), §3: an id of popularity `p` gets dimension
  `d = lambda * p^alpha` (`alpha`, the temperature, in [0, 1]; 0 gives
  every id the same size). Here `lambda` gives the most frequent id the
  largest candidate: `d = d_max * (count / max count)^alpha`, rounded to the
  nearest candidate size in log2 (ties to the smaller). Ids never seen in
  the train part get the smallest size. Non-decreasing in the count.

  Args:
    train_counts: int `[num_ids]` interactions of each id in the train part.
    candidate_sizes: increasing sizes (dimensions).
    temperature: alpha in [0, 1].

  Returns:
    int32 `[num_ids]` indices into `candidate_sizes`.

  Raises:
    ValueError: for a temperature outside [0, 1] or negative counts.
  """
  counts = np.asarray(train_counts, np.float64)
  if not 0.0 <= temperature <= 1.0:
    raise ValueError(f'temperature must lie in [0, 1], got {temperature}.')
  if counts.size and counts.min() < 0:
    raise ValueError('train_counts must be non-negative.')
  sizes = np.log2(np.asarray(candidate_sizes, np.float64))
  top = counts.max() if counts.size else 0.0
  if top <= 0:
    return np.zeros(counts.shape, np.int32)
  seen = counts > 0
  target = sizes[-1] + temperature * np.log2(np.where(seen, counts, 1) / top)
  index = np.argmin(np.abs(target[:, None] - sizes[None, :]), axis=1)
  return np.where(seen, index, 0).astype(np.int32)


def prune_mask(table: np.ndarray, kept_entries: int) -> np.ndarray:
  """Magnitude pruning: keep exactly the `kept_entries` largest |w|.

  Ties in magnitude are broken by position (row-major), so the result is
  deterministic and the budget is met exactly.

  Args:
    table: float `[num_ids, d]` trained embedding table.
    kept_entries: entries to keep, in `0..num_ids * d`.

  Returns:
    float32 `[num_ids, d]` mask of 0 and 1 with exactly `kept_entries` ones.

  Raises:
    ValueError: if `kept_entries` is outside `0..table.size`.
  """
  table = np.asarray(table)
  if not 0 <= kept_entries <= table.size:
    raise ValueError(f'kept_entries must lie in 0..{table.size}, got '
                     f'{kept_entries}.')
  order = np.argsort(-np.abs(table.reshape(-1)), kind='stable')
  mask = np.zeros(table.size, np.float32)
  mask[order[:kept_entries]] = 1.0
  return mask.reshape(table.shape)


def kept_entries(fraction: float, num_ids: int, dims: int) -> int:
  """The pruning budget: `round(fraction * num_ids * dims)` entries."""
  return int(round(fraction * num_ids * dims))


def pruned_memory_table(kept_per_id: np.ndarray,
                        candidate_sizes: Sequence[int],
                        reference_size: int) -> Dict:
  """The memory table of a pruned side (same keys as `memory.memory_table`).

  `total_dims` is the exact number of kept entries. For the counts, each id
  is put at the smallest candidate size that holds its kept entries, and
  ids with nothing kept under '0'.

  Args:
    kept_per_id: int `[num_ids]` kept entries of each id's row.
    candidate_sizes: the search space's sizes (dimensions).
    reference_size: the FIXED reference size (dimensions per id).
  """
  kept = np.asarray(kept_per_id, np.int64)
  sizes = np.asarray(candidate_sizes, np.int64)
  index = np.searchsorted(sizes, kept, side='left')
  counts = {'0': int(np.sum(kept == 0))}
  for k, d in enumerate(sizes):
    counts[str(int(d))] = int(np.sum((index == k) & (kept > 0)))
  total = int(kept.sum())
  fixed = int(len(kept) * reference_size)
  return {'counts': counts, 'total_dims': total, 'fixed_dims': fixed,
          'ratio': total / fixed if fixed else 0.0}
