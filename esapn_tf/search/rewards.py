"""The memory cost of enlarging and the memory budget (issue 11).

The paper's reward has no memory term (DESIGN.md §3, §8), so "always
enlarge" is optimal in expectation. Here an enlargement from size index `k`
costs `lambda * (d_{k+1} - d_k) / d_max` in the reward's unit (loss per
example), per side:

* `--memory_cost=lambda` sets lambda (constant without a budget);
* `--memory_budget=B` (a share of FIXED-`d_max` dims, per side: each side's
  live dims over `num_ids * d_max`) adapts lambda by dual ascent after every
  step (`MemoryCost.update`) so that the greedy policy asks for about what
  a pace allows: the pace rises linearly from the smallest ratio (every id
  at `d_1`) to `B` over the examples the run learns from. The pace is also
  a hard ceiling: an enlargement that would take the side's live dims past
  it is refused (masked, never an error), so the ratio never exceeds `B`.
  The pace is also a floor, approximately: the greedy decision enlarges
  when the policy's logit difference (enlarge minus keep) exceeds a cutoff,
  0 while the side is on pace, lowered in proportion to its lag behind the
  pace (`MemoryCost.cutoff`). A change of lambda reaches the decisions only
  after REINFORCE has relearned them, so lambda alone overshoots and the
  side stalls below its budget (BUILD_NOTES.md, "Why the user side lands
  below its budget"); the cutoff acts at once, and lets in the states the
  policy ranks highest first.
* with neither, lambda = 0: no memory cost, as in the paper.

Under a memory price (a budget or `--memory_cost`), an enlargement is held
for the rest of the run but the paired benefit is measured per appearance,
so the reward counts the benefit over the id's expected remaining
appearances (`remaining_appearances`; `--reward_horizon=next` keeps the
benefit of the next appearance only): the trade is dims against the loss
they save over the rest of the stream. Without a price only the sign of
the benefit decides, and the benefit is used as it is.
"""

from typing import Sequence

import numpy as np
import tensorflow as tf


def remaining_appearances(frequency: tf.Tensor,
                          progress: tf.Tensor) -> tf.Tensor:
  """float32 `[batch]`: an id's expected appearances in the rest of the run.

  An id seen `f` times in the first share `t` of the stream appears at a
  rate of about `f / t`, so about `f * (1 - t) / t` more times before the
  end: the horizon over which an enlargement made now pays (BUILD_NOTES.md,
  "The budget lands, and the memory goes where it pays"). `t` is clipped
  to [1e-3, 1], so the estimate is finite at the start and 0 at the end.

  Args:
    frequency: int or float `[batch]`, the id's appearances so far (>= 1).
    progress: float32 scalar, the share of the run's examples seen.
  """
  t = tf.clip_by_value(tf.cast(progress, tf.float32), 1e-3, 1.0)
  return tf.cast(frequency, tf.float32) * (1.0 - t) / t


