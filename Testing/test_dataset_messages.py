"""What the dataset loaders tell a user about real folders (PatchSamplerLib.data.verse /
totalsegmentator / folder / loaders), on small folders built here:

- VerSe scans of any spacing (0.8 mm, 0.7 x 0.7 x 2 mm) give 1 mm vertebrae in place, with
  their volume, instead of being dropped;
- TotalSegmentator: a subject folder without masks, a flat folder of binary masks, ``.nii`` and
  wrong-case names, 4-D files, v1 / v2 class maps;
- the folder loader's ``label=``;
- the one-line summary of what was dropped and why (`loaders.load_usable_dataset`)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from PatchSamplerLib.data.folder import load_folder, reorient_volume
from PatchSamplerLib.data.loaders import dropped_counts, load_dataset, load_usable_dataset, reason_kinds
from PatchSamplerLib.data.totalsegmentator import CLASS_MAPS, load_totalsegmentator
from PatchSamplerLib.data.verse import load_verse
from PatchSamplerLib.volume import BinaryVolume, index_to_world, read_labelmap, resample_isotropic

V2, V1 = CLASS_MAPS["total"], CLASS_MAPS["total_v1"]
L1, L2, L3 = 20, 21, 22                                  # VerSe labels


def write(path: Path, array: np.ndarray, spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0),
          direction=np.eye(3)) -> None:
    """Write an (X, Y, Z) array (or an (X, Y, Z, T) one: a 4-D image) with its geometry."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = sitk.GetImageFromArray(np.ascontiguousarray(np.asarray(array, np.uint8).T), isVector=False)
    if image.GetDimension() == 3:
        image.SetSpacing(tuple(float(s) for s in spacing))
        image.SetOrigin(tuple(float(o) for o in origin))
        image.SetDirection(tuple(np.asarray(direction, float).reshape(-1)))
    sitk.WriteImage(image, str(path), path.name.endswith(".gz"))


def ellipsoid(shape, centre_mm, radii_mm, spacing) -> np.ndarray:
    """Boolean (X, Y, Z) ellipsoid: voxel centres (index * spacing mm) within the radii."""
    grids = np.meshgrid(*[np.arange(n) * s for n, s in zip(shape, spacing)], indexing="ij")
    return sum(((g - c) / r) ** 2 for g, c, r in zip(grids, centre_mm, radii_mm)) <= 1.0


def world_centroid(volume: BinaryVolume) -> np.ndarray:
    return index_to_world(np.argwhere(volume.mask).mean(axis=0), volume)


def world_set(volume: BinaryVolume) -> set:
    """The world positions (LPS mm, to 0.01 mm) of the foreground voxels."""
    return {tuple(p) for p in np.round(index_to_world(np.argwhere(volume.mask), volume), 2)}


# ---------------------------------------------------------------- A. VerSe at any spacing
SAGITTAL = np.array([[0.0, 0, -1], [0, 1, 0], [1, 0, 0]])        # file i -> +S, j -> +P, k -> -L


