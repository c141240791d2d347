"""What `bin/benchmark.py` measures (STYLE.md: `bin/` keeps only its flags)."""
