"""Closed-form memory of the ablations, to match them to a target ratio.

The comparison runner gives every method the same final memory ratio (the
ratio of a side = sum over its ids of `candidate_sizes[s_id]` divided by
`num_ids * candidate_sizes[-1]`, i.e. relative to FIXED at the largest
size). The ablations below grow ids without a learned policy, so their
final sizes follow from the stream alone and their knob can be solved for
directly: no trial runs.

* `random` growth: every id starts at size index 0; at each batch in which
  it appears (one decision per id per batch, however many copies the batch
  holds) it moves up one size with constant probability `p`, capped at the
  largest. With `k` decisions the final index is `min(Binomial(k, p), n-1)`,
  so the expected ratio is a sum of binomial pmfs
  (`random_growth_ratio`): exact in expectation, and the realised ratio of a
  run scatters around it by the sum of independent per-id variances.
* `threshold` rule: an id moves to the next size once its running count
  reaches a threshold that doubles with each size: with base threshold
  `t0 > 0`, an id with `c` interactions in the learned part of the stream
  ends at index `#{j in 0..n-2 : c >= t0 * 2**j}` (`threshold_size_indices`):
  exact.
* MDE (Ginart et al., 2019, §3; `baselines.mde_size_indices`): dimension
  proportional to popularity^alpha from the train counts: exact.

The threshold rule's and MDE's ratios and inverses are in
`frequency_matching.py`; the random growth's, the checks they share and
`fit_or_nearest` here. The inverses (`random_probability_for_ratio`,
`threshold_for_ratio`, `mde_temperature_for_ratio`) rely on the ratio
being monotone in the knob: increasing in `p`, non-increasing step
functions of `t0` and of alpha.
"""

import math
import sys
from typing import Any, Callable, Dict, Sequence, Tuple

import numpy as np

from esapn_tf.data import stream

# Bisection on `p` stops once the expected ratio is this close to the target.
RATIO_TOLERANCE = 1e-12


def check_sizes(candidate_sizes: Sequence[int]) -> np.ndarray:
  """float64 `[n]` sizes after checking they are positive and increasing."""
  sizes = np.asarray(candidate_sizes, np.float64)
  if sizes.ndim != 1 or sizes.size == 0:
    raise ValueError('candidate_sizes must be a non-empty 1-D sequence, got '
                     f'{candidate_sizes!r}.')
  if not np.all(np.isfinite(sizes)) or sizes[0] <= 0:
    raise ValueError('candidate_sizes must be positive and finite, got '
                     f'{list(candidate_sizes)}.')
  if np.any(np.diff(sizes) <= 0):
    raise ValueError('candidate_sizes must be strictly increasing, got '
                     f'{list(candidate_sizes)}.')
  return sizes


def check_counts(values: np.ndarray, name: str,
                  integer: bool = False) -> np.ndarray:
  """float64 `[num_ids]` after checking non-empty, finite, non-negative."""
  array = np.asarray(values)
  if array.ndim != 1 or array.size == 0:
    raise ValueError(f'{name} must be a non-empty 1-D array (one entry per '
                     f'id), got shape {array.shape}.')
  array = array.astype(np.float64)
  if not np.all(np.isfinite(array)):
    raise ValueError(f'{name} must be finite.')
  if array.min() < 0:
    raise ValueError(f'{name} must be non-negative, got minimum '
                     f'{array.min():g}.')
  if integer and np.any(array != np.floor(array)):
    raise ValueError(f'{name} must be whole numbers.')
  return array


def check_target(target_ratio: float) -> float:
  """`target_ratio` as a float, after checking it is positive and finite."""
  if not math.isfinite(target_ratio) or target_ratio <= 0:
    raise ValueError('target_ratio must be a positive finite number, got '
                     f'{target_ratio!r}.')
  return float(target_ratio)


def out_of_range(knob: str, target: float, low: float, high: float,
                  low_at: str, high_at: str) -> ValueError:
  """The error for a target outside `[low, high]`, the knob's range."""
  return ValueError(
      f'target_ratio {target:.6g} is outside the range reachable by {knob}: '
      f'[{low:.6g} ({low_at}), {high:.6g} ({high_at})].')


