"""The malformed-input suite (issue 5, "Inputs") for the GroupLens reader.

Every malformed file, archive or folder written here must be refused with one
`DataError` line that names the file, the line at fault when there is one
(1-based, as an editor counts: header and blank lines included), and what was
expected. Well-formed variations (CRLF, a byte-order mark, a trailing blank
line, quoted fields, a zip with a subfolder) must give the plain file's
arrays. A few cases also run bin/train.py to check exit status 2, one
`error:` line and no traceback.

Unreadable permissions: the tests run as root, where `chmod 000` does not
stop reads, so that test skips itself under root. The same code path is also
exercised as root by making `open` raise PermissionError for that one path,
and by a directory, a FIFO and a broken symbolic link named ratings.csv.
"""

import builtins
import os
import re
import subprocess
import sys
import tempfile
from unittest import mock
import zipfile

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from esapn_tf import errors
from esapn_tf.data import movielens

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
_HEADER = 'userId,movieId,rating,timestamp'
_SEPARATORS = {'ratings.csv': ',', 'ratings.dat': '::', 'u.data': '\t'}
# The plain rows every format starts from: user, movie, rating, timestamp.
_ROWS = (('1', '31', '2.5', '1260759144'),
         ('1', '1029', '3.0', '1260759179'),
         ('7', '31', '5.0', '851866703'))


def _text(filename: str, rows=_ROWS, header: bool = True) -> str:
  """`rows` in `filename`'s format; ratings.csv gets the header line."""
  lines = [_SEPARATORS[filename].join(row) for row in rows]
  if filename == 'ratings.csv' and header:
    lines.insert(0, _HEADER)
  return '\n'.join(lines) + '\n'


def _bad(filename: str, row: tuple[str, ...] | str, after: int = 1) -> str:
  """A file whose data row number `after` + 1 is `row` (fields or raw text).

  The bad row follows `after` good ones, so for ratings.csv it is file line
  `after` + 2 (the header is line 1), for the others line `after` + 1.
  """
  if not isinstance(row, str):
    row = _SEPARATORS[filename].join(row)
  good = _text(filename, _ROWS[:after]) if after else (
      _HEADER + '\n' if filename == 'ratings.csv' else '')
  return good + row + '\n' + _text(filename, _ROWS[after:], header=False)


