"""Magnitude pruning of FIXED's tables at the end of the train part.

Budget: `round(prune_<side>_fraction * num_ids * d_max)` entries
(`baselines.kept_entries`; `d_max`, the largest candidate, is the memory
table's FIXED reference, so the fraction is the memory ratio the pruned
model ends with), met exactly; the other entries are set to 0 and stay 0
while the test part keeps learning (`Pruned.after_learn`).
"""

from typing import Any, Dict

import tensorflow as tf

from esapn_tf.search import baselines
from esapn_tf.search.methods import base


class Pruned(base.Method):
  """FIXED, pruned to a budget of kept entries before the test part."""

  def __init__(self, ctx: base.Context):
    super().__init__(ctx)
    self.pruned = tf.Variable(False, trainable=False, name='pruned')
    self.masks = {
        side: tf.Variable(tf.ones_like(self.core.embeddings[side].table(0)),
                          trainable=False, name=f'{side}_prune_mask')
        for side in base.SIDES}
    self._apply_masks = tf.function(self._apply)
    self._pruned_mean = {}  # side -> float32, the mean kept entries per id

  def start_phase(self, phase: str) -> None:
    super().start_phase(phase)
    if phase == 'test' and not bool(self.pruned):
      self.prune()

  def prune(self) -> None:
    """Keeps each side's largest-magnitude table entries (module doc)."""
    sc = self.cfg.search
    fractions = {'user': sc.prune_user_fraction,
                 'item': sc.prune_item_fraction}
    reference = self.cfg.model.candidate_sizes[-1]
    for side in base.SIDES:
      emb = self.core.embeddings[side]  # one size: table 0
      table = emb.table(0)
      num_ids, _ = table.shape
      mask = baselines.prune_mask(
          table.numpy(),
          baselines.kept_entries(fractions[side], num_ids, reference))
      self.masks[side].assign(mask)
      emb.assign_table(0, table * mask)
    self.pruned.assign(True)

  def after_learn(self, batch: base.Batch) -> None:
    if bool(self.pruned):
      self._apply_masks(batch)

  def _apply(self, batch: base.Batch) -> None:
    """Zeroes again the pruned entries of the rows a step touched."""
    for side in base.SIDES:
      table = self.core.embeddings[side].table_variable  # one size
      ids = batch[side]
      mask = tf.gather(self.masks[side], ids)
      table.scatter_nd_update(tf.expand_dims(ids, -1),
                              tf.gather(table, ids) * mask)

  def mean_dims(self, side: str) -> tf.Tensor:
    """Once pruned, the kept entries per id (the masks never change)."""
    if bool(self.pruned):
      if side not in self._pruned_mean:  # once per run: O(ids)
        self._pruned_mean[side] = tf.reduce_mean(self.dims_per_id(side))
      return self._pruned_mean[side]
    return super().mean_dims(side)

  def dims_per_id(self, side: str) -> tf.Tensor:
    """The size of the id's size index; once pruned, its kept entries."""
    if bool(self.pruned):
      return tf.reduce_sum(self.masks[side], -1)
    return super().dims_per_id(side)

  def memory(self) -> Dict[str, Any]:
    if not bool(self.pruned):
      return super().memory()
    return {side: baselines.pruned_memory_table(
        self.dims_per_id(side).numpy().astype('int64'),
        self.cfg.model.candidate_sizes, self.cfg.model.candidate_sizes[-1])
            for side in base.SIDES}

  def checkpoint_parts(self) -> Dict[str, Any]:
    parts = {'pruned': self.pruned}
    for side, mask in self.masks.items():
      parts[f'{side}_prune_mask'] = mask
    return parts
