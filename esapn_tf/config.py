"""Experiment configuration: frozen dataclasses, validated on construction.

Every bad value raises `errors.UserInputError` naming the field, the value and
what is allowed, so that `bin/train.py` can print one line and exit 2.
The defaults are the paper's settings (DESIGN.md §2, §3, §5).
"""

import dataclasses
import json
import math
from typing import Any, Dict, Optional, Tuple

from esapn_tf import errors

TASKS = ('binary', 'multiclass')
ORDERS = ('random', 'chronological')
LOADERS = ('grouplens', 'tfds')
TEST_MODES = ('prequential', 'frozen')
METHODS = ('esapn', 'fixed', 'darts', 'autoemb', 'mde', 'pruned', 'random',
           'threshold')
# Methods whose model holds one table per candidate size (the others: one).
MULTI_SIZE_METHODS = ('esapn', 'darts', 'autoemb', 'mde', 'random',
                      'threshold')
# Methods that take --memory_budget (ESAPN adapts lambda; the others fit
# their one parameter in closed form, search/matching.py).
BUDGET_METHODS = ('esapn', 'mde', 'random', 'threshold')
# Methods that mix every size softly (DESIGN.md §4).
SOFT_METHODS = ('darts', 'autoemb')
# Methods whose ids, with --embedding_storage=pooled, are stored at their
# current size only (layers/pooled_embedding.py); the others keep the dense
# [num_ids, d_max] layout as reference points.
POOLED_METHODS = ('esapn',)
REWARDS = ('paired', 'next_appearance', 'paper')
# paired: what an enlargement's benefit counts under a memory price (search/
# rewards.py, `remaining_appearances`): the id's expected remaining
# appearances ('remaining') or its next appearance only ('next').
REWARD_HORIZONS = ('remaining', 'next')
# Older name of the paper's reward, still accepted.
REWARD_ALIASES = {'tentative': 'paper'}
DATASETS = ('synthetic', 'ml-100k', 'ml-1m', 'ml-20m', 'ml-25m', 'ml-latest',
            'ml-latest-small')
PAPER_CANDIDATE_SIZES = (2, 4, 8, 16, 64, 128)
# 'none': one process; 'parameter_server': tf.distribute's parameter-server
# training, the cluster read from TF_CONFIG (README, "Training on a cluster");
# 'mirrored': MirroredStrategy data parallelism over this machine's devices
# (README, "Training on several devices").
DISTRIBUTIONS = ('none', 'parameter_server', 'mirrored')
# Methods whose step runs under a distribution: their whole step is one
# tf.function over the batch (no eager work with the batch before it, no
# per-size slices of a sharded table).
DISTRIBUTED_METHODS = ('esapn', 'fixed', 'mde', 'random', 'threshold')


def _fail(field: str, value: Any, allowed: str) -> None:
  raise errors.UserInputError(f'{field}={value!r} is invalid: {allowed}.')


def _check_choice(field: str, value: str, choices: Tuple[str, ...]) -> None:
  if value not in choices:
    _fail(field, value, 'use one of ' + ', '.join(choices))


def _check_range(field: str, value: float, low: float, high: float,
                 low_open: bool = False) -> None:
  bad = (not math.isfinite(value) or value > high or
         (value <= low if low_open else value < low))
  if bad:
    bracket = '(' if low_open else '['
    _fail(field, value, f'it must lie in {bracket}{low}, {high}]')


