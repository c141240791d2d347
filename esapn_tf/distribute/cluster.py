"""TF_CONFIG: reading it, writing it for local tasks, and serving a task.

A TensorFlow cluster is described to each of its processes by the
environment variable `TF_CONFIG`, a JSON object (the format of
`tf.distribute.cluster_resolver.TFConfigClusterResolver`):

    {"cluster": {"chief": ["host0:2222"],
                 "worker": ["host1:2222", "host2:2222"],
                 "ps": ["host3:2222", "host4:2222"]},
     "task": {"type": "worker", "index": 1}}

`cluster` maps each job to the `host:port` addresses of its tasks (the same
on every process); `task` names the process that reads it. For
parameter-server training (`tf.distribute.ParameterServerStrategy`) the
chief runs `bin/train.py --distribution=parameter_server` (the coordinator),
and every worker and ps task runs `bin/cluster_task.py`, which calls
`start_server`.

Nothing here imports TensorFlow at module level: a bad TF_CONFIG is reported
in well under a second (esapn_tf/startup.py). Only `start_server` imports it.
"""

import json
import os
import re
import signal
import socket
from typing import Any, Mapping, Sequence, Union

from esapn_tf import errors

TF_CONFIG_ENV = 'TF_CONFIG'
# TensorFlow's parameter-server guide sets GRPC_FAIL_FAST=use_caller on the
# coordinator and on every worker and ps task before TensorFlow starts: RPCs
# to a task that is gone then fail at once (and the coordinator can react)
# instead of waiting for it.
GRPC_FAIL_FAST_ENV = 'GRPC_FAIL_FAST'
GRPC_FAIL_FAST_VALUE = 'use_caller'
# Jobs of a parameter-server cluster; the chief is the coordinator.
PARAMETER_SERVER_JOBS = ('chief', 'worker', 'ps')
# The jobs whose tasks run a `tf.distribute.Server` (`start_server`).
SERVER_JOBS = ('worker', 'ps')
_CHIEF_COMMAND = 'bin/train.py --distribution=parameter_server'
_EXAMPLE = ('{"cluster": {"chief": ["host0:2222"], "worker": ["host1:2222"], '
            '"ps": ["host2:2222"]}, "task": {"type": "worker", "index": 0}}')
# host:port, the host a name, an IPv4 address or a bracketed IPv6 address.
_ADDRESS = re.compile(r'^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):([0-9]{1,5})$')

TfConfig = Union[str, Mapping[str, Any], None]


def set_grpc_fail_fast() -> None:
  """Sets `GRPC_FAIL_FAST=use_caller`; call before TensorFlow is imported.

  What TensorFlow's parameter-server guide asks of the coordinator and of
  every task. TensorFlow reads the variable when its gRPC runtime first
  needs it, so a process that imported TensorFlow and made RPCs already
  keeps the value it had.
  """
  os.environ[GRPC_FAIL_FAST_ENV] = GRPC_FAIL_FAST_VALUE


def _fail(problem: str, fix: str) -> errors.UserInputError:
  return errors.UserInputError(f'TF_CONFIG {problem}: {fix}')


def _load(text_or_env: TfConfig) -> Any:
  """The JSON value of `text_or_env`, or of $TF_CONFIG when it is None."""
  if isinstance(text_or_env, Mapping):
    return dict(text_or_env)
  text = text_or_env
  if text is None:
    text = os.environ.get(TF_CONFIG_ENV)
    if text is None or not text.strip():
      raise _fail('is not set', 'set it to the cluster\'s JSON, e.g. '
                  f"TF_CONFIG='{_EXAMPLE}', or start a cluster on this "
                  'machine with bin/local_cluster.py')
  try:
    return json.loads(text)
  except ValueError as e:
    raise _fail(f'is not JSON ({e.args[0] if e.args else e}) in '
                f'{errors.quote(text, 60)}',
                f'give a JSON object such as {_EXAMPLE}') from e


