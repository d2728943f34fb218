"""Datasets: the verl row format, the synthetic task, hub training sets (benchmarks: evaluation)."""
