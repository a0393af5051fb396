"""Datasets: what a name means (catalog), reading them (TFDS, folders, built-in), pipelines."""
