"""Tests for esapn_tf.training.compile_cache: XLA's persistent cache."""

import glob
import json
import os
import subprocess
import sys
from unittest import mock

import tensorflow as tf

from esapn_tf.training import compile_cache

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
_NAME = 'xla_compile_cache__{}__7__XLA_CPU_JIT.pb'


def _write(folder, name, data):
  with open(os.path.join(folder, name), 'wb') as f:
    f.write(data)


class ManifestTest(tf.test.TestCase):

  def test_verify_deletes_exactly_the_damaged_and_unlisted_entries(self):
    folder = self.get_temp_dir()
    for i in range(3):
      _write(folder, _NAME.format(i), bytes([i]) * 1000)
    compile_cache.record(folder)
    # Entry 1 overwritten with other bytes of the same size, entry 2
    # truncated, entry 3 never recorded (left by a killed run); a temporary
    # file of TensorFlow's is not an entry and stays.
    _write(folder, _NAME.format(1), b'\x07' * 1000)
    _write(folder, _NAME.format(2), b'\x02' * 10)
    _write(folder, _NAME.format(3), b'\x03' * 1000)
    _write(folder, 'tmp_per_fusion_cache_x', b'partial')
    dropped = compile_cache.verify(folder)
    self.assertEqual(dropped, [_NAME.format(i) for i in (1, 2, 3)])
    self.assertCountEqual(
        os.listdir(folder),
        [_NAME.format(0), compile_cache.MANIFEST, 'tmp_per_fusion_cache_x'])

  def test_verify_reads_only_entries_changed_since_they_were_listed(self):
    folder = self.get_temp_dir()
    for i in range(3):
      _write(folder, _NAME.format(i), bytes([i]) * 1000)
      os.utime(os.path.join(folder, _NAME.format(i)), ns=(10**18,) * 2)
    compile_cache.record(folder)
    # Entry 1 rewritten (same size, a new mtime); 0 and 2 untouched.
    _write(folder, _NAME.format(1), b'\x07' * 1000)
    with mock.patch.object(compile_cache, '_digest',
                           wraps=compile_cache._digest) as digest:
      dropped = compile_cache.verify(folder)
    self.assertEqual(dropped, [_NAME.format(1)])
    self.assertEqual([c.args[0] for c in digest.call_args_list],
                     [os.path.join(folder, _NAME.format(1))])

  def test_verify_hashes_entries_written_just_before_the_listing(self):
    folder = self.get_temp_dir()
    path = os.path.join(folder, _NAME.format(0))
    _write(folder, _NAME.format(0), b'\x00' * 1000)
    compile_cache.record(folder)
    # Rewritten within the same timestamp tick: size and mtime unchanged.
    stat = os.stat(path)
    _write(folder, _NAME.format(0), b'\x07' * 1000)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    self.assertEqual(compile_cache.verify(folder), [_NAME.format(0)])

  def test_a_damaged_manifest_trusts_no_entry(self):
    folder = self.get_temp_dir()
    _write(folder, _NAME.format(0), b'x' * 100)
    compile_cache.record(folder)
    _write(folder, compile_cache.MANIFEST, b'{not json')
    self.assertEqual(compile_cache.verify(folder), [_NAME.format(0)])

  def test_record_keeps_the_newest_entries_under_the_cap(self):
    folder = self.get_temp_dir()
    for i in range(4):
      _write(folder, _NAME.format(i), b'x' * 100)
      os.utime(os.path.join(folder, _NAME.format(i)), ns=(i * 10**9,) * 2)
    manifest = compile_cache.record(folder, max_bytes=250)
    # Newest first: entries 3 and 2 fit in 250 bytes, 1 and 0 are deleted.
    self.assertCountEqual(manifest, [_NAME.format(3), _NAME.format(2)])
    self.assertFalse(os.path.exists(os.path.join(folder, _NAME.format(0))))
    with open(os.path.join(folder, compile_cache.MANIFEST)) as f:
      self.assertEqual(json.load(f), manifest)


