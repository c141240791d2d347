"""MovieLens ratings: GroupLens archives and folders as downloaded, and TFDS.

GroupLens (https://grouplens.org/datasets/movielens/) ships three ratings
formats; `load_grouplens` finds and reads whichever one an archive, a folder or
a path names (DESIGN.md section 6):

  ratings.csv  ml-20m, ml-25m, ml-latest, ml-latest-small: a header line
               `userId,movieId,rating,timestamp`, comma separated.
  ratings.dat  ml-1m (and ml-10m): `UserID::MovieID::Rating::Timestamp`, no
               header.
  u.data       ml-100k: user id, item id, rating, timestamp separated by tabs,
               no header.

Files are parsed with pyarrow's multithreaded CSV reader straight from memory
(a zip member is decompressed into memory, never extracted to disk); ml-20m's
20M rows load in a few seconds. UTF-8 byte order marks, CRLF (or lone CR)
line endings, blank lines and quoted fields are accepted.

Malformed input raises `errors.DataError` with one line that names the file
(inside an archive: `archive.zip/member`), the file's line number when one
line is at fault (1-based, as an editor counts: header and blank lines
included) and what was expected. The fast path stays vectorised; only a
failing file is scanned again, as text, to find the first bad line.
"""

import math
import os
import re
import stat
import zipfile
import zlib

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import tensorflow as tf
import tensorflow_datasets as tfds

from esapn_tf import errors
from esapn_tf.data import ratings

# Ratings file names. An archive or folder must hold exactly one of them.
RATINGS_FILES = ('ratings.csv', 'ratings.dat', 'u.data')

# Our dataset names -> the `name` of `load_tfds` (TFDS builder
# `movielens/{name}-ratings`).
# ml-latest (the full one) has no TFDS builder.
TFDS_NAMES = {
    'ml-100k': '100k',
    'ml-1m': '1m',
    'ml-20m': '20m',
    'ml-25m': '25m',
    'ml-latest-small': 'latest-small',
}

_COLUMNS = ('userId', 'movieId', 'rating', 'timestamp')
_TYPES = {
    'userId': pa.int64(),
    'movieId': pa.int64(),
    'rating': pa.float32(),
    'timestamp': pa.int64(),
}
# File name -> (field separator, whether the first line is a header).
_FORMATS = {
    'ratings.csv': (',', True),
    'ratings.dat': ('::', False),
    'u.data': ('\t', False),
}
_FIX = ('pass a MovieLens archive or folder as downloaded from '
        'https://grouplens.org/datasets/movielens/')
_BOM = b'\xef\xbb\xbf'
_LINE_BREAK = re.compile(rb'\r\n|\r|\n')
_INTEGER = re.compile(r'-?[0-9]+')
_NUMBER = re.compile(r'[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?')
# Column -> what a valid field holds, for messages.
_EXPECTED = {
    'userId': 'a non-negative integer user id below 2**63',
    'movieId': 'a non-negative integer movie id below 2**63',
    'rating': (f'a number of stars from {ratings.MIN_RATING} to '
               f'{ratings.MAX_RATING:g}'),
    'timestamp': 'an integer timestamp (seconds since 1970) within int64',
}
_TFDS_BATCH = 1_000_000


