"""ESAPN: one REINFORCE policy per side decides when an id grows (DESIGN.md §3).

Rewards (`SearchConfig.reward`):
* 'paired' (default, `search/trials.py`): shadow rows one size up, scored
  against the real rows on the same examples; memory cost and budget
  (`search/rewards.py`); `_learn_paired`.
* 'next_appearance': a decision taken at an id's last copy in a batch is
  rewarded at its next appearance (`environment.SearchCore`).
* 'paper' (DESIGN.md §3 as written): tentative sizes scored on the previous
  batch (`before_learn`).
`policy_learning_rate=0` freezes the policies. Per-state diagnostics
(`search/diagnostics.py`) go to results.json and TensorBoard.
"""

import sys
from typing import Any, Dict, Optional

import numpy as np
import tensorflow as tf

from esapn_tf.optimizers import lazy_adam
from esapn_tf.search import agent as agent_lib
from esapn_tf.search import diagnostics as diagnostics_lib
from esapn_tf.search import environment
from esapn_tf.search import matching
from esapn_tf.search import rewards as rewards_lib
from esapn_tf.search import trials
from esapn_tf.search.methods import base


class Esapn(base.Method):
  """The policies, their agents and (reward 'paired') the trials."""

  def __init__(self, ctx: base.Context):
    super().__init__(ctx)
    cfg, s, sizes = self.cfg, ctx.stream, self.sizes
    sc = cfg.search
    self.next_appearance = sc.reward == 'next_appearance'
    self.paired = sc.reward == 'paired'
    self.frozen = sc.policy_learning_rate == 0
    # Rows the policy network runs on per side: every (frequency bucket,
    # size) the stream can reach (`agent.distinct_states`).
    self.policy_buckets = {
        side: agent_lib.buckets_in_use(
            int(np.bincount(getattr(s, side), minlength=1).max()),
            sc.num_frequency_buckets)
        for side in base.SIDES}
    self.agents = {
        side: agent_lib.make_agent(
            len(sizes), sc.policy_learning_rate, sc.num_frequency_buckets,
            sc.policy_hidden_units, normalize_returns=sc.normalize_returns,
            entropy_regularization=sc.entropy_regularization,
            name=f'{side}_policy')
        for side in base.SIDES}
    # reward='paired' (search/trials.py): shadow-row pools, their Adam, the
    # memory cost / budget and the reward scale (search/rewards.py).
    self.pools, self.memory_costs, self.reward_scales = {}, {}, {}
    self.reachable: Dict[str, float] = {}  # budgeted sides: ratio bound
    self.shadow_optimizer = None
    if self.paired:
      for side in base.SIDES:
        emb = self.core.embeddings[side]
        self.pools[side] = trials.TrialPool(emb, sc.trial_slots,
                                            name=f'{side}_trials')
        self.memory_costs[side] = rewards_lib.MemoryCost(
            emb.num_ids, sizes,
            float(np.sum(np.asarray(sizes)[emb.size_index.numpy()])),
            sc.memory_cost, sc.budget(side), sc.memory_cost_step,
            sc.memory_catch_up, name=f'{side}_memory_cost')
        self.reward_scales[side] = rewards_lib.RewardScale(
            name=f'{side}_reward_scale')
      self.reachable = {side: self._reachable_ratio(side)
                        for side in base.SIDES if sc.budget(side)}
      self.shadow_optimizer = lazy_adam.LazyAdam(
          [self.pools[side].rows for side in base.SIDES],
          cfg.model.learning_rate, name='shadow_adam')
    self.diagnostics = {}
    for side in base.SIDES:
      d = diagnostics_lib.PolicyDiagnostics(
          sc.num_frequency_buckets, len(sizes), name=f'{side}_diagnostics')
      d.initial_probability.assign(diagnostics_lib.enlarge_probability(
          self.agents[side], d.states()))
      self.diagnostics[side] = d
    # reward='paper': the policies learn on the previous batch. No
    # AutoGraph (BUILD_NOTES.md, "Speed").
    self.needs_previous_batch = sc.reward == 'paper'
    self.policy_update = tf.function(self._policy_update,
                                     input_signature=ctx.signature,
                                     autograph=False)

  def before_learn(self, prev: Optional[base.Batch]) -> Dict[str, tf.Tensor]:
    if self.needs_previous_batch and prev is not None:
      return self.policy_update(prev)
    return {}

  def _policy_update(self, prev: base.Batch) -> Dict[str, tf.Tensor]:
    """Step 1: REINFORCE on the previous batch, per side."""
    obs = self.core.observe(prev)
    actions = {side: self._sample(side, obs[side]) for side in base.SIDES}
    rewards, weights = self.core.rewards(prev, actions)
    stats = {}
    for side in base.SIDES:
      loss = self._train_policy(side, obs[side], actions[side],
                                rewards[side], weights[side])
      n = tf.maximum(tf.reduce_sum(weights[side]), 1.0)
      stats[f'{side}_reward'] = tf.reduce_sum(rewards[side] * weights[side]) / n
      stats[f'{side}_policy_loss'] = loss
    return stats

  def _policy_logits(self, side: str, observation) -> tf.Tensor:
    """float32 `[batch, 2]`: the side's policy logits per example.

    The policy network runs once per state the stream can reach
    (`agent.distinct_states`), and each example gets its state's logits
    (enlarge masked at the largest size).

    Args:
      side: 'user' or 'item'.
      observation: `{'frequency', 'size_index'}` int32 `[batch]`.
    """
    group, states = agent_lib.distinct_states(
        observation, len(self.sizes), self.policy_buckets[side])
    dist = self.agents[side].collect_policy.distribution(
        agent_lib.first_time_step(states)).action
    return tf.gather(dist.logits_parameter(), group)

  def _sample(self, side: str, observation, logits=None) -> tf.Tensor:
    """int32 `[batch]` actions drawn from the side's collect policy.

    Gumbel-max on the policy's logits with stateless noise keyed by
    (seed, side, step): the same run draws the same actions, and a resumed
    run the same as an uninterrupted one (XLA's `tf.random.categorical`
    ignores seeds). XLA's stateless generator draws other numbers than the
    CPU kernel for the same key, so a run with `--nojit_compile` draws
    other (equally distributed) noise. Each example gets its own noise.

    Args:
      side: 'user' or 'item'.
      observation: `{'frequency', 'size_index'}` int32 `[batch]`.
      logits: `_policy_logits(side, observation)` when already computed.
    """
    if logits is None:
      logits = self._policy_logits(side, observation)
    seed = tf.stack([tf.cast(self.cfg.train.seed, tf.int64),
                     self.ctx.step * 2 + base.SIDES.index(side)])
    uniform = tf.random.stateless_uniform(tf.shape(logits), seed,
                                          minval=1e-20, maxval=1.0)
    gumbel = -tf.math.log(-tf.math.log(uniform))
    return tf.argmax(logits + gumbel, -1, output_type=tf.int32)

  def _train_policy(self, side: str, observation, action, reward, weight):
    """One REINFORCE step of the side's agent on one-step episodes.

    The episodes of a batch are merged per distinct (state, action)
    (`agent.grouped_rewards`: the same loss, the network run on fewer
    rows), except with `normalize_returns`, whose standardisation is over
    the rows.

    Args:
      side: 'user' or 'item'.
      observation: `{'frequency', 'size_index'}` int32 `[batch]`.
      action: int32 `[batch]`.
      reward: float32 `[batch]`.
      weight: float32 `[batch]`, 0 for rows that are no training signal.

    Returns:
      float32 scalar: the REINFORCE loss (0 for a frozen policy).
    """
    if self.frozen:  # --policy_learning_rate=0: the policy never moves
      return tf.constant(0.0)
    if not self.cfg.search.normalize_returns:
      observation, action, reward, weight = agent_lib.grouped_rewards(
          observation, action, reward, weight, len(self.sizes),
          self.policy_buckets[side])
    with tf.summary.record_if(False):  # we write our own policy summaries
      return self.agents[side].train(
          agent_lib.one_step_episodes(observation, action, reward),
          weights=tf.expand_dims(weight, 1)).loss

  def learn(self, batch: base.Batch) -> Dict[str, tf.Tensor]:
    """Actions, enlargement and one recommender step on `batch`.

    Reward 'paired' (the default): `_learn_paired`.
    Reward 'paper' (DESIGN.md §3 as written): the greedy policies act.
    Reward 'next_appearance': the collect policies sample (REINFORCE needs
    on-policy samples), one decision per id at its last copy in the batch;
    after the recommender step, the decisions that this batch's first copies
    resolve are rewarded and each agent takes one REINFORCE step.
    """
    if self.paired:
      return self._learn_paired(batch)
    core = self.core
    obs = core.observe(batch)
    enlarge, actions, deciding, history_means = {}, {}, {}, {}
    for side in base.SIDES:
      ids = batch[side]
      if self.next_appearance:
        _, deciding[side] = core.occurrence_masks(
            side, ids, batch[f'{side}_frequency'])
        history_means[side], _ = core.history_mean(side, ids)
        actions[side] = self._sample(side, obs[side])
      else:
        deciding[side] = tf.ones_like(ids, tf.bool)
        actions[side] = self.agents[side].policy.action(
            agent_lib.first_time_step(obs[side])).action
      enlarge[side] = environment.any_per_id(
          ids, tf.logical_and(deciding[side],
                              tf.equal(actions[side], agent_lib.ENLARGE)))
    # Inlined: compiled with the rest of the step by `learn`'s XLA program.
    out = core._train_step(  # pylint: disable=protected-access
        batch, enlarge['user'], enlarge['item'])
    if self.next_appearance:
      for side in base.SIDES:
        observation, action, reward, weight = core.pending_experience(
            side, batch, out['loss'], history_means[side])
        loss = self._train_policy(side, observation, action, reward,
                                  weight)
        n = tf.maximum(tf.reduce_sum(weight), 1.0)
        out[f'{side}_reward'] = tf.reduce_sum(reward * weight) / n
        out[f'{side}_policy_loss'] = loss
        core.record_decisions(side, batch[side], obs[side], actions[side],
                              deciding[side])
    return out

  def _learn_paired(self, batch: base.Batch) -> Dict[str, tf.Tensor]:
    """reward='paired' (`search/trials.py`): one step on `batch`.

    1. Score the batch with real and shadow rows (before learning).
    2. Per side, trials with `trial_length` scored appearances resolve:
       REINFORCE on a sampled action with reward `b - lambda * added / d_max`
       for enlarging (under a memory price `b` times the id's expected
       remaining appearances, `--reward_horizon`) and 0 for keeping; the
       greedy action decides (behind a budget's pace, the catch-up cutoff
       of `rewards.py`),
       within the memory budget, and an enlarged id adopts its shadow row;
       slots are freed, new trials start, and lambda takes its dual-ascent
       step (`search/rewards.py`). 3. The shadows take their Adam step.
    4. One recommender step (no further size changes).
    """
    sc = self.cfg.search
    trial = trials.score(self.ctx.model, self.pools, batch)
    obs = self.core.observe(batch)
    progress = (tf.cast(self.ctx.position, tf.float32) +
                tf.cast(tf.shape(batch['user'])[0], tf.float32)) / float(
                    self.ctx.learned_examples)
    out = {}
    for side in base.SIDES:
      pool, cost = self.pools[side], self.memory_costs[side]
      ids = batch[side]
      in_trial, slot = trial[side]
      appearances = tf.gather(pool.appearances, slot)
      resolving = tf.logical_and(in_trial, appearances >= sc.trial_length)
      decide = tf.logical_and(resolving, trials.last_in_slot(
          batch[f'{side}_frequency'], slot))
      benefit = (tf.gather(pool.benefit_sum, slot) /
                 tf.cast(tf.maximum(appearances, 1), tf.float32))
      size = obs[side]['size_index']
      logits = self._policy_logits(side, obs[side])
      sampled = self._sample(side, obs[side], logits)
      # Under a memory price, the benefit over the id's expected remaining
      # appearances (rewards.remaining_appearances), per appearance without.
      value = benefit
      if cost.priced and sc.reward_horizon == 'remaining':
        value = benefit * rewards_lib.remaining_appearances(
            obs[side]['frequency'], progress)
      reward = tf.where(tf.equal(sampled, agent_lib.ENLARGE),
                        value - cost.penalty(size), 0.0)
      weight = tf.cast(decide, tf.float32)
      scale = self.reward_scales[side]
      scale.update(value, weight)
      loss = self._train_policy(side, obs[side], sampled,
                                reward / scale.rms(), weight)
      self.diagnostics[side].record(obs[side], sampled, reward, benefit,
                                    weight)
      # The greedy action (cutoff 0), or, behind a budget's pace, every
      # state the policy ranks above the catch-up cutoff (rewards.py).
      preference = (logits[:, agent_lib.ENLARGE] -
                    logits[:, agent_lib.UNCHANGED])
      wants = tf.logical_and(decide, preference > cost.cutoff(progress))
      # Lambda follows what the greedy policy itself asks for (cutoff 0).
      asks = tf.logical_and(decide, preference > 0.0)
      allowed = cost.allow(wants, size, progress, preference)
      chosen = tf.logical_and(in_trial, trials.per_slot_any(allowed, slot))
      # A pooled layout may refuse (a full pool): count what happened.
      chosen = trials.adopt(pool, self.ctx.optimizer, self.shadow_optimizer,
                            ids, slot, chosen)
      cost.record(tf.logical_and(allowed, chosen), size)
      cost.update(progress, tf.reduce_sum(
          tf.where(asks, cost.added_dims(size), 0.0)), scale.rms())
      self.core.size_counts.move(side, ids, size,
                                 size + tf.cast(chosen, tf.int32))
      trials.free(pool, slot, resolving)
      trials.start(pool, self.shadow_optimizer, ids, self.ctx.step,
                   sc.trial_timeout_steps)
      n = tf.maximum(tf.reduce_sum(weight), 1.0)
      out[f'{side}_reward'] = tf.reduce_sum(reward * weight) / n
      out[f'{side}_benefit'] = tf.reduce_sum(benefit * weight) / n
      out[f'{side}_decisions'] = tf.reduce_sum(weight)
      out[f'{side}_policy_loss'] = loss
      out[f'{side}_enlarged'] = chosen
      out[f'{side}_memory_cost'] = cost.cost + 0.0
      out[f'{side}_memory_ratio'] = cost.ratio()
    trials.train_shadows(self.ctx.model, self.pools, batch,
                         self.shadow_optimizer)
    no = tf.zeros_like(batch['user'], tf.bool)
    step = self.core._train_step(  # pylint: disable=protected-access
        batch, no, no)
    out.update(loss=step['loss'], correct=step['correct'])
    return out

  def write_summaries(self, stats: Dict[str, tf.Tensor], step) -> None:
    """Rewards, policy losses, trial figures and P(enlarge) images."""
    for side in base.SIDES:
      for key, tag in (('reward', 'mean_reward'), ('policy_loss', 'loss'),
                       ('benefit', 'benefit'), ('decisions', 'decisions'),
                       ('memory_cost', 'memory_cost'),
                       ('memory_ratio', 'memory_ratio')):
        if f'{side}_{key}' in stats:
          tf.summary.scalar(f'policy/{side}_{tag}', stats[f'{side}_{key}'],
                            step=step)
      # P(enlarge) per (frequency bucket, size) state as an image: rows
      # are log2 frequency buckets, columns sizes, white = 1.
      d = self.diagnostics[side]
      p = diagnostics_lib.enlarge_probability(self.agents[side], d.states())
      grid = tf.reshape(p, [d.num_buckets, d.num_sizes])
      grid = grid[:self.policy_buckets[side]]
      tf.summary.image(f'policy/{side}_p_enlarge',
                       grid[tf.newaxis, :, :, tf.newaxis], step=step)

  def policy_diagnostics(self) -> Dict[str, Any]:
    """Per side, the per-state table of `diagnostics.report`."""
    table = {}
    for side, d in self.diagnostics.items():
      final = diagnostics_lib.enlarge_probability(self.agents[side],
                                                  d.states()).numpy()
      table[side] = diagnostics_lib.report(d, final, self.sizes)
    return table

  def _reachable_ratio(self, side: str) -> float:
    """The largest memory ratio the side can reach on this stream.

    An id grows at most one size per batch it appears in, so enlarging at
    every decision ends each id at `min(decisions, n - 1)`: the ratio of
    `random` growth with p = 1 (`matching.random_growth_ratio`). A budget
    above it cannot be spent; a note says so (on ml-latest-small's movies
    the bound is 0.430 with the default sizes, so a budget of 0.5 ends
    below it). Paired trials reach somewhat less, since a trial needs an
    appearance to start and one to resolve.
    """
    s = self.ctx.stream
    decisions = matching.decisions_per_id(
        self.ctx.learned_ids(side), self.core.embeddings[side].num_ids,
        s.num_train, self.ctx.learned_examples, self.cfg.train.batch_size)
    bound = matching.random_growth_ratio(decisions, 1.0, self.sizes)
    budget = self.cfg.search.budget(side)
    if budget > bound + 0.005:
      print(f'note: the {side} memory budget {budget:g} is out of reach on '
            f'this stream: enlarging at every decision ends at {bound:.3f} '
            'of FIXED; the run will end below the budget', file=sys.stderr)
    return float(bound)

  def results(self) -> Dict[str, Any]:
    out = super().results()
    if self.reachable:
      out['memory_budget_reachable'] = self.reachable
    out['policy_enlarge_probability'] = diagnostics_lib.policy_table(
        self.agents, self.sizes)
    out['policy_diagnostics'] = self.policy_diagnostics()
    out['memory_cost'] = {side: float(c.cost.numpy())
                          for side, c in self.memory_costs.items()}
    return out

  def checkpoint_parts(self) -> Dict[str, Any]:
    parts = {}
    for side in base.SIDES:
      parts[f'{side}_policy'] = self.agents[side]
      parts[f'{side}_diagnostics'] = self.diagnostics[side]
    for side in self.pools:
      parts[f'{side}_trials'] = self.pools[side]
      parts[f'{side}_memory_cost'] = self.memory_costs[side]
      parts[f'{side}_reward_scale'] = self.reward_scales[side]
    if self.shadow_optimizer is not None:
      parts['shadow_optimizer'] = self.shadow_optimizer
    return parts
