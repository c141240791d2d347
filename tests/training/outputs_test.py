"""Tests for esapn_tf.training.outputs: archives, buckets, text."""

import io
import os
import tempfile

import numpy as np
import tensorflow as tf

from esapn_tf.training import outputs


class ArchivePreviousRunTest(tf.test.TestCase):

  def _fill(self, workdir, tag):
    """Writes every run output (files and folders) holding `tag`."""
    for name in ('config.json', 'results.json', 'per_frequency.csv',
                 'policy_heatmap.png'):
      with open(os.path.join(workdir, name), 'w') as f:
        f.write(f'{name} {tag}')
    for folder in ('checkpoints', 'events'):
      os.makedirs(os.path.join(workdir, folder))
      with open(os.path.join(workdir, folder, 'inside'), 'w') as f:
        f.write(tag)

  def test_moves_only_run_outputs(self):
    workdir = tempfile.mkdtemp(dir=self.get_temp_dir())
    self._fill(workdir, 'first')
    with open(os.path.join(workdir, 'notes.txt'), 'w') as f:
      f.write('mine')
    archive = outputs.archive_previous_run(workdir)
    self.assertEqual(os.path.dirname(archive),
                     os.path.join(workdir, 'previous'))
    self.assertRegex(os.path.basename(archive), r'^\d{8}T\d{6}Z(-\d+)?$')
    self.assertCountEqual(os.listdir(workdir), ['notes.txt', 'previous'])
    self.assertCountEqual(os.listdir(archive), outputs.RUN_OUTPUTS)
    with open(os.path.join(archive, 'results.json')) as f:
      self.assertEqual(f.read(), 'results.json first')
    with open(os.path.join(archive, 'events', 'inside')) as f:
      self.assertEqual(f.read(), 'first')
    with open(os.path.join(workdir, 'notes.txt')) as f:
      self.assertEqual(f.read(), 'mine')

  def test_nothing_to_archive(self):
    workdir = tempfile.mkdtemp(dir=self.get_temp_dir())
    with open(os.path.join(workdir, 'notes.txt'), 'w') as f:
      f.write('mine')
    self.assertEqual(outputs.archive_previous_run(workdir), '')
    self.assertEqual(os.listdir(workdir), ['notes.txt'])

  def test_partial_run_is_archived(self):
    # A failed run leaves config.json and events/ only.
    workdir = tempfile.mkdtemp(dir=self.get_temp_dir())
    with open(os.path.join(workdir, 'config.json'), 'w') as f:
      f.write('{}')
    os.makedirs(os.path.join(workdir, 'events'))
    archive = outputs.archive_previous_run(workdir)
    self.assertCountEqual(os.listdir(archive), ['config.json', 'events'])
    self.assertEqual(os.listdir(workdir), ['previous'])

  def test_two_archives_in_a_row_do_not_collide(self):
    # Usually within the same second: the second archive gets a suffix.
    workdir = tempfile.mkdtemp(dir=self.get_temp_dir())
    self._fill(workdir, 'first')
    first = outputs.archive_previous_run(workdir)
    self._fill(workdir, 'second')
    second = outputs.archive_previous_run(workdir)
    self.assertNotEqual(first, second)
    for archive, tag in ((first, 'first'), (second, 'second')):
      with open(os.path.join(archive, 'results.json')) as f:
        self.assertEqual(f.read(), f'results.json {tag}')
    self.assertLen(os.listdir(os.path.join(workdir, 'previous')), 2)


