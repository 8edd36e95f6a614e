"""Augmentation of prior-training shapes (`data.augment`, issue 17 item 2): copies on the same
grid, deterministic per (seed, shape, copy), each transform doing what it says, and the
`train-prior --augment-copies` option recorded in the prior's metadata."""
import contextlib
import io

import numpy as np
import pytest

from PatchSamplerLib.cli.main import main
from PatchSamplerLib.data.augment import AugmentConfig, augment_shapes, augment_volume, touches_border
from PatchSamplerLib.data.synthetic import FAMILY_VERSIONS, make_shape
from PatchSamplerLib.method.inr import ShapePrior
from PatchSamplerLib.method.metrics import dice
from PatchSamplerLib.volume import BinaryVolume, bbox_centre_mm


@pytest.fixture(scope="module")
def kidney():
    return make_shape("kidney-anatomical", 0, 0, 0.5)        # 42 x 42 x 55 at 3 mm


def only(**options) -> AugmentConfig:
    """A config with every transform off except `options`."""
    off = dict(augment_copies=1, augment_rotation_deg=0.0, augment_scale=0.0, augment_deform_mm=0.0)
    return AugmentConfig(**{**off, **options})


def test_no_transform_gives_the_shape_back(kidney):
    copy = augment_volume(kidney, np.random.default_rng(0), only())
    assert np.array_equal(copy.mask, kidney.mask)
    assert copy.spacing == kidney.spacing and np.array_equal(copy.origin, kidney.origin)


def test_copies_are_deterministic_and_differ(kidney):
    cfg = AugmentConfig(augment_copies=2, augment_seed=3)
    a, skipped = augment_shapes([kidney], cfg)
    b, _ = augment_shapes([kidney], cfg)
    assert len(a) == 3 and skipped == 0 and a[0] is kidney
    assert all(np.array_equal(x.mask, y.mask) for x, y in zip(a, b))
    assert not np.array_equal(a[1].mask, a[2].mask)
    assert 0.3 < dice(a[1].mask, kidney.mask) < 0.99       # changed, still the same organ's place


def test_rotation_keeps_volume_and_centre(kidney):
    rotated = augment_volume(kidney, np.random.default_rng(1), only(augment_rotation_deg=20.0))
    assert not np.array_equal(rotated.mask, kidney.mask)
    assert rotated.voxel_count == pytest.approx(kidney.voxel_count, rel=0.04)
    shift = bbox_centre_mm(rotated.mask, rotated.spacing) - bbox_centre_mm(kidney.mask, kidney.spacing)
    assert np.all(np.abs(shift) <= 2 * kidney.spacing[0])


def test_scaling_changes_volume_within_its_limits(kidney):
    ratios = [augment_volume(kidney, np.random.default_rng(s), only(augment_scale=0.15)).voxel_count
              / kidney.voxel_count for s in range(4)]
    assert all(0.85 ** 3 - 0.03 < r < 1.15 ** 3 + 0.03 for r in ratios)
    assert max(abs(r - 1) for r in ratios) > 0.03               # it does scale


def test_deformation_is_smooth_and_local(kidney):
    deformed = augment_volume(kidney, np.random.default_rng(2), only(augment_deform_mm=3.0))
    assert 0.6 < dice(deformed.mask, kidney.mask) < 0.99
    # smooth: the deformed kidney is one piece
    from scipy import ndimage
    assert ndimage.label(deformed.mask, np.ones((3, 3, 3)))[1] == 1


def test_world_geometry_of_the_grid_is_kept():
    """The transform is applied in world mm: a shape stored with flipped axes and moved origin
    gives the same world shape as the plain one (rotation about the world bounding-box centre)."""
    shape = make_shape("kidney-anatomical", 0, 1, 0.5)
    corner = (np.array(shape.shape) - 1) * shape.spacing
    flipped = BinaryVolume(shape.mask[::-1, ::-1, :].copy(), shape.spacing,
                           shape.origin + corner * np.array([1.0, 1.0, 0.0]) + np.array([5.0, -7.0, 11.0]),
                           np.diag([-1.0, -1.0, 1.0]))
    cfg = only(augment_rotation_deg=15.0, augment_scale=0.1)
    plain = augment_volume(shape, np.random.default_rng(4), cfg)
    other = augment_volume(flipped, np.random.default_rng(4), cfg)
    back = other.mask[::-1, ::-1, :]
    assert dice(plain.mask, back) > 0.97          # the same shape on the grid, wherever the grid lies


def test_a_copy_that_leaves_the_grid_is_skipped():
    full = BinaryVolume(np.ones((12, 12, 12), bool), (2.0, 2.0, 2.0))
    shapes, skipped = augment_shapes([full], AugmentConfig(augment_copies=2))
    assert shapes == [full] and skipped == 2 and touches_border(full.mask)


def test_bad_options_are_refused():
    for bad in (dict(augment_copies=-1), dict(augment_scale=0.6), dict(augment_deform_spacing_mm=0.0)):
        with pytest.raises(ValueError):
            AugmentConfig(**bad)


def test_train_prior_records_the_augmentation(tmp_path):
    out = tmp_path / "run"
    args = ["train-prior", "--family", "kidney-anatomical", "--count", "3", "--val-count", "1", "--scale", "0.2",
            "--epochs", "1", "--batch-size", "3", "--points-per-shape", "128", "--val-t", "2", "--val-n", "2",
            "--val-k", "3", "--augment-copies", "1", "--out", str(out)]
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(args) == 0
    meta = ShapePrior.load(out / "prior.pt").metadata
    assert meta["n_train"] == 6 and meta["family_version"] == FAMILY_VERSIONS["kidney-anatomical"]
    assert meta["augmentation"]["added"] == 3 and meta["augmentation"]["augment_rotation_deg"] == 10.0
