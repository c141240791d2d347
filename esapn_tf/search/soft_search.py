"""The DARTS and AutoEmb training steps (DESIGN.md §4).

For each batch `t` of the stream:

1. architecture step on the previous batch `t-1`: the loss under the
   current soft weights, differentiated with respect to the architecture
   variables only (DARTS' per-id logits, AutoEmb's controller), and one Adam
   step on them (the first-order DARTS approximation, Liu et al. 2019 §2.3,
   with the previous batch as the validation batch);
2. model step on batch `t`: the soft weights are computed (and, for
   AutoEmb, stored as each id's current weights) and held fixed while the
   recommender takes one Adam step.

Each id's hard size, the argmax of its weights, is kept in the embedding's
`size_index` for the memory table and the summaries.
"""

from typing import Dict

import tensorflow as tf

from esapn_tf import config as config_lib
from esapn_tf.models import recommender
from esapn_tf.optimizers import lazy_adam
from esapn_tf.search import baselines
from esapn_tf.search import environment
from esapn_tf.search import size_counts

SIDES = ('user', 'item')
Batch = Dict[str, tf.Tensor]


class SoftSearchCore(tf.Module):
  """Selectors, optimizers and the compiled steps of DARTS and AutoEmb."""

  def __init__(self, model: recommender.Recommender,
               optimizer: lazy_adam.LazyAdam,
               search: config_lib.SearchConfig, jit_compile: bool = True):
    """Creates the selectors (one per side) and their optimizer.

    Args:
      model: a built `Recommender` with `soft_sizes=True`.
      optimizer: the recommender's `LazyAdam`.
      search: method 'darts' or 'autoemb', and its settings.
      jit_compile: compile the steps with XLA.

    Raises:
      ValueError: for another method or a model without soft sizes.
    """
    super().__init__(name='soft_search_core')
    if search.method not in config_lib.SOFT_METHODS:
      raise ValueError(f'method must be one of {config_lib.SOFT_METHODS}, '
                       f'got {search.method!r}.')
    if not model.soft_sizes:
      raise ValueError('the model must be built with soft_sizes=True.')
    self.model = model
    self.optimizer = optimizer
    self.task = model.task
    self.embeddings = {'user': model.user_embedding,
                       'item': model.item_embedding}
    self.selectors = {}
    for side in SIDES:
      emb = self.embeddings[side]
      if search.method == 'darts':
        self.selectors[side] = baselines.DartsWeights(
            emb.num_ids, emb.num_sizes, name=f'{side}_darts')
      else:
        self.selectors[side] = baselines.AutoEmbController(
            emb.num_ids, emb.num_sizes, search.num_frequency_buckets,
            search.frequency_embedding_dim, search.controller_hidden_units,
            name=f'{side}_autoemb')
    self.architecture_variables = [
        v for side in SIDES
        for v in self.selectors[side].architecture_variables]
    self.architecture_optimizer = lazy_adam.LazyAdam(
        self.architecture_variables, search.architecture_learning_rate,
        name='architecture_adam')
    self.tables = [self.embeddings[side].table_variable for side in SIDES]
    self.dense_variables = environment.dense_variables(model, self.tables)
    # Ids per hard size, kept by the step (the summaries read these).
    self.size_counts = size_counts.SizeCounts(self.embeddings)
    self.architecture_step = tf.function(self._architecture_step,
                                         jit_compile=jit_compile)
    self.train_step = tf.function(self._train_step, jit_compile=jit_compile)
    self.evaluate = tf.function(self._evaluate, jit_compile=jit_compile)

  def weights(self, batch: Batch) -> Dict[str, tf.Tensor]:
    """float32 `[batch, n]` mixture weights per side (rows sum to 1)."""
    return {side: self.selectors[side].weights(batch[side],
                                               batch[f'{side}_frequency'])
            for side in SIDES}

  def _logits(self, batch: Batch, weights, training: bool) -> tf.Tensor:
    return self.model(batch, training=training,
                      user_weights=weights['user'],
                      item_weights=weights['item'])

  def _architecture_step(self, batch: Batch) -> tf.Tensor:
    """One Adam step on the architecture variables; returns the mean loss."""
    with tf.GradientTape() as tape:
      logits = self._logits(batch, self.weights(batch), training=True)
      loss = tf.reduce_mean(recommender.per_example_loss(
          self.task, batch['label'], logits))
    grads = tape.gradient(loss, self.architecture_variables)
    self.architecture_optimizer.apply_gradients(
        zip(grads, self.architecture_variables))
    return loss

  def _train_step(self, batch: Batch) -> Dict[str, tf.Tensor]:
    """One recommender step under fixed soft weights.

    Returns:
      dict of float32 `[batch]`: 'loss' and 'correct' (before the step, BN in
      training mode).
    """
    weights = {k: tf.stop_gradient(w) for k, w in self.weights(batch).items()}
    with tf.GradientTape() as tape:
      logits = self._logits(batch, weights, training=True)
      losses = recommender.per_example_loss(self.task, batch['label'], logits)
      loss = tf.reduce_mean(losses)
    environment.apply_recommender_gradients(
        self.optimizer, tape, loss, self.dense_variables, self.embeddings,
        batch)
    for side in SIDES:
      ids, frequency = batch[side], batch[f'{side}_frequency']
      self.selectors[side].remember(ids, frequency, weights[side])
      emb = self.embeddings[side]
      last = baselines.last_copies(ids, frequency)
      hard = baselines.per_id_value(
          ids, last, tf.argmax(weights[side], -1, output_type=tf.int32))
      before = tf.gather(emb.size_index, ids)
      emb.size_index.scatter_nd_update(tf.expand_dims(ids, -1), hard)
      self.size_counts.move(side, ids, before, hard)
    return {
        'loss': losses,
        'correct': recommender.per_example_correct(self.task, batch['label'],
                                                   logits),
    }

  def _evaluate(self, batch: Batch) -> Dict[str, tf.Tensor]:
    """Scores a batch before learning from it (BN in inference mode)."""
    logits = self._logits(batch, self.weights(batch), training=False)
    return {
        'loss': recommender.per_example_loss(self.task, batch['label'],
                                             logits),
        'correct': recommender.per_example_correct(self.task, batch['label'],
                                                   logits),
    }
