"""Parameter-server training end to end, as users run it (issue 13).

Every test starts a real localhost cluster with `bin/local_cluster.py`
(one process per task, loopback ports only) and trains ESAPN on a prefix of
ml-latest-small; the single-machine runs use `bin/train.py`.
"""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import unittest

import numpy as np

from tests import real_data

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
_ENV = dict(os.environ, TF_USE_LEGACY_KERAS='1', TF_CPP_MIN_LOG_LEVEL='2')
_FLAGS = ['--flagfile=configs/ml-latest-small-binary.flags']
# Metric difference allowed between a 1-worker, 1-ps cluster and one process
# on the same stream and seed (README, "Training on a cluster"): the same
# step on the same initial values, in the same order. (With several ps tasks
# each shard of a table draws its own initial values: another draw of the
# same training, not the same one.)
ONE_WORKER_TOLERANCE = 1e-6


def _train_flags(data: str, workdir: str, num_ratings: int, *extra):
  return _FLAGS + [f'--data_dir={data}', f'--workdir={workdir}',
                   f'--max_ratings={num_ratings}', '--nocompile_cache',
                   *extra]


def _local_cluster(workers, ps, log_dir, train_flags, **kwargs):
  return subprocess.Popen(
      [sys.executable, os.path.join(_REPO, 'bin', 'local_cluster.py'),
       f'--workers={workers}', f'--ps={ps}', f'--log_dir={log_dir}', '--'] +
      train_flags, cwd=_REPO, env=_ENV, stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT, text=True, **kwargs)


def _train(train_flags):
  return subprocess.run(
      [sys.executable, os.path.join(_REPO, 'bin', 'train.py')] + train_flags,
      cwd=_REPO, env=_ENV, capture_output=True, text=True, timeout=600,
      check=False)


def _results(workdir):
  with open(os.path.join(workdir, 'results.json')) as f:
    return json.load(f)


def _majority_accuracy(data: str, num_ratings: int) -> float:
  """The test part's accuracy of always answering its most common label."""
  # pylint: disable-next=g-import-not-at-top
  from esapn_tf.data import stream as stream_lib
  ratings = stream_lib.load_ratings('ml-latest-small', data, 'grouplens',
                                    num_ratings, 0, 0, False)
  s = stream_lib.build_stream(ratings, 'binary', 'random', 0.8, 0)
  labels = np.asarray(s.label[s.num_train:])
  positive = float(np.mean(labels))
  return max(positive, 1.0 - positive)


def _child_pids(pid):
  """Pids of the direct children of `pid` (Linux /proc)."""
  out = []
  for tid in os.listdir(f'/proc/{pid}/task'):
    with open(f'/proc/{pid}/task/{tid}/children') as f:
      out += [int(p) for p in f.read().split()]
  return out


def _task_pid(launcher_pid, task_type, index):
  """The pid of the launcher's child that serves task `task_type:index`."""
  for pid in _child_pids(launcher_pid):
    try:
      with open(f'/proc/{pid}/environ', 'rb') as f:
        env = dict(e.split(b'=', 1) for e in f.read().split(b'\0') if b'=' in e)
    except OSError:
      continue
    config = json.loads(env.get(b'TF_CONFIG', b'{}') or b'{}')
    task = config.get('task', {})
    if task.get('type') == task_type and task.get('index') == index:
      return pid
  return None


