"""Trains ESAPN (or a baseline) on a MovieLens stream; see README.md.

  python bin/train.py --flagfile=configs/ml-latest-small-binary.flags \
      --data_dir=../shared/data/ml-latest-small.zip \
      --workdir=runs/ml-latest-small-binary

Kept short on purpose: flags -> `ExperimentConfig` -> `loop.run_experiment`.
Bad input prints one line and exits with status 2, before TensorFlow is
imported. TensorFlow's and Gym's start-up lines are kept out of the output
(`esapn_tf/startup.py`); `ESAPN_VERBOSE=1` or `-v 1` shows them.
"""

import os
import sys
import time

_PROCESS_START = time.perf_counter()
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

# No TensorFlow before the flags and the config are checked (startup.py).
from esapn_tf import config as config_lib  # noqa: E402
from esapn_tf import errors  # noqa: E402
from esapn_tf import flag_values  # noqa: E402
from esapn_tf import startup  # noqa: E402

_D = config_lib.DataConfig()
_M = config_lib.ModelConfig()
_S = config_lib.SearchConfig()
_T = config_lib.TrainConfig()

flags.DEFINE_string('workdir', 'runs/default', 'Output folder of the run.')
flags.DEFINE_string('export_dir', '',
                    'If set, export the trained model for TF Serving to '
                    '<export_dir>/<next version>/ (as bin/export.py does).')
flags.DEFINE_string('dataset', _D.dataset,
                    'synthetic or ' + ', '.join(config_lib.DATASETS[1:]) + '.')
flags.DEFINE_string('data_dir', _D.data_dir,
                    'GroupLens .zip or extracted folder (or TFDS data_dir).')
flags.DEFINE_string('loader', _D.loader, 'grouplens (files) or tfds.')
flags.DEFINE_bool('tfds_download', _D.tfds_download,
                  'With --loader=tfds: let TFDS download and prepare a '
                  'missing dataset (needs internet).')
flags.DEFINE_integer('max_ratings', _D.max_ratings,
                     'Keep the first N ratings in file order (0 = all).')
flags.DEFINE_integer('synthetic_num_ratings', _D.synthetic_num_ratings,
                     'Ratings generated for dataset=synthetic.')
flags.DEFINE_string('order', _D.order, 'random (paper) or chronological.')
flags.DEFINE_float('train_fraction', _D.train_fraction,
                   'Share of the stream in the train part.')
flags.DEFINE_string('task', _M.task, 'binary or multiclass.')
flags.DEFINE_list('candidate_sizes', [str(d) for d in _M.candidate_sizes],
                  'Strictly increasing embedding sizes (dimensions).')
flags.DEFINE_integer('hidden_units', _M.hidden_units, 'MLP hidden width.')
flags.DEFINE_float('learning_rate', _M.learning_rate, 'Recommender Adam lr.')
flags.DEFINE_enum('embedding_storage', _M.embedding_storage,
                  ['dense', 'pooled'],
                  'dense: one [num_ids, d_max] table and Adam moments per '
                  'side; pooled: ESAPN stores each id at its current size '
                  'only (training memory follows the live dims).')
flags.DEFINE_string('method', _S.method,
                    ', '.join(config_lib.METHODS) + ' (README "Methods").')
flags.DEFINE_integer('fixed_size', _S.fixed_size,
                     'Size for method=fixed or pruned (0 = largest '
                     'candidate).')
flags.DEFINE_string('reward', _S.reward,
                    'paired (default: shadow-row trials, search/trials.py), '
                    'next_appearance, or paper (DESIGN.md §3 as written); '
                    'see BUILD_NOTES.md.')
flags.DEFINE_string('reward_horizon', _S.reward_horizon,
                    'remaining or next. paired, under a memory price (a '
                    'budget or --memory_cost): the benefit of an '
                    'enlargement counts over the id\'s expected remaining '
                    'appearances (remaining) or at its next appearance '
                    'only (next).')
flags.DEFINE_float('policy_learning_rate', _S.policy_learning_rate,
                   'Policy Adam lr; 0 = frozen at the initial weights.')