def _check_address(address: Any, job: str, index: int) -> None:
  text = address if isinstance(address, str) else json.dumps(address)
  match = _ADDRESS.match(text) if isinstance(address, str) else None
  if match is None or not 1 <= int(match.group(2)) <= 65535:
    raise _fail(f'address {errors.quote(text, 60)} of {job}:{index} is not '
                'host:port', 'write each address as a host name or IP and a '
                'port from 1 to 65535, e.g. "host1:2222"')


def _check_cluster(cluster: Any, parameter_server: bool) -> None:
  if not isinstance(cluster, dict) or not cluster:
    raise _fail('"cluster" is not a JSON object of jobs',
                'map each job to its list of addresses, e.g. "cluster": '
                '{"chief": ["host0:2222"], "worker": ["host1:2222"], '
                '"ps": ["host2:2222"]}')
  seen = {}
  for job, addresses in cluster.items():
    if (not isinstance(addresses, list) or not addresses):
      raise _fail(f'job {errors.quote(job, 30)} is not a non-empty list of '
                  'addresses', f'write it as "{errors.escape(job, 30)}": '
                  '["host:port", ...]')
    for index, address in enumerate(addresses):
      _check_address(address, job, index)
      if address in seen:
        raise _fail(f'address {errors.quote(address, 60)} is given to both '
                    f'{seen[address]} and {job}:{index}',
                    'give each task its own host:port')
      seen[address] = f'{job}:{index}'
  if not parameter_server:
    return
  for job in cluster:
    if job not in PARAMETER_SERVER_JOBS:
      raise _fail(f'cluster has a job {errors.quote(job, 30)}',
                  'parameter-server training knows only the jobs '
                  f'{", ".join(PARAMETER_SERVER_JOBS)}; remove it')
  for job in SERVER_JOBS:
    if job not in cluster:
      raise _fail(f'cluster has no "{job}" job',
                  'parameter-server training needs at least one worker and '
                  f'one ps task; add "{job}": ["host:port", ...]')
  if len(cluster.get('chief', ())) > 1:
    raise _fail(f'job "chief" has {len(cluster["chief"])} addresses',
                'a cluster has one chief (the coordinator); list one')


def _check_task(task: Any, cluster: dict) -> None:
  if not isinstance(task, dict) or 'type' not in task:
    raise _fail('"task" has no "type"', 'name this process\'s job and '
                'index, e.g. "task": {"type": "worker", "index": 0}')
  task_type, index = task['type'], task.get('index', 0)
  if task_type not in cluster:
    raise _fail(f'task type {errors.quote(str(task_type), 30)} is not a job '
                f'of its cluster ({", ".join(sorted(cluster))})',
                'set "task": {"type": ...} to one of them')
  if not isinstance(index, int) or isinstance(index, bool):
    raise _fail(f'task index {errors.escape(json.dumps(index), 30)} is not '
                'an integer', 'give "index" as a number, e.g. "index": 0')
  size = len(cluster[task_type])
  if not 0 <= index < size:
    raise _fail(f'task index {index} is out of range: job '
                f'"{task_type}" has {size} address{"es" * (size != 1)}',
                f'use an index from 0 to {size - 1}')


def parse_tf_config(text_or_env: TfConfig = None, *,
                    parameter_server: bool = True) -> dict:
  """Reads and checks a TF_CONFIG.

  Args:
    text_or_env: the JSON text, an already parsed dict, or None to read the
      environment variable `TF_CONFIG`.
    parameter_server: also check what parameter-server training needs: the
      jobs are among chief (at most one task), worker and ps, and there is a
      worker and a ps job.

  Returns:
    The TF_CONFIG as a dict: 'cluster' (job name -> list of 'host:port'
    str) and 'task' ({'type': str, 'index': int}; a missing index is 0, as
    in TensorFlow's resolver), and any other keys as given.

  Raises:
    errors.UserInputError: one line naming the problem and its fix: unset
      or not JSON, not an object, no 'cluster' or no 'task', a job that is
      not a non-empty list, an address that is not host:port or is used
      twice, a task type that is not a job of the cluster, a task index out
      of range, or (with `parameter_server`) no 'worker' or 'ps' job, an
      unknown job or several chiefs.
  """
  config = _load(text_or_env)
  if not isinstance(config, dict):
    raise _fail(f'is a JSON {type(config).__name__}, not an object',
                f'give an object such as {_EXAMPLE}')
  if 'cluster' not in config:
    raise _fail('has no "cluster"', 'add the addresses of every task, e.g. '
                '"cluster": {"chief": ["host0:2222"], "worker": '
                '["host1:2222"], "ps": ["host2:2222"]}')
  if 'task' not in config:
    raise _fail('has no "task"', 'name this process\'s job and index, e.g. '
                '"task": {"type": "worker", "index": 0}')
  _check_cluster(config['cluster'], parameter_server)
  _check_task(config['task'], config['cluster'])
  config = dict(config)
  config['task'] = dict(config['task'], index=config['task'].get('index', 0))
  return config