class ParameterServerTest(unittest.TestCase):

  def setUp(self):
    super().setUp()
    self.data = real_data.ml_latest_small_path(self)
    self.tmp = tempfile.mkdtemp()

  def _run_to_the_end(self, workers, ps, train_flags) -> str:
    """Runs a local cluster; asserts status 0; returns its output."""
    proc = _local_cluster(workers, ps, os.path.join(self.tmp, 'logs'),
                          train_flags)
    output, _ = proc.communicate(timeout=600)
    self.assertEqual(proc.returncode, 0, output)
    return output

  def test_two_workers_two_ps_train_shard_and_export(self):
    workdir = os.path.join(self.tmp, 'run')
    output = self._run_to_the_end(2, 2,
                                  _train_flags(self.data, workdir, 20_000))
    self.assertIn('Cluster: 2 worker(s), 2 ps task(s); per-id tables in 2 '
                  'shard(s)', output)
    results = _results(workdir)
    self.assertEqual(results['test']['examples'], 4_000)
    self.assertGreater(results['test']['accuracy'],
                       _majority_accuracy(self.data, 20_000))
    self.assertEqual(set(results['memory']), {'user', 'item'})
    self.assertLess(results['memory']['item']['ratio'], 1.0)
    info = results['distribution']
    self.assertEqual((info['strategy'], info['num_workers'], info['num_ps']),
                     ('parameter_server', 2, 2))
    # Every per-id table is split, one shard on each ps task.
    self.assertEqual(len(info['per_id_tables']), 18)
    for name, devices in info['per_id_tables'].items():
      self.assertEqual(len(devices), 2, name)
      self.assertEqual(sorted(d.split('/device')[0] for d in devices),
                       ['/job:ps/replica:0/task:0', '/job:ps/replica:0/task:1'],
                       name)
    # The compact export reads the cluster's checkpoint on one machine.
    export = subprocess.run(
        [sys.executable, os.path.join(_REPO, 'bin', 'export.py'),
         f'--workdir={workdir}', f'--export_dir={self.tmp}/export'],
        cwd=_REPO, env=_ENV, capture_output=True, text=True, timeout=600,
        check=False)
    self.assertEqual(export.returncode, 0, export.stderr)
    self.assertTrue(os.path.exists(
        os.path.join(self.tmp, 'export', '1', 'saved_model.pb')))

  def test_one_worker_matches_one_process(self):
    cluster_dir = os.path.join(self.tmp, 'cluster')
    self._run_to_the_end(1, 1, _train_flags(self.data, cluster_dir, 20_000))
    local_dir = os.path.join(self.tmp, 'local')
    local = _train(_train_flags(self.data, local_dir, 20_000))
    self.assertEqual(local.returncode, 0, local.stderr)
    on_cluster, alone = _results(cluster_dir), _results(local_dir)
    self.assertEqual(on_cluster['test']['examples'],
                     alone['test']['examples'])
    for part in ('train', 'test'):
      for metric in ('accuracy', 'loss'):
        self.assertLessEqual(abs(on_cluster[part][metric] -
                                 alone[part][metric]), ONE_WORKER_TOLERANCE,
                             (part, metric))
    self.assertEqual(on_cluster['memory'], alone['memory'])
    self.assertEqual(on_cluster['distribution']['num_shards'], 1)
    self.assertEqual(alone['distribution'], {'strategy': 'none'})

  def test_killed_worker_stops_the_cluster_and_the_run_resumes_alone(self):
    workdir = os.path.join(self.tmp, 'run')
    flags = _train_flags(self.data, workdir, 40_000, '--checkpoint_every=4')
    proc = _local_cluster(2, 1, os.path.join(self.tmp, 'logs'), flags)
    checkpoint = os.path.join(workdir, 'checkpoints', 'checkpoint')
    deadline = time.monotonic() + 300
    while not os.path.exists(checkpoint) and proc.poll() is None:
      self.assertLess(time.monotonic(), deadline)
      time.sleep(0.05)
    worker = _task_pid(proc.pid, 'worker', 0)
    self.assertIsNotNone(worker, 'worker:0 not found')
    os.kill(worker, signal.SIGKILL)
    output, _ = proc.communicate(timeout=600)
    self.assertEqual(proc.returncode, 1, output)
    self.assertIn('task worker:0', output)
    self.assertIn('died', output)
    self.assertFalse(os.path.exists(os.path.join(workdir, 'results.json')))
    # The cluster's checkpoint resumes on one machine, to the end.
    resumed = _train(flags + ['--distribution=none'])
    self.assertEqual(resumed.returncode, 0, resumed.stderr)
    self.assertIn('Resuming', resumed.stdout)
    results = _results(workdir)
    self.assertTrue(results['resumed'])
    self.assertEqual(results['train']['examples'] +
                     results['test']['examples'], 40_000)


if __name__ == '__main__':
  unittest.main()
