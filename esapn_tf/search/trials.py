"""Paired trials: the reward of ESAPN's policies by default (`reward='paired'`).

Why: the paper's reward (DESIGN.md §3) and the next-appearance reward compare
an id's loss on one later example with its past losses. The effect of one
enlargement on that loss is about 1e-3, the example's own noise about 0.3,
so about 200 policy steps cannot find it (issue 11; BUILD_NOTES.md, "A
policy that learns"). Here the example's noise cancels:

* An id at size index `k < n-1` that is not under trial starts one when it
  appears (and its slot is free): a *shadow row* at size `k+1` is written
  with the function-preserving lift of its row (DESIGN.md §2), so at the
  start both give the same output.
* In every batch of the trial the shadow row takes its own Adam step on the
  shadow's loss (the id's examples scored with the shadow, the other side's
  vector real; the recommender's other variables do not learn from it), as
  the real row does on the real loss.
* At each later appearance, before anything learns from the example, it is
  scored with the id's real row and with its shadow (BN in inference mode
  for both); the paired difference `L_real - L_shadow` is summed.
* After `trial_length` scored appearances the trial resolves, before the
  batch is learned from: the benefit `b = mean(L_real - L_shadow)` is what
  enlarging gained over those appearances. The policy decides in the id's
  state (running frequency, size index `k`); the reward of enlarging is
  `b - lambda * (d_{k+1} - d_k) / d_max` (`rewards.py`), of keeping the size
  0. REINFORCE trains on a sampled action; the recommender follows the
  greedy action. Enlarging adopts the trained shadow row and its Adam
  moments. The id starts its next trial at once, so an id that appears in
  every batch is decided on at every appearance after its first, as in the
  paper.

Shadow rows live in a pool of `capacity = min(num_ids, trial_slots)` slots
per side; id `i` may use slot `i mod capacity` when it is free (or its
owner's trial is older than `trial_timeout_steps`, which then ends without a
reward). An extra last row is a sink for scatters that must be dropped (XLA
scatters cannot skip entries). Every op here is sized by the batch, never
by the id count or the pool (per-slot reductions use `groups.py`); the
pool's rows are read and written by index.
"""

from typing import Dict, Optional

import tensorflow as tf

from esapn_tf.distribute import mirrored
from esapn_tf.distribute import sharding
from esapn_tf.layers import embedding as embedding_lib
from esapn_tf.models import recommender
from esapn_tf.optimizers import lazy_adam
from esapn_tf.search import groups

SIDES = ('user', 'item')

# A trial pool's variable as the step writes it (its replica's own copy
# under `--distribution=mirrored`: `MirroredVariable` has no `scatter_nd_*`).
_own = mirrored.own_copy


class TrialPool(tf.Module):
  """Shadow rows and trial state of one side.

  Variables (`C` = capacity, the last row of each a sink):
    owner: int32 `[C + 1]`, the id under trial in each slot, -1 when free.
    rows: float32 `[C + 1, d_n]`, the shadow rows, at the owner's size
      index + 1 (layout of `MultiSizeEmbedding.gather_rows`).
    appearances: int32 `[C + 1]`, examples scored so far in the trial.
    updates: int32 `[C + 1]`, batches whose gradient the shadow took.
    benefit_sum: float32 `[C + 1]`, sum of `L_real - L_shadow` over them.
    start_step: int64 `[C + 1]`, the step the trial started at.
  """

  def __init__(self, layer: embedding_lib.MultiSizeEmbedding,
               trial_slots: int, name: str):
    """Creates an empty pool.

    Args:
      layer: the side's embedding (built).
      trial_slots: the most slots to hold (`SearchConfig.trial_slots`).
      name: module name, e.g. 'user_trials'.
    """
    super().__init__(name=name)
    self.layer = layer
    self.capacity = int(min(layer.num_ids, trial_slots))
    c = self.capacity + 1
    self.owner = tf.Variable(tf.fill([c], -1), trainable=False, name='owner')
    self.rows = tf.Variable(tf.zeros([c, layer.output_dim]), name='rows')
    self.appearances = tf.Variable(tf.zeros([c], tf.int32), trainable=False,
                                   name='appearances')
    self.updates = tf.Variable(tf.zeros([c], tf.int32), trainable=False,
                               name='updates')
    self.benefit_sum = tf.Variable(tf.zeros([c]), trainable=False,
                                   name='benefit_sum')
    self.start_step = tf.Variable(tf.zeros([c], tf.int64), trainable=False,
                                  name='start_step')

  @property
  def sink(self) -> int:
    return self.capacity

  def slot(self, ids: tf.Tensor) -> tf.Tensor:
    """int32 `[batch]`: the slot each id may use, `id mod capacity`."""
    return tf.math.floormod(tf.cast(ids, tf.int32), self.capacity)

  def trial_slot(self, ids: tf.Tensor):
    """(in_trial bool `[batch]`, slot int32 `[batch]`, the sink elsewhere)."""
    slot = self.slot(ids)
    in_trial = tf.equal(tf.gather(self.owner, slot), tf.cast(ids, tf.int32))
    return in_trial, tf.where(in_trial, slot, self.sink)

  def live_trials(self) -> tf.Tensor:
    """int32: slots holding a trial."""
    return tf.reduce_sum(tf.cast(self.owner[:-1] >= 0, tf.int32))


