"""Tune search spaces for the platform's axes: capacity, embedding dimension, augmentation noise."""

from search_spaces.axes import DISTRIBUTIONS, capacity, distribution, grid, log2_range

__all__ = ["DISTRIBUTIONS", "capacity", "distribution", "grid", "log2_range"]
