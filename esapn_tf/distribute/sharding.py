"""Per-id tables that a parameter-server strategy shards, and their row ops.

The lowest floor of `esapn_tf/distribute/`: `layers/`, `optimizers/` and
`search/` use it, so it imports nothing of esapn_tf.

Which variables are sharded (issue 13): the per-id tables only, i.e. the
variables created inside `per_id_tables()`: the embedding rows, their size
index, their Adam moments and the search's per-id state (loss histories,
counts, pending decisions). Everything else (the MLP, the lifting kernels,
BatchNorm, the policy networks, counters) stays one ordinary variable on one
parameter server. `PerIdPartitioner` is the `variable_partitioner` of
`tf.distribute.ParameterServerStrategy` that does this; without a strategy
the context changes nothing.

Row ops that work on both kinds of variable: a `ShardedVariable` has no
`scatter_nd_*` and cannot be a gradient source, so the search writes rows
with `scatter_update` / `scatter_add` (`tf.IndexedSlices`: the sharded
variable routes each row to its shard) and reads them with `gather`
(`tf.nn.embedding_lookup` on a sharded variable: a gather per shard, never
the whole table). On an ordinary variable these are the same resource scatter
and gather kernels (XLA has them too).
"""

import contextlib
import threading
from typing import List, Sequence

import tensorflow as tf

_STATE = threading.local()


@contextlib.contextmanager
def per_id_tables():
  """Marks the variables created inside as per-id tables (`[num_ids, ...]`).

  Under a `ParameterServerStrategy` built with `PerIdPartitioner`, they are
  split along their first axis over the parameter servers; elsewhere the
  context has no effect.
  """
  before = getattr(_STATE, 'depth', 0)
  _STATE.depth = before + 1
  try:
    yield
  finally:
    _STATE.depth = before


def in_per_id_tables() -> bool:
  """True inside `per_id_tables()`."""
  return getattr(_STATE, 'depth', 0) > 0


class PerIdPartitioner:
  """`variable_partitioner` that shards per-id tables only.

  Args (constructor):
    num_shards: shards per per-id table (>= 1), e.g. the number of
      parameter servers (`--num_shards`).

  Called by the strategy with (`tf.TensorShape` shape, dtype, axis=0) for
  every variable created in its scope; returns the number of partitions per
  axis: `[min(num_shards, shape[0]), 1, ...]` inside `per_id_tables()`,
  `[1, ...]` otherwise.

  Raises:
    ValueError: `num_shards` < 1.
  """

  def __init__(self, num_shards: int):
    if num_shards < 1:
      raise ValueError(f'num_shards must be >= 1, got {num_shards}')
    self.num_shards = int(num_shards)

  def __call__(self, shape, dtype, axis=0) -> List[int]:
    del dtype
    partitions = [1] * len(shape)
    if in_per_id_tables() and len(shape) >= 1:
      partitions[axis] = max(1, min(self.num_shards, int(shape[axis])))
    return partitions


def is_sharded(var) -> bool:
  """True for a `ShardedVariable` (a per-id table on parameter servers)."""
  return isinstance(var, tf.__internal__.distribute.ShardedVariable)


def gather(var, ids: tf.Tensor) -> tf.Tensor:
  """`var[ids]`, rows in the order of `ids`, for a plain or sharded `var`.

  A sharded variable is read with `tf.nn.embedding_lookup` ("div"
  partitioning, the layout of its shards): one gather per shard, stitched
  back in `ids` order. (`tf.gather` on a `ShardedVariable` calls its
  `sparse_read`, which in TF 2.21 concatenates the shards' rows in shard
  order, not in `ids` order.)

  Args:
    var: variable `[num_ids, ...]`.
    ids: int `[k]` rows (repeats allowed).

  Returns:
    `[k, ...]` tensor of `var`'s dtype.
  """
  if is_sharded(var):
    return tf.nn.embedding_lookup(var, ids)
  return tf.gather(var, ids)


def scatter_update(var, ids: tf.Tensor, values: tf.Tensor):
  """`var[ids[i]] = values[i]` for a plain or sharded variable.

  Args:
    var: variable `[num_ids, ...]`.
    ids: int `[k]` rows; with repeats, which copy wins is unspecified (as for
      `scatter_nd_update`): callers write the same value for every copy.
    values: `[k, ...]`, `var`'s dtype.
  """
  return var.scatter_update(tf.IndexedSlices(values, ids))


def scatter_add(var, ids: tf.Tensor, values: tf.Tensor):
  """`var[ids[i]] += values[i]` (repeats add up), plain or sharded `var`.

  Args:
    var: variable `[num_ids, ...]`.
    ids: int `[k]` rows.
    values: `[k, ...]`, `var`'s dtype.
  """
  return var.scatter_add(tf.IndexedSlices(values, ids))


def whole_tables(variables: Sequence, tables: Sequence) -> list:
  """`variables` with each sharded table's shards replaced by the table.

  Keras lists a `ShardedVariable` weight as its shards
  (`layer.trainable_variables`); the row ops and the optimizer slots take
  the table. The table takes its first shard's place, so the order (and
  the optimizer's checkpoint keys) is that of an unsharded run.

  Args:
    variables: e.g. `model.trainable_variables`.
    tables: the model's per-id tables, plain or sharded.

  Returns:
    A list of variables: no shard of `tables`, each table once.
  """
  owner = {}
  for table in tables:
    if is_sharded(table):
      for shard in table.variables:
        owner[id(shard)] = table
  out, seen = [], set()
  for var in variables:
    table = owner.get(id(var))
    if table is None:
      out.append(var)
    elif id(table) not in seen:
      seen.add(id(table))
      out.append(table)
  return out


def gradient_sources(variables: Sequence) -> list:
  """The variables to pass to `tape.gradient`: each sharded one's shards.

  Args:
    variables: plain or sharded variables.

  Returns:
    A flat list (`regroup_gradients` undoes the flattening).
  """
  out = []
  for var in variables:
    out.extend(var.variables if is_sharded(var) else [var])
  return out


def regroup_gradients(grads: Sequence, variables: Sequence) -> list:
  """One gradient per variable from `tape.gradient(.., gradient_sources(v))`.

  A sharded table's per-shard `tf.IndexedSlices` (row indices local to each
  shard) become one `tf.IndexedSlices` over the whole table, with each
  shard's row offset added, so the optimizer scatters through the sharded
  variable (`scatter_add`), shard by shard.

  Args:
    grads: the gradients, aligned with `gradient_sources(variables)`.
    variables: the variables given to `gradient_sources`.

  Returns:
    A list aligned with `variables` (None where no gradient flowed).

  Raises:
    TypeError: a shard's gradient is dense (a table read other than by
      `tf.gather`).
  """
  out, i = [], 0
  for var in variables:
    if not is_sharded(var):
      out.append(grads[i])
      i += 1
      continue
    values, indices, offset = [], [], 0
    for shard in var.variables:
      g = grads[i]
      i += 1
      if g is not None:
        if not isinstance(g, tf.IndexedSlices):
          raise TypeError(f'the gradient of shard {shard.name} is dense; '
                          'read per-id tables with tf.gather')
        values.append(g.values)
        indices.append(tf.cast(g.indices, tf.int32) + offset)
      offset += int(shard.shape[0])
    out.append(tf.IndexedSlices(tf.concat(values, 0), tf.concat(indices, 0),
                                tf.constant(var.shape.as_list()))
               if values else None)
  return out
