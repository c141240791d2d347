"""Export of a trained run for TensorFlow Serving, with only the live rows.

* `serving.params`: restores a run's checkpoint and turns it into compact
  NumPy parameters (one table per candidate size holding only the ids at
  that size, raw id -> (size, row) codes, BN folded) and the FIXED reference.
* `serving.module`: the `tf.Module` that is saved (`serving_default`,
  `predict_ranked`).
* `serving.export`: versioned, atomic SavedModel export in TF Serving's
  layout, with warm-up requests.
* `serving.report`: `export_report.json`, the bytes on disk against the
  FIXED-128 reference and the memory table.
* `serving.rest`: TF Serving's REST predict API answered in-process from a
  loaded export (`bin/serving_example.py`).
"""
