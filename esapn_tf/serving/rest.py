"""TF Serving's REST predict API, answered in-process from a loaded export.

`predict(signatures, body)` takes the JSON body of a
`POST /v1/models/<name>:predict` request and returns the body TF Serving
answers with, computed through the SavedModel's signatures (no server):

* row format, `{"signature_name": s, "instances": [{input: value}, ...]}`:
  the instances are stacked along a new first dimension, and the answer is
  `{"predictions": [{output: value}, ...]}`, one object per instance;
* columnar format, `{"signature_name": s, "inputs": {input: value}}`: each
  value is one tensor, and the answer is `{"outputs": {output: value}}`.

The conversion follows TF Serving's `util/json_tensor.cc` (row format: every
input of every instance, stacked; the first dimension of every output is
the number of instances). Floats are written with 9 significant digits, as
the server writes float32. `EXAMPLE_REQUESTS` are the README's examples
("Serving with TensorFlow Serving"); `bin/serving_example.py` prints them
with their answers.
"""

import json
from typing import Any, Callable, Dict, List, Mapping

import numpy as np
import tensorflow as tf

from esapn_tf.serving import module as module_lib

# The README's two requests: three (user, movie) pairs, the last movie never
# seen in training, and one user's four candidates ranked.
EXAMPLE_REQUESTS = (
    {'signature_name': module_lib.SERVING_DEFAULT,
     'instances': [{'user_id': 1, 'movie_id': 1},
                   {'user_id': 1, 'movie_id': 2571},
                   {'user_id': 1, 'movie_id': 999999}]},
    {'signature_name': module_lib.PREDICT_RANKED,
     'instances': [{'user_id': 1, 'movie_ids': [1, 2571, 999999, 50]}]},
)
# Order of the outputs in an answer (the server's order is not specified).
_OUTPUT_ORDER = ('probability', 'probabilities', 'predicted_class',
                 'movie_ids', 'scores', 'known_user', 'known_movie')


def request_inputs(body: Mapping[str, Any]) -> Dict[str, np.ndarray]:
  """The int64 input tensors of a REST predict body (row or columnar).

  Args:
    body: the parsed JSON body, with `instances` (a list of objects, one
      per example) or `inputs` (an object of one value per input).

  Returns:
    {input name: int64 array}; in row format each array has the number of
    instances as its first dimension.

  Raises:
    ValueError: neither or both of `instances` and `inputs`, no instances,
      or instances with different keys or shapes (the server answers 400).
  """
  if ('instances' in body) == ('inputs' in body):
    raise ValueError("the body needs exactly one of 'instances' and 'inputs'")
  if 'inputs' in body:
    return {k: np.asarray(v, np.int64) for k, v in body['inputs'].items()}
  instances = body['instances']
  if not instances:
    raise ValueError("no values in 'instances'")
  keys = set(instances[0])
  for i, instance in enumerate(instances):
    if set(instance) != keys:
      raise ValueError(f'instance {i} has keys {sorted(instance)}; expected '
                       f'{sorted(keys)}')
  try:
    return {k: np.stack([np.asarray(x[k], np.int64) for x in instances])
            for k in sorted(keys)}
  except ValueError as e:
    raise ValueError(f'instances of different shapes: {e}') from e


def _json_value(x: np.ndarray):
  """A NumPy value as JSON: floats to 9 significant digits, as TF Serving."""
  if x.dtype.kind == 'f':
    return np.vectorize(lambda v: float(f'{v:.9g}'), otypes=[object])(
        x).tolist() if x.ndim else float(f'{x:.9g}')
  return x.tolist()


def _ordered(outputs: Mapping[str, Any]) -> Dict[str, Any]:
  rank = {k: i for i, k in enumerate(_OUTPUT_ORDER)}
  return {k: outputs[k] for k in sorted(outputs,
                                        key=lambda k: (rank.get(k, 99), k))}


def predict(signatures: Mapping[str, Callable[..., Dict[str, tf.Tensor]]],
            body: Mapping[str, Any]) -> Dict[str, Any]:
  """Answers a REST predict body as TF Serving would.

  Args:
    signatures: a loaded SavedModel's `signatures`
      (`tf.saved_model.load(path).signatures`).
    body: the parsed JSON body; `signature_name` defaults to
      `serving_default`.

  Returns:
    `{"predictions": [...]}` (row format) or `{"outputs": {...}}`
    (columnar), values as JSON types.

  Raises:
    ValueError: a malformed body (`request_inputs`) or an unknown
      signature.
    tf.errors.InvalidArgumentError: inputs of the wrong shape.
  """
  name = body.get('signature_name', module_lib.SERVING_DEFAULT)
  if name not in signatures:
    raise ValueError(f'unknown signature {name!r}; the export has '
                     f'{sorted(signatures)}')
  inputs = request_inputs(body)
  outputs = {k: v.numpy() for k, v in signatures[name](
      **{k: tf.constant(v) for k, v in inputs.items()}).items()}
  if 'inputs' in body:
    return {'outputs': _ordered({k: _json_value(v)
                                 for k, v in outputs.items()})}
  count = len(body['instances'])
  return {'predictions': [_ordered({k: _json_value(v[i])
                                    for k, v in outputs.items()})
                          for i in range(count)]}


def curl_text(body: Mapping[str, Any], model_name: str = 'esapn',
              port: int = 8501) -> str:
  """The `curl` command that sends `body` to a local server, one instance
  per line."""
  head = f'curl -d \'{{"signature_name": "{body["signature_name"]}",\n'
  pad = ' ' * 10
  if 'inputs' in body:
    payload = f'{pad}"inputs": {json.dumps(body["inputs"])}}}\''
  else:
    items = [json.dumps(x) for x in body['instances']]
    payload = (f'{pad}"instances": [' + (',\n' + pad + ' ' * 14).join(items)
               + ']}\'')
  return (f'{head}{payload} \\\n  http://localhost:{port}/v1/models/'
          f'{model_name}:predict')


def response_text(response: Mapping[str, Any]) -> str:
  """An answer as JSON, one prediction per line (the README's layout)."""
  if 'outputs' in response:
    return json.dumps(response)
  lines: List[str] = [json.dumps(p) for p in response['predictions']]
  return '{"predictions": [\n  ' + ',\n  '.join(lines) + ']}'
