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
20M rows load in a few seconds. UTF-8 byte order marks and CRLF line endings
are accepted.
"""

import os
import re
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

# Ratings file names, in the order they are preferred when several are present.
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
    errors.DataError: `path` does not exist; holds no ratings file; is not a
      zip archive or is corrupt; has wrong columns, non-numeric or empty
      values, no rows, or a rating outside 0.5..5.
  """
  if not os.path.exists(path):
    raise errors.DataError(f'{path} does not exist; {_FIX}')
  looked_for = ', '.join(RATINGS_FILES)
  if os.path.isdir(path):
    # The folder itself and its direct subfolders (e.g. `ml-1m/ratings.dat`).
    names = os.listdir(path)
    names += [f'{d}/{f}' for d in names
              if os.path.isdir(os.path.join(path, d))
              for f in os.listdir(os.path.join(path, d))]
    member = _pick(names)
    if member is None:
      raise errors.DataError(
          f'{path} holds no ratings file (looked for {looked_for} in the '
          f'folder and its subfolders); {_FIX}')
    source = os.path.join(path, *member.split('/'))
    data, filename = _read_file(source), os.path.basename(source)
  elif zipfile.is_zipfile(path):
    data, member = _read_zip(path)
    filename, source = member.rsplit('/', 1)[-1], f'{path}/{member}'
  elif os.path.basename(path) in RATINGS_FILES:
    data, filename, source = _read_file(path), os.path.basename(path), path
  elif path.lower().endswith('.zip'):
    raise errors.DataError(
        f'{path} is not a zip archive or is corrupt; download it again from '
        'https://grouplens.org/datasets/movielens/')
  else:
    raise errors.DataError(
        f'{path} is neither a zip archive, a folder nor a ratings file named '
        f'one of {looked_for}; {_FIX}')
  name = os.path.basename(os.path.normpath(path))
  if name in RATINGS_FILES:
    name = os.path.basename(os.path.dirname(os.path.abspath(path)))
  elif name.lower().endswith('.zip'):
    name = name[:-4]
  r = _parse(data, filename, source, name, max_ratings)
  r.validate(source)
  return r


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


def _pick(names: list[str]) -> str | None:
  """The preferred ratings file: shallowest first, then by RATINGS_FILES.

  Args:
    names: '/'-separated paths relative to the archive or folder.

  Returns:
    One of `names`, or None when none is a ratings file.
  """
  found = []
  for name in names:
    base = name.rsplit('/', 1)[-1]
    if base in RATINGS_FILES and not name.startswith('__MACOSX/'):
      found.append((name.count('/'), RATINGS_FILES.index(base), name))
  return min(found)[2] if found else None


def _read_file(path: str) -> bytes:
  try:
    with open(path, 'rb') as f:
      return f.read()
  except OSError as e:
    raise errors.DataError(f'{path} cannot be read: {e.strerror}') from e


def _read_zip(path: str) -> tuple[bytes, str]:
  """The bytes and member name of the ratings file inside a zip archive."""
  try:
    with zipfile.ZipFile(path) as archive:
      names = [n for n in archive.namelist() if not n.endswith('/')]
      member = _pick(names)
      if member is None:
        raise errors.DataError(
            f'{path} holds no ratings file (looked for '
            f'{", ".join(RATINGS_FILES)}; found '
            f'{", ".join(names[:8]) or "nothing"}'
            f'{" ..." if len(names) > 8 else ""}); {_FIX}')
      return archive.read(member), member
  except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError,
          OSError) as e:
    raise errors.DataError(
        f'{path} is not a readable zip archive ({e}); download it again from '
        'https://grouplens.org/datasets/movielens/') from e


