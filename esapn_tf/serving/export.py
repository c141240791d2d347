"""Versioned SavedModel export for TensorFlow Serving, and its memory report.

`export_run(workdir, export_dir)` writes `<export_dir>/<version>/`, TF
Serving's layout, where `version` is one more than the largest integer
folder already there (1 for the first export):

    <export_dir>/<version>/saved_model.pb
    <export_dir>/<version>/variables/            compact tables, maps, MLP,
                                                 raw-id hash tables
    <export_dir>/<version>/assets.extra/tf_serving_warmup_requests
    <export_dir>/<version>/export_report.json

Everything is written into a hidden temporary folder inside `export_dir`
(TF Serving ignores names that are not integers) and renamed into place, so
a failed export leaves no version folder behind.

`export_report.json` (`serving.report`) compares the bytes of `variables/`
with those of the FIXED-128 reference, exported the same way into the same
temporary folder and then deleted (or kept with `reference_dir`).
"""

import dataclasses
import errno
import logging
import os
import re
import shutil
import tempfile
from typing import Any, Dict, Optional

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import model_pb2
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_log_pb2

from esapn_tf import errors
from esapn_tf import files
from esapn_tf.serving import known_ids
from esapn_tf.serving import module as module_lib
from esapn_tf.serving import params as params_lib
from esapn_tf.serving import report as report_lib

WARMUP_FILE = os.path.join('assets.extra', 'tf_serving_warmup_requests')
REPORT_FILE = 'export_report.json'
_WARMUP_BATCH = 100  # pairs in the batched warm-up request


@dataclasses.dataclass(frozen=True)
class ExportResult:
  """What `export_run` wrote.

  Attributes:
    path: the new version folder, `<export_dir>/<version>`.
    version: its integer version.
    report: the content of its `export_report.json`.
    reference_path: the FIXED reference's version folder when it was kept
      (`reference_dir`), else ''.
  """
  path: str
  version: int
  report: Dict[str, Any]
  reference_path: str = ''


def versions(export_dir: str):
  """Sorted integer versions present in `export_dir` ([] if none/missing)."""
  if not os.path.isdir(export_dir):
    return []
  return sorted(int(n) for n in os.listdir(export_dir)
                if re.fullmatch(r'[0-9]+', n) and
                os.path.isdir(os.path.join(export_dir, n)))


def resolve(path: str) -> str:
  """A SavedModel folder: `path` itself or its latest integer version.

  Raises:
    errors.UserInputError: `path` is neither a SavedModel nor a folder of
      versions.
  """
  if os.path.isfile(os.path.join(path, 'saved_model.pb')):
    return path
  found = versions(path)
  if not found:
    raise errors.UserInputError(
        f'{path!r} is neither a SavedModel nor a folder of versions; pass an '
        'export from bin/export.py')
  return os.path.join(path, str(found[-1]))


def write_warmup_requests(path: str, user_ids: np.ndarray,
                          movie_ids: np.ndarray, model_name: str) -> int:
  """Writes TF Serving warm-up records (`PredictionLog` in a TFRecord file).

  Records: `serving_default` with one pair, with a batch of pairs (and an
  unknown pair), and `predict_ranked` for two users over 100 movies. Every
  input has the batch as its first dimension, the same in all inputs of a
  record, so that the file also warms up a server run with
  `--enable_batching` (which refuses scalar inputs and unequal first
  dimensions, and fails the model's load when a warm-up request fails).

  Args:
    path: the file, normally `<version>/assets.extra/tf_serving_warmup_requests`.
    user_ids: int64 `[n]` known raw user ids (n >= 1).
    movie_ids: int64 `[m]` known raw movie ids (m >= 1).
    model_name: the name the model is served under (`ModelSpec.name`).

  Returns:
    The number of records written.
  """
  def request(signature, inputs):
    req = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(
        name=model_name, signature_name=signature))
    for key, value in inputs.items():
      req.inputs[key].CopyFrom(tf.make_tensor_proto(value))
    return prediction_log_pb2.PredictionLog(
        predict_log=prediction_log_pb2.PredictLog(request=req))

  n = np.arange(_WARMUP_BATCH)
  users = np.asarray(user_ids, np.int64)[n % len(user_ids)]
  movies = np.asarray(movie_ids, np.int64)[n % len(movie_ids)]
  logs = [
      request(module_lib.SERVING_DEFAULT,
              {'user_id': users[:1], 'movie_id': movies[:1]}),
      request(module_lib.SERVING_DEFAULT,
              {'user_id': np.append(users, np.int64(-1)),
               'movie_id': np.append(movies, np.int64(-1))}),
      request(module_lib.PREDICT_RANKED,
              {'user_id': users[:2],
               'movie_ids': np.stack([movies, movies[::-1]])}),
  ]
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with tf.io.TFRecordWriter(path) as writer:
    for log in logs:
      writer.write(log.SerializeToString())
  return len(logs)


def save_servable(p: params_lib.ServingParams, path: str,
                  model_name: str = 'esapn') -> None:
  """Saves one SavedModel (with warm-up requests) at `path` (must not exist).

  Args:
    p: the serving parameters.
    path: the SavedModel folder to create.
    model_name: `ModelSpec.name` of the warm-up requests.
  """
  servable = module_lib.ServingModel(p)
  # tf.saved_model.save logs several INFO lines per call (renamed captured
  # inputs, sharding, fingerprint); keep the command line readable. A
  # filter, because TensorFlow resets the absl logger's level while saving.
  quiet = lambda record: record.levelno >= logging.WARNING
  loggers = [tf.get_logger(), logging.getLogger('absl')]
  for logger in loggers:
    logger.addFilter(quiet)
  try:
    tf.saved_model.save(servable, path, signatures=servable.signatures())
  finally:
    for logger in loggers:
      logger.removeFilter(quiet)
  write_warmup_requests(os.path.join(path, WARMUP_FILE), p.user.vocab,
                        p.item.vocab, model_name)


