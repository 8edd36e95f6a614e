"""The anatomical vertebra family (`data/anatomy/vertebra.py`): determinism, one component with
an open vertebral foramen at every level, measured dimensions within the cited mean +- 3 SD,
lumbar bodies larger than thoracic, the large-L5 fit in the 128 x 120 x 90 / 1 mm grid, the
compression fracture and the coarse (3 mm) rendering path.

Measurements are made on the rendered masks in the vertebra's own frame (the generator records
the pose), in mm: body region = voxels more than 6 mm anterior to the canal's front wall (clear
of the pedicle roots); its posterior height is taken 6-8 mm in front of that wall."""
import dataclasses

import numpy as np
import pytest
from scipy import ndimage

from PatchSamplerLib.data.anatomy.rendering import resample_mask
from PatchSamplerLib.data.anatomy.vertebra import (GRID, LEVELS, MORPHOMETRY, VERTEBRA_FAMILY_VERSION,
                                                   generate_vertebra, level_dimensions, render_vertebra,
                                                   sample_parameters, vertebra_shape)
from PatchSamplerLib.data.synthetic import make_shape

CUBE = np.ones((3, 3, 3), bool)


@pytest.fixture(scope="module")
def per_level():
    """One 1 mm vertebra per level, same seed."""
    return {level: generate_vertebra(np.random.default_rng(7), level) for level in LEVELS}


def components(mask: np.ndarray) -> int:
    """Number of 26-connected foreground components."""
    return ndimage.label(mask, CUBE)[1]


def canal_hole(g) -> np.ndarray:
    """(N, 3) shape-frame mm of the background region around the canal centre in the axial grid
    slice through it; asserts the region is enclosed (does not reach the slice border)."""
    centre = np.round(g.shape_mm_to_index(g.canal_centre_mm[None])[0]).astype(int)
    plane = ~g.volume.mask[:, :, centre[2]]
    labels, _ = ndimage.label(plane)                     # 4-connected background
    hole = labels == labels[centre[0], centre[1]]
    assert plane[centre[0], centre[1]], "canal centre is not background"
    assert not (hole[0].any() or hole[-1].any() or hole[:, 0].any() or hole[:, -1].any()), "canal not enclosed"
    ij = np.argwhere(hole)
    return g.index_to_shape_mm(np.column_stack([ij, np.full(len(ij), centre[2])]))


def measure(g) -> dict:
    """Body width / depth / posterior height, canal width / depth and transverse width (mm):
    extents of voxel centres plus one voxel (the voxels' own size)."""
    q = g.index_to_shape_mm(np.argwhere(g.volume.mask))
    hole = canal_hole(g)
    front = hole[:, 1].min() - 0.5
    body = q[q[:, 1] < front - 6.0]
    back_of_body = body[body[:, 1] > front - 8.0]
    parts = {"body_width": body[:, 0], "body_height": back_of_body[:, 2], "canal_width": hole[:, 0],
             "canal_depth": hole[:, 1], "transverse_width": q[:, 0]}
    extents = {name: np.ptp(values) + g.volume.spacing[0] for name, values in parts.items()}
    return {**extents, "body_depth": front - q[:, 1].min() + 0.5}


def test_version_and_table_cover_every_level():
    assert VERTEBRA_FAMILY_VERSION == "anatomical-2"
    assert all(len(row) == len(LEVELS) for row in MORPHOMETRY.values())
    assert {"T10", "T11", "T12", "L1", "L2", "L3", "L4", "L5"} <= set(LEVELS)


def test_same_seed_same_vertebra_and_level_is_recorded():
    a = generate_vertebra(np.random.default_rng(3))
    b = generate_vertebra(np.random.default_rng(3))
    assert a.parameters.level in LEVELS and a.parameters == b.parameters
    assert np.array_equal(a.volume.mask, b.volume.mask)
    other = vertebra_shape(np.random.default_rng(4), a.parameters.level)
    assert not np.array_equal(a.volume.mask, other.mask)