flags.DEFINE_integer('trial_length', _S.trial_length,
                     'reward=paired: appearances an id is scored under its '
                     'size and the next before the policy decides.')
flags.DEFINE_integer('trial_slots', _S.trial_slots,
                     'reward=paired: shadow rows per side.')
flags.DEFINE_integer('trial_timeout_steps', _S.trial_timeout_steps,
                     'reward=paired: steps before a stale trial gives up '
                     'its slot.')
flags.DEFINE_float('memory_cost', _S.memory_cost,
                   'lambda: reward cost of d_max added dims (loss per '
                   'example); with --memory_budget, its start value.')
flags.DEFINE_float('memory_budget', _S.memory_budget,
                   'Share of FIXED-128 dims allowed per side, in (0, 1]; '
                   '0 = none. Adapts lambda; a hard ceiling.')
flags.DEFINE_float('user_memory_budget', _S.user_memory_budget,
                   'The user side\'s budget (0 = --memory_budget).')
flags.DEFINE_float('item_memory_budget', _S.item_memory_budget,
                   'The item side\'s budget (0 = --memory_budget).')
flags.DEFINE_float('growth_probability', _S.growth_probability,
                   'random: P(enlarge) per decision (a budget fits it).')
flags.DEFINE_float('growth_threshold', _S.growth_threshold,
                   'threshold: count to leave the smallest size, doubling '
                   'per size (a budget fits it).')
flags.DEFINE_float('memory_cost_step', _S.memory_cost_step,
                   'Step size of lambda\'s dual ascent under a budget.')
flags.DEFINE_float('memory_catch_up', _S.memory_catch_up,
                   'Under a budget: how far the enlarge cutoff on the '
                   'policy\'s logit difference drops per unit of relative '
                   'lag behind the pace (0 = plain greedy decisions).')
flags.DEFINE_integer('history_length', _S.history_length,
                     'T: past losses averaged in the reward.')
flags.DEFINE_bool('normalize_returns', _S.normalize_returns,
                  'Standardise REINFORCE returns per batch.')
flags.DEFINE_float('entropy_regularization', _S.entropy_regularization,
                   'Weight of the policies\' entropy bonus (TF-Agents\' '
                   'ReinforceAgent; 0 = none, as in the paper).')
flags.DEFINE_float('architecture_learning_rate',
                   _S.architecture_learning_rate,
                   'darts/autoemb: Adam lr of the architecture weights or '
                   'the controller.')
flags.DEFINE_integer('controller_hidden_units', _S.controller_hidden_units,
                     'autoemb: width of the controller MLP.')
flags.DEFINE_float('mde_temperature', _S.mde_temperature,
                   'mde: alpha in d ~ frequency^alpha, in [0, 1].')
flags.DEFINE_float('prune_user_fraction', _S.prune_user_fraction,
                   'pruned: share of the FIXED user table entries kept '
                   "(bin/compare.py passes ESAPN's memory ratio).")
flags.DEFINE_float('prune_item_fraction', _S.prune_item_fraction,
                   'pruned: the same for the item table.')
flags.DEFINE_integer('batch_size', _T.batch_size, 'Examples per step.')
flags.DEFINE_integer('seed', _T.seed, 'Seed of split, init and sampling.')
flags.DEFINE_string('test_mode', _T.test_mode, 'prequential or frozen.')


class _BoolOrAutoParser(flags.ArgumentParser):
  """true/false (also --flag, --noflag) or auto (None)."""

  def parse(self, argument):
    return flag_values.bool_or_auto(argument)

  def flag_type(self):
    return 'bool or auto'


flags.DEFINE_flag(flags.Flag(
    _BoolOrAutoParser(), flags.ArgumentSerializer(), 'jit_compile', 'auto',
    'XLA for the steps: auto (default: when the train part has at least '
    '500,000 examples, where compiling pays), true (--jit_compile) or '
    'false (--nojit_compile).', boolean=True))