def decisions_per_id(ids: np.ndarray, num_ids: int, num_train: int,
                     stop: int, batch_size: int) -> np.ndarray:
  """Number of distinct batches in which each id appears, before `stop`.

  Batches of `batch_size` examples start at example 0 and again at
  `num_train` (the first test batch starts at `num_train`; the last batch
  of each part may be smaller, and a last example alone joins the batch
  before it: `stream.batch_bounds`).
  An id appearing several times in one batch counts once there (one growth
  decision per id per batch).

  Args:
    ids: int `[num_examples]` the row of one side (user or item) of each
      example, in stream order, each in `[0, num_ids)`.
    num_ids: number of ids of that side (rows of its table).
    num_train: examples in the train part, in `[0, num_examples]`.
    stop: examples `[0, stop)` count: `num_examples` when the test part
      keeps learning (prequential), `num_train` when it is frozen.
    batch_size: examples per batch, >= 1.

  Returns:
    int64 `[num_ids]` decisions (batches) per id; 0 for ids absent from
    `[0, stop)`.

  Raises:
    ValueError: for empty `ids`, ids outside `[0, num_ids)`, or `num_train`,
      `stop`, `batch_size` out of range.
  """
  ids = np.asarray(ids)
  if ids.ndim != 1 or ids.size == 0:
    raise ValueError(f'ids must be a non-empty 1-D array, got shape '
                     f'{ids.shape}.')
  if not np.issubdtype(ids.dtype, np.integer):
    raise ValueError(f'ids must be integers, got dtype {ids.dtype}.')
  num_examples = ids.size
  if num_ids < 1:
    raise ValueError(f'num_ids must be >= 1, got {num_ids}.')
  if batch_size < 1:
    raise ValueError(f'batch_size must be >= 1, got {batch_size}.')
  if not 0 <= num_train <= num_examples:
    raise ValueError(f'num_train must lie in [0, {num_examples}] (the '
                     f'number of examples), got {num_train}.')
  if not 0 <= stop <= num_examples:
    raise ValueError(f'stop must lie in [0, {num_examples}] (the number of '
                     f'examples), got {stop}.')
  low, high = int(ids.min()), int(ids.max())
  if low < 0 or high >= num_ids:
    raise ValueError(f'ids must lie in [0, {num_ids}), got values in '
                     f'[{low}, {high}].')
  # Batches as `stream.make_dataset` cuts each part (a last example alone
  # joins the batch before it, hence the `minimum`s below).
  train_batches = stream.batch_bounds(0, num_train, batch_size).size - 1
  test_batches = stream.batch_bounds(num_train, num_examples,
                                     batch_size).size - 1
  num_batches = train_batches + test_batches
  if num_ids * num_batches >= 2**62:
    raise ValueError(f'num_ids * batches = {num_ids} * {num_batches} '
                     'overflows the int64 (id, batch) key.')
  position = np.arange(stop, dtype=np.int64)
  batch = np.where(
      position < num_train,
      np.minimum(position // batch_size, train_batches - 1),
      train_batches + np.minimum((position - num_train) // batch_size,
                                 test_batches - 1))
  # One key per (id, batch) pair; sorted, a new pair starts wherever the key
  # changes.
  key = ids[:stop].astype(np.int64) * num_batches + batch
  key.sort()
  first = np.ones(key.size, bool)
  first[1:] = key[1:] != key[:-1]
  return np.bincount(key[first] // num_batches,
                     minlength=num_ids).astype(np.int64)


def _expected_sizes(decisions: np.ndarray, p: float,
                    sizes: np.ndarray) -> np.ndarray:
  """E[sizes[min(Binomial(k, p), n-1)]], float64, one per entry of `k`.

  With `pmf_j = C(k, j) p^j (1-p)^(k-j)` (taken in log space, so that large
  `k` neither overflows nor underflows before the exponential):
  `E = sizes[n-1] - sum_{j<n-1} (sizes[n-1] - sizes[j]) pmf_j`, which needs
  only the first `n-1` terms and no `1 - sum` cancellation.
  """
  n = sizes.size
  k = decisions.astype(np.float64)
  top = sizes[-1]
  if n == 1:
    return np.full(k.shape, top)
  if p == 0.0:
    return np.full(k.shape, sizes[0])
  if p == 1.0:
    return sizes[np.minimum(decisions.astype(np.int64), n - 1)]
  log_p, log_q = math.log(p), math.log1p(-p)
  expected = np.full(k.shape, top)
  log_choose = np.zeros(k.shape)  # log C(k, 0)
  for j in range(n - 1):
    if j > 0:  # log C(k, j) = log C(k, j-1) + log(k - j + 1) - log j
      log_choose += np.log(np.maximum(k - j + 1, 1.0)) - math.log(j)
    pmf = np.where(k >= j,
                   np.exp(log_choose + j * log_p + (k - j) * log_q), 0.0)
    expected -= (top - sizes[j]) * pmf
  return expected


def random_growth_ratio(decisions: np.ndarray, p: float,
                        candidate_sizes: Sequence[int]) -> float:
  """Expected final memory ratio of `random` growth.

  Each id with `k` decisions ends at index `min(Binomial(k, p), n-1)`
  (module docstring); the ratio is the mean over ids of the expected size
  over `candidate_sizes[-1]`. Ids are grouped by their decision count, so
  the cost grows with the number of distinct counts, not of ids.

  Args:
    decisions: int `[num_ids]` decisions per id (`decisions_per_id`).
    p: probability of growing by one size at a decision, in [0, 1].
    candidate_sizes: strictly increasing sizes (dimensions).

  Returns:
    The expected memory ratio, in `(0, 1]`.

  Raises:
    ValueError: for `p` outside [0, 1], empty or negative or fractional
      decisions, or sizes that are not positive and increasing.
  """
  sizes = check_sizes(candidate_sizes)
  decisions = check_counts(decisions, 'decisions', integer=True)
  if not 0.0 <= p <= 1.0:  # also rejects NaN
    raise ValueError(f'p must lie in [0, 1], got {p!r}.')
  return _random_ratio(*np.unique(decisions, return_counts=True), float(p),
                       sizes)


def _random_ratio(unique: np.ndarray, multiplicity: np.ndarray, p: float,
                  sizes: np.ndarray) -> float:
  expected = _expected_sizes(unique, p, sizes)
  return float(expected @ multiplicity / (multiplicity.sum() * sizes[-1]))


def random_probability_for_ratio(decisions: np.ndarray, target_ratio: float,
                                 candidate_sizes: Sequence[int]) -> float:
  """The growth probability `p` of `random` whose expected ratio is the target.

  The expected ratio increases with `p` (a larger `p` gives a binomial that
  dominates stochastically, and the size is increasing in the index), from
  `sizes[0] / sizes[-1]` at `p = 0` to the mean of
  `sizes[min(k, n-1)] / sizes[-1]` at `p = 1`; bisection on `p` until the
  expected ratio is within 1e-12 of the target or the bracket is as narrow as
  float64 allows.

  Args:
    decisions: int `[num_ids]` decisions per id (`decisions_per_id`).
    target_ratio: the memory ratio to reach.
    candidate_sizes: strictly increasing sizes (dimensions).

  Returns:
    `p` in [0, 1].

  Raises:
    ValueError: when the target lies outside [ratio at p=0, ratio at p=1],
      or for invalid decisions or sizes.
  """
  sizes = check_sizes(candidate_sizes)
  decisions = check_counts(decisions, 'decisions', integer=True)
  target = check_target(target_ratio)
  unique, multiplicity = np.unique(decisions, return_counts=True)
  ratio = lambda p: _random_ratio(unique, multiplicity, p, sizes)
  low, high = ratio(0.0), ratio(1.0)
  if not low - RATIO_TOLERANCE <= target <= high + RATIO_TOLERANCE:
    raise out_of_range('random growth', target, low, high, 'p=0', 'p=1')
  if target <= low + RATIO_TOLERANCE:
    return 0.0
  if target >= high - RATIO_TOLERANCE:
    return 1.0
  lo, hi = 0.0, 1.0  # ratio(lo) < target < ratio(hi)
  while True:
    mid = 0.5 * (lo + hi)
    if mid in (lo, hi):
      break
    value = ratio(mid)
    if abs(value - target) <= RATIO_TOLERANCE:
      return mid
    if value < target:
      lo = mid
    else:
      hi = mid
  return lo if target - ratio(lo) < ratio(hi) - target else hi


def fit_or_nearest(fit: Callable[[float], float],
                   ratio_at: Callable[[float], float],
                   ends: Tuple[float, float], target: float,
                   label: str) -> Dict[str, Any]:
  """The parameter whose ratio is the target, or the nearest reachable end.

  Args:
    fit: target ratio -> parameter (raises ValueError out of range).
    ratio_at: parameter -> ratio.
    ends: the parameter's two extreme values.
    target: the wanted memory ratio.
    label: what is fitted, for the note printed when out of range.

  Returns:
    `{'value': parameter, 'ratio': its ratio, 'target': target,
    'reached': bool}`.
  """
  try:
    value = fit(target)
    reached = True
  except ValueError:
    value = min(ends, key=lambda v: abs(ratio_at(v) - target))
    reached = False
    print(f'note: {label}: a memory ratio of {target:.4f} is out of reach; '
          f'using {value:g} (ratio {ratio_at(value):.4f})', file=sys.stderr)
  return {'value': float(value), 'ratio': float(ratio_at(value)),
          'target': float(target), 'reached': reached}
