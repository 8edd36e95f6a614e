"""Shared fixtures and helpers for the PatchSamplerLib unit tests (kept small and fast)."""
from __future__ import annotations

import os
import sys

import numpy as np
import pytest

# ITK's default thread pool (slicer-core's vtkITK filters) can crash the interpreter at exit;
# the platform threader does not. Must be set before ITK makes its first threader.
os.environ.setdefault("ITK_GLOBAL_DEFAULT_THREADER", "Platform")

# pytest-xdist (`-n 2`, the README's test command): each worker process, and the command-line
# processes its tests start, uses one torch / OpenMP thread -- two processes of two threads each
# on two cores run several times slower than one thread each. Set before torch is imported.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"

# make `import PatchSamplerLib` work when pytest is run from any folder
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)


def rotation_matrix(rx: float, ry: float, rz: float) -> np.ndarray:
    """(3, 3) proper rotation (det +1) from angles in radians about x, y, z."""
    cx, sx, cy, sy, cz, sz = np.cos(rx), np.sin(rx), np.cos(ry), np.sin(ry), np.cos(rz), np.sin(rz)
    mx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    my = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    mz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return mz @ my @ mx


def ball(shape, centre, radius, spacing=(1.0, 1.0, 1.0)) -> np.ndarray:
    """Boolean (X, Y, Z) ball of `radius` mm around `centre` (voxel index), voxel centres tested."""
    grids = np.meshgrid(*[np.arange(n, dtype=float) for n in shape], indexing="ij")
    d2 = sum(((g - c) * s) ** 2 for g, c, s in zip(grids, centre, spacing))
    return d2 <= radius * radius


@pytest.fixture
def oblique_direction() -> np.ndarray:
    """A real, oblique rotation matrix (columns = world directions of the i, j, k axes)."""
    d = rotation_matrix(0.3, -0.5, 0.8)
    assert np.allclose(d @ d.T, np.eye(3)) and np.isclose(np.linalg.det(d), 1.0)
    assert np.all(np.abs(d) > 1e-2)  # oblique: no axis aligned with a world axis
    return d


@pytest.fixture
def anisotropic_spacing() -> tuple[float, float, float]:
    return (0.7, 1.3, 2.5)


@pytest.fixture
def nonzero_origin() -> np.ndarray:
    return np.array([-12.5, 40.25, 7.75])
