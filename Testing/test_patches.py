"""Tests of PatchSamplerLib.method.patches: offsets, differentiable coordinates, labels, budget."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from PatchSamplerLib.method.patches import (
                                            MAX_PATCH_VOXELS,
                                            check_patch_request,
                                            patch_boxes,
                                            patch_coordinates,
                                            patch_labels,
                                            patch_offsets,
                                            )


def test_offsets_odd_k():
    o = patch_offsets(3)
    assert o.shape == (27, 3) and o.dtype == torch.float32
    assert {tuple(r) for r in o.tolist()} == set(itertools.product([-1.0, 0.0, 1.0], repeat=3))
    np.testing.assert_allclose(o.mean(0).numpy(), 0.0)


def test_offsets_even_k():
    o = patch_offsets(4)
    assert o.shape == (64, 3)
    values = [-1.5, -0.5, 0.5, 1.5]
    assert {tuple(r) for r in o.tolist()} == set(itertools.product(values, repeat=3))
    for axis in range(3):
        assert sorted(set(o[:, axis].tolist())) == values


def test_offsets_k1_is_centre():
    assert patch_offsets(1).tolist() == [[0.0, 0.0, 0.0]]


def test_patch_coordinates_values():
    centres = torch.tensor([[5.0, 6.0, 7.0], [0.5, 1.25, -2.0]])
    coords = patch_coordinates(centres, 3)
    assert coords.shape == (2, 27, 3)
    torch.testing.assert_close(coords - centres[:, None], patch_offsets(3).expand(2, -1, -1))


def test_patch_coordinates_keeps_dtype_and_gradcheck():
    torch.manual_seed(0)
    centres = (torch.rand(3, 3, dtype=torch.float64) * 10).requires_grad_(True)
    weights = torch.randn(3, 27, 3, dtype=torch.float64)
    assert patch_coordinates(centres, 3).dtype == torch.float64

    def f(c):
        return (torch.sin(patch_coordinates(c, 3)) * weights).sum()

    assert torch.autograd.gradcheck(f, (centres,), eps=1e-6, atol=1e-6)
    f(centres).backward()
    expected = (torch.cos(patch_coordinates(centres.detach(), 3)) * weights).sum(1)
    torch.testing.assert_close(centres.grad, expected)
    assert centres.grad.abs().sum() > 0


def test_patch_labels_nearest_voxel_and_outside_zero():
    rng = np.random.default_rng(0)
    volume = rng.random((6, 7, 8)) < 0.5
    coords = torch.tensor([[0.0, 0.0, 0.0],
                           [2.2, 3.7, 4.4],
                           [5.4, 6.3, 7.1],      # rounds to the last voxel (inside)
                           [-0.7, 2.0, 2.0],     # rounds to -1: outside
                           [6.0, 1.0, 1.0],      # index 6 == size: outside
                           [1.0, 1.0, 7.6]])     # rounds to 8: outside
    labels = patch_labels(volume, coords)
    assert labels.dtype == torch.float32 and labels.shape == (6,)
    expected = [volume[0, 0, 0], volume[2, 4, 4], volume[5, 6, 7], 0, 0, 0]
    assert labels.tolist() == [float(e) for e in expected]


def test_patch_labels_whole_patch_matches_volume():
    volume = np.zeros((10, 10, 10), bool)
    volume[3:6, 2:7, 4:5] = True
    volume[8, 8, 8] = True
    centres = torch.tensor([[4.2, 4.1, 3.8], [8.0, 8.0, 9.0]], requires_grad=True)
    coords = patch_coordinates(centres, 3)
    labels = patch_labels(volume, coords)
    assert labels.shape == (2, 27)
    idx = np.round(coords.detach().numpy()).astype(int)
    for n in range(2):
        for m in range(27):
            i, j, k = idx[n, m]
            inside = all(0 <= v < 10 for v in (i, j, k))
            assert labels[n, m].item() == (float(volume[i, j, k]) if inside else 0.0)
    assert labels[1].sum() == 1.0  # only (8, 8, 8) is set near the second centre
    assert not labels.requires_grad  # labels are constants; coordinates carry the gradient
    assert coords.requires_grad


def test_patch_labels_accepts_torch_mask():
    volume = torch.zeros(4, 4, 4, dtype=torch.bool)
    volume[1, 2, 3] = True
    assert patch_labels(volume, torch.tensor([[1.1, 1.9, 3.2], [1.0, 2.0, 2.0]])).tolist() == [1.0, 0.0]


@pytest.mark.parametrize("n, k", [(0, 9), (-1, 9), (4, 0), (2.5, 9), (4, 9.5)])
def test_check_patch_request_rejects(n, k):
    with pytest.raises(ValueError):
        check_patch_request(n, k)


def test_check_patch_request_budget():
    check_patch_request(12, 13)  # the thesis's largest configuration is fine
    check_patch_request(1, 1)
    with pytest.raises(ValueError, match="budget"):
        check_patch_request(MAX_PATCH_VOXELS + 1, 1)
    with pytest.raises(ValueError, match="budget"):
        check_patch_request(2, 10, max_voxels=1999)
    check_patch_request(2, 10, max_voxels=2000)


def test_patch_boxes_known_centre():
    boxes = patch_boxes(np.array([[10.0, 20.0, 30.0], [5.2, 5.6, 4.9]]), 3)
    assert boxes.shape == (2, 2, 3)
    assert boxes[0].tolist() == [[9, 19, 29], [11, 21, 31]]
    assert boxes[1].tolist() == [[4, 5, 4], [6, 7, 6]]
    # the box holds exactly the rounded patch coordinates
    coords = np.round(patch_coordinates(torch.tensor([[5.2, 5.6, 4.9]]), 3).numpy()[0]).astype(int)
    assert coords.min(0).tolist() == boxes[1, 0].tolist() and coords.max(0).tolist() == boxes[1, 1].tolist()
    big = patch_boxes(np.array([[10.0, 20.0, 30.0]]), 9)
    assert (big[0, 1] - big[0, 0]).tolist() == [8, 8, 8]


@pytest.mark.parametrize("k", [2, 4, 6])
def test_even_k_voxel_aligned_centre_gives_contiguous_block(k):
    """Even K around an integer centre puts every coordinate on a .5 tie; the rounded patch
    must still be K distinct, contiguous voxels per axis and agree with patch_boxes."""
    volume = np.zeros((20, 20, 20), np.int64)
    volume[...] = np.arange(20)[:, None, None] * 400 + np.arange(20)[None, :, None] * 20 + np.arange(20)
    centre = np.array([[9.0, 10.0, 11.0]], np.float32)
    coords = patch_coordinates(torch.from_numpy(centre), k)
    values = patch_labels(volume, coords)[0].numpy().astype(np.int64)   # unique voxel ids
    assert len(set(values.tolist())) == k ** 3
    ijk = np.stack([values // 400, (values // 20) % 20, values % 20], axis=1)
    box = patch_boxes(centre, k)[0]
    for axis in range(3):
        assert sorted(set(ijk[:, axis].tolist())) == list(range(box[0, axis], box[1, axis] + 1))


def test_soft_labels_equal_the_nearest_labels_at_voxel_centres_and_have_the_right_gradient():
    from PatchSamplerLib.method.patches import soft_patch_labels
    mask = torch.zeros(6, 5, 4, dtype=torch.bool)
    mask[1:4, 1:3, 1:3] = True
    centres = torch.tensor([[2.0, 1.0, 2.0], [0.0, 0.0, 0.0], [5.0, 4.0, 3.0]])
    coords = patch_coordinates(centres, 3)
    torch.testing.assert_close(soft_patch_labels(mask, coords), patch_labels(mask, coords))
    x = torch.tensor([[2.3, 1.6, 1.2]], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda c: soft_patch_labels(mask, c), (x,))
    # linear along x between voxels 3 (inside) and 4 (outside)
    assert soft_patch_labels(mask, torch.tensor([[3.25, 1.0, 1.0]])).item() == pytest.approx(0.75)


def test_a_read_only_mask_is_labelled_without_a_warning():
    """A Ray task's arguments are read-only arrays; torch warns when it shares one."""
    import warnings

    from PatchSamplerLib.method.patches import patch_labels
    mask = np.zeros((5, 5, 5), bool)
    mask[2, 2, 2] = True
    mask.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        labels = patch_labels(mask, torch.tensor([[2.0, 2.0, 2.0], [0.0, 0.0, 0.0], [9.0, 0.0, 0.0]]))
    assert labels.tolist() == [1.0, 0.0, 0.0]
