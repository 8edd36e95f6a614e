"""Auxiliary files of `reconstruct-slices` (--known-mask, --reference) are read in world space:
any non-zero voxel of a known mask is observed (the product's own 0/1/2 sparse_input.nii.gz
included), and a file on another grid (flipped, shifted, another size) is resampled onto the
input's grid -- never used index by index."""
import json

import numpy as np
import pytest

from PatchSamplerLib.cli.main import main
from PatchSamplerLib.method.metrics import dice
from PatchSamplerLib.sparse.inputs import every_nth_slice
from PatchSamplerLib.volume import (BinaryVolume, grid_differences, index_to_world, on_grid_of, read_labelmap,
                                    write_labelmap, write_volume)
from tiny_prior import held_out_vertebra, tiny_prior_path


@pytest.fixture(scope="module")
def shape() -> BinaryVolume:
    vol = held_out_vertebra(2)
    return BinaryVolume(vol.mask, (4.0, 4.0, 4.0), np.array([5.0, -3.0, 2.0]))


def flipped_x(volume: BinaryVolume) -> BinaryVolume:
    """The same anatomy stored with the x axis reversed (same size, another grid)."""
    origin = index_to_world([volume.shape[0] - 1, 0, 0], volume)
    return BinaryVolume(volume.mask[::-1].copy(), volume.spacing, origin, volume.direction @ np.diag([-1, 1, 1]))


def shifted(volume: BinaryVolume, by: int = 3) -> BinaryVolume:
    """The same anatomy on a grid `by` voxels larger at the start of every axis."""
    mask = np.pad(volume.mask, ((by, 0), (by, 0), (by, 0)))
    return BinaryVolume(mask, volume.spacing, index_to_world([-by] * 3, volume), volume.direction)


def run_slices(tmp_path, name, *options) -> dict:
    out = tmp_path / name
    assert main(["reconstruct-slices", *options, "--prior", str(tiny_prior_path()), "--steps", "20",
                 "--out", str(out)]) == 0
    return json.loads((out / "metrics.json").read_text()) | {"out": out}


def test_grids_are_compared_and_resampled_in_world_space(shape):
    assert grid_differences(shape, shape) == []
    assert any("direction" in d for d in grid_differences(flipped_x(shape), shape))
    notes = []
    back = on_grid_of(flipped_x(shape), shape, "--reference r.nii.gz", notes)
    assert np.array_equal(back.mask, shape.mask) and "--reference r.nii.gz is on another grid" in notes[0]
    assert np.array_equal(on_grid_of(shifted(shape), shape, "x", []).mask, shape.mask)


@pytest.mark.parametrize("stored", [flipped_x, shifted])
def test_a_reference_on_another_grid_scores_the_world_space_dice(tmp_path, shape, stored):
    """Issue example: a flipped reference was reported as Dice 0.948 (index by index) while the
    world-space Dice was 0.185."""
    drawn = tmp_path / "drawn.nii.gz"
    write_volume(drawn, shape.with_mask(every_nth_slice(shape.mask, 3, 2, start=0).labels))
    same, other = tmp_path / "same.nii.gz", tmp_path / "other.nii.gz"
    write_volume(same, shape)
    write_volume(other, stored(shape))
    a = run_slices(tmp_path, "a", "--input", str(drawn), "--labelled-slices", "2", "--reference", str(same))
    b = run_slices(tmp_path, "b", "--input", str(drawn), "--labelled-slices", "2", "--reference", str(other))
    recon = read_labelmap(b["out"] / "reconstruction.nii.gz").mask
    assert b["dice"] == pytest.approx(a["dice"]) == pytest.approx(dice(recon, shape.mask))
    assert any("resampled onto the input's grid in world space" in w for w in b["warnings"])


def test_the_products_own_sparse_input_file_is_a_valid_known_mask(tmp_path, shape):
    """Issue example: a known mask with values {0, 1, 2} was refused with advice to use --label."""
    src = tmp_path / "shape.nii.gz"
    write_volume(src, shape)
    first = run_slices(tmp_path, "first", "--input", str(src), "--step", "4", "--axis", "1", "--start", "1")
    again = run_slices(tmp_path, "again", "--input", str(src), "--known-mask", str(first["out"] / "sparse_input.nii.gz"),
                       "--reference", str(src))
    expected = every_nth_slice(shape.mask, 4, 1, start=1)
    assert again["settings"]["known_voxels"] == expected.known_count
    assert again["dice"] == pytest.approx(first["dice"], abs=0.02)


def test_an_auxiliary_file_outside_the_input_is_refused_naming_it(tmp_path, shape, capsys):
    src, far = tmp_path / "shape.nii.gz", tmp_path / "far.nii.gz"
    write_volume(src, shape)
    write_labelmap(far, shape.mask.astype(np.uint8), BinaryVolume(shape.mask, shape.spacing, shape.origin + 1000.0))
    out = tmp_path / "out"
    assert main(["reconstruct-slices", "--input", str(src), "--known-mask", str(far), "--prior",
                 str(tiny_prior_path()), "--out", str(out)]) == 2
    assert f"--known-mask {far} does not overlap the input in world space" in capsys.readouterr().err
    assert not out.exists()
