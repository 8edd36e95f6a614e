"""Baseline samplers [T §4.3]: farthest point sampling (FPS) and random sampling (RS).

Both choose N occupied voxels as patch centres (voxel aligned) and are reproducible from a
seed. Distances are measured in voxel-index space (isotropic data in the thesis); pass
`spacing` to measure in millimetres on anisotropic data.
"""
from __future__ import annotations

import numpy as np

from PatchSamplerLib.method.pointcloud import dense_cloud


def _require_points(points: np.ndarray, n: int) -> None:
    if n < 1:
        raise ValueError(f"the number of patches must be >= 1, got {n}")
    if len(points) == 0:
        raise ValueError("the mask is empty: no occupied voxel to place a patch on")


def random_centres(mask: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """(n, 3) float32 voxel indices of n occupied voxels drawn uniformly without replacement
    (with replacement only when the mask has fewer than n voxels)."""
    points = dense_cloud(mask)
    _require_points(points, n)
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(points), size=n, replace=len(points) < n)
    return points[pick]


def farthest_point_indices(points: np.ndarray, n: int, first: int, spacing=(1.0, 1.0, 1.0)) -> np.ndarray:
    """Greedy FPS on (M, 3) points starting from index `first`; returns (n,) indices."""
    scaled = points * np.asarray(spacing, np.float32)
    chosen = np.empty(n, dtype=np.int64)
    chosen[0] = first
    dist = np.sum((scaled - scaled[first]) ** 2, axis=1)
    for i in range(1, n):
        chosen[i] = int(np.argmax(dist))
        dist = np.minimum(dist, np.sum((scaled - scaled[chosen[i]]) ** 2, axis=1))
    return chosen


def fps_centres(mask: np.ndarray, n: int, seed: int = 0, spacing=(1.0, 1.0, 1.0)) -> np.ndarray:
    """(n, 3) float32 voxel indices by FPS over the occupied voxels from a random first voxel."""
    points = dense_cloud(mask)
    _require_points(points, n)
    first = int(np.random.default_rng(seed).integers(len(points)))
    return points[farthest_point_indices(points, n, first, spacing)]


def extreme_fps_centres(mask: np.ndarray, n: int, spacing=(1.0, 1.0, 1.0)) -> np.ndarray:
    """(n, 3) float32 voxel indices by FPS from the occupied voxel farthest (mm) from the
    centroid: deterministic, so the same shape always gives the same, consistently ordered
    centres (the learned sampler's FPS initialisation imitates these)."""
    points = dense_cloud(mask)
    _require_points(points, n)
    scaled = points * np.asarray(spacing, np.float32)
    first = int(np.argmax(np.sum((scaled - scaled.mean(0)) ** 2, axis=1)))
    return points[farthest_point_indices(points, n, first, spacing)]
