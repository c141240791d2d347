"""Whether a run's step is compiled with XLA (`--jit_compile=auto`)."""

import dataclasses

from esapn_tf import config as config_lib

# `jit_compile=None` (auto) compiles the step with XLA from this many train
# examples on. Measured on the 2-core CPU machine (issue 14), ml-latest-small
# binary ESAPN: compiling the step costs ~12 CPU-seconds on an empty
# compilation cache (first step 16.6 s with XLA, 4.3 s without), far less
# with a warm one (`compile_cache`), and saves ~15 us per example in the
# steady state (graph/XLA step time ~1.3-1.5x for ESAPN, ~2x for FIXED).
# Break-even is then ~0.7M examples cold, ~0.15M warm: ml-latest-small
# (80,669 train examples) runs without XLA, ml-1m (0.8M) and the ml-20m-size
# stream (16M) with it.
JIT_MIN_TRAIN_EXAMPLES = 500_000


def resolve_jit_compile(cfg: config_lib.ExperimentConfig,
                        num_train: int) -> config_lib.ExperimentConfig:
  """`cfg` with `train.jit_compile` decided when it is None (auto).

  Args:
    cfg: the experiment; a True or False `jit_compile` is kept.
    num_train: examples in the stream's train part.

  Returns:
    `cfg`, or a copy whose `jit_compile` is
    `num_train >= JIT_MIN_TRAIN_EXAMPLES` (False under a distribution and
    with pooled storage).
  """
  if cfg.train.jit_compile is not None:
    return cfg
  # XLA cannot compile a step over parameter servers' variables. With
  # pooled storage XLA copies the arena and both moments at every step
  # (copy insertion around the arena's reads and in-place scatters): 40 ms
  # a step at 1M ids per side against 15 ms at 10,000, 255 ms at 10M; the
  # graph takes 25-34 ms at every size (BUILD_NOTES, "Ten million ids").
  jit = (num_train >= JIT_MIN_TRAIN_EXAMPLES and
         cfg.train.distribution == 'none' and not cfg.pooled_storage)
  return dataclasses.replace(cfg, train=dataclasses.replace(
      cfg.train, jit_compile=jit))
