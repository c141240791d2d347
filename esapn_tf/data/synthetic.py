"""An embedded, deterministic MovieLens-like generator (DESIGN.md section 6).

The offline default: tests, smoke runs and machines without the GroupLens
archive train on it. It imitates what matters to ESAPN in MovieLens:

- Sizes scale like ml-20m (138,493 users and 26,744 movies for 20,000,263
  ratings): for n ratings, `users = 138493 * (n / 20000263) ** 0.8` (at least
  50) and `items = 26744 * (n / 20000263) ** 0.6` (at least 20). Movies shrink
  more slowly than users, as in the small GroupLens sets (ml-latest-small has
  9,724 movies for 100,836 ratings). For 100,000 ratings: 1,998 users and
  1,113 movies.
- Skewed frequencies: user activity is power-law (Pareto, tail exponent 2.2)
  on top of a minimum of 5 ratings per user (fewer only if there are not
  enough ratings to go round); movie popularity is Zipf-like,
  `p(rank) ~ 1 / (rank + items / 500)`, so the top 10% of movies hold about 60%
  of the ratings.
- A learnable signal: `score = mu + b_user + b_item + <p_user, q_item> + noise`
  with rank-8 factors; popular movies are rated a little higher, as in
  MovieLens. The score is rounded to whole stars (55% of ratings, MovieLens
  users prefer them) or half stars and clipped to 0.5..5: mean about 3.5 and
  about 48% of ratings above 3.5 (ml-20m: 3.53 and 50%).
- Timestamps from 1995 to 2015: each user is active in one window (log-normal
  length, median 30 days) and rates at sorted random times inside it.

Rows are ordered by user, then by time. The same user may rate the same movie
twice (a heavy user drawing a popular movie again); MovieLens has no such
repeats, ESAPN does not care. Everything is vectorised numpy driven by one
`np.random.default_rng(seed)`: 20M ratings take about 6 s on 2 cores and
under 2 GiB.
"""

import os

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from esapn_tf import errors
from esapn_tf.data import ratings

_ML20M_RATINGS = 20_000_263
_ML20M_USERS = 138_493
_ML20M_ITEMS = 26_744
_MIN_PER_USER = 5
_RANK = 8
_START = 789_652_800  # 1995-01-09, the first ml-20m rating.
_END = 1_427_760_000  # 2015-03-31, the last one.
_DAY = 86_400
# Rating strings for write_grouplens_csv, indexed by 2 * rating.
_RATING_TEXT = pa.array([f'{k / 2:.1f}' for k in range(11)])


def default_sizes(num_ratings: int) -> tuple[int, int]:
  """The (num_users, num_items) `generate` uses for `num_ratings` by default."""
  scale = num_ratings / _ML20M_RATINGS
  num_users = max(50, round(_ML20M_USERS * scale**0.8))
  num_items = max(20, round(_ML20M_ITEMS * scale**0.6))
  return min(num_users, num_ratings), num_items


