"""A planted stream where the right embedding sizes are known (issue 11).

Two kinds of movies, told apart by how often they are rated:

* *rich* movies (frequent, `rich_ratings` each): a user likes one iff
  `<p_user, q_movie> > 0` for random rank-`rank` factors, so predicting
  them needs movie vectors of at least `rank` dimensions;
* *plain* movies (less frequent, `plain_ratings` each): everyone agrees,
  liked iff the movie's own coin says so: a movie bias, one dimension.

Ratings are 5 (liked) or 1, each flipped with probability `noise`. The
right policy for movies enlarges rich movies and keeps plain ones small;
the policy sees the difference through the running frequency only: rich
movies are the only ones past `plain_ratings` interactions. Users rate
uniformly at random, so every user is frequent. The defaults are the ones
`comparison/planted.py` reports on (FIXED-128 learns the rich movies to
about 0.78 accuracy in one pass).
"""

import numpy as np

from esapn_tf.data import ratings


def generate(num_users: int = 200, num_rich: int = 50, num_plain: int = 600,
             rich_ratings: int = 1000, plain_ratings: int = 30,
             rank: int = 4, noise: float = 0.05,
             seed: int = 0) -> ratings.Ratings:
  """The planted ratings (module docstring), in random order.

  Args:
    num_users: users (raw ids 1..num_users).
    num_rich: rich movies (raw ids 1..num_rich).
    num_plain: plain movies (raw ids num_rich+1..num_rich+num_plain).
    rich_ratings: ratings of each rich movie.
    plain_ratings: ratings of each plain movie.
    rank: rank of the rich movies' preference.
    noise: probability that a rating is flipped.
    seed: seeds everything.

  Returns:
    `ratings.Ratings` with `num_rich * rich_ratings + num_plain *
    plain_ratings` rows, ratings 1.0 or 5.0, timestamps 0, 1, 2, ...

  Raises:
    ValueError: for non-positive sizes or a noise outside [0, 0.5).
  """
  if min(num_users, num_rich, num_plain, rich_ratings, plain_ratings,
         rank) < 1:
    raise ValueError('every size of the planted stream must be >= 1')
  if not 0.0 <= noise < 0.5:
    raise ValueError(f'noise must lie in [0, 0.5), got {noise}')
  rng = np.random.default_rng(seed)
  item = np.concatenate([
      np.repeat(np.arange(num_rich), rich_ratings),
      num_rich + np.repeat(np.arange(num_plain), plain_ratings)])
  user = rng.integers(0, num_users, item.size)
  p = rng.normal(size=(num_users, rank))
  q = rng.normal(size=(num_rich, rank))
  coin = rng.random(num_plain) < 0.5
  rich = item < num_rich
  liked = np.where(
      rich, np.einsum('ij,ij->i', p[user], q[np.minimum(item, num_rich - 1)])
      > 0, coin[np.maximum(item - num_rich, 0)])
  liked ^= rng.random(item.size) < noise
  order = rng.permutation(item.size)
  return ratings.Ratings(
      user_id=(user[order] + 1).astype(np.int64),
      item_id=(item[order] + 1).astype(np.int64),
      rating=np.where(liked[order], 5.0, 1.0).astype(np.float32),
      timestamp=np.arange(item.size, dtype=np.int64),
      name=f'planted-{num_rich}x{rich_ratings}+{num_plain}x{plain_ratings}')
