"""The `tf.Module` saved for TensorFlow Serving (README: "Serving with ...").

Signatures (all ids are raw MovieLens ids, int64):

* `serving_default(user_id [batch], movie_id [batch])` ->
  binary: `probability` float32 `[batch]` (P(rating > 3.5));
  multiclass: `probabilities` float32 `[batch, 5]` (classes 0..4 =
  ratings rounded up to 1..5) and `predicted_class` int64 `[batch]`;
  both: `known_user`, `known_movie` bool `[batch]`.
* `predict_ranked(user_id [batch], movie_ids [batch, n])` -> per row
  (one user and its n candidates): `movie_ids` int64 `[batch, n]` sorted by
  decreasing score, `scores` float32 `[batch, n]` (binary: the probability;
  multiclass: the expected rating class `sum_c p_c * (c + 1)`, in 1..5),
  `known_movie` bool `[batch, n]` in the same order and `known_user` bool
  `[batch]`. Ties keep the order of the request.

Every input and output has the batch as its first dimension, as TF
Serving's `--enable_batching` requires (it concatenates requests along
dimension 0 and refuses scalar inputs or inputs of unequal first
dimension).

Unknown ids (never seen in training, negative, or beyond int32) are not an
error: they get the side's `unknown_embedding` (`params.SideParams`), the
vector of the mean known id, and `known_* = False`. An empty batch gives
empty outputs.

Inputs of the wrong rank, or of unequal batch sizes, raise
`InvalidArgumentError` naming the signature, the input and the shape it
expects (`check_inputs`).
"""

from typing import Dict, Sequence, Tuple

import tensorflow as tf

from esapn_tf.serving import params as params_lib

SERVING_DEFAULT = 'serving_default'
PREDICT_RANKED = 'predict_ranked'
# Expected shape of each input, by signature (README: "Serving with ...").
INPUT_SHAPES = {
    SERVING_DEFAULT: {'user_id': '[batch]', 'movie_id': '[batch]'},
    PREDICT_RANKED: {'user_id': '[batch]', 'movie_ids': '[batch, n]'},
}


def check_inputs(signature: str,
                 inputs: Sequence[Tuple[str, tf.Tensor]]
                 ) -> Tuple[tf.Tensor, ...]:
  """Checks the rank of each input and that they share the batch size.

  Two checks per input, because each catches what the other cannot:
  a `tf.debugging.Assert` on the runtime rank, with a message naming the
  signature, the input and its expected shape, fires when the SavedModel
  runs in a session (TF Serving's C++ path and the TF1 loader: a fed
  tensor's shape is not trusted there), while `tf.ensure_shape` fires under
  `tf.saved_model.load`, where Grappler folds the rank to the signature's
  static rank and removes the first check.

  Args:
    signature: the signature's name, a key of `INPUT_SHAPES`.
    inputs: (name, int64 tensor) pairs; the expected rank is read from
      `INPUT_SHAPES[signature][name]`.

  Returns:
    The inputs, in order, with the checks as dependencies and static
    shapes `[None]` or `[None, None]`.

  Raises:
    tf.errors.InvalidArgumentError (when run): an input of another rank,
      e.g. `serving_default: user_id must be int64 [batch]; got shape
      [2 3]`, or inputs whose first dimensions differ.
  """
  checked = []
  for name, x in inputs:
    expected = INPUT_SHAPES[signature][name]
    rank = expected.count(',') + 1
    shape = tf.shape(x, out_type=tf.int64)
    message = f'{signature}: {name} must be int64 {expected}; got shape'
    # The raw op: `tf.size` would fold the static rank at trace time.
    rank_ok = tf.debugging.Assert(
        tf.equal(tf.raw_ops.Size(input=shape), rank), [message, shape])
    with tf.control_dependencies([rank_ok]):
      checked.append(tf.ensure_shape(x, [None] * rank, name=f'check_{name}'))
  first, shape0 = inputs[0][0], tf.shape(checked[0], out_type=tf.int64)
  same = []
  for (name, _), x in zip(inputs[1:], checked[1:]):
    shape = tf.shape(x, out_type=tf.int64)
    same.append(tf.debugging.Assert(tf.equal(shape[0], shape0[0]), [
        f'{signature}: {first} and {name} must have the same first '
        f'dimension (batch); got shapes', shape0, 'and', shape]))
  with tf.control_dependencies(same):
    return tuple(tf.identity(x) for x in checked)


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
        tf.TensorSpec([None], tf.int64, name='user_id'),
        tf.TensorSpec([None, None], tf.int64, name='movie_ids')])

  def logits(self, user_id: tf.Tensor, movie_id: tf.Tensor):
    """(float32 `[batch, 1 or 5]` logits, known_user, known_movie)."""
    v_user, known_user = self.user(user_id)
    v_movie, known_movie = self.movie(movie_id)
    x = tf.concat([v_user, v_movie], -1)
    x = tf.tanh(tf.matmul(x, self.hidden_kernel) + self.hidden_bias)
    return tf.matmul(x, self.out_kernel) + self.out_bias, known_user, known_movie

  def _serve(self, user_id, movie_id) -> Dict[str, tf.Tensor]:
    user_id, movie_id = check_inputs(
        SERVING_DEFAULT, [('user_id', user_id), ('movie_id', movie_id)])
    logits, known_user, known_movie = self.logits(user_id, movie_id)
    out = {'known_user': known_user, 'known_movie': known_movie}
    if self.task == 'binary':
      out['probability'] = tf.sigmoid(tf.squeeze(logits, -1))
    else:
      out['probabilities'] = tf.nn.softmax(logits)
      out['predicted_class'] = tf.argmax(logits, -1, output_type=tf.int64)
    return out

  def _predict_ranked(self, user_id, movie_ids) -> Dict[str, tf.Tensor]:
    user_id, movie_ids = check_inputs(
        PREDICT_RANKED, [('user_id', user_id), ('movie_ids', movie_ids)])
    shape = tf.shape(movie_ids)  # [batch, n]
    users = tf.broadcast_to(tf.expand_dims(user_id, -1), shape)
    logits, _, known_movie = self.logits(tf.reshape(users, [-1]),
                                         tf.reshape(movie_ids, [-1]))
    if self.task == 'binary':
      scores = tf.sigmoid(tf.squeeze(logits, -1))
    else:
      classes = tf.range(1, self._num_classes + 1, dtype=tf.float32)
      scores = tf.linalg.matvec(tf.nn.softmax(logits), classes)
    scores = tf.reshape(scores, shape)
    known_movie = tf.reshape(known_movie, shape)
    order = tf.argsort(scores, axis=-1, direction='DESCENDING', stable=True)
    return {'movie_ids': tf.gather(movie_ids, order, batch_dims=1),
            'scores': tf.gather(scores, order, batch_dims=1),
            'known_movie': tf.gather(known_movie, order, batch_dims=1),
            'known_user': tf.reshape(self.user.lookup.lookup(user_id) >= 0,
                                     [-1])}

  def signatures(self) -> Dict[str, tf.types.experimental.ConcreteFunction]:
    return {SERVING_DEFAULT: self.serve.get_concrete_function(),
            PREDICT_RANKED: self.predict_ranked.get_concrete_function()}