def _shadow_losses(model, pools: Dict[str, TrialPool], batch, trial):
  """(real loss, {side: shadow loss}) float32 `[batch]`, BN in inference mode.

  The shadow loss of a side scores each example with the side's vector
  from the shadow row of `trial[side]`'s slot (the sink outside trials) at
  the id's size index + 1, and the other side's real vector.
  """
  real = {side: pools[side].layer(batch[side], training=False)
          for side in SIDES}
  real_loss = recommender.per_example_loss(
      model.task, batch['label'], model.head(real['user'], real['item'],
                                             training=False))
  shadow_loss = {}
  for side in SIDES:
    layer = pools[side].layer
    _, slot = trial[side]
    size = tf.minimum(sharding.gather(layer.size_index, batch[side]) + 1,
                      layer.num_sizes - 1)
    vectors = dict(real)
    vectors[side] = layer.vectors(tf.gather(pools[side].rows, slot), size,
                                  training=False)
    shadow_loss[side] = recommender.per_example_loss(
        model.task, batch['label'],
        model.head(vectors['user'], vectors['item'], training=False))
  return real_loss, shadow_loss


def score(model, pools: Dict[str, TrialPool], batch):
  """Adds each trial's paired differences on `batch` (before learning).

  BN in inference mode: no variable of the model changes. A fresh shadow
  scores exactly as the real row (function-preserving lift), so only
  examples after the shadow's first update count.

  Args:
    model: the `Recommender`.
    pools: `{'user': TrialPool, 'item': TrialPool}`.
    batch: `{'user', 'item'}` int32 `[batch]` rows and `'label'`.

  Returns:
    `{side: (in_trial bool [batch], slot int32 [batch] (the sink outside
    trials))}`, the trials as they were when scored.
  """
  trial = {side: pools[side].trial_slot(batch[side]) for side in SIDES}
  real_loss, shadow_loss = _shadow_losses(model, pools, batch, trial)
  for side in SIDES:
    pool = pools[side]
    in_trial, slot = trial[side]
    counted = tf.logical_and(in_trial, tf.gather(pool.updates, slot) > 0)
    index = tf.expand_dims(slot, -1)
    _own(pool.appearances).scatter_nd_add(index, tf.cast(counted, tf.int32))
    _own(pool.benefit_sum).scatter_nd_add(
        index, tf.where(counted, real_loss - shadow_loss[side], 0.0))
  return trial


def train_shadows(model, pools: Dict[str, TrialPool], batch,
                  shadow_optimizer: lazy_adam.LazyAdam) -> None:
  """One Adam step of every shadow row on its loss over `batch`.

  The loss of a side's shadows is the mean over the batch of the shadow
  loss of the examples whose id is under trial (as the real rows' loss is
  the batch mean); only the shadow rows move.

  Args:
    model: the `Recommender`.
    pools: `{'user': TrialPool, 'item': TrialPool}`.
    batch: `{'user', 'item'}` int32 `[batch]` rows and `'label'`.
    shadow_optimizer: the `LazyAdam` over every pool's `rows`.
  """
  trial = {side: pools[side].trial_slot(batch[side]) for side in SIDES}
  batch_size = tf.cast(tf.shape(batch['user'])[0], tf.float32)
  variables = [pools[side].rows for side in SIDES]
  with tf.GradientTape(watch_accessed_variables=False) as tape:
    tape.watch(variables)
    _, shadow_loss = _shadow_losses(model, pools, batch, trial)
    total = tf.add_n([
        tf.reduce_sum(tf.where(trial[side][0], shadow_loss[side], 0.0))
        for side in SIDES]) / batch_size
  grads = tape.gradient(total, variables)
  count_step = True
  for side, grad, var in zip(SIDES, grads, variables):
    shadow_optimizer.apply_row_gradients(
        grad.indices, [(grad.values, var)], count_step=count_step)
    count_step = False
    _, slot = trial[side]
    pool = pools[side]
    _own(pool.updates).scatter_nd_update(tf.expand_dims(slot, -1),
                                   tf.gather(pool.updates, slot) + 1)


