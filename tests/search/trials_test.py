"""Tests for the paired trials, the memory cost and budget, and a frozen policy.

`search/trials.py`, `search/rewards.py`, and `Trainer._learn_paired`, on a
small synthetic stream through the trainer's real step.
"""

import contextlib
import io

import numpy as np
import tensorflow as tf

from esapn_tf import config
from esapn_tf.data import stream
from esapn_tf.search import rewards
from esapn_tf.search import trials
from esapn_tf.training import trainer as trainer_lib

_BATCH = 100
_SIZES = (2, 4, 8, 16)


def _trainer(s, **search):
  tf.keras.utils.set_random_seed(0)
  cfg = config.ExperimentConfig(
      model=config.ModelConfig(candidate_sizes=_SIZES, hidden_units=16),
      search=config.SearchConfig(method='esapn', policy_hidden_units=16,
                                 **search),
      train=config.TrainConfig(batch_size=_BATCH, seed=0, jit_compile=False))
  return trainer_lib.Trainer(cfg, s)


def _ratio(t, side):
  """The side's memory ratio recomputed from the size indices."""
  emb = t.core.embeddings[side]
  dims = np.asarray(_SIZES)[emb.size_index.numpy()]
  return dims.sum() / (emb.num_ids * _SIZES[-1]), dims.sum()