@pytest.fixture(scope="module")
def verse_scans(tmp_path_factory):
    """sub-verse700: 0.8 mm isotropic, axial (L1, L2 at 16,000 and 13,000 mm^3; L3 cut by the
    top of the scan; a 3,000 mm^3 blob labelled 23 = L4, too small); sub-verse701:
    0.7 x 0.7 x 2 mm stored sagittally (file axes S, P, -L), one L1. Returns (root, {(scan, label):
    source volume of that label, file geometry})."""
    root = tmp_path_factory.mktemp("verse_spacings")
    sources = {}

    def add(scan, labels, spacing, origin, direction=np.eye(3)):
        path = root / "derivatives" / scan.split("_")[0] / f"{scan}_seg-vert_msk.nii.gz"
        write(path, labels, spacing, origin, direction)
        for value in np.unique(labels[labels > 0]):                     # as stored (float32 spacing)
            sources[(scan, int(value))] = read_labelmap(path, int(value))

    sp = (0.8, 0.8, 0.8)
    labels = np.zeros((80, 70, 110), np.uint8)                                  # 64 x 56 x 88 mm
    labels[ellipsoid(labels.shape, (30, 28, 22), (20, 15, 12.5), sp)] = L1         # 15,708 mm^3
    labels[ellipsoid(labels.shape, (31, 29, 50), (19, 14, 11.5), sp)] = L2
    labels[ellipsoid(labels.shape, (30, 28, 84), (18, 14, 10), sp)] = L3         # reaches z = 87.2 mm: the top
    labels[ellipsoid(labels.shape, (52, 12, 70), (9, 9, 9), sp)] = 23             # 3,054 mm^3
    add("sub-verse700_dir-ax", labels, sp, (-31.0, 12.5, 640.0))
    sp = (2.0, 0.7, 0.7)                                                         # file axes: S, P, -L
    lps = ellipsoid((90, 80, 30), (31, 27, 29), (21, 15, 13), (0.7, 0.7, 2.0))    # LPS-ordered, 0.7 x 0.7 x 2
    file_array = np.ascontiguousarray(np.flip(lps, axis=0).transpose(2, 1, 0)).astype(np.uint8) * L1
    origin = np.array([-40.0 + 89 * 0.7, -5.0, 300.0])                           # voxel (0, 0, 0): the last L column
    add("sub-verse701_dir-sag", file_array, sp, origin, SAGITTAL)
    return root, sources


@pytest.fixture(scope="module")
def verse_any_spacing(verse_scans):
    return load_verse(verse_scans[0])


def test_verse_scans_of_any_spacing_give_1mm_vertebrae(verse_any_spacing):
    assert [i.name for i in verse_any_spacing] == ["sub-verse700_dir-ax_L1", "sub-verse700_dir-ax_L2",
                                                   "sub-verse701_dir-sag_L1"]
    for item in verse_any_spacing:
        assert item.volume.spacing == (1.0, 1.0, 1.0) and item.volume.shape == (128, 120, 90)
        np.testing.assert_allclose(item.volume.direction, np.eye(3), atol=1e-9)


def test_resampled_vertebrae_keep_their_place_and_volume(verse_any_spacing, verse_scans):
    sources = verse_scans[1]
    for item in verse_any_spacing:
        source = sources[(item.name.rsplit("_", 1)[0], item.label)]
        assert np.linalg.norm(world_centroid(item.volume) - world_centroid(source)) < 1.0   # within a voxel
        mm3 = source.voxel_count * np.prod(source.spacing)
        assert abs(item.volume.voxel_count - mm3) < 0.03 * mm3                               # 1 mm^3 voxels
        # exactly the voxels of resampling the whole (reoriented) scan's label to 1 mm
        assert world_set(item.volume) == world_set(resample_isotropic(reorient_volume(source), 1.0))


def test_verse_filters_apply_on_the_1mm_grid(verse_any_spacing, verse_scans):
    reasons = sorted(r for _, r in verse_any_spacing.dropped)
    assert len(reasons) == 2
    assert reasons[0] == "sub-verse700_dir-ax_L3 (label 22): cut by the scan border (touches the outermost voxel layer)"
    small = reasons[1]
    assert small.startswith("sub-verse700_dir-ax_L4 (label 23): ") and small.endswith(" voxels < 5000 at 1 mm")
    source = verse_scans[1][("sub-verse700_dir-ax", 23)]
    counted = int(small.split(": ")[1].split()[0])                               # counted at 1 mm, not 0.8 mm
    assert abs(counted - source.voxel_count * 0.8 ** 3) < 0.05 * source.voxel_count * 0.8 ** 3
    assert not any("isotropic" in r for r in reasons)


