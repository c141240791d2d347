"""Compact serving parameters from a trained run (DESIGN.md §2).

A trained `MultiSizeEmbedding` keeps every candidate table for every id; only
the row at an id's final size is live. The serving layout keeps, per side:

* for each candidate size `d_k`, one table `[n_k, d_k]` holding only the `n_k`
  ids whose final size is `d_k` (in vocabulary order);
* a code per raw MovieLens id, `(size_index << 32) | row`, which the serving
  module looks up in a `tf.lookup` hash table;
* the lifting chain `W_{k->k+1}`, `b_{k->k+1}`, with the side's BN (inference
  mode: moving statistics) folded into the last map and into the rows of the
  largest table, so that an id's vector is `tanh(lift(row))` with no BN;
* the vector served for unknown ids (see `unknown_embedding`).

The inference MLP has both of its BNs folded into the hidden Dense layer:
`tanh(concat(v_user, v_item) @ W + b) @ W_out + b_out`.

The FIXED reference (`fixed_reference_params`) stores every id in one table
of the reference size (128), each row being the id's lifted vector, so it
serves the same predictions with the memory of FIXED-128.
"""

import dataclasses
import json
import os
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import tensorflow as tf

from esapn_tf import config as config_lib
from esapn_tf import errors
from esapn_tf.layers import embedding
from esapn_tf.layers import memory
from esapn_tf.models import recommender
from esapn_tf.serving import known_ids

SIDES = ('user', 'item')
CODE_SHIFT = 32  # code = (size_index << CODE_SHIFT) | row
ROW_MASK = (1 << CODE_SHIFT) - 1
_LIFT_BATCH = 65536  # ids lifted at once when computing lifted vectors


@dataclasses.dataclass(frozen=True)
class SideParams:
  """One side (users or movies) of the serving model, as NumPy arrays.

  Attributes:
    sizes: candidate sizes in dimensions, `d_0 < ... < d_{n-1}`.
    vocab: int64 `[num_ids]` raw MovieLens ids.
    codes: int64 `[num_ids]`, `(size_index << 32) | row` of each id of
      `vocab`: the id's vector is row `row` of `tables[size_index]`.
    tables: per size, float32 `[n_k, d_k]`: the live rows only. The rows of
      the largest size have the side's BN folded in.
    lift_kernels: float32 `[d_k, d_{k+1}]` per step of the chain; the last
      one has the BN folded in.
    lift_biases: float32 `[d_{k+1}]` per step; the last one with the BN.
    unknown_embedding: float32 `[d_n]`, the vector served for unknown ids:
      `tanh(BN(mean over the side's known ids of the lifted, pre-BN
      vector))`, i.e. the vector of an "average" id. Deterministic.
  """
  sizes: Tuple[int, ...]
  vocab: np.ndarray
  codes: np.ndarray
  tables: List[np.ndarray]
  lift_kernels: List[np.ndarray]
  lift_biases: List[np.ndarray]
  unknown_embedding: np.ndarray

  @property
  def output_dim(self) -> int:
    return int(self.unknown_embedding.shape[0])

  @property
  def live_dims(self) -> int:
    """Embedding parameters kept: `sum_k n_k * d_k`."""
    return int(sum(t.shape[0] * t.shape[1] for t in self.tables))


@dataclasses.dataclass(frozen=True)
class ServingParams:
  """Everything the serving module holds.

  Attributes:
    task: 'binary' or 'multiclass'.
    user: the user side.
    item: the movie side.
    hidden_kernel: float32 `[2 * d_n, hidden]`, both BNs folded in.
    hidden_bias: float32 `[hidden]`.
    out_kernel: float32 `[hidden, 1 or 5]`.
    out_bias: float32 `[1 or 5]`.
  """
  task: str
  user: SideParams
  item: SideParams
  hidden_kernel: np.ndarray
  hidden_bias: np.ndarray
  out_kernel: np.ndarray
  out_bias: np.ndarray


