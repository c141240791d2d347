"""The step follows the batch: no op of a traced step is sized by the ids.

Issue 12: at ten million ids, one `unsorted_segment_max(..., num_ids)` per
step is 40 MB of temporaries, read and written every batch. This is checked
on the graphs the trainer runs, not by timing.

The rule (`_id_sized_tensors`): every tensor of the traced per-step
functions (each op's inputs and outputs, in the function and every function
it calls: `tf.cond` branches, nested `tf.function`s) has no dimension equal
to the id count of either side, nor the id count + 1 (the per-id state's
sink row). Per-id variables enter a graph as resource handles, which are
scalar tensors, so the ops that read or write rows by index pass: a
`ResourceGather` on a `[num_ids, d]` table has inputs `handle []` and
`indices [batch]` and output `[batch, d]`; a `ResourceScatterNdUpdate` takes
`[batch, 1]` indices and `[batch, d]` rows. An op that reads a whole per-id
variable fails (`ReadVariableOp` outputs `[num_ids, d]`), and so does any
per-id temporary (`unsorted_segment_max(x, ids, num_ids)` outputs
`[num_ids]`). The id counts, 7919 users and 7907 items (primes), equal no
other dimension of the model (batch 100, sizes 2/4/8, 16 hidden units,
32 frequency buckets); the trials' pool holds `min(num_ids, trial_slots)`
rows, here the id count, so a per-slot dense reduction is caught too.
Tensors of unknown rank are skipped: an id count comes from a Python int
and shape inference keeps it static, which the self-test below checks.
"""

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from esapn_tf import config
from esapn_tf.data import ratings
from esapn_tf.data import stream
from esapn_tf.training import trainer as trainer_lib

_USERS, _ITEMS = 7919, 7907
_FORBIDDEN = {_USERS, _USERS + 1, _ITEMS, _ITEMS + 1}


def _graphs(graph, seen=None):
  """`graph` and every function graph its ops call, recursively."""
  seen = set() if seen is None else seen
  yield graph
  for op in graph.get_operations():
    for attr in op.node_def.attr.values():
      names = [attr.func.name] if attr.HasField('func') else [
          f.name for f in attr.list.func]
      for name in names:
        if name and name not in seen:
          seen.add(name)
          # pylint: disable-next=protected-access
          function = graph._get_function(name)
          if function is None:
            raise AssertionError(f'function {name} not found')
          yield from _graphs(function.graph, seen)


def _id_sized_tensors(concrete_function):
  """(op type, op name, shape) of each tensor with an id-sized dimension."""
  found = set()
  for graph in _graphs(concrete_function.graph):
    for op in graph.get_operations():
      for tensor in list(op.inputs) + list(op.outputs):
        if tensor.shape.rank is not None and _FORBIDDEN.intersection(
            d for d in tensor.shape.as_list() if d is not None):
          found.add((op.type, op.name, str(tensor.shape)))
  return sorted(found)


def _whole_reads_of_dynamic_variables(concrete_function):
  """(op name, shape) of each `ReadVariableOp` with an unknown dimension.

  The pooled arena, its Adam moments and its free stack are the only
  variables of a dynamic shape (`[None, g]`, `[None]`: a re-layout may
  resize them), so their sizes hide from `_id_sized_tensors`; every other
  variable has a static shape. Reading one whole costs O(arena) per step
  (`tf.shape(var)` does: 100 ms a call at 3M ids).
  """
  found = set()
  for graph in _graphs(concrete_function.graph):
    for op in graph.get_operations():
      if op.type == 'ReadVariableOp' and (
          op.outputs[0].shape.rank is None or
          None in op.outputs[0].shape.as_list()):
        found.add((op.name, str(op.outputs[0].shape)))
  return sorted(found)


def _stream():
  """Every one of 7919 users and 7907 items rates at least once."""
  n = 16_000
  rng = np.random.default_rng(0)
  r = ratings.Ratings(
      user_id=np.arange(n, dtype=np.int64) % _USERS + 1,
      item_id=np.arange(n, dtype=np.int64) % _ITEMS + 1,
      rating=rng.choice(np.arange(1, 11) / 2, n).astype(np.float32),
      timestamp=np.arange(n, dtype=np.int64), name='primes')
  return stream.build_stream(r, 'binary', 'random', 0.8, 0)


