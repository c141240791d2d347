"""The three GroupLens ratings formats, and naming a malformed line.

Used by `movielens.load_grouplens`: the column layout and types of
`ratings.csv`, `ratings.dat` and `u.data`, the fast typed pyarrow read, and,
when that read or the value checks fail, the slower scan that finds the first
bad line of the file and says what was expected there (1-based line numbers,
as an editor counts: header and blank lines included). `write_grouplens_csv`
writes ratings in the `ratings.csv` format (the synthetic streams of the
benchmarks and tests).
"""

import math
import os
import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from esapn_tf import errors
from esapn_tf.data import ratings

COLUMNS = ('userId', 'movieId', 'rating', 'timestamp')
# Rating strings for write_grouplens_csv, indexed by 2 * rating.
_RATING_TEXT = pa.array([f'{k / 2:.1f}' for k in range(11)])
TYPES = {
    'userId': pa.int64(),
    'movieId': pa.int64(),
    'rating': pa.float32(),
    'timestamp': pa.int64(),
}
# File name -> (field separator, whether the first line is a header).
FORMATS = {
    'ratings.csv': (',', True),
    'ratings.dat': ('::', False),
    'u.data': ('\t', False),
}
FIX = ('pass a MovieLens archive or folder as downloaded from '
        'https://grouplens.org/datasets/movielens/')
BOM = b'\xef\xbb\xbf'
LINE_BREAK = re.compile(rb'\r\n|\r|\n')
INTEGER = re.compile(r'-?[0-9]+')
NUMBER = re.compile(r'[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?')
# Column -> what a valid field holds, for messages.
EXPECTED = {
    'userId': 'a non-negative integer user id below 2**63',
    'movieId': 'a non-negative integer movie id below 2**63',
    'rating': (f'a number of stars from {ratings.MIN_RATING} to '
               f'{ratings.MAX_RATING:g}'),
    'timestamp': 'an integer timestamp (seconds since 1970) within int64',
}

# Byte-order marks of encodings the reader cannot parse -> their names.
# UTF-32 LE before UTF-16 LE: its mark starts with UTF-16 LE's.
FOREIGN_BOMS = (
    (b'\xff\xfe\x00\x00', 'UTF-32'),
    (b'\x00\x00\xfe\xff', 'UTF-32'),
    (b'\xff\xfe', 'UTF-16'),
    (b'\xfe\xff', 'UTF-16'),
)


