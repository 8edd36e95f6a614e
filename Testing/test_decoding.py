"""Coarse-to-fine decoding (`method/decoding.py`) on anisotropic voxels: blocks chosen in
millimetres, so that the default decode equals the dense one on any spacing."""
from functools import cache

import numpy as np
import pytest
import torch

from PatchSamplerLib.method.decoding import COARSE_STRIDE, block_strides, decode_grid, decode_grid_coarse_to_fine

SPACINGS = [(0.7, 0.7, 5.0), (5.0, 0.8, 0.8), (1.0, 3.0, 1.5), (1.0, 1.0, 1.0)]   # mm
SCALE = 0.5   # half-size shapes and frame: the dense reference decode stays under ~3 s


@pytest.mark.parametrize("spacing_mm", [0.5, 0.7, 1.0, 1.2, 3.0])
@pytest.mark.parametrize("stride", [1, 2, COARSE_STRIDE, 8])
def test_block_strides_on_isotropic_voxels_are_the_uniform_stride_of_before(spacing_mm, stride):
    assert block_strides((spacing_mm,) * 3, stride) == (stride,) * 3


def test_block_strides_make_blocks_about_stride_fine_voxels_long_in_mm_on_every_axis():
    assert block_strides((0.7, 0.7, 5.0)) == (4, 4, 1)      # 2.8 mm; a 5 mm voxel is already longer
    assert block_strides((5.0, 0.8, 0.8)) == (1, 4, 4)
    assert block_strides((1.0, 3.0, 1.5)) == (4, 1, 2)      # 4 mm: 1 voxel of 3 mm, 2 of 1.5 mm
    assert block_strides(np.array([0.5, 1.0, 2.0]), 8) == (8, 4, 2)


@cache
def _fitted(family: str):
    """(prior, latent fitted to 4 FPS patches of 9^3 voxels of a half-size held-out shape, its
    bounding-box centre in mm) of a family's bundled prior."""
    from PatchSamplerLib.data.synthetic import make_shape
    from PatchSamplerLib.method.baselines import fps_centres
    from PatchSamplerLib.method.inr import ShapePrior, fit_latent
    from PatchSamplerLib.method.patches import extract_patches
    from PatchSamplerLib.volume import bbox_centre_mm
    prior = ShapePrior.load(family)
    vol = make_shape(family, 1, 0, scale=SCALE)
    centre = bbox_centre_mm(vol.mask, vol.spacing)
    _, labels, coords = extract_patches(vol.mask, vol.spacing, fps_centres(vol.mask, 4, 0, vol.spacing), 9, centre)
    return prior, fit_latent(prior.decoder, coords.reshape(1, -1, 3), labels.reshape(1, -1), 100), centre


@pytest.mark.parametrize("spacing", SPACINGS, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("family", ["vertebra", "kidney"])
def test_coarse_to_fine_decode_equals_the_dense_decode_voxel_for_voxel_on_any_spacing(family, spacing):
    """The fitted latent decoded on the (half-size) frame at `spacing`: the default
    coarse-to-fine decode, thresholded at 0.5, is the dense decode voxel for voxel (with 4
    voxels per block on every axis, 20 mm thick blocks on 5 mm voxels lost hundreds of voxels)."""
    from PatchSamplerLib.method.frame import frame_box
    prior, latent, centre = _fitted(family)
    lo, hi = frame_box(centre, np.asarray(prior.extent_mm) * SCALE, spacing)
    args = (prior.decoder, latent, tuple(int(v) for v in hi - lo + 1), spacing, centre)
    dense = decode_grid(*args, offset=lo) >= 0.5
    prob, evaluated = decode_grid_coarse_to_fine(*args, offset=lo)
    assert dense.any() and not dense.all()
    assert torch.equal(prob >= 0.5, dense)
    assert evaluated < dense.numel() / 2                 # still skips (1 x 3 x 1.5 mm: 35-40 % evaluated)
    if len(set(spacing)) == 1:   # isotropic: exactly the decode of before (4 x 4 x 4 voxel blocks)
        before, before_evaluated = decode_grid_coarse_to_fine(*args, offset=lo, stride=(COARSE_STRIDE,) * 3)
        assert torch.equal(prob, before) and evaluated == before_evaluated
