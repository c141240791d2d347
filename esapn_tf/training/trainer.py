"""`Trainer`: the model, the size-selection method and the compiled step.

`run` goes through the train part then the test part of the stream, one
batch at a time (`loop.py` says in which order the policies and the
recommender learn), and keeps everything an exact resume needs in variables
that `checkpoint()` holds. Whether the step is compiled with XLA is decided
in `jit.py`; on a parameter-server cluster the steps are scheduled by
`remote.RemoteSteps`.
"""

import contextlib
import time
from typing import Any, Callable, Dict, Optional

import numpy as np
import tensorflow as tf

from esapn_tf import config as config_lib
from esapn_tf import errors
from esapn_tf.data import stream as stream_lib
from esapn_tf.distribute import sharding
from esapn_tf.distribute import strategy as strategy_lib
from esapn_tf.layers import memory
from esapn_tf.models import recommender
from esapn_tf.optimizers import lazy_adam
from esapn_tf.search import environment
from esapn_tf.search.methods import base as method_base
from esapn_tf.search.methods import registry
from esapn_tf.training import jit
from esapn_tf.training import outputs
from esapn_tf.training import remote
from esapn_tf.training import summaries

SIDES = environment.SIDES

def _means(row) -> Dict[str, float]:
  """{'loss', 'accuracy'} means of a (count, loss sum, hit sum) row."""
  count = max(row[0], 1)
  return {'loss': row[1] / count, 'accuracy': row[2] / count}


