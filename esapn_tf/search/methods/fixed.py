"""FIXED and MDE: sizes set before the run and never changed.

* FIXED (`Fixed`): every id at `--fixed_size` (the model holds one size).
* MDE (`Mde`): mixed-dimension embeddings (Ginart et al., 2019, §3), sizes
  from the train part's counts (`baselines.mde_size_indices`); with a
  memory budget the temperature alpha is fitted per side so that the
  memory ratio equals it (`frequency_matching.mde_temperature_for_ratio`).
"""

from typing import Any, Dict

import numpy as np

from esapn_tf.search import baselines
from esapn_tf.search import frequency_matching
from esapn_tf.search import matching
from esapn_tf.search.methods import base


class Fixed(base.Method):
  """Every id at one size: the base class's behaviour."""


class Mde(base.Method):
  """MDE: size indices from the train counts, fixed for the run."""

  def __init__(self, ctx: base.Context):
    super().__init__(ctx)
    s, sc = ctx.stream, self.cfg.search
    self.temperature = {}
    for side in base.SIDES:
      emb = self.core.embeddings[side]
      counts = np.bincount(getattr(s, side)[:s.num_train],
                           minlength=emb.num_ids)
      alpha = sc.mde_temperature
      if sc.budget(side):
        alpha = matching.fit_or_nearest(
            lambda r, c=counts: frequency_matching.mde_temperature_for_ratio(
                c, r, self.sizes),
            lambda a, c=counts: float(np.mean(np.asarray(self.sizes)[
                baselines.mde_size_indices(c, self.sizes, a)]) /
                                      self.sizes[-1]),
            (0.0, 1.0), sc.budget(side), f'MDE ({side}s)')['value']
      self.temperature[side] = float(alpha)
      emb.size_index.assign(baselines.mde_size_indices(counts, self.sizes,
                                                       alpha))

  def results(self) -> Dict[str, Any]:
    out = super().results()
    out['method_parameters'] = {'mde_temperature': self.temperature}
    return out
