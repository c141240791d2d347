"""Where each method puts its memory on the planted stream (issue 11).

Runs FIXED-128, ESAPN under an item budget, and `random` and `threshold`
matched per side to ESAPN's final memory, on `data.planted.generate()`
(prequential test part), and reports per method the mean item dims of
rich and of plain movies and the test accuracy on each kind. The right
allocation puts the dims on the rich movies (`data/planted.py`).
"""

from typing import Any, Dict, List

import numpy as np
import tensorflow as tf

from esapn_tf import config as config_lib
from esapn_tf.data import planted as planted_lib
from esapn_tf.data import stream as stream_lib
from esapn_tf.training import trainer as trainer_lib


def run_method(s: stream_lib.Stream, rich_rows: np.ndarray, method: str,
               seed: int, **search) -> Dict[str, Any]:
  """One run through the trainer's step; the per-kind figures.

  Args:
    s: the planted stream (`data.planted.generate`, built binary).
    rich_rows: bool `[num_items]`, True for the rich movies' rows.
    method: a `--method`.
    seed: seed of the run.
    **search: `SearchConfig` fields (budgets).

  Returns:
    {'method', 'rich_dims', 'plain_dims' (mean item dims per kind),
     'user_ratio', 'item_ratio', 'rich_accuracy', 'plain_accuracy',
     'accuracy' (test part, prequential)}.
  """
  tf.keras.utils.set_random_seed(seed)
  cfg = config_lib.ExperimentConfig(
      search=config_lib.SearchConfig(method=method, **search),
      train=config_lib.TrainConfig(batch_size=500, seed=seed))
  t = trainer_lib.Trainer(cfg, s)
  hits = np.zeros((2, 2))  # [rich?, (correct, count)]
  for lo, hi in ((0, s.num_train), (s.num_train, s.num_examples)):
    for batch in stream_lib.make_dataset(s, lo, hi, 500):
      if lo:
        correct = t.core.evaluate(batch)['correct'].numpy()
        rich = rich_rows[batch['item'].numpy()]
        for k in (0, 1):
          hits[k] += (correct[rich == k].sum(), np.sum(rich == k))
      t.learn(batch)
      t.position.assign_add(int(batch['user'].shape[0]))
  dims = np.asarray(t.sizes)[t.core.embeddings['item'].size_index.numpy()]
  memory = t.memory()
  return {'method': method, 'rich_dims': float(dims[rich_rows].mean()),
          'plain_dims': float(dims[~rich_rows].mean()),
          'user_ratio': memory['user']['ratio'],
          'item_ratio': memory['item']['ratio'],
          'rich_accuracy': hits[1, 0] / hits[1, 1],
          'plain_accuracy': hits[0, 0] / hits[0, 1],
          'accuracy': hits[:, 0].sum() / hits[:, 1].sum()}


def run_planted(item_budget: float = 0.2, seed: int = 0
                ) -> List[Dict[str, Any]]:
  """The four runs (module docstring); one dict per method."""
  r = planted_lib.generate(seed=seed)
  s = stream_lib.build_stream(r, 'binary', 'random', 0.8, seed)
  rich_rows = s.item_vocab <= 50  # raw ids 1..num_rich (the default 50)
  rows = [run_method(s, rich_rows, 'fixed', seed)]
  esapn = run_method(s, rich_rows, 'esapn', seed,
                     item_memory_budget=item_budget)
  rows.append(esapn)
  for method in ('random', 'threshold'):
    rows.append(run_method(s, rich_rows, method, seed,
                           user_memory_budget=esapn['user_ratio'],
                           item_memory_budget=esapn['item_ratio']))
  return rows


def table(rows: List[Dict[str, Any]]) -> str:
  """The rows as a Markdown table."""
  lines = ['| method | rich movie dims | plain movie dims | item ratio | '
           'test accuracy, rich | test accuracy, plain | test accuracy |',
           '|---|---|---|---|---|---|---|']
  for r in rows:
    lines.append(f"| {r['method']} | {r['rich_dims']:.1f} | "
                 f"{r['plain_dims']:.1f} | {r['item_ratio']:.3f} | "
                 f"{r['rich_accuracy']:.4f} | {r['plain_accuracy']:.4f} | "
                 f"{r['accuracy']:.4f} |")
  return '\n'.join(lines)