@dataclasses.dataclass(frozen=True)
class RestoredRun:
  """A trained run rebuilt from its workdir.

  Attributes:
    workdir: the run's folder.
    config: its `ExperimentConfig` (from `config.json`).
    checkpoint: path prefix of the restored checkpoint.
    model: the `Recommender` with the trained weights and size indices.
    vocab: `{'user': int64 [num_users], 'item': int64 [num_items]}` raw ids
      of the rows.
    results: the run's `results.json`, or None when it is missing.
    trained: `{side: bool [num_ids]}`, True for the ids the run learned
      from (at least one loss recorded in the search core's
      `history_count`); all True for a checkpoint without it. An id of the
      data that never trained (first seen in the test part of a
      `--test_mode=frozen` run) still holds its initial row.
  """
  workdir: str
  config: config_lib.ExperimentConfig
  checkpoint: str
  model: recommender.Recommender
  vocab: Dict[str, np.ndarray]
  results: Optional[Dict[str, Any]]
  trained: Optional[Dict[str, np.ndarray]] = None

  @property
  def reference_size(self) -> int:
    """The FIXED reference size: the largest candidate (as in results.json)."""
    return int(self.config.model.candidate_sizes[-1])

  def embedding(self, side: str) -> embedding.MultiSizeEmbedding:
    return (self.model.user_embedding if side == 'user' else
            self.model.item_embedding)

  def memory(self) -> Dict[str, Any]:
    """The memory table per side, recomputed from the restored size indices."""
    return {side: memory.memory_table(
        self.embedding(side).size_index.numpy(),
        self.embedding(side).candidate_sizes, self.reference_size)
            for side in SIDES}


def restore_run(workdir: str) -> RestoredRun:
  """Rebuilds the model of a finished run from `workdir`.

  Args:
    workdir: the `--workdir` of a `bin/train.py` run: `config.json` and
      `checkpoints/` (with the raw-id vocabularies), `results.json` optional.

  Returns:
    The restored run.

  Raises:
    errors.UserInputError: no config or checkpoint, a checkpoint without the
      vocabularies, or one that does not match the config.
  """
  config_path = os.path.join(workdir, 'config.json')
  if not os.path.isfile(config_path):
    raise errors.UserInputError(
        f'{workdir!r} holds no trained run (no config.json); pass the '
        '--workdir of a finished bin/train.py run')
  with open(config_path, encoding='utf-8') as f:
    cfg = config_lib.ExperimentConfig.from_dict(json.load(f))
  if cfg.search.method in config_lib.SOFT_METHODS:
    raise errors.UserInputError(
        f'{workdir!r} holds a {cfg.search.method} run: its embeddings are a '
        'soft mixture of every size, which the compact export does not '
        'serve; export an esapn, fixed or mde run')
  if cfg.search.method == 'pruned':
    raise errors.UserInputError(
        f'{workdir!r} holds a pruned run: its tables are dense with zeros '
        'where entries were pruned, so an export would be as large as '
        "FIXED's (a sparse export is not implemented); export an esapn, "
        'fixed or mde run')
  checkpoint = tf.train.latest_checkpoint(os.path.join(workdir, 'checkpoints'))
  if checkpoint is None:
    raise errors.UserInputError(
        f'{workdir!r} has no checkpoint under checkpoints/ (the run did not '
        'finish); train it again')
  reader = tf.train.load_checkpoint(checkpoint)
  vocab = {}
  for side in SIDES:
    key = f'{side}_vocab/.ATTRIBUTES/VARIABLE_VALUE'
    if not reader.has_tensor(key):
      raise errors.UserInputError(
          f'the checkpoint {checkpoint!r} has no raw-id vocabularies (written '
          'by an older version); train the run again to export it')
    vocab[side] = np.asarray(reader.get_tensor(key), np.int64)
  trained = {side: known_ids.trained_ids(reader, side, len(vocab[side]))
             for side in SIDES}
  # The layout that wrote the checkpoint (pooled for ESAPN by default).
  model = recommender.from_config(cfg, len(vocab['user']), len(vocab['item']))
  try:
    status = tf.train.Checkpoint(model=model).restore(checkpoint)
    status.expect_partial().assert_existing_objects_matched()
  except (AssertionError, ValueError) as e:
    raise errors.UserInputError(
        f'the checkpoint {checkpoint!r} does not match {config_path!r}: '
        f'{e}') from e
  results = None
  results_path = os.path.join(workdir, 'results.json')
  if os.path.isfile(results_path):
    with open(results_path, encoding='utf-8') as f:
      results = json.load(f)
  return RestoredRun(workdir, cfg, checkpoint, model, vocab, results,
                     trained)