def load_grouplens(path: str, max_ratings: int = 0) -> ratings.Ratings:
  """Reads the ratings of a GroupLens MovieLens download.

  Args:
    path: a .zip archive as downloaded (e.g. `ml-latest-small.zip`), the folder
      extracted from it (the ratings file may sit in a subfolder one level
      down), or the ratings file itself.
    max_ratings: if > 0, keep only the first `max_ratings` rows in file order.

  Returns:
    Validated ratings, rows in file order, named after the archive or folder
    (e.g. 'ml-latest-small').

  Raises:
    errors.DataError: `path` does not exist or cannot be read; holds no
      ratings file, or several; is not a zip archive or is corrupt; has wrong
      columns, a non-numeric, empty or out-of-range value, or no rows. Each
      message is one line that names the file, the line at fault when there
      is one (1-based, as an editor counts: header and blank lines included),
      and what was expected.
  """
  if not os.path.lexists(path):
    raise errors.DataError(f'{path} does not exist; {_FIX}')
  if os.path.isdir(path):
    source = os.path.join(path, *_pick(path, _list_folder(path)).split('/'))
    data, filename = _read_file(source), os.path.basename(source)
  else:
    _check_readable(path)
    if zipfile.is_zipfile(path):
      data, member = _read_zip(path)
      filename, source = member.rsplit('/', 1)[-1], f'{path}/{member}'
    elif os.path.basename(path) in RATINGS_FILES:
      data, filename, source = _read_file(path), os.path.basename(path), path
    elif path.lower().endswith('.zip'):
      raise errors.DataError(
          f'{path} is not a zip archive or is corrupt (truncated?); expected '
          'a complete zip archive: download it again from '
          'https://grouplens.org/datasets/movielens/')
    else:
      raise errors.DataError(
          f'{path} is neither a zip archive, a folder nor a ratings file; '
          f'expected a file named {" or ".join(RATINGS_FILES)}; {_FIX}')
  name = os.path.basename(os.path.normpath(path))
  if name in RATINGS_FILES:
    name = os.path.basename(os.path.dirname(os.path.abspath(path)))
  elif name.lower().endswith('.zip'):
    name = name[:-4]
  return _parse(data, filename, source, name, max_ratings)


def load_tfds(name: str,
              data_dir: str | None = None,
              max_ratings: int = 0,
              download: bool = False) -> ratings.Ratings:
  """Reads `movielens/{name}-ratings` through TensorFlow Datasets.

  With `download`, TFDS downloads and prepares the data on first use (this
  needs internet; offline, TFDS retries for minutes before it gives up).
  Without it (the default), only an already prepared copy under `data_dir`
  is read, and a missing one fails at once.

  Args:
    name: one of the values of `TFDS_NAMES`: '100k', '1m', '20m', '25m',
      'latest-small'.
    data_dir: the TFDS data folder; None for TFDS's default
      (~/tensorflow_datasets).
    max_ratings: if > 0, keep only the first `max_ratings` examples of the
      'train' split (the only split), in TFDS order.
    download: let TFDS download and prepare a missing dataset.

  Returns:
    Validated ratings with int64 ids parsed from TFDS's string ids, named
    f'tfds-{name}'.

  Raises:
    errors.DataError: unknown `name`; TFDS cannot load the data; an id is not
      an integer; no rows or a rating outside 0.5..5.
  """
  if name not in TFDS_NAMES.values():
    raise errors.DataError(
        f'unknown TFDS MovieLens name {name!r}; valid names: '
        f'{", ".join(TFDS_NAMES.values())}')
  builder = f'movielens/{name}-ratings'
  try:
    ds = tfds.load(builder, split='train', data_dir=data_dir,
                   download=download)
  except Exception as e:  # TFDS raises many types; all mean "not available".
    hint = ('' if download else ' Pass --tfds_download to let TFDS download '
            'and prepare it (needs internet), or')
    first_line = (str(e).strip().splitlines() or [''])[0]
    raise errors.DataError(
        f'TFDS could not load {builder} (data_dir={data_dir}): '
        f'{type(e).__name__}: {first_line}.{hint} use the GroupLens archive '
        'instead (--loader=grouplens --data_dir=path/to/ml-xxx.zip)') from e
  ds = ds.map(lambda x: {k: x[k] for k in (
      'user_id', 'movie_id', 'user_rating', 'timestamp')})
  if max_ratings > 0:
    ds = ds.take(max_ratings)
  ds = ds.batch(_TFDS_BATCH).map(
      lambda x: {
          'user_id': tf.strings.to_number(x['user_id'], tf.int64),
          'item_id': tf.strings.to_number(x['movie_id'], tf.int64),
          'rating': tf.cast(x['user_rating'], tf.float32),
          'timestamp': tf.cast(x['timestamp'], tf.int64),
      },
      num_parallel_calls=tf.data.AUTOTUNE)
  try:
    batches = list(tfds.as_numpy(ds))
  except tf.errors.InvalidArgumentError as e:
    value = re.search(r'convert string: (\S*)', e.message)
    raise errors.DataError(
        f'{builder}: a user_id or movie_id is not an integer '
        f'({value.group(1) if value else e.message.splitlines()[0]!r}); '
        'delete the prepared data under data_dir and let TFDS prepare it '
        'again') from e
  columns = {}
  for key, dtype in (('user_id', np.int64), ('item_id', np.int64),
                     ('rating', np.float32), ('timestamp', np.int64)):
    parts = [b[key] for b in batches]
    columns[key] = np.concatenate(parts) if parts else np.zeros([0], dtype)
  r = ratings.Ratings(name=f'tfds-{name}', **columns)
  r.validate(builder)
  return r