# name -> (file name, content, file line at fault or None, regex for what is
# wrong and what was expected).
_CASES = {
    # Missing columns.
    'missing_column_in_header': (
        'ratings.csv', 'userId,movieId,rating\n1,31,2.5\n', 1,
        'expected the columns userId,movieId,rating,timestamp in the header '
        'line, each once, found userId,movieId,rating'),
    'missing_field_csv': (
        'ratings.csv', _bad('ratings.csv', '1,31'), 3,
        r"\('1,31'\): found 2 field\(s\); expected 4 "
        r'\(userId,movieId,rating,timestamp\)'),
    'missing_field_dat': (
        'ratings.dat', _bad('ratings.dat', '1::31', after=2), 3,
        r'found 2 field\(s\); expected 4 '
        r'\(userId::movieId::rating::timestamp\)'),
    'missing_field_udata': (
        'u.data', _bad('u.data', '1\t31\t4'), 2,
        r'found 3 field\(s\); expected 4'),
    'missing_fields_first_line_dat': (
        'ratings.dat', '1::2::3\n', 1,
        r'found 3 field\(s\); expected 4 fields per line, '
        'userId::movieId::rating::timestamp, no header'),
    'udata_with_commas': (
        'u.data', '1,2,3,4\n', 1,
        r'found 1 field\(s\); expected 4 fields per line, '
        'userId<TAB>movieId<TAB>rating<TAB>timestamp'),
    # Extra columns.
    'extra_field_csv': (
        'ratings.csv', _bad('ratings.csv', ('1', '31', '2.5', '9', 'x')), 3,
        r'found 5 field\(s\); expected 4'),
    'extra_field_dat': (
        'ratings.dat', _bad('ratings.dat', ('1', '31', '2.5', '9', '9')), 2,
        r'found 5 field\(s\); expected 4'),
    'extra_field_first_line_udata': (
        'u.data', '1\t31\t2.5\t9\t9\n', 1,
        r'found 5 field\(s\); expected 4 fields per line'),
    'duplicate_column_in_header': (
        'ratings.csv', _HEADER + ',rating\n1,2,3,4,5\n', 1,
        'expected the columns userId,movieId,rating,timestamp in the header '
        'line, each once'),
    # Headers.
    'no_header': (
        'ratings.csv', _text('ratings.csv', header=False), 1,
        'expected the columns userId,movieId,rating,timestamp in the header '
        'line, each once, found 1,31,2.5,1260759144; the header line is '
        'missing'),
    'wrong_header': (
        'ratings.csv', 'user,movie,rating,time\n1,2,3,4\n', 1,
        'expected the columns userId,movieId,rating,timestamp in the header '
        'line, each once, found user,movie,rating,time'),
    'repeated_header': (
        'ratings.csv',
        _text('ratings.csv', _ROWS[:1]) + '\n' + _text('ratings.csv'), 4,
        'repeats the header line; expected one rating per line after the '
        'header'),
    # Ids.
    'non_numeric_id_csv': (
        'ratings.csv', _bad('ratings.csv', ('1', 'abc', '4.0', '5')), 3,
        "column movieId holds a non-numeric value 'abc'; expected a "
        'non-negative integer movie id'),
    'non_numeric_id_dat': (
        'ratings.dat', _bad('ratings.dat', ('u1', '31', '4', '5'), 0), 1,
        "column userId holds a non-numeric value 'u1'; expected a "
        'non-negative integer user id'),
    'non_numeric_id_udata': (
        'u.data', _bad('u.data', ('1', 'NA', '4', '5'), 2), 3,
        "column movieId holds a non-numeric value 'NA'; expected a "
        'non-negative integer movie id'),
    'fractional_id_csv': (
        'ratings.csv', _bad('ratings.csv', ('1.5', '31', '4.0', '5')), 3,
        "column userId holds a value that is not an integer, '1.5'; "
        'expected a non-negative integer user id'),
    'fractional_id_udata': (
        'u.data', _bad('u.data', ('1', '31.0', '4', '5')), 2,
        "column movieId holds a value that is not an integer, '31.0'"),
    'negative_id_csv': (
        'ratings.csv', _bad('ratings.csv', ('1', '-31', '4.0', '5')), 3,
        'column movieId holds -31, a negative id; expected a non-negative '
        'integer movie id'),
    'negative_id_udata': (
        'u.data', _bad('u.data', ('-1', '31', '4', '5'), 0), 1,
        'column userId holds -1, a negative id'),
    'id_beyond_int64_csv': (
        'ratings.csv',
        _bad('ratings.csv', ('1', '99999999999999999999', '4.0', '5')), 3,
        r'column movieId holds 99999999999999999999, beyond the int64 range; '
        r'expected a non-negative integer movie id below 2\*\*63'),
    'id_beyond_int64_dat': (
        'ratings.dat',
        _bad('ratings.dat', ('9223372036854775808', '31', '4', '5')), 2,
        'column userId holds 9223372036854775808, beyond the int64 range'),
    # Ratings.
    'rating_zero_csv': (
        'ratings.csv', _bad('ratings.csv', ('1', '31', '0', '5'), 2), 4,
        r'rating 0.0 is outside 0.5..5; expected a number of stars from 0.5 '
        'to 5'),
    'rating_zero_udata': (
        'u.data', _bad('u.data', ('1', '31', '0', '5')), 2,
        r'rating 0.0 is outside 0.5..5'),
    'rating_five_and_half_csv': (
        'ratings.csv', _bad('ratings.csv', ('1', '31', '5.5', '5')), 3,
        r'rating 5.5 is outside 0.5..5; expected a number of stars'),
    'rating_five_and_half_dat': (
        'ratings.dat', _bad('ratings.dat', ('1', '31', '5.5', '5'), 0), 1,
        r'rating 5.5 is outside 0.5..5'),
    'rating_nan_csv': (
        'ratings.csv', _bad('ratings.csv', ('1', '31', 'NaN', '5')), 3,
        "column rating holds 'NaN', not a number; expected a number of "
        'stars from 0.5 to 5'),
    'rating_nan_udata': (
        'u.data', _bad('u.data', ('1', '31', 'nan', '5'), 2), 3,
        "column rating holds 'nan', not a number"),
    'rating_inf_csv': (
        'ratings.csv', _bad('ratings.csv', ('1', '31', 'inf', '5')), 3,
        r'rating inf is outside 0.5..5'),
    'rating_non_numeric_dat': (
        'ratings.dat', _bad('ratings.dat', ('1', '31', 'good', '5')), 2,
        "column rating holds a non-numeric value 'good'; expected a number"),
    'rating_empty_csv': (
        'ratings.csv', _bad('ratings.csv', ('1', '31', '', '5')), 3,
        'column rating is empty; expected a number of stars from 0.5 to 5'),
    'rating_empty_dat': (
        'ratings.dat', _bad('ratings.dat', ('1', '31', '', '5')), 2,
        'column rating is empty'),
    # Timestamps.
    'timestamp_missing_csv': (
        'ratings.csv', _bad('ratings.csv', '1,31,2.5'), 3,
        r'found 3 field\(s\); expected 4 \(userId,movieId,rating,timestamp\)'),
    'timestamp_empty_csv': (
        'ratings.csv', _bad('ratings.csv', '1,31,2.5,'), 3,
        r'column timestamp is empty; expected an integer timestamp \(seconds '
        r'since 1970\)'),
    'timestamp_missing_dat': (
        'ratings.dat', _bad('ratings.dat', '1::31::2.5', 2), 3,
        r'found 3 field\(s\); expected 4'),
    'timestamp_non_numeric_udata': (
        'u.data', _bad('u.data', ('1', '31', '3', 'noon')), 2,
        "column timestamp holds a non-numeric value 'noon'"),
    'timestamp_latin1_byte_csv': (
        'ratings.csv', _bad('ratings.csv', ('1', '31', '3', '12\udce9')), 3,
        r"column timestamp holds a non-numeric value '12\\xe9'"),
    # Empty and header-only files.
    'empty_csv': ('ratings.csv', '', None,
                  r'contains no ratings \(the file is empty\); expected a '
                  'header line userId,movieId,rating,timestamp then one '
                  'rating per line'),
    'empty_dat': ('ratings.dat', '', None,
                  r'contains no ratings \(the file is empty\); expected 4 '
                  'fields per line'),
    'empty_udata': ('u.data', '', None, 'contains no ratings'),
    'blank_lines_only_csv': ('ratings.csv', '\r\n\n', None,
                             'contains no ratings'),
    'bom_only_csv': ('ratings.csv', '\ufeff', None, 'contains no ratings'),
    'header_only': (
        'ratings.csv', _HEADER + '\n', None,
        r'contains no ratings \(only the header line\); expected a header '
        'line userId,movieId,rating,timestamp then one rating per line'),
    'header_only_crlf': ('ratings.csv', _HEADER + '\r\n', None,
                         r'contains no ratings \(only the header line\)'),
    # Line numbers count blank lines and every kind of line ending.
    'blank_lines_before_bad_line_crlf': (
        'ratings.csv',
        _bad('ratings.csv', '1,31,9,5', 2).replace('\n', '\r\n').replace(
            _HEADER + '\r\n', '\r\n' + _HEADER + '\r\n\r\n'), 6,
        'rating 9.0 is outside'),
    'lone_cr_line_endings_dat': (
        'ratings.dat', _bad('ratings.dat', '1::x::3::5', 2).replace('\n', '\r'),
        3, "column movieId holds a non-numeric value 'x'"),
    'bom_then_bad_first_line_udata': (
        'u.data', '\ufeff' + _bad('u.data', ('1', '2', '6', '3'), 0), 1,
        'rating 6.0 is outside'),
    'first_bad_line_of_several': (
        'ratings.csv',
        _HEADER + '\n1,2,3,4\n1,2,7,4\n1,,3,4\n1,x,3,4\n1,2\n', 3,
        'rating 7.0 is outside'),
    'count_error_after_value_error': (
        'ratings.csv', _HEADER + '\n1,2,3,4\n1,y,3,4\n1,2\n', 3,
        "column movieId holds a non-numeric value 'y'"),
}


