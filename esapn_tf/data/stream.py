"""The training stream: labels, order, running frequencies and tf.data batches.

A `Stream` is the whole experiment's data in the order the model sees it
(DESIGN.md section 5): ids mapped to contiguous rows, labels for the task
(section 2), the order (seeded random, or chronological), the running
frequency of every user and item, and the split point between the train part
(the first `num_train` examples) and the test part (the rest).
"""

import dataclasses

import numpy as np
import tensorflow as tf

from esapn_tf import config
from esapn_tf import errors
from esapn_tf.data import id_index
from esapn_tf.data import movielens
from esapn_tf.data import ratings
from esapn_tf.data import synthetic

# The valid names are defined once, in config.py.
TASKS = config.TASKS
ORDERS = config.ORDERS
DATASETS = config.DATASETS
GROUPLENS_DATASETS = tuple(d for d in DATASETS if d != 'synthetic')
LOADERS = config.LOADERS
# Batches `make_dataset` prepares ahead of the step.
_PREFETCH_BATCHES = 2


def _require_choice(field: str, value: str, choices) -> None:
  """Raises UserInputError naming `field`, `value` and the valid choices."""
  if value not in choices:
    raise errors.UserInputError(
        f'{field} is {value!r}; valid {field}s: {", ".join(choices)}')


def binary_labels(rating: np.ndarray) -> np.ndarray:
  """Binary labels (DESIGN.md section 2): 1 if rating > 3.5 else 0.

  Args:
    rating: float32 [n], stars in 0.5..5.

  Returns:
    float32 [n] of 0.0 and 1.0.
  """
  return (np.asarray(rating) > 3.5).astype(np.float32)


def multiclass_labels(rating: np.ndarray) -> np.ndarray:
  """Multiclass labels (DESIGN.md section 2): ceil(rating) - 1.

  Args:
    rating: float32 [n], stars in 0.5..5.

  Returns:
    int32 [n] in 0..4 (0.5 and 1 -> 0, 1.5 and 2 -> 1, ..., 4.5 and 5 -> 4).
  """
  return (np.ceil(np.asarray(rating)) - 1).astype(np.int32)


@dataclasses.dataclass(frozen=True)
class Stream:
  """The examples of one experiment, in stream order.

  Attributes:
    user: int32 [n], contiguous user row 0..num_users-1.
    item: int32 [n], contiguous item row 0..num_items-1.
    label: float32 [n] of 0/1 (binary task) or int32 [n] in 0..4
      (multiclass task).
    rating: float32 [n], the stars the labels were made from.
    timestamp: int64 [n], seconds since the epoch.
    user_frequency: int32 [n], interactions of this user seen so far, this
      one included (1 on first sight); see `build_stream`.
    item_frequency: int32 [n], the same for the item.
    user_vocab: int64 [num_users], the raw id of each user row, ascending.
    item_vocab: int64 [num_items], the raw movie id of each item row.
    num_train: the first num_train examples are the train part, the rest the
      test part.
    task: 'binary' or 'multiclass'.
    order: 'random' or 'chronological'.
    name: the name of the ratings it was built from.
  """

  user: np.ndarray  # int32 [n], contiguous row 0..num_users-1
  item: np.ndarray  # int32 [n], contiguous row 0..num_items-1
  label: np.ndarray  # float32 [n] (binary) or int32 [n] (multiclass)
  rating: np.ndarray  # float32 [n]
  timestamp: np.ndarray  # int64 [n], seconds since epoch
  user_frequency: np.ndarray  # int32 [n]
  item_frequency: np.ndarray  # int32 [n]
  user_vocab: np.ndarray  # int64 [num_users] raw id of each row (sorted)
  item_vocab: np.ndarray  # int64 [num_items] raw id of each row (sorted)
  num_train: int  # the first num_train examples are the train part
  task: str  # 'binary' | 'multiclass'
  order: str  # 'random' | 'chronological'
  name: str

  @property
  def num_users(self) -> int:
    return int(self.user_vocab.shape[0])

  @property
  def num_items(self) -> int:
    return int(self.item_vocab.shape[0])

  @property
  def num_examples(self) -> int:
    return int(self.user.shape[0])

  @property
  def num_test(self) -> int:
    return self.num_examples - self.num_train


