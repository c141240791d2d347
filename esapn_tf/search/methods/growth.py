"""Growth without a learned policy: the ablations a reviewer asks for.

Both start every id at the smallest size and grow it one size at a time,
function-preservingly (DESIGN.md §2), as ESAPN does; only the rule differs:

* `RandomGrowth` (`--method=random`): at each batch in which an id appears
  (one decision per id, at its last copy) it enlarges with one constant
  probability `p` (`--growth_probability`).
* `Threshold` (`--method=threshold`): an id's size index is the number of
  thresholds `t0 * 2**j`, `j = 0..n-2`, that its running count has passed
  (`--growth_threshold` = `t0`): a frequency rule whose threshold doubles
  with each size.

With a memory budget (`--memory_budget`, or per side
`--user_memory_budget` / `--item_memory_budget`, which `bin/pareto.py` sets
to ESAPN's final ratios) `p` or `t0` is fitted per side, in closed form
from the stream, so that the final memory ratio equals the budget (exact
in expectation for `random`, exactly for `threshold`;
`search/matching.py`). A budget outside what the rule can reach takes the
nearest reachable end, and `results.json: method_parameters` says so.
"""

from typing import Any, Dict

import numpy as np
import tensorflow as tf

from esapn_tf.distribute import sharding
from esapn_tf.search import environment
from esapn_tf.search import frequency_matching
from esapn_tf.search import matching
from esapn_tf.search.methods import base


class _Growth(base.Method):
  """Shared by the two rules: per-side parameters and the step."""

  parameter = ''  # the name in results.json

  def __init__(self, ctx: base.Context):
    super().__init__(ctx)
    self.fits = {side: self._fit(side) for side in base.SIDES}

  def _fit(self, side: str) -> Dict[str, Any]:
    raise NotImplementedError

  def value(self, side: str) -> float:
    return self.fits[side]['value']

  def results(self) -> Dict[str, Any]:
    out = super().results()
    out['method_parameters'] = {self.parameter: self.fits}
    return out


class RandomGrowth(_Growth):
  """Each decision enlarges with probability `p` (module docstring)."""

  parameter = 'growth_probability'

  def _fit(self, side: str) -> Dict[str, Any]:
    budget = self.cfg.search.budget(side)
    p = self.cfg.search.growth_probability
    if not budget:
      return {'value': p, 'ratio': None, 'target': None, 'reached': True}
    s = self.ctx.stream
    decisions = matching.decisions_per_id(
        self.ctx.learned_ids(side), self.core.embeddings[side].num_ids,
        s.num_train, self.ctx.learned_examples, self.cfg.train.batch_size)
    return matching.fit_or_nearest(
        lambda r: matching.random_probability_for_ratio(decisions, r,
                                                        self.sizes),
        lambda q: matching.random_growth_ratio(decisions, q, self.sizes),
        (0.0, 1.0), budget, f'random growth ({side}s)')

  def learn(self, batch: base.Batch) -> Dict[str, tf.Tensor]:
    enlarge = {}
    for i, side in enumerate(base.SIDES):
      ids = batch[side]
      _, last = self.core.occurrence_masks(side, ids,
                                           batch[f'{side}_frequency'])
      seed = tf.stack([tf.cast(self.cfg.train.seed, tf.int64),
                       self.ctx.step * 2 + i])
      uniform = tf.random.stateless_uniform(tf.shape(ids), seed)
      enlarge[side] = environment.any_per_id(
          ids, tf.logical_and(last, uniform < self.value(side)))
    return self.core._train_step(  # pylint: disable=protected-access
        batch, enlarge['user'], enlarge['item'])


class Threshold(_Growth):
  """Size index = thresholds `t0 * 2**j` passed (module docstring)."""

  parameter = 'growth_threshold'

  def _fit(self, side: str) -> Dict[str, Any]:
    budget = self.cfg.search.budget(side)
    t0 = self.cfg.search.growth_threshold
    if not budget:
      return {'value': t0, 'ratio': None, 'target': None, 'reached': True}
    counts = np.bincount(self.ctx.learned_ids(side),
                         minlength=self.core.embeddings[side].num_ids)
    return matching.fit_or_nearest(
        lambda r: frequency_matching.threshold_for_ratio(counts, r, self.sizes),
        lambda t: frequency_matching.threshold_ratio(counts, t, self.sizes),
        (1.0, 2.0 * max(int(counts.max()), 1)), budget,
        f'threshold growth ({side}s)')

  def learn(self, batch: base.Batch) -> Dict[str, tf.Tensor]:
    n = len(self.sizes)
    wanted = {}
    for side in base.SIDES:
      ids = batch[side]
      emb = self.core.embeddings[side]
      thresholds = tf.constant(
          self.value(side) * 2.0**np.arange(n - 1), tf.float32)
      frequency = tf.cast(batch[f'{side}_frequency'], tf.float32)
      target = tf.reduce_sum(tf.cast(
          frequency[:, None] >= thresholds[None, :], tf.int32), -1)
      # An id may pass several thresholds within one batch: all but the
      # last step up here, the last in the recommender's step below.
      for _ in range(n - 2):
        base.enlarge_and_reset(
            self.core, self.ctx.optimizer, side, ids,
            environment.any_per_id(
                ids, target > sharding.gather(emb.size_index, ids) + 1))
      wanted[side] = environment.any_per_id(
          ids, target > sharding.gather(emb.size_index, ids))
    return self.core._train_step(  # pylint: disable=protected-access
        batch, wanted['user'], wanted['item'])
