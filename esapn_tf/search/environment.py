"""The recommender as the policies' environment (DESIGN.md §3).

`SearchCore` holds the per-id search state in TF variables (loss histories)
and the compiled computations that both the public `EmbeddingSizeEnvironment`
(a TF-Agents `PyEnvironment`) and the training loop's batched path use:

* observations: `(frequency, size index)` of each example's user and item;
* rewards: `R = mean(last T losses of the id) - L` (DESIGN.md §3), with two
  definitions of `L`, chosen by `SearchConfig.reward`:
  - 'tentative' (DESIGN.md §3 as written): `L` is the example's loss on the
    previous batch under freshly sampled tentative sizes, scored without
    training the recommender;
  - 'next_appearance' (the default): a decision taken at an id's last
    occurrence in a batch is rewarded at the id's next appearance in the
    stream, with `L` its loss there, before the recommender learns from it;
  with fewer than T past losses the mean is over those there are, and an id
  with no past loss gets reward 0 and weight 0;
* the recommender step: enlargements, one Adam step, history update.

Why two: an enlargement initialises the larger row with the lift of the
current one (DESIGN.md §2), so at the moment of the switch an id scores
exactly as at its current size. 'tentative' scoring therefore gives both
actions the same loss, and the REINFORCE gradient has zero expectation: the
policy cannot learn which action is better. 'next_appearance' measures the
effect of the size change after the recommender has trained with it, on data
it has not yet learned from. BUILD_NOTES.md has the measurements.
"""

from typing import Dict, Iterator, Optional, Tuple

import numpy as np
import tensorflow as tf
from tf_agents.environments import py_environment
from tf_agents.specs import array_spec
from tf_agents.trajectories import time_step as ts

from esapn_tf.distribute import mirrored
from esapn_tf.distribute import sharding
from esapn_tf.models import recommender
from esapn_tf.optimizers import lazy_adam
from esapn_tf.search import agent as agent_lib
from esapn_tf.search import groups
from esapn_tf.search import size_counts
from esapn_tf.search import state

SIDES = ('user', 'item')
Batch = Dict[str, tf.Tensor]