def build_stream(r: ratings.Ratings,
                 task: str,
                 order: str = 'random',
                 train_fraction: float = 0.8,
                 seed: int = 0) -> Stream:
  """Turns ratings into the ordered, labelled stream of one experiment.

  Running frequencies are counted over the whole ordered stream: they run
  through the train part and continue into the test part, so an id's
  frequency always means "interactions of this id seen so far". The authors'
  preprocessing restarts the count at the test split; this is a deliberate
  difference (DESIGN.md section 5).

  Args:
    r: validated ratings.
    task: 'binary' (label float32, rating > 3.5) or 'multiclass' (label int32,
      ceil(rating) - 1).
    order: 'random' (a permutation by `np.random.default_rng(seed)`, the
      paper's protocol) or 'chronological' (stable sort by timestamp: ties keep
      file order).
    train_fraction: in (0, 1]; the train part is the first
      round(train_fraction * n) examples (Python's round: halves to even).
    seed: seeds the random order; unused for 'chronological'.

  Returns:
    The `Stream`; user row i is raw id user_vocab[i] (vocabularies ascending).

  Raises:
    errors.UserInputError: unknown task or order, train_fraction outside (0, 1].
    errors.DataError: no ratings.
  """
  _require_choice('task', task, TASKS)
  _require_choice('order', order, ORDERS)
  if not 0.0 < train_fraction <= 1.0:
    raise errors.UserInputError(
        f'train_fraction is {train_fraction}; it must lie in (0, 1]')
  if r.num_ratings == 0:
    raise errors.DataError(f'{r.name} contains no ratings')
  if order == 'random':
    permutation = np.random.default_rng(seed).permutation(r.num_ratings)
  else:
    permutation, _ = id_index.stable_sort(r.timestamp)
  user_vocab, user = id_index.contiguous_rows(r.user_id[permutation])
  item_vocab, item = id_index.contiguous_rows(r.item_id[permutation])
  rating = r.rating[permutation]
  label = binary_labels(rating) if task == 'binary' else multiclass_labels(
      rating)
  return Stream(
      user=user,
      item=item,
      label=label,
      rating=rating,
      timestamp=r.timestamp[permutation],
      user_frequency=id_index.running_frequency(user),
      item_frequency=id_index.running_frequency(item),
      user_vocab=user_vocab,
      item_vocab=item_vocab,
      num_train=int(round(train_fraction * r.num_ratings)),
      task=task,
      order=order,
      name=r.name)


def make_dataset(s: Stream, start: int, stop: int,
                 batch_size: int) -> tf.data.Dataset:
  """Batches of the examples [start, stop) in stream order, unshuffled.

  Built from the numpy arrays already cut into batches, so the pipeline does
  no per-example work: 20M examples start in well under a second.

  Batches start every `batch_size` examples from `start` (`batch_bounds`).
  The last one may be smaller but never holds a single example: when
  (stop - start) % batch_size == 1, that example joins the batch before it
  (batch_size + 1 examples); none is skipped. BatchNorm in training mode maps
  a batch of one to the same vector whatever the input: a logit of 0, no
  gradient to the embeddings, the moving variance falling towards 0.

  Args:
    s: the stream.
    start: the first example, e.g. 0 for the train part.
    stop: one past the last example, e.g. s.num_train.
    batch_size: examples per batch.

  Returns:
    A dataset of dicts: 'user' int32 [b], 'item' int32 [b], 'label' float32
    [b] (binary) or int32 [b] (multiclass), 'user_frequency' int32 [b],
    'item_frequency' int32 [b]; b is batch_size, except in the last batch
    (2 <= b < batch_size, or b = batch_size + 1); two batches prefetched,
    tf.data autotuning off.

  Raises:
    errors.UserInputError: not 0 <= start <= stop <= num_examples;
      batch_size < 1; or [start, stop) holds exactly one example while
      batch_size > 1 (there is no batch to merge it into).
  """
  if not 0 <= start <= stop <= s.num_examples:
    raise errors.UserInputError(
        f'examples [{start}, {stop}) are not inside the stream of '
        f'{s.num_examples} examples')
  if batch_size < 1:
    raise errors.UserInputError(f'batch_size is {batch_size}; it must be >= 1')
  if stop - start == 1 and batch_size > 1:
    raise errors.UserInputError(
        f'examples [{start}, {stop}) of the stream of {s.num_examples} hold a '
        'single example, and BatchNorm cannot learn from a batch of one; '
        'expected at least 2 examples in each part: use more data or '
        'another --train_fraction')
  columns = {
      'user': s.user,
      'item': s.item,
      'label': s.label,
      'user_frequency': s.user_frequency,
      'item_frequency': s.item_frequency,
  }
  bounds = batch_bounds(start, stop, batch_size)
  num_full = int(np.sum(np.diff(bounds) == batch_size))
  middle = start + num_full * batch_size
  full = tf.data.Dataset.from_tensor_slices(
      {k: v[start:middle].reshape(num_full, batch_size)
       for k, v in columns.items()})
  if middle < stop:
    rest = tf.data.Dataset.from_tensors(
        {k: v[middle:stop] for k, v in columns.items()})
    full = full.concatenate(rest)
  # A fixed prefetch, with tf.data's autotuning off: its model thread sleeps
  # up to 10 s between rounds, and deleting the iterator at the end of a
  # part waited for it to wake (4.5 s of a 15 s ml-latest-small run, in
  # about half of the runs; BUILD_NOTES.md, "Start-up and per-step host
  # work").
  options = tf.data.Options()
  options.autotune.enabled = False
  return full.prefetch(_PREFETCH_BATCHES).with_options(options)


