"""Tests of PatchSamplerLib.data.synthetic: the vertebra-like and kidney-like shape families."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from scipy.spatial import ConvexHull, Delaunay

from PatchSamplerLib.data.synthetic import FAMILIES, FAMILY_VERSIONS, GRIDS, make_shape, make_shapes

SMALL = 0.25


@pytest.fixture(scope="module")
def full_vertebra():
    return make_shape("vertebra", 0, 0)


@pytest.fixture(scope="module")
def full_kidney():
    return make_shape("kidney", 0, 0)


def _touches_border(mask: np.ndarray) -> bool:
    return bool(mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any()
                or mask[:, :, 0].any() or mask[:, :, -1].any())


def _components(mask: np.ndarray) -> int:
    return ndimage.label(mask, structure=ndimage.generate_binary_structure(3, 1))[1]


def test_full_resolution_grids(full_vertebra, full_kidney):
    assert full_vertebra.shape == (128, 120, 90) and full_vertebra.spacing == (1.0, 1.0, 1.0)
    assert full_kidney.shape == (85, 85, 110) and full_kidney.spacing == (1.5, 1.5, 1.5)
    assert GRIDS["vertebra"].shape == (128, 120, 90) and GRIDS["kidney"].spacing_mm == 1.5
    for vol in (full_vertebra, full_kidney):
        assert vol.mask.dtype == bool
        assert 0.01 < vol.mask.mean() < 0.5
        assert not _touches_border(vol.mask)


@pytest.mark.parametrize("family", FAMILIES)
def test_deterministic_and_indices_differ(family):
    a = make_shape(family, 5, 3, SMALL)
    b = make_shape(family, 5, 3, SMALL)
    assert np.array_equal(a.mask, b.mask) and a.spacing == b.spacing
    assert not np.array_equal(a.mask, make_shape(family, 5, 4, SMALL).mask)
    assert not np.array_equal(a.mask, make_shape(family, 6, 3, SMALL).mask)
    listed = make_shapes(family, 2, seed=5, scale=SMALL, start=3)
    assert np.array_equal(listed[0].mask, a.mask)


@pytest.mark.parametrize("family", ["vertebra-anatomical", "kidney-anatomical"])
def test_anatomical_families_are_on_the_grids_of_the_solid_ones(family):
    solid = family.split("-")[0]
    a, s = make_shape(family, 0, 0, SMALL), make_shape(solid, 0, 0, SMALL)
    assert a.shape == s.shape and a.spacing == pytest.approx(s.spacing)
    assert FAMILY_VERSIONS[family].startswith("anatomical") and FAMILY_VERSIONS[solid] == "solid-1"
    assert _components(a.mask) >= 1 and a.voxel_count > 0


def test_small_scale_grids():
    v = make_shape("vertebra", 0, 0, SMALL)
    assert v.shape == (32, 30, 22) and v.spacing[0] == pytest.approx(4.0)
    k = make_shape("kidney", 0, 0, SMALL)
    assert k.shape == (21, 21, 28)
    # the physical extent is (close to) the full-resolution one: the anatomy does not shrink
    np.testing.assert_allclose(np.array(k.shape) * k.spacing, np.array((85, 85, 110)) * 1.5, rtol=0.05)


@pytest.mark.parametrize("family", FAMILIES)
def test_shapes_do_not_touch_the_border(family):
    for vol in make_shapes(family, 10, seed=1, scale=SMALL):
        assert vol.voxel_count > 0
        assert not _touches_border(vol.mask)


def test_vertebra_has_a_foramen_and_is_connected(full_vertebra):
    mask = full_vertebra.mask
    four = ndimage.generate_binary_structure(2, 1)
    enclosed_slices = []
    for z in range(mask.shape[2]):
        background, count = ndimage.label(~mask[:, :, z], structure=four)
        if count > 1:  # a background component not connected to the slice border's one
            border = set(np.unique(np.concatenate([background[0], background[-1],
                                                   background[:, 0], background[:, -1]]))) - {0}
            if set(range(1, count + 1)) - border:
                enclosed_slices.append(z)
    assert len(enclosed_slices) >= 5  # the arch encloses the hole over a range of slices
    assert _components(mask) == 1


def _filled_hull_ratio(mask: np.ndarray) -> float:
    """Voxels whose centre lies in the convex hull of the mask's voxel centres, over the voxel
    count: exactly 1 for a digitised convex solid, > 1 for a shape with a concavity."""
    points = np.argwhere(mask).astype(float)
    hull = ConvexHull(points)
    lo, hi = points.min(0).astype(int), points.max(0).astype(int)
    grid = np.stack(np.meshgrid(*[np.arange(a, b + 1) for a, b in zip(lo, hi)], indexing="ij"), -1)
    grid = grid.reshape(-1, 3).astype(float)
    inside = Delaunay(points[hull.vertices]).find_simplex(grid) >= 0
    return float(inside.sum()) / float(mask.sum())


def test_filled_hull_ratio_is_one_for_a_convex_shape():
    g = np.meshgrid(*[np.arange(n) for n in (30, 26, 40)], indexing="ij")
    ellipsoid = ((g[0] - 14.5) / 12.0) ** 2 + ((g[1] - 12.2) / 9.0) ** 2 + ((g[2] - 19.7) / 17.0) ** 2 <= 1
    assert _filled_hull_ratio(ellipsoid) == pytest.approx(1.0, abs=1e-3)


def test_kidney_is_connected_and_not_convex(full_kidney):
    mask = full_kidney.mask
    assert _components(mask) == 1
    # the hilum: the convex hull holds > 5 % more voxels than the kidney itself
    assert _filled_hull_ratio(mask) > 1.05


@pytest.mark.parametrize("family", ["vertebra", "kidney"])
def test_shape_parameters_vary(family):
    counts = np.array([v.voxel_count for v in make_shapes(family, 10, seed=2, scale=0.5)], float)
    assert counts.std() / counts.mean() > 0.05


def test_invalid_arguments():
    with pytest.raises(ValueError, match="unknown shape family"):
        make_shape("liver", 0, 0)
    with pytest.raises(ValueError, match="scale"):
        make_shape("kidney", 0, 0, scale=5.0)