def _parse(data: bytes, filename: str, source: str, name: str,
           max_ratings: int) -> ratings.Ratings:
  """Parses the bytes of a ratings file into columns.

  Args:
    data: the whole file.
    filename: its base name, one of RATINGS_FILES; selects the format.
    source: the path used in messages.
    name: the `Ratings.name`.
    max_ratings: if > 0, parse only the first `max_ratings` rows.

  Returns:
    Unvalidated `Ratings`.

  Raises:
    errors.DataError: empty file, wrong columns, non-numeric or empty values.
  """
  delimiter, has_header = _FORMATS[filename]
  head = data[:65536].removeprefix(_BOM).lstrip(b'\r\n')
  if not head.strip():
    raise errors.DataError(
        f'{source} contains no ratings (the file is empty); {_FIX}')
  first = head.split(b'\n', 1)[0].rstrip(b'\r').decode('utf-8', 'replace')
  fields = [f.strip().strip('"') for f in first.split(delimiter)]
  if has_header and not set(_COLUMNS) <= set(fields):
    raise errors.DataError(
        f'{source}: expected the columns {",".join(_COLUMNS)} in the header '
        f'line, found {",".join(fields)}; {_FIX}')
  if not has_header and len(fields) != len(_COLUMNS):
    raise errors.DataError(
        f'{source}: expected {len(_COLUMNS)} fields per line '
        f'(user, movie, rating, timestamp separated by {delimiter!r}), found '
        f'{len(fields)} in the first line {first[:60]!r}; {_FIX}')
  names = fields if has_header else list(_COLUMNS)
  if delimiter == '::':
    data = data.replace(b'::', b',')  # Only ml-1m/ml-10m: small enough.
    delimiter = ','
  read_options = pacsv.ReadOptions(
      column_names=None if has_header else list(_COLUMNS))
  parse_options = pacsv.ParseOptions(delimiter=delimiter)
  convert_options = pacsv.ConvertOptions(
      column_types=_TYPES, include_columns=list(_COLUMNS))
  try:
    if max_ratings > 0:
      reader = pacsv.open_csv(pa.BufferReader(data), read_options,
                              parse_options, convert_options)
      batches, count = [], 0
      while count < max_ratings:
        try:
          batch = reader.read_next_batch()
        except StopIteration:
          break
        batches.append(batch)
        count += batch.num_rows
      table = pa.Table.from_batches(batches, reader.schema)
      table = table.slice(0, max_ratings)
    else:
      table = pacsv.read_csv(pa.BufferReader(data), read_options, parse_options,
                             convert_options)
  except pa.ArrowInvalid as e:
    raise _arrow_error(e, source, names) from e
  columns = {}
  for column, key in zip(_COLUMNS, ('user_id', 'item_id', 'rating',
                                    'timestamp')):
    values = table.column(column)
    if values.null_count:
      row = int(np.argmax(pc.is_null(values).to_numpy(zero_copy_only=False)))
      raise errors.DataError(
          f'{source}: column {column} has an empty or non-numeric value at row '
          f'{row} (0-based, header excluded); every field must be a number')
    columns[key] = values.to_numpy()
  return ratings.Ratings(name=name, **columns)


def _arrow_error(e: pa.ArrowInvalid, source: str,
                 names: list[str]) -> errors.DataError:
  """Turns a pyarrow CSV error into a one-line DataError."""
  message = str(e).splitlines()[0]
  conversion = re.search(r'column #(\d+): CSV conversion error to (\w+): '
                         r'invalid value (.*)$', message)
  if conversion:
    index = int(conversion.group(1))
    column = names[index] if index < len(names) else f'#{index}'
    value = conversion.group(3)
    try:
      float(value.strip("'\""))
      problem = f'a value that is not an integer, {value}'
    except ValueError:
      problem = f'a non-numeric value {value}'
    return errors.DataError(
        f'{source}: column {column} holds {problem}; userId, movieId and '
        'timestamp must be integers and rating a number')
  if 'Expected' in message and 'columns' in message:
    return errors.DataError(
        f'{source}: a line has the wrong number of fields ({message}); '
        f'expected {",".join(_COLUMNS)} on every line')
  return errors.DataError(f'{source} cannot be parsed: {message}; {_FIX}')
