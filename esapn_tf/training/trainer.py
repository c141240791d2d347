"""`Trainer`: the model, the agents and the compiled steps of one run.

`run` goes through the train part then the test part of the stream, one
batch at a time (`loop.py` says in which order the policies and the
recommender learn), and keeps everything an exact resume needs in variables
that `checkpoint()` holds.
"""

import time
from typing import Any, Callable, Dict, Optional

import numpy as np
import tensorflow as tf
from tf_agents.trajectories import time_step as ts
from tf_agents.trajectories import trajectory

from esapn_tf import config as config_lib
from esapn_tf import errors
from esapn_tf.data import stream as stream_lib
from esapn_tf.models import recommender
from esapn_tf.search import agent as agent_lib
from esapn_tf.search import baselines
from esapn_tf.search import diagnostics as diagnostics_lib
from esapn_tf.search import environment
from esapn_tf.search import rewards as rewards_lib
from esapn_tf.search import soft_search
from esapn_tf.search import trials
from esapn_tf.training import lazy_adam
from esapn_tf.training import outputs

SIDES = environment.SIDES


def _means(row) -> Dict[str, float]:
  """{'loss', 'accuracy'} means of a (count, loss sum, hit sum) row."""
  count = max(row[0], 1)
  return {'loss': row[1] / count, 'accuracy': row[2] / count}


def one_step_episodes(observation, action, reward):
  """`[batch, 1]` trajectories: each decision is a one-step episode."""
  expand = lambda x: tf.expand_dims(x, 1)
  batch = tf.shape(action)[0]
  return trajectory.Trajectory(
      step_type=tf.fill([batch, 1], ts.StepType.FIRST),
      observation=tf.nest.map_structure(expand, observation),
      action=expand(action),
      policy_info=(),
      next_step_type=tf.fill([batch, 1], ts.StepType.LAST),
      reward=expand(reward),
      discount=tf.zeros([batch, 1]))


