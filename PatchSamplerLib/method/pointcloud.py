"""Voxel grid -> point cloud [T §3.2, §4.4.1].

1. `dense_cloud`: indices (i, j, k) of all occupied voxels.
2. `sobol_downsample`: n = 2048 Sobol points in [0, 1]^3, each matched to its nearest point
   of the min-max normalised dense cloud (KD-tree). Duplicates may occur; n rows are kept.
   With fewer occupied voxels than n this still returns n rows: several Sobol points then
   pick the same voxel (sampling with repetition), it never fails.
3. `CloudNormalisation`: maps voxel index space to the sampler's [-0.5, 0.5]^3 and back
   (phi_mu and phi_mu^-1). The thesis does not say whether the scale is per axis; we use ONE
   isotropic scale (the largest extent) so the shape is not distorted.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from PatchSamplerLib.checkpoints import SOBOL_DIR

DEFAULT_CLOUD_SIZE = 2048
SOBOL_TABLES = {(DEFAULT_CLOUD_SIZE, 0): "sobol_d3_n2048_seed0.npy"}   # (n, seed) -> file in Resources/Sobol/


def dense_cloud(mask: np.ndarray) -> np.ndarray:
    """(X, Y, Z) bool mask -> (M, 3) float32 voxel indices (i, j, k) of occupied voxels."""
    return np.argwhere(mask).astype(np.float32)


def sobol_downsample(points: np.ndarray, n: int = DEFAULT_CLOUD_SIZE, seed: int = 0) -> np.ndarray:
    """(M, 3) dense cloud -> (n, 3) nearest dense points to n scrambled-Sobol points [T eq. 3.2].

    Raises ValueError on an empty cloud."""
    from scipy.spatial import cKDTree

    if len(points) == 0:
        raise ValueError("cannot downsample an empty point cloud (the mask has no foreground)")
    lo, hi = points.min(0), points.max(0)
    unit = (points - lo) / np.maximum(hi - lo, 1e-6)
    _, nearest = cKDTree(unit).query(sobol_points(n, seed))
    return points[nearest].astype(np.float32)


def sobol_points(n: int = DEFAULT_CLOUD_SIZE, seed: int = 0) -> np.ndarray:
    """(n, 3) float64 in [0, 1)^3: `scipy.stats.qmc.Sobol(d=3, scramble=True, seed=seed).random(n)`.
    The default (2,048 points, seed 0: every learned-sampler run's cloud) is read from the table
    SciPy wrote (Resources/Sobol/, `SOBOL_TABLES`; the tests check it against SciPy): importing
    scipy.stats took 0.5-1.4 s of each such run on the 2-core CPU. Other sizes and seeds, or a
    missing table, come from SciPy."""
    table = SOBOL_DIR / SOBOL_TABLES.get((int(n), int(seed)), "-")
    if table.is_file():
        return np.load(table)
    from scipy.stats import qmc
    return qmc.Sobol(d=3, scramble=True, seed=seed).random(n)


@dataclass(frozen=True)
class CloudNormalisation:
    """phi_mu: voxel index -> [-0.5, 0.5]^3 via (x - centre) / scale, one isotropic scale.

    centre: (3,) voxel index of the bounding-box centre of the cloud; scale: largest extent
    (voxels), at least 1."""
    centre: tuple[float, float, float]
    scale: float

    @classmethod
    def fit(cls, points: np.ndarray) -> "CloudNormalisation":
        lo, hi = points.min(0), points.max(0)
        return cls(tuple(float(c) for c in (lo + hi) / 2.0), float(max((hi - lo).max(), 1.0)))

    def forward(self, index):
        """(..., 3) voxel index -> (..., 3) normalised; numpy or torch."""
        return (index - _like(index, self.centre)) / self.scale

    def inverse(self, normalised):
        """(..., 3) normalised -> (..., 3) voxel index; numpy or torch (differentiable)."""
        return normalised * self.scale + _like(normalised, self.centre)


def _like(x, values):
    if isinstance(x, np.ndarray):
        return np.asarray(values, dtype=x.dtype)
    return x.new_tensor(values)


def simplified_cloud(mask: np.ndarray, n: int = DEFAULT_CLOUD_SIZE, seed: int = 0):
    """Mask -> ((n, 3) normalised cloud in [-0.5, 0.5]^3, its CloudNormalisation)."""
    cloud = sobol_downsample(dense_cloud(mask), n, seed)
    norm = CloudNormalisation.fit(cloud)
    return norm.forward(cloud).astype(np.float32), norm
