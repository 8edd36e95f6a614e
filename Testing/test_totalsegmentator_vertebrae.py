"""TotalSegmentator outputs (PatchSamplerLib.data.totalsegmentator): vertebrae of chosen levels and
kidneys, from per-structure files and from multi-label (--ml) files, on small folders built here
in the real layouts (RAS-ordered NIfTI as TotalSegmentator writes for a typical CT), and the
`train-prior --dataset totalsegmentator --structure vertebra` command line."""
from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import ball
from PatchSamplerLib.cli.main import build_parser, main
from PatchSamplerLib.cli.training import load_training_data
from PatchSamplerLib.data import cross_validation_folds
from PatchSamplerLib.data.loaders import load_usable_dataset
from PatchSamplerLib.data.totalsegmentator import (CLASS_MAPS, find_subjects, load_totalsegmentator, parse_levels,
                                                   resample_near_foreground, touches_border)
from PatchSamplerLib.volume import BinaryVolume, index_to_world, resample_isotropic

SPACING = (1.5, 1.5, 2.0)                        # file voxels (mm); the loader resamples to 1 mm
ORIGIN = np.array([-12.0, 30.0, -400.0])         # world LPS mm of voxel (0, 0, 0) of the LPS-ordered arrays
SHAPE = (14, 12, 29)                             # LPS-ordered (X = left, Y = posterior, Z = superior)
SMALL = dict(min_voxels=300, crop_size=(24, 24, 16))   # the fixture's vertebrae are ~500 voxels at 1 mm
V2 = CLASS_MAPS["total"]


# ---------------------------------------------------------------- writing files like TotalSegmentator
def write_nifti(path: Path, array: np.ndarray, spacing=SPACING, origin=ORIGIN, ras: bool = True) -> None:
    """Write an LPS-ordered (X, Y, Z) uint8 array; ras=True stores it as TotalSegmentator writes a
    typical CT: i -> patient right, j -> anterior, k -> superior (direction diag(-1, -1, 1))."""
    array, origin, direction = np.asarray(array, np.uint8), np.asarray(origin, float), np.eye(3)
    if ras:
        origin = origin + (np.array(array.shape) - 1) * np.asarray(spacing) * np.array([1, 1, 0])
        array, direction = array[::-1, ::-1, :], np.diag([-1.0, -1.0, 1.0])
    path.parent.mkdir(parents=True, exist_ok=True)
    image = sitk.GetImageFromArray(np.ascontiguousarray(array.transpose(2, 1, 0)))
    image.SetSpacing(tuple(float(s) for s in spacing))
    image.SetOrigin(tuple(float(o) for o in origin))
    image.SetDirection(tuple(direction.reshape(-1)))
    sitk.WriteImage(image, str(path), path.name.endswith(".gz"))


def vertebra(cz: int, shape=SHAPE, cx: int = 6, cy: int = 5) -> np.ndarray:
    """Asymmetric vertebra-like blob on an LPS-ordered grid: a body, a spinous bar towards +P and
    a transverse bump on the patient's left (+X) only. ~120 file voxels, ~530 mm^3."""
    mask = np.zeros(shape, bool)
    mask[cx - 3:cx + 4, cy - 3:cy + 2, cz - 1:cz + 2] = True           # body
    mask[cx - 1:cx + 2, cy + 2:cy + 5, cz] = True                       # spinous process
    mask[cx + 4:cx + 6, cy - 1:cy + 1, cz] = True                       # left transverse process
    return mask


def spine() -> dict[str, np.ndarray]:
    """The structures of one subject (LPS-ordered masks); T10 / T11 are not in the field of view.

    L5 is cut by the bottom of the scan, L4 is a 4-voxel fragment, L3 has a separate island."""
    l3 = vertebra(9)
    l3[3:5, 2:4, 12] = True                                             # one 2 mm slice above the body
    fragment = np.zeros(SHAPE, bool)
    fragment[5:7, 4:6, 5] = True
    return {"vertebrae_T12": vertebra(24), "vertebrae_L1": vertebra(19), "vertebrae_L2": vertebra(14),
            "vertebrae_L3": l3, "vertebrae_L4": fragment, "vertebrae_L5": vertebra(1)}