class SearchCore(state.PerIdState, tf.Module):
  """Per-id search state (`state.PerIdState`) and the compiled steps shared
  by env and loop."""

  def __init__(self, model: recommender.Recommender, optimizer,
               history_length: int = 5, jit_compile: bool = True):
    """Creates the state.

    Args:
      model: a built `Recommender`.
      optimizer: the recommender's optimizer (Adam, DESIGN.md §2):
        `lazy_adam.LazyAdam` (row-sparse table updates) or any Keras one.
      history_length: T, past losses per id kept for the reward.
      jit_compile: compile the scoring and the recommender step with XLA.
    """
    super().__init__(name='search_core')
    self.model = model
    self.optimizer = optimizer
    self.task = model.task
    self.history_length = int(history_length)
    self.embeddings = {'user': model.user_embedding,
                       'item': model.item_embedding}
    self._build_per_id_state(self.embeddings, self.history_length)
    # Ids per size, kept by the step (the summaries read these).
    self.size_counts = size_counts.SizeCounts(self.embeddings)
    self.tentative_loss = tf.function(self._tentative_loss,
                                      jit_compile=jit_compile)
    self.tables = [self.embeddings[side].table_variable for side in SIDES]
    self.dense_variables = dense_variables(model, self.tables)
    self.train_step = tf.function(self._train_step, jit_compile=jit_compile)
    self.evaluate = tf.function(self._evaluate, jit_compile=jit_compile)

  # ---------------------------------------------------------------- state
  def observe(self, batch: Batch) -> Dict[str, Dict[str, tf.Tensor]]:
    """Observation per side: `{'frequency', 'size_index'}` int32 `[batch]`."""
    return {
        side: {
            'frequency': tf.cast(batch[f'{side}_frequency'], tf.int32),
            'size_index': sharding.gather(self.embeddings[side].size_index,
                                    batch[side]),
        } for side in SIDES
    }

  # ------------------------------------------------------------- compiled
  def _tentative_loss(self, batch: Batch, user_action: tf.Tensor,
                      item_action: tf.Tensor) -> tf.Tensor:
    """Per-example loss float32 `[batch]` under the tentative sizes.

    Scores without training (BN in inference mode, no variable changes).
    The tentative size index is `min(s + a, n - 1)`; an enlarged id's row is
    the function-preserving lift of its current row, i.e. the vector it
    would get from `enlarge` (module docstring).
    """
    del user_action, item_action  # The preview reads the current vectors.
    logits = self.model(batch, training=False)
    return recommender.per_example_loss(self.task, batch['label'], logits)

  def rewards(self, batch: Batch, actions: Dict[str, tf.Tensor]
              ) -> Tuple[Dict[str, tf.Tensor], Dict[str, tf.Tensor]]:
    """Rewards and weights per side for actions on `batch` (DESIGN.md §3).

    Args:
      batch: examples (dict of `[batch]` tensors).
      actions: `{'user': int32 [batch], 'item': int32 [batch]}`.

    Returns:
      (rewards float32 `[batch]` per side, `mean(last T losses) - L`, 0 for
       ids without history; weights float32 `[batch]` per side, 1 where the
       decision is a training signal: the id has history and can enlarge).
    """
    losses = self.tentative_loss(batch, actions['user'], actions['item'])
    rewards, weights = {}, {}
    for side in SIDES:
      mean, has = self.history_mean(side, batch[side])
      rewards[side] = tf.where(has, mean - losses, 0.0)
      size = sharding.gather(self.embeddings[side].size_index, batch[side])
      can_enlarge = size < self.embeddings[side].num_sizes - 1
      weights[side] = tf.cast(tf.logical_and(has, can_enlarge), tf.float32)
    return rewards, weights

  def _train_step(self, batch: Batch, user_enlarge: tf.Tensor,
                  item_enlarge: tf.Tensor) -> Dict[str, tf.Tensor]:
    """Enlarges, takes one Adam step, and records each example's loss.

    Args:
      batch: examples; `label` float32 (binary) or int32 (multiclass).
      user_enlarge: bool `[batch]`, consistent across copies of an id.
      item_enlarge: bool `[batch]`, same for items.

    Returns:
      dict of float32 `[batch]`: 'loss' and 'correct' (before the step, BN in
      training mode), and bool `[batch]` 'user_enlarged'/'item_enlarged'.
    """
    # An enlarged row is a new table's row: Adam starts it afresh.
    adam = (self.optimizer if isinstance(self.optimizer, lazy_adam.LazyAdam)
            else None)
    before = {side: sharding.gather(self.embeddings[side].size_index, batch[side])
              for side in SIDES}
    user_enlarged = self.model.user_embedding.enlarge(batch['user'],
                                                      user_enlarge, adam)
    item_enlarged = self.model.item_embedding.enlarge(batch['item'],
                                                      item_enlarge, adam)
    for side, enlarged in (('user', user_enlarged), ('item', item_enlarged)):
      self.size_counts.move(side, batch[side], before[side],
                            before[side] + tf.cast(enlarged, tf.int32))
    # Under `--distribution=mirrored` each replica scores its share of the
    # batch and the gradients are summed over replicas (`mirrored`); the
    # rest of the step sees the whole batch.
    share = mirrored.ReplicaShare(batch)
    local = share.local(batch)
    with tf.GradientTape() as tape:
      logits = self.model(local, training=True)
      losses = recommender.per_example_loss(self.task, local['label'], logits)
      loss = share.mean(losses)
    apply_recommender_gradients(self.optimizer, tape, loss,
                                self.dense_variables, self.embeddings, batch,
                                share)
    losses = share.concat(losses)
    for side in SIDES:
      self._push_history(side, batch[side], batch[f'{side}_frequency'],
                         losses)
    return {
        'loss': losses,
        'correct': share.concat(recommender.per_example_correct(
            self.task, local['label'], logits)),
        'user_enlarged': user_enlarged,
        'item_enlarged': item_enlarged,
    }

  def _evaluate(self, batch: Batch) -> Dict[str, tf.Tensor]:
    """Scores a batch before learning from it (BN in inference mode).

    Returns:
      dict of float32 `[batch]`: 'loss' and 'correct'.
    """
    logits = self.model(batch, training=False)
    return {
        'loss': recommender.per_example_loss(self.task, batch['label'],
                                             logits),
        'correct': recommender.per_example_correct(self.task, batch['label'],
                                                   logits),
    }