class TrialsTest(tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.stream = stream.build_stream(
        stream.load_ratings('synthetic', synthetic_num_ratings=3000, seed=0),
        'binary', 'random', 0.8, 0)
    cls.batches = list(stream.make_dataset(cls.stream, 0, 20 * _BATCH,
                                           _BATCH))

  def _run(self, t, steps, each=None):
    for batch in self.batches[:steps]:
      t.learn(batch)
      t.position.assign_add(_BATCH)
      if each is not None:
        each(t)

  def test_fresh_shadow_scores_as_the_real_row_and_counts_nothing(self):
    t = _trainer(self.stream)
    batch = self.batches[0]
    t.learn(batch)  # starts trials for the ids of the first batch
    pool = t.method.pools['item']
    in_trial, slot = pool.trial_slot(batch['item'])
    self.assertTrue(np.all(in_trial.numpy()))  # 3,000 ratings: few items
    # After one shadow update the shadow has moved; before it (a fresh
    # start) it is the function-preserving lift: same lifted vector.
    t2 = _trainer(self.stream)
    ids = batch['item']
    emb = t2.core.embeddings['item']
    trials.start(t2.method.pools['item'], t2.method.shadow_optimizer, ids,
                 tf.constant(0, tf.int64), 10)
    _, slot2 = t2.method.pools['item'].trial_slot(ids)
    shadow = emb.lift_rows(tf.gather(t2.method.pools['item'].rows, slot2),
                           tf.gather(emb.size_index, ids) + 1)
    self.assertAllClose(shadow, emb.lift(ids), atol=1e-5)
    # Scoring a batch with fresh shadows counts no appearance.
    trials.score(t2.model, t2.method.pools, batch)
    self.assertEqual(int(tf.reduce_sum(t2.method.pools['item'].appearances)), 0)

  def test_enlarged_ids_adopt_their_shadow_rows(self):
    t = _trainer(self.stream, memory_cost=0.0)
    for agent in t.method.agents.values():  # a policy sure to enlarge
      kernel, bias = agent._actor_network._projection.weights  # pylint: disable=protected-access
      kernel.assign(tf.zeros_like(kernel))
      bias.assign([-20.0, 20.0])
    self._run(t, 2)
    batch = self.batches[2]
    pool = t.method.pools['item']
    emb = t.core.embeddings['item']
    in_trial, slot = pool.trial_slot(batch['item'])
    before = emb.size_index.numpy().copy()
    shadow = tf.gather(pool.rows, slot).numpy()
    out = t.learn(batch)
    enlarged = out['item_enlarged'].numpy()
    self.assertGreater(enlarged.sum(), 10)
    self.assertTrue(np.all(in_trial.numpy()[enlarged]))
    ids = batch['item'].numpy()
    self.assertAllEqual(emb.size_index.numpy()[ids[enlarged]],
                        before[ids[enlarged]] + 1)
    # The adopted row then took the recommender's Adam step on the batch:
    # within a few learning rates (1e-3 each entry) of the shadow.
    # Only the first d_s columns of a row are stored (pooled layout).
    rows = emb.gather_rows(ids[enlarged]).numpy()
    used = (np.arange(_SIZES[-1]) <
            np.asarray(_SIZES)[emb.size_index.numpy()[ids[enlarged]]][:, None])
    rows, shadow = rows * used, shadow[enlarged] * used
    self.assertAllClose(rows, shadow, atol=3e-3)
    self.assertGreater(np.abs(rows - shadow).max(), 0)

  def test_budget_is_a_ceiling_at_every_step(self):
    budget = 0.3
    seen = {'user': [], 'item': []}

    def check(t):
      for side in ('user', 'item'):
        ratio, dims = _ratio(t, side)
        seen[side].append(ratio)
        self.assertLessEqual(ratio, budget + 1e-6)
        self.assertAllClose(float(t.method.memory_costs[side].live_dims), dims)

    t = _trainer(self.stream, memory_budget=budget)
    self._run(t, 20, check)
    self.assertGreater(max(seen['item']), 0.2)  # it did spend the budget
    # The ablation: the same run without a budget goes past it.
    free = _trainer(self.stream)
    self._run(free, 20)
    self.assertGreater(max(_ratio(free, s)[0] for s in ('user', 'item')),
                       budget)

  def test_a_budget_out_of_reach_is_noted_with_its_bound(self):
    # Growing at every decision bounds the ratio (`_reachable_ratio`): on
    # this stream most items appear a few times, so 1.0 is out of reach,
    # while 0.05 is not.
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
      t = _trainer(self.stream, memory_budget=1.0)
    bound = t.method.reachable['item']
    self.assertBetween(bound, _SIZES[0] / _SIZES[-1], 0.99)
    self.assertIn(f'item memory budget 1 is out of reach on this stream: '
                  f'enlarging at every decision ends at {bound:.3f}',
                  err.getvalue())
    self.assertEqual(t.method.results()['memory_budget_reachable'],
                     t.method.reachable)
    self._run(t, 20)
    self.assertLessEqual(_ratio(t, 'item')[0], bound + 1e-6)
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
      low = _trainer(self.stream, memory_budget=0.05)
    self.assertNotIn('out of reach', err.getvalue())
    self.assertGreater(low.method.reachable['item'], 0.05)

  def test_frozen_policy_stays_bit_identical(self):
    frozen = _trainer(self.stream, policy_learning_rate=0.0)
    before = [v.numpy() for a in frozen.method.agents.values()
              for v in a.policy.variables()]
    self._run(frozen, 8)
    after = [v.numpy() for a in frozen.method.agents.values()
             for v in a.policy.variables()]
    for b, a in zip(before, after):
      self.assertAllEqual(b, a)
    decisions = sum(float(d.decisions.numpy().sum())
                    for d in frozen.method.diagnostics.values())
    self.assertGreater(decisions, 100)  # it decided; it did not learn
    # The ablation: the same run at a learning rate moves the weights.
    learning = _trainer(self.stream, policy_learning_rate=1e-3)
    self._run(learning, 8)
    moved = [v.numpy() for a in learning.method.agents.values()
             for v in a.policy.variables()]
    self.assertTrue(any(np.any(b != m) for b, m in zip(before, moved)))


class RewardsTest(tf.test.TestCase):

  def test_penalty_and_budget_known_answers(self):
    # Sizes (2, 4, 8): enlarging from index 0 adds 2 dims, from 1 adds 4,
    # at the largest size nothing. lambda = 0.8: penalty 0.8 * 2 / 8 = 0.2
    # and 0.8 * 4 / 8 = 0.4.
    cost = rewards.MemoryCost(10, (2, 4, 8), initial_dims=20.0,
                              memory_cost=0.8, memory_budget=0.5)
    k = tf.constant([0, 1, 2])
    self.assertAllClose(cost.penalty(k), [0.2, 0.4, 0.0])
    # Budget 0.5 of 10 * 8 = 40 dims, 20 live; at progress 1 the room is
    # 20. Wanted from sizes 0, 1, 1, 1 add 2, 4, 4, 4: running sums 2, 6,
    # 10, 14 <= 20, all fit; the last example does not ask.
    wants = tf.constant([True, True, True, True, False])
    sizes = tf.constant([0, 1, 1, 1, 0])
    self.assertAllEqual(cost.allow(wants, sizes, tf.constant(1.0)),
                        [True, True, True, True, False])
    self.assertAllEqual(
        cost.allow(tf.constant([True, True, True, True, True]),
                   tf.constant([1, 1, 1, 1, 1]), tf.constant(1.0)),
        [True, True, True, True, True])  # 5 x 4 = 20 fits exactly
    self.assertAllEqual(
        cost.allow(tf.constant([True] * 6), tf.constant([1] * 6),
                   tf.constant(1.0)),
        [True] * 5 + [False])  # the sixth would make 24 > 20
    # At progress 0 the pace allows the smallest ratio, 2/8: 20 dims, no
    # room at all.
    self.assertAllEqual(cost.allow(wants, sizes, tf.constant(0.0)),
                        [False] * 5)

  def test_dual_ascent_direction(self):
    cost = rewards.MemoryCost(10, (2, 4, 8), initial_dims=20.0,
                              memory_budget=0.5, step_size=1.0)
    # Wanting more than the room (20 dims at progress 1) raises lambda by
    # step * scale * tanh((100 - 20) / 20) ~ 0.1 * 0.9993.
    cost.update(tf.constant(1.0), tf.constant(100.0), tf.constant(0.1))
    self.assertAllClose(float(cost.cost), 0.1 * np.tanh(4.0), rtol=1e-5)
    # Wanting nothing lowers it by 0.1 * tanh(-1): it may go below 0.
    cost.update(tf.constant(1.0), tf.constant(0.0), tf.constant(0.1))
    cost.update(tf.constant(1.0), tf.constant(0.0), tf.constant(0.1))
    self.assertAllClose(float(cost.cost),
                        0.1 * np.tanh(4.0) - 0.2 * np.tanh(1.0), rtol=1e-5)
    self.assertLess(float(cost.cost), 0.0)
    # Without a budget lambda stays as set.
    fixed = rewards.MemoryCost(10, (2, 4, 8), 20.0, memory_cost=0.3)
    fixed.update(tf.constant(1.0), tf.constant(100.0), tf.constant(0.1))
    self.assertAllClose(float(fixed.cost), 0.3)

  def test_catch_up_cutoff_known_answers(self):
    # 10 ids, sizes (2, 4, 8): FIXED = 80 dims, smallest ratio 2/8 = 0.25.
    # Budget 0.5 at progress 1: pace 0.5; 20 live dims = ratio 0.25, a lag
    # of (0.5 - 0.25) / 0.5 = 0.5 of the pace: cutoff -1000 * 0.5.
    cost = rewards.MemoryCost(10, (2, 4, 8), initial_dims=20.0,
                              memory_budget=0.5, catch_up=1000.0)
    self.assertAllClose(float(cost.cutoff(tf.constant(1.0))), -500.0)
    # At progress 0.5 the pace is 0.375: lag (0.375 - 0.25) / 0.375.
    self.assertAllClose(float(cost.cutoff(tf.constant(0.5))),
                        -1000.0 * 0.125 / 0.375, rtol=1e-5)
    # On pace (progress 0) or ahead of it: 0, the plain greedy action.
    self.assertAllClose(float(cost.cutoff(tf.constant(0.0))), 0.0)
    cost.live_dims.assign(40.0)
    self.assertAllClose(float(cost.cutoff(tf.constant(1.0))), 0.0)
    # Without a budget, or with a gain of 0: 0.
    for c in (rewards.MemoryCost(10, (2, 4, 8), 20.0, catch_up=1000.0),
              rewards.MemoryCost(10, (2, 4, 8), 20.0, memory_budget=0.5)):
      self.assertAllClose(float(c.cutoff(tf.constant(1.0))), 0.0)

  def test_allow_gives_the_room_in_order_of_priority(self):
    # Budget 0.5 of 10 * 8 dims at progress 1: room 20. Six ids at size 1
    # want 4 dims each: five fit.
    cost = rewards.MemoryCost(10, (2, 4, 8), initial_dims=20.0,
                              memory_budget=0.5)
    wants = tf.constant([True, True, True, True, True, True, False])
    sizes = tf.constant([1, 1, 1, 1, 1, 1, 1])
    # Batch order: the first five (5 x 4 = 20) fit.
    self.assertAllEqual(cost.allow(wants, sizes, tf.constant(1.0)),
                        [True] * 5 + [False, False])
    # By priority: the five highest, ties in batch order; the unwanted
    # last row, though first by priority, takes nothing.
    priority = tf.constant([0.0, 3.0, -1.0, 3.0, 2.0, 5.0, 9.0])
    self.assertAllEqual(
        cost.allow(wants, sizes, tf.constant(1.0), priority),
        [True, True, False, True, True, True, False])

  def test_remaining_appearances_known_answers(self):
    # f * (1 - t) / t: 4 seen in the first quarter -> 12 more; at the end
    # none; at t = 0 the estimate uses t = 1e-3.
    self.assertAllClose(
        rewards.remaining_appearances(tf.constant([4, 1]),
                                      tf.constant(0.25)), [12.0, 3.0])
    self.assertAllClose(
        rewards.remaining_appearances(tf.constant([7]), tf.constant(1.0)),
        [0.0])
    self.assertAllClose(
        rewards.remaining_appearances(tf.constant([1]), tf.constant(0.0)),
        [999.0])

  def test_reward_scale_is_the_running_rms(self):
    scale = rewards.RewardScale(decay=0.5)
    # First batch: mean square of (3, 4) with weights (1, 1) = 12.5.
    scale.update(tf.constant([3.0, 4.0, 100.0]), tf.constant([1.0, 1.0, 0.0]))
    self.assertAllClose(float(scale.rms()), np.sqrt(12.5))
    # Then 0.5 * 12.5 + 0.5 * 1 = 6.75; an empty batch changes nothing.
    scale.update(tf.constant([1.0]), tf.constant([1.0]))
    scale.update(tf.constant([9.0]), tf.constant([0.0]))
    self.assertAllClose(float(scale.rms()), np.sqrt(6.75))


if __name__ == '__main__':
  tf.test.main()
