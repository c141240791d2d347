"""Tests for esapn_tf.distribute.local_cluster and bin/local_cluster.py.

The chief and the tasks are small fake Python scripts (no TensorFlow): the
tasks listen on their TF_CONFIG port and start a child of their own (which
must go with them), the chief records what it saw and which signal stopped
it. Every test checks that no process of the cluster is left.
"""

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time

from absl.testing import absltest
from absl.testing import parameterized

from esapn_tf import errors
from esapn_tf.distribute import local_cluster

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))

# A worker or ps task. $FAKE_STATE: folder for <type>-<index>.pids (its pid
# and its child's); $FAKE_DIE: the task ('worker:1') that exits 3 after 1 s.
_FAKE_TASK = """
import json, os, signal, socket, subprocess, sys, time
config = json.loads(os.environ['TF_CONFIG'])
job, index = config['task']['type'], config['task']['index']
port = int(config['cluster'][job][index].rsplit(':', 1)[1])
pids = [os.getpid()]
if os.environ.get('FAKE_GRANDCHILD', '1') == '1':
  pids.append(subprocess.Popen(
      [sys.executable, '-c', 'import time; time.sleep(600)']).pid)
with open(os.path.join(os.environ['FAKE_STATE'], f'{job}-{index}.pids'),
          'w') as f:
  f.write(' '.join(map(str, pids)))
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(('127.0.0.1', port))
server.listen()
print('env', os.environ.get('ESAPN_VERBOSE'), os.environ['GRPC_FAIL_FAST'],
      flush=True)
if os.environ.get('FAKE_DIE') == f'{job}:{index}':
  time.sleep(1)
  sys.exit(3)
time.sleep(600)
"""

# The chief (also run as the `python` of the default chief command). It
# writes chief.json (its TF_CONFIG, argv, pid), and on SIGTERM or SIGINT the
# signal's name to chief-signal, then exits 130 as bin/train.py does.
# $FAKE_CHIEF: 'exit<n>' (exit n at once), 'sleep', or 'stubborn' (sleeps,
# ignores SIGTERM).
_FAKE_CHIEF = """
import json, os, signal, sys, time
state = os.environ['FAKE_STATE']
mode = os.environ['FAKE_CHIEF']

def on_signal(signum, frame):
  with open(os.path.join(state, 'chief-signal'), 'w') as f:
    f.write(signal.Signals(signum).name)
  if mode != 'stubborn':
    sys.exit(130)

signal.signal(signal.SIGTERM, on_signal)
signal.signal(signal.SIGINT, on_signal)
seen = {'tf_config': json.loads(os.environ['TF_CONFIG']), 'argv': sys.argv,
        'pid': os.getpid(), 'esapn_verbose': os.environ.get('ESAPN_VERBOSE'),
        'grpc_fail_fast': os.environ.get('GRPC_FAIL_FAST')}
with open(os.path.join(state, 'chief.json.tmp'), 'w') as f:
  json.dump(seen, f)
os.replace(os.path.join(state, 'chief.json.tmp'),
           os.path.join(state, 'chief.json'))
if mode.startswith('exit'):
  sys.exit(int(mode[4:]))
for _ in range(600):
  time.sleep(0.1)
"""


def _alive(pid: int) -> bool:
  """Whether `pid` runs (a zombie has exited: it only waits to be reaped)."""
  try:
    with open(f'/proc/{pid}/stat', encoding='utf-8') as f:
      return f.read().rsplit(')', 1)[1].split()[0] != 'Z'
  except FileNotFoundError:
    return False
  except OSError:  # No /proc.
    try:
      os.kill(pid, 0)
      return True
    except ProcessLookupError:
      return False


