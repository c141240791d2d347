"""Tests for `esapn_tf/benchmark/ten_million.py` at a small scale."""

import os
import sys
import tempfile

from absl.testing import absltest
import numpy as np

from esapn_tf.benchmark import ten_million
from esapn_tf.data import stream


class CoverageRatingsTest(absltest.TestCase):

  def test_every_id_appears_and_popular_ids_repeat(self):
    r = ten_million.coverage_ratings(1000, 5000, seed=3)
    self.assertEqual(r.num_ratings, 5000)
    for ids in (r.user_id, r.item_id):
      self.assertEqual(set(np.unique(ids)), set(range(1, 1001)))
      counts = np.bincount(ids)
      # 4,000 power-law draws on top of one appearance each: the most
      # popular id is far above the mean of 5.
      self.assertGreater(counts.max(), 50)
    self.assertTrue(np.all(np.diff(r.timestamp) > 0))
    self.assertTrue(set(np.unique(r.rating)) <= {1.0, 2.0, 3.0, 4.0, 5.0})

  def test_too_few_examples(self):
    with self.assertRaisesRegex(ValueError, 'num_examples >= num_ids'):
      ten_million.coverage_ratings(10, 9)


class RunChildTest(absltest.TestCase):

  def _log(self):
    return os.path.join(tempfile.mkdtemp(), 'child.log')

  def test_peak_rss_of_the_child(self):
    # 400 MB touched in the child, about 10 MB of it in this test process.
    out = ten_million.run_child(
        [sys.executable, '-c',
         'import numpy as np; a = np.ones(50_000_000); print("done")'],
        self._log())
    self.assertEqual(out['returncode'], 0)
    self.assertEqual(out['last_line'], 'done')
    self.assertGreater(out['peak_rss_bytes'], 400 * 10**6)
    self.assertLess(out['peak_rss_bytes'], 800 * 10**6)

  def test_an_address_space_limit_fails_the_child_cleanly(self):
    out = ten_million.run_child(
        [sys.executable, '-c',
         'import numpy as np; a = np.ones(500_000_000); print("done")'],
        self._log(), address_space_bytes=2 * 2**30)
    self.assertNotEqual(out['returncode'], 0)
    self.assertIn('MemoryError', out['last_line'])


class TrainStateBytesTest(absltest.TestCase):

  def test_budgeted_esapn_against_fixed(self):
    s = stream.build_stream(
        ten_million.coverage_ratings(20_000, 40_000), 'binary', 'random',
        0.8, 0)
    out = ten_million.train_state_bytes(s, budget=0.3, batch_size=100)
    # FIXED-128: 2 sides x 20,000 ids x 128 floats x 4 bytes x (row + two
    # moments), plus the size index and the per-id search state.
    self.assertGreaterEqual(out['fixed'], 2 * 20_000 * 128 * 4 * 3)
    self.assertLess(out['fixed'], 2 * 20_000 * (128 * 4 * 3 + 64))
    # ESAPN's arena holds 0.3 of FIXED's dims with its moments, plus a
    # step's slack (at most 100 rows per pool: under 3% of the arena at
    # 20,000 ids); the per-id index and state add about 60 bytes per id.
    self.assertLess(out['esapn_over_fixed'], 0.35)
    self.assertGreater(out['esapn_over_fixed'], 0.3)
    self.assertEqual(out['esapn_budget'], 0.3)


if __name__ == '__main__':
  absltest.main()
