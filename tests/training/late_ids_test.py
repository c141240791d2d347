"""Ids that first appear late in the stream (issue 12).

On a chronological stream of real ratings, users and movies keep arriving:
some are first seen deep in the train part, some only in the test part.
ESAPN with pooled storage under a memory budget must leave such an id's row,
size and search state exactly as built until its first appearance, then
train it (its row moves, it gets decisions), and the compact serving export
must map its raw id to the trained row.
"""

import numpy as np
import tensorflow as tf

from esapn_tf import config
from esapn_tf.data import stream as stream_lib
from esapn_tf.serving import module as module_lib
from esapn_tf.serving import params
from esapn_tf.training import trainer as trainer_lib
from tests import real_data

_BATCH = 500
_SIDES = ('user', 'item')


def _first_batch(rows: np.ndarray, num_ids: int) -> np.ndarray:
  """int64 [num_ids]: the batch in which each row first appears."""
  first = np.full(num_ids, np.iinfo(np.int64).max)
  np.minimum.at(first, rows, np.arange(rows.shape[0]) // _BATCH)
  return first


class LateIdsTest(tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.path = None

  def _state(self, t, side, ids):
    """What an id holds: its row at the first size, its size index, and its
    search state. (Columns past an id's size read the arena's sink, which
    masked writes change; they are not the id's.)"""
    layer = t.core.embeddings[side]
    core = t.core
    return {
        'row': layer.gather_rows(ids).numpy()[:, :layer.candidate_sizes[0]],
        'size': tf.gather(layer.size_index, ids).numpy(),
        'history_count': tf.gather(core.history_count[side], ids).numpy(),
        'pending_action': tf.gather(core.pending_action[side], ids).numpy(),
    }

  def test_late_ids_wait_untouched_then_train_and_export(self):
    path = real_data.ml_latest_small_path(self)
    s = stream_lib.build_stream(
        stream_lib.load_ratings('ml-latest-small', path, max_ratings=20_000),
        'binary', 'chronological', 0.8, 0)
    tf.keras.utils.set_random_seed(0)
    cfg = config.ExperimentConfig(
        model=config.ModelConfig(embedding_storage='pooled'),
        search=config.SearchConfig(method='esapn', memory_budget=0.3),
        train=config.TrainConfig(batch_size=_BATCH, seed=0,
                                 jit_compile=False))
    t = trainer_lib.Trainer(cfg, s)
    num_batches = s.num_examples // _BATCH
    train_batches = s.num_train // _BATCH
    rows = {'user': s.user, 'item': s.item}
    nums = {'user': s.num_users, 'item': s.num_items}
    first = {side: _first_batch(rows[side][:num_batches * _BATCH],
                                nums[side]) for side in _SIDES}
    # Ids first seen in the last quarter of the train part, and in the
    # test part: the stream must have both on each side.
    mid = {side: np.flatnonzero((first[side] >= 3 * train_batches // 4) &
                                (first[side] < train_batches))
           for side in _SIDES}
    test_only = {side: np.flatnonzero((first[side] >= train_batches) &
                                      (first[side] < num_batches))
                 for side in _SIDES}
    for side in _SIDES:
      self.assertGreater(len(mid[side]), 0, side)
      self.assertGreater(len(test_only[side]), 0, side)
    late = {side: np.concatenate([mid[side], test_only[side]])
            for side in _SIDES}
    built = {side: self._state(t, side, late[side]) for side in _SIDES}

    batches = list(stream_lib.make_dataset(s, 0, num_batches * _BATCH,
                                           _BATCH))
    for b, batch in enumerate(batches):
      for side in _SIDES:
        waiting = late[side][first[side][late[side]] > b]
        if len(waiting):  # not yet seen, before this batch's step
          now = self._state(t, side, waiting)
          was = {k: v[first[side][late[side]] > b]
                 for k, v in built[side].items()}
          for key in now:
            self.assertAllEqual(now[key], was[key],
                                f'{side} {key} before batch {b}')
      if b < train_batches:
        t.learn(batch)
      else:  # prequential: scored, then learned from
        t._evaluate_then_learn(batch)  # pylint: disable=protected-access
      t.position.assign_add(_BATCH)
      for side in _SIDES:
        t.core.embeddings[side].reserve()

    for side in _SIDES:
      after = self._state(t, side, late[side])
      moved = (np.any(after['row'] != built[side]['row'], axis=1) |
               (after['size'] > built[side]['size']))
      # Every late id trained: its row moved (or grew) and its losses were
      # recorded.
      self.assertTrue(np.all(moved), side)
      self.assertTrue(np.all(after['history_count'] > 0), side)

    # The export maps each late raw id to its trained row: the servable's
    # logits equal the model's for (late user, late movie) pairs.
    vocab = {'user': s.user_vocab, 'item': s.item_vocab}
    served = module_lib.ServingModel(params.compact_params(t.model, vocab))
    n = min(len(late['user']), len(late['item']))
    users, items = late['user'][:n], late['item'][:n]
    logits, known_user, known_movie = served.logits(
        tf.constant(s.user_vocab[users]), tf.constant(s.item_vocab[items]))
    self.assertAllEqual(known_user, np.ones(n, bool))
    self.assertAllEqual(known_movie, np.ones(n, bool))
    expected = t.model({'user': tf.constant(users, tf.int32),
                        'item': tf.constant(items, tf.int32)},
                       training=False)
    self.assertAllClose(tf.reshape(logits, [-1]), tf.reshape(expected, [-1]),
                        atol=1e-4)


if __name__ == '__main__':
  tf.test.main()
