"""The tf.distribute strategy of a run (`--distribution`), built from TF_CONFIG.

`'parameter_server'`: this process is the chief (the coordinator) of the
cluster in TF_CONFIG. `tf.distribute.ParameterServerStrategy` places every
variable created in its scope on the ps tasks: the per-id tables
(`sharding.per_id_tables`) split over `num_shards` shards with
`sharding.PerIdPartitioner`, round-robin over the ps tasks; every other
variable whole on one ps task. A `tf.distribute.coordinator.
ClusterCoordinator` schedules the step functions on the workers.

`'mirrored'`: `tf.distribute.MirroredStrategy` over this machine's devices
(`replica_devices`): every variable has one copy per device, and the step
splits each batch over the replicas (`mirrored`).
"""

import dataclasses
from typing import Optional, Tuple

import tensorflow as tf

from esapn_tf import config as config_lib
from esapn_tf import errors
from esapn_tf.distribute import cluster
from esapn_tf.distribute import sharding


@dataclasses.dataclass
class Distribution:
  """A run's strategy and, for parameter-server training, its coordinator
  (None for 'mirrored', whose steps run in this process)."""
  strategy: tf.distribute.Strategy
  coordinator: Optional[tf.distribute.coordinator.ClusterCoordinator]
  num_workers: int
  num_ps: int
  num_shards: int
  kind: str = 'parameter_server'
  devices: Tuple[str, ...] = ()


def replica_devices(num_replicas: int) -> Tuple[str, ...]:
  """The devices of a mirrored run: GPUs if there are any, else CPUs.

  With GPUs, the first `num_replicas` of them (0 = all). Without, the CPU
  is split into `num_replicas` logical devices (0 = one), which must happen
  before TensorFlow first runs an op.

  Args:
    num_replicas: `--num_replicas`.

  Returns:
    Logical device names, e.g. `('/device:CPU:0', '/device:CPU:1')`.

  Raises:
    errors.UserInputError: more replicas asked than there are GPUs, or the
      CPU cannot be split any more (TensorFlow already started).
  """
  gpus = tf.config.list_physical_devices('GPU')
  if gpus:
    if num_replicas > len(gpus):
      raise errors.UserInputError(
          f'--num_replicas={num_replicas} but this machine has {len(gpus)} '
          f'GPU(s); use --num_replicas=0 (every GPU) or at most {len(gpus)}')
    names = [d.name for d in tf.config.list_logical_devices('GPU')]
    return tuple(names[:num_replicas or len(names)])
  count = max(num_replicas, 1)
  cpu = tf.config.list_physical_devices('CPU')[0]
  current = tf.config.get_logical_device_configuration(cpu)
  if count > 1 and (current is None or len(current) != count):
    try:
      tf.config.set_logical_device_configuration(
          cpu, [tf.config.LogicalDeviceConfiguration()] * count)
    except RuntimeError as e:
      raise errors.UserInputError(
          f'cannot split the CPU into {count} devices once TensorFlow has '
          f'started ({e}); start a new process') from e
  names = [d.name for d in tf.config.list_logical_devices('CPU')]
  return tuple(names[:count])


def make(cfg: config_lib.ExperimentConfig,
         tf_config: cluster.TfConfig = None) -> Optional[Distribution]:
  """The `Distribution` of `cfg.train.distribution`, None for 'none'.

  Args:
    cfg: the experiment.
    tf_config: the cluster (JSON text or dict); None reads $TF_CONFIG.

  Returns:
    None, or the strategy and coordinator. Creating the coordinator connects
    to every worker and ps task.

  Raises:
    errors.UserInputError: TF_CONFIG missing or invalid, or its task is not
      the chief.
  """
  if cfg.train.distribution == 'none':
    return None
  if cfg.train.distribution == 'mirrored':
    devices = replica_devices(cfg.train.num_replicas)
    return Distribution(
        strategy=tf.distribute.MirroredStrategy(list(devices)),
        coordinator=None, num_workers=0, num_ps=0, num_shards=0,
        kind='mirrored', devices=devices)
  parsed = cluster.parse_chief_tf_config(tf_config)
  spec = tf.train.ClusterSpec(parsed['cluster'])
  # Creating the coordinator waits, without a word, until every task
  # answers: say so first (a task that is down or a mistyped address).
  print(f'Connecting to the cluster ({spec.num_tasks("worker")} worker(s), '
        f'{spec.num_tasks("ps")} ps task(s)); this waits until every task '
        'answers', flush=True)
  resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
      spec, task_type='chief', task_id=0, rpc_layer='grpc')
  num_ps = spec.num_tasks('ps')
  num_shards = cfg.train.num_shards or num_ps
  strategy = tf.distribute.ParameterServerStrategy(
      resolver, variable_partitioner=sharding.PerIdPartitioner(num_shards))
  coordinator = tf.distribute.coordinator.ClusterCoordinator(strategy)
  return Distribution(strategy=strategy, coordinator=coordinator,
                      num_workers=spec.num_tasks('worker'), num_ps=num_ps,
                      num_shards=num_shards)


def describe(distribution: Optional[Distribution], embeddings, optimizer,
             core) -> dict:
  """Where a run's steps ran and its per-id tables lived (results.json).

  Args:
    distribution: the run's `Distribution`, or None (one process).
    embeddings: `{'user', 'item'}` embedding layers (`table_variable`,
      `size_index`).
    optimizer: the `lazy_adam.LazyAdam` holding the tables' moments.
    core: the search core; its per-id state is listed when it has some
      (`search.state.PerIdState.per_id_variables`).

  Returns:
    `{'strategy': 'none'}`; for mirrored training the replicas' devices;
    for parameter-server training the numbers of
    workers, ps tasks and shards, and for each side's embedding rows, size
    index, Adam moments and per-id search state the device of every shard,
    e.g. `'/job:ps/replica:0/task:1/device:CPU:0'`.
  """
  if distribution is None:
    return {'strategy': 'none'}
  if distribution.kind == 'mirrored':
    return {'strategy': 'mirrored',
            'num_replicas': len(distribution.devices),
            'devices': list(distribution.devices)}
  tables = {}
  for side, layer in embeddings.items():
    m, v = optimizer.slots(layer.table_variable)
    named = [('embeddings', layer.table_variable),
             ('size_index', layer.size_index), ('adam_m', m), ('adam_v', v)]
    if hasattr(core, 'per_id_variables'):
      named += core.per_id_variables(side)
    for name, var in named:
      shards = var.variables if sharding.is_sharded(var) else [var]
      tables[f'{side}_{name}'] = [shard.device for shard in shards]
  return {'strategy': 'parameter_server',
          'num_workers': distribution.num_workers,
          'num_ps': distribution.num_ps,
          'num_shards': distribution.num_shards, 'per_id_tables': tables}