def free_ports(n: int) -> list[int]:
  """`n` distinct TCP ports free on 127.0.0.1 now.

  Each port is found by binding a socket to port 0 (the kernel picks one);
  the sockets are held until all are bound, so the ports differ, then
  closed. Another program may take a port before the task binds it: a task
  that cannot bind exits, and the local cluster reports it.

  Args:
    n: how many ports, >= 0.

  Returns:
    `n` distinct int port numbers.
  """
  sockets = []
  try:
    for _ in range(n):
      sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
      sockets.append(sock)
      sock.bind(('127.0.0.1', 0))
    return [sock.getsockname()[1] for sock in sockets]
  finally:
    for sock in sockets:
      sock.close()


def local_cluster_spec(num_workers: int, num_ps: int) -> dict:
  """A parameter-server cluster on this machine's loopback address.

  Args:
    num_workers: worker tasks, >= 1.
    num_ps: parameter-server tasks, >= 1.

  Returns:
    {'chief': [1 address], 'worker': [num_workers], 'ps': [num_ps]}, each
    address 'localhost:<free port>' and all ports distinct (`free_ports`).

  Raises:
    errors.UserInputError: `num_workers` or `num_ps` is below 1.
  """
  for name, value in (('workers', num_workers), ('ps', num_ps)):
    if not isinstance(value, int) or value < 1:
      raise errors.UserInputError(
          f'a local cluster needs at least 1 task of {name}, not {value!r}: '
          f'pass --{name}=1 or more')
  ports = [f'localhost:{p}' for p in free_ports(1 + num_workers + num_ps)]
  return {'chief': ports[:1], 'worker': ports[1:1 + num_workers],
          'ps': ports[1 + num_workers:]}


def tf_config_for(cluster: Mapping[str, Sequence[str]], task_type: str,
                  task_index: int) -> str:
  """The TF_CONFIG JSON text of one task of `cluster`.

  Args:
    cluster: job name -> list of 'host:port' addresses.
    task_type: the task's job, a key of `cluster`.
    task_index: the task's index in its job.

  Returns:
    JSON text: {"cluster": cluster, "task": {"type": ..., "index": ...}}.

  Raises:
    errors.UserInputError: the result would not pass `parse_tf_config`
      (without the parameter-server checks).
  """
  text = json.dumps({'cluster': {job: list(addresses)
                                 for job, addresses in cluster.items()},
                     'task': {'type': task_type, 'index': task_index}})
  parse_tf_config(text, parameter_server=False)
  return text


def _wait_for_signal(signums: Sequence[int]) -> int:
  """Blocks until one of `signums` arrives; returns its number.

  `tf.distribute.Server.join` cannot be interrupted (it waits in C++, where
  Python's signal handlers do not run), and TensorFlow's threads may be the
  ones that receive a signal. So the signal's own wake-up byte is waited
  for: `signal.set_wakeup_fd` writes each signal's number to a pipe from
  whichever thread catches it.
  """
  read_fd, write_fd = os.pipe()
  os.set_blocking(write_fd, False)
  received = []
  previous = {}
  try:
    for signum in signums:
      previous[signum] = signal.signal(
          signum, lambda signum, frame: received.append(signum))
    previous_fd = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    try:
      while not received:
        for byte in os.read(read_fd, 64):
          if byte in signums:
            return byte
    finally:
      signal.set_wakeup_fd(previous_fd)
    return received[0]
  finally:
    for signum, handler in previous.items():
      signal.signal(signum, handler)
    os.close(read_fd)
    os.close(write_fd)


