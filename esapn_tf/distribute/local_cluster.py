"""A whole parameter-server cluster on this machine, one process per task.

`run_local_cluster` picks free loopback ports (`cluster.local_cluster_spec`),
starts each ps and worker task (`bin/cluster_task.py`) with its TF_CONFIG,
waits until every task listens, then runs the chief
(`bin/train.py ... --distribution=parameter_server`) in the foreground and
watches them all:

* the chief exits: every task is stopped; its exit status is returned.
* a task exits while the chief runs: one line names it, the chief is sent
  SIGTERM (it writes a checkpoint and exits), every process is stopped, and
  1 is returned; the same command resumes from the checkpoint.
* Ctrl-C (SIGINT): forwarded to the chief (it writes a checkpoint), then
  everything is stopped and 130 is returned. SIGTERM and SIGHUP to the
  launcher are forwarded the same way (128 + the signal's number).

Each task runs in a process group of its own, which is what gets signalled,
so a task's child processes go with it, and Ctrl-C in a terminal reaches the
launcher only. On Linux the tasks also die with the launcher if it is killed
outright (SIGKILL: `PR_SET_PDEATHSIG`).
"""

import ctypes
import dataclasses
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import IO, Optional, Sequence

from esapn_tf import errors
from esapn_tf.distribute import cluster as cluster_lib

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
_POLL_SECONDS = 0.1  # between looks at the processes
_DISTRIBUTION_FLAG = '--distribution=parameter_server'
_PR_SET_PDEATHSIG = 1  # linux/prctl.h
# How long a group's other members may take to go after SIGKILL (they are
# not the launcher's children: it cannot wait for them), in seconds.
_GROUP_EXIT_SECONDS = 2.0


@dataclasses.dataclass
class _Task:
  name: str  # 'worker:0'
  port: int
  process: subprocess.Popen
  log_path: str


def _die_with_parent(signum: int):
  """A `preexec_fn`: the child gets `signum` when the launcher dies."""
  if not sys.platform.startswith('linux'):
    return None
  try:
    prctl = ctypes.CDLL(None, use_errno=True).prctl
  except (OSError, AttributeError):
    return None
  parent = os.getpid()

  def preexec():
    prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0)
    if os.getppid() != parent:  # The launcher died before prctl.
      os.kill(os.getpid(), signum)

  return preexec


def _start(command: Sequence[str], env: dict, log: Optional[IO],
           death_signal: int) -> subprocess.Popen:
  """Starts `command` in a new process group (its pid is the group id)."""
  return subprocess.Popen(
      list(command), env=env, process_group=0,
      stdin=subprocess.DEVNULL if log else None, stdout=log,
      stderr=subprocess.STDOUT if log else None,
      preexec_fn=_die_with_parent(death_signal))


def _signal_group(process: subprocess.Popen, signum: int) -> None:
  """Sends `signum` to `process`'s group (itself and its children)."""
  try:
    os.killpg(process.pid, signum)
  except (ProcessLookupError, PermissionError):
    pass


def _wait(process: subprocess.Popen, seconds: float) -> Optional[int]:
  try:
    return process.wait(timeout=max(seconds, 0.0))
  except subprocess.TimeoutExpired:
    return None


def _stop(processes: Sequence[subprocess.Popen], signum: int,
          timeout_seconds: float) -> None:
  """`signum` to each group, then SIGKILL to those left after the timeout.

  Groups whose leader exited already are signalled too, for children left
  in them. Returns when every process has exited and been reaped, and its
  group is empty (or after `_GROUP_EXIT_SECONDS` more). Ctrl-C during the
  wait sends SIGKILL at once (and is raised again after).
  """
  try:
    for process in processes:
      _signal_group(process, signum)
    deadline = time.monotonic() + timeout_seconds
    for process in processes:
      _wait(process, deadline - time.monotonic())
  finally:
    for process in processes:
      _signal_group(process, signal.SIGKILL)
      process.wait()
    deadline = time.monotonic() + _GROUP_EXIT_SECONDS
    for process in processes:
      while _group_exists(process.pid) and time.monotonic() < deadline:
        time.sleep(0.01)


def _group_exists(pgid: int) -> bool:
  """Whether process group `pgid` has a member that has not exited.

  A member that exited but waits to be reaped by its new parent (a zombie:
  init, or a container's first process, which may never reap it) does not
  count. Read from /proc; where there is none, zombies count.
  """
  try:
    os.killpg(pgid, 0)
  except (ProcessLookupError, PermissionError):
    return False
  try:
    pids = [name for name in os.listdir('/proc') if name.isdigit()]
  except OSError:
    return True
  for pid in pids:
    try:
      with open(f'/proc/{pid}/stat', 'rb') as f:
        # pid (comm) state ppid pgrp ...; comm may hold spaces and ')'.
        state, _, pgrp = f.read().rsplit(b')', 1)[1].split()[:3]
    except (OSError, IndexError, ValueError):
      continue
    if int(pgrp) == pgid and state != b'Z':
      return True
  return False