def per_slot_any(flags: tf.Tensor, slot: tf.Tensor,
                 size: Optional[int] = None) -> tf.Tensor:
  """bool `[batch]`: True where any example with the same slot is flagged.

  Sized by the batch (`groups.py`); `size` (the pool's rows) is unused.
  """
  del size
  return groups.any_per_key(flags, slot)


def last_in_slot(frequency: tf.Tensor, slot: tf.Tensor,
                 size: Optional[int] = None) -> tf.Tensor:
  """bool `[batch]`: each slot's example with the largest running frequency.

  Ids under trial own one slot each, so this is the id's last copy in the
  batch (running frequencies grow by one per occurrence). Sized by the
  batch (`groups.py`); `size` (the pool's rows) is unused.
  """
  del size
  return groups.last_copies(slot, frequency)


def adopt(pool: TrialPool, optimizer: lazy_adam.LazyAdam,
          shadow_optimizer: lazy_adam.LazyAdam, ids: tf.Tensor,
          slot: tf.Tensor, chosen: tf.Tensor) -> tf.Tensor:
  """Enlarges the `chosen` ids by taking over their trained shadow rows.

  Row, size index (+1) and both Adam moments come from the shadow. Every
  copy of an id writes the same values (`chosen` must agree across copies).

  Args:
    pool: the side's pool.
    optimizer: the recommender's `LazyAdam` (holds the table's moments).
    shadow_optimizer: the pools' `LazyAdam`.
    ids: int32 `[batch]` rows.
    slot: int32 `[batch]` from `TrialPool.trial_slot`.
    chosen: bool `[batch]`.

  Returns:
    bool `[batch]`: the ids enlarged (a pooled layout refuses an
    enlargement into a full pool, `layers/pooled_embedding.py`).
  """
  m, v = shadow_optimizer.slots(pool.rows)
  return pool.layer.move_up(ids, chosen, tf.gather(pool.rows, slot),
                            optimizer, (tf.gather(m, slot),
                                        tf.gather(v, slot)))


def free(pool: TrialPool, slot: tf.Tensor, resolved: tf.Tensor) -> None:
  """Frees the slots of resolved trials (others write to the sink)."""
  target = tf.expand_dims(tf.where(resolved, slot, pool.sink), -1)
  _own(pool.owner).scatter_nd_update(target, tf.fill(tf.shape(slot), -1))


def start(pool: TrialPool, shadow_optimizer: lazy_adam.LazyAdam,
          ids: tf.Tensor, step: tf.Tensor, timeout_steps: int) -> tf.Tensor:
  """Starts trials for ids of the batch whose slot is free.

  An id may start when it is not under trial, can still enlarge, and its
  slot is free or holds a trial older than `timeout_steps` (which ends
  without a reward). Several candidates for one slot: the largest id wins
  (deterministic). The shadow row is the function-preserving lift of the
  id's current row (DESIGN.md §2); its moments start at zero.

  Args:
    pool: the side's pool.
    shadow_optimizer: the pools' `LazyAdam`.
    ids: int32 `[batch]` rows.
    step: int64 scalar, the current step.
    timeout_steps: steps after which a trial's slot may be taken.

  Returns:
    bool `[batch]`: the examples whose id started a trial.
  """
  layer = pool.layer
  slot = pool.slot(ids)
  owner = tf.gather(pool.owner, slot)
  expired = step - tf.gather(pool.start_step, slot) > timeout_steps
  size = sharding.gather(layer.size_index, ids)
  candidate = tf.logical_and(
      tf.logical_and(tf.not_equal(owner, ids),
                     tf.logical_or(owner < 0, expired)),
      size < layer.num_sizes - 1)
  winner = groups.max_per_key(tf.where(candidate, ids, -1), slot)
  won = tf.logical_and(candidate, tf.equal(winner, ids))
  target = tf.expand_dims(tf.where(won, slot, pool.sink), -1)
  n = tf.shape(ids)[:1]
  _own(pool.owner).scatter_nd_update(target, tf.where(won, ids, -1))
  _own(pool.rows).scatter_nd_update(
      target, layer.next_size_rows(layer.gather_rows(ids), size))
  _own(pool.appearances).scatter_nd_update(target, tf.zeros(n, tf.int32))
  _own(pool.updates).scatter_nd_update(target, tf.zeros(n, tf.int32))
  _own(pool.benefit_sum).scatter_nd_update(target, tf.zeros(n))
  _own(pool.start_step).scatter_nd_update(target, tf.fill(n, step))
  shadow_optimizer.reset_rows(pool.rows, tf.squeeze(target, -1), won)
  return won