def _bn_affine(bn: tf.keras.layers.BatchNormalization):
  """Inference-mode BN as `x * scale + shift`: float64 `[dim]` each."""
  mean = bn.moving_mean.numpy().astype(np.float64)
  var = bn.moving_variance.numpy().astype(np.float64)
  scale = 1.0 / np.sqrt(var + bn.epsilon)
  if bn.scale:
    scale = scale * bn.gamma.numpy()
  shift = -mean * scale
  if bn.center:
    shift = shift + bn.beta.numpy()
  return scale, shift


def lifted_vectors(layer: embedding.MultiSizeEmbedding) -> np.ndarray:
  """Pre-BN lifted vector of every id at its size: float32 `[num_ids, d_n]`."""
  parts = []
  for start in range(0, layer.num_ids, _LIFT_BATCH):
    ids = tf.range(start, min(start + _LIFT_BATCH, layer.num_ids))
    parts.append(layer.lift(ids).numpy())
  return np.concatenate(parts, 0)


def _unknown_embedding(lifted: np.ndarray, scale, shift) -> np.ndarray:
  mean = lifted.astype(np.float64).mean(0)
  return np.tanh(mean * scale + shift).astype(np.float32)


def side_params(layer: embedding.MultiSizeEmbedding,
                vocab: np.ndarray) -> SideParams:
  """The compact serving parameters of one trained side.

  Args:
    layer: a built `MultiSizeEmbedding`.
    vocab: int64 `[num_ids]` raw id of each row.

  Returns:
    `SideParams` with, for size `k`, the rows of the ids whose `size_index`
    is `k` (in row order) and their codes.

  Raises:
    ValueError: if `vocab` does not have one unique id per row.
  """
  vocab = _check_vocab(layer, vocab)
  n = layer.num_sizes
  size_index = layer.size_index.numpy().astype(np.int64)
  scale, shift = _bn_affine(layer.batch_norm)
  codes = np.zeros(layer.num_ids, np.int64)
  tables = []
  for k in range(n):
    rows = np.flatnonzero(size_index == k)
    codes[rows] = (k << CODE_SHIFT) | np.arange(len(rows), dtype=np.int64)
    table = layer.table(k).numpy()[rows]
    if k == n - 1:
      table = (table.astype(np.float64) * scale + shift).astype(np.float32)
    tables.append(np.ascontiguousarray(table, np.float32))
  kernels = [w.numpy() for w in layer.lift_kernels]
  biases = [b.numpy() for b in layer.lift_biases]
  if kernels:
    kernels[-1] = (kernels[-1].astype(np.float64) * scale).astype(np.float32)
    biases[-1] = (biases[-1].astype(np.float64) * scale +
                  shift).astype(np.float32)
  return SideParams(
      sizes=tuple(layer.candidate_sizes), vocab=vocab, codes=codes,
      tables=tables, lift_kernels=kernels, lift_biases=biases,
      unknown_embedding=_unknown_embedding(lifted_vectors(layer), scale,
                                           shift))


