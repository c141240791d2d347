"""`export_report.json`: bytes on disk of an export against FIXED-128.

The report compares the bytes of an export's `variables/` folder with those
of the FIXED reference (every id at the largest candidate size, same lookups
and MLP, exported the same way) and checks that the difference is the
embedding parameters implied by the run's memory table (issue 4's "within
5%"): the bytes of the shared parts (lookups, lifting maps, MLP, fallback
vectors, checkpoint metadata) are measured from the checkpoint's tensor list
and the `variables.index` file, and subtracted from the bytes on disk; what
remains is compared with 4 bytes per live embedding dimension.
"""

import datetime
import os
from typing import Any, Dict

import numpy as np
import tensorflow as tf

from esapn_tf.serving import params as params_lib

AGREEMENT_TOLERANCE = 0.05  # relative, issue 4's "within 5%"
FLOAT_BYTES = 4  # float32 embedding parameters
CATEGORIES = ('embedding_tables', 'lookups', 'lifting_maps', 'mlp',
              'fallback_vectors', 'checkpoint_metadata', 'other')
_OBJECT_GRAPH_KEY = '_CHECKPOINTABLE_OBJECT_GRAPH'
_MLP_NAMES = ('hidden_kernel', 'hidden_bias', 'out_kernel', 'out_bias')


def _category(key: str) -> str:
  if key == _OBJECT_GRAPH_KEY:
    return 'checkpoint_metadata'
  parts = key.split('/')
  if 'tables' in parts:
    return 'embedding_tables'
  if 'lookup' in parts:
    return 'lookups'
  if 'lift_kernels' in parts or 'lift_biases' in parts:
    return 'lifting_maps'
  if 'unknown_embedding' in parts:
    return 'fallback_vectors'
  if parts[0] in _MLP_NAMES:
    return 'mlp'
  return 'other'


def variables_breakdown(saved_model_dir: str) -> Dict[str, Any]:
  """Bytes of a SavedModel's `variables/` folder, on disk and by part.

  Args:
    saved_model_dir: a SavedModel folder.

  Returns:
    `{'variables_bytes': int (files on disk), 'saved_model_pb_bytes': int,
      'parts': {category: bytes}}`, the parts being the tensors' raw bytes
    (shape x dtype size; the object graph's serialized length) by
    `CATEGORIES`, with the `variables.index` file in
    'checkpoint_metadata'.
  """
  var_dir = os.path.join(saved_model_dir, 'variables')
  total = sum(os.path.getsize(os.path.join(var_dir, n))
              for n in os.listdir(var_dir))
  reader = tf.train.load_checkpoint(os.path.join(var_dir, 'variables'))
  dtypes = reader.get_variable_to_dtype_map()
  parts = dict.fromkeys(CATEGORIES, 0)
  for key, shape in reader.get_variable_to_shape_map().items():
    if dtypes[key] == tf.string:
      nbytes = sum(len(v) for v in np.ravel(reader.get_tensor(key)))
    else:
      nbytes = int(np.prod(shape, dtype=np.int64)) * dtypes[key].size
    parts[_category(key)] += int(nbytes)
  parts['checkpoint_metadata'] += os.path.getsize(
      os.path.join(var_dir, 'variables.index'))
  return {'variables_bytes': int(total),
          'saved_model_pb_bytes': os.path.getsize(
              os.path.join(saved_model_dir, 'saved_model.pb')),
          'parts': parts}


def _side_summary(p: params_lib.SideParams, reference_size: int):
  num_ids = len(p.vocab)
  return {'num_ids': num_ids,
          'rows_per_size': {str(d): int(t.shape[0])
                            for d, t in zip(p.sizes, p.tables)},
          'live_dims': p.live_dims,
          'embedding_parameter_ratio': p.live_dims / (num_ids * reference_size)}