@dataclasses.dataclass(frozen=True)
class DataConfig:
  """Which ratings to read and how to order them into a stream."""
  dataset: str = 'synthetic'  # 'synthetic' or a GroupLens name (DATASETS)
  data_dir: str = ''  # GroupLens .zip or folder; TFDS data_dir for loader=tfds
  loader: str = 'grouplens'  # 'grouplens' (files as downloaded) or 'tfds'
  tfds_download: bool = False  # loader=tfds: may TFDS download (internet)
  max_ratings: int = 0  # keep the first N ratings in file order; 0 = all
  synthetic_num_ratings: int = 100_000  # size of the synthetic set (ratings)
  order: str = 'random'  # 'random' (paper, seeded shuffle) or 'chronological'
  train_fraction: float = 0.8  # share of the stream in the train part, < 1

  def __post_init__(self):
    _check_choice('dataset', self.dataset, DATASETS)
    _check_choice('loader', self.loader, LOADERS)
    _check_choice('order', self.order, ORDERS)
    if self.dataset == 'synthetic' and self.data_dir:
      _fail('dataset', self.dataset,
            f'the synthetic set reads no files, but data_dir='
            f'{self.data_dir!r} is set; pass --dataset=<name> (one of '
            f'{", ".join(DATASETS[1:])}) or drop --data_dir')
    if not 0.0 < self.train_fraction < 1.0:
      _fail('train_fraction', self.train_fraction,
            'it must lie strictly between 0 and 1 (both parts non-empty)')
    if self.max_ratings < 0:
      _fail('max_ratings', self.max_ratings, 'use 0 (all) or a positive count')
    _check_range('synthetic_num_ratings', self.synthetic_num_ratings, 100,
                 50_000_000)


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """The recommender: embeddings and inference MLP (DESIGN.md §2)."""
  task: str = 'binary'  # 'binary' (sigmoid, MSE) or 'multiclass' (5-way CE)
  candidate_sizes: Tuple[int, ...] = PAPER_CANDIDATE_SIZES  # dims, increasing
  hidden_units: int = 512  # width of the inference MLP's hidden layer
  learning_rate: float = 1e-3  # for the recommender's Adam
  batch_norm_momentum: float = 0.9  # moving-average momentum of every BN
  embedding_storage: str = 'dense'  # 'dense': one [num_ids, d_max] table
  # and moments for every method; 'pooled': ESAPN stores each id at its
  # current size only (layers/pooled_embedding.py), other methods stay dense.
  # Dense by default for now: pooled costs 1.29x the CPU on ml-latest-small
  # (BUILD_NOTES.md, "Row pools")

  def __post_init__(self):
    _check_choice('task', self.task, TASKS)
    _check_choice('embedding_storage', self.embedding_storage,
                  ('dense', 'pooled'))
    sizes = tuple(self.candidate_sizes)
    object.__setattr__(self, 'candidate_sizes', sizes)
    if not sizes or any(int(d) != d or d < 1 for d in sizes):
      _fail('candidate_sizes', sizes, 'give positive integer dimensions')
    if any(b <= a for a, b in zip(sizes, sizes[1:])):
      _fail('candidate_sizes', sizes,
            'sizes must be strictly increasing, e.g. 2,4,8,16,64,128')
    _check_range('hidden_units', self.hidden_units, 1, 65536)
    _check_range('learning_rate', self.learning_rate, 0.0, 1.0, low_open=True)
    _check_range('batch_norm_momentum', self.batch_norm_momentum, 0.0, 1.0)

  @property
  def num_outputs(self) -> int:
    return 1 if self.task == 'binary' else 5