def fixed_side_params(layer: embedding.MultiSizeEmbedding, vocab: np.ndarray,
                      reference_size: int) -> SideParams:
  """FIXED reference of one side: every id in one `reference_size` table.

  Row `i` is id `i`'s lifted vector with the BN folded in, zero-padded when
  the model's output is narrower than `reference_size` (a FIXED run at a
  smaller size), so predictions are the trained model's.

  Args:
    layer: a built `MultiSizeEmbedding`.
    vocab: int64 `[num_ids]` raw id of each row.
    reference_size: the reference width in dimensions (>= `layer.output_dim`).

  Returns:
    `SideParams` with one size, `(reference_size,)`.

  Raises:
    ValueError: a reference narrower than the model's vectors, or a bad vocab.
  """
  vocab = _check_vocab(layer, vocab)
  if reference_size < layer.output_dim:
    raise ValueError(f'reference_size={reference_size} is narrower than the '
                     f'model output ({layer.output_dim} dims).')
  scale, shift = _bn_affine(layer.batch_norm)
  lifted = lifted_vectors(layer)
  pad = [(0, 0), (0, reference_size - layer.output_dim)]
  table = np.pad((lifted.astype(np.float64) * scale + shift).astype(
      np.float32), pad)
  unknown = np.pad(_unknown_embedding(lifted, scale, shift), pad[1])
  return SideParams(
      sizes=(int(reference_size),), vocab=vocab,
      codes=np.arange(layer.num_ids, dtype=np.int64), tables=[table],
      lift_kernels=[], lift_biases=[], unknown_embedding=unknown)


def _check_vocab(layer, vocab) -> np.ndarray:
  vocab = np.asarray(vocab, np.int64)
  if vocab.shape != (layer.num_ids,) or len(np.unique(vocab)) != len(vocab):
    raise ValueError(f'vocab must hold {layer.num_ids} unique ids, got shape '
                     f'{vocab.shape} with {len(np.unique(vocab))} unique.')
  return vocab


def mlp_params(model: recommender.Recommender,
               pad_to: Optional[int] = None) -> Dict[str, np.ndarray]:
  """The inference MLP with both BNs folded into the hidden layer.

  `h = BN2(BN1(x) @ W + b)` with `BNi(x) = x * s_i + t_i` is
  `x @ (s_1[:, None] * W * s_2) + ((t_1 @ W + b) * s_2 + t_2)`.

  Args:
    model: the trained recommender.
    pad_to: when set, each side's input block of the hidden kernel is
      zero-padded from `d_n` to `pad_to` rows (the FIXED reference of a
      narrower model).

  Returns:
    `{'hidden_kernel': [2 * d, hidden], 'hidden_bias': [hidden],
      'out_kernel': [hidden, out], 'out_bias': [out]}`, float32.
  """
  s1, t1 = _bn_affine(model.input_norm)
  s2, t2 = _bn_affine(model.hidden_norm)
  w = model.hidden.kernel.numpy().astype(np.float64)
  b = model.hidden.bias.numpy().astype(np.float64)
  kernel = (s1[:, None] * w * s2[None, :]).astype(np.float32)
  bias = ((t1 @ w + b) * s2 + t2).astype(np.float32)
  d = model.user_embedding.output_dim
  if pad_to is not None and pad_to > d:
    padded = np.zeros((2 * pad_to, kernel.shape[1]), np.float32)
    padded[:d] = kernel[:d]
    padded[pad_to:pad_to + d] = kernel[d:]
    kernel = padded
  return {'hidden_kernel': kernel, 'hidden_bias': bias,
          'out_kernel': model.out.kernel.numpy(),
          'out_bias': model.out.bias.numpy()}


def compact_params(model: recommender.Recommender,
                   vocab: Dict[str, np.ndarray]) -> ServingParams:
  """Compact serving parameters (live rows only) of a trained model."""
  return ServingParams(
      task=model.task,
      user=side_params(model.user_embedding, vocab['user']),
      item=side_params(model.item_embedding, vocab['item']),
      **mlp_params(model))


def fixed_reference_params(model: recommender.Recommender,
                           vocab: Dict[str, np.ndarray],
                           reference_size: int) -> ServingParams:
  """The FIXED-`reference_size` export of the same ids and predictions."""
  return ServingParams(
      task=model.task,
      user=fixed_side_params(model.user_embedding, vocab['user'],
                             reference_size),
      item=fixed_side_params(model.item_embedding, vocab['item'],
                             reference_size),
      **mlp_params(model, pad_to=reference_size))