def check_text(head: bytes, source: str) -> None:
  """Refuses a file that is not UTF-8 (or ASCII, or Latin-1) text.

  UTF-16 or UTF-32 (with or without a byte-order mark) and binary data (any
  NUL byte: text never holds one) are refused. Other bytes that are not
  UTF-8, such as the Latin-1 letters of a tag column, are left to the
  parser: numeric columns are plain ASCII in every encoding, and an error
  that quotes such a byte shows it as `\\xNN`.

  Args:
    head: the file's first bytes (64 KiB are plenty).
    source: the path used in messages.

  Raises:
    errors.DataError: one line naming `source`, what the bytes look like and
      how to convert them, e.g. "... is not UTF-8 text (looks like UTF-16:
      it starts with a UTF-16 byte-order mark); expected UTF-8 text: convert
      it with iconv -f UTF-16 -t UTF-8".
  """
  encoding, why = None, ''
  for mark, name in FOREIGN_BOMS:
    if head.startswith(mark):
      encoding, why = name, f'it starts with a {name} byte-order mark'
      break
  nul = head.find(b'\x00')
  if encoding is None and nul >= 0:
    buf = np.frombuffer(head[:len(head) // 2 * 2], np.uint8).reshape(-1, 2)
    zero = (buf == 0).mean(axis=0) if buf.size else np.zeros(2)
    # ASCII text in UTF-16: every other byte is NUL.
    if zero[1] > 0.9 and zero[0] < 0.1:
      encoding, why = 'UTF-16LE', 'every other byte is NUL'
    elif zero[0] > 0.9 and zero[1] < 0.1:
      encoding, why = 'UTF-16BE', 'every other byte is NUL'
  if encoding is not None:
    raise errors.DataError(
        f'{source} is not UTF-8 text (looks like {encoding}: {why}); '
        f'expected UTF-8 text: convert it with iconv -f {encoding} -t UTF-8')
  if nul >= 0:
    line = 1 + len(LINE_BREAK.findall(head[:nul]))
    raise errors.DataError(
        f'{source} is not UTF-8 text (binary data: a NUL byte at byte '
        f'{nul:,}, line {line}); expected a ratings text file; {FIX}')


class Format:
  """The layout of one ratings file format.

  Attributes:
    delimiter: ',', '::' or tab.
    has_header: whether the first non-blank line names the columns.
    names: the column names in file order (from the header, if any).
    layout: the format in words, for messages.
  """

  def __init__(self, filename: str):
    self.delimiter, self.has_header = FORMATS[filename]
    self.names = list(COLUMNS)  # The columns in file order.
    if self.has_header:
      self.layout = (f'a header line {",".join(COLUMNS)} then one rating per '
                     'line')
    else:
      shown = {'\t': '<TAB>'}.get(self.delimiter, self.delimiter)
      self.layout = f'4 fields per line, {shown.join(COLUMNS)}, no header'


def read_typed(data: bytes, fmt: Format, max_ratings: int) -> pa.Table:
  """The fast read: int64/float32 columns, multithreaded."""
  read_options = pacsv.ReadOptions(
      column_names=None if fmt.has_header else list(COLUMNS))
  parse_options = pacsv.ParseOptions(
      delimiter=',' if fmt.delimiter == '::' else fmt.delimiter)
  convert_options = pacsv.ConvertOptions(
      column_types=TYPES, include_columns=list(COLUMNS))
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


def locate(data: bytes, parse_data: bytes, fmt: Format, source: str,
            cause: pa.ArrowException) -> errors.DataError:
  """Names the first malformed line after the fast read failed.

  Re-reads the file single-threaded as text (so rows come in file order),
  batch by batch, and stops at the first line with the wrong number of fields
  or a value that is not a valid number. Vectorised candidates per batch; the
  few candidates are confirmed by `problem` in Python.

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
    error = first_bad_line(data, parse_data, fmt, source)
  except (pa.ArrowException, UnicodeDecodeError):  # Not even text rows.
    error = None
  if error:
    return error
  # pyarrow's message may quote the raw row: escaped and cut like a line.
  message = errors.escape((str(cause).splitlines() or [''])[0], 160)
  return errors.DataError(f'{source} cannot be parsed ({message}); {FIX}')


def first_bad_line(data: bytes, parse_data: bytes, fmt: Format,
                    source: str) -> errors.DataError | None:
  """`locate`'s scan; None if no line is to blame."""
  first_skipped = []  # pyarrow's number of the first row with wrong fields.

  def on_invalid_row(row) -> str:
    if not first_skipped:
      first_skipped.append((row.number, row.actual_columns))
    return 'skip'

  reader = pacsv.open_csv(
      pa.BufferReader(parse_data),
      pacsv.ReadOptions(use_threads=False, column_names=(
          None if fmt.has_header else list(COLUMNS))),
      pacsv.ParseOptions(delimiter=',' if fmt.delimiter == '::'
                         else fmt.delimiter,
                         invalid_row_handler=on_invalid_row),
      # Binary, not string: a stray Latin-1 byte must not stop the scan.
      pacsv.ConvertOptions(column_types=dict.fromkeys(COLUMNS, pa.binary()),
                           include_columns=list(COLUMNS)))
  lines, seen = Lines(data), 0
  for batch in reader:
    # Rows before the first skipped one keep their index; `number` counts
    # non-blank lines from 1, the header included.
    skipped = (first_skipped[0][0] - 1 - fmt.has_header if first_skipped
               else seen + batch.num_rows)  # As a 0-based data row.
    for row in candidates(batch.slice(0, skipped - seen)):
      values = {c: batch.column(c)[row].as_py().decode('utf-8',
                                                      'surrogateescape')
                for c in COLUMNS}
      number = lines.number(seen + row + fmt.has_header)
      text = lines.text(number)
      if fmt.has_header and split(text, fmt.delimiter) == fmt.names:
        return errors.DataError(
            f'{source} line {number} repeats the header line; expected '
            'one rating per line after the header')
      if any(field_problem(c, values[c]) for c in COLUMNS):
        return errors.DataError(
            line_error(source, number, text, values, fmt))
    if skipped <= seen + batch.num_rows and first_skipped:
      number = lines.number(first_skipped[0][0] - 1)
      return errors.DataError(
          f'{source} line {number} ({errors.quote(lines.text(number))}): '
          f'found {first_skipped[0][1]} field(s); expected {len(fmt.names)} '
          f'({errors.escape(fmt.delimiter.join(fmt.names))})')
    seen += batch.num_rows
  return None


def candidates(batch: pa.RecordBatch) -> np.ndarray:
  """Rows (ascending) of a text batch that may hold an invalid value.

  A superset: a 19-digit integer or '1e0' is a candidate that `problem`
  then clears.
  """
  suspect = np.zeros(batch.num_rows, bool)
  for column in COLUMNS:
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


def field_problem(column: str, value: str | None) -> str | None:
  """What is wrong with one field as written; None when it is valid."""
  text = (value or '').strip().strip('"').strip()
  if not text:
    return f'column {column} is empty'
  if column == 'rating':
    try:
      stars = float(text)
    except ValueError:
      return ('column rating holds a non-numeric value '
              f'{errors.quote(text, 40)}')
    if math.isnan(stars):
      return f'column rating holds {errors.quote(text, 40)}, not a number'
    if not ratings.MIN_RATING <= stars <= ratings.MAX_RATING:
      return (f'rating {stars} is outside {ratings.MIN_RATING}..'
              f'{ratings.MAX_RATING:g}')
    return None
  if INTEGER.fullmatch(text):
    if not -2**63 <= int(text) < 2**63:
      return (f'column {column} holds {errors.escape(text, 40)}, beyond the '
              'int64 range')
    if column != 'timestamp' and int(text) < 0:
      return f'column {column} holds {text}, a negative id'
    return None
  if NUMBER.fullmatch(text):
    return (f'column {column} holds a value that is not an integer, '
            f'{errors.quote(text, 40)}')
  return f'column {column} holds a non-numeric value {errors.quote(text, 40)}'


def line_error(source: str, number: int, text: str,
                values: dict[str, str], fmt: Format) -> str:
  """The message for line `number` of `source`, whose fields are `values`."""
  for column in COLUMNS:
    problem = field_problem(column, values.get(column))
    if problem:
      return (f'{source} line {number} ({errors.quote(text)}): {problem}; '
              f'expected {EXPECTED[column]}')
  return (f'{source} line {number} ({errors.quote(text)}) cannot be read; '
          f'expected {fmt.layout}')


class Lines:
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
    self._starts = np.concatenate([[len(BOM) if data.startswith(BOM)
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
    """Line `number` (1-based) without its line ending.

    Bytes that are not UTF-8 (a Latin-1 letter, binary data) are kept as the
    lone surrogates of 'surrogateescape', which `errors.quote` shows as
    `\\xNN`.
    """
    return self._data[self._starts[number - 1]:self._stops[number - 1]].decode(
        'utf-8', 'surrogateescape')


def split(line: str, delimiter: str) -> list[str]:
  """The fields of `line`, stripped of spaces and double quotes."""
  return [f.strip().strip('"').strip() for f in line.split(delimiter)]


def write_grouplens_csv(r: ratings.Ratings, path: str) -> None:
  """Writes `r` as a GroupLens `ratings.csv`.

  The header is `userId,movieId,rating,timestamp`.

  Ratings are written with one decimal (`4.0`, `4.5`) as GroupLens does. The
  file is written to a temporary name beside `path`, then renamed into place,
  so a reader never sees half a file.

  Args:
    r: ratings whose `rating` values are whole or half stars.
    path: the file to write, e.g. `folder/ratings.csv`.
  """
  code = np.rint(r.rating * 2).astype(np.int8)
  table = pa.table({
      'userId': r.user_id,
      'movieId': r.item_id,
      'rating': pa.DictionaryArray.from_arrays(code, _RATING_TEXT),
      'timestamp': r.timestamp,
  })
  temporary = f'{path}.tmp-{os.getpid()}'
  try:
    with open(temporary, 'wb') as f:
      f.write(b'userId,movieId,rating,timestamp\n')
      pacsv.write_csv(table, f, pacsv.WriteOptions(include_header=False,
                                                    quoting_style='none'))
    os.replace(temporary, path)
  finally:
    if os.path.exists(temporary):
      os.remove(temporary)
