"""An embedded, deterministic MovieLens-like generator (DESIGN.md section 6).

The offline default: tests, smoke runs and machines without the GroupLens
archive train on it. It imitates what matters to ESAPN in MovieLens:

- Sizes scale like ml-20m (138,493 users and 26,744 movies for 20,000,263
  ratings): for n ratings, `users = 138493 * (n / 20000263) ** 0.8` (at least
  50) and `items = 26744 * (n / 20000263) ** 0.6` (at least 20). Movies shrink
  more slowly than users, as in the small GroupLens sets (ml-latest-small has
  9,724 movies for 100,836 ratings). For 100,000 ratings: 1,998 users and
  1,113 movies.
- MovieLens's long tail, as exact per-side degree sequences (ratings per user,
  ratings per movie), each `floor + floor(x)` with x a lognormal weight
  squashed by a soft cap `x * c / (x + c)` and scaled so that the degrees sum
  to n. At ml-latest-small's sizes (100,836 ratings, 610 users, 9,724 movies)
  they match ml-latest-small's (seeds 0-4; the real set in brackets):

    users: floor 20 (GroupLens's own minimum; fewer only when n / U < 20),
      lognormal sigma 1.6, cap c = 0.4 * movies: median 66-79 (70.5), mean
      165.3 (165.3), p90 326-418 (400), max 2,106-2,821 (2,698).
    movies: no floor beyond the one rating that makes a movie exist, sigma
      2.0, cap c = 0.5 * users: 35.7-36.5% with one rating (35.4%),
      62.7-63.1% under 5 (62.5%), 87.1-87.4% under 20 (86.7%), median 3 (3),
      max 267-291 (329).

  The two (sigma, c) pairs were chosen by grid search over sigma and c / the
  other side's count (least squares on the movies' shares with 1, 2, < 5,
  < 10, < 20, < 50 ratings; on the log of the users' p10, p25, median, p75,
  p90, p99 and max; 3-5 seeds per point). The caps follow the real maxima:
  ml-latest-small's busiest user rates 28% of its movies, its most rated
  movie 54% of its users. The movies' sigma grows with the mean ratings per
  movie m = n / movies, `2.0 + 0.21 * ln(m / 10.37)` (clipped to 1.5..3.2),
  so that ml-20m's sizes (m = 748, sigma 2.9) come near ml-20m's movies
  (median about 18, about 13% with one rating): median 25, 13.7% with one,
  max 68,131; users there: median 58, mean 144.4, max 9,362. At the default
  sizes for 100,000 ratings (sigma 2.45): users median 32, max 365; movies
  median 14, 13% with one rating. Dense sets (mean ratings per user near the
  number of movies) are squashed by the caps and lose much of their tails.
- Users and movies are paired configuration-model style, which meets both
  degree sequences exactly: the movies' "stubs" (each movie repeated by its
  degree, movies in random order) are dealt to the rows so that each user
  takes one at a random point of each of its equal strata (systematic
  sampling, which already avoids most repeated pairs); then rows that repeat
  a (user, movie) pair swap movies with rows of lighter users and less
  popular movies, for up to 16 rounds. No pair repeats at ml-latest-small's
  or the default sizes; at ml-20m's 0.18% of rows still repeat one (its
  heavy users and popular movies overlap more than a simple graph allows
  random pairing to settle quickly). MovieLens has none; ESAPN does not care.
- A learnable signal: `score = mu + b_user + b_item + <p_user, q_item> + noise`
  with rank-8 factors; popular movies are rated a little higher, as in
  MovieLens. The score is rounded to whole stars (55% of ratings, MovieLens
  users prefer them) or half stars and clipped to 0.5..5: mean about 3.5 and
  about 48% of ratings above 3.5 (ml-20m: 3.53 and 50%).
- Timestamps from 1995 to 2015: each user is active in one window (log-normal
  length, median 30 days) and rates at sorted random times inside it.

Rows are ordered by user, then by time; a user's movies come in random order.
Everything is vectorised numpy driven by one `np.random.default_rng(seed)`:
ml-20m's 20M ratings take about 15 s on 2 cores (10 s of it pairing) and
1.3 GiB above the imports.
"""

import numpy as np

from esapn_tf import errors
from esapn_tf.data import ratings