def generate(num_ratings: int = 100_000,
             seed: int = 0,
             num_users: int | None = None,
             num_items: int | None = None) -> ratings.Ratings:
  """Generates MovieLens-like ratings (see the module docstring for the model).

  Args:
    num_ratings: n, the number of rows.
    seed: the seed of `np.random.default_rng`; the same arguments give
      identical arrays.
    num_users: users U (raw ids 1..U, every one with at least one rating);
      None for `default_sizes`.
    num_items: movies I (sparse raw ids, as in MovieLens; not every movie is
      necessarily rated); None for `default_sizes`.

  Returns:
    `Ratings` named f'synthetic-{num_ratings}': user_id int64 [n], item_id
    int64 [n], rating float32 [n] in 0.5..5 half steps, timestamp int64 [n],
    rows ordered by user, then time.

  Raises:
    errors.UserInputError: num_ratings < 1, num_users outside 1..num_ratings,
      or num_items < 1.
  """
  if num_ratings < 1:
    raise errors.UserInputError(
        f'num_ratings is {num_ratings}; it must be at least 1')
  default_users, default_items = default_sizes(num_ratings)
  num_users = default_users if num_users is None else num_users
  num_items = default_items if num_items is None else num_items
  if not 1 <= num_users <= num_ratings:
    raise errors.UserInputError(
        f'num_users is {num_users}; it must lie in 1..num_ratings '
        f'({num_ratings}) so that every user has a rating')
  if num_items < 1:
    raise errors.UserInputError(f'num_items is {num_items}; it must be >= 1')
  rng = np.random.default_rng(seed)

  # Users: a minimum each, the rest shared by power-law activity.
  minimum = min(_MIN_PER_USER, num_ratings // num_users)
  activity = rng.pareto(2.2, num_users) + 1.0
  counts = minimum + rng.multinomial(num_ratings - minimum * num_users,
                                     activity / activity.sum())
  user = np.repeat(np.arange(num_users), counts)  # int64 [n], sorted.

  # Movies: Zipf-like popularity over ranks; rank -> movie by a permutation.
  rank_weight = 1.0 / (np.arange(num_items) + 1.0 + num_items / 500)
  rank = rng.choice(num_items, size=num_ratings,
                    p=rank_weight / rank_weight.sum())
  movie_of_rank = rng.permutation(num_items)
  item = movie_of_rank[rank]  # int64 [n], row of the movie in item_ids.
  item_ids = 1 + np.sort(rng.choice(3 * num_items, num_items, replace=False))

  rating = _ratings(rng, user, item, rank_weight, movie_of_rank)
  timestamp = _timestamps(rng, counts, num_users)
  return ratings.Ratings(
      user_id=(user + 1).astype(np.int64),
      item_id=item_ids[item].astype(np.int64),
      rating=rating,
      timestamp=timestamp,
      name=f'synthetic-{num_ratings}')


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


def _ratings(rng: np.random.Generator, user: np.ndarray, item: np.ndarray,
             rank_weight: np.ndarray, movie_of_rank: np.ndarray) -> np.ndarray:
  """Star ratings float32 [n] from biases, rank-8 factors and noise."""
  n, num_users, num_items = user.shape[0], user[-1] + 1, rank_weight.shape[0]
  user_bias = rng.normal(0.0, 0.35, num_users).astype(np.float32)
  # Log popularity, standardised over ratings (not movies): mean 0 per rating.
  log_rank = -np.log1p(np.arange(num_items))
  p = rank_weight / rank_weight.sum()
  mean = (p * log_rank).sum()
  std = np.sqrt((p * (log_rank - mean)**2).sum()) + 1e-9
  popularity = np.empty(num_items)
  popularity[movie_of_rank] = (log_rank - mean) / std
  item_bias = (rng.normal(0.0, 0.35, num_items)
               + 0.2 * popularity).astype(np.float32)
  # Factor scale s: <p, q> has standard deviation sqrt(RANK) * s**2 = 0.6.
  scale = np.sqrt(0.6 / np.sqrt(_RANK))
  user_factors = rng.normal(0.0, scale, (_RANK, num_users)).astype(np.float32)
  item_factors = rng.normal(0.0, scale, (_RANK, num_items)).astype(np.float32)
  score = rng.normal(3.55, 0.6, n).astype(np.float32)  # mu + noise.
  score += user_bias[user]
  score += item_bias[item]
  for k in range(_RANK):  # One column at a time: no [n, RANK] temporaries.
    score += user_factors[k][user] * item_factors[k][item]
  whole = rng.random(n, dtype=np.float32) < 0.55
  half_steps = np.where(whole, 2 * np.rint(score), np.rint(2 * score))
  return (np.clip(half_steps, 1, 10) / 2).astype(np.float32)


def _timestamps(rng: np.random.Generator, counts: np.ndarray,
                num_users: int) -> np.ndarray:
  """Seconds since the epoch int64 [n], increasing within each user's rows."""
  length = np.minimum(30 * _DAY * rng.lognormal(0.0, 2.0, num_users),
                      _END - _START)
  start = _START + rng.random(num_users) * (_END - _START - length)
  # Sorted uniform times per user from exponential spacings: the k-th of m
  # points is (e_1 + ... + e_k) / (e_1 + ... + e_{m+1}).
  spacing = rng.standard_exponential(int(counts.sum()))
  total = np.cumsum(spacing)
  first = np.cumsum(counts) - counts  # Row of each user's first rating.
  before = np.concatenate([[0.0], total])[first]  # Sum before that row.
  ends = np.maximum(first + counts - 1, 0)
  span = total[ends] - before + rng.standard_exponential(num_users)
  user = np.repeat(np.arange(num_users), counts)
  fraction = (total - before[user]) / span[user]
  return (start[user] + fraction * length[user]).astype(np.int64)
