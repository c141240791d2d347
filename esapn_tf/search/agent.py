"""The embedding-size policy and its REINFORCE agent, one per side (DESIGN.md §3).

Network: one-hot(log2 frequency bucket), the standardised log2 frequency and
one-hot(size index) -> Dense(512) -> tanh -> Dense(2) logits over
{0: unchanged, 1: enlarge} (`PolicyNetwork` says why it differs from the
paper's frequency embedding behind a BN). Enlarge is masked out at the
largest size. `learning_rate=0` freezes the policy: it is never trained.

Frequencies are bucketed on a log2 scale, `bucket = min(floor(log2 f),
num_buckets - 1)`, so any frequency, including ones far beyond what training
showed, maps to a valid bucket (clamped at the last one).
"""

import tensorflow as tf
from tf_agents.agents.reinforce import reinforce_agent
from tf_agents.networks import categorical_projection_network
from tf_agents.networks import network
from tf_agents.networks import utils as network_utils
from tf_agents.specs import array_spec
from tf_agents.specs import tensor_spec
from tf_agents.trajectories import time_step as ts
from tf_agents.trajectories import trajectory
from tf_agents.utils import nest_utils

UNCHANGED = 0
ENLARGE = 1
MAX_FREQUENCY = 2**31 - 1


def observation_spec(num_sizes: int):
  """Observation of one id: `{'frequency': int32 >= 1, 'size_index': int32}`.

  `frequency`: interactions of this id seen so far in the stream, 1 on first
  sight. `size_index`: its current candidate size index, `0..num_sizes-1`.
  """
  return {
      'frequency': array_spec.BoundedArraySpec(
          (), 'int32', minimum=1, maximum=MAX_FREQUENCY, name='frequency'),
      'size_index': array_spec.BoundedArraySpec(
          (), 'int32', minimum=0, maximum=num_sizes - 1, name='size_index'),
  }


def action_spec():
  """Action for one id: int32 0 (unchanged) or 1 (enlarge)."""
  return array_spec.BoundedArraySpec((), 'int32', minimum=0, maximum=1,
                                     name='action')


def first_time_step(observation) -> ts.TimeStep:
  """A batch of FIRST time steps for one-step decisions, graph friendly.

  (`ts.restart` needs a Python batch size; this reads it from the tensors.)

  Args:
    observation: `{'frequency': int32 [batch], 'size_index': int32 [batch]}`.
  """
  batch = tf.shape(observation['size_index'])[:1]
  return ts.TimeStep(step_type=tf.fill(batch, ts.StepType.FIRST),
                     reward=tf.zeros(batch), discount=tf.ones(batch),
                     observation=observation)


def frequency_bucket(frequency: tf.Tensor, num_buckets: int) -> tf.Tensor:
  """int32 bucket `min(floor(log2(max(f, 1))), num_buckets - 1)`.

  Exact for every int32 frequency (highest set bit, no float rounding):
  1 -> 0, 2..3 -> 1, 4..7 -> 2, ...; frequencies beyond the last bucket are
  clamped into it.
  """
  y = tf.maximum(tf.cast(frequency, tf.int32), 1)
  bucket = tf.zeros_like(y)
  for shift in (16, 8, 4, 2, 1):  # binary search for the highest set bit
    upper = tf.bitwise.right_shift(y, shift)
    has_upper = upper > 0
    y = tf.where(has_upper, upper, y)
    bucket = tf.where(has_upper, bucket + shift, bucket)
  return tf.minimum(bucket, num_buckets - 1)


# Standardisation of the policy's log2-frequency input: running
# frequencies of MovieLens ids span 1 to a few thousand, log2 0..12.
LOG2_FREQUENCY_MEAN = 4.0
LOG2_FREQUENCY_STD = 3.0