_ML20M_RATINGS = 20_000_263
_ML20M_USERS = 138_493
_ML20M_ITEMS = 26_744
_MIN_PER_USER = 20  # GroupLens's minimum ratings per user.
_USER_SIGMA = 1.6  # lognormal sigma of the users' weights
_USER_CAP = 0.4  # soft cap on ratings per user, as a share of the movies
_ITEM_SIGMA = 2.0  # lognormal sigma of the movies' weights at _ITEM_MEAN
_ITEM_SIGMA_SLOPE = 0.21  # d sigma / d ln(ratings per movie)
_ITEM_SIGMA_RANGE = (1.5, 3.2)
_ITEM_MEAN = 100_836 / 9_724  # ml-latest-small's ratings per movie
_ITEM_CAP = 0.5  # soft cap on ratings per movie, as a share of the users
_REWIRE_ROUNDS = 16  # at most, to swap repeated (user, movie) pairs away
_RANK = 8
_START = 789_652_800  # 1995-01-09, the first ml-20m rating.
_END = 1_427_760_000  # 2015-03-31, the last one.
_DAY = 86_400


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
    num_users: users U (raw ids 1..U, every one with min(20, n // U)
      ratings or more); None for `default_sizes`.
    num_items: movies I (sparse raw ids in 1..3I, as in MovieLens; every one
      has at least one rating, unless I > n: then n of them have one each);
      None for `default_sizes`.

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
  num_rated = min(num_items, num_ratings)  # Movies with >= 1 rating.

  # Degree sequences: ratings per user, then per movie (module docstring).
  floor = min(_MIN_PER_USER, num_ratings // num_users)
  counts = _degrees(rng, num_users, num_ratings, floor, _USER_SIGMA,
                    _USER_CAP * num_items)
  sigma = np.clip(_ITEM_SIGMA + _ITEM_SIGMA_SLOPE *
                  np.log(num_ratings / num_rated / _ITEM_MEAN),
                  *_ITEM_SIGMA_RANGE)
  item_counts = _degrees(rng, num_rated, num_ratings, 1, sigma,
                         _ITEM_CAP * num_users)

  user = np.repeat(np.arange(num_users), counts)  # int64 [n], sorted.
  item = _pair(rng, user, counts, item_counts)  # int64 [n], item_ids row.
  _rewire(rng, user, item, counts, item_counts)
  item = item[_shuffle_within_users(rng, user, num_users)]
  item_ids = 1 + np.sort(rng.choice(3 * num_items, num_rated, replace=False))

  rating = _ratings(rng, user, item, num_users, item_counts)
  timestamp = _timestamps(rng, counts, num_users)
  return ratings.Ratings(
      user_id=(user + 1).astype(np.int64),
      item_id=item_ids[item].astype(np.int64),
      rating=rating,
      timestamp=timestamp,
      name=f'synthetic-{num_ratings}')


def _degrees(rng: np.random.Generator, count: int, total: int, floor: int,
             sigma: float, cap: float) -> np.ndarray:
  """A heavy-tailed degree sequence with a floor and an exact sum.

  Degree k is `floor + floor(f(s * w_k))` with lognormal weights
  `w_k = exp(sigma * z_k)`, the soft cap `f(x) = x * c / (x + c)` (c = cap -
  floor) and the scale s found by bisection so that the degrees sum to
  `total`; the few ratings bisection leaves over go to the largest fractional
  parts.

  Args:
    rng: the generator's random state.
    count: the number of users or movies.
    total: n, the sum of the degrees; at least `floor * count`.
    floor: the minimum degree.
    sigma: the spread of the weights (natural log units).
    cap: the soft upper bound of a degree (ratings); raised to twice the
      mean where the mean would not fit under it.

  Returns:
    int64 [count], each >= floor, summing to `total`.
  """
  rest = total - floor * count
  if rest == 0:
    return np.full(count, floor, np.int64)
  weight = np.exp(sigma * rng.standard_normal(count))
  cap = max(cap - floor, 2.0 * rest / count + 1.0)

  def excess(scale: float) -> np.ndarray:
    x = scale * weight
    return x * cap / (x + cap)

  low, high = 0.0, rest / weight.sum()
  while np.floor(excess(high)).sum() < rest:
    low, high = high, 2 * high
  for _ in range(64):
    middle = (low + high) / 2
    if np.floor(excess(middle)).sum() <= rest:
      low = middle
    else:
      high = middle
  x = excess(low)
  degree = np.floor(x).astype(np.int64)
  deficit = rest - int(degree.sum())  # >= 0, a few at most.
  degree[np.argsort(degree - x)[:deficit]] += 1
  return floor + degree


def _pair(rng: np.random.Generator, user: np.ndarray, counts: np.ndarray,
          item_counts: np.ndarray) -> np.ndarray:
  """Pairs rows with movies so that both degree sequences hold exactly.

  The stubs (each movie repeated by its degree, movies in random order) are
  dealt to rows in the order of a key that puts one random point of user u
  in each of `counts[u]` equal strata of 0..1: systematic sampling, so a
  user meets a movie twice mostly where `counts[u] * item_counts[i] / n`
  nears or exceeds one.

  Args:
    rng: the generator's random state.
    user: int64 [n], sorted user rows, `np.repeat(arange(U), counts)`.
    counts: int64 [U], ratings per user.
    item_counts: int64 [I], ratings per movie, summing to n.

  Returns:
    int64 [n], the movie row of each rating row.
  """
  n = user.shape[0]
  first = np.cumsum(counts) - counts
  stratum = np.arange(n) - first[user]
  key = (stratum + rng.random(n)) / counts[user]  # In [0, 1).
  bits = _row_bits(n)
  order, _ = _sort_rows((key * (1 << (62 - bits))).astype(np.int64))
  movies = rng.permutation(item_counts.shape[0])
  item = np.empty(n, np.int64)
  item[order] = np.repeat(movies, item_counts[movies])
  return item


def _rewire(rng: np.random.Generator, user: np.ndarray, item: np.ndarray,
            counts: np.ndarray, item_counts: np.ndarray) -> None:
  """Swaps the movies of repeated (user, movie) rows away, in place.

  Each round finds the rows that repeat a pair and swaps their movies with
  those of random partner rows, drawn with probability min(1, mean / degree)
  for their movie and for their user: light users and less popular movies,
  where a popular movie is least likely to repeat. Once repeats are few
  (under 1/128 of the rows), each tries up to 8 partners (n / (64 repeats))
  and takes the first swap that repeats nothing. Swaps keep both degree
  sequences. Up to `_REWIRE_ROUNDS` rounds, until no pair repeats.

  Args:
    rng: the generator's random state.
    user: int64 [n], sorted user rows.
    item: int64 [n], movie rows; rewritten.
    counts: int64 [U], ratings per user.
    item_counts: int64 [I], ratings per movie.
  """
  n, num_items = user.shape[0], item_counts.shape[0]
  user_mean, item_mean = n / counts.shape[0], n / num_items
  for _ in range(_REWIRE_ROUNDS):
    key = user * num_items
    key += item
    order, key = _sort_rows(key)
    repeat = order[1:][key[1:] == key[:-1]]
    if repeat.size == 0:
      return
    tries = int(np.clip(n // (64 * repeat.size), 1, 8))
    partner = rng.integers(0, n, 8 * tries * repeat.size)
    accept = (np.minimum(1.0, item_mean / item_counts[item[partner]])
              * np.minimum(1.0, user_mean / counts[user[partner]]))
    partner = partner[rng.random(partner.size) < accept]
    free = np.ones(n, bool)
    free[repeat] = False
    partner = partner[free[partner]]
    row = np.repeat(rng.permutation(repeat), tries)[:partner.size]
    partner = partner[:row.size]
    if tries > 1:
      fine = ~(_contains(key, user[row] * num_items + item[partner])
               | _contains(key, user[partner] * num_items + item[row]))
      row, partner = row[fine], partner[fine]
    keep = np.ones(row.size, bool)  # The first candidate of each row...
    keep[1:] = row[1:] != row[:-1]
    by_partner = np.argsort(partner, kind='stable')  # ...and of each partner.
    sorted_partner = partner[by_partner]
    keep[by_partner[1:][sorted_partner[1:] == sorted_partner[:-1]]] = False
    row, partner = row[keep], partner[keep]
    item[row], item[partner] = item[partner], item[row]


def _contains(sorted_keys: np.ndarray, keys: np.ndarray) -> np.ndarray:
  """bool [m]: whether each of `keys` int64 [m] is in `sorted_keys`."""
  position = np.minimum(np.searchsorted(sorted_keys, keys),
                        sorted_keys.shape[0] - 1)
  return sorted_keys[position] == keys


def _shuffle_within_users(rng: np.random.Generator, user: np.ndarray,
                          num_users: int) -> np.ndarray:
  """A permutation int64 [n] of rows that shuffles within each user's rows."""
  n = user.shape[0]
  spare = 62 - _row_bits(n) - int(num_users - 1).bit_length()
  bits = max(8, min(31, spare))  # Random bits below the user.
  order, _ = _sort_rows((user << bits) | rng.integers(0, 1 << bits, n))
  return order


def _row_bits(n: int) -> int:
  """Bits that hold a row index 0..n-1."""
  return max(1, int(n - 1).bit_length())


def _sort_rows(key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Rows int64 [n] in the order of `key` (ties by row) and the sorted keys.

  One in-place sort of `key << bits | row` when that fits in 63 bits (at
  ml-20m's size about 10 times faster than `np.argsort`); a stable argsort
  otherwise.

  Args:
    key: int64 [n], non-negative; overwritten.

  Returns:
    (order, sorted_key): int64 [n] rows and int64 [n] keys in that order.
  """
  n = key.shape[0]
  bits = _row_bits(n)
  if int(key.max()) < 1 << (63 - bits):
    key <<= bits
    key |= np.arange(n)
    key.sort()
    order = key & ((1 << bits) - 1)
    key >>= bits
    return order, key
  order = np.argsort(key, kind='stable')
  return order, key[order]


def _ratings(rng: np.random.Generator, user: np.ndarray, item: np.ndarray,
             num_users: int, item_counts: np.ndarray) -> np.ndarray:
  """Star ratings float32 [n] from biases, rank-8 factors and noise."""
  n, num_items = user.shape[0], item_counts.shape[0]
  user_bias = rng.normal(0.0, 0.35, num_users).astype(np.float32)
  # Log popularity, standardised over ratings (not movies): mean 0 per rating.
  log_count = np.log(item_counts)
  p = item_counts / n
  mean = (p * log_count).sum()
  std = np.sqrt((p * (log_count - mean)**2).sum()) + 1e-9
  popularity = (log_count - mean) / std
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
