"""Tests for esapn_tf.data.stream."""

import os
import tempfile

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from esapn_tf import errors
from esapn_tf.data import id_index
from esapn_tf.data import ratings
from esapn_tf.data import stream
from esapn_tf.search import matching
from tests import real_data

# Six ratings, worked by hand below. Row order is "file order".
_USERS = [10, 20, 10, 30, 20, 10]
_ITEMS = [100, 5, 5, 100, 7, 100]
_STARS = [4.0, 3.5, 5.0, 1.0, 0.5, 4.5]
_TIMES = [50, 10, 40, 20, 30, 60]


def _six(timestamps=_TIMES, users=_USERS) -> ratings.Ratings:
  return ratings.Ratings(
      user_id=np.array(users, np.int64),
      item_id=np.array(_ITEMS, np.int64),
      rating=np.array(_STARS, np.float32),
      timestamp=np.array(timestamps, np.int64),
      name='six')


class LabelsTest(tf.test.TestCase):

  def test_every_rating_value(self):
    # DESIGN.md section 2: binary = rating > 3.5, multiclass = ceil(rating) - 1.
    stars = np.arange(1, 11, dtype=np.float32) / 2  # 0.5, 1.0, ..., 5.0
    binary = [0, 0, 0, 0, 0, 0, 0, 1, 1, 1]  # 3.5 -> 0, 4.0 -> 1.
    multiclass = [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]  # 0.5 and 1.0 -> 0, ...
    labels = stream.binary_labels(stars)
    self.assertEqual(labels.dtype, np.float32)
    self.assertAllEqual(labels, binary)
    labels = stream.multiclass_labels(stars)
    self.assertEqual(labels.dtype, np.int32)
    self.assertAllEqual(labels, multiclass)


class RunningFrequencyTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.named_parameters(
      ('hand_worked', [7, 3, 7, 7, 3, 9], [1, 1, 2, 3, 2, 1]),
      ('one', [4], [1]),
      ('all_same', [2, 2, 2], [1, 2, 3]),
      ('negative_ids', [-5, 0, -5], [1, 1, 2]),
      # Too spread out to pack (id, position) into int64: the argsort path.
      ('huge_ids', [2**62, -2**62, 2**62, 0], [1, 1, 2, 1]),
  )
  def test_known_answers(self, ids, expected):
    frequency = id_index.running_frequency(np.array(ids, np.int64))
    self.assertEqual(frequency.dtype, np.int32)
    self.assertAllEqual(frequency, expected)

  def test_empty(self):
    self.assertAllEqual(id_index.running_frequency(np.zeros([0], np.int32)), [])

  def test_matches_a_loop(self):
    ids = np.random.default_rng(0).zipf(1.5, 3_000) % 200
    seen, expected = {}, []
    for i in ids:
      seen[i] = seen.get(i, 0) + 1
      expected.append(seen[i])
    self.assertAllEqual(id_index.running_frequency(ids.astype(np.int32)),
                        expected)


