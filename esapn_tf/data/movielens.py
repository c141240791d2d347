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
line endings, blank lines and quoted fields are accepted. Files must be
UTF-8 text (ASCII is; Latin-1 letters in a column that is not read are
tolerated); UTF-16, UTF-32 and binary files are refused, and an error that
quotes a line shows it escaped (`\\xNN`) and cut to 80 characters.

Malformed input raises `errors.DataError` with one line that names the file
(inside an archive: `archive.zip/member`), the file's line number when one
line is at fault (1-based, as an editor counts: header and blank lines
included) and what was expected. The fast path stays vectorised; only a
failing file is scanned again, as text, to find the first bad line.
"""

import os
import re
import stat
import zipfile
import zlib

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import tensorflow as tf

from esapn_tf import errors
from esapn_tf.data import grouplens_format
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
      ratings file, or several; is not a zip archive or is corrupt; is not
      UTF-8 text (UTF-16, UTF-32, binary); has wrong columns, a
      non-numeric, empty or out-of-range value, or no rows. Each
      message is one line that names the file, the line at fault when there
      is one (1-based, as an editor counts: header and blank lines included),
      and what was expected.
  """
  if not os.path.lexists(path):
    raise errors.DataError(f'{path} does not exist; {grouplens_format.FIX}')
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
          f'expected a file named {" or ".join(RATINGS_FILES)}; {grouplens_format.FIX}')
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
  # Only this loader needs TFDS (0.14 s to import): not on the GroupLens path.
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
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
    shown = value.group(1) if value else e.message.splitlines()[0]
    raise errors.DataError(
        f'{builder}: a user_id or movie_id is not an integer '
        f'({errors.quote(shown)}); '
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
        f'{shown}{" ..." if len(names) > 8 else ""}); {grouplens_format.FIX}')
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
  something is wrong is the file scanned again (`grouplens_format.Lines`, `grouplens_format.locate`) to name
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
  fmt = grouplens_format.Format(filename)
  grouplens_format.check_text(data[:65536], source)
  head = data[:65536].removeprefix(grouplens_format.BOM)
  body = head.lstrip(b'\r\n')
  if not body.strip():
    raise errors.DataError(
        f'{source} contains no ratings (the file is empty); expected '
        f'{fmt.layout}')
  line = 1 + len(grouplens_format.LINE_BREAK.findall(head[:len(head) - len(body)]))
  first = grouplens_format.LINE_BREAK.split(body, 1)[0].decode(
      'utf-8', 'surrogateescape')
  fields = grouplens_format.split(first, fmt.delimiter)
  if fmt.has_header:
    if not set(grouplens_format.COLUMNS) <= set(fields) or len(set(fields)) < len(fields):
      missing = ('; the header line is missing'
                 if all(grouplens_format.INTEGER.fullmatch(f) or grouplens_format.NUMBER.fullmatch(f)
                        for f in fields) else '')
      raise errors.DataError(
          f'{source} line {line}: expected the columns {",".join(grouplens_format.COLUMNS)} '
          'in the header line, each once, found '
          f'{errors.escape(",".join(fields))}'
          f'{missing}')
    fmt.names = fields
  elif len(fields) != len(grouplens_format.COLUMNS):
    raise errors.DataError(
        f'{source} line {line} ({errors.quote(first)}): found {len(fields)} '
        f'field(s); expected {fmt.layout}; {grouplens_format.FIX}')
  parse_data = data.replace(b'::', b',') if fmt.delimiter == '::' else data
  try:
    table = grouplens_format.read_typed(parse_data, fmt, max_ratings)
  except pa.ArrowException as e:
    raise grouplens_format.locate(data, parse_data, fmt, source, e) from e
  if table.num_rows == 0:
    raise errors.DataError(
        f'{source} contains no ratings (only the header line); expected '
        f'{fmt.layout}')
  lines = []  # Built on first use: only a bad file needs line numbers.

  def describe(row: int) -> str:
    if not lines:
      lines.append(grouplens_format.Lines(data))
    number = lines[0].number(row + fmt.has_header)
    text = lines[0].text(number)
    values = dict(zip(fmt.names, grouplens_format.split(text, fmt.delimiter)))
    return grouplens_format.line_error(source, number, text, values, fmt)

  columns, null_rows = {}, []
  for column, key in zip(grouplens_format.COLUMNS, ('user_id', 'item_id', 'rating',
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
