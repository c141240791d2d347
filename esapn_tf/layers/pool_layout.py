"""`PoolLayout`: how `PooledEmbedding`'s arena is laid out (issue 12).

A mixin of `pooled_embedding.PooledEmbedding`: the numpy planning of the
arena's pools, done eagerly outside the compiled step, at build and between
steps. It reads the layer's `num_ids`, `num_sizes`, `candidate_sizes`,
`widths` (`d_k / g` blocks per row of size `k`), `headroom`, `budget`,
`step_dims`, and its variables `arena`, `start_block`, `size_index`,
`counts`, `free_stack`, `stack_offset`, `num_free`.

`reserve()`, called eagerly before a step, re-lays the arena out
(`_relayout`, numpy, outside the compiled step) when a pool has fewer free
rows than one step can move into it (`_wanted`): pool `k` receives only
ids of pool `k-1`, so at most `min(headroom, count_{k-1}, num_ids -
count_k)` of them (`headroom`: the distinct ids of a batch), and under a
budget at most `room / (d_k - d_{k-1})`, `room` the dims the budget has
left. Live rows are packed and the spare blocks are shared among the pools.
With a memory budget `B` (`budget`), the arena is sized once, up front, for
`B x num_ids x d_n` floats plus a slack of one step's moves at the budget's
pace (`step_dims`), so its shape never changes and the step compiles once;
moves beyond that (a policy that saved room up) into a pool with no free
row are refused. Without a budget the arena doubles when it is full: its
shape changes (and XLA recompiles the step) at most about
`log2(d_n / d_0) + 2` times.
"""

import math
from typing import Optional

import numpy as np
import tensorflow as tf


