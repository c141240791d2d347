"""Per-id search state: loss histories, counts and pending decisions.

`PerIdState` is mixed into `environment.SearchCore`: the variables stay
attributes of the core (the same checkpoint keys), and the methods that read
and write them live here. Every variable holds one row (or T entries) per
id and is created in `sharding.per_id_tables()`, so parameter-server
training shards it (`esapn_tf/distribute/sharding.py`). Bytes per id and
side: T float32 losses, one int32 count, and int32 pending action,
frequency and size (`4 * (T + 4)`; 36 with T = 5).
"""

from typing import Dict, Tuple

import tensorflow as tf

from esapn_tf.distribute import sharding
from esapn_tf.search import groups

Batch = Dict[str, tf.Tensor]
SIDES = ('user', 'item')


class PerIdState:
  """The per-id state of the search and its reads and writes (a mixin).

  The class using it sets `self.embeddings` (`{'user', 'item'}` embedding
  layers with `num_ids`, `num_sizes`) and `self.history_length` (T), then
  calls `_build_per_id_state`.
  """

  def _build_per_id_state(self, embeddings, history_length: int) -> None:
    """Creates the state variables (T = `history_length` losses per id).

    Args:
      embeddings: `{'user', 'item'}` layers with `num_ids`.
      history_length: T.
    """
    # Per-id state, sharded over the parameter servers under a parameter-
    # server strategy (`sharding.per_id_tables`).
    with sharding.per_id_tables():
      # Ring buffers of the last T losses per id, flat: id i's slot j is
      # entry `i * T + j` (element writes, which a sharded table routes to
      # its shards). One extra row is a sink for writes that must be
      # dropped (XLA scatters cannot skip entries).
      self.loss_history = {
          side: tf.Variable(
              tf.zeros([(embeddings[side].num_ids + 1) *
                        history_length]),
              trainable=False, name=f'{side}_loss_history')
          for side in SIDES
      }
      # Running frequency of the last loss pushed for each id (= losses
      # seen).
      self.history_count = {
          side: tf.Variable(
              tf.zeros([embeddings[side].num_ids], tf.int32),
              trainable=False, name=f'{side}_history_count')
          for side in SIDES
      }
      # The decision awaiting its reward, per id: the action taken at the
      # id's last occurrence (-1: none) and the state it was taken in. The
      # extra row is a sink for scatters from non-decision examples.
      self.pending_action = {
          side: tf.Variable(
              tf.fill([embeddings[side].num_ids + 1], -1),
              trainable=False, name=f'{side}_pending_action')
          for side in SIDES
      }
      self.pending_frequency = {
          side: tf.Variable(
              tf.ones([embeddings[side].num_ids + 1], tf.int32),
              trainable=False, name=f'{side}_pending_frequency')
          for side in SIDES
      }
      self.pending_size = {
          side: tf.Variable(
              tf.zeros([embeddings[side].num_ids + 1], tf.int32),
              trainable=False, name=f'{side}_pending_size')
          for side in SIDES
      }

  def per_id_variables(self, side: str):
    """[(name, variable)] of the side's per-id state, e.g. for a report of
    where its shards live (`distribute.strategy.describe`)."""
    return [(name, getattr(self, name)[side])
            for name in ('loss_history', 'history_count', 'pending_action',
                         'pending_frequency', 'pending_size')]

  def history_mean(self, side: str,
                   ids: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
    """Mean of each id's last `min(count, T)` losses.

    Args:
      side: 'user' or 'item'.
      ids: int32 `[batch]` rows.

    Returns:
      (float32 `[batch]` mean, 0 where there is no past loss;
       bool `[batch]`, True where the id has at least one past loss).
    """
    t = self.history_length
    count = tf.minimum(sharding.gather(self.history_count[side], ids), t)
    entries = (tf.expand_dims(tf.cast(ids, tf.int32) * t, -1) +
               tf.range(t, dtype=tf.int32))
    rows = sharding.gather(self.loss_history[side], entries)  # [batch, T]
    filled = tf.sequence_mask(count, t, dtype=tf.float32)
    total = tf.reduce_sum(rows * filled, -1)
    has = count > 0
    mean = total / tf.cast(tf.maximum(count, 1), tf.float32)
    return tf.where(has, mean, 0.0), has

  def _push_history(self, side: str, ids: tf.Tensor, frequency: tf.Tensor,
                    losses: tf.Tensor) -> None:
    """Appends each example's loss to its id's ring of the last T losses.

    The slot of the loss at running frequency `f` is `(f - 1) mod T`. When an
    id occurs more than T times in one batch only its last T losses are
    written (the others go to the sink row), so the result does not depend on
    scatter order.
    """
    t = self.history_length
    num_ids = self.embeddings[side].num_ids
    frequency = tf.cast(frequency, tf.int32)
    last_of_id = groups.max_per_key(frequency, ids)
    keep = frequency > last_of_id - t
    rows = tf.where(keep, ids, num_ids)
    slots = tf.math.floormod(frequency - 1, t)
    sharding.scatter_update(self.loss_history[side], rows * t + slots,
                            losses)
    sharding.scatter_update(self.history_count[side], ids, last_of_id)

  def occurrence_masks(self, side: str, ids: tf.Tensor, frequency: tf.Tensor
                       ) -> Tuple[tf.Tensor, tf.Tensor]:
    """bool `[batch]` (first, last): each id's first and last copy in a batch.

    Running frequencies grow by one per occurrence, so the copy with the
    smallest (largest) frequency is the first (last). Sized by the batch
    (`groups.py`).
    """
    del side  # the same for both sides
    return (groups.first_copies(ids, frequency),
            groups.last_copies(ids, frequency))

  def pending_experience(self, side: str, batch: Batch, losses: tf.Tensor,
                         baseline: tf.Tensor):
    """Rewards the decisions that this batch's first occurrences resolve.

    For the first copy of each id whose previous decision is pending:
    observation = the state the decision was taken in, action = the action
    taken, reward = `baseline - loss` (reward 'next_appearance').

    Args:
      side: 'user' or 'item'.
      batch: the batch (ids and frequencies).
      losses: float32 `[batch]`, each example's loss before the recommender
        learned from it.
      baseline: float32 `[batch]`, the mean of each id's last T losses before
        this batch (`history_mean`).

    Returns:
      (observation dict of int32 `[batch]`, action int32 `[batch]`, reward
       float32 `[batch]`, weight float32 `[batch]`: 1 for resolved decisions,
       0 elsewhere).
    """
    ids = batch[side]
    first, _ = self.occurrence_masks(side, ids, batch[f'{side}_frequency'])
    action = sharding.gather(self.pending_action[side], ids)
    valid = tf.logical_and(first, action >= 0)
    observation = {
        'frequency': sharding.gather(self.pending_frequency[side], ids),
        'size_index': sharding.gather(self.pending_size[side], ids),
    }
    reward = tf.where(valid, baseline - losses, 0.0)
    return (observation, tf.maximum(action, 0), reward,
            tf.cast(valid, tf.float32))

  def record_decisions(self, side: str, ids: tf.Tensor,
                       observation: Dict[str, tf.Tensor], action: tf.Tensor,
                       is_decision: tf.Tensor) -> None:
    """Stores each id's decision (taken at its last copy) until its reward.

    Decisions at the largest size (enlarge masked) are stored as none.
    """
    num_ids = self.embeddings[side].num_ids
    can_enlarge = observation['size_index'] < self.embeddings[side].num_sizes - 1
    rows = tf.where(is_decision, ids, num_ids)
    sharding.scatter_update(
        self.pending_action[side], rows,
        tf.where(can_enlarge, tf.cast(action, tf.int32), -1))
    sharding.scatter_update(self.pending_frequency[side], rows,
                            tf.cast(observation['frequency'], tf.int32))
    sharding.scatter_update(self.pending_size[side], rows,
                            observation['size_index'])
