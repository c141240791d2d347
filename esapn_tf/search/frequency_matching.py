"""The threshold rule's and MDE's memory ratios, and their inverses.

Both end at sizes that follow from the ids' frequency counts alone, so
their ratio is exact and the knob that gives a target ratio is found
directly (module docstring of `matching.py`, which holds the random
growth's counterpart and the checks they share):

* `threshold` rule: an id moves to the next size once its running count
  reaches a threshold that doubles with each size: with base threshold
  `t0 > 0`, an id with `c` interactions in the learned part of the stream
  ends at index `#{j in 0..n-2 : c >= t0 * 2**j}` (`threshold_size_indices`).
* MDE (Ginart et al., 2019, §3; `baselines.mde_size_indices`): dimension
  proportional to popularity^alpha from the train counts.
"""

import math
from typing import Sequence, Tuple

import numpy as np

from esapn_tf.search import baselines
from esapn_tf.search import matching

_TOL = matching.RATIO_TOLERANCE


def threshold_size_indices(counts: np.ndarray, base_threshold: float,
                           num_sizes: int) -> np.ndarray:
  """Final size index of each id under the doubling `threshold` rule.

  An id with `c` interactions holds index
  `#{j in 0..num_sizes-2 : c >= base_threshold * 2**j}` (module docstring).

  Args:
    counts: int `[num_ids]` interactions of each id in the learned part of
      the stream.
    base_threshold: `t0 > 0`, the count at which an id leaves the smallest
      size.
    num_sizes: number of candidate sizes, >= 1.

  Returns:
    int32 `[num_ids]` indices in `[0, num_sizes)`.

  Raises:
    ValueError: for empty or negative counts, `base_threshold <= 0`, or
      `num_sizes < 1`.
  """
  counts = matching.check_counts(counts, 'counts')
  if not (math.isfinite(base_threshold) and base_threshold > 0):
    raise ValueError('base_threshold must be positive and finite, got '
                     f'{base_threshold!r}.')
  if num_sizes < 1:
    raise ValueError(f'num_sizes must be >= 1, got {num_sizes}.')
  thresholds = base_threshold * 2.0**np.arange(num_sizes - 1)
  return np.searchsorted(thresholds, counts, side='right').astype(np.int32)


def threshold_ratio(counts: np.ndarray, base_threshold: float,
                    candidate_sizes: Sequence[int]) -> float:
  """Final memory ratio of the `threshold` rule with base `base_threshold`.

  Args:
    counts: int `[num_ids]` interactions of each id in the learned part.
    base_threshold: `t0 > 0`.
    candidate_sizes: strictly increasing sizes (dimensions).

  Returns:
    `mean(sizes[index]) / sizes[-1]`, in `(0, 1]`.

  Raises:
    ValueError: as `threshold_size_indices`, or for invalid sizes.
  """
  sizes = matching.check_sizes(candidate_sizes)
  index = threshold_size_indices(counts, base_threshold, sizes.size)
  return float(sizes[index].mean() / sizes[-1])


def _threshold_ratios(sorted_counts: np.ndarray, thresholds: np.ndarray,
                      sizes: np.ndarray) -> np.ndarray:
  """`threshold_ratio` at each of `thresholds` (float64 `[m]`) at once.

  sum over ids of sizes[index] = num_ids * sizes[0]
    + sum_j (sizes[j+1] - sizes[j]) * #{c >= t0 * 2**j}.
  Multiplying by 2**j is exact in float64, so the comparisons agree with
  `threshold_size_indices` even at the step boundaries.
  """
  num_ids = sorted_counts.size
  total = np.full(thresholds.shape, num_ids * sizes[0])
  for j in range(sizes.size - 1):
    below = np.searchsorted(sorted_counts, thresholds * 2.0**j, side='left')
    total += (sizes[j + 1] - sizes[j]) * (num_ids - below)
  return total / (num_ids * sizes[-1])