class MemoryCost(tf.Module):
  """Lambda, the live dims and the budget of one side.

  Variables: `cost` float32 scalar (lambda), `live_dims` float32 scalar (the
  side's embedding dims now: sum over ids of `d_{s(id)}`).
  """

  def __init__(self, num_ids: int, candidate_sizes: Sequence[int],
               initial_dims: float, memory_cost: float = 0.0,
               memory_budget: float = 0.0, step_size: float = 0.05,
               catch_up: float = 0.0, name: str = 'memory_cost'):
    """Creates the state.

    Args:
      num_ids: ids of the side.
      candidate_sizes: increasing sizes (dims); `d_max` is the last.
      initial_dims: the side's live dims at the start.
      memory_cost: initial lambda (>= 0).
      memory_budget: B in (0, 1], or 0 for no budget.
      step_size: eta of the dual ascent.
      catch_up: gain of the catch-up cutoff (`cutoff`), >= 0.
      name: module name.
    """
    super().__init__(name=name)
    self.sizes = np.asarray(candidate_sizes, np.float32)
    self.fixed_dims = float(num_ids) * float(self.sizes[-1])
    self.budget = float(memory_budget)
    self.step_size = float(step_size)
    self.catch_up = float(catch_up)
    # Whether dims have a price: a budget, or a constant lambda > 0.
    self.priced = bool(self.budget) or float(memory_cost) > 0.0
    self.minimum_ratio = float(self.sizes[0] / self.sizes[-1])
    self.cost = tf.Variable(float(memory_cost), trainable=False,
                            name='lambda')
    self.live_dims = tf.Variable(float(initial_dims), trainable=False,
                                 name='live_dims')

  def added_dims(self, size_index: tf.Tensor) -> tf.Tensor:
    """float32 `[batch]`: `d_{k+1} - d_k` for size indices `k < n-1`."""
    sizes = tf.constant(np.append(self.sizes, self.sizes[-1]), tf.float32)
    k = tf.cast(size_index, tf.int32)
    return tf.gather(sizes, k + 1) - tf.gather(sizes, k)

  def penalty(self, size_index: tf.Tensor) -> tf.Tensor:
    """float32 `[batch]`: `lambda * (d_{k+1} - d_k) / d_max`."""
    return self.cost * self.added_dims(size_index) / float(self.sizes[-1])

  def target(self, progress: tf.Tensor) -> tf.Tensor:
    """float32: the pace, the ratio allowed at `progress` in [0, 1].

    Rises linearly from the smallest ratio (every id at `d_1`) to the
    budget at the end of the run.
    """
    progress = tf.clip_by_value(tf.cast(progress, tf.float32), 0.0, 1.0)
    return (self.minimum_ratio +
            (self.budget - self.minimum_ratio) * progress)

  def allow(self, wants: tf.Tensor, size_index: tf.Tensor,
            progress: tf.Tensor, priority=None) -> tf.Tensor:
    """bool `[batch]`: the wanted enlargements that fit in the budget.

    In order of `priority` (highest first; ties and `priority=None` in
    batch order), an enlargement is allowed while the live dims plus the
    dims of those allowed before it stay within the pace `target(progress)`
    (at most the budget), so the budget is spent over the whole run rather
    than on the ids that come first, and a step's room goes to the ids the
    policy prefers most. Without a budget, `wants` itself. Each id must
    appear at most once in `wants`.

    Args:
      wants: bool `[batch]`.
      size_index: int32 `[batch]`, the ids' size indices before enlarging.
      progress: float32 scalar in [0, 1].
      priority: optional float32 `[batch]` (the policy's logit difference).
    """
    if not self.budget:
      return wants
    added = tf.where(wants, self.added_dims(size_index), 0.0)
    room = self.target(progress) * self.fixed_dims - self.live_dims
    if priority is None:
      return tf.logical_and(wants, tf.cumsum(added) <= room + 1e-3)
    order = tf.argsort(tf.where(wants, priority, -3e38),
                       direction='DESCENDING', stable=True)
    fits = tf.cumsum(tf.gather(added, order)) <= room + 1e-3
    return tf.logical_and(wants, tf.gather(fits, tf.argsort(order)))

  def cutoff(self, progress: tf.Tensor) -> tf.Tensor:
    """float32 scalar: the logit difference above which the greedy enlarges.

    `-catch_up * max(pace - ratio, 0) / pace`, with `pace =
    target(progress)`: 0 (the plain greedy action) while the side is on pace
    or without a budget, lower the further its live dims lag behind the
    pace, so that the states the policy prefers most after the ones it
    would enlarge anyway make up the lag (`allow` gives them the room in
    order of preference). With the default gain of 1000
    (`--memory_catch_up`), a lag of 0.1% of the pace admits states down to
    P(enlarge) = 1 / (1 + e) = 0.27, and one of 0.5% down to
    1 / (1 + e^5) = 0.007. A proportional controller: a small lag remains
    where the cutoff balances the demand (at most 0.003 of FIXED-d_max on
    ml-latest-small, BUILD_NOTES.md).

    Args:
      progress: float32 in [0, 1], the share of the run done.
    """
    if not self.budget or not self.catch_up:
      return tf.constant(0.0)
    pace = self.target(progress)
    lag = tf.maximum(pace - self.ratio(), 0.0) / pace
    return -self.catch_up * lag

  def record(self, enlarged: tf.Tensor, size_index: tf.Tensor) -> None:
    """Adds the dims of the enlargements (`size_index` before them)."""
    self.live_dims.assign_add(tf.reduce_sum(
        tf.where(enlarged, self.added_dims(size_index), 0.0)))

  def ratio(self) -> tf.Tensor:
    """float32: live dims over FIXED-`d_max` dims."""
    return self.live_dims / self.fixed_dims

  def update(self, progress: tf.Tensor, wanted_dims: tf.Tensor,
             scale: tf.Tensor) -> None:
    """One dual-ascent step on lambda.

    `lambda <- lambda + eta * scale * tanh((wanted - room) / room)`:
    lambda rises while the greedy policy wants more dims than the pace
    leaves room for, and falls while it wants fewer, so that the wanted
    enlargements follow the pace and the budget goes to the states where
    enlarging gains most: dual ascent on the Lagrangian of "maximise the
    reward subject to memory = budget". Lambda may go below 0 (an equality
    constraint): a policy that under-spends the budget is then paid for
    each added dim.

    Args:
      progress: float32 in [0, 1], the share of the run done.
      wanted_dims: float32, the dims the greedy policy asked for this step.
      scale: float32 > 0, the reward's scale (running RMS of the benefit),
        so that lambda moves in the reward's units.
    """
    if not self.budget:
      return
    room = tf.maximum(self.target(progress) * self.fixed_dims -
                      self.live_dims, 0.0)
    # One step's share of the budget: the pace's rise per step.
    per_step = self.step_size * scale
    # No floor at 0: the budget is an equality target (the final ratio
    # lands at B), so a policy that under-spends is paid to enlarge.
    self.cost.assign(self.cost + per_step * tf.tanh(
        (wanted_dims - room) / tf.maximum(room, 1.0)))