def describe_exit(returncode: int) -> str:
  """'exit status 3' or 'killed by SIGKILL', for a `Popen.returncode`."""
  if returncode >= 0:
    return f'exit status {returncode}'
  try:
    return f'killed by {signal.Signals(-returncode).name}'
  except ValueError:
    return f'killed by signal {-returncode}'


def _shell_status(returncode: int) -> int:
  """A `Popen.returncode` as a shell would report it (signal n -> 128 + n)."""
  return returncode if returncode >= 0 else 128 - returncode


def _listening(port: int) -> bool:
  try:
    with socket.create_connection(('127.0.0.1', port), timeout=0.5):
      return True
  except OSError:
    return False


def _dead_task(tasks: Sequence[_Task]) -> Optional[_Task]:
  for task in tasks:
    if task.process.poll() is not None:
      return task
  return None


def _death_line(task: _Task, during: str) -> str:
  return (f'local_cluster: task {task.name} (pid {task.process.pid}) died '
          f'({describe_exit(task.process.returncode)}) {during}; stopping '
          f'the cluster. Its log: {task.log_path}')


class _Stopped(Exception):
  """SIGTERM or SIGHUP reached the launcher."""

  def __init__(self, signum: int):
    super().__init__(signum)
    self.signum = signum


def _raise_stopped(signum, frame):
  del frame
  raise _Stopped(signum)


def _check_arguments(num_workers: int, num_ps: int,
                     train_argv: Sequence[str]) -> None:
  for name, value in (('workers', num_workers), ('ps', num_ps)):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
      raise errors.UserInputError(
          f'--{name}={value} is too few: a parameter-server cluster needs at '
          f'least one; pass --{name}=1 or more')
  for arg in train_argv:
    if (arg.startswith(('--distribution', '-distribution')) and
        arg.lstrip('-') != _DISTRIBUTION_FLAG.lstrip('-')):
      raise errors.UserInputError(
          f'{errors.quote(arg, 40)} is among the training flags, but the '
          f'local cluster runs the chief with {_DISTRIBUTION_FLAG}: '
          'leave it out')


def run_local_cluster(num_workers: int, num_ps: int,
                      train_argv: Sequence[str], *,
                      log_dir: Optional[str] = None,
                      python: str = sys.executable,
                      chief_command: Optional[Sequence[str]] = None,
                      task_command: Optional[Sequence[str]] = None,
                      stop_timeout_seconds: float = 30.0,
                      start_timeout_seconds: float = 600.0,
                      out: Optional[IO[str]] = None) -> int:
  """Runs a parameter-server training on a cluster of local processes.

  Every process gets this process's environment, plus its own `TF_CONFIG`
  and `GRPC_FAIL_FAST=use_caller` (TensorFlow's parameter-server guide); the
  tasks also get `PYTHONUNBUFFERED=1`, so their logs are current.

  Args:
    num_workers: worker tasks, >= 1.
    num_ps: parameter-server tasks, >= 1.
    train_argv: flags for bin/train.py (`--distribution=parameter_server` is
      added; any other --distribution is refused).
    log_dir: folder of the task logs `<type>-<index>.log` (stdout and
      stderr); None: a new temporary folder, kept after the run.
    python: the interpreter of the chief and the tasks.
    chief_command: the chief's whole command instead of
      `[python, bin/train.py, *train_argv, --distribution=parameter_server]`
      (tests); it inherits stdout and stderr.
    task_command: each task's command instead of
      `[python, bin/cluster_task.py]` (tests); it must listen on its
      TF_CONFIG port.
    stop_timeout_seconds: how long a process may take to exit after SIGTERM
      or SIGINT before it is sent SIGKILL, in seconds.
    start_timeout_seconds: how long the tasks may take to listen on their
      ports (importing TensorFlow) before the run is given up, in seconds.
    out: where the launcher's own lines go; None: sys.stdout.

  Returns:
    The chief's exit status (a shell's 128 + n when signal n killed it); 1
    when a task died or did not start; 130 after Ctrl-C (SIGINT); 128 + n
    after SIGTERM or SIGHUP (n) reached the launcher. No process of the
    cluster is left running in any case.

  Raises:
    errors.UserInputError: fewer than one worker or ps task, or a
      --distribution among `train_argv`.
  """
  out = out or sys.stdout
  _check_arguments(num_workers, num_ps, train_argv)
  spec = cluster_lib.local_cluster_spec(num_workers, num_ps)
  log_dir = log_dir or tempfile.mkdtemp(prefix='esapn-local-cluster-')
  os.makedirs(log_dir, exist_ok=True)
  ports = {job: [int(a.rsplit(':', 1)[1]) for a in addresses]
           for job, addresses in spec.items()}
  print(f'Local cluster: {num_workers} worker{"s" * (num_workers != 1)} '
        f'(localhost ports {",".join(map(str, ports["worker"]))}), {num_ps} '
        f'ps ({",".join(map(str, ports["ps"]))}), chief '
        f'({ports["chief"][0]}); task logs in {log_dir}', file=out,
        flush=True)
  env = dict(os.environ)
  env[cluster_lib.GRPC_FAIL_FAST_ENV] = cluster_lib.GRPC_FAIL_FAST_VALUE
  task_command = list(task_command or [
      python, os.path.join(_REPO, 'bin', 'cluster_task.py')])
  chief_command = list(chief_command or [
      python, os.path.join(_REPO, 'bin', 'train.py'), *train_argv,
      _DISTRIBUTION_FLAG])

  tasks, chief = [], None
  handlers = {}
  if sys.platform != 'win32':
    try:
      for signum in (signal.SIGTERM, signal.SIGHUP):
        handlers[signum] = signal.signal(signum, _raise_stopped)
    except ValueError:  # Not the main thread: no handlers of our own.
      pass
  try:
    for job in ('ps', 'worker'):
      for index, port in enumerate(ports[job]):
        log_path = os.path.join(log_dir, f'{job}-{index}.log')
        with open(log_path, 'wb') as log:
          task_env = dict(env, PYTHONUNBUFFERED='1',
                          TF_CONFIG=cluster_lib.tf_config_for(spec, job, index))
          tasks.append(_Task(f'{job}:{index}', port,
                             _start(task_command, task_env, log,
                                    signal.SIGKILL), log_path))
    if not _wait_until_listening(tasks, start_timeout_seconds, out):
      return 1
    chief = _start(chief_command,
                   dict(env, TF_CONFIG=cluster_lib.tf_config_for(
                       spec, 'chief', 0)), None, signal.SIGTERM)
    return _watch(chief, tasks, stop_timeout_seconds, out)
  except KeyboardInterrupt:
    return _forward(chief, signal.SIGINT, stop_timeout_seconds, out)
  except _Stopped as e:
    return _forward(chief, e.signum, stop_timeout_seconds, out)
  finally:
    try:
      if chief is not None:
        _stop([chief], signal.SIGTERM, stop_timeout_seconds)
      _stop([task.process for task in tasks], signal.SIGTERM,
            stop_timeout_seconds)
    finally:
      for signum, handler in handlers.items():
        signal.signal(signum, handler)