def test_a_4d_verse_mask_says_so(tmp_path):
    write(tmp_path / "verse900_seg.nii.gz", np.ones((6, 6, 6, 2)))
    data = load_verse(tmp_path)
    assert len(data) == 0 and data.dropped[0].reason.endswith("is 4-D; a 3-D labelmap is needed")


# ---------------------------------------------------------------- B. TotalSegmentator messages
def kidney(shape=(40, 30, 30), centre=(20, 15, 15)) -> np.ndarray:
    """A 3 mm-voxel kidney-sized ellipsoid (102.6 ml: ~30,400 voxels at 1.5 mm)."""
    return ellipsoid(shape, np.array(centre) * 3.0, (35, 25, 28), (3.0, 3.0, 3.0))


def test_a_subject_folder_without_masks_is_reported(tmp_path):
    write(tmp_path / "s1" / "segmentations" / "kidney_left.nii.gz", kidney(), (3, 3, 3))
    write(tmp_path / "s2" / "ct.nii.gz", np.zeros((4, 4, 4)))
    data = load_totalsegmentator(tmp_path)
    assert [i.name for i in data] == ["s1/kidney_left"]
    assert (str(tmp_path / "s2"), "no segmentations/ folder and no multi-label file (segmentations.nii[.gz]); "
                                  "it holds ct.nii.gz") in data.dropped
    only = tmp_path / "only"
    write(only / "s2" / "ct.nii.gz", np.zeros((4, 4, 4)))
    with pytest.raises(FileNotFoundError, match=r"no TotalSegmentator subjects .*1 folder\(s\) with no "
                                                r"segmentations/ folder .*\(s2: .*it holds ct.nii.gz\)"):
        load_totalsegmentator(only)


def test_a_subject_folder_given_as_the_root_says_to_go_up(tmp_path):
    write(tmp_path / "segmentations" / "kidney_left.nii.gz", kidney(), (3, 3, 3))
    with pytest.raises(FileNotFoundError, match=f"this is a subject's segmentations/ folder: pass the folder that "
                                                f"holds the subject folders .*here perhaps {tmp_path.parent}\\)"):
        load_totalsegmentator(tmp_path)


def test_a_flat_folder_of_binary_masks_is_not_read_as_multilabel_files(tmp_path):
    for name, centre in (("kidney_left", (20, 15, 15)), ("kidney_right", (19, 14, 15))):
        write(tmp_path / f"{name}.nii.gz", kidney(centre=centre), (3, 3, 3))
    data = load_totalsegmentator(tmp_path)
    assert len(data) == 0 and [Path(p).name for p, _ in data.dropped] == ["kidney_left.nii.gz", "kidney_right.nii.gz"]
    for _, reason in data.dropped:                                          # one line per file, not per structure
        assert reason.startswith("holds a single label (1) and none of the class numbers wanted "
                                 "(kidney_left 3, kidney_right 2): a binary mask")
        assert "--dataset folder" in reason and "<subject>/segmentations/<structure>.nii.gz" in reason
    with pytest.raises(ValueError, match="no usable labelmap .*dropped 2: 2 binary mask read as a multi-label file"):
        load_usable_dataset(tmp_path, "totalsegmentator", log=lambda _: None)
    assert len(load_folder(tmp_path)) == 2                                  # what the message suggests


