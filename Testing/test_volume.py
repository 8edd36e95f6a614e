"""Tests of PatchSamplerLib.volume: labelmap I/O, geometry and coordinate conversions."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from PatchSamplerLib.volume import (
                                    BinaryVolume,
                                    VolumeError,
                                    bbox_centre_mm,
                                    foreground_bbox,
                                    index_to_local_mm,
                                    index_to_world,
                                    local_mm_to_index,
                                    read_labelmap,
                                    resample_isotropic,
                                    world_to_index,
                                    write_labelmap,
                                    write_volume,
                                    )

from conftest import ball


def _random_mask(shape=(9, 11, 13), seed=0):
    rng = np.random.default_rng(seed)
    mask = rng.random(shape) < 0.3
    mask[0, 0, 0] = True  # make the (0, 0, 0) corner distinguishable from its mirror images
    mask[-1, -1, -1] = False
    return mask


@pytest.fixture
def oblique_volume(anisotropic_spacing, nonzero_origin, oblique_direction):
    return BinaryVolume(_random_mask(), anisotropic_spacing, nonzero_origin, oblique_direction)


def _write_raw(path, array_xyz, spacing=(1.0, 1.0, 1.0), dtype=np.uint8, metadata=None):
    """Write an (X, Y, Z) array directly with SimpleITK (independently of the library's writer)."""
    image = sitk.GetImageFromArray(np.ascontiguousarray(np.asarray(array_xyz, dtype).transpose(2, 1, 0)))
    image.SetSpacing(spacing)
    for key, value in (metadata or {}).items():
        image.SetMetaData(key, value)
    sitk.WriteImage(image, str(path))


# ---------------------------------------------------------------- file round trips
@pytest.mark.parametrize("name", ["shape.nii.gz", "shape.nrrd", "shape.seg.nrrd"])
def test_round_trip_preserves_mask_and_geometry(tmp_path, oblique_volume, name):
    path = tmp_path / name
    write_volume(str(path), oblique_volume)
    back = read_labelmap(str(path))
    assert back.mask.dtype == bool
    assert back.shape == oblique_volume.shape
    assert np.array_equal(back.mask, oblique_volume.mask)
    np.testing.assert_allclose(back.spacing, oblique_volume.spacing, atol=1e-6)
    np.testing.assert_allclose(back.origin, oblique_volume.origin, atol=1e-6)
    np.testing.assert_allclose(back.direction, oblique_volume.direction, atol=1e-6)


def test_round_trip_accepts_pathlib(tmp_path, oblique_volume):
    path = tmp_path / "p.nrrd"
    write_volume(path, oblique_volume)
    assert np.array_equal(read_labelmap(path).mask, oblique_volume.mask)


def test_array_order_is_xyz(tmp_path):
    mask = np.zeros((5, 6, 7), bool)
    mask[4, 1, 2] = True
    vol = BinaryVolume(mask, (0.7, 1.3, 2.5))
    path = tmp_path / "order.nii.gz"
    write_volume(str(path), vol)
    image = sitk.ReadImage(str(path))
    assert image.GetSize() == (5, 6, 7)
    assert image[4, 1, 2] == 1  # SimpleITK's image[i, j, k] is our mask[i, j, k]
    assert int(sitk.GetArrayFromImage(image).sum()) == 1
    np.testing.assert_allclose(image.GetSpacing(), (0.7, 1.3, 2.5), atol=1e-6)
    assert read_labelmap(str(path)).shape == (5, 6, 7)


def test_write_labelmap_keeps_integer_labels(tmp_path, oblique_volume):
    labels = oblique_volume.mask.astype(np.uint8) * 3
    labels[0, 0, 0] = 7
    path = tmp_path / "labels.nrrd"
    write_labelmap(str(path), labels, oblique_volume)
    assert np.array_equal(read_labelmap(str(path), label=3).mask, labels == 3)
    assert np.array_equal(read_labelmap(str(path), label=7).mask, labels == 7)


def test_write_labelmap_rejects_wrong_shape(tmp_path, oblique_volume):
    with pytest.raises(VolumeError, match="shape"):
        write_labelmap(str(tmp_path / "x.nrrd"), np.zeros((2, 2, 2), np.uint8), oblique_volume)


# ---------------------------------------------------------------- coordinate conversions
def test_index_to_world_hand_computed(oblique_volume):
    index = np.array([2.0, -1.0, 3.5])
    expected = oblique_volume.origin + oblique_volume.direction @ (np.array(oblique_volume.spacing) * index)
    np.testing.assert_allclose(index_to_world(index, oblique_volume), expected, atol=1e-12)
    # voxel (0, 0, 0) sits at the origin; one step along i moves spacing[0] along direction[:, 0]
    np.testing.assert_allclose(index_to_world(np.zeros(3), oblique_volume), oblique_volume.origin)
    step = index_to_world(np.array([1.0, 0, 0]), oblique_volume) - oblique_volume.origin
    np.testing.assert_allclose(step, 0.7 * oblique_volume.direction[:, 0], atol=1e-12)


def test_index_to_world_matches_simpleitk(oblique_volume):
    image = sitk.Image(list(oblique_volume.shape), sitk.sitkUInt8)
    image.SetSpacing(oblique_volume.spacing)
    image.SetOrigin(tuple(oblique_volume.origin))
    image.SetDirection(tuple(oblique_volume.direction.reshape(-1)))
    for index in [(0, 0, 0), (3, 5, 7), (8, 1, 12)]:
        np.testing.assert_allclose(index_to_world(np.array(index), oblique_volume),
                                   image.TransformIndexToPhysicalPoint(index), atol=1e-9)


def test_world_index_round_trip(oblique_volume):
    rng = np.random.default_rng(1)
    index = rng.uniform(-5, 20, size=(4, 6, 3))
    world = index_to_world(index, oblique_volume)
    assert world.shape == index.shape
    assert not np.allclose(world, index)
    np.testing.assert_allclose(world_to_index(world, oblique_volume), index, atol=1e-9)


def test_local_mm_hand_computed_and_round_trip_numpy():
    spacing = (0.7, 1.3, 2.5)
    np.testing.assert_allclose(index_to_local_mm(np.array([0, 0, 0]), spacing), [0.35, 0.65, 1.25])
    np.testing.assert_allclose(index_to_local_mm(np.array([2.0, 1.0, 3.0]), spacing), [1.75, 1.95, 8.75])
    index = np.random.default_rng(2).uniform(-3, 30, size=(10, 3))
    np.testing.assert_allclose(local_mm_to_index(index_to_local_mm(index, spacing), spacing), index, atol=1e-12)


def test_local_mm_round_trip_torch_and_gradient():
    spacing = (0.7, 1.3, 2.5)
    index = torch.tensor([[1.0, 2.0, 3.0], [0.25, -4.0, 7.5]], dtype=torch.float64, requires_grad=True)
    local = index_to_local_mm(index, spacing)
    assert isinstance(local, torch.Tensor) and local.dtype == torch.float64
    torch.testing.assert_close(local[0], torch.tensor([1.05, 3.25, 8.75], dtype=torch.float64))
    torch.testing.assert_close(local_mm_to_index(local, spacing), index)
    local.sum().backward()
    torch.testing.assert_close(index.grad, torch.tensor([spacing, spacing], dtype=torch.float64))


# ---------------------------------------------------------------- reading errors
def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        read_labelmap(str(tmp_path / "nope.nii.gz"))


def test_unreadable_file(tmp_path):
    path = tmp_path / "x.nii.gz"
    path.write_text("this is not an image\n")
    with pytest.raises(VolumeError, match="cannot read"):
        read_labelmap(str(path))


def test_empty_labelmap(tmp_path):
    path = tmp_path / "empty.nii.gz"
    _write_raw(path, np.zeros((4, 5, 6)))
    with pytest.raises(VolumeError, match="empty"):
        read_labelmap(str(path))


def test_multi_label_without_label_lists_labels(tmp_path):
    labels = np.zeros((6, 6, 6), np.uint8)
    labels[1, 1, 1] = 2
    labels[4, 4, 4] = 5
    path = tmp_path / "multi.nrrd"
    _write_raw(path, labels)
    with pytest.raises(VolumeError, match="several labels") as info:
        read_labelmap(str(path))
    assert "2" in str(info.value) and "5" in str(info.value)
    # choosing one works and selects exactly that label
    chosen = read_labelmap(str(path), label=5)
    assert chosen.voxel_count == 1 and chosen.mask[4, 4, 4]


def test_label_not_present_lists_labels(tmp_path):
    labels = np.zeros((6, 6, 6), np.uint8)
    labels[1, 1, 1] = 2
    labels[4, 4, 4] = 5
    path = tmp_path / "multi.nii.gz"
    _write_raw(path, labels)
    with pytest.raises(VolumeError, match="label 9 is not") as info:
        read_labelmap(str(path), label=9)
    assert "2, 5" in str(info.value)


def test_seg_nrrd_segment_names_in_message(tmp_path):
    labels = np.zeros((6, 6, 6), np.uint8)
    labels[1, 1, 1] = 1
    labels[4, 4, 4] = 2
    path = tmp_path / "named.seg.nrrd"
    _write_raw(path, labels, metadata={"Segment0_LabelValue": "1", "Segment0_Name": "L1",
                                       "Segment1_LabelValue": "2", "Segment1_Name": "kidney_left"})
    with pytest.raises(VolumeError) as info:
        read_labelmap(str(path))
    assert "1 (L1)" in str(info.value) and "2 (kidney_left)" in str(info.value)


def test_float_file_with_fractions_rejected(tmp_path):
    values = np.zeros((5, 5, 5), np.float32)
    values[2, 2, 2] = 0.5
    values[1, 1, 1] = 1.0
    path = tmp_path / "prob.nii.gz"
    _write_raw(path, values, dtype=np.float32)
    with pytest.raises(VolumeError, match="non-integer"):
        read_labelmap(str(path))


def test_float_file_with_integer_values_accepted(tmp_path):
    values = np.zeros((5, 5, 5), np.float32)
    values[2, 2, 2] = 1.0
    values[1, 2, 3] = 1.0
    path = tmp_path / "float.nii.gz"
    _write_raw(path, values, dtype=np.float32)
    vol = read_labelmap(str(path))
    assert np.array_equal(vol.mask, values == 1.0)


def test_binary_volume_validation():
    with pytest.raises(VolumeError, match="3-D"):
        BinaryVolume(np.zeros((3, 3), bool))
    with pytest.raises(VolumeError, match="spacing"):
        BinaryVolume(np.zeros((3, 3, 3), bool), (1.0, 0.0, 1.0))


def test_repr_is_one_line_of_geometry_not_the_mask():
    mask = np.zeros((40, 50, 60), bool)
    mask[10:20, 10:20, 10:15] = True
    text = repr(BinaryVolume(mask, (1.5, 1.5, 2.0), origin=(-10.0, 5.0, 2.5)))
    assert "\n" not in text and len(text) < 300
    for part in ("shape=(40, 50, 60)", "spacing=(1.5, 1.5, 2.0) mm", "origin=[-10.0, 5.0, 2.5] mm LPS",
                 "foreground=500 voxels"):
        assert part in text


# ---------------------------------------------------------------- resampling
def _world_centroid(vol: BinaryVolume) -> np.ndarray:
    return index_to_world(np.argwhere(vol.mask).mean(0), vol)


def _physical_volume(vol: BinaryVolume) -> float:
    return vol.voxel_count * float(np.prod(vol.spacing))


@pytest.mark.parametrize("oblique", [False, True])
def test_resample_isotropic_keeps_extent_and_position(oblique, oblique_direction, nonzero_origin):
    shape, spacing = (16, 16, 16), (3.0, 3.0, 3.0)
    mask = ball(shape, (7.3, 8.1, 6.6), 15.0, spacing)  # radius 15 mm, off-centre
    direction = oblique_direction if oblique else np.eye(3)
    vol = BinaryVolume(mask, spacing, nonzero_origin, direction)
    out = resample_isotropic(vol, 1.5)
    assert out.spacing == (1.5, 1.5, 1.5)
    assert out.shape == (32, 32, 32)
    np.testing.assert_allclose(out.direction, direction)
    # the physical box is unchanged: corner of voxel 0 and far corner of the last voxel
    # (old index c -> new index (c + 0.5) * 3 / 1.5 - 0.5)
    for corner in (np.full(3, -0.5), np.array(shape) - 0.5):
        np.testing.assert_allclose(index_to_world(corner, vol),
                                   index_to_world((corner + 0.5) * 2.0 - 0.5, out), atol=1e-9)
    true_volume = 4.0 / 3.0 * np.pi * 15.0 ** 3
    assert abs(_physical_volume(out) - true_volume) / true_volume < 0.15
    assert abs(_physical_volume(out) - _physical_volume(vol)) / _physical_volume(vol) < 0.15
    assert np.linalg.norm(_world_centroid(out) - _world_centroid(vol)) < 1.5


def test_resample_anisotropic_to_isotropic(anisotropic_spacing):
    shape = (30, 16, 9)
    spacing = anisotropic_spacing
    centre = (14.0, 7.5, 4.0)
    vol = BinaryVolume(ball(shape, centre, 8.0, spacing), spacing)
    out = resample_isotropic(vol, 1.0)
    assert out.shape == tuple(int(round(n * s)) for n, s in zip(shape, spacing))
    assert abs(_physical_volume(out) - _physical_volume(vol)) / _physical_volume(vol) < 0.15
    assert np.linalg.norm(_world_centroid(out) - _world_centroid(vol)) < 1.5


# ---------------------------------------------------------------- bounding box
def test_bbox_centre_mm_known_box():
    mask = np.zeros((20, 20, 20), bool)
    mask[2:7, 4:9, 10:14] = True  # inclusive 2..6, 4..8, 10..13
    lo, hi = foreground_bbox(mask)
    assert lo.tolist() == [2, 4, 10] and hi.tolist() == [6, 8, 13]
    spacing = (0.5, 2.0, 1.5)
    expected = (np.array([4.0, 6.0, 11.5]) + 0.5) * spacing
    np.testing.assert_allclose(bbox_centre_mm(mask, spacing), expected)


def test_bbox_empty_raises():
    with pytest.raises(VolumeError, match="empty"):
        foreground_bbox(np.zeros((3, 3, 3), bool))


@pytest.mark.parametrize("odd", [np.nan, 0.7, 2, -1, np.inf])
def test_a_mask_with_values_other_than_0_and_1_is_refused_not_made_foreground(odd):
    """BinaryVolume made every non-zero value foreground (astype(bool)): NaN, a probability, a
    second label. Now it says so; bool and 0 / 1 of any dtype stay accepted, the same mask."""
    values = np.zeros((4, 4, 4), dtype=float if isinstance(odd, float) else np.int16)
    values[1:3, 1:3, 1:3] = 1
    values[0, 0, 0] = odd
    with pytest.raises(VolumeError, match="a binary mask \\(bool or 0 / 1\\) is needed, got the value"):
        BinaryVolume(values)
    values[0, 0, 0] = 0
    for dtype in (bool, np.uint8, np.int32, np.float32):
        mask = BinaryVolume(values.astype(dtype)).mask
        assert mask.dtype == bool and mask.sum() == 8 and mask[1:3, 1:3, 1:3].all()