def _export_summary(saved_model_dir: str, p: params_lib.ServingParams,
                    memory_dims: int, reference_size: int) -> Dict[str, Any]:
  """Bytes, shared parts and the memory-table check of one export."""
  summary = variables_breakdown(saved_model_dir)
  shared = sum(v for k, v in summary['parts'].items()
               if k != 'embedding_tables')
  embedding_bytes = summary['variables_bytes'] - shared
  expected = FLOAT_BYTES * memory_dims
  summary.update({
      'shared_bytes': shared,
      'embedding_bytes': embedding_bytes,
      'memory_table_dims': memory_dims,
      'memory_table_embedding_bytes': expected,
      'embedding_bytes_over_memory_table':
          embedding_bytes / expected if expected else float('nan'),
      'sides': {'user': _side_summary(p.user, reference_size),
                'item': _side_summary(p.item, reference_size)},
  })
  return summary


def build_report(run: params_lib.RestoredRun, export_dir: str,
                 compact: params_lib.ServingParams, reference_dir: str,
                 reference: params_lib.ServingParams) -> Dict[str, Any]:
  """The content of `export_report.json` (see the module docstring).

  Args:
    run: the restored run.
    export_dir: the compact SavedModel folder.
    compact: its parameters.
    reference_dir: the FIXED reference SavedModel folder.
    reference: its parameters.

  Returns:
    A JSON-ready dict; `agreement.within_tolerance` is the issue's check.
  """
  ref = run.reference_size
  recomputed = run.memory()
  memory, source = recomputed, 'checkpoint size indices'
  if run.results and 'memory' in run.results:
    memory, source = run.results['memory'], 'results.json'
  live = sum(memory[s]['total_dims'] for s in params_lib.SIDES)
  fixed = sum(memory[s]['fixed_dims'] for s in params_lib.SIDES)
  esapn = _export_summary(export_dir, compact, live, ref)
  fixed_summary = _export_summary(reference_dir, reference, fixed, ref)
  table_ratio = live / fixed
  bytes_ratio = esapn['embedding_bytes'] / fixed_summary['embedding_bytes']
  return {
      'workdir': os.path.abspath(run.workdir),
      'checkpoint': os.path.abspath(run.checkpoint),
      # False: no results.json, the last checkpoint of an unfinished run.
      'finished_run': run.results is not None,
      'created_utc': datetime.datetime.now(datetime.timezone.utc).strftime(
          '%Y-%m-%dT%H:%M:%SZ'),
      'method': run.config.search.method,
      'task': run.config.model.task,
      'candidate_sizes': list(run.config.embedding_sizes),
      'reference_size': ref,
      'unknown_id_fallback': (
          'tanh(BN(mean over the side\'s known ids of the lifted, pre-BN '
          'vector)); known_user/known_movie = false'),
      'export': esapn,
      'fixed_reference': fixed_summary,
      'variables_bytes_ratio':
          esapn['variables_bytes'] / fixed_summary['variables_bytes'],
      'embedding_parameter_ratio': {
          side: esapn['sides'][side]['embedding_parameter_ratio']
          for side in params_lib.SIDES},
      'memory_table': {
          'source': source,
          'matches_checkpoint': all(
              memory[s]['counts'] == recomputed[s]['counts']
              for s in params_lib.SIDES),
          'ratio': {s: memory[s]['ratio'] for s in params_lib.SIDES},
          'ratio_both_sides': table_ratio,
      },
      'agreement': {
          'what': ('(variables bytes - shared bytes) of the export over the '
                   'same for the FIXED reference, against the memory '
                   'table\'s live dims over FIXED dims (both sides)'),
          'embedding_bytes_ratio': bytes_ratio,
          'memory_table_ratio': table_ratio,
          'relative_difference': abs(bytes_ratio / table_ratio - 1.0),
          'tolerance': AGREEMENT_TOLERANCE,
          'within_tolerance':
              abs(bytes_ratio / table_ratio - 1.0) <= AGREEMENT_TOLERANCE,
      },
  }
