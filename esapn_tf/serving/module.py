"""The `tf.Module` saved for TensorFlow Serving (README: "Serving with ...").

Signatures (all ids are raw MovieLens ids, int64):

* `serving_default(user_id [batch], movie_id [batch])` ->
  binary: `probability` float32 `[batch]` (P(rating > 3.5));
  multiclass: `probabilities` float32 `[batch, 5]` (classes 0..4 =
  ratings rounded up to 1..5) and `predicted_class` int64 `[batch]`;
  both: `known_user`, `known_movie` bool `[batch]`.
* `predict_ranked(user_id [], movie_ids [n])` -> `movie_ids` int64 `[n]`
  sorted by decreasing score, `scores` float32 `[n]` (binary: the
  probability; multiclass: the expected rating class `sum_c p_c * (c + 1)`,
  in 1..5), `known_movie` bool `[n]` in the same order and `known_user` bool
  `[]`. Ties keep the order of the request.

Unknown ids (never seen in training, negative, or beyond int32) are not an
error: they get the side's `unknown_embedding` (`params.SideParams`), the
vector of the mean known id, and `known_* = False`. An empty batch gives
empty outputs.
"""

from typing import Dict, Tuple

import tensorflow as tf

from esapn_tf.serving import params as params_lib

SERVING_DEFAULT = 'serving_default'
PREDICT_RANKED = 'predict_ranked'


class SideLookup(tf.Module):
  """Raw id -> embedding of one side, from the compact tables."""

  def __init__(self, p: params_lib.SideParams, name: str):
    """Creates the variables and the hash table.

    Args:
      p: the side's compact parameters.
      name: 'user' or 'movie'.
    """
    super().__init__(name=name)
    self._rows = [int(t.shape[0]) for t in p.tables]
    self._dims = [int(t.shape[1]) for t in p.tables]
    self.tables = [tf.Variable(t, trainable=False, name=f'table_{d}')
                   for t, d in zip(p.tables, p.sizes)]
    self.lift_kernels = [tf.Variable(w, trainable=False, name='lift_kernel')
                         for w in p.lift_kernels]
    self.lift_biases = [tf.Variable(b, trainable=False, name='lift_bias')
                        for b in p.lift_biases]
    self.unknown_embedding = tf.Variable(p.unknown_embedding, trainable=False,
                                         name='unknown_embedding')
    self.lookup = tf.lookup.experimental.MutableHashTable(
        tf.int64, tf.int64, default_value=-1, name=f'{name}_lookup')
    self.lookup.insert(tf.constant(p.vocab), tf.constant(p.codes))

  def __call__(self, ids: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
    """Embeds raw ids.

    Args:
      ids: int64 `[batch]` raw ids, any value.

    Returns:
      (float32 `[batch, d_n]` vectors `tanh(lift(row))` or the unknown
      embedding, bool `[batch]` known).
    """
    code = self.lookup.lookup(ids)
    known = code >= 0
    code = tf.where(known, code, tf.zeros_like(code))
    size = tf.expand_dims(
        tf.cast(tf.bitwise.right_shift(code, params_lib.CODE_SHIFT), tf.int32),
        -1)
    row = tf.bitwise.bitwise_and(code, params_lib.ROW_MASK)

    def gather(k):
      # Rows of ids at other sizes may be out of range here; they are
      # clipped and their values discarded by the `where` below.
      return tf.gather(self.tables[k], tf.minimum(row, self._rows[k] - 1))

    if self._rows[0]:
      x = gather(0)
    else:
      x = tf.zeros([tf.shape(ids)[0], self._dims[0]])
    for k in range(1, len(self.tables)):
      x = tf.matmul(x, self.lift_kernels[k - 1]) + self.lift_biases[k - 1]
      if self._rows[k]:
        x = tf.where(size == k, gather(k), x)
    vectors = tf.where(tf.expand_dims(known, -1), tf.tanh(x),
                       tf.expand_dims(self.unknown_embedding, 0))
    return vectors, known


class ServingModel(tf.Module):
  """Compact ESAPN (or FIXED reference) model with the serving signatures."""

  def __init__(self, p: params_lib.ServingParams):
    super().__init__(name='esapn_serving')
    self.task = p.task
    self._num_classes = int(p.out_kernel.shape[1])
    self.user = SideLookup(p.user, 'user')
    self.movie = SideLookup(p.item, 'movie')
    self.hidden_kernel = tf.Variable(p.hidden_kernel, trainable=False,
                                     name='hidden_kernel')
    self.hidden_bias = tf.Variable(p.hidden_bias, trainable=False,
                                   name='hidden_bias')
    self.out_kernel = tf.Variable(p.out_kernel, trainable=False,
                                  name='out_kernel')
    self.out_bias = tf.Variable(p.out_bias, trainable=False, name='out_bias')
    self.serve = tf.function(self._serve, input_signature=[
        tf.TensorSpec([None], tf.int64, name='user_id'),
        tf.TensorSpec([None], tf.int64, name='movie_id')])
    self.predict_ranked = tf.function(self._predict_ranked, input_signature=[
        tf.TensorSpec([], tf.int64, name='user_id'),
        tf.TensorSpec([None], tf.int64, name='movie_ids')])

  def logits(self, user_id: tf.Tensor, movie_id: tf.Tensor):
    """(float32 `[batch, 1 or 5]` logits, known_user, known_movie)."""
    v_user, known_user = self.user(user_id)
    v_movie, known_movie = self.movie(movie_id)
    x = tf.concat([v_user, v_movie], -1)
    x = tf.tanh(tf.matmul(x, self.hidden_kernel) + self.hidden_bias)
    return tf.matmul(x, self.out_kernel) + self.out_bias, known_user, known_movie

  def _serve(self, user_id, movie_id) -> Dict[str, tf.Tensor]:
    logits, known_user, known_movie = self.logits(user_id, movie_id)
    out = {'known_user': known_user, 'known_movie': known_movie}
    if self.task == 'binary':
      out['probability'] = tf.sigmoid(tf.squeeze(logits, -1))
    else:
      out['probabilities'] = tf.nn.softmax(logits)
      out['predicted_class'] = tf.argmax(logits, -1, output_type=tf.int64)
    return out

  def _predict_ranked(self, user_id, movie_ids) -> Dict[str, tf.Tensor]:
    users = tf.fill(tf.shape(movie_ids), user_id)
    logits, _, known_movie = self.logits(users, movie_ids)
    if self.task == 'binary':
      scores = tf.sigmoid(tf.squeeze(logits, -1))
    else:
      classes = tf.range(1, self._num_classes + 1, dtype=tf.float32)
      scores = tf.linalg.matvec(tf.nn.softmax(logits), classes)
    order = tf.argsort(scores, direction='DESCENDING', stable=True)
    return {'movie_ids': tf.gather(movie_ids, order),
            'scores': tf.gather(scores, order),
            'known_movie': tf.gather(known_movie, order),
            'known_user': self.user.lookup.lookup(user_id) >= 0}

  def signatures(self) -> Dict[str, tf.types.experimental.ConcreteFunction]:
    return {SERVING_DEFAULT: self.serve.get_concrete_function(),
            PREDICT_RANKED: self.predict_ranked.get_concrete_function()}
