"""Ratings readers, the synthetic generator and the training stream."""
