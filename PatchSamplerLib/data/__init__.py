"""Datasets: synthetic shape families, loaders, splits."""