class StepGraphTest(tf.test.TestCase, parameterized.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.stream = _stream()

  def test_the_rule_catches_id_sized_ops(self):
    # Self-test of the rule on a table of the same shape: reading rows by
    # index passes; a reduction over every id, or the whole table, fails.
    table = tf.Variable(tf.zeros([_USERS, 8]))
    spec = tf.TensorSpec([None], tf.int32)
    rows = tf.function(lambda ids: tf.gather(table, ids))
    self.assertEqual(_id_sized_tensors(rows.get_concrete_function(spec)), [])
    per_id = tf.function(lambda ids: tf.gather(tf.math.unsorted_segment_max(
        tf.ones_like(ids), ids, _USERS), ids))
    self.assertIn(('UnsortedSegmentMax',),
                  {t[:1] for t in _id_sized_tensors(
                      per_id.get_concrete_function(spec))})
    whole = tf.function(lambda ids: tf.reduce_sum(table) + tf.cast(
        tf.size(ids), tf.float32))
    self.assertIn(('ReadVariableOp',),
                  {t[:1] for t in _id_sized_tensors(
                      whole.get_concrete_function(spec))})
    # A variable of a dynamic shape (the pooled arena): its shape read from
    # the handle passes, `tf.shape(var)` (a whole read) fails.
    arena = tf.Variable(tf.zeros([_USERS * 3, 2]),
                        shape=tf.TensorShape([None, 2]))
    handle_shape = tf.function(lambda ids: tf.gather(
        arena, tf.minimum(ids, tf.raw_ops.VariableShape(
            input=arena.handle)[0] - 1)))
    self.assertEqual(_whole_reads_of_dynamic_variables(
        handle_shape.get_concrete_function(spec)), [])
    read_shape = tf.function(lambda ids: tf.gather(
        arena, tf.minimum(ids, tf.shape(arena)[0] - 1)))
    self.assertLen(_whole_reads_of_dynamic_variables(
        read_shape.get_concrete_function(spec)), 1)

  @parameterized.named_parameters(
      dict(testcase_name='esapn_paired', method='esapn', reward='paired'),
      dict(testcase_name='esapn_paired_budget', method='esapn',
           reward='paired', budget=0.3),
      dict(testcase_name='esapn_next_appearance', method='esapn',
           reward='next_appearance'),
      dict(testcase_name='esapn_paper', method='esapn', reward='paper'),
      dict(testcase_name='random', method='random', budget=0.3),
      dict(testcase_name='threshold', method='threshold', budget=0.3),
      dict(testcase_name='darts', method='darts'),
      dict(testcase_name='esapn_pooled_budget', method='esapn',
           reward='paired', budget=0.3, storage='pooled'),
      dict(testcase_name='esapn_pooled', method='esapn', reward='paired',
           storage='pooled'))
  def test_per_step_functions_have_no_id_sized_tensor(self, method,
                                                      reward='paired',
                                                      budget=0.0,
                                                      storage='dense'):
    cfg = config.ExperimentConfig(
        model=config.ModelConfig(candidate_sizes=(2, 4, 8), hidden_units=16,
                                 embedding_storage=storage),
        search=config.SearchConfig(method=method, reward=reward,
                                   policy_hidden_units=16,
                                   memory_budget=budget),
        train=config.TrainConfig(batch_size=100, seed=0, jit_compile=False))
    t = trainer_lib.Trainer(cfg, self.stream)
    self.assertEqual(t.core.embeddings['user'].num_ids, _USERS)
    self.assertEqual(t.core.embeddings['item'].num_ids, _ITEMS)
    spec = t.method.ctx.signature[0]
    # What runs per batch: the trainer's step (the method's `learn`, traced
    # whole, XLA or not), the test part's scoring, and the methods' eager
    # hooks that run a tf.function per batch.
    learn = t._learn_graph  # pylint: disable=protected-access
    functions = {'learn': learn.get_concrete_function(),
                 'evaluate': t.core.evaluate.get_concrete_function(spec)}
    if reward == 'paper':
      functions['policy_update'] = (
          t.method.policy_update.get_concrete_function())
    if method == 'darts':
      functions['architecture_step'] = (
          t.core.architecture_step.get_concrete_function(spec))
    for name, function in functions.items():
      self.assertGreater(len(function.graph.get_operations()), 10)
      self.assertEqual(_id_sized_tensors(function), [], name)
      self.assertEqual(_whole_reads_of_dynamic_variables(function), [], name)


if __name__ == '__main__':
  tf.test.main()