@pytest.mark.parametrize("level", LEVELS)
def test_every_level_is_one_component_with_an_open_foramen(per_level, level):
    g = per_level[level]
    assert g.volume.shape == GRID and g.volume.spacing == (1.0, 1.0, 1.0)
    assert components(g.volume.mask) == 1
    canal_hole(g)


@pytest.mark.parametrize("level", LEVELS)
def test_measured_dimensions_lie_within_three_sd(per_level, level):
    table = level_dimensions(level)
    measured = measure(per_level[level])
    outside = {name: (round(float(value), 1), table[name]) for name, value in measured.items()
               if abs(value - table[name][0]) > 3 * table[name][1]}
    assert outside == {}


def test_lumbar_bodies_are_larger_than_thoracic(per_level):
    width = {level: measure(g)["body_width"] for level, g in per_level.items()}
    volume = {level: g.volume.voxel_count for level, g in per_level.items()}
    for values in (width, volume):
        assert np.mean([values[lv] for lv in LEVELS if lv[0] == "L"]) > np.mean([values[lv] for lv in LEVELS if lv[0] == "T"])
    assert volume["L3"] > volume["T10"] * 1.4


def test_large_l5_in_an_extreme_pose_fits_the_grid():
    tilt_mean, tilt_sd = level_dimensions("L5")["sagittal_tilt_deg"]
    params = sample_parameters(np.random.default_rng(0), "L5", z_score=2.0).with_dims(
        sagittal_tilt_deg=tilt_mean + 2 * tilt_sd)
    params = dataclasses.replace(params, axial_rotation_deg=3.0, lateral_tilt_deg=4.0)
    mask = render_vertebra(params).volume.mask
    lo, hi = np.argwhere(mask).min(axis=0), np.argwhere(mask).max(axis=0)
    assert np.all(lo >= 5) and np.all(hi <= np.asarray(GRID) - 6), (lo, hi)
    assert components(mask) == 1


def test_compression_fracture_lowers_the_anterior_body():
    params = sample_parameters(np.random.default_rng(1), "L1")
    assert params.compression == 0.0
    heights = []
    for fraction in (0.0, 0.3):
        g = render_vertebra(dataclasses.replace(params, compression=fraction))
        q = g.index_to_shape_mm(np.argwhere(g.volume.mask))
        anterior = q[q[:, 1] < q[:, 1].min() + 4.0]
        heights.append(np.ptp(anterior[:, 2]))
    assert 0.6 < heights[1] / heights[0] < 0.8


def test_fractures_are_rare_and_levels_are_all_drawn():
    drawn = [sample_parameters(np.random.default_rng(i)) for i in range(400)]
    assert {p.level for p in drawn} == set(LEVELS)
    assert 0 < sum(p.compression > 0 for p in drawn) < 50


@pytest.mark.parametrize("level", ["T12", "L1"])
def test_three_mm_rendering_resampled_to_one_mm_is_one_component(level):
    g = generate_vertebra(np.random.default_rng(7), level, render_spacing_mm=3.0)
    assert g.volume.shape == GRID and components(g.volume.mask) == 1
    canal_hole(g)
    fine = generate_vertebra(np.random.default_rng(7), level).volume.mask
    dice = 2 * (fine & g.volume.mask).sum() / (fine.sum() + g.volume.mask.sum())
    assert dice > 0.8


def test_resample_keeps_a_centred_block_in_place():
    mask = np.zeros((10, 10, 10), bool)
    mask[3:7, 3:7, 3:7] = True                           # 12 mm cube at 3 mm, centred
    fine = resample_mask(mask, 3.0, (30, 30, 30), 1.0)
    idx = np.argwhere(fine)
    assert np.allclose((idx.min(axis=0) + idx.max(axis=0)) / 2, 14.5)
    assert abs(fine.sum() - 12 ** 3) < 0.15 * 12 ** 3


def test_scaled_family_generator_matches_the_synthetic_grid_rule():
    volume = make_shape("vertebra-anatomical", 0, 0, 0.25)
    assert volume.shape == (32, 30, 22) and volume.spacing == (4.0, 4.0, 4.0)
    assert components(volume.mask) == 1
