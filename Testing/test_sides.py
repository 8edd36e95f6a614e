"""Tests of left and right (`PatchSamplerLib.method.sides`, `structures.side_in_name`, the
kidney-anatomical-left family): a prior trained on one side gets the other side mirrored onto it
and back, in the anatomical frame, whatever the storage order."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from PatchSamplerLib.data.anatomy.kidney import kidney_shape_with_params, sinus_cavity
from PatchSamplerLib.data.synthetic import CANONICAL_SIDES, GRIDS, make_shape, scaled_grid, shape_rng
from PatchSamplerLib.method.inr import ShapePrior
from PatchSamplerLib.method.sides import canonical_side, detect_side, mirrored, to_canonical_side
from PatchSamplerLib.orientation import to_anatomical
from PatchSamplerLib.pipeline import RunConfig, reconstruct
from PatchSamplerLib.structures import first_side, side_in_name
from PatchSamplerLib.volume import BinaryVolume
from test_orientation import ORDERINGS, restored, world_points
from tiny_prior import held_out_vertebra, tiny_prior_path

SMALL = 0.5


@pytest.mark.parametrize("text, side", [
    ("kidney_left.nii.gz", "left"), ("kidney_right", "right"), ("Right kidney", "right"),
    ("s0001_kidney_left_1.5mm.nii.gz", "left"), ("kidney-anatomical-left_3_0007", "left"),
    ("left and right kidneys", None), ("leftover", None), ("Segment_1", None), ("vertebrae_L1", None), (None, None)])
def test_side_in_name(text, side):
    assert side_in_name(text) == side


def test_first_side_takes_the_first_name_that_says_one():
    assert first_side([None, "Segment_1", "left kidney", "kidney_right.nii.gz"]) == ("left", "left kidney")
    assert first_side(["Segment_1"]) is None


def _right_and_left(index: int):
    """(kidney-anatomical shape, its side, the kidney-anatomical-left shape) of seed 1, index."""
    shape, spacing = scaled_grid(GRIDS["kidney-anatomical"], SMALL)
    _, params = kidney_shape_with_params(shape_rng("kidney-anatomical", 1, index), None, spacing, shape)
    return make_shape("kidney-anatomical", 1, index, SMALL), params.side, make_shape("kidney-anatomical-left", 1, index,
                                                                                       SMALL)


def test_left_family_is_the_parent_family_with_right_kidneys_mirrored():
    sides = set()
    for index in range(8):
        parent, side, left = _right_and_left(index)
        sides.add(side)
        expected = parent.mask if side == "left" else parent.mask[::-1]
        assert np.array_equal(left.mask, expected) and left.spacing == parent.spacing
        cavity = np.argwhere(sinus_cavity(left)["cavity"]).mean(0) - np.argwhere(left.mask).mean(0)
        assert cavity[0] < -0.25, (index, side, cavity)          # the hilum faces -x: medial of a left kidney
    assert sides == {"left", "right"}
    assert CANONICAL_SIDES == {"kidney-anatomical-left": "left"}


@pytest.fixture(scope="module")
def one_sided():
    """The tiny prior, told that it was trained on left shapes only."""
    prior = ShapePrior.load(tiny_prior_path())
    prior.metadata = dict(copy.deepcopy(prior.metadata), canonical_side="left")
    return prior


def test_canonical_side_reads_the_metadata_and_refuses_nonsense():
    assert canonical_side({}) is None and canonical_side({"canonical_side": "right"}) == "right"
    with pytest.raises(ValueError, match="left or right"):
        canonical_side({"canonical_side": "middle"})
    with pytest.raises(ValueError, match="left or right"):
        RunConfig(side="both").check()


def test_mirrored_volume_maps_back_to_the_input_grid():
    volume = held_out_vertebra(2)
    anatomical, orient = to_anatomical(volume)
    mirror, back = mirrored(anatomical, orient)
    assert np.array_equal(mirror.mask, anatomical.mask[::-1])
    assert np.array_equal(back.array_from_anatomical(mirror.mask), volume.mask)
    index = np.argwhere(volume.mask)[:20] + 0.25
    assert np.allclose(back.index_from_anatomical(back.index_to_anatomical(index)), index)
    x = back.index_to_anatomical(index)[:, 0]
    assert np.allclose(x, anatomical.shape[0] - 1 - orient.index_to_anatomical(index)[:, 0])


def test_a_prior_of_both_sides_leaves_the_input_as_it_is():
    prior = ShapePrior.load(tiny_prior_path())
    volume, orient = to_anatomical(held_out_vertebra(0))
    same, back, record = to_canonical_side(volume, orient, prior, "right")
    assert same is volume and back is orient and record is None
    assert reconstruct(held_out_vertebra(0), n=2, k=3, t=3, prior=prior, side="right").settings["side"] is None


def test_the_other_side_is_mirrored_onto_the_prior_and_back(one_sided):
    """A right shape (the mirror of a left one) given as right gives the mirror image of the left
    shape's result: the same centres, reconstruction, metrics, frame -- mirrored."""
    left = held_out_vertebra(1)
    right = left.with_mask(np.ascontiguousarray(left.mask[::-1]))
    a = reconstruct(left, n=3, k=3, t=6, seed=1, prior=one_sided, side="left")
    b = reconstruct(right, n=3, k=3, t=6, seed=1, prior=one_sided, side="right")
    assert not a.settings["side"]["mirrored"] and b.settings["side"]["mirrored"]
    assert b.settings["side"]["input_side"] == "right" and b.settings["side"]["side_from"] == "given"
    assert np.array_equal(b.reconstruction, a.reconstruction[::-1])
    assert np.array_equal(b.errors, a.errors[::-1])
    assert np.allclose(b.centres[:, 0], left.shape[0] - 1 - a.centres[:, 0]) and np.allclose(b.centres[:, 1:],
                                                                                           a.centres[:, 1:])
    assert b.metrics == pytest.approx(a.metrics)
    # the recorded frame is the input's own: as a prior of both sides records it for that input
    both = reconstruct(right, n=3, k=3, t=6, seed=1, prior=ShapePrior.load(tiny_prior_path()))
    assert b.settings["frame_centre_mm"] == pytest.approx(both.settings["frame_centre_mm"])
    assert b.settings["decoded_box_index"] == both.settings["decoded_box_index"]