class PolicyNetwork(network.DistributionNetwork):
  """Maps an id's (frequency, size index) to a Categorical over 2 actions.

  Input features, each of magnitude about 1 so that frequency weighs as much
  as size: one-hot(log2 frequency bucket) `[num_buckets]`, the standardised
  log2 frequency `(floor(log2 f) - 4) / 3` `[1]` (lets the network
  generalise across buckets), and one-hot(size index) `[num_sizes]`; then
  Dense(hidden_units) -> tanh -> Dense(2) logits (TF-Agents'
  `CategoricalProjectionNetwork`), enlarge masked at the largest size.

  The paper's reference network (DESIGN.md §3) embeds the frequency (32
  wide) behind a batch normalisation. TF-Agents runs policies in inference
  mode, where that BN normalises with its moving statistics, which start at
  (0, 1) and barely move, so the small-initialised embedding reached the
  hidden layer about 20 times weaker than the one-hot size: the policy
  barely saw the frequency (issue 11). BUILD_NOTES.md, "A policy that
  learns".
  """

  def __init__(self,
               input_tensor_spec,
               output_action_spec,
               num_sizes: int,
               num_frequency_buckets: int = 32,
               hidden_units: int = 512,
               name: str = 'PolicyNetwork'):
    """Creates the network.

    Args:
      input_tensor_spec: `observation_spec(num_sizes)` as tensor specs.
      output_action_spec: `action_spec()` as a tensor spec.
      num_sizes: number of candidate sizes `n`.
      num_frequency_buckets: log2 buckets of the frequency one-hot.
      hidden_units: width of the hidden layer (512).
      name: network name.
    """
    projection = categorical_projection_network.CategoricalProjectionNetwork(
        output_action_spec)
    super().__init__(input_tensor_spec=input_tensor_spec, state_spec=(),
                     output_spec=projection.output_spec, name=name)
    self._num_sizes = num_sizes
    self._num_buckets = num_frequency_buckets
    self._hidden = tf.keras.layers.Dense(hidden_units, activation='tanh',
                                         name='hidden')
    self._projection = projection

  def call(self, observation, step_type=None, network_state=(),
           training=False):
    outer_rank = nest_utils.get_outer_rank(observation,
                                           self.input_tensor_spec)
    squash = network_utils.BatchSquash(outer_rank)
    frequency = squash.flatten(observation['frequency'])
    size_index = squash.flatten(observation['size_index'])
    bucket = frequency_bucket(frequency, self._num_buckets)
    # The bucket, floor(log2 f), stands for log2 f: the network must read
    # an id only through its (bucket, size) state (`distinct_states`).
    log2_frequency = tf.cast(bucket, tf.float32)
    x = tf.concat([
        tf.one_hot(bucket, self._num_buckets),
        tf.expand_dims((log2_frequency - LOG2_FREQUENCY_MEAN) /
                       LOG2_FREQUENCY_STD, -1),
        tf.one_hot(size_index, self._num_sizes),
    ], -1)
    x = squash.unflatten(self._hidden(x))
    can_enlarge = observation['size_index'] < self._num_sizes - 1
    mask = tf.stack([tf.ones_like(can_enlarge), can_enlarge], -1)
    distribution, _ = self._projection(x, outer_rank, training=training,
                                       mask=mask)
    return distribution, network_state


def make_agent(num_sizes: int,
               learning_rate: float = 1e-4,
               num_frequency_buckets: int = 32,
               hidden_units: int = 512,
               normalize_returns: bool = False,
               entropy_regularization: float = 0.0,
               name: str = 'policy') -> reinforce_agent.ReinforceAgent:
  """A `ReinforceAgent` for one side (users or items), initialised.

  REINFORCE (DESIGN.md §3): loss `-log pi(a|s) * R` averaged over the one-step
  episodes of a batch; Adam with `learning_rate` (1e-4 in the paper).

  Args:
    num_sizes: number of candidate sizes.
    learning_rate: Adam learning rate of the policy.
    num_frequency_buckets: log2 buckets of the frequency feature.
    hidden_units: width of the hidden layer.
    normalize_returns: whether TF-Agents standardises the returns of a batch.
    entropy_regularization: weight of the entropy bonus in the loss
      (`ReinforceAgent`'s; 0: none, the paper's REINFORCE).
    name: agent name (e.g. 'user_policy').

  Returns:
    The initialised agent; its `time_step_spec` has a scalar float32 reward.
  """
  obs_spec = tensor_spec.from_spec(observation_spec(num_sizes))
  act_spec = tensor_spec.from_spec(action_spec())
  time_step_spec = ts.time_step_spec(obs_spec)
  actor = PolicyNetwork(
      obs_spec, act_spec, num_sizes,
      num_frequency_buckets=num_frequency_buckets,
      hidden_units=hidden_units, name=f'{name}_network')
  # Each agent counts its own train steps (the default is the shared global
  # step, which would make two agents advance one counter).
  agent = reinforce_agent.ReinforceAgent(
      time_step_spec, act_spec, actor_network=actor,
      optimizer=tf.keras.optimizers.Adam(learning_rate),
      normalize_returns=normalize_returns,
      entropy_regularization=entropy_regularization or None,
      train_step_counter=tf.Variable(0, dtype=tf.int64, trainable=False,
                                     name=f'{name}_train_step'),
      name=name)
  agent.initialize()
  return agent