def test_structure_files_in_nii_or_another_case_are_read(tmp_path):
    seg = tmp_path / "s1" / "segmentations"
    write(seg / "kidney_left.nii", kidney(), (3, 3, 3))                     # uncompressed
    write(seg / "Kidney_Right.nii.gz", kidney(), (3, 3, 3))                 # another case
    write(tmp_path / "s2" / "segmentations" / "kidney-left.nii.gz", kidney(), (3, 3, 3))
    write(tmp_path / "s2" / "segmentations" / "kidney_right.nrrd", kidney(), (3, 3, 3))
    write(tmp_path / "s3" / "segmentations" / "KIDNEY_LEFT.nii", kidney(), (3, 3, 3))
    write(tmp_path / "s3" / "segmentations" / "Kidney_Left.nii.gz", kidney(), (3, 3, 3))
    data = load_totalsegmentator(tmp_path, structures=("kidney_left",))
    assert [(i.name, Path(i.source).name) for i in data] == [("s1/kidney_left", "kidney_left.nii")]
    both = load_totalsegmentator(tmp_path)
    assert [(i.name, Path(i.source).name) for i in both] == [("s1/kidney_left", "kidney_left.nii"),
                                                            ("s1/kidney_right", "Kidney_Right.nii.gz")]
    assert np.array_equal(both[0].volume.mask, both[1].volume.mask)
    reasons = {(Path(p).parent.parent.name, Path(p).name): r for p, r in both.dropped}
    assert reasons == {
        ("s2", "kidney_left.nii.gz"): "file missing (similar: kidney-left.nii.gz; <structure>.nii.gz or .nii is read)",
        ("s2", "kidney_right.nii.gz"): "file missing (similar: kidney_right.nrrd; <structure>.nii.gz or .nii is read)",
        ("s3", "kidney_left.nii.gz"): "several files are kidney_left: KIDNEY_LEFT.nii, Kidney_Left.nii.gz; keep one",
        ("s3", "kidney_right.nii.gz"): "file missing"}


def test_a_missing_vertebra_names_no_other_level_as_similar(tmp_path):
    seg = tmp_path / "s1" / "segmentations"
    for level in ("T12", "L2"):
        write(seg / f"vertebrae_{level}.nii.gz", np.zeros((4, 4, 4)))
    write(seg / "vertebrae_L1_old.nii.gz", np.zeros((4, 4, 4)))
    data = load_totalsegmentator(tmp_path, structure="vertebra", levels="T1,L1")
    reasons = {Path(p).name: r for p, r in data.dropped}
    assert reasons["vertebrae_T1.nii.gz"] == "file missing"                 # not T12
    assert reasons["vertebrae_L1.nii.gz"].startswith("file missing (similar: vertebrae_L1_old.nii.gz;")


def test_4d_files_say_so(tmp_path):
    write(tmp_path / "s1" / "segmentations" / "kidney_left.nii.gz", np.ones((6, 6, 6, 2)))
    write(tmp_path / "s2.nii.gz", np.ones((6, 6, 6, 2)))
    data = load_totalsegmentator(tmp_path, structures=("kidney_left",))
    assert len(data) == 0 and len(data.dropped) == 2
    for path, reason in data.dropped:
        assert reason == f"{path} is 4-D; a 3-D labelmap is needed"


def multilabel_file(numbers: dict[str, int], extra: int | None = None) -> np.ndarray:
    """A 1.5 mm multi-label array: kidneys and vertebrae T12-L2 with the given class numbers, and
    optionally one more label (`extra`) elsewhere."""
    labels = np.zeros((60, 40, 60), np.uint8)                                    # 90 x 60 x 90 mm
    labels[ellipsoid(labels.shape, (22, 30, 45), (14, 12, 14), (1.5,) * 3)] = numbers["kidney_right"]
    labels[ellipsoid(labels.shape, (68, 30, 45), (14, 12, 14), (1.5,) * 3)] = numbers["kidney_left"]
    for i, level in enumerate(("L2", "L1", "T12")):                              # 8^3-voxel blocks between them
        labels[26:34, 10:18, 10 + 10 * i:18 + 10 * i] = numbers[f"vertebrae_{level}"]
    if extra is not None:
        labels[2:4, 2:4, 2:4] = extra
    return labels