class ConfigureTest(tf.test.TestCase):

  def test_sets_the_flag_to_a_folder_per_version_and_cpu(self):
    root = self.get_temp_dir()
    with mock.patch.dict(os.environ, {'TF_XLA_FLAGS': '--tf_xla_foo=1'}):
      folder = compile_cache.configure(root=root)
      self.assertEqual(os.path.dirname(folder), root)
      self.assertStartsWith(os.path.basename(folder),
                            f'tf-{tf.__version__}-')
      self.assertTrue(os.path.isdir(folder))
      self.assertEqual(
          os.environ['TF_XLA_FLAGS'],
          f'--tf_xla_foo=1 {compile_cache.FLAG}={folder}')
      self.assertEqual(compile_cache.active_folder(), folder)

  def test_disabled_leaves_the_environment_alone(self):
    with mock.patch.dict(os.environ, {'TF_XLA_FLAGS': ''}):
      self.assertIsNone(compile_cache.configure(
          enabled=False, root=self.get_temp_dir()))
      self.assertEqual(os.environ['TF_XLA_FLAGS'], '')
      self.assertIsNone(compile_cache.active_folder())

  def test_keeps_and_verifies_the_users_folder(self):
    mine = self.get_temp_dir()
    _write(mine, _NAME.format(0), b'unlisted')
    flags = f'{compile_cache.FLAG}={mine}'
    with mock.patch.dict(os.environ, {'TF_XLA_FLAGS': flags}):
      self.assertEqual(compile_cache.configure(root='/nonexistent'), mine)
      self.assertEqual(os.environ['TF_XLA_FLAGS'], flags)
    self.assertEqual(os.listdir(mine), [])

  def test_an_unwritable_root_means_no_cache_not_an_error(self):
    blocker = os.path.join(self.get_temp_dir(), 'file')
    _write(os.path.dirname(blocker), 'file', b'')
    with mock.patch.dict(os.environ, {'TF_XLA_FLAGS': ''}):
      self.assertIsNone(compile_cache.configure(root=blocker, quiet=True))
      self.assertEqual(os.environ['TF_XLA_FLAGS'], '')


class CorruptCacheRunTest(tf.test.TestCase):
  """Two tiny `bin/train.py` runs with XLA on one cache folder."""

  def _train(self, cache, workdir):
    env = dict(os.environ, TF_USE_LEGACY_KERAS='1',
               **{compile_cache.ENV_FOLDER: cache})
    env.pop('TF_XLA_FLAGS', None)
    return subprocess.run(
        [sys.executable, os.path.join(_REPO, 'bin', 'train.py'),
         '--dataset=synthetic', '--synthetic_num_ratings=1000',
         '--batch_size=100', '--candidate_sizes=2,4', '--hidden_units=8',
         '--method=fixed', '--jit_compile', '--checkpoint_every=0',
         f'--workdir={workdir}', '--restart'],
        env=env, capture_output=True, text=True, timeout=600, check=False)

  def test_a_corrupt_cache_does_not_break_the_next_run(self):
    cache = os.path.join(self.get_temp_dir(), 'cache')
    workdir = os.path.join(self.get_temp_dir(), 'run')
    first = self._train(cache, workdir)
    self.assertEqual(first.returncode, 0, first.stderr[-2000:])
    entries = glob.glob(os.path.join(cache, '*', 'xla_compile_cache__*.pb'))
    self.assertNotEmpty(entries)  # the CPU's programs are cached
    with open(glob.glob(os.path.join(cache, '*', 'manifest.json'))[0]) as f:
      self.assertCountEqual(json.load(f), map(os.path.basename, entries))
    # Garbage of the same size: TensorFlow alone fails the step with
    # "DataLossError: Can't parse ... as binary proto".
    for path in entries:
      size = os.path.getsize(path)
      _write(os.path.dirname(path), os.path.basename(path), b'\xff' * size)
    second = self._train(cache, workdir)
    self.assertEqual(second.returncode, 0, second.stderr[-2000:])
    self.assertTrue(os.path.exists(os.path.join(workdir, 'results.json')))
    for path in entries:  # compiled again and written afresh
      with open(path, 'rb') as f:
        self.assertNotEqual(f.read(16), b'\xff' * 16)


if __name__ == '__main__':
  tf.test.main()