def _list_folder(path: str) -> list[str]:
  """The folder's entries and its direct subfolders' ('sub/name')."""
  try:
    names = os.listdir(path)
    return names + [f'{d}/{f}' for d in names
                    if os.path.isdir(os.path.join(path, d))
                    for f in os.listdir(os.path.join(path, d))]
  except OSError as e:
    raise errors.DataError(
        f'{e.filename or path} cannot be listed ({e.strerror}); expected a '
        'readable folder') from e


def _pick(container: str, names: list[str]) -> str:
  """The one ratings file among `names`.

  Args:
    container: the archive or folder `names` come from, for messages.
    names: '/'-separated paths relative to `container`.

  Returns:
    The one name whose base name is in RATINGS_FILES (macOS `__MACOSX/`
    copies ignored).

  Raises:
    errors.DataError: none or several are ratings files. Several are refused
      rather than one picked: a folder holding two datasets (ml-1m/ and
      ml-20m/) must not silently train on either.
  """
  found = sorted(n for n in names if n.rsplit('/', 1)[-1] in RATINGS_FILES
                 and not n.startswith('__MACOSX/'))
  if not found:
    shown = ', '.join(sorted(names)[:8]) or 'nothing'
    raise errors.DataError(
        f'{container} holds no ratings file; expected one of '
        f'{", ".join(RATINGS_FILES)} at the top or one folder down (found '
        f'{shown}{" ..." if len(names) > 8 else ""}); {_FIX}')
  if len(found) > 1:
    raise errors.DataError(
        f'{container} holds several ratings files ({", ".join(found)}) and '
        'which one to read is ambiguous; expected exactly one: pass the file '
        'itself, or a folder or archive holding only one')
  return found[0]


def _check_readable(path: str) -> None:
  """Refuses what is not a readable regular file (a FIFO would block)."""
  try:
    mode = os.stat(path).st_mode
    if not stat.S_ISREG(mode):
      kind = 'a directory' if stat.S_ISDIR(mode) else (
          'a named pipe' if stat.S_ISFIFO(mode) else 'a special file')
      raise errors.DataError(
          f'{path} is {kind}, not a regular file; expected a ratings file '
          f'({", ".join(RATINGS_FILES)}) or a zip archive')
    with open(path, 'rb'):
      pass
  except OSError as e:
    reason = e.strerror
    if os.path.islink(path) and not os.path.exists(path):
      reason = f'a broken symbolic link to {os.readlink(path)}'
    raise errors.DataError(
        f'{path} cannot be read ({reason}); expected a readable file: check '
        'the path and its permissions') from e


def _read_file(path: str) -> bytes:
  _check_readable(path)
  try:
    with open(path, 'rb') as f:
      return f.read()
  except OSError as e:
    raise errors.DataError(
        f'{path} cannot be read ({e.strerror}); expected a readable file'
    ) from e


def _read_zip(path: str) -> tuple[bytes, str]:
  """The bytes and member name of the ratings file inside a zip archive."""
  try:
    with zipfile.ZipFile(path) as archive:
      member = _pick(path, [n for n in archive.namelist()
                            if not n.endswith('/')])
      return archive.read(member), member
  except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError,
          OSError) as e:
    raise errors.DataError(
        f'{path} is not a readable zip archive ({e}); expected a complete '
        'archive: download it again from '
        'https://grouplens.org/datasets/movielens/') from e


