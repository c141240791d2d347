"""Columnar ratings, as read from any source (GroupLens, TFDS, synthetic).

Every reader in `esapn_tf.data` returns a `Ratings`: one numpy array per column,
rows in the source's own order (file order for GroupLens files).
"""

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

  def validate(self, source: str) -> None:
    """Checks shapes, dtypes and value ranges.

    Args:
      source: the file, archive or loader the ratings came from; every message
        names it.

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
          f'{source} contains no ratings; pass a MovieLens ratings file with '
          'at least one row')
    bad = ~((self.rating >= MIN_RATING) & (self.rating <= MAX_RATING))
    if bad.any():
      row = int(np.argmax(bad))
      raise errors.DataError(
          f'{source}: rating {self.rating[row]} at row {row} (0-based, header '
          f'excluded); ratings must lie in {MIN_RATING}..{MAX_RATING:g} stars')
    for column in ('user_id', 'item_id'):
      values = columns[column][0]
      negative = values < 0
      if negative.any():
        row = int(np.argmax(negative))
        raise errors.DataError(
            f'{source}: {column} {values[row]} at row {row} (0-based, header '
            'excluded) is negative; ids must be non-negative integers')