class MalformedTest(tf.test.TestCase, parameterized.TestCase):

  def _folder(self) -> str:
    folder = os.path.join(tempfile.mkdtemp(dir=self.get_temp_dir()),
                          'ml-test')
    os.makedirs(folder)
    return folder

  def _write(self, path: str, content: str | bytes) -> str:
    if isinstance(content, str):
      content = content.encode('utf-8', 'surrogateescape')
    with open(path, 'wb') as f:
      f.write(content)
    return path

  def _zip(self, members: dict[str, str | bytes]) -> str:
    path = os.path.join(self._folder(), 'ml-test.zip')
    with zipfile.ZipFile(path, 'w', zipfile.ZIP_DEFLATED) as archive:
      for name, content in members.items():
        if isinstance(content, str):
          content = content.encode('utf-8', 'surrogateescape')
        archive.writestr(name, content)
    return path

  def assertRefused(self, path: str, source: str, line: int | None,
                    expected: str, **kwargs) -> str:
    """load_grouplens(path) fails with one line: source, line, expected."""
    with self.assertRaises(errors.DataError) as raised:
      movielens.load_grouplens(path, **kwargs)
    message = str(raised.exception)
    self.assertNotIn('\n', message)
    self.assertIn(source, message)  # Names the file.
    if line is not None:
      self.assertRegex(message, re.escape(f'{source} line {line}') + r'\b')
    else:
      self.assertNotRegex(message, r' line \d')
    self.assertRegex(message, expected)  # What was wrong and expected.
    self.assertIn('expected', message)
    return message

  @parameterized.named_parameters(*[(k,) + v for k, v in _CASES.items()])
  def test_malformed_file(self, filename, content, line, expected):
    path = self._write(os.path.join(self._folder(), filename), content)
    self.assertRefused(path, path, line, expected)
    # The same bytes inside an archive: the message names the member.
    archive = self._zip({f'ml-test/{filename}': content})
    self.assertRefused(archive, f'{archive}/ml-test/{filename}', line,
                       expected)

  @parameterized.named_parameters(
      ('all_rows', 0), ('first_rows', 3), ('fewer_than_the_bad_line', 1))
  def test_malformed_with_max_ratings(self, max_ratings):
    # The bad value is on file line 3: max_ratings=1 never reaches it (pyarrow
    # reads whole blocks, so a type error there would still be found; a range
    # error is not, as that row is dropped before validation).
    path = self._write(os.path.join(self._folder(), 'ratings.csv'),
                       _bad('ratings.csv', ('1', '31', '5.5', '5')))
    if max_ratings == 1:
      self.assertEqual(
          movielens.load_grouplens(path, max_ratings=1).num_ratings, 1)
    else:
      self.assertRefused(path, path, 3, 'rating 5.5 is outside',
                         max_ratings=max_ratings)

  @parameterized.named_parameters(
      ('type_error', '1,x,3,4', "non-numeric value 'x'"),
      ('field_count', '1,2,3', r'found 3 field\(s\)'),
      ('empty_field', '1,2,,4', 'column rating is empty'),
      ('range', '1,2,0.25,4', 'rating 0.25 is outside'),
      ('repeated_header', _HEADER, 'repeats the header line'))
  def test_line_number_deep_in_a_large_file(self, bad, expected):
    # 300,000 rows with a blank line every 1,000: many pyarrow blocks and
    # batches, blank lines counted. Row k (0-based) is on line
    # 2 + k + k // 1000; the bad row replaces row 250,123, on line 250,375.
    rows = [f'{k % 97},{k % 89},{1 + k % 4},{k}' for k in range(300_000)]
    rows[250_123] = bad
    lines = [_HEADER]
    for k, row in enumerate(rows):
      if k and k % 1000 == 0:
        lines.append('')
      lines.append(row)
    self.assertEqual(lines[250_375 - 1], bad)
    path = self._write(os.path.join(self._folder(), 'ratings.csv'),
                       '\n'.join(lines) + '\n')
    self.assertRefused(path, path, 250_375, expected)

  @parameterized.named_parameters(('half', 0.5), ('last_bytes', -10),
                                  ('first_bytes', 30))
  def test_truncated_zip(self, cut):
    path = self._zip({'ml-test/ratings.csv': _text('ratings.csv') * 50,
                      'ml-test/movies.csv': 'movieId,title\n31,A\n'})
    with open(path, 'rb') as f:
      content = f.read()
    size = int(len(content) * cut) if isinstance(cut, float) else cut
    self._write(path, content[:size])
    self.assertRefused(path, path, None,
                       r'is not a zip archive or is corrupt \(truncated\?\); '
                       'expected a complete zip archive: download it again')

  def test_zip_without_ratings_file(self):
    path = self._zip({'ml-test/movies.csv': 'movieId,title\n31,A\n',
                      'ml-test/README.txt': 'ratings are elsewhere\n'})
    self.assertRefused(
        path, path, None,
        'holds no ratings file; expected one of ratings.csv, ratings.dat, '
        r'u.data at the top or one folder down \(found ml-test/README.txt, '
        r'ml-test/movies.csv\)')

  def test_folder_with_two_ratings_files(self):
    folder = self._folder()
    self._write(os.path.join(folder, 'ratings.csv'), _text('ratings.csv'))
    self._write(os.path.join(folder, 'u.data'), _text('u.data'))
    self.assertRefused(
        folder, folder, None,
        r'holds several ratings files \(ratings.csv, u.data\) and which one '
        'to read is ambiguous; expected exactly one')

  def test_folder_with_two_datasets(self):
    folder = self._folder()
    for sub, filename in (('ml-1m', 'ratings.dat'), ('ml-20m', 'ratings.csv')):
      os.makedirs(os.path.join(folder, sub))
      self._write(os.path.join(folder, sub, filename), _text(filename))
    self.assertRefused(
        folder, folder, None,
        r'holds several ratings files \(ml-1m/ratings.dat, '
        r'ml-20m/ratings.csv\)')

  def test_zip_with_two_ratings_files(self):
    path = self._zip({'ml-test/ratings.dat': _text('ratings.dat'),
                      'ml-test/u.data': _text('u.data')})
    self.assertRefused(
        path, path, None,
        r'holds several ratings files \(ml-test/ratings.dat, '
        r'ml-test/u.data\)')

  def test_unreadable_permissions_chmod(self):
    if os.geteuid() == 0:
      self.skipTest('running as root: chmod 000 does not stop root reading; '
                    'test_unreadable_permissions_simulated covers this path')
    path = self._write(os.path.join(self._folder(), 'ratings.csv'),
                       _text('ratings.csv'))
    os.chmod(path, 0)
    try:
      self.assertRefused(path, path, None,
                         r'cannot be read \(Permission denied\); expected a '
                         'readable file')
      self.assertRefused(os.path.dirname(path), path, None,
                         r'cannot be read \(Permission denied\)')
    finally:
      os.chmod(path, 0o600)

  def test_unreadable_permissions_simulated(self):
    # Works as root too: `open` of this one path raises what a chmod 000 file
    # raises for a normal user.
    path = self._write(os.path.join(self._folder(), 'ratings.csv'),
                       _text('ratings.csv'))
    real_open = builtins.open

    def denying_open(file, *args, **kwargs):
      if file == path:
        raise PermissionError(13, 'Permission denied', file)
      return real_open(file, *args, **kwargs)

    with mock.patch.object(builtins, 'open', denying_open):
      self.assertRefused(path, path, None,
                         r'cannot be read \(Permission denied\); expected a '
                         'readable file: check the path and its permissions')
      self.assertRefused(os.path.dirname(path), path, None,
                         r'cannot be read \(Permission denied\)')

  def test_directory_named_ratings_csv(self):
    folder = self._folder()
    path = os.path.join(folder, 'ratings.csv')
    os.makedirs(path)
    self.assertRefused(folder, path, None,
                       'is a directory, not a regular file; expected a '
                       'ratings file')

  def test_fifo_named_ratings_csv(self):
    # A named pipe would block a reader forever: refused before opening.
    folder = self._folder()
    path = os.path.join(folder, 'ratings.csv')
    os.mkfifo(path)
    for given in (folder, path):
      self.assertRefused(given, path, None,
                         'is a named pipe, not a regular file; expected a '
                         'ratings file')

  def test_broken_symlink_named_ratings_csv(self):
    folder = self._folder()
    path = os.path.join(folder, 'ratings.csv')
    os.symlink(os.path.join(folder, 'gone.csv'), path)
    self.assertRefused(folder, path, None,
                       r'cannot be read \(a broken symbolic link to '
                       f'{os.path.join(folder, "gone.csv")}' r'\); expected '
                       'a readable file')
    self.assertRefused(path, path, None, 'a broken symbolic link')