def multilabel(masks: dict[str, np.ndarray], numbers=V2) -> np.ndarray:
    """The multi-label array (TotalSegmentator's class numbers) of non-overlapping masks."""
    labels = np.zeros(next(iter(masks.values())).shape, np.uint8)
    for name, mask in masks.items():
        labels[mask] = numbers[name]
    return labels


@pytest.fixture(scope="module")
def spine_root(tmp_path_factory) -> Path:
    """s0001: per-structure files (T10 written empty, T11 missing, as a crop without them);
    s0002: ``segmentations.nii`` (``-o s0002/segmentations --ml``); s0003.nii.gz: a multi-label
    file in the root, LPS-ordered; meta.csv (skipped) and an empty folder (reported): not subjects."""
    root = tmp_path_factory.mktemp("totalseg_spine")
    masks = spine()
    for name, mask in masks.items():
        write_nifti(root / "s0001" / "segmentations" / f"{name}.nii.gz", mask)
    write_nifti(root / "s0001" / "segmentations" / "vertebrae_T10.nii.gz", np.zeros(SHAPE))
    write_nifti(root / "s0001" / "ct.nii.gz", np.zeros(SHAPE))
    write_nifti(root / "s0002" / "segmentations.nii", multilabel(masks))
    write_nifti(root / "s0003.nii.gz", multilabel(masks), ras=False)
    (root / "meta.csv").write_text("image_id;age\ns0001;60\n")
    (root / "s0009").mkdir()
    return root


@pytest.fixture(scope="module")
def spine_data(spine_root):
    return load_totalsegmentator(spine_root, structure="vertebra", **SMALL)


# ---------------------------------------------------------------- levels and class map
def test_levels_are_parsed_in_spine_order():
    assert parse_levels("T12,L1") == ("vertebrae_T12", "vertebrae_L1")
    assert parse_levels("L1-L5") == tuple(f"vertebrae_L{i}" for i in range(1, 6))
    assert parse_levels() == parse_levels("T10-L5") == parse_levels("l5-t10") == \
        ("vertebrae_T10", "vertebrae_T11", "vertebrae_T12") + parse_levels("L1-L5")
    assert parse_levels("vertebrae_C1, C2-C3, S1, L5") == ("vertebrae_C1", "vertebrae_C2", "vertebrae_C3",
                                                          "vertebrae_L5", "vertebrae_S1")
    assert parse_levels(["L2", "L1"]) == ("vertebrae_L1", "vertebrae_L2")
    with pytest.raises(ValueError, match="unknown vertebra level 'L6'.*C1-C7, T1-T12, L1-L5 and S1"):
        parse_levels("L1-L6")
    with pytest.raises(ValueError, match="two ends"):
        parse_levels("L1-L2-L3")
    with pytest.raises(ValueError, match="no vertebra level"):
        parse_levels(" , ")


def test_class_numbers_are_totalsegmentators():
    # wasserth/TotalSegmentator, totalsegmentator/map_to_binary.py, class_map["total"] / ["total_v1"]
    total, v1 = CLASS_MAPS["total"], CLASS_MAPS["total_v1"]
    assert (total["kidney_right"], total["kidney_left"]) == (2, 3) == (v1["kidney_right"], v1["kidney_left"])
    assert [total[f"vertebrae_{n}"] for n in ("S1", "L5", "L1", "T12", "T10", "T1", "C7", "C1")] == \
        [26, 27, 31, 32, 34, 43, 44, 50]
    assert [v1[f"vertebrae_{n}"] for n in ("L5", "L1", "T12", "T1", "C7", "C1")] == [18, 22, 23, 34, 35, 41]
    assert "vertebrae_S1" not in v1 and len(total) == 27 and len(set(total.values())) == 27


# ---------------------------------------------------------------- the loader
def test_subjects_of_both_layouts_are_found(spine_root):
    subjects = find_subjects(spine_root)
    assert [(s.name, s.path.name, s.multilabel) for s in subjects] == [
        ("s0001", "segmentations", False), ("s0002", "segmentations.nii", True), ("s0003", "s0003.nii.gz", True)]


