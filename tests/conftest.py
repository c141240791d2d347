"""pytest set-up: TF-Agents needs Keras 2, chosen before TensorFlow loads.

Also: the `slow` marker (`make test-fast` runs `-m 'not slow'`), and the line
that ends a run whose real-data tests were skipped (tests/real_data.py).
"""

import os
import tempfile

import pytest

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
# The runs that tests start keep their XLA programs in a folder of their own,
# not in the user's ~/.cache/esapn_tf/xla (training/compile_cache.py).
os.environ.setdefault('ESAPN_TF_COMPILE_CACHE',
                      tempfile.mkdtemp(prefix='esapn-tf-test-xla-'))

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Tests marked `slow`: those that took 3 s or more each in
# `pytest --durations=40` on the 2-core machine (issue 14), most of them
# whole runs or a script started in a subprocess (TensorFlow's import alone
# takes 5 s there). Prefixes of test ids, relative to the repository.
SLOW = (
    'tests/bin/',  # Every test starts a bin/ script.
    'tests/comparison/isolated_test.py',  # Runs in subprocesses.
    'tests/comparison/planted_test.py',  # Two whole runs.
    'tests/comparison/report_test.py::PlotsTest::test_plots_are_png',
    'tests/data/malformed_test.py::TrainScriptTest',
    # Localhost clusters of real TensorFlow tasks (bin/local_cluster.py).
    'tests/distribute/parameter_server_test.py',
    # Child processes on two logical CPU devices; bin/train.py runs.
    'tests/distribute/mirrored_test.py::MirroredStepsTest',
    'tests/distribute/mirrored_test.py::MirroredEndToEndTest',
    # Starts a real TensorFlow server in bin/cluster_task.py.
    'tests/distribute/cluster_test.py::ClusterTaskScriptTest::test_worker_',
    'tests/init_test.py::KerasGuardTest',  # A Python per case.
    'tests/models/recommender_test.py::RecommenderTest::test_config_round_'
    'trip_and_saved_model',
    'tests/search/agent_test.py::AgentTest::test_reinforce_learns',
    'tests/search/agent_test.py::AgentTest::test_entropy_regularization_',
    'tests/search/environment_test.py::SearchCoreTest::test_graph_step_'
    'matches_the_xla_step',
    'tests/search/environment_test.py::SearchCoreTest::test_train_step_'
    'records_losses',
    'tests/search/growth_test.py',
    'tests/search/size_counts_test.py::SizeCountsTest::test_counts_follow_'
    'every_size_change_esapn',
    'tests/search/size_counts_test.py::SizeCountsTest::test_counts_follow_'
    'every_size_change_autoemb',
    'tests/search/size_counts_test.py::SizeCountsTest::test_counts_follow_'
    'every_size_change_darts',
    'tests/search/trials_test.py',
    'tests/serving/export_test.py',  # Trains the runs it exports.
    'tests/serving/rest_test.py::RestTest::test_script_',
    'tests/serving/signatures_test.py',  # Its set-up exports a run.
    'tests/training/late_ids_test.py',  # 40 steps on real ratings.
    'tests/training/loop_test.py',
    'tests/training/resume_test.py',
    'tests/training/trainer_test.py::TrainerTest::test_compiled_step_',
    'tests/training/trainer_test.py::TrainerTest::test_learn_runs_partial',
)


def relative_test_id(item) -> str:
  """`item`'s pytest id with its path relative to the repository."""
  path = os.path.relpath(str(item.path), _REPO).replace(os.sep, '/')
  nodeid = item.nodeid
  return path + (nodeid[nodeid.index('::'):] if '::' in nodeid else '')


def pytest_configure(config):
  config.addinivalue_line(
      'markers', 'slow: 3 s or more on a 2-core machine; make test-fast '
      'leaves these out')


def pytest_collection_modifyitems(config, items):
  """Marks the tests listed in SLOW."""
  del config
  for item in items:
    if relative_test_id(item).startswith(SLOW):
      item.add_marker(pytest.mark.slow)


def _skip_reason(report) -> str:
  """The reason of a skipped test's report ('' if it has none)."""
  longrepr = report.longrepr
  if isinstance(longrepr, tuple) and len(longrepr) == 3:
    return str(longrepr[2])
  return str(longrepr or '')


def pytest_terminal_summary(terminalreporter, exitstatus, config):
  """Ends the run with one line when real-data tests were skipped."""
  del exitstatus, config
  # Imported here: conftest must set the environment before anything loads.
  from tests import real_data  # pylint: disable=import-outside-toplevel
  line = real_data.missing_data_line(
      _skip_reason(r) for r in terminalreporter.stats.get('skipped', []))
  if line:
    terminalreporter.write_line(line, yellow=True, bold=True)