def test_class_maps_v1_and_v2(tmp_path):
    v2_root, v1_root = tmp_path / "v2", tmp_path / "v1"
    write(v2_root / "a.nii.gz", multilabel_file(V2, extra=115), (1.5,) * 3)     # rib_right_12: v2 only
    write(v1_root / "b.nii.gz", multilabel_file(V1, extra=90), (1.5,) * 3)
    options = dict(structure="vertebra", levels="T12-L2", min_voxels=100, crop_size=(20, 20, 20))
    v2 = load_totalsegmentator(v2_root, **options)
    assert [i.label for i in v2] == [32, 31, 30] and v2.notes == []
    wrong = load_totalsegmentator(v2_root, class_map="total_v1", **options)
    assert len(wrong) == 0 and len(wrong.dropped) == 1
    assert wrong.dropped[0].reason == ("labels 2 to 115 present, outside the classes 1-104 of TotalSegmentator's "
                                       "'total_v1' class map: not a multi-label file of that map (a "
                                       "TotalSegmentator v2 file? it is read with class_map='total')")
    looks_v1 = load_totalsegmentator(v1_root, **options)                    # read with v2's numbers: warned
    assert looks_v1.notes == [
        "1 of 1 multi-label files hold no label above 104, the last class of TotalSegmentator v1 (e.g. "
        f"{v1_root / 'b.nii.gz'}): they were read with v2's class numbers; if they are v1 outputs (or v2 with "
        "--v1_order) their vertebrae have other numbers: load them with class_map='total_v1' (Python: "
        "load_totalsegmentator / load_dataset)"]
    v1 = load_dataset("totalsegmentator", v1_root, class_map="total_v1", **options)
    assert [i.label for i in v1] == [23, 22, 21] and v1.notes == []
    assert all(np.array_equal(a.volume.mask, b.volume.mask) for a, b in zip(v1, v2))
    kidneys = load_totalsegmentator(v1_root, min_voxels=100, crop_size=(40, 40, 40))   # same numbers in v1 and v2
    assert [i.name for i in kidneys] == ["b/kidney_left", "b/kidney_right"] and kidneys.notes == []
    said = []
    with pytest.raises(ValueError, match="no usable labelmap .*dropped 3: 3 empty"):   # v1's vertebrae are not 30-32
        load_usable_dataset(v1_root, "totalsegmentator", log=said.append, **options)
    assert said[-1].startswith("warning: 1 of 1 multi-label files hold no label above 104")


def test_a_ct_image_in_the_root_is_not_a_labelmap(tmp_path):
    ct = np.full((10, 10, 10), 40, np.int16)
    ct[:, :, :5] = -1000
    image = sitk.GetImageFromArray(ct)
    sitk.WriteImage(image, str(tmp_path / "ct.nii.gz"))
    data = load_totalsegmentator(tmp_path)
    assert data.dropped[0].reason.startswith("labels -1000 to 40 present, outside the classes 1-117 of "
                                             "TotalSegmentator's 'total' class map")


# ---------------------------------------------------------------- C. the folder loader's label
def test_the_folder_loader_takes_one_label_of_multilabel_files(tmp_path):
    labels = multilabel_file(V2)
    write(tmp_path / "spine.nii.gz", labels, (1.5,) * 3)
    write(tmp_path / "mask.nii.gz", labels == V2["kidney_left"], (1.5,) * 3)
    plain = load_folder(tmp_path)
    assert [i.name for i in plain] == ["mask"] and len(plain.dropped) == 1
    assert plain.dropped[0].reason.endswith("choose one with --label L")    # the option train-prior / evaluate get
    said = []
    chosen = load_usable_dataset(tmp_path, "folder", log=said.append, label=V2["kidney_left"])
    assert [(i.name, i.label) for i in chosen] == [("spine", 3)]
    assert np.array_equal(chosen[0].volume.mask, labels == 3)
    assert said == [f"skipped {tmp_path / 'mask.nii.gz'}: label 3 is not in {tmp_path / 'mask.nii.gz'}; "
                    "labels present: 1", "kept 1 shape, dropped 1: 1 label not in the file"]
    vertebra = load_folder(tmp_path, label=V2["vertebrae_L1"])
    assert [i.name for i in vertebra] == ["spine"] and vertebra[0].volume.voxel_count == 8 ** 3


