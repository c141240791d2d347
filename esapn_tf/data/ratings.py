"""Columnar ratings, as read from any source (GroupLens, TFDS, synthetic).

Every reader in `esapn_tf.data` returns a `Ratings`: one numpy array per column,
rows in the source's own order (file order for GroupLens files).
"""

from collections.abc import Callable
import dataclasses

import numpy as np

from esapn_tf import errors

MIN_RATING = 0.5
MAX_RATING = 5.0


@dataclasses.dataclass(frozen=True)
class Ratings:
  """Ratings as parallel columns.

  Attributes:
    user_id: int64 [n], raw user ids as in the source (not contiguous).
    item_id: int64 [n], raw movie ids as in the source (not contiguous).
    rating: float32 [n], stars in 0.5..5 (half steps, or whole stars 1..5).
    timestamp: int64 [n], seconds since the Unix epoch.
    name: a short name of the source, e.g. 'ml-latest-small'.
  """

  user_id: np.ndarray  # int64 [n] raw ids
  item_id: np.ndarray  # int64 [n] raw movie ids
  rating: np.ndarray  # float32 [n], 0.5..5
  timestamp: np.ndarray  # int64 [n], seconds since epoch
  name: str

  @property
  def num_ratings(self) -> int:
    """The number of rows n."""
    return int(self.rating.shape[0])

  def head(self, max_ratings: int) -> 'Ratings':
    """The first `max_ratings` rows (all rows if `max_ratings` <= 0).

    Args:
      max_ratings: how many rows to keep, in source order; 0 keeps all.

    Returns:
      A `Ratings` sharing memory with this one (numpy slices).
    """
    if max_ratings <= 0 or max_ratings >= self.num_ratings:
      return self
    return dataclasses.replace(
        self,
        user_id=self.user_id[:max_ratings],
        item_id=self.item_id[:max_ratings],
        rating=self.rating[:max_ratings],
        timestamp=self.timestamp[:max_ratings])

  def first_invalid_row(self) -> int | None:
    """The first row whose values break the rules `validate` checks.

    Returns:
      The 0-based row of the first rating outside 0.5..5 (NaN included) or
      negative user or movie id; None when every row is valid.
    """
    bad = ~((self.rating >= MIN_RATING) & (self.rating <= MAX_RATING))
    bad |= self.user_id < 0
    bad |= self.item_id < 0
    return int(np.argmax(bad)) if bad.any() else None

  def validate(self, source: str,
               describe: Callable[[int], str] | None = None) -> None:
    """Checks shapes, dtypes and value ranges.

    Args:
      source: the file, archive or loader the ratings came from; every message
        names it.
      describe: optional; maps the 0-based row of an invalid value to the
        whole error message. File readers pass one that names the file's line
        number and the field as written; without it the message names the
        0-based row.

    Raises:
      errors.DataError: no rows; columns of different lengths or dtypes; a
        rating outside 0.5..5 or NaN; a negative user or movie id.
    """
    n = self.num_ratings
    columns = {
        'user_id': (self.user_id, np.int64),
        'item_id': (self.item_id, np.int64),
        'rating': (self.rating, np.float32),
        'timestamp': (self.timestamp, np.int64),
    }
    for column, (values, dtype) in columns.items():
      if values.ndim != 1 or values.shape[0] != n or values.dtype != dtype:
        raise errors.DataError(
            f'{source}: column {column} has shape {values.shape} and dtype '
            f'{values.dtype}; expected [{n}] of {np.dtype(dtype).name}')
    if n == 0:
      raise errors.DataError(
          f'{source} contains no ratings; expected at least one rating')
    row = self.first_invalid_row()
    if row is None:
      return
    if describe is not None:
      raise errors.DataError(describe(row))
    rating = self.rating[row]
    if not MIN_RATING <= rating <= MAX_RATING:
      raise errors.DataError(
          f'{source}: rating {rating} at row {row} (0-based) is outside '
          f'{MIN_RATING}..{MAX_RATING:g}; expected {MIN_RATING} to '
          f'{MAX_RATING:g} stars')
    column = 'user_id' if self.user_id[row] < 0 else 'item_id'
    raise errors.DataError(
        f'{source}: {column} {columns[column][0][row]} at row {row} (0-based) '
        'is negative; expected non-negative integer ids')
