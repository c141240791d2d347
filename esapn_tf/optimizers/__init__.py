"""Optimizers with row-sparse state for embedding tables."""