class PoolLayout:
  """The arena's pool plan and its eager re-layout (a mixin, see above)."""

  def _initial_counts(self) -> np.ndarray:
    return np.eye(1, self.num_sizes, 0, np.int64)[0] * self.num_ids

  def _initial_blocks(self) -> int:
    """Arena blocks (without the sink) before any id grows.

    No budget: the rows at `d_0` and what one step can move into `d_1`.
    A budget `B`: `B x num_ids x d_n` dims plus a slack of, per pool `k`,
    `min(headroom, num_ids, 2 x step_dims / (d_k - d_{k-1}))` rows.
    """
    n, w = self.num_ids, np.asarray(self.widths)
    counts = self._initial_counts()
    if not self.budget:
      return int(n * w[0] + np.sum(self._wanted(counts) * w))
    rows = np.full(self.num_sizes - 1, min(self.headroom, n), np.int64)
    if self.step_dims:
      delta = np.diff(np.asarray(self.candidate_sizes, np.float64))
      rows = np.minimum(rows, np.ceil(2 * self.step_dims / delta))
    slack = int(np.sum(rows * w[1:]))
    return max(int(math.ceil(self.budget * n * w[-1])), n * w[0]) + slack

  def _stack_sizes(self, num_blocks: int):
    """Free-stack region size per pool: the most rows the pool can hold."""
    return [min(self.num_ids, num_blocks // wk) for wk in self.widths]

  def _stacks(self, num_blocks, region_start, capacity, counts=None):
    """(free_stack, stack_offset, num_free) for packed pools.

    Pool `k` occupies blocks `[region_start[k], + capacity[k] * w_k)`, its
    first `counts[k]` rows live (all of them when `counts` is None).
    """
    sizes = self._stack_sizes(num_blocks)
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int32)
    stack = np.zeros([sum(sizes) + 1], np.int32)  # last entry: a sink
    free = np.zeros([self.num_sizes], np.int32)
    counts = capacity if counts is None else counts
    for k, wk in enumerate(self.widths):
      rows = np.arange(counts[k], capacity[k], dtype=np.int64)[::-1]
      stack[offsets[k]:offsets[k] + len(rows)] = region_start[k] + rows * wk
      free[k] = len(rows)
    return stack, offsets, free

  def needs_relayout(self, headroom: Optional[int] = None) -> bool:
    """Whether a pool has fewer free rows than one step can move into it."""
    counts = self.counts.numpy().astype(np.int64)
    return bool(np.any(self.num_free.numpy() < self._wanted(counts,
                                                            headroom)))

  def reserve(self, headroom: Optional[int] = None) -> bool:
    """Eagerly re-lays out the arena if a step might find a pool full.

    Args:
      headroom: the most ids one step can move into a pool (batch size);
        default the constructor's.

    Returns:
      Whether a re-layout happened.
    """
    if not self.needs_relayout(headroom):
      return False
    self._relayout(self.headroom if headroom is None else int(headroom))
    return True

  def _wanted(self, counts: np.ndarray,
              headroom: Optional[int] = None) -> np.ndarray:
    """int64 `[n]`: the most ids one step can move into each pool.

    Pool `k >= 1` receives only ids of pool `k-1`, one move per id and
    step: at most `min(headroom, count_{k-1}, num_ids - count_k)`; under a
    budget also at most `ceil(room / (d_k - d_{k-1}))`, `room` the dims
    left below `budget x num_ids x d_n`. None for size 0.

    Args:
      counts: int `[n]`, ids at each size.
      headroom: the most distinct ids of a step (default the layer's).
    """
    h = self.headroom if headroom is None else int(headroom)
    counts = np.asarray(counts, np.int64)
    want = np.zeros(self.num_sizes, np.int64)
    want[1:] = np.minimum(np.minimum(h, counts[:-1]),
                          self.num_ids - counts[1:])
    if self.budget:
      sizes = np.asarray(self.candidate_sizes, np.int64)
      room = max(self.budget * self.num_ids * sizes[-1] -
                 float(np.sum(counts * sizes)), 0.0)
      want[1:] = np.minimum(want[1:], np.ceil(room / np.diff(sizes)))
    return want

  def _plan(self, counts: np.ndarray, blocks: int,
            headroom: int) -> np.ndarray:
    """int `[n]`: the rows of each pool (live + free) in `blocks` blocks.

    Pool `k >= 1` gets the free rows one step can need (`_wanted`) first,
    then a share of the remaining spare blocks proportional to its live
    blocks plus at least one step's headroom (capped at `num_ids` rows).
    When the spare cannot give every pool its headroom (a budget), the
    largest sizes are served first and the others get what is left.
    """
    n, w = self.num_ids, np.asarray(self.widths)
    want = self._wanted(counts, headroom)
    spare = blocks - int(np.sum(counts * w))
    extra = np.zeros_like(counts)
    if spare >= np.sum(want * w):
      extra = want.copy()
      left = spare - int(np.sum(want * w))
      # Every pool above size 0 gets a share, also one that no id can
      # reach yet (its size below is empty): otherwise each pool, as ids
      # first reach the size below it, costs a re-layout (O(arena) numpy
      # work: seconds at 10M ids).
      reach = np.minimum(headroom, n)
      weight = (counts + np.maximum(want, reach)) * w * (
          np.arange(self.num_sizes) > 0)
      if weight.sum():
        share = (left * weight / weight.sum()) // w
        extra += np.minimum(share.astype(np.int64), n - counts - extra)
    else:  # budget: fill the headroom from the largest size down
      left = spare
      for k in range(self.num_sizes - 1, 0, -1):
        extra[k] = min(want[k], left // w[k])
        left -= extra[k] * w[k]
    return counts + extra

  def _relayout(self, headroom: int) -> None:
    """Packs the live rows and shares the spare blocks among the pools.

    O(num_ids + arena) numpy work, outside the compiled step (`_plan` says
    how many rows each pool gets). Without a budget, the arena doubles
    while it cannot give every pool its headroom; with one, it keeps its
    size (pools get what fits).
    """
    w, g = np.asarray(self.widths), self.block
    size = self.size_index.numpy()
    start = self.start_block.numpy().astype(np.int64)
    counts = np.bincount(size, minlength=self.num_sizes)
    blocks = int(tf.shape(self.arena)[0]) - 1
    need = int(np.sum((counts + self._wanted(counts, headroom)) * w))
    if not self.budget:
      while blocks < need:
        blocks *= 2
    capacity = self._plan(counts, blocks, headroom)
    region = np.concatenate([[0], np.cumsum(capacity * w)[:-1]])
    arena_vars = [self.arena]
    optimizer = getattr(self, '_optimizer', None)
    if optimizer is not None:
      arena_vars += list(optimizer.slots(self.arena))
    old = [v.numpy() for v in arena_vars]
    new = [np.zeros([blocks + 1, g], np.float32) for _ in old]
    new_start = np.zeros_like(start)
    for k in range(self.num_sizes):
      ids = np.nonzero(size == k)[0]
      dst = region[k] + np.arange(len(ids)) * w[k]
      src_blocks = (start[ids][:, None] + np.arange(w[k])).ravel()
      dst_blocks = (dst[:, None] + np.arange(w[k])).ravel()
      for o, nv in zip(old, new):
        nv[dst_blocks] = o[src_blocks]
      new_start[ids] = dst
    for var, nv in zip(arena_vars, new):
      var.assign(nv)
    self.start_block.assign(new_start.astype(np.int32))
    stack, offsets, free = self._stacks(blocks, region, capacity, counts)
    self.free_stack.assign(stack)
    self.stack_offset.assign(offsets)
    self.num_free.assign(free)
    self.counts.assign(counts.astype(np.int32))
    self.relayouts += 1