def _parse(data: bytes, filename: str, source: str, name: str,
           max_ratings: int) -> ratings.Ratings:
  """Parses and validates the bytes of a ratings file.

  The fast path is one typed pyarrow read plus vectorised checks. Only when
  something is wrong is the file scanned again (`_Lines`, `_locate`) to name
  the first bad line.

  Args:
    data: the whole file.
    filename: its base name, one of RATINGS_FILES; selects the format.
    source: the path used in messages.
    name: the `Ratings.name`.
    max_ratings: if > 0, parse only the first `max_ratings` rows.

  Returns:
    Validated `Ratings`.

  Raises:
    errors.DataError: empty file, wrong columns, non-numeric, empty or
      out-of-range values, no rows.
  """
  fmt = _Format(filename)
  head = data[:65536].removeprefix(_BOM)
  body = head.lstrip(b'\r\n')
  if not body.strip():
    raise errors.DataError(
        f'{source} contains no ratings (the file is empty); expected '
        f'{fmt.layout}')
  line = 1 + len(_LINE_BREAK.findall(head[:len(head) - len(body)]))
  first = _LINE_BREAK.split(body, 1)[0].decode('utf-8', 'replace')
  fields = _split(first, fmt.delimiter)
  if fmt.has_header:
    if not set(_COLUMNS) <= set(fields) or len(set(fields)) < len(fields):
      missing = ('; the header line is missing'
                 if all(_INTEGER.fullmatch(f) or _NUMBER.fullmatch(f)
                        for f in fields) else '')
      raise errors.DataError(
          f'{source} line {line}: expected the columns {",".join(_COLUMNS)} '
          f'in the header line, each once, found {",".join(fields)}'
          f'{missing}')
    fmt.names = fields
  elif len(fields) != len(_COLUMNS):
    raise errors.DataError(
        f'{source} line {line} ({_clip(first)}): found {len(fields)} '
        f'field(s); expected {fmt.layout}; {_FIX}')
  parse_data = data.replace(b'::', b',') if fmt.delimiter == '::' else data
  try:
    table = _read_typed(parse_data, fmt, max_ratings)
  except pa.ArrowException as e:
    raise _locate(data, parse_data, fmt, source, e) from e
  if table.num_rows == 0:
    raise errors.DataError(
        f'{source} contains no ratings (only the header line); expected '
        f'{fmt.layout}')
  lines = []  # Built on first use: only a bad file needs line numbers.

  def describe(row: int) -> str:
    if not lines:
      lines.append(_Lines(data))
    number = lines[0].number(row + fmt.has_header)
    text = lines[0].text(number)
    values = dict(zip(fmt.names, _split(text, fmt.delimiter)))
    return _line_error(source, number, text, values, fmt)

  columns, null_rows = {}, []
  for column, key in zip(_COLUMNS, ('user_id', 'item_id', 'rating',
                                    'timestamp')):
    values = table.column(column)
    if values.null_count:  # Empty fields, or NaN, NA, null...
      null_rows.append(int(np.argmax(
          pc.is_null(values).to_numpy(zero_copy_only=False))))
      # A valid stand-in, so that the first bad row of any kind is found.
      values = values.fill_null(1.0 if column == 'rating' else 0)
    columns[key] = values.to_numpy()
  r = ratings.Ratings(name=name, **columns)
  if null_rows:
    invalid = r.first_invalid_row()
    raise errors.DataError(describe(min(
        null_rows + ([] if invalid is None else [invalid]))))
  r.validate(source, describe)
  return r


class _Format:
  """The layout of one ratings file format.

  Attributes:
    delimiter: ',', '::' or tab.
    has_header: whether the first non-blank line names the columns.
    names: the column names in file order (from the header, if any).
    layout: the format in words, for messages.
  """

  def __init__(self, filename: str):
    self.delimiter, self.has_header = _FORMATS[filename]
    self.names = list(_COLUMNS)  # The columns in file order.
    if self.has_header:
      self.layout = (f'a header line {",".join(_COLUMNS)} then one rating per '
                     'line')
    else:
      shown = {'\t': '<TAB>'}.get(self.delimiter, self.delimiter)
      self.layout = f'4 fields per line, {shown.join(_COLUMNS)}, no header'