def test_a_mirrored_run_gives_one_world_result_for_every_storage_order(one_sided):
    volume = held_out_vertebra(3)
    anisotropic = BinaryVolume(volume.mask, (4.0, 3.0, 5.0), np.array([-20.0, 35.0, 110.0]), volume.direction)
    reference = None
    for perm, flips in ORDERINGS[::5]:
        stored = restored(anisotropic, perm, flips)
        result = reconstruct(stored, n=3, k=3, t=6, seed=2, prior=one_sided, side="right")
        found = (world_points(result.centres, stored), world_points(np.argwhere(result.reconstruction), stored))
        reference = reference or found
        assert result.settings["side"]["mirrored"]
        assert np.allclose(found[0], reference[0], atol=1e-3) and np.array_equal(found[1], reference[1]), (perm, flips)


def test_an_unknown_side_is_detected_and_recorded(one_sided):
    volume = held_out_vertebra(0)
    anatomical, _ = to_anatomical(volume)
    side, losses = detect_side(one_sided, anatomical.mask, anatomical.spacing)
    assert side in ("left", "right") and len(losses) == 2 and all(v > 0 for v in losses)
    assert (side == "left") == (losses[0] <= losses[1])
    record = reconstruct(volume, n=2, k=3, t=3, prior=one_sided).settings["side"]
    assert record["input_side"] == side and record["detection_losses"] == losses
    assert record["mirrored"] == (side == "right") and record["side_from"].startswith("detected")
    with pytest.raises(ValueError, match="both sides"):
        detect_side(ShapePrior.load(tiny_prior_path()), anatomical.mask, anatomical.spacing)


def test_a_detection_is_fitted_once_per_prior_shape_spacing_and_seed(one_sided, monkeypatch):
    """A second run on the same shape ("Compare all", the seeds of an evaluation) reuses the
    detection; another shape, spacing, seed, prior weights or prior side fits again."""
    from PatchSamplerLib.method import sides
    calls = []
    fit = sides.side_losses
    monkeypatch.setattr(sides, "side_losses", lambda *a, **k: calls.append(1) or fit(*a, **k))
    monkeypatch.setattr(sides, "_detected", {})
    shape = to_anatomical(held_out_vertebra(2))[0]
    first = detect_side(one_sided, shape.mask, shape.spacing)
    assert detect_side(one_sided, shape.mask.copy(), tuple(shape.spacing)) == first and len(calls) == 1
    detect_side(one_sided, shape.mask, shape.spacing, seed=1)
    detect_side(one_sided, shape.mask, np.asarray(shape.spacing) * 2)
    detect_side(one_sided, shape.mask[::-1].copy(), shape.spacing)
    other = copy.deepcopy(one_sided)
    with torch.no_grad():
        next(other.decoder.parameters()).add_(0.01)
    detect_side(other, shape.mask, shape.spacing)
    assert len(calls) == 5
    right = copy.copy(one_sided)
    right.metadata = dict(one_sided.metadata, canonical_side="right")       # the same weights, the other side
    assert detect_side(right, shape.mask, shape.spacing) == ({"left": "right", "right": "left"}[first[0]], first[1])
    assert len(calls) == 6