flags.DEFINE_bool('compile_cache', True,
                  'Keep XLA\'s compiled programs in ~/.cache/esapn_tf/xla '
                  '($ESAPN_TF_COMPILE_CACHE), so that a second run of the '
                  'same shapes skips compiling.')
flags.DEFINE_bool('deterministic', _T.deterministic,
                  'Also enable TensorFlow op determinism.')
flags.DEFINE_integer('checkpoint_every', _T.checkpoint_every,
                     'Steps between checkpoints (0: only at the end).')
flags.DEFINE_bool('restart', False,
                  'Discard an interrupted run in --workdir instead of '
                  'resuming it (it is moved to previous/).')
flags.DEFINE_integer('summary_every', _T.summary_every,
                     'Steps between TensorBoard summaries.')
flags.DEFINE_enum('distribution', _T.distribution,
                  list(config_lib.DISTRIBUTIONS),
                  'none: this process trains. parameter_server: this process '
                  'is the chief of a cluster read from TF_CONFIG; the steps '
                  'run on its workers, the per-id tables are sharded over '
                  'its ps tasks (README, "Training on a cluster"; '
                  'bin/local_cluster.py starts one on localhost). '
                  'mirrored: MirroredStrategy over this machine\'s GPUs (or '
                  '--num_replicas logical CPU devices); each batch is split '
                  'over the replicas (README, "Training on several '
                  'devices").')
flags.DEFINE_integer('num_shards', _T.num_shards,
                     'With --distribution=parameter_server: shards per '
                     'per-id table (0 = one per ps task).')
flags.DEFINE_integer('num_replicas', _T.num_replicas,
                     'With --distribution=mirrored: the first N GPUs (0 = '
                     'all); on a machine without a GPU, N logical CPU '
                     'devices (0 = one).')
flags.DEFINE_float('log_every_seconds', _T.log_every_seconds,
                   'Seconds between progress lines.')
FLAGS = flags.FLAGS


def _dataset() -> str:
  """--dataset, or the GroupLens name of --data_dir when only it is given."""
  if FLAGS['dataset'].present or not FLAGS.data_dir:
    return FLAGS.dataset
  return flag_values.dataset_from_data_dir(FLAGS.data_dir)


def build_config() -> config_lib.ExperimentConfig:
  """Turns the flags into a validated `ExperimentConfig`."""
  try:
    sizes = tuple(int(d) for d in FLAGS.candidate_sizes)
  except ValueError as e:
    raise errors.UserInputError(
        f'--candidate_sizes={",".join(FLAGS.candidate_sizes)} is invalid: '
        'give integers, e.g. 2,4,8,16,64,128.') from e
  return config_lib.ExperimentConfig(
      data=config_lib.DataConfig(
          dataset=_dataset(), data_dir=FLAGS.data_dir,
          loader=FLAGS.loader, tfds_download=FLAGS.tfds_download,
          max_ratings=FLAGS.max_ratings,
          synthetic_num_ratings=FLAGS.synthetic_num_ratings,
          order=FLAGS.order, train_fraction=FLAGS.train_fraction),
      model=config_lib.ModelConfig(
          task=FLAGS.task, candidate_sizes=sizes,
          hidden_units=FLAGS.hidden_units,
          learning_rate=FLAGS.learning_rate,
          embedding_storage=FLAGS.embedding_storage),
      search=config_lib.SearchConfig(
          method=FLAGS.method, fixed_size=FLAGS.fixed_size,
          reward=FLAGS.reward,
          reward_horizon=FLAGS.reward_horizon,
          policy_learning_rate=FLAGS.policy_learning_rate,
          trial_length=FLAGS.trial_length, trial_slots=FLAGS.trial_slots,
          trial_timeout_steps=FLAGS.trial_timeout_steps,
          memory_cost=FLAGS.memory_cost, memory_budget=FLAGS.memory_budget,
          memory_cost_step=FLAGS.memory_cost_step,
          memory_catch_up=FLAGS.memory_catch_up,
          user_memory_budget=FLAGS.user_memory_budget,
          item_memory_budget=FLAGS.item_memory_budget,
          growth_probability=FLAGS.growth_probability,
          growth_threshold=FLAGS.growth_threshold,
          history_length=FLAGS.history_length,
          normalize_returns=FLAGS.normalize_returns,
          entropy_regularization=FLAGS.entropy_regularization,
          architecture_learning_rate=FLAGS.architecture_learning_rate,
          controller_hidden_units=FLAGS.controller_hidden_units,
          mde_temperature=FLAGS.mde_temperature,
          prune_user_fraction=FLAGS.prune_user_fraction,
          prune_item_fraction=FLAGS.prune_item_fraction),
      train=config_lib.TrainConfig(
          batch_size=FLAGS.batch_size, seed=FLAGS.seed,
          test_mode=FLAGS.test_mode, jit_compile=FLAGS.jit_compile,
          deterministic=FLAGS.deterministic,
          checkpoint_every=FLAGS.checkpoint_every,
          summary_every=FLAGS.summary_every,
          log_every_seconds=FLAGS.log_every_seconds,
          distribution=FLAGS.distribution, num_shards=FLAGS.num_shards,
          num_replicas=FLAGS.num_replicas))


