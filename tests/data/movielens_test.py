"""Tests for esapn_tf.data.movielens: GroupLens files and TFDS."""

import itertools
import os
import tempfile
import zipfile

from absl.testing import parameterized
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from esapn_tf import errors
from esapn_tf.data import movielens
from tests import real_data

# The same three ratings in each GroupLens format.
_FILES = {
    'ratings.csv': ('userId,movieId,rating,timestamp\n'
                    '1,31,2.5,1260759144\n'
                    '1,1029,3.0,1260759179\n'
                    '7,31,5.0,851866703\n'),
    'ratings.dat': ('1::31::2.5::1260759144\n'
                    '1::1029::3::1260759179\n'
                    '7::31::5::851866703\n'),
    'u.data': ('1\t31\t2.5\t1260759144\n'
               '1\t1029\t3\t1260759179\n'
               '7\t31\t5\t851866703\n'),
}
_USERS = [1, 1, 7]
_ITEMS = [31, 1029, 31]
_RATINGS = [2.5, 3.0, 5.0]
_TIMES = [1260759144, 1260759179, 851866703]
_LAYOUTS = ('file', 'folder', 'subfolder', 'zip_subfolder', 'zip_root')


def _format_layout_cases():
  for filename, layout in itertools.product(_FILES, _LAYOUTS):
    yield dict(testcase_name=f'{filename}_{layout}', filename=filename,
               layout=layout)


class GroupLensTest(tf.test.TestCase, parameterized.TestCase):

  def _place(self, filename: str, content: bytes, layout: str = 'file',
             extra: tuple[str, ...] = ()) -> str:
    """Writes one ratings file as `layout` says; returns the path to load."""
    root = tempfile.mkdtemp(dir=self.get_temp_dir())
    if layout in ('zip_subfolder', 'zip_root'):
      path = os.path.join(root, 'ml-test.zip')
      prefix = 'ml-test/' if layout == 'zip_subfolder' else ''
      with zipfile.ZipFile(path, 'w', zipfile.ZIP_DEFLATED) as archive:
        for name in extra:
          archive.writestr(prefix + name, 'movieId,title\n1,A\n')
        if filename:
          archive.writestr(prefix + filename, content)
      return path
    folder = os.path.join(root, 'ml-test')
    target = os.path.join(folder, 'sub') if layout == 'subfolder' else folder
    os.makedirs(target)
    for name in extra:
      with open(os.path.join(target, name), 'w') as f:
        f.write('movieId,title\n1,A\n')
    if filename:
      with open(os.path.join(target, filename), 'wb') as f:
        f.write(content)
    return os.path.join(target, filename) if layout == 'file' else folder

  def assertKnownRatings(self, r, count=3):
    self.assertEqual(r.num_ratings, count)
    self.assertEqual(r.user_id.dtype, np.int64)
    self.assertEqual(r.item_id.dtype, np.int64)
    self.assertEqual(r.rating.dtype, np.float32)
    self.assertEqual(r.timestamp.dtype, np.int64)
    self.assertAllEqual(r.user_id, _USERS[:count])
    self.assertAllEqual(r.item_id, _ITEMS[:count])
    self.assertAllEqual(r.rating, _RATINGS[:count])
    self.assertAllEqual(r.timestamp, _TIMES[:count])

  @parameterized.named_parameters(*_format_layout_cases())
  def test_reads_each_format_and_layout(self, filename, layout):
    path = self._place(filename, _FILES[filename].encode(), layout,
                       extra=('movies.csv', 'README.txt'))
    r = movielens.load_grouplens(path)
    self.assertKnownRatings(r)
    self.assertEqual(r.name, 'ml-test')

  @parameterized.named_parameters(
      *[dict(testcase_name=f'{f}_{v}', filename=f, variant=v)
        for f, v in itertools.product(_FILES, ('crlf', 'bom', 'bom_crlf'))])
  def test_crlf_and_bom(self, filename, variant):
    text = _FILES[filename]
    if 'crlf' in variant:
      text = text.replace('\n', '\r\n')
    content = text.encode('utf-8-sig' if 'bom' in variant else 'utf-8')
    for layout in ('file', 'zip_subfolder'):
      self.assertKnownRatings(
          movielens.load_grouplens(self._place(filename, content, layout)))

  @parameterized.named_parameters(
      ('csv', 'ratings.csv'), ('dat', 'ratings.dat'), ('udata', 'u.data'))
  def test_max_ratings_keeps_first_rows(self, filename):
    path = self._place(filename, _FILES[filename].encode())
    self.assertKnownRatings(movielens.load_grouplens(path, max_ratings=2), 2)
    self.assertKnownRatings(movielens.load_grouplens(path, max_ratings=10), 3)

  # Malformed files, archives and folders: tests/data/malformed_test.py.

  def test_missing_path(self):
    path = os.path.join(self.get_temp_dir(), 'ml-nothing.zip')
    with self.assertRaisesRegex(errors.DataError, f'{path} does not exist'):
      movielens.load_grouplens(path)

  @parameterized.named_parameters(('zip', 'zip_subfolder'),
                                  ('folder', 'folder'))
  def test_no_ratings_file(self, layout):
    path = self._place('', b'', layout, extra=('movies.csv',))
    with self.assertRaisesRegex(
        errors.DataError,
        'holds no ratings file; expected one of ratings.csv, ratings.dat, '
        'u.data'):
      movielens.load_grouplens(path)

  def test_not_a_zip(self):
    path = os.path.join(self.get_temp_dir(), 'fake.zip')
    with open(path, 'wb') as f:
      f.write(b'<html>404 Not Found</html>')
    with self.assertRaisesRegex(errors.DataError,
                                'is not a zip archive or is corrupt'):
      movielens.load_grouplens(path)

  def test_corrupt_zip_member(self):
    path = self._place('ratings.csv', _FILES['ratings.csv'].encode() * 200,
                       'zip_subfolder')
    with open(path, 'rb') as f:
      content = bytearray(f.read())
    offset = content.index(b'ratings.csv') + len('ratings.csv') + 10
    for i in range(offset, offset + 40):  # Inside the deflated data.
      content[i] ^= 0x5A
    with open(path, 'wb') as f:
      f.write(bytes(content))
    with self.assertRaisesRegex(errors.DataError,
                                'is not a readable zip archive'):
      movielens.load_grouplens(path)

  def test_other_file(self):
    path = os.path.join(self.get_temp_dir(), 'movies.csv')
    with open(path, 'w') as f:
      f.write('movieId,title\n')
    with self.assertRaisesRegex(errors.DataError,
                                'neither a zip archive, a folder nor'):
      movielens.load_grouplens(path)

  def test_real_ml_latest_small_zip_and_folder(self):
    path = real_data.ml_latest_small_path(self)
    r = movielens.load_grouplens(path)
    self.assertEqual(r.name, 'ml-latest-small')
    self.assertEqual(r.num_ratings, 100_836)
    self.assertLen(np.unique(r.user_id), 610)
    self.assertLen(np.unique(r.item_id), 9_724)
    # The first line of ratings.csv: 1,1,4.0,964982703.
    self.assertEqual((r.user_id[0], r.item_id[0], r.rating[0], r.timestamp[0]),
                     (1, 1, 4.0, 964982703))
    folder = tempfile.mkdtemp(dir=self.get_temp_dir())
    with zipfile.ZipFile(path) as archive:
      archive.extract('ml-latest-small/ratings.csv', folder)
    from_folder = movielens.load_grouplens(folder)
    self.assertAllEqual(from_folder.user_id, r.user_id)
    self.assertAllEqual(from_folder.rating, r.rating)