class Trainer(remote.RemoteSteps):
  """Owns the model, the method (`search/methods/`) and the step of a run."""

  def __init__(self, cfg: config_lib.ExperimentConfig,
               s: stream_lib.Stream,
               distribution: Optional[strategy_lib.Distribution] = None):
    """Builds the model, the method and the step for `cfg` on stream `s`.

    Args:
      cfg: the experiment; `train.jit_compile=None` is decided here from
        `s.num_train` (`resolve_jit_compile`; `self.cfg` holds the choice).
      s: the stream.
      distribution: `strategy_lib.make`'s; every variable is created in
        its strategy's scope. Parameter-server training schedules the steps
        on the workers (`_run_part_remote`); mirrored training runs them
        here on every replica (`_replicated`); None: this process alone.
    """
    self.distribution = distribution
    with (distribution.strategy.scope() if distribution is not None else
          contextlib.nullcontext()):
      self._build(cfg, s)

  def _build(self, cfg: config_lib.ExperimentConfig,
             s: stream_lib.Stream) -> None:
    """`__init__`'s work, in the strategy's scope if there is one."""
    self.cfg = cfg = jit.resolve_jit_compile(cfg, s.num_train)
    self.stream = s
    self.sizes = cfg.embedding_sizes
    method_class = registry.method_class(cfg.search.method)
    learned = (s.num_examples if cfg.train.test_mode == 'prequential' else
               s.num_train)
    self.model = recommender.from_config(
        cfg, s.num_users, s.num_items, soft_sizes=method_class.soft_sizes,
        learned_examples=learned)
    # Sharded tables (parameter-server training) are listed whole, where
    # an unsharded run lists them (the same slot order in checkpoints).
    self.optimizer = lazy_adam.LazyAdam(
        sharding.whole_tables(
            self.model.trainable_variables,
            [self.model.user_embedding.table_variable,
             self.model.item_embedding.table_variable]),
                                        cfg.model.learning_rate)
    for layer in (self.model.user_embedding, self.model.item_embedding):
      layer.attach_optimizer(self.optimizer)
    self.core = method_class.make_core(self.model, self.optimizer, cfg)
    self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name='step')
    # Where the run is and what it has counted (restored on resume).
    self.position = tf.Variable(0, dtype=tf.int64, trainable=False,
                                name='position')  # examples done
    self.metric_sums = tf.Variable(tf.zeros([2, 3], tf.float64),
                                   trainable=False, name='metric_sums')
    self.bucket_sums = tf.Variable(
        tf.zeros([2, 3, cfg.search.num_frequency_buckets], tf.float64),
        trainable=False, name='bucket_sums')
    self._train_clock = None  # `count_train_seconds`
    self.train_seconds = tf.Variable(0.0, dtype=tf.float64, trainable=False,
                                     name='train_seconds')
    # Raw MovieLens id of each row, so that a checkpoint alone can serve raw
    # ids (export); int64 [num_users] and [num_items], ascending.
    self.vocab = {
        'user': tf.Variable(s.user_vocab, trainable=False, name='user_vocab'),
        'item': tf.Variable(s.item_vocab, trainable=False, name='item_vocab'),
    }
    # One trace for every batch shape (the last batch of a part is smaller):
    # tracing the TF-Agents graphs costs seconds, XLA then compiles per shape.
    signature = [{
        'user': tf.TensorSpec([None], tf.int32),
        'item': tf.TensorSpec([None], tf.int32),
        'label': tf.TensorSpec([None], tf.as_dtype(s.label.dtype)),
        'user_frequency': tf.TensorSpec([None], tf.int32),
        'item_frequency': tf.TensorSpec([None], tf.int32),
    }]
    # The size-selection method (search/methods/): the step below is
    # written once for all of them.
    self.method = method_class(method_base.Context(
        cfg=cfg, stream=s, model=self.model, optimizer=self.optimizer,
        core=self.core, step=self.step, position=self.position,
        signature=tuple(signature)))
    # TensorBoard summaries, one graph in one process (summaries.py).
    self.write_summaries = summaries.StepSummaries(
        self.method, self.step, graph=self.distribution is None)
    # Every variable exists before the step is traced: `tf.function` traces
    # a second time when its first trace creates variables, and the
    # policies' Adam slots (made at their first `agent.train`) cost ESAPN
    # that second trace (~2.5 s CPU on ml-latest-small).
    for agent in getattr(self.method, 'agents', {}).values():
      agent._optimizer.build(  # pylint: disable=protected-access
          agent._actor_network.trainable_variables)  # pylint: disable=protected-access
    # No AutoGraph: the steps have no tensor-dependent Python control flow,
    # and converting the TF-Agents code they call took ~5 of the ~7 s of
    # tracing (BUILD_NOTES.md, "Speed").
    # Batches of `batch_size` run the whole step (the policies' TF-Agents
    # parts too) as one XLA program. The (at most two) partial batches of a
    # part run the same graph uncompiled, so XLA compiles the step once per
    # run, not once per batch shape; the XLA program calls the graph, so the
    # Python code is traced once (seconds for the TF-Agents parts).
    # BUILD_NOTES.md, "Speed".
    self._learn_graph = tf.function(self._learn, input_signature=signature,
                                    autograph=False)
    self._learn_compiled = None
    if cfg.train.jit_compile:
      self._learn_compiled = tf.function(
          lambda batch: self._learn_graph(batch),  # pylint: disable=unnecessary-lambda
          input_signature=signature, jit_compile=True)
    # The test part's scoring (BatchNorm in inference mode) cannot share the
    # step's program (which scores in training mode, after the method's
    # `before_learn`), and compiling it with XLA once per batch shape (full
    # and last) cost more than the forward passes it speeds up: it runs as
    # one graph traced once for every shape; the prequential test part
    # learns with the train part's compiled step.
    self._evaluate = tf.function(self.core._evaluate,  # pylint: disable=protected-access
                                 input_signature=signature, autograph=False)
    # On a cluster, the functions the coordinator schedules on a worker: the
    # same Python code, in the strategy's replica context (`strategy.run`;
    # TF-Agents' losses ask for one). A prequential test batch is scored,
    # then learned from, in one function ('evaluate_and_learn').
    self._remote = {}
    if self.mirrored:
      self._learn_graph = self._replicated(self._learn, signature)
      self._evaluate = self._replicated(
          self.core._evaluate, signature)  # pylint: disable=protected-access
    elif self.distribution is not None:
      run = self.distribution.strategy.run

      def on_worker(fn):
        return tf.function(lambda batch: run(fn, args=(batch,)),
                           input_signature=signature, autograph=False)

      for name, fn in (('learn', self._learn),
                       ('evaluate', self.core._evaluate),  # pylint: disable=protected-access
                       ('evaluate_and_learn', self._evaluate_then_learn)):
        self._remote[name] = on_worker(fn)

  @property
  def mirrored(self) -> bool:
    """True under `--distribution=mirrored` (steps in this process)."""
    return (self.distribution is not None and
            self.distribution.kind == 'mirrored')

  def _replicated(self, fn, signature):
    """`fn` as one graph run by every replica on the whole batch
    (`strategy.run`; the recommender pass splits it, `distribute.mirrored`);
    returns the first replica's outputs (all replicas compute the same)."""
    strategy = self.distribution.strategy

    def run(batch):
      return strategy.experimental_local_results(
          strategy.run(fn, args=(batch,)))[0]

    return tf.function(run, input_signature=signature, autograph=False)

  # ------------------------------------------------------------ one step
  def learn(self, batch: environment.Batch) -> Dict[str, tf.Tensor]:
    """`_learn` on `batch`: one XLA program for full batches.

    Args:
      batch: a stream batch (`stream.make_dataset`), eager tensors.

    Returns:
      `_learn`'s outputs.
    """
    for side in SIDES:  # storage upkeep outside the compiled step
      self.core.embeddings[side].reserve()
    if (self._learn_compiled is not None and
        int(batch['user'].shape[0]) == self.cfg.train.batch_size):
      return self._learn_compiled(batch)
    return self._learn_graph(batch)

  def _learn(self, batch: environment.Batch) -> Dict[str, tf.Tensor]:
    """The method's step on `batch` (`Method.learn`), then step + 1."""
    out = self.method.learn(batch)
    self.step.assign_add(1)
    return out

  def _evaluate_then_learn(self, batch: environment.Batch):
    """{'evaluate': scores before learning, 'learn': `_learn`'s outputs}."""
    scores = self.core._evaluate(batch)  # pylint: disable=protected-access
    with tf.control_dependencies(tf.nest.flatten(scores)):
      return {'evaluate': scores, 'learn': self._learn(batch)}

  # --------------------------------------------------------------- run
  def run(self, writer, progress: outputs.Progress,
          on_step: Optional[Callable[[], None]] = None) -> Dict[str, Any]:
    """Runs (or, after a restore, continues) the train and test passes.

    The stream position, the metric sums and the train seconds live in
    variables (`self.position`, `self.metric_sums`, `self.bucket_sums`,
    `self.train_seconds`) so that a checkpoint taken between two steps holds
    everything needed to continue exactly.

    Args:
      writer: TensorBoard writer.
      progress: progress printer.
      on_step: called after every batch (checkpointing, interruption).

    Returns:
      The metrics (train and test accuracy, loss and examples).
    """
    cfg, s = self.cfg, self.stream
    bs = cfg.train.batch_size
    position = int(self.position.numpy())
    sums = self.metric_sums.numpy()  # rows: train, test; (n, loss, hits)
    buckets = outputs.FrequencyBuckets(cfg.search.num_frequency_buckets)
    for i, side in enumerate(SIDES):
      buckets.sums[side] = self.bucket_sums[i].numpy()
    prev = None
    if position and self.method.needs_previous_batch:
      # The batch before `position` (batches start every `bs` examples from
      # the start of each part; a last example alone joins the batch before).
      part_start, part_stop = ((s.num_train, s.num_examples)
                               if position > s.num_train else (0, s.num_train))
      lo = stream_lib.batch_start(part_start, part_stop, position, bs)
      prev = next(iter(stream_lib.make_dataset(s, lo, position, bs)))
    progress.done = position
    with writer.as_default():
      for phase, lo, hi in (('train', 0, s.num_train),
                            ('test', s.num_train, s.num_examples)):
        if position >= hi:
          continue
        self.method.start_phase(phase)
        if phase == 'train':
          self._train_clock = time.perf_counter()
        # `position` is a batch boundary, so the batches from it are the
        # ones an uninterrupted run sees.
        batches = stream_lib.make_dataset(s, max(lo, position), hi, bs)
        if self.distribution is not None and not self.mirrored:
          self._run_part_remote(batches, phase, sums, buckets, progress,
                                on_step)
        else:
          for batch in batches:
            self._step(batch, phase, sums, buckets, prev, progress)
            prev = batch
            if on_step is not None:
              on_step()
        if phase == 'train':
          self.count_train_seconds()
          self._train_clock = None
        progress.update(0, phase, _means(sums[int(phase == 'test')]), force=True)
      writer.flush()

    def summary(row):
      count, loss, correct = row
      return {'examples': int(count),
              'loss': float(loss / count) if count else float('nan'),
              'accuracy': float(correct / count) if count else float('nan')}

    seconds = float(self.train_seconds.numpy())
    return {'train': summary(sums[0]), 'test': summary(sums[1]),
            'per_frequency': buckets,
            'train_examples_per_second':
                s.num_train / seconds if seconds else 0.0}

  def count_train_seconds(self) -> None:
    """Adds the train part's seconds since the last call to
    `train_seconds`; the loop calls it before each checkpoint, so that a
    resumed run's `train_examples_per_second` counts the time before the
    interruption too."""
    if self._train_clock is None:
      return
    now = time.perf_counter()
    self.train_seconds.assign_add(now - self._train_clock)
    self._train_clock = now

  def _step(self, batch, phase, sums, buckets, prev, progress) -> None:
    """One batch: test scoring first (test part), then learning."""
    learn = phase == 'train' or self.cfg.train.test_mode == 'prequential'
    scores = self._evaluate(batch) if phase == 'test' else None
    out = stats = None
    if learn:
      stats = self.method.before_learn(prev)
      out = self.learn(batch)
      self.method.after_learn(batch)
    self._account(batch, phase, scores, out, stats or {}, sums, buckets,
                  progress)
    self._save_counters(int(batch['user'].shape[0]), sums, buckets)

  def _account(self, batch, phase, scores, out, stats, sums, buckets,
               progress) -> None:
    """Counts one batch's scores (test) and step outputs (None: no step)
    in `sums`, `buckets` and `progress` (`_save_counters` stores them)."""
    n = int(batch['user'].shape[0])
    test_metrics = None
    if scores is not None:
      loss, correct = np.asarray(scores['loss']), np.asarray(scores['correct'])
      sums[1] += (n, loss.sum(), correct.sum())
      for side in SIDES:
        buckets.add(side, batch[f'{side}_frequency'].numpy(), loss, correct)
      test_metrics = _means(sums[1])
    if out is not None:
      stats = dict(out, **stats)
      if phase == 'train':
        loss = np.asarray(out['loss'])
        if not np.all(np.isfinite(loss)):
          raise errors.TrainingError(
              f'non-finite training loss at step {int(self.step.numpy())}; '
              'the last good checkpoint is kept; lower --learning_rate or '
              'check the data')
        sums[0] += (n, loss.sum(), np.asarray(out['correct']).sum())
      if int(self.step.numpy()) % self.cfg.train.summary_every == 0:
        self.write_summaries(out, stats, test_metrics)
    progress.update(n, phase, _means(sums[int(phase == 'test')]))

  def _save_counters(self, n: int, sums, buckets) -> None:
    """Advances `position` by `n` examples and stores the metric sums, so
    that a checkpoint taken now resumes after them."""
    self.position.assign_add(n)
    self.metric_sums.assign(sums)
    self.bucket_sums.assign(np.stack([buckets.sums[side] for side in SIDES]))

  def memory(self) -> Dict[str, Any]:
    """The memory table per side (DESIGN.md §5; `Method.memory`)."""
    return self.method.memory()

  def train_state_bytes(self) -> Dict[str, Any]:
    """Embedding storage bytes now, both sides (`memory.train_state_bytes`),
    against FIXED at the largest candidate size."""
    return memory.train_state_bytes(
        [self.model.user_embedding, self.model.item_embedding],
        self.cfg.model.candidate_sizes[-1])

  def distribution_info(self) -> Dict[str, Any]:
    """`strategy_lib.describe` of this run: 'none', or the cluster and
    the device of every per-id table shard (results.json)."""
    return strategy_lib.describe(self.distribution, self.core.embeddings,
                                 self.optimizer, self.core)

  def checkpoint(self) -> tf.train.Checkpoint:
    parts = {'model': self.model, 'optimizer': self.optimizer,
             'core': self.core, 'step': self.step,
             'position': self.position, 'metric_sums': self.metric_sums,
             'bucket_sums': self.bucket_sums,
             'train_seconds': self.train_seconds,
             'user_vocab': self.vocab['user'],
             'item_vocab': self.vocab['item']}
    parts.update(self.method.checkpoint_parts())
    return tf.train.Checkpoint(**parts)
