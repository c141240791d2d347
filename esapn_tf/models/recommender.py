"""The recommender: user and item `MultiSizeEmbedding`s and the inference MLP.

Architecture (DESIGN.md §2): `concat(v_user, v_item)` `[2*d_n]` -> BN ->
Dense(hidden) -> BN -> tanh -> Dense(out). Binary task: one logit, sigmoid,
squared error against the 0/1 label (the paper's "MSE"). Multiclass task: five
logits, softmax cross-entropy against `ceil(rating) - 1`.
"""

from typing import Dict, Optional, Sequence

import tensorflow as tf

from esapn_tf import config as config_lib
from esapn_tf.distribute import mirrored
from esapn_tf.layers import embedding
from esapn_tf.layers import pooled_embedding
from esapn_tf.layers import soft_embedding

TASK_OUTPUTS = {'binary': 1, 'multiclass': 5}


@tf.keras.utils.register_keras_serializable(package='esapn_tf')
class Recommender(tf.keras.Model):
  """Embeddings plus inference MLP, for the binary or the multiclass task.

  Call input: a dict with `'user'` and `'item'` int32 `[batch]` rows.
  Call output: logits float32 `[batch]` (binary) or `[batch, 5]` (multiclass).

  The embeddings are `MultiSizeEmbedding`s (one hard size per id: ESAPN,
  FIXED, MDE, pruned), or with `soft_sizes=True` `SoftSizeEmbedding`s (a
  soft mixture of every size: DARTS, AutoEmb; DESIGN.md §4).
  """

  def __init__(self,
               num_users: int,
               num_items: int,
               candidate_sizes: Sequence[int],
               task: str = 'binary',
               hidden_units: int = 512,
               batch_norm_momentum: float = 0.9,
               soft_sizes: bool = False,
               pooled: bool = False,
               user_budget: float = 0.0,
               item_budget: float = 0.0,
               headroom: int = 512,
               user_step_dims: float = 0.0,
               item_step_dims: float = 0.0,
               **kwargs):
    """Creates the model.

    Args:
      num_users: rows of the user tables.
      num_items: rows of the item tables.
      candidate_sizes: strictly increasing embedding sizes (dimensions).
      task: 'binary' or 'multiclass'.
      hidden_units: width of the hidden layer.
      batch_norm_momentum: momentum of every BN's moving statistics.
      soft_sizes: use `SoftSizeEmbedding` (soft mixture of sizes).
      pooled: store each id at its current size only
        (`pooled_embedding.PooledEmbedding`; not with `soft_sizes`).
      user_budget: pooled only: the user side's memory budget (share of
        FIXED-`d_n` dims, 0 = none), which sizes its arena up front.
      item_budget: the same for the item side.
      headroom: pooled only: the most ids of a side one step can move (the
        batch size).
      user_step_dims: pooled with a budget: the dims the budget's pace adds
        per step on the user side (sizes the arena's slack; 0 = unknown).
      item_step_dims: the same for the item side.
      **kwargs: passed to `tf.keras.Model`.

    Raises:
      ValueError: for an unknown task or bad sizes.
    """
    super().__init__(**kwargs)
    if task not in TASK_OUTPUTS:
      raise ValueError(f'task must be one of {sorted(TASK_OUTPUTS)}, '
                       f'got {task!r}.')
    self.num_users = int(num_users)
    self.num_items = int(num_items)
    self.candidate_sizes = tuple(int(d) for d in candidate_sizes)
    self.task = task
    self.hidden_units = int(hidden_units)
    self.batch_norm_momentum = float(batch_norm_momentum)
    self.soft_sizes = bool(soft_sizes)
    self.pooled = bool(pooled)
    self.user_budget = float(user_budget)
    self.item_budget = float(item_budget)
    self.headroom = int(headroom)
    self.user_step_dims = float(user_step_dims)
    self.item_step_dims = float(item_step_dims)
    if self.pooled and self.soft_sizes:
      raise ValueError('pooled storage holds one size per id; it cannot be '
                       'combined with soft_sizes.')
    layer = (soft_embedding.SoftSizeEmbedding if self.soft_sizes else
             embedding.MultiSizeEmbedding)
    extra = {}
    if self.pooled:
      layer = pooled_embedding.PooledEmbedding
      extra = {side: {'budget': getattr(self, f'{side}_budget'),
                      'headroom': self.headroom,
                      'step_dims': getattr(self, f'{side}_step_dims')}
               for side in ('user', 'item')}
    self.user_embedding = layer(
        num_users, self.candidate_sizes,
        batch_norm_momentum=batch_norm_momentum, name='user_embedding',
        **extra.get('user', {}))
    self.item_embedding = layer(
        num_items, self.candidate_sizes,
        batch_norm_momentum=batch_norm_momentum, name='item_embedding',
        **extra.get('item', {}))
    self.input_norm = mirrored.batch_normalization(
        momentum=batch_norm_momentum, name='input_norm')
    self.hidden = tf.keras.layers.Dense(hidden_units, name='hidden')
    self.hidden_norm = mirrored.batch_normalization(
        momentum=batch_norm_momentum, name='hidden_norm')
    self.out = tf.keras.layers.Dense(TASK_OUTPUTS[task], name='logits')

  def build_all(self) -> None:
    """Creates every variable (call once before saving or tracing)."""
    ids = tf.zeros([1], tf.int32)
    self({'user': ids, 'item': ids}, training=False)

  def call(self,
           inputs: Dict[str, tf.Tensor],
           training=None,
           user_weights: Optional[tf.Tensor] = None,
           item_weights: Optional[tf.Tensor] = None):
    """Logits for a batch of (user, item) pairs.

    Args:
      inputs: `{'user': int32 [batch], 'item': int32 [batch]}` rows.
      training: BN mode.
      user_weights: soft embeddings only: float32 `[batch, n]` mixture
        weights (None: one-hot of the stored size); same for `item_weights`.

    Returns:
      float32 `[batch]` (binary) or `[batch, 5]` (multiclass) logits.
    """
    if self.soft_sizes:
      v_user = self.user_embedding(inputs['user'], training=training,
                                   weights=user_weights)
      v_item = self.item_embedding(inputs['item'], training=training,
                                   weights=item_weights)
    else:
      v_user = self.user_embedding(inputs['user'], training=training)
      v_item = self.item_embedding(inputs['item'], training=training)
    return self.head(v_user, v_item, training=training)

  def head(self, v_user: tf.Tensor, v_item: tf.Tensor, training=None):
    """The inference MLP on given embedding vectors (DESIGN.md §2).

    Args:
      v_user: float32 `[batch, d_n]` user vectors (the embedding's output).
      v_item: float32 `[batch, d_n]` item vectors.
      training: BN mode; with False no variable changes.

    Returns:
      float32 `[batch]` (binary) or `[batch, 5]` (multiclass) logits.
    """
    x = self.input_norm(tf.concat([v_user, v_item], -1), training=training)
    x = tf.tanh(self.hidden_norm(self.hidden(x), training=training))
    logits = self.out(x)
    if self.task == 'binary':
      logits = tf.squeeze(logits, -1)
    return logits

  def get_config(self):
    return {
        'num_users': self.num_users,
        'num_items': self.num_items,
        'candidate_sizes': list(self.candidate_sizes),
        'task': self.task,
        'hidden_units': self.hidden_units,
        'batch_norm_momentum': self.batch_norm_momentum,
        'soft_sizes': self.soft_sizes,
        'pooled': self.pooled,
        'user_budget': self.user_budget,
        'item_budget': self.item_budget,
        'headroom': self.headroom,
        'user_step_dims': self.user_step_dims,
        'item_step_dims': self.item_step_dims,
        'name': self.name,
    }