def dense_variables(model: tf.keras.Model, tables) -> list:
  """The model's trainable variables other than `tables` (in model order).

  A sharded table's shards are left out too (`sharding.whole_tables`).
  """
  table_ids = {id(t) for t in tables}
  return [v for v in sharding.whole_tables(model.trainable_variables, tables)
          if id(v) not in table_ids]


def apply_recommender_gradients(optimizer, tape: tf.GradientTape,
                                loss: tf.Tensor, dense_variables,
                                embeddings: Dict[str, tf.keras.layers.Layer],
                                batch: Batch,
                                share: Optional[mirrored.ReplicaShare] = None
                                ) -> None:
  """One optimizer step of the recommender on `loss`.

  With `lazy_adam.LazyAdam`, each side's `table_variable` (read with one
  gather of the batch's ids) gets one row-sparse update, through the
  layer's storage (`apply_gradients`: dense table or pooled arena). Any other
  optimizer gets the plain `apply_gradients`.

  Args:
    optimizer: the recommender's optimizer.
    tape: the tape that recorded `loss`.
    loss: float32 scalar.
    dense_variables: the model's trainable variables other than the tables.
    embeddings: `{'user': layer, 'item': layer}` (`embedding.SizedTables`).
    batch: the batch (`'user'` and `'item'` int32 `[batch]` rows).
    share: the replica's share of `batch` when `loss` is its part of the
      batch mean (`mirrored.ReplicaShare`): the gradients are summed over
      the replicas first, so every replica applies the whole batch's.
  """
  tables = [embeddings[side].table_variable for side in SIDES]
  variables = list(dense_variables) + tables
  # A sharded table's gradient comes per shard (`sharding`).
  grads = sharding.regroup_gradients(
      tape.gradient(loss, sharding.gradient_sources(variables)), variables)
  if share is not None:
    grads = share.sum_gradients(grads)
  if not isinstance(optimizer, lazy_adam.LazyAdam):
    optimizer.apply_gradients(zip(grads, variables))
    return
  n = len(dense_variables)
  optimizer.apply_gradients(zip(grads[:n], dense_variables))
  for side, grad in zip(SIDES, grads[n:]):
    embeddings[side].apply_gradients(optimizer, grad, batch[side])


def any_per_id(ids: tf.Tensor, flags: tf.Tensor,
               num_ids: Optional[int] = None) -> tf.Tensor:
  """bool `[batch]`: True where any example of the same id has its flag.

  Used so that every copy of an id in a batch agrees on one decision.
  Sized by the batch (`groups.any_per_key`), not by the id count.

  Args:
    ids: int `[batch]` rows.
    flags: bool `[batch]`.
    num_ids: unused; accepted for callers written when the op was sized by
      the id count.
  """
  del num_ids
  return groups.any_per_key(flags, ids)