def threshold_for_ratio(counts: np.ndarray, target_ratio: float,
                        candidate_sizes: Sequence[int]) -> float:
  """The base threshold (>= 1) whose `threshold_ratio` is nearest the target.

  The ratio is a non-increasing step function of `t0`: the id with count `c`
  loses its `j`-th step when `t0` passes `c / 2**j`, so the ratio is
  constant on `(b_i, b_{i+1}]` between consecutive breakpoints
  `b = c / 2**j`. Instead of bisecting, every breakpoint in
  `[1, max(counts)]` is evaluated (there are at most
  `(n-1) * #distinct counts` of them, and distinct counts number at most
  `sqrt(2 * sum(counts))`), plus `2 * max(counts)`, where every id is at
  the smallest size. The nearest ratio wins; a tie goes to the larger
  threshold. Each step is represented by its right end, so the result is
  a breakpoint `c / 2**j` (or `2 * max(counts)`, or 1).

  Args:
    counts: int `[num_ids]` interactions of each id in the learned part.
    target_ratio: the memory ratio to approach.
    candidate_sizes: strictly increasing sizes (dimensions).

  Returns:
    The base threshold `t0 >= 1`; `threshold_ratio(counts, t0, sizes)` is
    the reachable ratio nearest the target.

  Raises:
    ValueError: when the target lies outside
      [ratio at t0 = 2 max(counts), ratio at t0 = 1], or for invalid counts
      or sizes.
  """
  sizes = matching.check_sizes(candidate_sizes)
  counts = np.sort(matching.check_counts(counts, 'counts'))
  target = matching.check_target(target_ratio)
  unique = np.unique(counts)
  breaks = (unique[:, None] / 2.0**np.arange(sizes.size - 1)).ravel()
  top = max(1.0, 2.0 * unique[-1])
  candidates = np.unique(np.concatenate([breaks[breaks >= 1.0], [1.0, top]]))
  ratios = _threshold_ratios(counts, candidates, sizes)
  low, high = ratios[-1], ratios[0]
  if not low - _TOL <= target <= high + _TOL:
    raise matching.out_of_range('the threshold rule', target, low, high,
                        f't0={top:g}', 't0=1')
  distance = np.abs(ratios - target)
  # Last (largest threshold) among the nearest.
  best = np.flatnonzero(distance <= distance.min() + _TOL)[-1]
  return float(candidates[best])


def _mde_ratio(unique: np.ndarray, multiplicity: np.ndarray,
               temperature: float, sizes: np.ndarray) -> float:
  index = baselines.mde_size_indices(unique, sizes, temperature)
  return float(sizes[index] @ multiplicity / (multiplicity.sum() * sizes[-1]))


def _bracket(ratio, target: float) -> Tuple[float, float]:
  """Adjacent-in-float64 `lo < hi` in [0, 1] around the target crossing.

  For a non-increasing `ratio` with `ratio(0) >= target >= ratio(1)`:
  keeps `ratio(lo) >= target >= ratio(hi)` while halving the bracket until
  no float lies strictly between them.
  """
  lo, hi = 0.0, 1.0
  while True:
    mid = 0.5 * (lo + hi)
    if mid in (lo, hi):
      return lo, hi
    if ratio(mid) >= target:
      lo = mid
    else:
      hi = mid


def mde_temperature_for_ratio(train_counts: np.ndarray, target_ratio: float,
                              candidate_sizes: Sequence[int]) -> float:
  """MDE's temperature alpha in [0, 1] whose ratio is nearest the target.

  The ratio of `baselines.mde_size_indices` (Ginart et al., 2019, §3) does
  not increase with alpha (every seen id's target `log2 d` moves down
  with alpha, and rounding to the nearest size is monotone): bisection on
  alpha until the two ends of the bracket are adjacent floats, then the end
  whose ratio is nearer the target (a tie goes to the larger alpha, the
  smaller memory). Ids are grouped by count, so each evaluation costs one
  pass over the distinct counts.

  Args:
    train_counts: int `[num_ids]` interactions of each id in the train part.
    target_ratio: the memory ratio to approach.
    candidate_sizes: strictly increasing sizes (dimensions).

  Returns:
    alpha in [0, 1].

  Raises:
    ValueError: when the target lies outside
      [ratio at alpha=1, ratio at alpha=0], or for invalid counts or sizes.
  """
  sizes = matching.check_sizes(candidate_sizes)
  counts = matching.check_counts(train_counts, 'train_counts')
  target = matching.check_target(target_ratio)
  unique, multiplicity = np.unique(counts, return_counts=True)
  ratio = lambda alpha: _mde_ratio(unique, multiplicity, alpha, sizes)
  low, high = ratio(1.0), ratio(0.0)
  if not low - _TOL <= target <= high + _TOL:
    raise matching.out_of_range('MDE', target, low, high, 'alpha=1', 'alpha=0')
  if target <= low + _TOL:
    return 1.0
  lo, hi = _bracket(ratio, target)
  return lo if ratio(lo) - target < target - ratio(hi) else hi