def test_complete_vertebrae_are_kept_and_the_others_reported(spine_data, spine_root):
    kept = ["vertebrae_T12", "vertebrae_L1", "vertebrae_L2"]
    assert [i.name for i in spine_data] == [f"{s}/{n}" for s in ("s0001", "s0002", "s0003") for n in kept]
    assert spine_data.subjects == ["s0001"] * 3 + ["s0002"] * 3 + ["s0003"] * 3
    assert [i.label for i in spine_data] == [None] * 3 + [32, 31, 30] * 2
    reasons = {(Path(p).relative_to(spine_root).as_posix(), r) for p, r in spine_data.dropped}
    files = "s0001/segmentations/vertebrae_"
    small = [r for p, r in reasons if p == files + "L4.nii.gz"]
    assert len(small) == 1 and small[0].endswith("voxels < 300 at 1 mm") and int(small[0].split()[0]) < 40
    expected_files = {(files + "T10.nii.gz", "empty (no foreground voxel)"),
                      (files + "T11.nii.gz", "file missing"),
                      (files + "L3.nii.gz", "2 connected components (26-connectivity)"),
                      (files + "L5.nii.gz", "touches the volume border")}
    assert {x for x in reasons if x[0].startswith(files)} == expected_files | {(files + "L4.nii.gz", small[0])}
    for path in ("s0002/segmentations.nii", "s0003.nii.gz"):     # the same reasons, naming structure and label
        assert {r for p, r in reasons if p == path} == {
            "vertebrae_T10 (label 34): empty (no foreground voxel)",
            "vertebrae_T11 (label 33): empty (no foreground voxel)",
            "vertebrae_L3 (label 29): 2 connected components (26-connectivity)",
            f"vertebrae_L4 (label 28): {small[0]}",
            "vertebrae_L5 (label 27): touches the volume border"}


def test_multilabel_files_give_the_per_structure_masks(spine_data):
    by_subject = [spine_data[i:i + 3] for i in (0, 3, 6)]
    for files, ml_ras, ml_lps in zip(*by_subject):                  # s0003 is stored LPS-ordered
        for other in (ml_ras, ml_lps):
            assert np.array_equal(files.volume.mask, other.volume.mask)
            np.testing.assert_allclose(other.volume.origin, files.volume.origin, atol=1e-6)
            np.testing.assert_allclose(other.volume.direction, files.volume.direction, atol=1e-9)


def test_kept_vertebrae_are_lps_1mm_centred_and_in_place(spine_data):
    for item in spine_data:
        vol = item.volume
        assert vol.shape == (24, 24, 16) and vol.spacing == (1.0, 1.0, 1.0)
        np.testing.assert_allclose(vol.direction, np.eye(3), atol=1e-9)   # RAS file -> LPS axes
        assert 400 < vol.voxel_count < 700                                  # ~530 mm^3
        lo, hi = np.argwhere(vol.mask).min(axis=0), np.argwhere(vol.mask).max(axis=0)
        assert vol.mask[hi[0]].sum() < vol.mask[lo[0]].sum() / 2    # the thin bump is on the left (+x)
        assert vol.mask[:, hi[1]].sum() < vol.mask[:, lo[1]].sum() / 2   # the spinous bar is posterior (+y)
    z = {i.name.split("/")[1]: index_to_world(np.argwhere(i.volume.mask).mean(axis=0), i.volume)[2]
         for i in spine_data[:3]}
    assert z["vertebrae_T12"] > z["vertebrae_L1"] + 8 > z["vertebrae_L2"] + 16     # superior is +z
    np.testing.assert_allclose(z["vertebrae_L1"], ORIGIN[2] + 19 * 2.0, atol=0.6)


def test_subjects_group_the_splits(spine_data):
    for fold in cross_validation_folds(spine_data.subjects, n_folds=3, val_fraction=0.0):
        assert len({spine_data[i].subject for i in fold.test}) == 1 and len(fold.test) == 3