# Well-formed variations: name -> function of (file name, plain text) giving
# the file's bytes. Each must load to the plain file's arrays.
_VARIANTS = {
    'crlf': lambda f, t: t.replace('\n', '\r\n').encode(),
    'bom': lambda f, t: t.encode('utf-8-sig'),
    'trailing_blank_line': lambda f, t: (t + '\n').encode(),
    'trailing_blank_lines_crlf': lambda f, t: (
        t.replace('\n', '\r\n') + '\r\n\r\n').encode(),
    'quoted_fields': lambda f, t: '\n'.join(
        _SEPARATORS[f].join(f'"{v}"' for v in line.split(_SEPARATORS[f]))
        for line in t.splitlines()).encode() + b'\n',
    'no_final_newline': lambda f, t: t.rstrip('\n').encode(),
    'all_at_once': lambda f, t: '\n'.join(
        _SEPARATORS[f].join(f'"{v}"' for v in line.split(_SEPARATORS[f]))
        for line in t.splitlines()).replace('\n', '\r\n').encode(
            'utf-8-sig') + b'\r\n\r\n',
}


class WellFormedVariationTest(tf.test.TestCase, parameterized.TestCase):

  def _load(self, filename: str, content: bytes, layout: str):
    root = tempfile.mkdtemp(dir=self.get_temp_dir())
    if layout == 'zip_subfolder':
      path = os.path.join(root, 'ml-test.zip')
      with zipfile.ZipFile(path, 'w', zipfile.ZIP_DEFLATED) as archive:
        archive.writestr('ml-test/', b'')  # The folder entry GroupLens has.
        archive.writestr(f'ml-test/{filename}', content)
        archive.writestr('ml-test/movies.csv', 'movieId,title\n31,A\n')
      return movielens.load_grouplens(path)
    path = os.path.join(root, filename)
    with open(path, 'wb') as f:
      f.write(content)
    return movielens.load_grouplens(path)

  def assertSameRatings(self, got, want):
    for column in ('user_id', 'item_id', 'rating', 'timestamp'):
      self.assertEqual(getattr(got, column).dtype,
                       getattr(want, column).dtype)
      self.assertAllEqual(getattr(got, column), getattr(want, column))

  @parameterized.named_parameters(
      *[(f'{v}_{f.replace(".", "_")}_{layout}', f, v, layout)
        for v in _VARIANTS for f in _SEPARATORS
        for layout in ('file', 'zip_subfolder')])
  def test_variation_gives_plain_arrays(self, filename, variant, layout):
    plain = self._load(filename, _text(filename).encode(), 'file')
    self.assertAllEqual(plain.user_id, [1, 1, 7])
    self.assertAllEqual(plain.rating, np.array([2.5, 3.0, 5.0], np.float32))
    content = _VARIANTS[variant](filename, _text(filename))
    self.assertSameRatings(self._load(filename, content, layout), plain)

  def test_header_names_the_columns(self):
    # Columns are taken by name: a reordered header, and one naming an extra
    # column that every line has, read the same (a line with a field the
    # header does not name is refused: see extra_field_csv).
    plain = self._load('ratings.csv', _text('ratings.csv').encode(), 'file')
    lines = ['tag,timestamp,rating,movieId,userId'] + [
        f'x{k},{t},{r},{m},{u}' for k, (u, m, r, t) in enumerate(_ROWS)]
    self.assertSameRatings(
        self._load('ratings.csv', '\n'.join(lines).encode(), 'file'), plain)

  def test_zip_subfolder_plain(self):
    plain = self._load('ratings.csv', _text('ratings.csv').encode(), 'file')
    self.assertSameRatings(
        self._load('ratings.csv', _text('ratings.csv').encode(),
                   'zip_subfolder'), plain)