def _read_typed(data: bytes, fmt: _Format, max_ratings: int) -> pa.Table:
  """The fast read: int64/float32 columns, multithreaded."""
  read_options = pacsv.ReadOptions(
      column_names=None if fmt.has_header else list(_COLUMNS))
  parse_options = pacsv.ParseOptions(
      delimiter=',' if fmt.delimiter == '::' else fmt.delimiter)
  convert_options = pacsv.ConvertOptions(
      column_types=_TYPES, include_columns=list(_COLUMNS))
  if max_ratings <= 0:
    return pacsv.read_csv(pa.BufferReader(data), read_options, parse_options,
                          convert_options)
  reader = pacsv.open_csv(pa.BufferReader(data), read_options, parse_options,
                          convert_options)
  batches, count = [], 0
  while count < max_ratings:
    try:
      batch = reader.read_next_batch()
    except StopIteration:
      break
    batches.append(batch)
    count += batch.num_rows
  return pa.Table.from_batches(batches, reader.schema).slice(0, max_ratings)


def _locate(data: bytes, parse_data: bytes, fmt: _Format, source: str,
            cause: pa.ArrowException) -> errors.DataError:
  """Names the first malformed line after the fast read failed.

  Re-reads the file single-threaded as text (so rows come in file order),
  batch by batch, and stops at the first line with the wrong number of fields
  or a value that is not a valid number. Vectorised candidates per batch; the
  few candidates are confirmed by `_problem` in Python.

  Args:
    data: the file as read (for the text of lines).
    parse_data: what pyarrow parses (for ratings.dat, '::' replaced by ',').
    fmt: the file's format, `names` set from the header.
    source: the path used in messages.
    cause: the fast read's error, quoted if no line can be blamed.

  Returns:
    The error to raise.
  """
  try:
    error = _first_bad_line(data, parse_data, fmt, source)
  except (pa.ArrowException, UnicodeDecodeError):  # Not even text rows.
    error = None
  if error:
    return error
  message = str(cause).splitlines()[0]
  return errors.DataError(f'{source} cannot be parsed ({message}); {_FIX}')


def _first_bad_line(data: bytes, parse_data: bytes, fmt: _Format,
                    source: str) -> errors.DataError | None:
  """`_locate`'s scan; None if no line is to blame."""
  first_skipped = []  # pyarrow's number of the first row with wrong fields.

  def on_invalid_row(row) -> str:
    if not first_skipped:
      first_skipped.append((row.number, row.actual_columns))
    return 'skip'

  reader = pacsv.open_csv(
      pa.BufferReader(parse_data),
      pacsv.ReadOptions(use_threads=False, column_names=(
          None if fmt.has_header else list(_COLUMNS))),
      pacsv.ParseOptions(delimiter=',' if fmt.delimiter == '::'
                         else fmt.delimiter,
                         invalid_row_handler=on_invalid_row),
      # Binary, not string: a stray Latin-1 byte must not stop the scan.
      pacsv.ConvertOptions(column_types=dict.fromkeys(_COLUMNS, pa.binary()),
                           include_columns=list(_COLUMNS)))
  lines, seen = _Lines(data), 0
  for batch in reader:
    # Rows before the first skipped one keep their index; `number` counts
    # non-blank lines from 1, the header included.
    skipped = (first_skipped[0][0] - 1 - fmt.has_header if first_skipped
               else seen + batch.num_rows)  # As a 0-based data row.
    for row in _candidates(batch.slice(0, skipped - seen)):
      values = {c: batch.column(c)[row].as_py().decode('utf-8', 'replace')
                for c in _COLUMNS}
      number = lines.number(seen + row + fmt.has_header)
      text = lines.text(number)
      if fmt.has_header and _split(text, fmt.delimiter) == fmt.names:
        return errors.DataError(
            f'{source} line {number} repeats the header line; expected '
            'one rating per line after the header')
      if any(_problem(c, values[c]) for c in _COLUMNS):
        return errors.DataError(
            _line_error(source, number, text, values, fmt))
    if skipped <= seen + batch.num_rows and first_skipped:
      number = lines.number(first_skipped[0][0] - 1)
      return errors.DataError(
          f'{source} line {number} ({_clip(lines.text(number))}): found '
          f'{first_skipped[0][1]} field(s); expected {len(fmt.names)} '
          f'({fmt.delimiter.join(fmt.names)})')
    seen += batch.num_rows
  return None