def _wait_until_listening(tasks: Sequence[_Task], timeout_seconds: float,
                          out: IO[str]) -> bool:
  """Whether every task listens on its port within the timeout."""
  deadline = time.monotonic() + timeout_seconds
  waiting = list(tasks)
  while waiting:
    dead = _dead_task(tasks)
    if dead is not None:
      print(_death_line(dead, 'while starting'), file=out, flush=True)
      return False
    waiting = [task for task in waiting if not _listening(task.port)]
    if waiting and time.monotonic() > deadline:
      print(f'local_cluster: {", ".join(t.name for t in waiting)} did not '
            f'listen within {timeout_seconds:g} s; stopping the cluster. '
            f'Logs: {os.path.dirname(waiting[0].log_path)}', file=out,
            flush=True)
      return False
    if waiting:
      time.sleep(_POLL_SECONDS)
  return True


def _watch(chief: subprocess.Popen, tasks: Sequence[_Task],
           stop_timeout_seconds: float, out: IO[str]) -> int:
  """Waits for the chief; on a task's death, stops the chief (SIGTERM)."""
  while True:
    returncode = chief.poll()
    if returncode is not None:
      return _shell_status(returncode)
    dead = _dead_task(tasks)
    if dead is not None:
      print(_death_line(dead, 'while the chief ran') + '; the run\'s last '
            'checkpoint is kept: run the same command again to resume.',
            file=out, flush=True)
      _stop([chief], signal.SIGTERM, stop_timeout_seconds)
      return 1
    time.sleep(_POLL_SECONDS)


def _forward(chief: Optional[subprocess.Popen], signum: int,
             stop_timeout_seconds: float, out: IO[str]) -> int:
  """Passes `signum` to the chief and waits for it (then the tasks stop)."""
  name = signal.Signals(signum).name
  if chief is not None and chief.poll() is None:
    print(f'local_cluster: {name}: the chief writes a checkpoint and stops '
          f'(up to {stop_timeout_seconds:g} s; Ctrl-C again kills it), then '
          'every task stops', file=out, flush=True)
    try:
      _stop([chief], signum, stop_timeout_seconds)
    except KeyboardInterrupt:
      print('local_cluster: killed the chief', file=out, flush=True)
  else:
    print(f'local_cluster: {name}: stopping every task', file=out,
          flush=True)
  return 128 + signum