def test_default_thresholds_and_the_v1_class_map(spine_root, tmp_path):
    strict = load_totalsegmentator(spine_root, structure="vertebra", levels="L1")
    assert len(strict) == 0 and len(strict.dropped) == 4
    assert strict.dropped[0] == (str(spine_root / "s0009"), "no segmentations/ folder and no multi-label file "
                                                             "(segmentations.nii[.gz])")
    assert all("< 5000 at 1 mm" in r for _, r in strict.dropped[1:])
    write_nifti(tmp_path / "v1" / "segmentations.nii.gz", multilabel(spine(), CLASS_MAPS["total_v1"]))
    v1 = load_totalsegmentator(tmp_path, structure="vertebra", levels="T12-L2", class_map="total_v1", **SMALL)
    reference = load_totalsegmentator(spine_root, structure="vertebra", levels="T12-L2", **SMALL)
    assert [i.name for i in v1] == [f"v1/vertebrae_{n}" for n in ("T12", "L1", "L2")]
    assert all(np.array_equal(a.volume.mask, b.volume.mask) for a, b in zip(v1, reference))


def test_kidneys_from_files_and_from_a_multilabel_file(tmp_path):
    shape = (30, 14, 12)
    left = ball(shape, (22, 7, 6), 7.0, SPACING)                 # +x: the patient's left
    right = ball(shape, (7, 7, 6), 7.0, SPACING)
    right[0:4, 6:8, 6] = True                                    # reaches the border
    for name, mask in (("kidney_left", left), ("kidney_right", right)):
        write_nifti(tmp_path / "k1" / "segmentations" / f"{name}.nii.gz", mask)
    labels = (left * V2["kidney_left"] + right * V2["kidney_right"]).astype(np.uint8)
    write_nifti(tmp_path / "k2" / "segmentations.nii.gz", labels)
    data = load_totalsegmentator(tmp_path, min_voxels=100, crop_size=(20, 20, 20))
    assert [i.name for i in data] == ["k1/kidney_left", "k2/kidney_left"]
    assert np.array_equal(data[0].volume.mask, data[1].volume.mask) and data[0].volume.spacing == (1.5,) * 3
    assert sorted(r for _, r in data.dropped) == ["kidney_right (label 2): touches the volume border",
                                                  "touches the volume border"]


def test_bad_options_and_folders_raise_clear_errors(spine_root, tmp_path):
    with pytest.raises(ValueError, match="unknown structure 'liver'; choose one of kidney, vertebra"):
        load_totalsegmentator(spine_root, structure="liver")
    with pytest.raises(ValueError, match="only apply to structure 'vertebra'"):
        load_totalsegmentator(spine_root, levels="L1")
    with pytest.raises(ValueError, match="unknown vertebra level 'X1'"):
        load_totalsegmentator(spine_root, structure="vertebra", levels="X1")
    with pytest.raises(ValueError, match="class map 'total_mr'"):
        load_totalsegmentator(spine_root, structure="vertebra", class_map="total_mr")
    with pytest.raises(FileNotFoundError, match="no TotalSegmentator subjects"):
        load_totalsegmentator(tmp_path)
    with pytest.raises(ValueError, match="no usable labelmap.*structure=vertebra"):
        load_usable_dataset(spine_root, "totalsegmentator", log=lambda _: None, structure="vertebra")


def test_windowed_resampling_equals_the_full_resampling(oblique_direction):
    mask = np.zeros((20, 16, 14), bool)
    mask[3:9, 4:10, 0:5] = True                                  # touches the k = 0 border
    mask[7, 11, 4] = True
    volume = BinaryVolume(mask, (0.7, 1.3, 2.1), np.array([4.0, -3.0, 9.0]), oblique_direction)
    for spacing in (1.0, 1.5):
        full = resample_isotropic(volume, spacing)
        window, at_border = resample_near_foreground(volume, spacing)
        assert at_border == touches_border(full.mask) and window.voxel_count == full.voxel_count
        offset = np.round(np.linalg.solve(full.direction * spacing, window.origin - full.origin)).astype(int)
        block = full.mask[tuple(slice(o, o + n) for o, n in zip(offset, window.shape))]
        assert np.array_equal(block, window.mask)


