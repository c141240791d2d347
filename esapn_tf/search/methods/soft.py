"""DARTS and AutoEmb: a soft mixture of every size (DESIGN.md §4).

The architecture weights (DARTS) or the controller (AutoEmb) take their
gradient step on the previous batch (`before_learn`), then the recommender
learns the current batch under the current soft weights
(`soft_search.SoftSearchCore`).
"""

from typing import Dict, Optional

import tensorflow as tf

from esapn_tf.search import soft_search
from esapn_tf.search.methods import base


class Soft(base.Method):
  """DARTS or AutoEmb, by `SearchConfig.method`."""

  soft_sizes = True
  needs_previous_batch = True

  @classmethod
  def make_core(cls, model, optimizer, cfg):
    return soft_search.SoftSearchCore(model, optimizer, cfg.search,
                                      jit_compile=cfg.train.jit_compile)

  def learn(self, batch: base.Batch) -> Dict[str, tf.Tensor]:
    return self.core.train_step(batch)

  def before_learn(self, prev: Optional[base.Batch]) -> Dict[str, tf.Tensor]:
    if prev is not None:
      self.core.architecture_step(prev)
    return {}