class Trainer:
  """Owns the model, the agents and the compiled steps of one run."""

  def __init__(self, cfg: config_lib.ExperimentConfig,
               s: stream_lib.Stream):
    self.cfg = cfg
    self.stream = s
    self.method = cfg.search.method
    self.search = self.method == 'esapn'
    self.soft = self.method in config_lib.SOFT_METHODS
    self.next_appearance = cfg.search.reward == 'next_appearance'
    self.paired = self.search and cfg.search.reward == 'paired'
    self.frozen = cfg.search.policy_learning_rate == 0
    self.sizes = sizes = cfg.embedding_sizes
    self.model = recommender.Recommender(
        s.num_users, s.num_items, sizes, task=cfg.model.task,
        hidden_units=cfg.model.hidden_units,
        batch_norm_momentum=cfg.model.batch_norm_momentum,
        soft_sizes=self.soft)
    self.model.build_all()
    self.optimizer = lazy_adam.LazyAdam(self.model.trainable_variables,
                                        cfg.model.learning_rate)
    if self.soft:
      self.core = soft_search.SoftSearchCore(
          self.model, self.optimizer, cfg.search,
          jit_compile=cfg.train.jit_compile)
    else:
      self.core = environment.SearchCore(
          self.model, self.optimizer, cfg.search.history_length,
          jit_compile=cfg.train.jit_compile)
    if self.method == 'mde':
      # Sizes from the final train frequencies, fixed for the whole run.
      for side in SIDES:
        emb = self.core.embeddings[side]
        counts = np.bincount(getattr(s, side)[:s.num_train],
                             minlength=emb.num_ids)
        emb.size_index.assign(baselines.mde_size_indices(
            counts, sizes, cfg.search.mde_temperature))
    # pruned: the kept-entry masks, set at the end of the train part.
    self.pruned = tf.Variable(False, trainable=False, name='pruned')
    self.prune_masks = {}
    if self.method == 'pruned':
      self.prune_masks = {
          side: tf.Variable(tf.ones_like(self.core.embeddings[side].table(0)),
                            trainable=False, name=f'{side}_prune_mask')
          for side in SIDES}
      self.apply_prune_masks = tf.function(self._apply_prune_masks)
    self.agents = {}
    # Rows the policy network runs on per side: every (frequency bucket,
    # size) the stream can reach (`agent.distinct_states`); ESAPN only.
    self.policy_buckets = {}
    if self.search:
      self.policy_buckets = {
          side: agent_lib.buckets_in_use(
              int(np.bincount(getattr(s, side), minlength=1).max()),
              cfg.search.num_frequency_buckets)
          for side in SIDES}
      for side in SIDES:
        self.agents[side] = agent_lib.make_agent(
            len(sizes), cfg.search.policy_learning_rate,
            cfg.search.num_frequency_buckets,
            cfg.search.policy_hidden_units,
            normalize_returns=cfg.search.normalize_returns,
            name=f'{side}_policy')
    self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name='step')
    # reward='paired' (search/trials.py): shadow-row pools, their Adam, the
    # memory cost / budget (search/rewards.py) and the per-state
    # diagnostics (search/diagnostics.py), per side.
    self.pools, self.memory_costs, self.diagnostics = {}, {}, {}
    self.reward_scales = {}
    self.shadow_optimizer = None
    if self.paired:
      sc = cfg.search
      for side in SIDES:
        emb = self.core.embeddings[side]
        self.pools[side] = trials.TrialPool(emb, sc.trial_slots,
                                            name=f'{side}_trials')
        self.memory_costs[side] = rewards_lib.MemoryCost(
            emb.num_ids, sizes,
            float(np.sum(np.asarray(sizes)[emb.size_index.numpy()])),
            sc.memory_cost, sc.memory_budget, sc.memory_cost_step,
            name=f'{side}_memory_cost')
        self.reward_scales[side] = rewards_lib.RewardScale(
            name=f'{side}_reward_scale')
      self.shadow_optimizer = lazy_adam.LazyAdam(
          [self.pools[side].rows for side in SIDES], cfg.model.learning_rate,
          name='shadow_adam')
    if self.search:
      for side in SIDES:
        d = diagnostics_lib.PolicyDiagnostics(
            cfg.search.num_frequency_buckets, len(sizes),
            name=f'{side}_diagnostics')
        d.initial_probability.assign(diagnostics_lib.enlarge_probability(
            self.agents[side], d.states()))
        self.diagnostics[side] = d
    # Examples the run learns from (the pace of the memory budget).
    self.learned_examples = (s.num_examples
                             if cfg.train.test_mode == 'prequential'
                             else s.num_train)
    # Where the run is and what it has counted (restored on resume).
    self.position = tf.Variable(0, dtype=tf.int64, trainable=False,
                                name='position')  # examples done
    self.metric_sums = tf.Variable(tf.zeros([2, 3], tf.float64),
                                   trainable=False, name='metric_sums')
    self.bucket_sums = tf.Variable(
        tf.zeros([2, 3, cfg.search.num_frequency_buckets], tf.float64),
        trainable=False, name='bucket_sums')
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
    # No AutoGraph: these steps have no tensor-dependent Python control
    # flow, and converting the TF-Agents code they call took ~5 of the ~7 s
    # of tracing (BUILD_NOTES.md, "Speed").
    self.policy_update = tf.function(self._policy_update,
                                     input_signature=signature,
                                     autograph=False)
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

  # ------------------------------------------------------------ one step
  def learn(self, batch: environment.Batch) -> Dict[str, tf.Tensor]:
    """`_learn` on `batch`: one XLA program for full batches.

    Args:
      batch: a stream batch (`stream.make_dataset`), eager tensors.

    Returns:
      `_learn`'s outputs.
    """
    if (self._learn_compiled is not None and
        int(batch['user'].shape[0]) == self.cfg.train.batch_size):
      return self._learn_compiled(batch)
    return self._learn_graph(batch)

  def _policy_update(self, prev: environment.Batch) -> Dict[str, tf.Tensor]:
    """Step 1: REINFORCE on the previous batch, per side."""
    obs = self.core.observe(prev)
    actions = {side: self._sample(side, obs[side]) for side in SIDES}
    rewards, weights = self.core.rewards(prev, actions)
    stats = {}
    for side in SIDES:
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
                     self.step * 2 + SIDES.index(side)])
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
          one_step_episodes(observation, action, reward),
          weights=tf.expand_dims(weight, 1)).loss

  def _learn(self, batch: environment.Batch) -> Dict[str, tf.Tensor]:
    """Actions, enlargement and one recommender step on `batch`.

    DARTS and AutoEmb: the recommender step under the current soft weights
    (`soft_search.py`; the trainer takes their architecture step first).

    Reward 'tentative' (DESIGN.md §3 as written): the greedy policies act.
    Reward 'next_appearance': the collect policies sample (REINFORCE needs
    on-policy samples), one decision per id at its last copy in the batch;
    after the recommender step, the decisions that this batch's first copies
    resolve are rewarded and each agent takes one REINFORCE step.
    """
    core = self.core
    if self.soft:
      out = core.train_step(batch)
      self.step.assign_add(1)
      return out
    if self.paired:
      out = self._learn_paired(batch)
      self.step.assign_add(1)
      return out
    obs = core.observe(batch)
    enlarge, actions, deciding, history_means = {}, {}, {}, {}
    for side in SIDES:
      ids = batch[side]
      if not self.search:
        enlarge[side] = tf.zeros_like(ids, tf.bool)
        continue
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
                              tf.equal(actions[side], agent_lib.ENLARGE)),
          core.embeddings[side].num_ids)
    # Inlined: compiled with the rest of the step by `learn`'s XLA program.
    out = core._train_step(  # pylint: disable=protected-access
        batch, enlarge['user'], enlarge['item'])
    if self.search and self.next_appearance:
      for side in SIDES:
        observation, action, reward, weight = core.pending_experience(
            side, batch, out['loss'], history_means[side])
        loss = self._train_policy(side, observation, action, reward,
                                  weight)
        n = tf.maximum(tf.reduce_sum(weight), 1.0)
        out[f'{side}_reward'] = tf.reduce_sum(reward * weight) / n
        out[f'{side}_policy_loss'] = loss
        core.record_decisions(side, batch[side], obs[side], actions[side],
                              deciding[side])
    self.step.assign_add(1)
    return out

  def _learn_paired(self, batch: environment.Batch) -> Dict[str, tf.Tensor]:
    """reward='paired' (`search/trials.py`): one step on `batch`.

    1. Score the batch with real and shadow rows (before learning).
    2. Per side, trials with `trial_length` scored appearances resolve:
       REINFORCE on a sampled action with reward `b - lambda * added / d_max`
       for enlarging and 0 for keeping the size; the greedy action decides,
       within the memory budget, and an enlarged id adopts its shadow row;
       slots are freed, new trials start, and lambda takes its dual-ascent
       step (`search/rewards.py`). 3. The shadows take their Adam step.
    4. One recommender step (no further size changes).
    """
    sc = self.cfg.search
    trial = trials.score(self.model, self.pools, batch)
    obs = self.core.observe(batch)
    progress = (tf.cast(self.position, tf.float32) +
                tf.cast(tf.shape(batch['user'])[0], tf.float32)) / float(
                    self.learned_examples)
    out = {}
    for side in SIDES:
      pool, cost = self.pools[side], self.memory_costs[side]
      ids = batch[side]
      in_trial, slot = trial[side]
      appearances = tf.gather(pool.appearances, slot)
      resolving = tf.logical_and(in_trial, appearances >= sc.trial_length)
      decide = tf.logical_and(resolving, trials.last_in_slot(
          batch[f'{side}_frequency'], slot, pool.capacity + 1))
      benefit = (tf.gather(pool.benefit_sum, slot) /
                 tf.cast(tf.maximum(appearances, 1), tf.float32))
      size = obs[side]['size_index']
      logits = self._policy_logits(side, obs[side])
      sampled = self._sample(side, obs[side], logits)
      greedy = tf.argmax(logits, -1, output_type=tf.int32)
      reward = tf.where(tf.equal(sampled, agent_lib.ENLARGE),
                        benefit - cost.penalty(size), 0.0)
      weight = tf.cast(decide, tf.float32)
      scale = self.reward_scales[side]
      scale.update(benefit, weight)
      loss = self._train_policy(side, obs[side], sampled,
                                reward / scale.rms(), weight)
      self.diagnostics[side].record(obs[side], sampled, reward, benefit,
                                    weight)
      wants = tf.logical_and(decide, tf.equal(greedy, agent_lib.ENLARGE))
      allowed = cost.allow(wants, size, progress)
      cost.record(allowed, size)
      cost.update(progress, tf.reduce_sum(
          tf.where(wants, cost.added_dims(size), 0.0)), scale.rms())
      chosen = tf.logical_and(
          in_trial, trials.per_slot_any(allowed, slot, pool.capacity + 1))
      trials.adopt(pool, self.optimizer, self.shadow_optimizer, ids, slot,
                   chosen)
      trials.free(pool, slot, resolving)
      trials.start(pool, self.shadow_optimizer, ids, self.step,
                   sc.trial_timeout_steps)
      n = tf.maximum(tf.reduce_sum(weight), 1.0)
      out[f'{side}_reward'] = tf.reduce_sum(reward * weight) / n
      out[f'{side}_benefit'] = tf.reduce_sum(benefit * weight) / n
      out[f'{side}_decisions'] = tf.reduce_sum(weight)
      out[f'{side}_policy_loss'] = loss
      out[f'{side}_enlarged'] = chosen
      out[f'{side}_memory_cost'] = cost.cost + 0.0
      out[f'{side}_memory_ratio'] = cost.ratio()
    trials.train_shadows(self.model, self.pools, batch,
                         self.shadow_optimizer)
    no = tf.zeros_like(batch['user'], tf.bool)
    step = self.core._train_step(  # pylint: disable=protected-access
        batch, no, no)
    out.update(loss=step['loss'], correct=step['correct'])
    return out

  # --------------------------------------------------------- summaries
  def write_summaries(self, out, stats, test: Optional[Dict[str, float]]):
    step = self.step
    tf.summary.scalar('train/loss', tf.reduce_mean(out['loss']), step=step)
    tf.summary.scalar('train/accuracy', tf.reduce_mean(out['correct']),
                      step=step)
    for side in SIDES:
      emb = self.core.embeddings[side]
      tf.summary.scalar(f'embedding/{side}_mean_size',
                        tf.reduce_mean(self.dims_per_id(side)), step=step)
      tf.summary.histogram(f'embedding/{side}_size_index', emb.size_index,
                           step=step)
      if f'{side}_enlarged' in out:
        tf.summary.scalar(
            f'policy/{side}_fraction_enlarged',
            tf.reduce_mean(tf.cast(out[f'{side}_enlarged'], tf.float32)),
            step=step)
      if stats:
        tf.summary.scalar(f'policy/{side}_mean_reward',
                          stats[f'{side}_reward'], step=step)
        tf.summary.scalar(f'policy/{side}_loss',
                          stats[f'{side}_policy_loss'], step=step)
      for key in ('benefit', 'decisions', 'memory_cost', 'memory_ratio'):
        if f'{side}_{key}' in stats:
          tf.summary.scalar(f'policy/{side}_{key}', stats[f'{side}_{key}'],
                            step=step)
      if side in self.diagnostics:
        # P(enlarge) per (frequency bucket, size) state as an image: rows
        # are log2 frequency buckets, columns sizes, white = 1.
        d = self.diagnostics[side]
        p = diagnostics_lib.enlarge_probability(self.agents[side],
                                                d.states())
        grid = tf.reshape(p, [d.num_buckets, d.num_sizes])
        grid = grid[:self.policy_buckets[side]]
        tf.summary.image(f'policy/{side}_p_enlarge',
                         grid[tf.newaxis, :, :, tf.newaxis], step=step)
    if test:
      for k, v in test.items():
        tf.summary.scalar(f'test/{k}', v, step=step)

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
    position = int(self.position)
    sums = self.metric_sums.numpy()  # rows: train, test; (n, loss, hits)
    buckets = outputs.FrequencyBuckets(cfg.search.num_frequency_buckets)
    for i, side in enumerate(SIDES):
      buckets.sums[side] = self.bucket_sums[i].numpy()
    prev = None
    needs_prev = self.soft or (self.search and not self.next_appearance
                               and not self.paired)
    if position and needs_prev:
      # The batch before `position` (batches start every `bs` examples from
      # the start of each part).
      part_start = s.num_train if position > s.num_train else 0
      lo = part_start + (position - part_start - 1) // bs * bs
      prev = next(iter(stream_lib.make_dataset(s, lo, position, bs)))
    progress.done = position
    with writer.as_default():
      for phase, lo, hi in (('train', 0, s.num_train),
                            ('test', s.num_train, s.num_examples)):
        if position >= hi:
          continue
        if phase == 'test' and self.prune_masks and not bool(self.pruned):
          self.prune()
        phase_start = time.perf_counter()
        # `position` is a batch boundary, so the batches from it are the
        # ones an uninterrupted run sees.
        for batch in stream_lib.make_dataset(s, max(lo, position), hi, bs):
          self._step(batch, phase, sums, buckets, prev, progress)
          prev = batch
          if on_step is not None:
            on_step()
        if phase == 'train':
          self.train_seconds.assign_add(time.perf_counter() - phase_start)
        progress.update(0, phase, _means(sums[int(phase == 'test')]), force=True)
      writer.flush()

    def summary(row):
      count, loss, correct = row
      return {'examples': int(count),
              'loss': float(loss / count) if count else float('nan'),
              'accuracy': float(correct / count) if count else float('nan')}

    seconds = float(self.train_seconds)
    return {'train': summary(sums[0]), 'test': summary(sums[1]),
            'per_frequency': buckets,
            'train_examples_per_second':
                s.num_train / seconds if seconds else 0.0}

  def _step(self, batch, phase, sums, buckets, prev, progress) -> None:
    """One batch: test scoring first (test part), then learning."""
    cfg = self.cfg
    n = int(batch['user'].shape[0])
    learn = phase == 'train' or cfg.train.test_mode == 'prequential'
    test_metrics = None
    if phase == 'test':
      ev = self.core.evaluate(batch)
      loss, correct = ev['loss'].numpy(), ev['correct'].numpy()
      sums[1] += (n, loss.sum(), correct.sum())
      for side in SIDES:
        buckets.add(side, batch[f'{side}_frequency'].numpy(), loss, correct)
      test_metrics = _means(sums[1])
    stats = {}
    if learn:
      if (self.search and not self.next_appearance and not self.paired and
          prev is not None):
        stats = self.policy_update(prev)
      if self.soft and prev is not None:
        self.core.architecture_step(prev)
      out = self.learn(batch)
      if bool(self.pruned):
        self.apply_prune_masks(batch)
      if self.search and (self.next_appearance or self.paired):
        stats = out
      if phase == 'train':
        loss = out['loss'].numpy()
        if not np.all(np.isfinite(loss)):
          raise errors.TrainingError(
              f'non-finite training loss at step {int(self.step)}; the last '
              'good checkpoint is kept; lower --learning_rate or check the '
              'data')
        sums[0] += (n, loss.sum(), out['correct'].numpy().sum())
      if int(self.step) % cfg.train.summary_every == 0:
        self.write_summaries(out, stats, test_metrics)
    self.position.assign_add(n)
    self.metric_sums.assign(sums)
    self.bucket_sums.assign(np.stack([buckets.sums[side] for side in SIDES]))
    progress.update(n, phase, _means(sums[int(phase == 'test')]))

  # ----------------------------------------------------------- pruning
  def prune(self) -> None:
    """pruned: keeps each side's largest-magnitude table entries.

    Budget: `round(prune_<side>_fraction * num_ids * d_max)` entries
    (`baselines.kept_entries`; `d_max`, the largest candidate, is the
    memory table's FIXED reference, so the fraction is the memory ratio the
    pruned model ends with), met exactly; the other entries are set to 0
    and stay 0 while the test part keeps learning (`apply_prune_masks`).
    """
    fractions = {'user': self.cfg.search.prune_user_fraction,
                 'item': self.cfg.search.prune_item_fraction}
    reference = self.cfg.model.candidate_sizes[-1]
    for side in SIDES:
      emb = self.core.embeddings[side]  # one size: table 0
      table = emb.table(0)
      num_ids, _ = table.shape
      mask = baselines.prune_mask(
          table.numpy(),
          baselines.kept_entries(fractions[side], num_ids, reference))
      self.prune_masks[side].assign(mask)
      emb.assign_table(0, table * mask)
    self.pruned.assign(True)

  def _apply_prune_masks(self, batch: environment.Batch) -> None:
    """Zeroes again the pruned entries of the rows a step touched."""
    for side in SIDES:
      table = self.core.embeddings[side].table_variable  # one size: table 0
      ids = batch[side]
      mask = tf.gather(self.prune_masks[side], ids)
      table.scatter_nd_update(tf.expand_dims(ids, -1),
                              tf.gather(table, ids) * mask)

  def dims_per_id(self, side: str) -> tf.Tensor:
    """float32 `[num_ids]`: the embedding dimensions each id uses now.

    The size of its size index; for a pruned model, its kept entries.
    """
    if bool(self.pruned):
      return tf.reduce_sum(self.prune_masks[side], -1)
    return tf.gather(tf.constant(self.sizes, tf.float32),
                     self.core.embeddings[side].size_index)

  def memory(self) -> Dict[str, Any]:
    """The memory table per side (DESIGN.md §5; `outputs.memory_table`)."""
    reference = self.cfg.model.candidate_sizes[-1]
    if bool(self.pruned):
      return {side: baselines.pruned_memory_table(
          self.dims_per_id(side).numpy().astype('int64'),
          self.cfg.model.candidate_sizes, reference) for side in SIDES}
    return {side: outputs.memory_table(
        self.core.embeddings[side].size_index.numpy(), self.sizes, reference)
            for side in SIDES}

  def policy_table(self, max_bucket: int = 12) -> Dict[str, Any]:
    """P(enlarge) of each side's final policy on a (frequency, size) grid.

    Returns:
      `{side: {'frequency': [1, 2, 4, ...], 'probability': [[p per size
      index] per frequency]}}`; empty for methods without a policy.
    """
    table = {}
    frequencies = [2**b for b in range(max_bucket + 1)]
    n = len(self.sizes)
    f = tf.constant(np.repeat(frequencies, n), tf.int32)
    s = tf.constant(np.tile(np.arange(n), len(frequencies)), tf.int32)
    for side, agent in self.agents.items():
      dist = agent.collect_policy.distribution(
          agent_lib.first_time_step({'frequency': f, 'size_index': s})).action
      p = dist.probs_parameter().numpy()[:, agent_lib.ENLARGE]
      table[side] = {'frequency': frequencies,
                     'probability': np.round(p.reshape(-1, n), 4).tolist()}
    return table

  def policy_diagnostics(self) -> Dict[str, Any]:
    """Per side, the per-state table of `diagnostics.report`."""
    table = {}
    for side, d in self.diagnostics.items():
      final = diagnostics_lib.enlarge_probability(self.agents[side],
                                                  d.states()).numpy()
      table[side] = diagnostics_lib.report(d, final, self.sizes)
    return table

  def memory_budget(self) -> Dict[str, Any]:
    """The budget and the final lambda per side (results.json)."""
    return {side: float(c.cost) for side, c in self.memory_costs.items()}

  def checkpoint(self) -> tf.train.Checkpoint:
    parts = {'model': self.model, 'optimizer': self.optimizer,
             'core': self.core, 'step': self.step,
             'position': self.position, 'metric_sums': self.metric_sums,
             'bucket_sums': self.bucket_sums,
             'train_seconds': self.train_seconds, 'pruned': self.pruned,
             'user_vocab': self.vocab['user'],
             'item_vocab': self.vocab['item']}
    for side, agent in self.agents.items():
      parts[f'{side}_policy'] = agent
    for side, mask in self.prune_masks.items():
      parts[f'{side}_prune_mask'] = mask
    for side in self.pools:
      parts[f'{side}_trials'] = self.pools[side]
      parts[f'{side}_memory_cost'] = self.memory_costs[side]
      parts[f'{side}_reward_scale'] = self.reward_scales[side]
    for side, d in self.diagnostics.items():
      parts[f'{side}_diagnostics'] = d
    if self.shadow_optimizer is not None:
      parts['shadow_optimizer'] = self.shadow_optimizer
    return tf.train.Checkpoint(**parts)