def buckets_in_use(max_frequency: int, num_buckets: int) -> int:
  """How many frequency buckets a stream can reach: `bucket(max) + 1`.

  Running frequencies never exceed an id's count in the stream, so buckets
  above `frequency_bucket(max_frequency)` stay empty; `distinct_states`
  need not give them rows.

  Args:
    max_frequency: the largest count of any id on the side (>= 0).
    num_buckets: the policy network's log2 frequency buckets.

  Returns:
    int in `1..num_buckets`.
  """
  bucket = int(frequency_bucket(tf.constant([max(int(max_frequency), 1)]),
                                num_buckets)[0])
  return bucket + 1


def distinct_states(observation, num_sizes: int, num_buckets: int,
                    action=None):
  """Groups a batch by what the policy network sees of each example.

  The network reads an example only through its (frequency bucket, size
  index), and TF-Agents evaluates it in inference mode (BN with moving
  statistics, BUILD_NOTES.md), so examples in one group get the same logits:
  the network need only run once per group. There is one group per possible
  state, `G = num_buckets * num_sizes` (times 2 with `action`), whether or
  not the batch has a member: static shapes, so the step compiles with XLA
  (BUILD_NOTES.md, "Speed"). Group `g` is the state
  `(bucket, size) = (g // num_sizes, g % num_sizes)` (key `2 * g + action`
  with actions).

  Args:
    observation: `{'frequency': int32 [batch], 'size_index': int32 [batch]}`.
    num_sizes: number of candidate sizes.
    num_buckets: log2 frequency buckets to give rows: the network's, or
      fewer when larger frequencies cannot occur (`buckets_in_use`);
      frequencies beyond the last bucket join it.
    action: optional int32 `[batch]` in {0, 1}; when given, groups are per
      (state, action).

  Returns:
    (group int32 `[batch]`, each example's group in `0..G-1`;
     the groups' observations, int32 `[G]` each: the largest member
     frequency (members share its bucket; 1 for a group without members) and
     the size index).
  """
  frequency = tf.cast(observation['frequency'], tf.int32)
  size_index = tf.cast(observation['size_index'], tf.int32)
  key = frequency_bucket(frequency, num_buckets) * num_sizes + size_index
  per_state = 1
  if action is not None:
    key = key * 2 + tf.cast(action, tf.int32)
    per_state = 2
  count = num_buckets * num_sizes * per_state
  largest = tf.math.unsorted_segment_max(frequency, key, count)
  return key, {
      'frequency': tf.maximum(largest, 1),
      'size_index': (tf.range(count) // per_state) % num_sizes,
  }


def grouped_rewards(observation, action, reward, weight, num_sizes: int,
                    num_buckets: int):
  """One weighted one-step episode per distinct (state, action) of a batch.

  REINFORCE's loss in TF-Agents (`ReinforceAgent.policy_gradient_loss`,
  returns = rewards for one-step episodes) is
  `-sum_i w_i R_i log pi(a_i | s_i) / B` over the `B` rows of the batch.
  Rows with the same (state, action) share `log pi`, so with `G` groups,
  group reward `R_g = sum_{i in g} w_i R_i / W_g` (the weighted mean,
  `W_g = sum_{i in g} w_i`) and group weight `W_g * G / B`, the same loss is
  `-sum_g (W_g G / B) R_g log pi_g / G`: identical up to float rounding, and
  the policy network runs on `G` rows instead of `B`. Not valid with
  `normalize_returns` (TF-Agents then standardises the rows' returns).

  Args:
    observation: `{'frequency', 'size_index'}` int32 `[batch]`.
    action: int32 `[batch]`.
    reward: float32 `[batch]`.
    weight: float32 `[batch]`, 0 for rows that are no training signal.
    num_sizes: number of candidate sizes.
    num_buckets: frequency buckets to give rows (`distinct_states`).

  Returns:
    (observation dict of int32 `[G]`, action int32 `[G]`, reward float32
     `[G]`, weight float32 `[G]`), `G = 2 * num_buckets * num_sizes`.
  """
  group, states = distinct_states(observation, num_sizes, num_buckets,
                                  action)
  count = tf.size(states['size_index'])
  total_weight = tf.math.unsorted_segment_sum(weight, group, count)
  weighted_reward = tf.math.unsorted_segment_sum(weight * reward, group,
                                                 count)
  mean_reward = tf.math.divide_no_nan(weighted_reward, total_weight)
  scale = (tf.cast(count, tf.float32) /
           tf.cast(tf.shape(action)[0], tf.float32))
  # Group g holds action g % 2; at the largest size, where enlarging is
  # masked out, action 0 (such groups have weight 0: log pi of a masked
  # action is not needed).
  group_action = tf.where(states['size_index'] < num_sizes - 1,
                          tf.range(count) % 2, 0)
  return states, group_action, mean_reward, total_weight * scale


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
