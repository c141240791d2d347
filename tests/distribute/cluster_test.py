"""Tests for esapn_tf.distribute.cluster and bin/cluster_task.py."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

from absl.testing import absltest
from absl.testing import parameterized

from esapn_tf import errors
from esapn_tf.distribute import cluster

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
_CLUSTER = {'chief': ['host0:2222'], 'worker': ['host1:2222', 'host2:2222'],
            'ps': ['host3:2222']}


def _text(cluster_dict=None, task=None, **extra):
  config = {'cluster': _CLUSTER if cluster_dict is None else cluster_dict,
            'task': {'type': 'worker', 'index': 1} if task is None else task}
  config.update(extra)
  return json.dumps(config)


class ParseTfConfigTest(parameterized.TestCase):

  def test_reads_the_environment(self):
    with absltest.mock.patch.dict(os.environ, {'TF_CONFIG': _text()}):
      config = cluster.parse_tf_config()
    self.assertEqual(config['cluster'], _CLUSTER)
    self.assertEqual(config['task'], {'type': 'worker', 'index': 1})

  def test_missing_index_is_zero(self):
    config = cluster.parse_tf_config(_text(task={'type': 'ps'}))
    self.assertEqual(config['task'], {'type': 'ps', 'index': 0})

  def test_unset(self):
    env = {k: v for k, v in os.environ.items() if k != 'TF_CONFIG'}
    with absltest.mock.patch.dict(os.environ, env, clear=True):
      with self.assertRaisesRegex(errors.UserInputError,
                                  r'^TF_CONFIG is not set: set it .*'
                                  r'bin/local_cluster\.py$'):
        cluster.parse_tf_config()

  @parameterized.named_parameters(
      ('not_json', '{"cluster":', r'is not JSON \(Expecting value.*give a '
       r'JSON object'),
      ('not_object', '[1, 2]', r'is a JSON list, not an object'),
      ('no_cluster', json.dumps({'task': {'type': 'worker', 'index': 0}}),
       r'has no "cluster": add the addresses'),
      ('no_task', json.dumps({'cluster': _CLUSTER}),
       r'has no "task": name this process'),
      ('task_without_type', _text(task={'index': 0}), r'"task" has no "type"'),
      ('type_not_in_cluster', _text(task={'type': 'evaluator', 'index': 0}),
       r"task type 'evaluator' is not a job of its cluster \(chief, ps, "
       r'worker\): set "task"'),
      ('index_out_of_range', _text(task={'type': 'worker', 'index': 2}),
       r'task index 2 is out of range: job "worker" has 2 addresses: use an '
       r'index from 0 to 1'),
      ('negative_index', _text(task={'type': 'ps', 'index': -1}),
       r'task index -1 is out of range: job "ps" has 1 address: use an index '
       r'from 0 to 0'),
      ('index_not_int', _text(task={'type': 'ps', 'index': '0'}),
       r'task index "0" is not an integer: give "index" as a number'),
      ('no_ps', _text({'chief': ['a:1'], 'worker': ['b:1']}),
       r'cluster has no "ps" job: parameter-server training needs'),
      ('no_worker', _text({'chief': ['a:1'], 'ps': ['b:1']},
                          task={'type': 'ps', 'index': 0}),
       r'cluster has no "worker" job'),
      ('two_chiefs', _text(dict(_CLUSTER, chief=['a:1', 'b:1'])),
       r'job "chief" has 2 addresses: a cluster has one chief'),
      ('unknown_job', _text(dict(_CLUSTER, evaluator=['e:1'])),
       r"cluster has a job 'evaluator': parameter-server training knows"),
      ('no_port', _text(dict(_CLUSTER, ps=['host3'])),
       r"address 'host3' of ps:0 is not host:port: write each address"),
      ('port_not_a_number', _text(dict(_CLUSTER, ps=['host3:http'])),
       r"address 'host3:http' of ps:0 is not host:port"),
      ('port_too_large', _text(dict(_CLUSTER, ps=['host3:70000'])),
       r"address 'host3:70000' of ps:0 is not host:port"),
      ('scheme', _text(dict(_CLUSTER, ps=['grpc://host3:1'])),
       r"address 'grpc://host3:1' of ps:0 is not host:port"),
      ('address_not_str', _text(dict(_CLUSTER, ps=[2222])),
       r"address '2222' of ps:0 is not host:port"),
      ('empty_job', _text(dict(_CLUSTER, ps=[])),
       r"job 'ps' is not a non-empty list of addresses"),
      ('same_address_twice', _text(dict(_CLUSTER, ps=['host1:2222'])),
       r"address 'host1:2222' is given to both worker:0 and ps:0: give each "
       r'task its own host:port'),
  )
  def test_bad_config(self, text, message):
    with self.assertRaisesRegex(errors.UserInputError,
                                '^TF_CONFIG ' + message) as raised:
      cluster.parse_tf_config(text)
    self.assertNotIn('\n', str(raised.exception))

  def test_without_parameter_server_checks(self):
    # A MultiWorkerMirroredStrategy cluster: workers only.
    text = _text({'worker': ['a:1', 'b:1']}, task={'type': 'worker',
                                                   'index': 1})
    config = cluster.parse_tf_config(text, parameter_server=False)
    self.assertEqual(config['cluster'], {'worker': ['a:1', 'b:1']})
    with self.assertRaisesRegex(errors.UserInputError, 'no "ps" job'):
      cluster.parse_tf_config(text)

  def test_ipv6_address(self):
    text = _text(dict(_CLUSTER, ps=['[::1]:2222']))
    self.assertEqual(cluster.parse_tf_config(text)['cluster']['ps'],
                     ['[::1]:2222'])


class ParseChiefTfConfigTest(absltest.TestCase):

  def test_chief_is_accepted(self):
    config = cluster.parse_chief_tf_config(
        _text(task={'type': 'chief', 'index': 0}))
    self.assertEqual(config['task'], {'type': 'chief', 'index': 0})

  def test_a_worker_task_is_refused_before_tensorflow(self):
    with self.assertRaisesRegex(
        errors.UserInputError,
        r'names task worker:1, but bin/train.py '
        r'--distribution=parameter_server runs the chief'):
      cluster.parse_chief_tf_config(_text())


class LocalSpecTest(absltest.TestCase):

  def test_free_ports_are_distinct_and_bindable(self):
    ports = cluster.free_ports(5)
    self.assertLen(set(ports), 5)
    for port in ports:
      with socket.socket() as sock:
        sock.bind(('127.0.0.1', port))  # Raises if it were taken.

  def test_local_cluster_spec(self):
    spec = cluster.local_cluster_spec(3, 2)
    self.assertEqual({job: len(a) for job, a in spec.items()},
                     {'chief': 1, 'worker': 3, 'ps': 2})
    addresses = [a for job in spec.values() for a in job]
    self.assertTrue(all(a.startswith('localhost:') for a in addresses))
    self.assertLen(set(addresses), 6)

  def test_local_cluster_spec_needs_a_ps(self):
    with self.assertRaisesRegex(errors.UserInputError,
                                'at least 1 task of ps, not 0: pass --ps=1'):
      cluster.local_cluster_spec(1, 0)

  def test_tf_config_for_round_trips(self):
    spec = cluster.local_cluster_spec(2, 1)
    config = cluster.parse_tf_config(cluster.tf_config_for(spec, 'worker', 1))
    self.assertEqual(config, {'cluster': spec,
                              'task': {'type': 'worker', 'index': 1}})

  def test_tf_config_for_checks_the_index(self):
    with self.assertRaisesRegex(errors.UserInputError, 'out of range'):
      cluster.tf_config_for(_CLUSTER, 'ps', 1)

  def test_the_chief_runs_no_server(self):
    with absltest.mock.patch.dict(os.environ):
      os.environ.pop(cluster.GRPC_FAIL_FAST_ENV, None)
      with self.assertRaisesRegex(
          errors.UserInputError, r'the chief is `bin/train\.py '
          r'--distribution=parameter_server`'):
        cluster.start_server(_text(task={'type': 'chief', 'index': 0}))
      # Refused before anything is set up.
      self.assertNotIn(cluster.GRPC_FAIL_FAST_ENV, os.environ)

  def test_set_grpc_fail_fast(self):
    with absltest.mock.patch.dict(os.environ):
      cluster.set_grpc_fail_fast()
      self.assertEqual(os.environ['GRPC_FAIL_FAST'], 'use_caller')


def _run_task(tf_config, **kwargs):
  env = dict(os.environ, TF_CONFIG=tf_config)
  return subprocess.Popen([sys.executable,
                           os.path.join(REPO, 'bin', 'cluster_task.py')],
                          env=env, cwd=REPO, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, **kwargs)


class ClusterTaskScriptTest(absltest.TestCase):

  def test_bad_tf_config_is_one_line_and_status_2(self):
    process = _run_task(_text(task={'type': 'worker', 'index': 5}))
    stdout, stderr = process.communicate(timeout=60)
    self.assertEqual(process.returncode, 2)
    self.assertEqual(stdout, '')
    self.assertEqual(
        stderr, 'error: TF_CONFIG task index 5 is out of range: job "worker" '
        'has 2 addresses: use an index from 0 to 1\n')

  def test_worker_listens_and_stops_on_sigterm(self):
    spec = cluster.local_cluster_spec(1, 1)
    port = int(spec['worker'][0].split(':')[1])
    process = _run_task(cluster.tf_config_for(spec, 'worker', 0))
    try:
      deadline = time.monotonic() + 120
      while True:
        self.assertIsNone(process.poll(), 'the worker exited early')
        try:
          socket.create_connection(('127.0.0.1', port), timeout=1).close()
          break
        except OSError:
          self.assertLess(time.monotonic(), deadline, 'no listener')
          time.sleep(0.2)
      process.send_signal(signal.SIGTERM)
      stdout, stderr = process.communicate(timeout=60)
    finally:
      process.kill()
      process.wait()
    self.assertEqual(process.returncode, 0, stderr)
    self.assertEqual(stdout.splitlines(), [
        f'worker:0 serving on localhost:{port} (grpc://localhost:{port}, '
        f'pid {process.pid}); SIGTERM stops it',
        'worker:0 stopped by SIGTERM'])
    with socket.socket() as sock:  # No listener is left on the port.
      sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
      sock.bind(('127.0.0.1', port))


if __name__ == '__main__':
  absltest.main()
