"""Mirrored data parallelism (`--distribution=mirrored`): the batch's share
of each replica, and the cross-replica sums and concatenations of the step.

Like `sharding`, a floor of `esapn_tf/distribute/` that imports nothing of
esapn_tf (`layers/` and `search/` use it).

How the step runs under `tf.distribute.MirroredStrategy` (README, "Training
on several devices"; BUILD_NOTES, "Mirrored data parallelism"):

* Every variable is mirrored: one copy per replica (device), all equal.
* The trainer calls `strategy.run(step, args=(batch,))` with the whole
  batch, so every replica sees all of it.
* The recommender's forward and backward pass, the step's dominant cost, is
  data parallel: replica r takes the contiguous share
  `[r B / n, (r + 1) B / n)` of the B examples (`ReplicaShare`), scores it,
  and the gradients are summed over the replicas (dense ones with
  `all_reduce`, row gradients concatenated with `all_gather`, in replica
  order, which is batch order). BatchNormalization is synchronized
  (`batch_normalization`), so its statistics are the whole batch's. The
  result is the single-device step up to float rounding.
* Everything else (the policies, the enlargements, the per-id state, the
  optimizer's row updates) runs on the whole batch on every replica, on
  equal inputs with stateless random numbers keyed by (seed, step), so each
  replica writes the same values into its own copy. Per-id variables have
  `VariableAggregation.NONE`, so a write in replica context goes to the
  replica's own copy, without cross-replica traffic.
* The TF-Agents policy losses divide by the global batch (batch x replicas)
  and their Keras optimizer sums the replicas' gradients: the same mean.
"""

from typing import Dict, Sequence

import tensorflow as tf


def _replica_context():
  """The replica context when more than one replica runs, else None."""
  if not tf.distribute.has_strategy():
    return None
  ctx = tf.distribute.get_replica_context()
  if ctx is None or ctx.num_replicas_in_sync <= 1:
    return None
  return ctx


def is_mirrored_scope() -> bool:
  """True inside a `MirroredStrategy`'s scope (variables made now mirror)."""
  return (tf.distribute.has_strategy() and
          isinstance(tf.distribute.get_strategy(),
                     tf.distribute.MirroredStrategy))


def batch_normalization(**kwargs) -> tf.keras.layers.BatchNormalization:
  """A Keras `BatchNormalization`, synchronized over the replicas when made
  in a `MirroredStrategy`'s scope (statistics of the whole batch).

  Elsewhere the usual layer, so a one-device run keeps its exact graph; both
  have the same variables, so checkpoints restore either way.

  Args:
    **kwargs: passed to `tf.keras.layers.BatchNormalization`.
  """
  if is_mirrored_scope():
    kwargs['synchronized'] = True
  return tf.keras.layers.BatchNormalization(**kwargs)


def own_copy(var):
  """The copy of mirrored `var` that this replica writes, else `var`.

  `MirroredVariable` has no `scatter_nd_*`; a variable with
  `VariableAggregation.NONE` written in replica context is written in the
  replica's own copy anyway, so the step may call them on that copy. Every
  replica writes the same values (module docstring).
  """
  if (isinstance(var, tf.distribute.DistributedValues) and
      not tf.distribute.in_cross_replica_context()):
    return var._get_on_device_or_primary()  # pylint: disable=protected-access
  return var


class ReplicaShare:
  """This replica's contiguous share of a batch of B examples.

  Outside a multi-replica `strategy.run` the share is the whole batch and
  `split` is False: callers then keep their single-device code.

  Args (constructor):
    batch: dict of `[B, ...]` tensors (the whole batch).
  """

  def __init__(self, batch: Dict[str, tf.Tensor]):
    self._ctx = _replica_context()
    self.split = self._ctx is not None
    self.global_size = tf.shape(next(iter(batch.values())))[0]
    if self.split:
      n = self._ctx.num_replicas_in_sync
      r = self._ctx.replica_id_in_sync_group
      self._lo = r * self.global_size // n
      self._hi = (r + 1) * self.global_size // n

  def local(self, batch: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    """The replica's rows of every `[B, ...]` tensor of `batch`."""
    if not self.split:
      return batch
    return {k: v[self._lo:self._hi] for k, v in batch.items()}

  def concat(self, values: tf.Tensor) -> tf.Tensor:
    """`[b_r, ...]` per replica -> `[B, ...]` in batch order (all_gather)."""
    if not self.split:
      return values
    return self._ctx.all_gather(values, axis=0)

  def sum_gradients(self, grads: Sequence) -> list:
    """Gradients of each replica's share of the mean loss -> the whole
    batch's: dense ones summed (all_reduce), `tf.IndexedSlices` (row
    gradients) concatenated in batch order. None stays None.
    """
    if not self.split:
      return list(grads)
    dense = [g for g in grads
             if g is not None and not isinstance(g, tf.IndexedSlices)]
    summed = iter(self._ctx.all_reduce(tf.distribute.ReduceOp.SUM, dense)
                  if dense else [])
    out = []
    for g in grads:
      if g is None:
        out.append(None)
      elif isinstance(g, tf.IndexedSlices):
        out.append(tf.IndexedSlices(self.concat(g.values),
                                    self.concat(g.indices), g.dense_shape))
      else:
        out.append(next(summed))
    return out

  def mean(self, per_example: tf.Tensor) -> tf.Tensor:
    """This replica's share of the whole batch's mean: sum / B (the
    replicas' shares add up to the mean; `tf.reduce_mean` when not split).
    """
    if not self.split:
      return tf.reduce_mean(per_example)
    return tf.reduce_sum(per_example) / tf.cast(self.global_size,
                                                per_example.dtype)