def from_config(cfg: config_lib.ExperimentConfig, num_users: int,
                num_items: int, soft_sizes: bool = False,
                learned_examples: int = 0) -> Recommender:
  """The run's model, built (`build_all`), as `cfg` lays its storage out.

  The trainer and `serving/params.restore_run` both call this, so a
  checkpoint is restored into the layout that wrote it (pooled for
  `cfg.pooled_storage`, with the same budgets and headroom).

  Args:
    cfg: the run's config.
    num_users: rows of the user side (ids seen).
    num_items: rows of the item side.
    soft_sizes: the method mixes every size softly (DARTS, AutoEmb).
    learned_examples: examples the run learns from (0: unknown). With a
      budget, the pace adds `(B - d_0 / d_n) x num_ids x d_n x batch /
      learned_examples` dims per step (`search/rewards.MemoryCost.target`),
      which sizes the pooled arena's slack.

  Returns:
    A built `Recommender`.
  """
  sizes = cfg.embedding_sizes
  step_dims = {}
  for side, num_ids in (('user', num_users), ('item', num_items)):
    budget = cfg.search.budget(side)
    step_dims[side] = 0.0
    if budget and learned_examples:
      step_dims[side] = (max(budget - sizes[0] / sizes[-1], 0.0) * num_ids *
                         sizes[-1] * cfg.train.batch_size / learned_examples)
  model = Recommender(
      num_users, num_items, cfg.embedding_sizes, task=cfg.model.task,
      hidden_units=cfg.model.hidden_units,
      batch_norm_momentum=cfg.model.batch_norm_momentum,
      soft_sizes=soft_sizes, pooled=cfg.pooled_storage,
      user_budget=cfg.search.budget('user'),
      item_budget=cfg.search.budget('item'),
      headroom=cfg.train.batch_size, user_step_dims=step_dims['user'],
      item_step_dims=step_dims['item'])
  model.build_all()
  return model


def per_example_loss(task: str, labels: tf.Tensor,
                     logits: tf.Tensor) -> tf.Tensor:
  """Loss of each example: float32 `[batch]`.

  Binary: `(sigmoid(logit) - y)^2` with `y` in {0, 1} (DESIGN.md §2, "MSE").
  Multiclass: softmax cross-entropy with the class `y` in 0..4.
  """
  if task == 'binary':
    return tf.square(tf.sigmoid(logits) - tf.cast(labels, tf.float32))
  return tf.nn.sparse_softmax_cross_entropy_with_logits(
      labels=tf.cast(labels, tf.int32), logits=logits)


def per_example_correct(task: str, labels: tf.Tensor,
                        logits: tf.Tensor) -> tf.Tensor:
  """float32 `[batch]`: 1 where the prediction is right, else 0.

  Binary: predicted positive iff the logit > 0 (probability > 0.5).
  Multiclass: argmax of the logits equals the class.
  """
  if task == 'binary':
    predicted = tf.cast(logits > 0, tf.float32)
    return tf.cast(tf.equal(predicted, tf.cast(labels, tf.float32)),
                   tf.float32)
  predicted = tf.argmax(logits, -1, output_type=tf.int32)
  return tf.cast(tf.equal(predicted, tf.cast(labels, tf.int32)), tf.float32)
