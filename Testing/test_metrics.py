"""Tests of PatchSamplerLib.method.metrics: Dice, ASD, HD95 (mm) and the error-label map."""
from __future__ import annotations

import math

import numpy as np
import pytest

from PatchSamplerLib.method.metrics import (
                                            all_metrics,
                                            dice,
                                            directed_surface_distances,
                                            error_labels,
                                            surface,
                                            surface_metrics,
                                            )

from conftest import ball


def test_dice_two_overlapping_boxes():
    a = np.zeros((20, 20, 20), bool)
    b = np.zeros_like(a)
    a[2:8, 2:8, 2:8] = True      # 6^3 = 216
    b[5:11, 4:10, 2:6] = True    # 6*6*4 = 144
    # overlap: x 5..7 (3), y 4..7 (4), z 2..5 (4) -> 48
    assert dice(a, b) == pytest.approx(2 * 48 / (216 + 144))
    assert dice(b, a) == pytest.approx(dice(a, b))


def test_dice_disjoint_is_zero():
    a = np.zeros((10, 10, 10), bool)
    b = np.zeros_like(a)
    a[:3] = True
    b[5:] = True
    assert dice(a, b) == 0.0


def test_identical_masks():
    mask = ball((20, 20, 20), (9.5, 9.5, 9.5), 6.0)
    m = all_metrics(mask, mask.copy(), (0.7, 1.3, 2.5))
    assert m["dice"] == 1.0
    assert m["asd_mm"] == 0.0
    assert m["hd95_mm"] == 0.0


def test_both_empty_is_nan():
    empty = np.zeros((5, 5, 5), bool)
    m = all_metrics(empty, empty)
    assert math.isnan(m["dice"]) and math.isnan(m["asd_mm"]) and math.isnan(m["hd95_mm"])


@pytest.mark.parametrize("which", ["prediction", "reference"])
def test_one_empty(which):
    empty = np.zeros((6, 6, 6), bool)
    full = np.zeros_like(empty)
    full[2:4, 2:4, 2:4] = True
    pred, ref = (empty, full) if which == "prediction" else (full, empty)
    m = all_metrics(pred, ref)
    assert m["dice"] == 0.0
    assert m["asd_mm"] == math.inf and m["hd95_mm"] == math.inf


def test_surface_definition():
    mask = np.zeros((7, 7, 7), bool)
    mask[1:6, 1:6, 1:6] = True   # 5^3 cube: 27 interior voxels
    s = surface(mask)
    assert s.sum() == 125 - 27
    assert not s[3, 3, 3] and s[1, 3, 3]
    # the grid border counts as background
    full = np.ones((3, 3, 3), bool)
    assert surface(full).sum() == 26


def test_concentric_spheres():
    shape, c = (36, 36, 36), (17.5, 17.5, 17.5)
    inner, outer = ball(shape, c, 10.0), ball(shape, c, 14.0)
    asd, hd95 = surface_metrics(inner, outer)
    assert asd == pytest.approx(4.0, abs=1.0)
    assert hd95 == pytest.approx(4.0, abs=1.0)
    assert surface_metrics(outer, inner) == pytest.approx((asd, hd95))


def test_anisotropic_spacing_concentric_spheres():
    spacing = (1.0, 1.0, 2.0)
    shape = (36, 36, 18)
    c = (17.5, 17.5, 8.5)  # centre in voxel index, the balls are 10 mm and 14 mm in physical units
    inner, outer = ball(shape, c, 10.0, spacing), ball(shape, c, 14.0, spacing)
    asd, hd95 = surface_metrics(inner, outer, spacing)
    assert asd == pytest.approx(4.0, abs=1.0)
    assert hd95 == pytest.approx(4.0, abs=1.0)
    # ignoring the spacing would give clearly different (wrong) numbers
    asd_wrong, _ = surface_metrics(inner, outer, (1.0, 1.0, 1.0))
    assert abs(asd_wrong - 4.0) > abs(asd - 4.0)


def test_one_voxel_shift_along_coarse_axis_is_two_mm():
    spacing = (1.0, 1.0, 2.0)
    a = np.zeros((16, 16, 16), bool)
    a[4:12, 4:12, 4:12] = True
    b = np.roll(a, 1, axis=2)       # one voxel along the 2 mm axis
    _, hd95 = surface_metrics(a, b, spacing)
    assert hd95 == pytest.approx(2.0, abs=0.05)
    c = np.roll(a, 1, axis=0)       # one voxel along a 1 mm axis
    _, hd95_x = surface_metrics(a, c, spacing)
    assert hd95_x == pytest.approx(1.0, abs=0.05)


def test_directed_distances_known_values():
    # two single voxels 3 voxels apart along j with spacing 1.5 -> 4.5 mm both ways
    a = np.zeros((5, 10, 5), bool)
    b = np.zeros_like(a)
    a[2, 2, 2] = True
    b[2, 5, 2] = True
    d_ab, d_ba = directed_surface_distances(a, b, (1.0, 1.5, 1.0))
    np.testing.assert_allclose(d_ab, [4.5])
    np.testing.assert_allclose(d_ba, [4.5])
    asd, hd95 = surface_metrics(a, b, (1.0, 1.5, 1.0))
    assert asd == pytest.approx(4.5) and hd95 == pytest.approx(4.5)


def test_error_labels_codes():
    pred = np.array([[[0, 1, 1, 0]]], bool)
    ref = np.array([[[0, 0, 1, 1]]], bool)
    out = error_labels(pred, ref)
    assert out.dtype == np.uint8
    assert out.tolist() == [[[0, 2, 1, 3]]]  # background, extra, intersection, missing