def start_server(tf_config: TfConfig = None,
                 stop_signals: Sequence[int] = (signal.SIGTERM,
                                                signal.SIGINT)) -> int:
  """Serves this process's worker or ps task until a stop signal.

  Sets `GRPC_FAIL_FAST=use_caller` (TensorFlow's parameter-server guide),
  then starts `tf.distribute.Server(cluster_spec, job_name, task_index,
  protocol='grpc')`: the coordinator (the chief) then places variables on
  the ps tasks and runs steps on the workers through it. Prints one line
  when the server listens. Call `startup.import_tensorflow` before, to keep
  TensorFlow's start-up lines out.

  Args:
    tf_config: TF_CONFIG as JSON text or a parsed dict; None reads the
      environment variable.
    stop_signals: the signals that stop the wait (the server itself lives
      until the process exits: TensorFlow has no way to stop it).

  Returns:
    The number of the signal that ended the wait.

  Raises:
    errors.UserInputError: a bad TF_CONFIG (`parse_tf_config`), a task
      that is not a worker or ps task (the chief runs
      `bin/train.py --distribution=parameter_server` instead), or an
      address the server cannot listen on (a port in use).
  """
  config = parse_tf_config(tf_config)
  task_type, task_index = config['task']['type'], config['task']['index']
  if task_type not in SERVER_JOBS:
    raise errors.UserInputError(
        f'TF_CONFIG task is {task_type}:{task_index}, which does not run a '
        f'server: the chief is `{_CHIEF_COMMAND}` with this TF_CONFIG; '
        'bin/cluster_task.py serves worker and ps tasks only')
  set_grpc_fail_fast()
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  cluster_spec = tf.train.ClusterSpec(config['cluster'])
  address = config['cluster'][task_type][task_index]
  try:
    server = tf.distribute.Server(cluster_spec, job_name=task_type,
                                  task_index=task_index, protocol='grpc',
                                  start=True)
  except tf.errors.OpError as e:
    raise errors.UserInputError(
        f'{task_type}:{task_index} cannot serve on {address} '
        f'({e.message.splitlines()[0] if e.message else type(e).__name__}): '
        'is the port taken by another process (another task of this or '
        'another cluster)? Free it or give the task another address in '
        'TF_CONFIG') from e
  print(f'{task_type}:{task_index} serving on {address} ({server.target}, '
        f'pid {os.getpid()}); SIGTERM stops it', flush=True)
  return _wait_for_signal(tuple(stop_signals))


def parse_chief_tf_config(text_or_env: TfConfig = None) -> dict:
  """`parse_tf_config`, and the task must be the chief (`bin/train.py`).

  Raises:
    errors.UserInputError: an invalid TF_CONFIG, or one whose task is not
      `chief`.
  """
  if text_or_env is None and not os.environ.get(TF_CONFIG_ENV, '').strip():
    raise _fail('is not set', 'set it to the cluster\'s JSON with this '
                'process as the chief, e.g. TF_CONFIG=\''
                + _EXAMPLE.replace('"worker", "index"', '"chief", "index"')
                + '\', or start a cluster on this machine with '
                'bin/local_cluster.py')
  parsed = parse_tf_config(text_or_env)
  task = parsed['task']
  if task['type'] != 'chief':
    raise errors.UserInputError(
        f'TF_CONFIG names task {task["type"]}:{task.get("index", 0)}, but '
        f'{_CHIEF_COMMAND} runs the chief: give it task {{"type": "chief", '
        '"index": 0}, and start the workers and ps tasks with '
        'bin/cluster_task.py')
  return parsed
