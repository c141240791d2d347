"""Running counts of ids per candidate size, kept up to date by the step.

The summaries of a run (mean embedding size, the size histogram) used to
read every id's size index every `summary_every` steps: work that grows
with the id count, not the batch (issue 12). Here each side keeps int64
`[n]` counts of ids per size index; whatever changes sizes in a step tells
`SizeCounts.move` (the enlargements of `SearchCore`, the threshold rule's
extra steps, the adopted trials of the paired reward, the soft methods'
argmax), at a cost sized by the batch (`groups.one_per_key`).

The counts are recounted from the size indices at the start of each part
of the stream (`SizeCounts.recount`, called by `Method.start_phase`, also
after a resume): once per part, which the id count may cost. They are not
in the checkpoint (a plain Python object, not a `tf.Module`), so the
checkpoint's layout does not change.
"""

from typing import Dict

import numpy as np
import tensorflow as tf

from esapn_tf.search import groups


class SizeCounts:
  """Ids per size index of each side: `counts[side]` int64 `[n]`."""

  def __init__(self, embeddings: Dict[str, tf.keras.layers.Layer]):
    """Creates the counts and fills them from the layers' size indices.

    Args:
      embeddings: `{'user': layer, 'item': layer}` (`embedding.SizedTables`,
        built).
    """
    self.embeddings = embeddings
    self.counts = {
        side: tf.Variable(tf.zeros([layer.num_sizes], tf.int64),
                          trainable=False, name=f'{side}_size_counts')
        for side, layer in embeddings.items()}
    self.recount()

  def recount(self) -> None:
    """Counts from the size indices (once per part; O(ids))."""
    for side, layer in self.embeddings.items():
      self.counts[side].assign(tf.cast(layer.size_counts(), tf.int64))

  def move(self, side: str, ids: tf.Tensor, before: tf.Tensor,
           after: tf.Tensor) -> None:
    """Moves each id of the batch from size index `before` to `after`.

    Args:
      side: 'user' or 'item'.
      ids: int `[batch]` rows, possibly repeated.
      before: int32 `[batch]`, each example's size index before the change.
      after: int32 `[batch]`, after it; equal for all copies of an id.
    """
    n = self.embeddings[side].num_sizes
    once = tf.cast(tf.expand_dims(groups.one_per_key(ids), -1), tf.int64)
    change = (tf.one_hot(after, n, dtype=tf.int64) -
              tf.one_hot(before, n, dtype=tf.int64))
    self.counts[side].assign_add(tf.reduce_sum(once * change, 0))

  def mean_dims(self, side: str) -> tf.Tensor:
    """float32 scalar: the mean embedding size (dims) of the side's ids."""
    layer = self.embeddings[side]
    sizes = tf.constant(np.asarray(layer.candidate_sizes, np.float64))
    total = tf.reduce_sum(tf.cast(self.counts[side], tf.float64) * sizes)
    return tf.cast(total / float(layer.num_ids), tf.float32)