# ---------------------------------------------------------------- B5. the summary line
def test_the_summary_counts_each_kind_of_reason(tmp_path):
    root = tmp_path / "ts"
    for subject in ("s1", "s2", "s3"):
        write(root / subject / "segmentations" / "kidney_left.nii.gz", kidney(), (3, 3, 3))
    write(root / "s4" / "segmentations" / "kidney_left.nii.gz", kidney()[:, :, :25], (3, 3, 3))   # top slice cut
    two = kidney() | ellipsoid((40, 30, 30), (12, 21, 21), (5, 5, 5), (3, 3, 3))        # a blob apart
    write(root / "s5" / "segmentations" / "kidney_left.nii.gz", two, (3, 3, 3))
    small = ellipsoid((40, 30, 30), (60, 45, 45), (12, 12, 12), (3, 3, 3))
    write(root / "s6" / "segmentations" / "kidney_right.nii.gz", small, (3, 3, 3))
    (root / "s7").mkdir()
    said = []
    data = load_usable_dataset(root, "totalsegmentator", log=said.append)
    assert len(data) == 3 and len(said) == len(data.dropped) + 1
    assert all(line.startswith("skipped ") for line in said[:-1])
    assert said[-1] == ("kept 3 shapes, dropped 10: 6 file missing, 1 no segmentations/ folder or multi-label "
                        "file, 1 several components, 1 too small (< 25,000 voxels at 1.5 mm), 1 touching the border")


def test_every_reason_of_the_loaders_has_a_kind(tmp_path, verse_any_spacing):
    root = tmp_path / "ts"
    write(root / "s1" / "segmentations" / "kidney_left.nii", kidney(), (3, 3, 3))
    write(root / "s2" / "segmentations" / "kidney_left.nii.gz", np.ones((6, 6, 6, 2)))
    (root / "s3").mkdir()
    write(root / "flat.nii.gz", kidney(), (3, 3, 3))
    write(root / "s4" / "segmentations" / "kidney_left.nii.gz", np.zeros((6, 6, 6)))
    folder = tmp_path / "folder"
    write(folder / "multi.nii.gz", multilabel_file(V2), (1.5,) * 3)
    write(folder / "big.nii.gz", kidney(), (3, 3, 3))
    datasets = [load_totalsegmentator(root), load_folder(folder), load_folder(folder, label=3),
                load_folder(folder, crop_size=(5, 5, 5)), verse_any_spacing]
    reasons = [r for d in datasets for _, r in d.dropped]
    assert len(reasons) >= 10
    assert [r for r in reasons if reason_kinds(r) == ["other"]] == []
    assert reason_kinds("2 connected components (26-connectivity); touches the volume border; "
                        "4200 voxels < 25000 at 1.5 mm") == ["several components", "touching the border",
                                                             "too small (< 25,000 voxels at 1.5 mm)"]
    assert reason_kinds("something new") == ["other"]
    assert dropped_counts([]) == "dropped none"
    assert dropped_counts([("a", "2 connected components (6-connectivity); touches the volume border")]) == \
        "dropped 1: 1 several components, 1 touching the border (an entry dropped for several reasons counts under each)"


@pytest.mark.parametrize("kind", ["verse", "folder"])
def test_every_dataset_kind_ends_with_the_summary(kind, verse_scans, tmp_path):
    if kind == "folder":
        write(tmp_path / "a.nii.gz", kidney(), (3, 3, 3))
        write(tmp_path / "b.nii.gz", np.zeros((4, 4, 4)))
    said = []
    load_usable_dataset(verse_scans[0] if kind == "verse" else tmp_path, kind, log=said.append)
    assert said[-1] == {"verse": "kept 3 shapes, dropped 2: 1 too small (< 5,000 voxels at 1 mm), "
                                 "1 touching the border",
                        "folder": "kept 1 shape, dropped 1: 1 empty"}[kind]
