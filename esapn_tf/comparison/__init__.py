"""Comparing methods over tasks and seeds (`bin/compare.py`, issue 3).

* `runner`: the cells (task x method x seed), running them in order,
  failures, progress and ETA, reuse of finished cells.
* `report`: `comparison.md`, `comparison.json` and the terminal summary.
* `plots`: the PNG figures under `plots/` (matplotlib, Agg backend).
"""
