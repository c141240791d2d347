"""The interface a size-selection method answers for the trainer.

Modelled on TF-Agents' `TFAgent`: the trainer owns the model, the
recommender's optimizer, the stream and the loop; a method decides which
size each id of a batch uses and what changes after the batch
(`Method.learn`, traced into the trainer's one XLA program), what it does
outside the compiled step (`before_learn`, `after_learn`, `start_phase`,
eager), what it costs in memory (`dims_per_id`, `memory`), what it adds to
`results.json` and TensorBoard, and which variables a checkpoint holds.
"""

import dataclasses
from typing import Any, Dict, Optional, Tuple

import numpy as np
import tensorflow as tf

from esapn_tf import config as config_lib
from esapn_tf.data import stream as stream_lib
from esapn_tf.distribute import sharding
from esapn_tf.layers import memory
from esapn_tf.search import environment

SIDES = environment.SIDES
Batch = environment.Batch


@dataclasses.dataclass
class Context:
  """What the trainer shares with its method."""
  cfg: config_lib.ExperimentConfig
  stream: stream_lib.Stream
  model: tf.keras.Model  # the `Recommender`, built
  optimizer: Any  # the recommender's `LazyAdam`
  core: Any  # `environment.SearchCore` (or the soft methods' core)
  step: tf.Variable  # int64, steps taken (advanced by the trainer)
  position: tf.Variable  # int64, examples done before the current batch
  signature: Tuple[Dict[str, tf.TensorSpec]]  # a batch's input signature

  @property
  def sizes(self) -> Tuple[int, ...]:
    """The sizes the model's tables are built with (dimensions)."""
    return self.cfg.embedding_sizes

  @property
  def learned_examples(self) -> int:
    """Examples the run learns from: both parts when prequential."""
    s = self.stream
    return (s.num_examples if self.cfg.train.test_mode == 'prequential'
            else s.num_train)

  def learned_ids(self, side: str) -> np.ndarray:
    """int `[learned_examples]`: the side's rows in the learned stream."""
    return getattr(self.stream, side)[:self.learned_examples]


class Method:
  """Base: every id keeps its size (FIXED); subclasses change what differs.

  Class attributes: `soft_sizes` (the model mixes every size softly),
  `needs_previous_batch` (`before_learn` wants the batch before the current
  one, also after a resume).
  """

  soft_sizes = False
  needs_previous_batch = False

  @classmethod
  def make_core(cls, model, optimizer, cfg: config_lib.ExperimentConfig):
    """The search core the step runs on (`environment.SearchCore`)."""
    return environment.SearchCore(model, optimizer,
                                  cfg.search.history_length,
                                  jit_compile=cfg.train.jit_compile)

  def __init__(self, ctx: Context):
    self.ctx = ctx
    self.cfg = ctx.cfg
    self.core = ctx.core
    self.sizes = ctx.sizes

  # ------------------------------------------------ the compiled step
  def learn(self, batch: Batch) -> Dict[str, tf.Tensor]:
    """The step's body on `batch` (traced once, compiled with XLA).

    Returns:
      dict with float32 `[batch]` 'loss' and 'correct' (before the
      recommender's step) and anything the method reports (bool `[batch]`
      '<side>_enlarged', scalars for TensorBoard).
    """
    no = tf.zeros_like(batch['user'], tf.bool)
    return self.core._train_step(  # pylint: disable=protected-access
        batch, no, no)

  # --------------------------------------------------- eager hooks
  def before_learn(self, prev: Optional[Batch]) -> Dict[str, tf.Tensor]:
    """Eager work before the step with the previous batch; returns stats."""
    del prev
    return {}

  def after_learn(self, batch: Batch) -> None:
    """Eager work after the step."""
    del batch

  def start_phase(self, phase: str) -> None:
    """Called before the 'train' and the 'test' part start (or resume).

    Recounts the ids per size (`size_counts.SizeCounts.recount`): sizes set
    outside the step (MDE's, a restored checkpoint's) are counted.
    Subclasses that override it call it first.
    """
    del phase
    self.core.size_counts.recount()

  # --------------------------------------------------------- memory
  def size_counts(self, side: str) -> tf.Tensor:
    """int64 `[n]`: ids at each size index now (running counts, cheap)."""
    return self.core.size_counts.counts[side].read_value()

  def mean_dims(self, side: str) -> tf.Tensor:
    """float32: the side's mean embedding dims per id now (cheap)."""
    return self.core.size_counts.mean_dims(side)

  def dims_per_id(self, side: str) -> tf.Tensor:
    """float32 `[num_ids]`: the embedding dimensions each id uses now."""
    return tf.gather(tf.constant(self.sizes, tf.float32),
                     self.core.embeddings[side].size_index)

  def memory(self) -> Dict[str, Any]:
    """The memory table per side (DESIGN.md §5; `memory.memory_table`)."""
    reference = self.cfg.model.candidate_sizes[-1]
    return {side: memory.memory_table(
        self.core.embeddings[side].size_index.numpy(), self.sizes, reference)
            for side in SIDES}

  # ---------------------------------------------------------- outputs
  def results(self) -> Dict[str, Any]:
    """Keys this method adds to results.json (the same keys for all)."""
    return {'policy_enlarge_probability': {}, 'policy_diagnostics': {},
            'memory_cost': {}, 'method_parameters': {}}

  def write_summaries(self, stats: Dict[str, tf.Tensor], step) -> None:
    """Method-specific TensorBoard summaries (the trainer's writer is on)."""
    del stats, step

  def checkpoint_parts(self) -> Dict[str, Any]:
    """Trackables a checkpoint must hold besides the model and optimizer."""
    return {}


def enlarge_and_reset(core, optimizer, side: str, ids: tf.Tensor,
                      mask: tf.Tensor) -> tf.Tensor:
  """Enlarges the masked ids one size; Adam starts their rows afresh.

  As `SearchCore._train_step` does for its enlargements
  (`lazy_adam.LazyAdam.reset_rows`), and counts the moves
  (`size_counts.SizeCounts.move`). Returns bool `[batch]`: enlarged.
  """
  emb = core.embeddings[side]
  before = sharding.gather(emb.size_index, ids)
  enlarged = emb.enlarge(ids, mask, optimizer)
  core.size_counts.move(side, ids, before,
                        before + tf.cast(enlarged, tf.int32))
  return enlarged
