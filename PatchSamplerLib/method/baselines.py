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
    dist = np.sum((scaled - scaled[first]) ** 2, axis=1)
    return np.concatenate([[first], _greedy_farthest(scaled, dist, n - 1)]).astype(np.int64)


def fps_continued_indices(points: np.ndarray, chosen: np.ndarray, m: int, spacing=(1.0, 1.0, 1.0)) -> np.ndarray:
    """The next m indices of greedy FPS over (M, 3) `points` that continues from the (j, 3)
    positions `chosen` (same units as `points`, e.g. voxel index; need not be among them):
    each the point farthest (mm with `spacing`) from all chosen so far. Returns (m,) indices."""
    scale = np.asarray(spacing, np.float32)
    scaled = points * scale
    gaps = scaled[:, None, :] - (np.asarray(chosen, np.float32) * scale)[None]
    return _greedy_farthest(scaled, np.sum(gaps ** 2, axis=2).min(1), m)


def _greedy_farthest(scaled: np.ndarray, dist: np.ndarray, m: int) -> np.ndarray:
    """m greedy FPS steps over (M, 3) `scaled` points, `dist` (M,) their squared distance to
    the chosen set so far -> (m,) indices."""
    chosen = np.empty(max(m, 0), dtype=np.int64)
    for i in range(len(chosen)):
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