class BuildStreamTest(tf.test.TestCase, parameterized.TestCase):

  def test_chronological_known_answer(self):
    s = stream.build_stream(_six(), 'binary', 'chronological',
                            train_fraction=0.5)
    # Sorted by time 10, 20, 30, 40, 50, 60: file rows 1, 3, 4, 2, 0, 5.
    self.assertAllEqual(s.timestamp, [10, 20, 30, 40, 50, 60])
    self.assertAllEqual(s.user_vocab, [10, 20, 30])
    self.assertAllEqual(s.item_vocab, [5, 7, 100])
    # Raw users 20, 30, 20, 10, 10, 10; items 5, 100, 7, 5, 100, 100.
    self.assertAllEqual(s.user, [1, 2, 1, 0, 0, 0])
    self.assertAllEqual(s.item, [0, 2, 1, 0, 2, 2])
    self.assertAllEqual(s.user_vocab[s.user], [20, 30, 20, 10, 10, 10])
    self.assertAllEqual(s.rating, [3.5, 1.0, 0.5, 5.0, 4.0, 4.5])
    self.assertAllEqual(s.label, [0, 0, 0, 1, 1, 1])
    self.assertEqual(s.label.dtype, np.float32)
    self.assertAllEqual(s.user_frequency, [1, 1, 2, 1, 2, 3])
    # Item 100 is seen once in the train part (position 1); in the test part
    # the count continues at 2, 3 (the authors' code would restart at 1).
    self.assertAllEqual(s.item_frequency, [1, 1, 1, 2, 2, 3])
    self.assertEqual((s.num_train, s.num_test, s.num_examples), (3, 3, 6))
    self.assertEqual((s.num_users, s.num_items), (3, 3))
    self.assertEqual((s.task, s.order, s.name),
                     ('binary', 'chronological', 'six'))
    for column, dtype in (('user', np.int32), ('item', np.int32),
                          ('rating', np.float32), ('timestamp', np.int64),
                          ('user_frequency', np.int32),
                          ('item_frequency', np.int32),
                          ('user_vocab', np.int64), ('item_vocab', np.int64)):
      self.assertEqual(getattr(s, column).dtype, dtype, column)

  def test_multiclass_labels(self):
    s = stream.build_stream(_six(), 'multiclass', 'chronological')
    self.assertEqual(s.label.dtype, np.int32)
    self.assertAllEqual(s.label, [3, 0, 0, 4, 3, 4])  # ceil(star) - 1.

  def test_chronological_ties_keep_file_order(self):
    s = stream.build_stream(_six(timestamps=[5, 5, 1, 5, 1, 5]), 'binary',
                            'chronological')
    self.assertAllEqual(s.rating, [5.0, 0.5, 4.0, 3.5, 1.0, 4.5])

  def test_random_order_is_a_seeded_permutation(self):
    r = ratings.Ratings(
        user_id=np.arange(1_000, dtype=np.int64) % 37,
        item_id=np.arange(1_000, dtype=np.int64) % 101 * 1_000_003,
        rating=np.full(1_000, 4.0, np.float32),
        timestamp=np.arange(1_000, dtype=np.int64),
        name='ramp')
    a = stream.build_stream(r, 'binary', 'random', seed=1)
    b = stream.build_stream(r, 'binary', 'random', seed=1)
    c = stream.build_stream(r, 'binary', 'random', seed=2)
    self.assertAllEqual(a.timestamp, b.timestamp)
    self.assertNotAllEqual(a.timestamp, c.timestamp)
    self.assertAllEqual(
        a.timestamp,
        np.random.default_rng(1).permutation(1_000))  # The documented order.
    self.assertAllEqual(np.sort(a.timestamp), r.timestamp)
    # The vocabularies map rows back to the raw ids of the same examples.
    self.assertAllEqual(a.user_vocab[a.user], r.user_id[a.timestamp])
    self.assertAllEqual(a.item_vocab[a.item], r.item_id[a.timestamp])
    self.assertAllEqual(a.item_vocab, np.arange(101) * 1_000_003)
    self.assertEqual(a.num_train, 800)
    self.assertAllEqual(a.user_frequency,
                        id_index.running_frequency(a.user))

  @parameterized.named_parameters(('half_to_even', 0.75, 4), ('all', 1.0, 6),
                                  ('small', 0.01, 0))
  def test_train_split(self, fraction, num_train):
    s = stream.build_stream(_six(), 'binary', 'random',
                            train_fraction=fraction)
    self.assertEqual(s.num_train, num_train)  # Python's round(fraction * 6).
    self.assertEqual(s.num_test, 6 - num_train)

  @parameterized.named_parameters(
      ('task', dict(task='regression'), 'valid tasks: binary, multiclass'),
      ('order', dict(task='binary', order='by_user'),
       'valid orders: random, chronological'),
      ('fraction_zero', dict(task='binary', train_fraction=0.0),
       r'train_fraction is 0.0; it must lie in \(0, 1\]'),
      ('fraction_above_one', dict(task='binary', train_fraction=1.5),
       'train_fraction is 1.5'),
  )
  def test_bad_arguments(self, kwargs, message):
    with self.assertRaisesRegex(errors.UserInputError, message):
      stream.build_stream(_six(), **kwargs)


class MakeDatasetTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.named_parameters(
      ('binary', 'binary', tf.float32), ('multiclass', 'multiclass', tf.int32))
  def test_batches(self, task, label_dtype):
    s = stream.build_stream(_six(), task, 'chronological')
    batches = list(stream.make_dataset(s, 0, 6, batch_size=4))
    self.assertEqual([len(b['user']) for b in batches], [4, 2])  # Partial.
    for batch in batches:
      self.assertEqual(
          set(batch),
          {'user', 'item', 'label', 'user_frequency', 'item_frequency'})
      self.assertEqual(batch['label'].dtype, label_dtype)
      for key in ('user', 'item', 'user_frequency', 'item_frequency'):
        self.assertEqual(batch[key].dtype, tf.int32)
    self.assertAllEqual(batches[0]['user'], [1, 2, 1, 0])
    self.assertAllEqual(batches[1]['item_frequency'], [2, 3])
    self.assertAllEqual(batches[1]['label'], s.label[4:])

  @parameterized.named_parameters(
      ('test_part', 2, 6, 3, [[2, 3, 4, 5]]),
      ('partial_of_two', 1, 6, 3, [[1, 2, 3], [4, 5]]),
      # A last example alone joins the batch before it: 5 = 2 + 2 + 1.
      ('last_example_merged', 1, 6, 2, [[1, 2], [3, 4, 5]]),
      ('last_example_merged_only_batch', 3, 6, 2, [[3, 4, 5]]),
      ('batch_size_one', 3, 6, 1, [[3], [4], [5]]),
      ('middle', 1, 5, 2, [[1, 2], [3, 4]]),
      ('exact', 0, 6, 3, [[0, 1, 2], [3, 4, 5]]),
      ('one_big_batch', 2, 4, 500, [[2, 3]]),
      ('empty', 3, 3, 2, []),
  )
  def test_ranges(self, start, stop, batch_size, positions):
    s = stream.build_stream(_six(), 'binary', 'chronological')
    batches = list(stream.make_dataset(s, start, stop, batch_size))
    self.assertLen(batches, len(positions))
    for batch, rows in zip(batches, positions):
      self.assertAllEqual(batch['user'], s.user[rows])
      self.assertAllEqual(batch['item'], s.item[rows])
      self.assertAllEqual(batch['label'], s.label[rows])
      self.assertAllEqual(batch['user_frequency'], s.user_frequency[rows])
      self.assertAllEqual(batch['item_frequency'], s.item_frequency[rows])

  def test_no_autotuning_thread_to_wait_for(self):
    # With autotuning on, deleting the iterator at the end of a part waited
    # for tf.data's model thread, which sleeps up to 10 s between rounds
    # (4.5 s of a 15 s ml-latest-small run, in about half of the runs).
    s = stream.build_stream(_six(), 'binary')
    options = stream.make_dataset(s, 0, 6, 2).options()
    self.assertFalse(options.autotune.enabled)

  @parameterized.named_parameters(
      ('negative_start', -1, 3, 2, 'not inside the stream of 6'),
      ('stop_past_end', 0, 7, 2, 'not inside'),
      ('reversed', 4, 3, 2, 'not inside'),
      ('zero_batch', 0, 6, 0, 'batch_size is 0'),
      # Nothing to merge the one example into.
      ('one_example', 5, 6, 2,
       r'examples \[5, 6\) of the stream of 6 hold a single example'),
  )
  def test_bad_arguments(self, start, stop, batch_size, message):
    s = stream.build_stream(_six(), 'binary')
    with self.assertRaisesRegex(errors.UserInputError, message):
      stream.make_dataset(s, start, stop, batch_size)


class BatchBoundsTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.named_parameters(
      ('exact', 0, 6, 3, [0, 3, 6]),
      ('last_example_merged', 0, 7, 3, [0, 3, 7]),
      ('partial_of_two', 0, 8, 3, [0, 3, 6, 8]),
      ('test_part', 80, 101, 10, [80, 90, 101]),
      ('one_batch', 2, 4, 500, [2, 4]),
      ('batch_size_one', 0, 3, 1, [0, 1, 2, 3]),
      ('empty', 3, 3, 2, [3]),
  )
  def test_known_bounds(self, start, stop, batch_size, expected):
    self.assertAllEqual(stream.batch_bounds(start, stop, batch_size),
                        expected)

  @parameterized.named_parameters(
      ('merged_last_batch', 0, 101, 10), ('partial_last_batch', 0, 105, 10),
      ('exact', 0, 100, 10), ('test_part', 80, 101, 10))
  def test_batch_start_matches_the_batches(self, part_start, part_stop, bs):
    # A resumed run rebuilds the batch before `position` and continues from
    # `position`: both must be the batches of the uninterrupted part.
    s = stream.build_stream(stream.load_ratings(
        'synthetic', synthetic_num_ratings=200), 'binary')
    whole = [b['user'].numpy().tolist()
             for b in stream.make_dataset(s, part_start, part_stop, bs)]
    position = part_start
    for i, batch in enumerate(whole):
      position += len(batch)
      lo = stream.batch_start(part_start, part_stop, position, bs)
      self.assertEqual(lo, position - len(batch))
      previous = list(stream.make_dataset(s, lo, position, bs))
      self.assertLen(previous, 1)
      self.assertAllEqual(previous[0]['user'], batch)
      rest = [b['user'].numpy().tolist()
              for b in stream.make_dataset(s, position, part_stop, bs)]
      self.assertEqual(rest, whole[i + 1:])
    self.assertEqual(position, part_stop)

  def test_decisions_per_id_sees_the_same_batches(self):
    # The random-growth fit counts the batches that hold each id: they must
    # be the batches the run learns from. Train part [0, 5) in batches of 2
    # is [0, 2), [2, 5) (the last example joins the batch before it), the
    # test part [5, 8) is one batch [5, 8). Id 3 appears at 3 and 4, one
    # batch: 1 decision (2 if example 4 were a batch of its own); id 4 at
    # 5, 6 and 7: 1 decision.
    ids = np.array([0, 1, 2, 3, 3, 4, 4, 4])
    self.assertAllEqual(stream.batch_bounds(0, 5, 2), [0, 2, 5])
    self.assertAllEqual(stream.batch_bounds(5, 8, 2), [5, 8])
    self.assertAllEqual(
        matching.decisions_per_id(ids, 5, num_train=5, stop=8, batch_size=2),
        [1, 1, 1, 1, 1])

  def test_batch_start_refuses_a_position_inside_a_batch(self):
    with self.assertRaisesRegex(errors.UserInputError,
                                'example 105 does not end a batch'):
      stream.batch_start(0, 121, 105, 10)