def _fake_movielens(self, split, decoders=None, read_config=None, **kwargs):
  """Stands in for the prepared `movielens/*-ratings` TFRecords."""
  del self, split, decoders, read_config, kwargs
  return tf.data.Dataset.from_tensor_slices({
      'user_id': [b'1', b'2', b'10'],
      'movie_id': [b'31', b'1029', b'7'],
      'user_rating': tf.constant([2.5, 3.0, 5.0], tf.float32),
      'timestamp': tf.constant([100, 200, 50], tf.int64),
      'movie_title': [b'A', b'B', b'C'],
  })


class TfdsTest(tf.test.TestCase, parameterized.TestCase):

  def test_names(self):
    self.assertEqual(
        movielens.TFDS_NAMES, {
            'ml-100k': '100k', 'ml-1m': '1m', 'ml-20m': '20m',
            'ml-25m': '25m', 'ml-latest-small': 'latest-small'
        })

  @parameterized.named_parameters(('all', 0, 3), ('first_two', 2, 2))
  def test_load(self, max_ratings, count):
    with tfds.testing.mock_data(as_dataset_fn=_fake_movielens,
                                policy=tfds.testing.MockPolicy.USE_CODE):
      r = movielens.load_tfds('latest-small', data_dir=self.get_temp_dir(),
                              max_ratings=max_ratings)
    self.assertEqual(r.name, 'tfds-latest-small')
    self.assertEqual(r.user_id.dtype, np.int64)
    self.assertEqual(r.item_id.dtype, np.int64)
    self.assertEqual(r.rating.dtype, np.float32)
    self.assertEqual(r.timestamp.dtype, np.int64)
    self.assertAllEqual(r.user_id, [1, 2, 10][:count])
    self.assertAllEqual(r.item_id, [31, 1029, 7][:count])
    self.assertAllEqual(r.rating, [2.5, 3.0, 5.0][:count])
    self.assertAllEqual(r.timestamp, [100, 200, 50][:count])

  def test_random_mock_strings_are_not_ids(self):
    # TFDS's own mock fills user_id with random words: not integers.
    with tfds.testing.mock_data(num_examples=4,
                                policy=tfds.testing.MockPolicy.USE_CODE):
      with self.assertRaisesRegex(errors.DataError, 'is not an integer'):
        movielens.load_tfds('latest-small')

  def test_unknown_name(self):
    with self.assertRaisesRegex(
        errors.DataError, "unknown TFDS MovieLens name 'ml-20m'; valid names: "
        '100k, 1m, 20m, 25m, latest-small'):
      movielens.load_tfds('ml-20m')


if __name__ == '__main__':
  tf.test.main()
