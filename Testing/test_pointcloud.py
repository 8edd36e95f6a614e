"""Tests of PatchSamplerLib.method.pointcloud: dense cloud, Sobol downsampling, normalisation."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from PatchSamplerLib.method.pointcloud import (
                                               DEFAULT_CLOUD_SIZE,
                                               CloudNormalisation,
                                               dense_cloud,
                                               simplified_cloud,
                                               sobol_downsample,
                                               sobol_points,
                                               )

from conftest import ball


@pytest.fixture
def box_mask():
    """An elongated (anisotropic-looking) box: extents 20 x 8 x 5 voxels (index extents 19, 7, 4)."""
    mask = np.zeros((30, 16, 12), bool)
    mask[3:23, 4:12, 5:10] = True
    return mask


def _row_set(a):
    return {tuple(r) for r in np.asarray(a).tolist()}


def test_dense_cloud_is_occupied_indices():
    mask = np.zeros((4, 5, 6), bool)
    mask[1, 2, 3] = mask[3, 0, 5] = True
    cloud = dense_cloud(mask)
    assert cloud.dtype == np.float32 and cloud.shape == (2, 3)
    assert _row_set(cloud) == {(1.0, 2.0, 3.0), (3.0, 0.0, 5.0)}


def test_sobol_downsample_rows_from_dense_cloud(box_mask):
    dense = dense_cloud(box_mask)
    assert len(dense) == 800
    out = sobol_downsample(dense, 256, seed=3)
    assert out.shape == (256, 3) and out.dtype == np.float32
    assert _row_set(out) <= _row_set(dense)
    # a space-filling sample: it spreads over the shape (many distinct voxels, both ends reached)
    assert len(_row_set(out)) > 150
    assert out[:, 0].min() <= 5 and out[:, 0].max() >= 20


def test_sobol_downsample_default_size_and_determinism():
    dense = dense_cloud(ball((30, 30, 30), (14.5, 14.5, 14.5), 12.0))
    a = sobol_downsample(dense, seed=7)
    assert a.shape == (DEFAULT_CLOUD_SIZE, 3)
    assert np.array_equal(a, sobol_downsample(dense, seed=7))
    assert not np.array_equal(a, sobol_downsample(dense, seed=8))


def test_sobol_downsample_fewer_voxels_than_n_repeats():
    mask = np.zeros((10, 10, 10), bool)
    mask[2, 3, 1:9] = True
    mask[5, 5, 5] = mask[7, 1, 2] = True
    dense = dense_cloud(mask)
    assert len(dense) == 10
    out = sobol_downsample(dense, 2048, seed=0)
    assert out.shape == (2048, 3)
    assert _row_set(out) <= _row_set(dense)
    assert len(_row_set(out)) > 1  # repetition, but not a single voxel repeated


def test_sobol_downsample_single_voxel():
    out = sobol_downsample(np.array([[3.0, 4.0, 5.0]], np.float32), 64)
    assert out.shape == (64, 3) and np.all(out == [3, 4, 5])


def test_sobol_downsample_empty_raises():
    with pytest.raises(ValueError, match="empty"):
        sobol_downsample(np.zeros((0, 3), np.float32), 16)
    with pytest.raises(ValueError, match="empty"):
        simplified_cloud(np.zeros((5, 5, 5), bool), 16)


def test_normalisation_numpy_round_trip_and_range(box_mask):
    cloud = dense_cloud(box_mask)
    norm = CloudNormalisation.fit(cloud)
    assert norm.centre == pytest.approx((12.5, 7.5, 7.0))
    assert norm.scale == pytest.approx(19.0)
    x = norm.forward(cloud)
    assert x.dtype == cloud.dtype
    assert x.min() >= -0.5 - 1e-6 and x.max() <= 0.5 + 1e-6
    extent = x.max(0) - x.min(0)
    assert extent.max() == pytest.approx(1.0, abs=1e-6)
    # one isotropic scale: the aspect ratio of the shape is preserved (19 : 7 : 4)
    np.testing.assert_allclose(extent, np.array([19.0, 7.0, 4.0]) / 19.0, atol=1e-6)
    # centred on the bounding box
    np.testing.assert_allclose((x.max(0) + x.min(0)) / 2, 0.0, atol=1e-6)
    np.testing.assert_allclose(norm.inverse(x), cloud, atol=1e-5)


def test_normalisation_torch_round_trip_and_gradient(box_mask):
    cloud = dense_cloud(box_mask)
    norm = CloudNormalisation.fit(cloud)
    pts = torch.tensor(cloud[:50], dtype=torch.float64)
    y = norm.forward(pts)
    assert isinstance(y, torch.Tensor) and y.dtype == torch.float64
    np.testing.assert_allclose(y.numpy(), norm.forward(cloud[:50].astype(np.float64)), atol=1e-12)
    g = y.clone().requires_grad_(True)
    back = norm.inverse(g)
    torch.testing.assert_close(back, pts)
    back.sum().backward()
    assert g.grad is not None
    torch.testing.assert_close(g.grad, torch.full_like(g, norm.scale))


def test_normalisation_single_point_scale_floor():
    norm = CloudNormalisation.fit(np.array([[2.0, 3.0, 4.0]]))
    assert norm.scale == 1.0
    np.testing.assert_allclose(norm.forward(np.array([[2.0, 3.0, 4.0]])), 0.0)


def test_simplified_cloud(box_mask):
    cloud, norm = simplified_cloud(box_mask, 512, seed=1)
    assert cloud.shape == (512, 3) and cloud.dtype == np.float32
    assert cloud.min() >= -0.5 - 1e-6 and cloud.max() <= 0.5 + 1e-6
    back = norm.inverse(cloud)
    np.testing.assert_allclose(back, np.round(back), atol=1e-4)  # maps back onto voxel indices
    assert _row_set(np.round(back)) <= _row_set(dense_cloud(box_mask))


@pytest.mark.parametrize("n, seed", [(DEFAULT_CLOUD_SIZE, 0), (DEFAULT_CLOUD_SIZE, 3), (512, 0)])
def test_sobol_points_are_scipys_scrambled_sobol_points_with_or_without_the_table(n, seed):
    """The bundled table (2,048 points, seed 0) is exactly SciPy's output; other sizes and seeds
    come from SciPy itself."""
    from scipy.stats import qmc
    expected = qmc.Sobol(d=3, scramble=True, seed=seed).random(n)
    assert np.array_equal(sobol_points(n, seed), expected)


def test_the_default_cloud_does_not_import_scipy_stats():
    import subprocess
    import sys
    code = ("import sys, numpy as np; from PatchSamplerLib.method.pointcloud import simplified_cloud; "
            "m = np.zeros((20, 20, 20), bool); m[5:15, 4:16, 6:12] = True; simplified_cloud(m); "
            "print('scipy.stats' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