class LoadRatingsTest(tf.test.TestCase, parameterized.TestCase):

  def test_synthetic(self):
    r = stream.load_ratings('synthetic', synthetic_num_ratings=3_000, seed=2)
    self.assertEqual((r.name, r.num_ratings), ('synthetic-3000', 3_000))
    head = stream.load_ratings('synthetic', max_ratings=100,
                               synthetic_num_ratings=3_000, seed=2)
    self.assertAllEqual(head.rating, r.rating[:100])

  def test_grouplens_folder(self):
    folder = tempfile.mkdtemp(dir=self.get_temp_dir())
    with open(os.path.join(folder, 'u.data'), 'w') as f:
      f.write('1\t2\t3\t4\n5\t6\t4.5\t8\n')
    r = stream.load_ratings('ml-100k', data_dir=folder)
    self.assertAllEqual(r.rating, [3.0, 4.5])

  def test_grouplens_bad_rating(self):
    folder = tempfile.mkdtemp(dir=self.get_temp_dir())
    with open(os.path.join(folder, 'u.data'), 'w') as f:
      f.write('1\t2\t3\t4\n5\t6\t5.5\t8\n')
    with self.assertRaisesRegex(errors.DataError,
                                r'u.data line 2 .*rating 5.5 is outside'):
      stream.load_ratings('ml-100k', data_dir=folder)

  @parameterized.named_parameters(
      ('no_data_dir', dict(dataset='ml-20m'),
       '--data_dir=path/to/ml-20m.zip'),
      ('unknown_dataset', dict(dataset='netflix'),
       'valid datasets: synthetic, ml-100k, ml-1m, ml-20m, ml-25m, ml-latest, '
       'ml-latest-small'),
      ('unknown_loader', dict(dataset='ml-1m', loader='kaggle'),
       'valid loaders: grouplens, tfds'),
      ('latest_on_tfds', dict(dataset='ml-latest', loader='tfds'),
       'ml-latest has no TFDS builder'),
  )
  def test_bad_arguments(self, kwargs, message):
    with self.assertRaisesRegex(errors.UserInputError, message):
      stream.load_ratings(**kwargs)

  def test_real_ml_latest_small(self):
    r = stream.load_ratings('ml-latest-small',
                            data_dir=real_data.ml_latest_small_path(self))
    s = stream.build_stream(r, 'binary')
    self.assertEqual((s.num_examples, s.num_users, s.num_items),
                     (100_836, 610, 9_724))
    self.assertEqual(s.num_train, 80_669)  # round(0.8 * 100836) = 80669.
    # Every user of ml-latest-small has at least 20 ratings.
    self.assertEqual(np.bincount(s.user).min(), 20)
    # Each user's last running frequency is its number of ratings.
    last = np.zeros(s.num_users, np.int32)
    np.maximum.at(last, s.user, s.user_frequency)
    self.assertAllEqual(last, np.bincount(s.user))
    batches = list(stream.make_dataset(s, 0, s.num_train, 500))
    self.assertLen(batches, 162)  # ceil(80669 / 500).
    self.assertLen(batches[-1]['user'], 80_669 - 161 * 500)


if __name__ == '__main__':
  tf.test.main()
