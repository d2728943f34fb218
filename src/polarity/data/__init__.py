"""Datasets: the one registry of training sets and benchmarks, their loaders, the verl row
format and the synthetic task."""