def _publish(tmp_path: str, export_dir: str) -> int:
  """Renames `tmp_path` to the next free version folder; returns it."""
  for _ in range(100):
    version = (versions(export_dir) or [0])[-1] + 1
    try:
      os.rename(tmp_path, os.path.join(export_dir, str(version)))
      return version
    except OSError as e:  # another export took this version meanwhile
      if e.errno not in (errno.EEXIST, errno.ENOTEMPTY):
        raise
  raise OSError(f'could not find a free version folder in {export_dir}')


def check_export_dir(export_dir: str) -> None:
  """Raises `errors.UserInputError` if `export_dir` cannot be written.

  Checks without creating anything: the folder, or its nearest existing
  parent, must be a writable directory.
  """
  path = os.path.abspath(export_dir)
  while not os.path.exists(path):
    path = os.path.dirname(path)
  if not os.path.isdir(path):
    raise errors.UserInputError(
        f'--export_dir {export_dir!r}: {path!r} is not a folder; pass a '
        'folder path')
  if not os.access(path, os.W_OK | os.X_OK):
    raise errors.UserInputError(
        f'--export_dir {export_dir!r}: {path!r} is not writable; pass a '
        'writable folder')


def _make_export_dir(export_dir: str) -> None:
  files.make_folder(export_dir, '--export_dir')


def export_run(workdir: str, export_dir: str, model_name: str = 'esapn',
               reference_dir: Optional[str] = None) -> ExportResult:
  """Exports a trained run for TF Serving, compact, with its memory report.

  Args:
    workdir: the run (`config.json`, `checkpoints/`, `results.json`).
    export_dir: the model's base folder; the export goes to
      `<export_dir>/<next version>/`.
    model_name: `ModelSpec.name` in the warm-up requests (TF Serving's
      `--model_name`).
    reference_dir: when set, the FIXED reference export is kept there as
      `<reference_dir>/<version>/` (e.g. for a latency comparison);
      otherwise it is only measured and deleted.

  Returns:
    The new version's path, number and report.

  Raises:
    errors.UserInputError: no finished run in `workdir`, or an unwritable
      `export_dir`.
  """
  run = params_lib.restore_run(workdir)
  # Ids that never trained are served as unknown (README, "Unknown ids").
  compact = known_ids.known_only(
      params_lib.compact_params(run.model, run.vocab), run.trained)
  reference = known_ids.known_only(
      params_lib.fixed_reference_params(run.model, run.vocab,
                                        run.reference_size), run.trained)
  _make_export_dir(export_dir)
  if reference_dir:
    _make_export_dir(reference_dir)
  temporary = []  # removed at the end, whatever happens

  def make_temporary(parent):
    try:
      temporary.append(tempfile.mkdtemp(prefix='.tmp-export-', dir=parent))
    except OSError as e:
      raise errors.UserInputError(
          f'cannot write in {parent!r} ({e.strerror}); pass a writable '
          'folder') from e
    return temporary[-1]

  try:
    model_path = os.path.join(make_temporary(export_dir), 'model')
    fixed_path = os.path.join(make_temporary(reference_dir or export_dir),
                              'fixed_reference')
    save_servable(compact, model_path, model_name)
    save_servable(reference, fixed_path, model_name)
    report = report_lib.build_report(run, model_path, compact, fixed_path,
                                     reference)
    files.atomic_write_json(os.path.join(model_path, REPORT_FILE), report)
    version = _publish(model_path, export_dir)
    reference_path = ''
    if reference_dir:
      reference_path = os.path.join(reference_dir,
                                    str(_publish(fixed_path, reference_dir)))
  finally:
    for folder in temporary:
      shutil.rmtree(folder, ignore_errors=True)
  return ExportResult(os.path.join(export_dir, str(version)), version, report,
                      reference_path)


def summary_text(result: ExportResult) -> str:
  """A few lines for the command line: path, bytes and the 5% check."""
  r = result.report
  e, f, a = r['export'], r['fixed_reference'], r['agreement']
  lines = []
  if not r.get('finished_run', True):
    lines.append(
        f"note: {r['workdir']} holds an unfinished run (no results.json); "
        f"exported its last checkpoint, {os.path.basename(r['checkpoint'])}. "
        'Run the same bin/train.py command to finish it, then export again')
  lines += [
      f'Exported version {result.version} to {result.path}',
      f"  variables/: {e['variables_bytes']:,} bytes; FIXED-"
      f"{r['reference_size']}: {f['variables_bytes']:,} bytes "
      f"(ratio {r['variables_bytes_ratio']:.4f})",
      f"  shared parts: {e['shared_bytes']:,} / {f['shared_bytes']:,} bytes; "
      f"embedding bytes ratio {a['embedding_bytes_ratio']:.4f} vs memory "
      f"table {a['memory_table_ratio']:.4f} (difference "
      f"{100 * a['relative_difference']:.2f}%, "
      f"{'within' if a['within_tolerance'] else 'OUTSIDE'} "
      f"{100 * a['tolerance']:.0f}%)",
      '  embedding parameters per side: ' + ', '.join(
          f'{side} {ratio:.4f}' for side, ratio in
          r['embedding_parameter_ratio'].items()),
  ]
  if result.reference_path:
    lines.append(f'  FIXED reference kept at {result.reference_path}')
  return '\n'.join(lines)