class FrequencyBucketsTest(tf.test.TestCase):

  def test_known_answer(self):
    # Frequencies 1, 2, 3, 4 -> floor(log2 f) = buckets 0, 1, 1, 2.
    # Bucket 0: loss 0.1, accuracy 1.
    # Bucket 1: loss (0.2 + 0.4) / 2 = 0.3, accuracy (0 + 1) / 2 = 0.5.
    # Bucket 2: loss 0.8, accuracy 1.
    buckets = outputs.FrequencyBuckets(num_buckets=8)
    buckets.add('user', np.array([1, 2, 3, 4]),
                np.array([0.1, 0.2, 0.4, 0.8]), np.array([1.0, 0.0, 1.0, 1.0]))
    rows = buckets.rows()
    self.assertEqual([(r['side'], r['bucket']) for r in rows],
                     [('user', 0), ('user', 1), ('user', 2)])
    self.assertEqual([r['examples'] for r in rows], [1, 2, 1])
    self.assertEqual([(r['frequency_min'], r['frequency_max']) for r in rows],
                     [(1, 1), (2, 3), (4, 7)])
    self.assertAllClose([r['loss'] for r in rows], [0.1, 0.3, 0.8])
    self.assertAllClose([r['accuracy'] for r in rows], [1.0, 0.5, 1.0])

  def test_batches_accumulate_and_sides_are_separate(self):
    buckets = outputs.FrequencyBuckets(num_buckets=4)
    buckets.add('item', np.array([2]), np.array([1.0]), np.array([0.0]))
    buckets.add('item', np.array([3]), np.array([3.0]), np.array([1.0]))
    buckets.add('user', np.array([1]), np.array([5.0]), np.array([1.0]))
    rows = {(r['side'], r['bucket']): r for r in buckets.rows()}
    self.assertCountEqual(rows, [('item', 1), ('user', 0)])
    self.assertEqual(rows['item', 1]['examples'], 2)
    self.assertAllClose(rows['item', 1]['loss'], 2.0)
    self.assertAllClose(rows['item', 1]['accuracy'], 0.5)
    self.assertAllClose(rows['user', 0]['loss'], 5.0)

  def test_clamped_to_last_bucket_and_zero_is_first_sight(self):
    # 1000 -> floor(log2) = 9, clamped to bucket 2 of 3; 0 counts as 1.
    buckets = outputs.FrequencyBuckets(num_buckets=3)
    buckets.add('user', np.array([1000, 0]), np.array([0.5, 0.25]),
                np.array([1.0, 0.0]))
    self.assertEqual([(r['bucket'], r['examples']) for r in buckets.rows()],
                     [(0, 1), (2, 1)])

  def test_csv(self):
    buckets = outputs.FrequencyBuckets(num_buckets=4)
    buckets.add('user', np.array([1, 1]), np.array([0.25, 0.75]),
                np.array([1.0, 0.0]))
    buckets.add('item', np.array([5]), np.array([0.125]), np.array([1.0]))
    self.assertEqual(
        buckets.to_csv(),
        'side,bucket,frequency_min,frequency_max,examples,accuracy,loss\n'
        'user,0,1,1,2,0.500000,0.500000\n'
        'item,2,4,7,1,1.000000,0.125000\n')

  def test_empty_csv_has_header_only(self):
    self.assertEqual(
        outputs.FrequencyBuckets().to_csv(),
        'side,bucket,frequency_min,frequency_max,examples,accuracy,loss\n')


def _results():
  """A results.json content for results_table."""
  return {
    'method': 'esapn', 'task': 'binary', 'dataset': 'synthetic-3000',
    'order': 'random',
    'train': {'examples': 2400, 'accuracy': 0.61234, 'loss': 0.2468},
    'test': {'examples': 600, 'accuracy': 0.65432, 'loss': 0.2222},
    'memory': {
        'user': {'counts': {'2': 2, '4': 1, '8': 1}, 'total_dims': 16,
                 'fixed_dims': 32, 'ratio': 0.5},
        'item': {'counts': {'2': 0, '4': 0, '8': 1500},
                 'total_dims': 12000, 'fixed_dims': 12000, 'ratio': 1.0},
    },
    'wall_seconds': 12.34, 'train_examples_per_second': 4321.0,
  }