class EmbeddingSizeEnvironment(py_environment.PyEnvironment):
  """The policies' environment: one-step episodes over stream batches.

  Observation: `{'user': {'frequency', 'size_index'}, 'item': {...}}`, each
  int32 `[batch_size]` (the state of the example's user and item).
  Action: `{'user': int32, 'item': int32}` per example, 0 = unchanged,
  1 = enlarge. Reward: float32 `[batch_size, 2]`, column 0 the user's and
  column 1 the item's `mean(last T losses) - L` under the tentative sizes
  (`SearchCore.rewards`).

  `reset()` draws the next batch; `step(action)` scores it under the tentative
  sizes without training the recommender and ends the episode. The training
  loop calls the same `SearchCore.rewards` in a batched, compiled path and
  trains the recommender itself.
  """

  def __init__(self, core: SearchCore, batches: Iterator[Dict[str,
                                                               np.ndarray]],
               batch_size: int):
    """Creates the environment.

    Args:
      core: the shared `SearchCore`.
      batches: iterator of numpy batches, each with exactly `batch_size`
        examples (keys as produced by `stream.make_dataset`).
      batch_size: examples per episode batch.
    """
    super().__init__(handle_auto_reset=True)
    self._core = core
    self._batches = batches
    self._batch_size = int(batch_size)
    num_sizes = core.model.user_embedding.num_sizes
    self._observation_spec = {
        side: agent_lib.observation_spec(num_sizes) for side in SIDES}
    self._action_spec = {side: agent_lib.action_spec() for side in SIDES}
    self._batch: Optional[Dict[str, tf.Tensor]] = None

  @property
  def batched(self) -> bool:
    return True

  @property
  def batch_size(self) -> int:
    return self._batch_size

  def observation_spec(self):
    return self._observation_spec

  def action_spec(self):
    return self._action_spec

  def reward_spec(self):
    return array_spec.ArraySpec((2,), np.float32, name='reward')

  def _observation(self):
    obs = self._core.observe(self._batch)
    return {side: {k: v.numpy() for k, v in obs[side].items()}
            for side in SIDES}

  def _reset(self):
    batch = next(self._batches)
    self._batch = {k: tf.convert_to_tensor(v) for k, v in batch.items()}
    return ts.restart(self._observation(), batch_size=self._batch_size,
                      reward_spec=self.reward_spec())

  def _step(self, action):
    """Scores the batch under `action` and ends the episode.

    (`step` on an ended episode resets instead and ignores its action, as
    every TF-Agents environment with auto-reset does.)

    Raises:
      ValueError: naming the side and the bad value, for an action that is
        not `{'user': ..., 'item': ...}` with one integer in {0, 1} per
        example of the batch (`validate_action`).
    """
    validate_action(action, self._action_spec, self._batch_size)
    actions = {side: tf.convert_to_tensor(action[side], tf.int32)
               for side in SIDES}
    rewards, _ = self._core.rewards(self._batch, actions)
    reward = np.stack([rewards['user'].numpy(), rewards['item'].numpy()],
                      -1).astype(np.float32)
    return ts.termination(self._observation(), reward)


def validate_action(action, action_spec, batch_size: int) -> None:
  """Checks a batched action against `{side: BoundedArraySpec(())}`.

  Args:
    action: `{'user': int [batch_size], 'item': int [batch_size]}`.
    action_spec: the environment's action spec (one scalar spec per side).
    batch_size: examples per batch (one action per example and side).

  Raises:
    ValueError: for a missing side, a wrong length, a non-integer dtype, or
      a value outside the spec's bounds; the message names the side and the
      bad value.
  """
  if not isinstance(action, dict) or set(action) != set(action_spec):
    got = sorted(action) if isinstance(action, dict) else type(action).__name__
    raise ValueError(f'the action must be a dict with keys '
                     f'{sorted(action_spec)} (one array per side), got {got}.')
  for side in sorted(action_spec):
    spec, values = action_spec[side], np.asarray(action[side])
    if values.shape != (batch_size,):
      raise ValueError(
          f'the {side} action has shape {values.shape}; it must be '
          f'({batch_size},), one action per example of the batch.')
    if values.dtype != np.bool_ and not np.issubdtype(values.dtype,
                                                      np.integer):
      raise ValueError(f'the {side} action has dtype {values.dtype}; it '
                       f'must hold integers ({spec.dtype}).')
    bad = (values < spec.minimum) | (values > spec.maximum)
    if np.any(bad):
      i = int(np.argmax(bad))
      raise ValueError(
          f'the {side} action holds {values[i]} at example {i}; actions lie '
          f'in [{spec.minimum}, {spec.maximum}] (0 keeps the size, 1 '
          'enlarges).')