def batch_bounds(start: int, stop: int, batch_size: int) -> np.ndarray:
  """Where `make_dataset` cuts the examples [start, stop) into batches.

  Args:
    start: the first example.
    stop: one past the last example.
    batch_size: examples per batch, >= 1.

  Returns:
    int64 [num_batches + 1], ascending, from `start` to `stop` ([start]
    when the range is empty): batch i holds the examples [bounds[i],
    bounds[i + 1]). A last batch of one example (when batch_size > 1)
    joins the one before it.
  """
  bounds = np.arange(start, stop, batch_size, dtype=np.int64)
  if batch_size > 1 and bounds.shape[0] > 1 and stop - bounds[-1] == 1:
    bounds = bounds[:-1]
  return np.append(bounds, np.int64(stop))


def batch_start(part_start: int, part_stop: int, position: int,
                batch_size: int) -> int:
  """The first example of the part's batch that ends at `position`.

  Args:
    part_start: the part's first example (0, or num_train for the test
      part).
    part_stop: one past the part's last example.
    position: a batch boundary of the part, part_start < position <=
      part_stop.
    batch_size: examples per batch.

  Returns:
    The start of that batch, as `batch_bounds(part_start, part_stop,
    batch_size)` cuts the part.

  Raises:
    errors.UserInputError: `position` is not the end of a batch of the part.
  """
  bounds = batch_bounds(part_start, part_stop, batch_size)
  index = int(np.searchsorted(bounds, position))
  if not 0 < index < bounds.shape[0] or bounds[index] != position:
    raise errors.UserInputError(
        f'example {position} does not end a batch of [{part_start}, '
        f'{part_stop}) in batches of {batch_size}')
  return int(bounds[index - 1])


def load_ratings(dataset: str,
                 data_dir: str = '',
                 loader: str = 'grouplens',
                 max_ratings: int = 0,
                 synthetic_num_ratings: int = 100_000,
                 seed: int = 0,
                 tfds_download: bool = False) -> ratings.Ratings:
  """Loads and validates the ratings of a dataset by name.

  Args:
    dataset: 'synthetic' or a GroupLens name (`GROUPLENS_DATASETS`).
    data_dir: for loader 'grouplens', the downloaded archive or its folder
      (required); for 'tfds', the TFDS data folder ('' for TFDS's default).
      Unused for 'synthetic'.
    loader: 'grouplens' (files as downloaded) or 'tfds'.
    max_ratings: if > 0, keep the first max_ratings rows in source order.
    synthetic_num_ratings: rows of the synthetic dataset.
    seed: seeds the synthetic generator.
    tfds_download: for loader 'tfds', let TFDS download a missing dataset.

  Returns:
    Validated ratings.

  Raises:
    errors.UserInputError: unknown dataset or loader; grouplens without
      data_dir; ml-latest with tfds.
    errors.DataError: unreadable or invalid data.
  """
  _require_choice('dataset', dataset, DATASETS)
  _require_choice('loader', loader, LOADERS)
  if dataset == 'synthetic':
    r = synthetic.generate(synthetic_num_ratings, seed).head(max_ratings)
    source = r.name
  elif loader == 'grouplens':
    if not data_dir:
      raise errors.UserInputError(
          f'dataset {dataset} needs its GroupLens download: pass '
          f'--data_dir=path/to/{dataset}.zip (the archive or its extracted '
          'folder)')
    r = movielens.load_grouplens(data_dir, max_ratings)
    source = data_dir
  else:
    if dataset not in movielens.TFDS_NAMES:
      raise errors.UserInputError(
          f'dataset {dataset} has no TFDS builder; TFDS has '
          f'{", ".join(movielens.TFDS_NAMES)}. Use --loader=grouplens')
    name = movielens.TFDS_NAMES[dataset]
    r = movielens.load_tfds(name, data_dir or None, max_ratings,
                            download=tfds_download)
    source = f'TFDS movielens/{name}-ratings'
  r.validate(source)
  return r
