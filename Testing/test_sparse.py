"""Sparse inputs (slices, thick slices, orthogonal, known voxels), the slice baselines, the INR
fit on known voxels only, and the `reconstruct-slices` command."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from PatchSamplerLib.method.inr import fit_latent
from PatchSamplerLib.method.metrics import dice
from PatchSamplerLib.sparse.inputs import (every_nth_slice, from_known_mask, labelled_slices, orthogonal_slices,
                                           sparse_input, thick_slices)
from PatchSamplerLib.sparse.reconstruction import (DicePlateau, known_boundary, known_boundary_points, known_points,
                                                   reconstruct_sparse)
from PatchSamplerLib.sparse.slice_baselines import fill_between_slices, interpolate_slices
from PatchSamplerLib.volume import BinaryVolume, VolumeError, read_labelmap, write_volume
from tiny_prior import held_out_vertebra, tiny_prior_path

ROOT = Path(__file__).resolve().parent.parent


def box_mask(shape=(40, 20, 16), lo=(10, 5, 4), hi=(50, 15, 12)) -> np.ndarray:
    """(X, Y, Z) bool box [lo, hi) clipped to the grid."""
    m = np.zeros(shape, bool)
    m[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = True
    return m


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_every_nth_slice_keeps_exactly_those_slices(axis):
    rng = np.random.default_rng(axis)
    mask = rng.random((17, 19, 23)) > 0.5
    s = every_nth_slice(mask, 4, axis, start=1)
    assert s.positions.tolist() == list(range(1, mask.shape[axis], 4)) and s.axis == axis
    kept = np.zeros(mask.shape[axis], bool)
    kept[s.positions] = True
    shape = [1, 1, 1]
    shape[axis] = -1
    assert np.array_equal(s.known, np.broadcast_to(kept.reshape(shape), mask.shape))
    assert np.array_equal(s.labels, mask & s.known)
    # a random start lies in [0, step) and depends on the seed only
    starts = {int(every_nth_slice(mask, 4, axis, seed=seed).positions[0]) for seed in range(20)}
    assert starts <= {0, 1, 2, 3} and len(starts) > 1


def test_thick_slices_threshold_the_window_mean_at_its_middle_slice():
    mask = np.zeros((16, 3, 3), bool)
    mask[0:4] = True           # window 0-7: 4 of 8 slices -> mean 0.5 -> foreground
    mask[8:11] = True          # window 8-15: 3 of 8 -> background
    s = thick_slices(mask, 8, 0, start=0)
    assert s.positions.tolist() == [4, 12]
    assert s.labels[4].all() and not s.labels[12].any() and s.known[[4, 12]].all()
    assert s.known.sum() == 2 * 9


def test_orthogonal_slices_cross_at_the_centroid():
    mask = box_mask((30, 30, 30), (4, 10, 12), (14, 20, 22))    # centroid 8.5, 14.5, 16.5
    s = orthogonal_slices(mask)
    c = [8, 14, 16]  # np.rint rounds half to even
    assert s.known[c[0]].all() and s.known[:, c[1]].all() and s.known[:, :, c[2]].all()
    assert s.known.sum() == 3 * 900 - 3 * 30 + 1
    assert s.axis is None and np.array_equal(s.labels, mask & s.known)


def test_labelled_slices_and_known_mask():
    mask = box_mask()
    drawn = mask.copy()
    drawn[np.setdiff1d(np.arange(40), [12, 20, 33])] = False    # drawn on three slices only
    s = labelled_slices(drawn, 0)
    assert s.positions.tolist() == [12, 20, 33]
    assert np.array_equal(s.labels, drawn)
    known = np.zeros(mask.shape, bool)
    known[::3, ::2] = True
    k = from_known_mask(mask, known)
    assert np.array_equal(k.known, known) and np.array_equal(k.labels, mask & known)


def test_bad_sparse_requests_are_clear():
    mask = box_mask()
    with pytest.raises(ValueError, match="axis must be 0, 1 or 2"):
        every_nth_slice(mask, 8, 3)
    with pytest.raises(ValueError, match="step must be an integer >= 2"):
        every_nth_slice(mask, 1, 0)
    with pytest.raises(ValueError, match=r"first slice must lie in \[0, step\)"):
        every_nth_slice(mask, 8, 0, start=8)
    with pytest.raises(VolumeError, match="no labelled foreground"):
        every_nth_slice(box_mask(lo=(2, 5, 4), hi=(6, 15, 12)), 8, 0, start=0)    # slices 0, 8, .. miss x 2..5
    with pytest.raises(VolumeError, match="shape"):
        from_known_mask(mask, np.ones((3, 3, 3), bool))
    with pytest.raises(ValueError, match="unknown sparse mode"):
        sparse_input(mask, "every")


def test_linear_interpolation_ends_half_way_and_reproduces_kept_slices():
    mask = box_mask()                                  # x in [10, 50) clipped to 40 -> 10..39
    s = every_nth_slice(mask, 8, 0, start=2)           # kept 2, 10, 18, 26, 34
    lin = interpolate_slices(s, "linear")
    xs = np.flatnonzero(lin.any(axis=(1, 2)))
    assert xs.min() == 6 and xs.max() == 38            # half-way to the empty slices 2 and 42 (assumed)
    assert np.array_equal(lin[10:39], np.broadcast_to(mask[20], (29,) + mask.shape[1:]))
    spline = interpolate_slices(s, "bspline")
    assert np.array_equal(spline[s.positions], mask[s.positions])
    assert np.array_equal(lin[s.positions], mask[s.positions])


def test_interpolation_needs_parallel_slices():
    with pytest.raises(ValueError, match="needs parallel slices"):
        interpolate_slices(orthogonal_slices(box_mask()), "linear")
    with pytest.raises(ValueError, match="unknown interpolation"):
        interpolate_slices(every_nth_slice(box_mask(), 8, 0, start=2), "cubic")


def test_fill_between_slices_is_slicers_contour_interpolation():
    pytest.importorskip("slicer")
    mask = box_mask()
    s = every_nth_slice(mask, 8, 0, start=2)           # labelled slices 10, 18, 26, 34 (2 is empty)
    filled = fill_between_slices(s)
    xs = np.flatnonzero(filled.any(axis=(1, 2)))
    assert xs.min() == 10 and xs.max() == 34           # fills between the labelled slices, not beyond
    assert np.array_equal(filled[10:35], mask[10:35])
    assert np.array_equal(s.labels, mask & s.known)    # the input is not modified


def test_known_points_are_the_known_voxels_in_the_frame_in_mm():
    mask = box_mask()
    s = every_nth_slice(mask, 8, 0, start=2)
    spacing, centre = np.array([0.8, 1.0, 2.5]), np.array([10.0, 3.0, -4.0])
    lo, hi = np.array([0, 2, 0]), np.array([39, 17, 15])
    coords, labels = known_points(s, spacing, centre, lo, hi)
    idx = np.rint((coords.numpy() + centre) / spacing - 0.5).astype(int)
    assert len(idx) == 5 * 16 * 16
    assert np.array_equal(labels.numpy() > 0.5, mask[tuple(idx.T)])
    assert s.known[tuple(idx.T)].all() and idx[:, 1].min() == 2 and idx[:, 1].max() == 17


def test_the_boundary_of_known_slices_is_the_contour_on_both_sides_within_each_slice():
    """A 10 x 10 square on each of 3 known x-slices: the inner ring (36 voxels) and the outer ring
    (40) of each; across the unknown gap between slices nothing is a neighbour."""
    mask = np.zeros((20, 20, 20), bool)
    mask[5:15, 5:15, 5:15] = True
    s = every_nth_slice(mask, 4, 0, start=1)                      # x = 1, 5, 9, 13, 17: 3 cut the cube
    edge = known_boundary(s.known, s.labels)
    assert edge.sum() == 3 * (36 + 40) and not (edge & ~s.known).any()
    assert edge[9, 5, 5] and edge[9, 4, 5] and not edge[9, 9, 9] and not edge[9, 0, 0]
    full = known_boundary(np.ones_like(mask), mask)               # everything known: the 3-D surface's two sides
    assert full.sum() == (10 ** 3 - 8 ** 3) + 6 * 10 ** 2          # the cube's surface layer + a face-neighbour layer
    lo, hi = np.array([0, 2, 0]), np.array([19, 17, 19])
    coords, _ = known_points(s, np.ones(3), np.zeros(3), lo, hi)
    flags = known_boundary_points(s, lo, hi)
    idx = np.rint(coords.numpy() - 0.5).astype(int)
    assert len(flags) == len(idx) and np.array_equal(flags.numpy(), edge[tuple(idx.T)])


def test_boundary_weighted_sparse_fit_runs_and_weight_one_is_the_uniform_fit():
    vol = held_out_vertebra(0)
    s = every_nth_slice(vol.mask, 3, 0, start=1)
    prior = str(tiny_prior_path())
    base = reconstruct_sparse(vol, s, prior, steps=20, points_per_step=256, reference=vol.mask)
    same = reconstruct_sparse(vol, s, prior, steps=20, points_per_step=256, boundary_weight=1.0, reference=vol.mask)
    weighted = reconstruct_sparse(vol, s, prior, steps=20, points_per_step=256, boundary_weight=4.0,
                                  reference=vol.mask)
    np.testing.assert_array_equal(base.latent, same.latent)
    assert not np.array_equal(base.latent, weighted.latent) and weighted.metrics["dice"] > 0.5
    assert weighted.settings["boundary_weight"] == 4.0
    with pytest.raises(ValueError, match="boundary weight must be > 0"):
        reconstruct_sparse(vol, s, prior, steps=2, boundary_weight=0.0)


def test_reconstruct_slices_takes_and_records_the_boundary_weight(tmp_path):
    from PatchSamplerLib.cli.main import main
    write_volume(tmp_path / "shape.nii.gz", held_out_vertebra(0))
    assert main(["reconstruct-slices", "--input", str(tmp_path / "shape.nii.gz"), "--step", "3", "--steps", "5",
                 "--points-per-step", "256", "--boundary-weight", "4", "--prior", str(tiny_prior_path()),
                 "--out", str(tmp_path / "out")]) == 0
    settings = json.loads((tmp_path / "out" / "metrics.json").read_text())["settings"]
    assert settings["boundary_weight"] == 4.0 and settings["points_per_step"] == 256


def test_fit_on_random_subsets_equals_full_fit_when_the_subset_is_everything():
    from PatchSamplerLib.method.inr import OccupancyDecoder
    torch.manual_seed(0)
    dec = OccupancyDecoder()
    coords, labels = torch.randn(1, 300, 3) * 10, (torch.rand(1, 300) > 0.5).float()
    full = fit_latent(dec, coords, labels, steps=5)
    assert torch.equal(full, fit_latent(dec, coords, labels, steps=5, points_per_step=300))
    sub = fit_latent(dec, coords, labels, steps=5, points_per_step=100)
    assert not torch.equal(full, sub)
    assert torch.equal(sub, fit_latent(dec, coords, labels, steps=5, points_per_step=100))   # seeded


def test_dice_plateau_stops_after_patience_flat_checks():
    from PatchSamplerLib.method.inr import OccupancyDecoder
    dec = OccupancyDecoder()
    coords, labels = torch.randn(50, 3), torch.ones(50)
    plateau = DicePlateau(dec, coords, labels, every=10, patience=2)
    z = torch.zeros(1, 128)
    stops = [plateau(step, z) for step in range(1, 41)]
    # the same latent every time: checks at 10 (new best), 20 (flat 1), 30 (flat 2 -> stop)
    assert [s for s, _ in plateau.history] == [10, 20, 30, 40] and stops.index(True) == 29
    steps_run = []
    fit_latent(dec, coords[None], labels[None], steps=1000, lr=0.0, callback=steps_run.append,
               stop=DicePlateau(dec, coords, labels, every=10, patience=2))
    assert steps_run[-1] == 30


def test_inr_from_sparse_slices_beats_linear_interpolation_on_a_held_out_shape():
    """The paper's claim on one full-size held-out vertebra with the bundled prior: every 8th
    sagittal slice, INR far above linear interpolation of the same slices (measured 0.96 vs 0.90)."""
    from PatchSamplerLib.data.synthetic import make_shape
    vol = make_shape("vertebra", 1, 0)
    s = every_nth_slice(vol.mask, 8, 0, seed=0)
    result = reconstruct_sparse(vol, s, "vertebra", steps=150, points_per_step=8192, reference=vol.mask, device="cpu")
    linear = dice(interpolate_slices(s, "linear"), vol.mask)
    assert result.metrics["dice"] == pytest.approx(dice(result.reconstruction, vol.mask))
    assert result.metrics["dice"] > linear + 0.03, (result.metrics, linear)
    (lo, hi) = result.settings["decoded_box_index"]
    in_frame = s.known[lo[0]:hi[0] + 1, lo[1]:hi[1] + 1, lo[2]:hi[2] + 1].sum()
    assert result.settings["fit_points"] == in_frame     # only the known voxels inside the prior's frame


def test_reconstruct_slices_cli_writes_outputs_and_leaves_the_input_alone(tmp_path):
    vol = held_out_vertebra(2)
    vol = BinaryVolume(vol.mask, (4.0, 4.0, 4.0), np.array([5.0, -3.0, 2.0]))
    src = tmp_path / "shape.nii.gz"
    write_volume(src, vol)
    before = src.read_bytes()
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "PatchSamplerLib", "reconstruct-slices", "--input", str(src), "--step", "4",
           "--axis", "1", "--start", "1", "--prior", str(tiny_prior_path()), "--steps", "40", "--fit-lr", "0.03",
           "--out", str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["reconstruction.nii.gz", "sparse_input.nii.gz", "errors.nii.gz", "metrics.json", "overview.png"])
    metrics = json.loads((out / "metrics.json").read_text())
    recon = read_labelmap(out / "reconstruction.nii.gz").mask
    assert metrics["dice"] == pytest.approx(dice(recon, vol.mask))
    import SimpleITK as sitk
    codes = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "sparse_input.nii.gz"))).transpose(2, 1, 0)
    expected = every_nth_slice(vol.mask, 4, 1, start=1)
    assert np.array_equal(codes, expected.known.astype(int) + expected.labels)   # 0 unknown, 1 bg, 2 fg
    assert src.read_bytes() == before
    bad = subprocess.run(cmd[:-1] + [str(tmp_path / "bad")] + ["--axis", "3"], cwd=ROOT, capture_output=True,
                         text=True)
    assert bad.returncode == 2 and "argument --axis: invalid choice: 3" in bad.stderr and not (tmp_path / "bad").exists()


def test_reconstruct_slices_from_drawn_slices_has_no_metrics(tmp_path):
    vol = held_out_vertebra(2)
    drawn = every_nth_slice(vol.mask, 3, 2, start=0).labels
    src = tmp_path / "drawn.nii.gz"
    write_volume(src, vol.with_mask(drawn))
    out = tmp_path / "out"
    from PatchSamplerLib.cli.main import main
    assert main(["reconstruct-slices", "--input", str(src), "--labelled-slices", "2", "--prior",
                 str(tiny_prior_path()), "--steps", "20", "--out", str(out)]) == 0
    assert not (out / "errors.nii.gz").exists()
    metrics = json.loads((out / "metrics.json").read_text())
    assert "dice" not in metrics and "labelled slices along axis 2" in metrics["settings"]["input"]


def test_evaluate_slices_tables_and_resume(tmp_path, capsys):
    from PatchSamplerLib.cli.main import main
    out = tmp_path / "eval"
    args = ["evaluate-slices", "--family", "vertebra", "--count", "2", "--data-seed", "99", "--scale", "0.25",
            "--inputs", "sagittal,orthogonal", "--methods", "linear,inr", "--step", "4",
            "--prior", str(tiny_prior_path()), "--steps", "20", "--fit-lr", "0.03", "--out", str(out)]
    assert main(args) == 0
    rows = (out / "cases.csv").read_text().splitlines()
    # 2 cases x (sagittal: linear + inr, orthogonal: inr only -- interpolation needs parallel slices)
    assert len(rows) == 1 + 2 * 3
    first = (out / "cases.csv").read_text()
    assert main(args) == 0
    assert (out / "cases.csv").read_text() == first                 # resumed: nothing recomputed
    last = first.splitlines()[-1]
    (out / "cases.csv").write_text(first[:first.rindex(last)] + last[:len(",".join(last.split(",")[:3])) + 4])
    # killed while writing the last row: its case, input and method are there, its numbers not
    assert main(args) == 0
    again = (out / "cases.csv").read_text().splitlines()
    untimed = [line.split(",")[:6] for line in first.splitlines()]   # all but `seconds` and `known_voxels`
    assert again[:-1] == first.splitlines()[:-1]                     # the finished cases kept as they were
    assert [line.split(",")[:6] for line in again] == untimed       # the cut one run again, same values
    table = (out / "table.md").read_text()
    assert (out / "dice.png").read_bytes()[:4] == b"\x89PNG"
    assert "## sagittal 4x" in table and "## orthogonal" in table and "INR, full-resolution prior | 2 |" in table
    linear_row = [line for line in table.split("## orthogonal")[0].splitlines() if line.startswith("| Trilinear")]
    assert len(linear_row) == 1 and "Trilinear" not in table.split("## orthogonal")[1]
    vol = held_out_vertebra(0)
    expected = dice(interpolate_slices(every_nth_slice(vol.mask, 4, 0, seed=0), "linear"), vol.mask)
    import csv
    with open(out / "cases.csv") as f:
        got = [r for r in csv.DictReader(f) if r["method"] == "linear" and r["case"].endswith("0000")]
    assert float(got[0]["dice"]) == pytest.approx(expected, abs=1e-6)
    assert main(args[:-2] + ["--methods", "inr-sparse", "--out", str(tmp_path / "x")]) == 2
    assert "needs --sparse-prior" in capsys.readouterr().err and not (tmp_path / "x").exists()


def test_a_case_log_drops_a_row_left_unfinished_and_keeps_the_finished_ones(tmp_path):
    from PatchSamplerLib.experiments.tables import case_log
    fields = ["case", "dice"]
    with case_log(tmp_path, fields, key=lambda r: r["case"]) as (write, done, path):
        assert done == set()
        write({"case": "a", "dice": 0.9})
        write({"case": "b", "dice": 0.8})
    path.write_bytes(path.read_bytes() + b"c,0.")                      # a row cut by a kill
    with case_log(tmp_path, fields, key=lambda r: r["case"]) as (write, done, _):
        assert done == {"a", "b"}                                     # "c" is not taken as finished
        write({"case": "c", "dice": 0.75})
    assert path.read_text().splitlines() == ["case,dice", "a,0.9", "b,0.8", "c,0.75"]
    path.write_bytes(b"cas")                                          # even the header cut
    with case_log(tmp_path, fields, key=lambda r: r["case"]) as (write, done, _):
        assert done == set()
        write({"case": "a", "dice": 0.9})
    assert path.read_text().splitlines() == ["case,dice", "a,0.9"]


def test_a_sparse_run_on_its_work_box_equals_a_run_on_the_whole_grid():
    """`reconstruct_sparse` works on the part of the grid the frame can reach around the labelled
    voxels and the reference (`frame.work_box`): voxel for voxel and record for record the run on
    the whole grid, for a shape in a large grid stored permuted and flipped."""
    from PatchSamplerLib.method.frame import work_box
    from PatchSamplerLib.method.inr import ShapePrior
    from PatchSamplerLib.orientation import to_anatomical
    from PatchSamplerLib.progress import Monitor
    from PatchSamplerLib.sparse.reconstruction import STAGES, SparseConfig, reconstruct_sparse_anatomical
    from tiny_prior import embedded_in_a_large_flipped_grid
    prior = ShapePrior.load(tiny_prior_path())
    big = embedded_in_a_large_flipped_grid(held_out_vertebra(2))
    s = every_nth_slice(big.mask, 3, 1, seed=0)
    lo, hi = work_box(s.labels, big.spacing, prior.extent_mm, also=big.mask)
    assert np.prod(hi - lo) < 0.5 * big.mask.size and lo.any()
    config = SparseConfig(steps=20, points_per_step=256, device="cpu")
    boxed = reconstruct_sparse(big, s, prior, config, reference=big.mask)
    anatomical, orient = to_anatomical(big)
    whole = reconstruct_sparse_anatomical(anatomical, s.to_anatomical(orient), prior, config,
                                          orient.array_to_anatomical(big.mask), Monitor(None, None, STAGES))
    assert np.array_equal(boxed.reconstruction, orient.array_from_anatomical(whole.reconstruction))
    assert np.array_equal(boxed.errors, orient.array_from_anatomical(whole.errors)) and boxed.reconstruction.any()
    assert np.array_equal(boxed.latent, whole.latent) and boxed.metrics == whole.metrics
    for key in ("decoded_box_index", "known_voxels", "fit_points", "decoder_points", "steps_run"):
        assert boxed.settings[key] == whole.settings[key], key
    assert boxed.settings["frame_centre_mm"] == pytest.approx(whole.settings["frame_centre_mm"], abs=1e-9)
    assert s.cropped(lo, hi).positions.tolist() == [p - lo[1] for p in s.positions if lo[1] <= p < hi[1]]