class TextTest(tf.test.TestCase):

  def test_results_table_contains_the_numbers(self):
    table = outputs.results_table(_results())
    for text in ('method=esapn', 'task=binary', 'dataset=synthetic-3000',
                 'accuracy', '2,400', '0.6123', '0.2468', '0.6543', '0.2222',
                 'ratio 0.5000', '16 / 32', '2:2 4:1 8:1', 'ratio 1.0000',
                 '12,000 / 12,000', '8:1500', '12.3 s', '4,321 ex/s'):
      self.assertIn(text, table)
    test_line = [line for line in table.splitlines()
                 if line.startswith('test')]
    self.assertLen(test_line, 1)
    self.assertIn('0.6543', test_line[0])

  def test_results_table_labels_both_rates(self):
    # The whole-part rate includes compilation; the steady one is the
    # progress lines' rate.
    last = outputs.results_table(_results(), steady_rate=21_791.4)
    self.assertEqual(
        last.splitlines()[-1],
        'wall 12.3 s, train 4,321 ex/s incl. compilation, 21,791 ex/s steady')
    self.assertEqual(outputs.results_table(_results()).splitlines()[-1],
                     'wall 12.3 s, train 4,321 ex/s incl. compilation')

  def test_progress_prints_when_due(self):
    out = io.StringIO()
    progress = outputs.Progress(200, every_seconds=1e9, stream=out)
    progress.update(50, 'train', {'accuracy': 0.5})
    first = out.getvalue()
    self.assertIn('[train] first step took', first)  # compilation, alone
    progress.update(25, 'train', {'accuracy': 0.5})
    self.assertEqual(out.getvalue(), first)  # Not due yet.
    progress.update(25, 'train', {'accuracy': 0.75}, force=True)
    line = out.getvalue()[len(first):]
    self.assertIn('[train] 100/200 examples (50.0%)', line)
    self.assertIn('accuracy=0.7500', line)
    self.assertIn('ETA', line)

  def _progress(self, total, every_seconds=1e9):
    """A Progress on a fake clock: `self.now` is the time in seconds."""
    self.now = 0.0
    out = io.StringIO()
    return outputs.Progress(total, every_seconds, stream=out,
                            clock=lambda: self.now), out

  def _step(self, progress, seconds, examples, phase='train', force=False):
    self.now += seconds
    progress.update(examples, phase, {}, force=force)

  def test_rate_leaves_out_the_first_step(self):
    progress, out = self._progress(1_000)
    self._step(progress, 10.0, 100)  # Tracing and compilation: 10 s.
    self.assertEqual(out.getvalue(),
                     '[train] first step took 10.0 s (tracing and '
                     'compilation)\n')
    self._step(progress, 0.5, 100)
    self._step(progress, 0.5, 100, force=True)
    # 200 examples in 1 s after the first step: 200 ex/s (the average over
    # the whole part would be 300 / 11 s = 27 ex/s); 700 left: 3.5 s.
    self.assertEqual(out.getvalue().splitlines()[-1],
                     '[train] 300/1,000 examples (30.0%) 200 ex/s ETA 0m04s')
    self.assertEqual(progress.steady_rate('train'), 200.0)

  def test_end_of_a_part_keeps_the_steady_rate(self):
    # The end-of-part line comes just after a printed line: the rate since
    # that line would be 0 ex/s (or a few examples over a short window).
    progress, out = self._progress(1_000, every_seconds=1.0)
    self._step(progress, 10.0, 100)
    for _ in range(7):
      self._step(progress, 1.0, 100)  # Prints a line each step.
    self._step(progress, 0.001, 0, force=True)  # End of the train part.
    self.assertEqual(out.getvalue().splitlines()[-1],
                     '[train] 800/1,000 examples (80.0%) 100 ex/s ETA 0m02s')
    # The test part: its own first step, then its steady rate.
    self._step(progress, 5.0, 100, phase='test')
    self.assertIn('[test] first step took 5.0 s', out.getvalue())
    self._step(progress, 0.5, 100, phase='test')
    self._step(progress, 0.001, 0, phase='test', force=True)
    self.assertEqual(out.getvalue().splitlines()[-1],
                     '[test] 1,000/1,000 examples (100.0%) 200 ex/s ETA done')
    self.assertEqual(progress.steady_rate('train'), 100.0)
    self.assertEqual(progress.steady_rate('test'), 200.0)

  def test_rate_by_quarter_shows_a_slowdown(self):
    progress, _ = self._progress(10_000)
    self._step(progress, 10.0, 100)  # The first step: left out.
    # 16 steady steps of 100 examples: 0.1 s each, then the last quarter
    # at 0.2 s (half the rate); a last partial batch of 50 examples.
    for i in range(16):
      self._step(progress, 0.2 if i >= 12 else 0.1, 100)
    self._step(progress, 0.1, 50)
    rates = progress.rate_by_quarter('train')
    self.assertLen(rates, 4)
    self.assertAllClose(rates[:3], [1000.0, 1000.0, 1000.0])
    # The quarters end where 25%, 50% and 75% of the 1,650 examples are
    # done: after steady steps 4, 8 and 12. The last quarter holds the four
    # slow steps and the partial one: 450 examples in 0.9 s.
    self.assertAllClose(rates[3], 500.0)
    self.assertIsNone(progress.rate_by_quarter('test'))

  def test_rate_by_quarter_needs_four_steps(self):
    progress, _ = self._progress(1_000)
    for _ in range(4):  # The first one and three steady steps.
      self._step(progress, 1.0, 100)
    self.assertIsNone(progress.rate_by_quarter('train'))
    self._step(progress, 1.0, 100)
    self.assertEqual(progress.rate_by_quarter('train'), [100.0] * 4)

  def test_no_steady_rate_after_one_step(self):
    progress, out = self._progress(1_000)
    self._step(progress, 3.0, 100)
    self._step(progress, 0.001, 0, force=True)
    self.assertEqual(out.getvalue().splitlines()[-1],
                     '[train] 100/1,000 examples (10.0%) ? ex/s ETA ?')
    self.assertIsNone(progress.steady_rate('train'))

  def test_progress_disabled_prints_nothing(self):
    out = io.StringIO()
    progress = outputs.Progress(10, stream=out, enabled=False)
    progress.update(5, 'train', {})
    progress.update(5, 'test', {}, force=True)
    self.assertEqual(out.getvalue(), '')


if __name__ == '__main__':
  tf.test.main()
