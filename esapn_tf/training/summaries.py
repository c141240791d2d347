"""The training run's TensorBoard summaries (`Trainer` writes them).

Every `--summary_every` steps: train loss and accuracy, each side's mean
embedding size and size histogram, the share of the batch enlarged, and the
method's own figures (`Method.write_summaries`); in the test part also the
running test means.
"""

from typing import Dict, Optional

import tensorflow as tf

from esapn_tf.search import diagnostics
from esapn_tf.search.methods import base

SIDES = base.SIDES


class StepSummaries:
  """Writes one step's summaries to the default writer.

  In one process they run as one graph (traced once at first use, 0.2 s):
  written op by op, ESAPN's took 20 ms per call on ml-latest-small against
  2 ms as a graph (about 3,200 calls in an ml-20m-size run; measured
  2026-12-03, BUILD_NOTES.md "Start-up and per-step host work"). On a
  cluster or under mirrored training (`graph=False`) they are written op by
  op.

  Args:
    method: the run's `Method` (`mean_dims`, `size_counts`,
      `write_summaries`).
    step: the int64 step variable the summaries are written at.
    graph: write through one `tf.function`.
  """

  def __init__(self, method, step: tf.Variable, graph: bool):
    self.method = method
    self.step = step
    self._graph = (tf.function(self._write, autograph=False,
                               reduce_retracing=True) if graph else None)

  def __call__(self, out, stats, test: Optional[Dict[str, float]]) -> None:
    """Writes the summaries of one step.

    Args:
      out: the step's outputs (`Trainer._learn`), tensors or arrays.
      stats: the method's `before_learn` figures, float32 scalars.
      test: the test part's running means so far (None in the train part).
    """
    # The methods' size figures may branch in Python (pruned): read here.
    sizes = {side: (self.method.mean_dims(side), self.method.size_counts(side))
             for side in SIDES}
    if self._graph is None:
      self._write(out, stats, sizes)
    else:
      self._graph(dict(out), dict(stats), sizes)
    for k, v in (test or {}).items():  # two scalars, in the test part
      tf.summary.scalar(f'test/{k}', v, step=self.step)

  def _write(self, out, stats, sizes) -> None:
    step = self.step
    tf.summary.scalar('train/loss', tf.reduce_mean(out['loss']), step=step)
    tf.summary.scalar('train/accuracy', tf.reduce_mean(out['correct']),
                      step=step)
    for side in SIDES:
      # Running counts: cost sized by the batch, not the ids (issue 12).
      mean_dims, counts = sizes[side]
      tf.summary.scalar(f'embedding/{side}_mean_size', mean_dims, step=step)
      diagnostics.size_histogram(f'embedding/{side}_size_index', counts,
                                 step)
      if f'{side}_enlarged' in out:
        tf.summary.scalar(
            f'policy/{side}_fraction_enlarged',
            tf.reduce_mean(tf.cast(out[f'{side}_enlarged'], tf.float32)),
            step=step)
    self.method.write_summaries(stats, step)
