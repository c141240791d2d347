"""Comparing methods over tasks and seeds (`bin/compare.py`, issue 3).

* `runner`: the cells (task x method x seed), running them in order,
  failures, progress and ETA, reuse of finished cells.
* `report`: `comparison.md`, `comparison.json` and the terminal summary.
* `plots`: the PNG figures under `plots/` (matplotlib, Agg backend).
* `pareto`: the Pareto grid (`bin/pareto.py`, issue 11): ESAPN under memory
  budgets, the other methods matched to its memory, FIXED as reference.
* `pareto_report`: `pareto.md`, `pareto.json` and `pareto_<task>.png`.
"""