def test_sparse_slices_of_the_other_side_are_mirrored_onto_the_prior_and_back(one_sided):
    from PatchSamplerLib.sparse.inputs import every_nth_slice
    from PatchSamplerLib.sparse.reconstruction import reconstruct_sparse
    left = held_out_vertebra(1)
    right = left.with_mask(np.ascontiguousarray(left.mask[::-1]))
    observed = every_nth_slice(left.mask, 3, axis=2, seed=0)
    mirrored_slices = every_nth_slice(right.mask, 3, axis=2, start=observed.positions[0])
    a = reconstruct_sparse(left, observed, one_sided, steps=20, reference=left.mask, side="left")
    b = reconstruct_sparse(right, mirrored_slices, one_sided, steps=20, reference=right.mask, side="right")
    assert b.settings["side"]["mirrored"] and not a.settings["side"]["mirrored"]
    assert np.array_equal(b.reconstruction, a.reconstruction[::-1]) and b.metrics == pytest.approx(a.metrics)
    detected = reconstruct_sparse(right, mirrored_slices, one_sided, steps=5).settings["side"]
    assert detected["side_from"].startswith("detected") and len(detected["detection_losses"]) == 2


@pytest.mark.parametrize("data, prior_side", [(["--family", "kidney-anatomical"], "left"),
                                              (["--family", "kidney-anatomical-left"], None),
                                              (["--data", ".", "--one-side", "right"], "left")])
def test_training_a_sampler_on_shapes_of_another_side_than_the_prior_is_refused(tmp_path, capsys, data, prior_side):
    from PatchSamplerLib.cli.main import main
    prior = ShapePrior.load(tiny_prior_path())
    if prior_side:
        prior.metadata["canonical_side"] = prior_side
    prior.save(tmp_path / "prior.pt")
    out = tmp_path / "sampler"
    assert main(["train-sampler", *data, "--count", "4", "--val-count", "2", "--prior", str(tmp_path / "prior.pt"),
                 "--n", "4", "--k", "9", "--epochs", "1", "--out", str(out)]) != 0
    assert "sampler's training shapes" in capsys.readouterr().err and not out.exists()


@pytest.fixture(scope="module")
def left_prior():
    return ShapePrior.load("kidney-anatomical-left")


def test_the_bundled_left_prior_detects_the_side_of_the_real_kidneys(left_prior):
    """The real TotalSegmentator kidneys (Resources/SampleData), as stored and mirrored: the
    bundled one-sided prior names each one's side (results/sides/detection.md: 74 of 74)."""
    from PatchSamplerLib.checkpoints import sample_data_path
    from PatchSamplerLib.volume import read_labelmap
    assert canonical_side(left_prior.metadata) == "left"
    for name, side in (("kidney_left_1.5mm.nii.gz", "left"), ("kidney_right_1.5mm.nii.gz", "right")):
        anatomical, _ = to_anatomical(read_labelmap(sample_data_path(name)))
        assert detect_side(left_prior, anatomical.mask, anatomical.spacing)[0] == side
        flipped = anatomical.mask[::-1].copy()
        assert detect_side(left_prior, flipped, anatomical.spacing)[0] == ("right" if side == "left" else "left")


def test_run_reads_the_side_from_the_file_name_and_says_what_it_did(tmp_path, capsys):
    from PatchSamplerLib.checkpoints import sample_data_path
    from PatchSamplerLib.cli.main import main
    from PatchSamplerLib.volume import read_labelmap, write_volume
    right = sample_data_path("kidney_right_1.5mm.nii.gz")
    assert main(["run", "--input", str(right), "--prior", "kidney-anatomical-left", "--n", "4", "--k", "7",
                 "--t", "10", "--out", str(tmp_path / "named")]) == 0
    assert "side: right (read from the input's name), mirrored onto the prior's left side and back" in \
        capsys.readouterr().out
    write_volume(tmp_path / "shape.nii.gz", read_labelmap(right))
    assert main(["run", "--input", str(tmp_path / "shape.nii.gz"), "--prior", "kidney-anatomical-left", "--n", "4",
                 "--k", "7", "--t", "10", "--out", str(tmp_path / "unnamed")]) == 0
    assert "side: right (detected by the prior), mirrored" in capsys.readouterr().out
    assert main(["run", "--input", str(right), "--prior", "kidney-anatomical-left", "--side", "left", "--n", "4",
                 "--k", "7", "--t", "10", "--out", str(tmp_path / "told")]) == 0
    assert "side: left (given), as it is" in capsys.readouterr().out
    import json
    recorded = json.loads((tmp_path / "named" / "metrics.json").read_text())["frame"]["side"]
    assert recorded["mirrored"] is True and recorded["input_side"] == "right"
    assert recorded["side_from"] == "read from the input's name"          # not "given": no --side was
    assert json.loads((tmp_path / "told" / "metrics.json").read_text())["frame"]["side"]["side_from"] == "given"
    assert json.loads((tmp_path / "unnamed" / "patches.json").read_text())["side"]["side_from"].startswith("detected")
