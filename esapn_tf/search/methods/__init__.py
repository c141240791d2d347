"""Size-selection methods, one class per method (`registry.method_class`).

The trainer (`training/trainer.py`) runs every method through the interface
of `base.Method` and never asks which one it runs (STYLE.md, "Layout").
"""