class LocalClusterTest(parameterized.TestCase):

  def setUp(self):
    super().setUp()
    root = tempfile.mkdtemp(prefix='local-cluster-test-')
    self.addCleanup(shutil.rmtree, root, ignore_errors=True)
    self.state, scripts = os.path.join(root, 'state'), root
    os.mkdir(self.state)
    self.log_dir = os.path.join(root, 'logs')
    self.fake_task = os.path.join(scripts, 'fake_task.py')
    self.fake_chief = os.path.join(scripts, 'fake_chief.py')
    for path, text in ((self.fake_task, _FAKE_TASK),
                       (self.fake_chief, _FAKE_CHIEF)):
      with open(path, 'w', encoding='utf-8') as f:
        f.write(f'#!{sys.executable}\n' + text)
      os.chmod(path, 0o755)
    env = absltest.mock.patch.dict(os.environ, {
        'FAKE_STATE': self.state, 'FAKE_CHIEF': 'sleep', 'FAKE_DIE': '',
        'ESAPN_VERBOSE': '1'})
    env.start()
    self.addCleanup(env.stop)
    self.addCleanup(self._kill_leftovers)

  def _pids(self):
    """{'worker-0': [task pid, its child's pid], ..., 'chief': [pid]}."""
    pids = {}
    for name in os.listdir(self.state):
      if name.endswith('.pids'):
        with open(os.path.join(self.state, name), encoding='utf-8') as f:
          pids[name[:-5]] = [int(p) for p in f.read().split()]
    chief = self._chief_seen()
    if chief:
      pids['chief'] = [chief['pid']]
    return pids

  def _chief_seen(self):
    path = os.path.join(self.state, 'chief.json')
    if not os.path.exists(path):
      return None
    with open(path, encoding='utf-8') as f:
      return json.load(f)

  def _chief_signal(self):
    path = os.path.join(self.state, 'chief-signal')
    if not os.path.exists(path):
      return None
    with open(path, encoding='utf-8') as f:
      return f.read()

  def _kill_leftovers(self):
    for pids in self._pids().values():
      for pid in pids:
        if _alive(pid):
          os.kill(pid, signal.SIGKILL)

  def assertNothingLeft(self, pids):
    left = {name: [p for p in group if _alive(p)]
            for name, group in pids.items()}
    self.assertEqual({name: p for name, p in left.items() if p}, {})

  def _run(self, num_workers=2, num_ps=2, **kwargs):
    out = io.StringIO()
    kwargs.setdefault('chief_command', [sys.executable, self.fake_chief])
    kwargs.setdefault('task_command', [sys.executable, self.fake_task])
    kwargs.setdefault('stop_timeout_seconds', 10.0)
    code = local_cluster.run_local_cluster(
        num_workers, num_ps, ['--flagfile=f.flags'], log_dir=self.log_dir,
        out=out, **kwargs)
    return code, out.getvalue()

  def test_chief_sees_the_cluster_and_its_status_is_returned(self):
    os.environ['FAKE_CHIEF'] = 'exit7'
    code, out = self._run(num_workers=2, num_ps=3)
    self.assertEqual(code, 7)
    seen = self._chief_seen()
    self.assertEqual(seen['tf_config']['task'], {'type': 'chief', 'index': 0})
    spec = seen['tf_config']['cluster']
    self.assertEqual({job: len(a) for job, a in spec.items()},
                     {'chief': 1, 'worker': 2, 'ps': 3})
    addresses = [a for job in spec.values() for a in job]
    self.assertLen(set(addresses), 6)
    for address in addresses:
      self.assertRegex(address, r'^localhost:\d+$')
    self.assertEqual(seen['esapn_verbose'], '1')
    self.assertEqual(seen['grpc_fail_fast'], 'use_caller')
    # One log per task, with what the task printed (its environment).
    self.assertCountEqual(os.listdir(self.log_dir), [
        'worker-0.log', 'worker-1.log', 'ps-0.log', 'ps-1.log', 'ps-2.log'])
    with open(os.path.join(self.log_dir, 'ps-2.log'), encoding='utf-8') as f:
      self.assertEqual(f.read(), 'env 1 use_caller\n')
    first = out.splitlines()[0]
    self.assertStartsWith(first, 'Local cluster: 2 workers (localhost ports ')
    self.assertEndsWith(first, f'; task logs in {self.log_dir}')
    pids = self._pids()
    self.assertLen(pids, 6)  # 5 tasks (each with a child) and the chief.
    self.assertNothingLeft(pids)
    self.assertIsNone(self._chief_signal())

  def test_default_chief_command_is_train_py(self):
    # The fake chief stands in for the interpreter: it records its argv.
    os.environ['FAKE_CHIEF'] = 'exit0'
    code, _ = self._run(num_workers=1, num_ps=1, chief_command=None,
                        python=self.fake_chief)
    self.assertEqual(code, 0)
    self.assertEqual(self._chief_seen()['argv'][1:], [
        os.path.join(REPO, 'bin', 'train.py'), '--flagfile=f.flags',
        '--distribution=parameter_server'])

  @parameterized.named_parameters(('worker', 'worker:1'), ('ps', 'ps:0'))
  def test_a_task_dies_while_the_chief_runs(self, task):
    os.environ['FAKE_DIE'] = task
    code, out = self._run()
    self.assertEqual(code, 1)
    pids = self._pids()
    job, index = task.split(':')
    lines = [l for l in out.splitlines() if 'died' in l]
    self.assertEqual(lines, [
        f'local_cluster: task {task} (pid {pids[f"{job}-{index}"][0]}) died '
        '(exit status 3) while the chief ran; stopping the cluster. Its log: '
        f'{os.path.join(self.log_dir, f"{job}-{index}.log")}; the run\'s '
        'last checkpoint is kept: run the same command again to resume.'])
    self.assertEqual(self._chief_signal(), 'SIGTERM')
    self.assertNothingLeft(pids)

  def test_a_chief_that_ignores_sigterm_is_killed(self):
    os.environ.update(FAKE_DIE='ps:1', FAKE_CHIEF='stubborn')
    code, _ = self._run(stop_timeout_seconds=0.5)
    self.assertEqual(code, 1)
    self.assertEqual(self._chief_signal(), 'SIGTERM')
    self.assertNothingLeft(self._pids())

  def test_a_task_that_fails_to_start_stops_the_run(self):
    code, out = self._run(task_command=[sys.executable, '-c',
                                        'import sys; sys.exit(4)'])
    self.assertEqual(code, 1)
    self.assertRegex(out, r'local_cluster: task \w+:\d \(pid \d+\) died \(exit '
                     r'status 4\) while starting; stopping the cluster')
    self.assertIsNone(self._chief_seen())  # Never started.

  def test_a_task_that_never_listens_stops_the_run(self):
    # Tasks that listen on no port, and record their pids.
    sleeper = ('import os, time\n'
               'open(os.path.join(os.environ["FAKE_STATE"], '
               'f"sleeper-{os.getpid()}.pids"), "w").write(str(os.getpid()))\n'
               'time.sleep(600)')
    code, out = self._run(task_command=[sys.executable, '-c', sleeper],
                          start_timeout_seconds=1.0)
    self.assertEqual(code, 1)
    self.assertIn('ps:0, ps:1, worker:0, worker:1 did not listen within 1 s; '
                  'stopping the cluster', out)
    self.assertIsNone(self._chief_seen())
    self.assertNothingLeft(self._pids())

  def _start_launcher(self, num_workers=1, num_ps=1):
    """run_local_cluster in a child Python; returns it once the chief runs."""
    code = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {REPO!r})
        from esapn_tf.distribute import local_cluster
        code = local_cluster.run_local_cluster(
            {num_workers}, {num_ps}, [], log_dir={self.log_dir!r},
            chief_command=[sys.executable, {self.fake_chief!r}],
            task_command=[sys.executable, {self.fake_task!r}],
            stop_timeout_seconds=10)
        print('returned', code)
        sys.exit(code)
        """)
    launcher = subprocess.Popen([sys.executable, '-c', code],
                                stdout=subprocess.PIPE, text=True)
    self.addCleanup(launcher.kill)
    deadline = time.monotonic() + 60
    while self._chief_seen() is None:
      self.assertIsNone(launcher.poll())
      self.assertLess(time.monotonic(), deadline)
      time.sleep(0.05)
    return launcher

  def test_ctrl_c_goes_to_the_chief_then_everything_stops(self):
    launcher = self._start_launcher(num_workers=2, num_ps=1)
    os.kill(launcher.pid, signal.SIGINT)
    out, _ = launcher.communicate(timeout=60)
    self.assertEqual(launcher.returncode, 130)
    self.assertEqual(out.splitlines()[-1], 'returned 130')
    self.assertIn('local_cluster: SIGINT: the chief writes a checkpoint', out)
    self.assertEqual(self._chief_signal(), 'SIGINT')
    pids = self._pids()
    self.assertLen(pids, 4)
    self.assertNothingLeft(pids)

  def test_sigterm_to_the_launcher_goes_to_the_chief(self):
    launcher = self._start_launcher()
    launcher.terminate()
    out, _ = launcher.communicate(timeout=60)
    self.assertEqual(launcher.returncode, 128 + signal.SIGTERM)
    self.assertEqual(out.splitlines()[-1], f'returned {128 + signal.SIGTERM}')
    self.assertEqual(self._chief_signal(), 'SIGTERM')
    self.assertNothingLeft(self._pids())

  @absltest.skipUnless(sys.platform.startswith('linux'), 'PR_SET_PDEATHSIG')
  def test_the_cluster_dies_with_a_killed_launcher(self):
    os.environ['FAKE_GRANDCHILD'] = '0'  # The tasks' own children would stay.
    launcher = self._start_launcher()
    launcher.kill()
    launcher.wait()
    pids = self._pids()
    self.assertLen(pids, 3)
    deadline = time.monotonic() + 30
    while any(_alive(p) for group in pids.values() for p in group):
      self.assertLess(time.monotonic(), deadline, pids)
      time.sleep(0.05)
    self.assertEqual(self._chief_signal(), 'SIGTERM')  # From the kernel.

  def test_describe_exit(self):
    self.assertEqual(local_cluster.describe_exit(3), 'exit status 3')
    self.assertEqual(local_cluster.describe_exit(-signal.SIGKILL),
                     'killed by SIGKILL')

  @parameterized.named_parameters(
      ('no_workers', 0, 1, [], r'^--workers=0 is too few: .* pass --workers=1 '
       'or more$'),
      ('no_ps', 1, 0, [], r'^--ps=0 is too few'),
      ('other_distribution', 1, 1, ['--distribution=mirrored'],
       r"^'--distribution=mirrored' is among the training flags, but the "
       r'local cluster runs the chief with --distribution=parameter_server: '
       r'leave it out$'))
  def test_bad_arguments(self, num_workers, num_ps, argv, message):
    with self.assertRaisesRegex(errors.UserInputError, message):
      local_cluster.run_local_cluster(num_workers, num_ps, argv,
                                      log_dir=self.log_dir)
    self.assertFalse(os.path.exists(self.log_dir))  # Nothing started.


class ScriptTest(absltest.TestCase):

  def test_zero_workers_is_one_line_and_status_2(self):
    proc = subprocess.run(
        [sys.executable, os.path.join(REPO, 'bin', 'local_cluster.py'),
         '--workers=0', '--', '--flagfile=f.flags'],
        capture_output=True, text=True, timeout=60, check=False)
    self.assertEqual(proc.returncode, 2)
    self.assertEqual(proc.stdout, '')
    self.assertEqual(proc.stderr, 'error: --workers=0 is too few: a '
                     'parameter-server cluster needs at least one; pass '
                     '--workers=1 or more\n')


if __name__ == '__main__':
  absltest.main()