@dataclasses.dataclass(frozen=True)
class SearchConfig:
  """The size-search method and its policy (DESIGN.md §3)."""
  method: str = 'esapn'  # one of METHODS (README "Methods")
  fixed_size: int = 0  # dims for fixed and pruned; 0 = the largest candidate
  reward: str = 'paired'  # 'paired' (search/trials.py), 'next_appearance'
  # or 'paper' (DESIGN.md §3 as written; search/environment.py)
  reward_horizon: str = 'remaining'  # paired, under a memory price: one of
  # REWARD_HORIZONS
  policy_learning_rate: float = 1e-3  # for each policy's Adam; 0 = frozen
  trial_length: int = 1  # paired: appearances scored under both sizes
  trial_slots: int = 16384  # paired: shadow rows per side (pool capacity)
  trial_timeout_steps: int = 200  # paired: steps before a stale trial's
  # slot may be taken
  memory_cost: float = 0.0  # lambda: reward cost of d_max added dims, in
  # loss per example (search/rewards.py); with a budget, its start value
  memory_budget: float = 0.0  # share of FIXED-d_max dims per side, (0, 1];
  # 0 = no budget. Adapts lambda; a hard ceiling on live dims
  user_memory_budget: float = 0.0  # the budget of the user side; 0 = the
  # memory_budget (bin/compare.py matches ablations to ESAPN's per side)
  item_memory_budget: float = 0.0  # the same for the item side
  growth_probability: float = 0.5  # random: P(enlarge) per decision,
  # unless a budget sets it
  growth_threshold: float = 2.0  # threshold: count at which an id leaves
  # the smallest size, doubling per size, unless a budget sets it
  memory_cost_step: float = 0.1  # eta of lambda's dual ascent, in units
  # of the benefit's running RMS per step
  memory_catch_up: float = 1000.0  # budget: how far the enlarge cutoff on
  # the policy's logit difference drops per unit of relative lag behind the
  # pace (search/rewards.py); 0 = plain greedy decisions
  history_length: int = 5  # T: past losses averaged in the reward
  policy_hidden_units: int = 512  # width of the policy network
  frequency_embedding_dim: int = 32  # width of the frequency embedding
  num_frequency_buckets: int = 32  # log2 buckets; beyond the last: clamped
  normalize_returns: bool = False  # REINFORCE return normalisation per batch
  # Weight of TF-Agents' entropy bonus in the policy loss (0 = none, as in
  # the paper): keeps P(enlarge) away from exactly 0 or 1.
  entropy_regularization: float = 0.0
  architecture_learning_rate: float = 1e-3  # darts/autoemb: Adam lr of the
  # architecture weights (darts) or the controller (autoemb)
  controller_hidden_units: int = 64  # autoemb: width of the controller MLP
  mde_temperature: float = 0.5  # mde: alpha of d ~ frequency^alpha, in [0, 1]
  prune_user_fraction: float = 0.0  # pruned: share of FIXED's user
  # embedding entries kept (ESAPN's memory ratio in bin/compare.py), (0, 1]
  prune_item_fraction: float = 0.0  # pruned: the same for items

  def __post_init__(self):
    _check_choice('method', self.method, METHODS)
    if self.reward in REWARD_ALIASES:
      object.__setattr__(self, 'reward', REWARD_ALIASES[self.reward])
    _check_choice('reward', self.reward, REWARDS)
    _check_choice('reward_horizon', self.reward_horizon, REWARD_HORIZONS)
    _check_range('policy_learning_rate', self.policy_learning_rate, 0.0, 1.0)
    _check_range('entropy_regularization', self.entropy_regularization, 0.0,
                 100.0)
    _check_range('trial_length', self.trial_length, 1, 1000)
    _check_range('trial_slots', self.trial_slots, 1, 2**30)
    _check_range('trial_timeout_steps', self.trial_timeout_steps, 1, 1e9)
    _check_range('memory_cost', self.memory_cost, 0.0, 1e6)
    _check_range('memory_budget', self.memory_budget, 0.0, 1.0)
    _check_range('memory_cost_step', self.memory_cost_step, 0.0, 1e3)
    _check_range('memory_catch_up', self.memory_catch_up, 0.0, 1e6)
    _check_range('user_memory_budget', self.user_memory_budget, 0.0, 1.0)
    _check_range('item_memory_budget', self.item_memory_budget, 0.0, 1.0)
    _check_range('growth_probability', self.growth_probability, 0.0, 1.0)
    _check_range('growth_threshold', self.growth_threshold, 1.0, 1e12)
    if self.memory_cost and not (self.method == 'esapn' and
                                 self.reward == 'paired'):
      _fail('memory_cost', self.memory_cost,
            'a memory cost applies to --method=esapn with --reward=paired '
            'only')
    for field in ('memory_budget', 'user_memory_budget',
                  'item_memory_budget'):
      value = getattr(self, field)
      if value and (self.method not in BUDGET_METHODS or (
          self.method == 'esapn' and self.reward != 'paired')):
        _fail(field, value, 'a memory budget applies to --method='
              + ', '.join(BUDGET_METHODS) + ' (esapn with --reward=paired)')

    _check_range('num_frequency_buckets', self.num_frequency_buckets, 2, 64)
    if self.fixed_size < 0:
      _fail('fixed_size', self.fixed_size, 'use 0 (largest) or a candidate')
    _check_range('architecture_learning_rate', self.architecture_learning_rate,
                 0.0, 1.0, low_open=True)
    _check_range('controller_hidden_units', self.controller_hidden_units, 1,
                 65536)
    _check_range('mde_temperature', self.mde_temperature, 0.0, 1.0)
    for side in ('user', 'item'):
      field = f'prune_{side}_fraction'
      value = getattr(self, field)
      if self.method == 'pruned':
        if not (math.isfinite(value) and 0.0 < value <= 1.0):
          _fail(field, value, '--method=pruned needs the share of FIXED '
                'table entries to keep, in (0, 1] (bin/compare.py passes '
                "ESAPN's memory ratio)")
      elif value:
        _fail(field, value, 'it applies to --method=pruned only; leave it 0')

  def budget(self, side: str) -> float:
    """The memory budget of `side` ('user' or 'item'); 0 = none."""
    return getattr(self, f'{side}_memory_budget') or self.memory_budget


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """The loop: batches, seeds, evaluation, logging."""
  batch_size: int = 500  # examples per step
  seed: int = 0  # split, shuffle, initialisers and the policy's sampling
  test_mode: str = 'prequential'  # test-then-train, or 'frozen' (no learning)
  # XLA for the step: True, False, or None = decided from the train part's
  # length when the run starts (`jit.resolve_jit_compile`; config.json
  # records the choice).
  jit_compile: Optional[bool] = None
  deterministic: bool = False  # also enable TF op determinism
  checkpoint_every: int = 500  # steps between checkpoints; 0 = only at end
  summary_every: int = 10  # steps between TensorBoard scalars
  log_every_seconds: float = 10.0  # seconds between progress lines
  # Where the step runs: 'none' (this process), 'parameter_server'
  # (workers of a cluster from TF_CONFIG; per-id tables on the ps tasks) or
  # 'mirrored' (replicas on this machine's devices, the batch split).
  distribution: str = 'none'
  # Shards of every per-id table under 'parameter_server'; 0 = one per ps.
  num_shards: int = 0
  # Replicas under 'mirrored': the first N GPUs (0 = every GPU); without a
  # GPU, N logical CPU devices (0 = one).
  num_replicas: int = 0

  def __post_init__(self):
    if self.batch_size < 2:
      # One example per batch trains silently wrong: BatchNorm in training
      # mode maps it to the same vector whatever the ids (logit 0, no
      # gradient to the embeddings), and the paired reward compares pairs.
      _fail('batch_size', self.batch_size,
            'use 2 or more (BatchNorm in training mode and the paired '
            'reward need at least 2 examples per batch)')
    _check_range('batch_size', self.batch_size, 2, 1_000_000)
    if not 0 <= self.seed < 2**32:
      _fail('seed', self.seed, 'use an integer in [0, 2**32)')
    _check_choice('test_mode', self.test_mode, TEST_MODES)
    if self.checkpoint_every < 0:
      _fail('checkpoint_every', self.checkpoint_every,
            'use 0 (only at the end) or a number of steps')
    _check_range('summary_every', self.summary_every, 1, 1e9)
    if not (self.jit_compile is None or isinstance(self.jit_compile, bool)):
      _fail('jit_compile', self.jit_compile,
            'use true, false or auto (None: decided from the stream length)')
    _check_choice('distribution', self.distribution, DISTRIBUTIONS)
    _check_range('num_shards', self.num_shards, 0, 1_000_000)
    _check_range('num_replicas', self.num_replicas, 0, 1024)
    for field, needs in (('num_shards', 'parameter_server'),
                         ('num_replicas', 'mirrored')):
      if getattr(self, field) and self.distribution != needs:
        _fail(field, getattr(self, field),
              f'it applies to --distribution={needs} only; add that flag '
              f'or leave --{field} out')
    if self.distribution != 'none' and self.jit_compile:
      where = ('whose variables live on parameter servers'
               if self.distribution == 'parameter_server' else
               'that sums gradients over replicas')
      _fail('jit_compile', self.jit_compile,
            f'XLA cannot compile a step {where}; use --jit_compile=auto or '
            f'false with --distribution={self.distribution}')


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
  """Everything one run needs; written to `workdir/config.json` first."""
  data: DataConfig = DataConfig()
  model: ModelConfig = ModelConfig()
  search: SearchConfig = SearchConfig()
  train: TrainConfig = TrainConfig()

  def __post_init__(self):
    sizes = self.model.candidate_sizes
    if self.train.distribution != 'none':
      if self.search.method not in DISTRIBUTED_METHODS:
        _fail('method', self.search.method,
              f'--distribution={self.train.distribution} runs '
              f'{", ".join(DISTRIBUTED_METHODS)}; train '
              f'{self.search.method} with --distribution=none')
      if self.search.method == 'esapn' and self.search.reward == 'paper':
        _fail('reward', self.search.reward,
              'the paper\'s reward scores the batch before the current one '
              'in a separate eager step; use --reward=paired or '
              'next_appearance with --distribution='
              f'{self.train.distribution}')
      if self.model.embedding_storage != 'dense':
        _fail('embedding_storage', self.model.embedding_storage,
              'pooled rows are re-laid out between steps on one machine; '
              'use --embedding_storage=dense with --distribution='
              f'{self.train.distribution}')
    if self.search.method in ('fixed', 'pruned') and (
        self.search.fixed_size not in (0,) + sizes):
      _fail('fixed_size', self.search.fixed_size,
            f'use 0 or one of the candidate sizes {sizes}')
    if self.search.method == 'pruned':
      # The fractions are shares of FIXED-d_max memory (the memory table's
      # reference); a narrower table cannot hold more than d/d_max of it.
      limit = (self.search.fixed_size or sizes[-1]) / sizes[-1]
      for side in ('user', 'item'):
        value = getattr(self.search, f'prune_{side}_fraction')
        if value > limit:
          _fail(f'prune_{side}_fraction', value,
                f'it is a share of FIXED-{sizes[-1]} memory, and a '
                f'{self.search.fixed_size}-dim table holds at most {limit}')

  @property
  def embedding_sizes(self) -> Tuple[int, ...]:
    """The sizes the model's tables are built with (dimensions).

    ESAPN, DARTS, AutoEmb and MDE: every candidate size; FIXED and pruned:
    the one size `fixed_size` (0 = the largest candidate).
    """
    sizes = self.model.candidate_sizes
    if self.search.method not in MULTI_SIZE_METHODS:
      sizes = (self.search.fixed_size or sizes[-1],)
    return sizes

  @property
  def pooled_storage(self) -> bool:
    """Whether the model stores each id at its current size only.

    True for the `POOLED_METHODS` with `embedding_storage='pooled'`; the
    trainer and `serving/params.restore_run` both build from this, so a
    checkpoint is restored into the layout that wrote it.
    """
    return (self.search.method in POOLED_METHODS and
            self.model.embedding_storage == 'pooled')

  def to_dict(self) -> Dict[str, Any]:
    return dataclasses.asdict(self)

  def to_json(self) -> str:
    return json.dumps(self.to_dict(), indent=2, sort_keys=True)

  @classmethod
  def from_dict(cls, d: Dict[str, Any]) -> 'ExperimentConfig':
    """Inverse of `to_dict`; raises UserInputError on unknown fields."""
    parts = {}
    for name, klass in (('data', DataConfig), ('model', ModelConfig),
                        ('search', SearchConfig), ('train', TrainConfig)):
      values = dict(d.get(name, {}))
      known = {f.name for f in dataclasses.fields(klass)}
      unknown = sorted(set(values) - known)
      if unknown:
        raise errors.UserInputError(
            f'unknown {name} config fields {unknown}; known: {sorted(known)}')
      if 'candidate_sizes' in values:
        values['candidate_sizes'] = tuple(values['candidate_sizes'])
      parts[name] = klass(**values)
    return cls(**parts)
