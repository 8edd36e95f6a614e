"""Tests of PatchSamplerLib.method.baselines: random sampling and farthest point sampling (FPS)."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial import cKDTree

from PatchSamplerLib.method.baselines import (extreme_fps_centres, farthest_point_indices, fps_centres,
                                             fps_continued_indices, random_centres)
from PatchSamplerLib.method.pointcloud import dense_cloud
from PatchSamplerLib.method.samplers import baseline_centres


@pytest.fixture
def l_mask():
    """An L-shaped mask: a long bar along i and a long bar along k (1,900 voxels)."""
    mask = np.zeros((40, 8, 40), bool)
    mask[2:38, 2:6, 2:8] = True
    mask[2:8, 2:6, 2:38] = True
    return mask


def _coverage(mask, centres):
    """(mean, max) distance from every occupied voxel to its nearest centre."""
    d, _ = cKDTree(centres).query(dense_cloud(mask))
    return float(d.mean()), float(d.max())


@pytest.mark.parametrize("name", ["fps", "random"])
def test_centres_are_occupied_voxels(l_mask, name):
    centres = baseline_centres(name, l_mask, (1, 1, 1), 8, 3)
    assert centres.shape == (8, 3) and centres.dtype == np.float32
    assert np.array_equal(centres, np.round(centres))          # voxel aligned
    idx = centres.astype(int)
    assert l_mask[idx[:, 0], idx[:, 1], idx[:, 2]].all()        # on occupied voxels
    assert len({tuple(c) for c in centres.tolist()}) == 8      # distinct when enough voxels


@pytest.mark.parametrize("name", ["fps", "random"])
def test_reproducible_by_seed(l_mask, name):
    a = baseline_centres(name, l_mask, (1, 1, 1), 6, 11)
    assert np.array_equal(a, baseline_centres(name, l_mask, (1, 1, 1), 6, 11))
    assert not np.array_equal(a, baseline_centres(name, l_mask, (1, 1, 1), 6, 12))


def test_fps_covers_better_than_random(l_mask):
    n = 6
    fps = np.array([_coverage(l_mask, fps_centres(l_mask, n, seed=s)) for s in range(10)])
    rnd = np.array([_coverage(l_mask, random_centres(l_mask, n, seed=s)) for s in range(10)])
    assert fps[:, 0].mean() < rnd[:, 0].mean()
    assert fps[:, 1].mean() < rnd[:, 1].mean()


def test_fps_is_greedy_farthest(l_mask):
    """Every FPS centre after the first maximises the distance to the centres chosen before it."""
    points = dense_cloud(l_mask)
    centres = fps_centres(l_mask, 5, seed=4)
    for i in range(1, 5):
        d_all = cKDTree(centres[:i]).query(points)[0]
        d_chosen = cKDTree(centres[:i]).query(centres[i:i + 1])[0][0]
        assert d_chosen == pytest.approx(d_all.max())


def test_extreme_fps_starts_at_the_voxel_farthest_from_the_centroid():
    mask = np.zeros((10, 5, 5), bool)
    mask[0:10, 2, 2] = True                        # a line x = 0..9
    mask[8:10, 1:4, 1:4] = True                    # a block at its end pulls the centroid to x > 6
    centres = extreme_fps_centres(mask, 2)
    assert centres[0].tolist() == [0, 2, 2] and centres[1][0] == 9
    assert np.array_equal(extreme_fps_centres(mask, 4), extreme_fps_centres(mask, 4))
    # with spacing the millimetre metric decides: a long z arm wins over the longer x arm in voxels
    cross = np.zeros((30, 5, 30), bool)
    cross[0:30, 2, 0] = True
    cross[0, 2, 0:12] = True
    assert extreme_fps_centres(cross, 1, spacing=(1.0, 1.0, 5.0))[0].tolist() == [0, 2, 11]


def test_farthest_point_indices_greedy_on_a_line():
    points = np.array([[0, 0, 0], [1, 0, 0], [2, 0, 0], [10, 0, 0], [4, 0, 0]], np.float32)
    assert farthest_point_indices(points, 3, first=0).tolist() == [0, 3, 4]


def test_fps_continued_from_chosen_positions():
    points = np.array([[0, 0, 0], [1, 0, 0], [2, 0, 0], [10, 0, 0], [4, 0, 0]], np.float32)
    # from positions that need not be points: 9.6 is nearest 10, so 0 is the farthest, then 4
    assert fps_continued_indices(points, np.array([[9.6, 0, 0]]), 2).tolist() == [0, 4]
    assert fps_continued_indices(points, np.array([[9.6, 0, 0], [0.2, 0, 0]]), 1).tolist() == [4]
    assert fps_continued_indices(points, points[:1], 0).tolist() == []


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (0.7, 1.3, 3.0)])
def test_fps_continued_from_its_first_point_is_fps(l_mask, spacing):
    points = dense_cloud(l_mask)
    full = farthest_point_indices(points, 12, first=77, spacing=spacing)
    np.testing.assert_array_equal(fps_continued_indices(points, points[[77]], 11, spacing), full[1:])
    np.testing.assert_array_equal(fps_continued_indices(points, points[full[:5]], 7, spacing), full[5:])


def test_fps_spacing_changes_the_metric():
    # in index space [0,0,3] is farther from the start; with spacing (1, 1, 0.1) [2,0,0] is
    points = np.array([[0, 0, 0], [2, 0, 0], [0, 0, 3]], np.float32)
    assert farthest_point_indices(points, 2, first=0)[1] == 2
    assert farthest_point_indices(points, 2, first=0, spacing=(1.0, 1.0, 0.1))[1] == 1


def test_random_with_fewer_voxels_than_n_uses_replacement():
    mask = np.zeros((5, 5, 5), bool)
    mask[1, 1, 1] = mask[3, 2, 4] = mask[0, 4, 2] = True
    centres = random_centres(mask, 10, seed=0)
    assert centres.shape == (10, 3)
    assert {tuple(c) for c in centres.tolist()} <= {(1, 1, 1), (3, 2, 4), (0, 4, 2)}


@pytest.mark.parametrize("name", ["fps", "random"])
def test_empty_mask_raises(name):
    with pytest.raises(ValueError, match="empty"):
        baseline_centres(name, np.zeros((4, 4, 4), bool), (1, 1, 1), 3, 0)


@pytest.mark.parametrize("name", ["fps", "random"])
def test_n_below_one_raises(l_mask, name):
    with pytest.raises(ValueError):
        baseline_centres(name, l_mask, (1, 1, 1), 0, 0)


def test_the_registry_names_every_sampler_and_refuses_what_it_cannot_run(l_mask):
    from PatchSamplerLib.method.samplers import SAMPLER_NAMES, sampler_label
    assert SAMPLER_NAMES == ("learned", "fps", "random")
    assert [sampler_label(s) for s in SAMPLER_NAMES] == ["Learned", "FPS", "Random"]
    assert np.array_equal(baseline_centres("fps", l_mask, (2, 1, 1), 5, 4), fps_centres(l_mask, 5, 4, (2, 1, 1)))
    with pytest.raises(ValueError, match="needs a trained model"):
        baseline_centres("learned", l_mask, (1, 1, 1), 5, 0)
    with pytest.raises(ValueError, match="choose one of learned, fps, random"):
        baseline_centres("grid", l_mask, (1, 1, 1), 5, 0)