def _candidates(batch: pa.RecordBatch) -> np.ndarray:
  """Rows (ascending) of a text batch that may hold an invalid value.

  A superset: a 19-digit integer or '1e0' is a candidate that `_problem`
  then clears.
  """
  suspect = np.zeros(batch.num_rows, bool)
  for column in _COLUMNS:
    text = batch.column(column)
    if column == 'rating':
      plain = pc.match_substring_regex(text, r'^\s*[0-9]+(\.[0-9]*)?\s*$')
      digits = pc.replace_substring_regex(text, r'\s+', '')
      stars = pc.cast(pc.cast(pc.if_else(plain, digits, b'0'), pa.string()),
                      pa.float64())
      ok = pc.and_(plain, pc.and_(pc.greater_equal(stars, ratings.MIN_RATING),
                                  pc.less_equal(stars, ratings.MAX_RATING)))
    else:
      sign = '-?' if column == 'timestamp' else ''
      ok = pc.match_substring_regex(text, rf'^\s*{sign}[0-9]{{1,18}}\s*$')
    suspect |= ~ok.to_numpy(zero_copy_only=False)
  return np.flatnonzero(suspect)


def _problem(column: str, value: str | None) -> str | None:
  """What is wrong with one field as written; None when it is valid."""
  text = (value or '').strip().strip('"').strip()
  if not text:
    return f'column {column} is empty'
  if column == 'rating':
    try:
      stars = float(text)
    except ValueError:
      return f'column rating holds a non-numeric value {text!r}'
    if math.isnan(stars):
      return f'column rating holds {text!r}, not a number'
    if not ratings.MIN_RATING <= stars <= ratings.MAX_RATING:
      return (f'rating {stars} is outside {ratings.MIN_RATING}..'
              f'{ratings.MAX_RATING:g}')
    return None
  if _INTEGER.fullmatch(text):
    if not -2**63 <= int(text) < 2**63:
      return f'column {column} holds {text}, beyond the int64 range'
    if column != 'timestamp' and int(text) < 0:
      return f'column {column} holds {text}, a negative id'
    return None
  if _NUMBER.fullmatch(text):
    return f'column {column} holds a value that is not an integer, {text!r}'
  return f'column {column} holds a non-numeric value {text!r}'


def _line_error(source: str, number: int, text: str,
                values: dict[str, str], fmt: _Format) -> str:
  """The message for line `number` of `source`, whose fields are `values`."""
  for column in _COLUMNS:
    problem = _problem(column, values.get(column))
    if problem:
      return (f'{source} line {number} ({_clip(text)}): {problem}; expected '
              f'{_EXPECTED[column]}')
  return (f'{source} line {number} ({_clip(text)}) cannot be read; expected '
          f'{fmt.layout}')


class _Lines:
  """Where each line of a file starts and ends; built only for messages.

  Lines end at LF, CRLF or a lone CR, as for pyarrow. Blank lines (which
  pyarrow skips) are counted, so numbers are what an editor shows.
  """

  def __init__(self, data: bytes):
    self._data = data
    buf = np.frombuffer(data, np.uint8)
    ends = np.flatnonzero(buf == 10)
    if b'\r' in data:
      cr = np.flatnonzero(buf == 13)
      after = np.full(cr.shape, -1)
      inside = cr + 1 < buf.shape[0]
      after[inside] = buf[cr[inside] + 1]
      ends = np.union1d(ends, cr[after != 10])
    self._starts = np.concatenate([[len(_BOM) if data.startswith(_BOM)
                                    else 0], ends + 1])
    self._stops = np.concatenate([ends, [buf.shape[0]]])
    crlf = self._stops > self._starts
    crlf[crlf] = buf[self._stops[crlf] - 1] == 13
    self._stops -= crlf
    self._non_blank = np.flatnonzero(self._stops > self._starts)

  def number(self, index: int) -> int:
    """The 1-based line number of the `index`-th (0-based) non-blank line."""
    return int(self._non_blank[index]) + 1

  def text(self, number: int) -> str:
    """Line `number` (1-based) without its line ending."""
    return self._data[self._starts[number - 1]:self._stops[number - 1]].decode(
        'utf-8', 'replace')


def _split(line: str, delimiter: str) -> list[str]:
  return [f.strip().strip('"').strip() for f in line.split(delimiter)]


def _clip(text: str, width: int = 60) -> str:
  """`text` quoted on one line, cut to `width` characters."""
  return repr(text if len(text) <= width else text[:width] + '...')