def ignored_flag_notes(method: str):
  """'note: ...' lines for the given method-specific flags it ignores."""
  return flag_values.ignored_flag_notes(method, [
      name for name in flag_values.METHOD_FLAGS
      if FLAGS[name].present and FLAGS[name].value != FLAGS[name].default])


def start_tensorflow() -> None:
  """Imports TensorFlow quietly once the flags are checked (startup.py)."""
  startup.import_tensorflow(
      FLAGS.verbosity if FLAGS['verbosity'].present else None, agents=True)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  try:
    cfg = build_config()
    for note in ignored_flag_notes(cfg.search.method):
      print(note, file=sys.stderr)
    if cfg.train.distribution == 'parameter_server':
      # The cluster is checked before TensorFlow starts; gRPC fails fast on
      # a task that is gone (TF's parameter-server guide).
      from esapn_tf.distribute import cluster  # pylint: disable=g-import-not-at-top
      cluster.parse_chief_tf_config()
      cluster.set_grpc_fail_fast()
    # pylint: disable-next=g-import-not-at-top
    from esapn_tf.training import compile_cache  # no TensorFlow
    compile_cache.configure(enabled=FLAGS.compile_cache)  # before TF
    start_tensorflow()
    # pylint: disable-next=g-import-not-at-top
    from esapn_tf.training import loop
    if FLAGS.export_dir:  # checked before training, not after
      from esapn_tf.serving import export  # pylint: disable=g-import-not-at-top
      export.check_export_dir(FLAGS.export_dir)
    loop.run_experiment(cfg, FLAGS.workdir, process_start=_PROCESS_START,
                        restart=FLAGS.restart)
    if FLAGS.export_dir:
      print(export.summary_text(
          export.export_run(FLAGS.workdir, FLAGS.export_dir)), flush=True)
  except errors.UserInputError as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)
  except errors.TrainingError as e:
    print(f'error: training stopped: {e}', file=sys.stderr)
    _exit_after_checkpoint(1)
  except errors.RunInterrupted as e:
    print(f'interrupted: {e}', file=sys.stderr)
    _exit_after_checkpoint(130)
  except KeyboardInterrupt:  # before the run's own handler is installed
    print('interrupted before training started; nothing to resume',
          file=sys.stderr)
    sys.exit(130)


def _exit_after_checkpoint(code: int) -> None:
  """Exits with `code` once the run's checkpoint is written.

  A cluster's chief leaves without Python's teardown: there TensorFlow's
  coordinator waits for tasks that are gone, and after a worker died the
  chief hung for the launcher's whole stop timeout (30 s) after saving.
  """
  if FLAGS.distribution == 'parameter_server':
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # pylint: disable=protected-access
  sys.exit(code)


def parse_flags(argv):
  """absl flag parsing, with one `error:` line and exit 2 on bad flags."""
  try:
    return FLAGS(argv)
  except flags.Error as e:
    print(f'error: {e}; see --helpfull', file=sys.stderr)
    sys.exit(2)


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