def _train(args: list[str]) -> subprocess.CompletedProcess:
  env = dict(os.environ, TF_USE_LEGACY_KERAS='1', TF_CPP_MIN_LOG_LEVEL='2')
  return subprocess.run(
      [sys.executable, os.path.join(_REPO, 'bin', 'train.py')] + args,
      cwd=_REPO, env=env, capture_output=True, text=True, timeout=300,
      check=False)


class TrainScriptTest(tf.test.TestCase, parameterized.TestCase):
  """bin/train.py on malformed data: exit 2, one `error:` line, no traceback.

  Each case pays TensorFlow's import in a subprocess (about 5 s): few cases.
  """

  @parameterized.named_parameters(
      ('repeated_header', {'ratings.csv': _text('ratings.csv') + _HEADER},
       'ratings.csv', ' line 5 repeats the header line'),
      ('id_beyond_int64',
       {'u.data': _bad('u.data', ('1', '99999999999999999999', '4', '5'))},
       'u.data', ' line 2 '),
      ('two_ratings_files', {'ratings.csv': _text('ratings.csv'),
                             'u.data': _text('u.data')},
       '', r'holds several ratings files \(ratings.csv, u.data\)'))
  def test_exit_2_with_one_error_line(self, files, named, expected):
    root = tempfile.mkdtemp(dir=self.get_temp_dir())
    folder = os.path.join(root, 'ml-test')
    os.makedirs(folder)
    for filename, content in files.items():
      with open(os.path.join(folder, filename), 'w') as f:
        f.write(content)
    workdir = os.path.join(root, 'run')
    result = _train(['--dataset=ml-latest-small', f'--data_dir={folder}',
                     f'--workdir={workdir}'])
    self.assertEqual(result.returncode, 2, result.stderr)
    self.assertNotIn('Traceback', result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    self.assertStartsWith(lines[-1], 'error: ')
    self.assertLen([x for x in lines if x.startswith('error:')], 1)
    self.assertIn(os.path.join(folder, named) if named else folder,
                  lines[-1])
    self.assertRegex(lines[-1], expected)
    self.assertIn('expected', lines[-1])
    self.assertFalse(os.path.exists(workdir))


if __name__ == '__main__':
  tf.test.main()