class RewardScale(tf.Module):
  """Running RMS of a side's trial benefits, to scale its rewards.

  The benefits as the reward counts them: over the id's remaining
  appearances under a memory price (`remaining_appearances`).
  REINFORCE's step follows the reward's scale through Adam's moment
  estimates: a burst of large rewards (a high lambda) leaves the second
  moment large for ~1/(1 - beta_2) = 1000 steps, and the small benefits
  after it then barely move the policy (BUILD_NOTES.md, "A policy that
  learns"). Dividing every reward by the running RMS of the benefit keeps
  the scale near 1 and does not change which action is better.
  `rms` float32 scalar: `sqrt(EMA_decay(b^2))`, 0 before any decision.
  """

  def __init__(self, decay: float = 0.99, name: str = 'reward_scale'):
    super().__init__(name=name)
    self.decay = float(decay)
    self.mean_square = tf.Variable(0.0, trainable=False, name='mean_square')

  def update(self, benefit: tf.Tensor, weight: tf.Tensor) -> None:
    """Folds in the benefits (float32 `[batch]`) of the rows with weight 1."""
    count = tf.reduce_sum(weight)
    batch_mean = tf.reduce_sum(weight * benefit * benefit) / tf.maximum(
        count, 1.0)
    started = self.mean_square > 0
    new = tf.where(started, self.decay * self.mean_square +
                   (1.0 - self.decay) * batch_mean, batch_mean)
    self.mean_square.assign(tf.where(count > 0, new, self.mean_square))

  def rms(self) -> tf.Tensor:
    """float32 > 0: the running RMS (1e-6 at the least)."""
    return tf.maximum(tf.sqrt(self.mean_square), 1e-6)