# ---------------------------------------------------------------- command line
@pytest.fixture(scope="module")
def cli_root(tmp_path_factory) -> Path:
    """Three subjects (files, ``segmentations.nii``, root multi-label file) with L1 and L2 at
    3 mm, large enough for the default rules (>= 5,000 voxels at 1 mm, 128 x 120 x 90 crop)."""
    root = tmp_path_factory.mktemp("totalseg_cli")
    shape, spacing = (16, 14, 18), (3.0, 3.0, 3.0)
    masks = {}
    for name, z in (("vertebrae_L2", 2), ("vertebrae_L1", 10)):
        mask = np.zeros(shape, bool)
        mask[3:13, 2:10, z:z + 6] = True
        mask[7:9, 10:13, z + 2:z + 4] = True
        masks[name] = mask
    for name, mask in masks.items():
        write_nifti(root / "a" / "segmentations" / f"{name}.nii.gz", mask, spacing)
    labels = multilabel(masks)
    write_nifti(root / "b" / "segmentations.nii", labels, spacing)
    write_nifti(root / "c.nii.gz", labels, spacing)
    return root


def test_train_prior_arguments_load_the_vertebrae(cli_root):
    args = build_parser().parse_args(["train-prior", "--data", str(cli_root), "--dataset", "totalsegmentator",
                                      "--structure", "vertebra", "--levels", "L1-L2", "--val-count", "2",
                                      "--out", "unused"])
    with contextlib.redirect_stdout(io.StringIO()):
        train, val, desc = load_training_data(args)
    assert (len(train), len(val)) == (4, 2)
    assert desc["structure"] == "vertebra" and desc["levels"] == "L1-L2"
    assert desc["files"] == [f"{s}/vertebrae_{n}" for s in "abc" for n in ("L1", "L2")]
    assert all(v.shape == (128, 120, 90) and v.spacing == (1.0, 1.0, 1.0) and v.voxel_count > 5000
               for v in train + val)


@pytest.mark.parametrize("command", [
    ["train-prior"],
    ["evaluate", "--prior", "vertebra", "--t", "10", "--configs", "4x9"],
])
@pytest.mark.parametrize("extra, message", [
    (["--structure", "vertebra", "--levels", "L9"], "unknown vertebra level 'L9'"),
    (["--levels", "L1"], "--levels needs --structure vertebra"),
    (["--structure", "vertebra", "--dataset", "verse"], "apply to --dataset totalsegmentator"),
])
def test_bad_structure_choices_are_reported_by_train_prior_and_evaluate(cli_root, tmp_path, capsys, command,
                                                                      extra, message):
    dataset = [] if "--dataset" in extra else ["--dataset", "totalsegmentator"]
    args = [command[0], "--data", str(cli_root), *dataset, *extra, *command[1:], "--out", str(tmp_path / "run")]
    assert main(args) == 2
    assert message in capsys.readouterr().err


def test_train_prior_without_subjects_exits_2(tmp_path, capsys):
    args = ["train-prior", "--data", str(tmp_path), "--dataset", "totalsegmentator", "--structure", "vertebra",
            "--out", str(tmp_path / "run")]
    assert main(args) == 2
    assert "no TotalSegmentator subjects" in capsys.readouterr().err


def test_evaluate_arguments_load_the_vertebrae_as_train_prior_does(cli_root, monkeypatch):
    from PatchSamplerLib.cli.evaluate import apply_preset, evaluation_items
    from PatchSamplerLib.data import loaders
    calls = []

    def spy(folder, kind="folder", log=print, **options):
        calls.append((kind, options))
        return load_usable_dataset(folder, kind, log=log, **options)

    monkeypatch.setattr(loaders, "load_usable_dataset", spy)               # where evaluate and train-prior import it from
    data = ["--data", str(cli_root), "--dataset", "totalsegmentator", "--structure", "vertebra", "--levels", "L1-L2"]
    args = build_parser().parse_args(["evaluate", *data, "--prior", "vertebra", "--out", "unused"])
    apply_preset(args)
    with contextlib.redirect_stdout(io.StringIO()):
        items = evaluation_items(args)
        training = build_parser().parse_args(["train-prior", *data, "--val-count", "0", "--out", "unused"])
        train, _, desc = load_training_data(training)
    assert calls == [("totalsegmentator", {"structure": "vertebra", "levels": "L1-L2"})] * 2
    assert [i.name for i in items] == desc["files"] == [f"{s}/vertebrae_{n}" for s in "abc" for n in ("L1", "L2")]
    assert all(np.array_equal(i.volume.mask, v.mask) and i.volume.spacing == (1.0, 1.0, 1.0)
               for i, v in zip(items, train))
