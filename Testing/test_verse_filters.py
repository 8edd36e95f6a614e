"""VerSe vertebrae filtered as TotalSegmentator's (PatchSamplerLib.data.verse with data.filters):
resampled to 1 mm, one component under 26-connectivity, not touching the scan border, at least
5,000 voxels at 1 mm, each dropped vertebra reported with why. Small spines built here in the VerSe layouts
(``dataset-verse20training/derivatives/sub-*/..._seg-vert_msk.nii.gz`` and the challenge's
``verse<N>_seg.nii.gz``), with vertebra-sized blocks so the default rules apply."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from PatchSamplerLib.data.filters import VERTEBRA_MIN_VOXELS, count_components
from PatchSamplerLib.data.loaders import load_dataset
from PatchSamplerLib.data.verse import load_verse

SHAPE = (40, 36, 76)                             # (X, Y, Z) voxels, LPS-ordered
ORIGIN = np.array([-20.0, 10.0, 300.0])          # world LPS mm of voxel (0, 0, 0)
T12, L1, L2, L3, L4 = 19, 20, 21, 22, 23         # VerSe labels
SCAN = "dataset-verse20training/derivatives/sub-verse600/sub-verse600_dir-ax_seg-vert_msk.nii.gz"


def write_labels(path: Path, labels: np.ndarray, spacing=(1.0, 1.0, 1.0), sag: bool = False) -> None:
    """Write an LPS-ordered (X, Y, Z) label array; sag=True stores it with the file axes
    i -> superior, j -> posterior, k -> right, as a sagittal VerSe scan may be."""
    origin, direction, array = ORIGIN, np.eye(3), np.asarray(labels, np.uint8)
    spacing = np.asarray(spacing, float)
    if sag:
        origin = ORIGIN + np.array([(labels.shape[0] - 1) * spacing[0], 0.0, 0.0])
        array = np.flip(array, axis=0).transpose(2, 1, 0)
        direction = np.array([[0.0, 0, -1], [0, 1, 0], [1, 0, 0]])     # columns: i -> +S, j -> +P, k -> -L
        spacing = spacing[[2, 1, 0]]
    path.parent.mkdir(parents=True, exist_ok=True)
    image = sitk.GetImageFromArray(np.ascontiguousarray(array.transpose(2, 1, 0)))
    image.SetSpacing(tuple(float(s) for s in spacing))
    image.SetOrigin(tuple(float(o) for o in origin))
    image.SetDirection(tuple(direction.reshape(-1)))
    sitk.WriteImage(image, str(path), True)


def vertebra(labels: np.ndarray, label: int, z0: int) -> None:
    """Paint a vertebra-sized block (a body, a spinous process, transverse processes; ~6,000
    voxels at 1 mm, 30 x 26 x 14 voxels) with its lowest slice at z0."""
    labels[9:31, 5:23, z0:z0 + 14] = label                                 # body
    labels[16:24, 23:31, z0 + 4:z0 + 10] = label                          # spinous process (+P)
    labels[5:35, 17:21, z0 + 6:z0 + 8] = label                            # transverse processes


def spine() -> np.ndarray:
    """T12: a fragment cut by the bottom of the scan, with a stray voxel; L1: clean; L2: too
    small; L3: clean but with a separate island; L4: clean with a voxel touching it by a corner."""
    labels = np.zeros(SHAPE, np.uint8)
    labels[14:26, 8:16, 0:2] = T12
    labels[30, 30, 1] = T12
    vertebra(labels, L1, 3)
    labels[14:26, 8:16, 20:26] = L2                                       # 576 voxels
    vertebra(labels, L3, 29)
    labels[2:5, 2:5, 35:37] = L3                                          # island, apart from the body
    vertebra(labels, L4, 46)
    labels[8, 4, 45] = L4                                                 # only a corner on the body's (9, 5, 46)
    return labels


@pytest.fixture(scope="module")
def verse_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("verse_filters")
    write_labels(root / SCAN, spine())
    small = np.zeros((40, 36, 24), np.uint8)                              # a 0.96 mm challenge scan, sagittal
    vertebra(small, L1, 4)
    small[14:26, 8:16, 20:22] = L2                                        # 192 voxels
    write_labels(root / "verse20challenge" / "verse601_seg.nii.gz", small, spacing=(0.96,) * 3, sag=True)
    return root


@pytest.fixture(scope="module")
def verse(verse_root):
    return load_verse(verse_root)


def test_the_fixture_vertebrae_are_what_the_rules_test():
    labels = spine()
    assert (labels == L1).sum() >= VERTEBRA_MIN_VOXELS and (labels == L2).sum() == 576
    assert count_components(labels == L3) == 2 and count_components(labels == L1) == 1
    assert count_components(labels == L4) == 1 and count_components(labels == L4, 6) == 2


def test_complete_vertebrae_are_kept_whole(verse):
    assert [i.name for i in verse] == ["sub-verse600_dir-ax_L1", "sub-verse600_dir-ax_L4", "sub-verse601_L1"]
    assert [i.label for i in verse] == [L1, L4, L1] and verse.subjects == ["sub-verse600"] * 2 + ["sub-verse601"]
    labels = spine()
    for item in verse:
        assert item.volume.shape == (128, 120, 90)
        np.testing.assert_allclose(item.volume.direction, np.eye(3), atol=1e-9)    # the sagittal file too
        assert count_components(item.volume.mask) == 1
    assert verse[0].volume.voxel_count == (labels == L1).sum()                    # nothing removed or added
    assert verse[1].volume.voxel_count == (labels == L4).sum()                    # the corner voxel kept
    assert verse[2].volume.spacing == (1.0, 1.0, 1.0)                             # the 0.96 mm scan: resampled
    mm3 = verse[0].volume.voxel_count * 0.96 ** 3                                 # the same block at 0.96 mm
    assert abs(verse[2].volume.voxel_count - mm3) < 0.06 * mm3                    # thin 2-voxel processes: ~5 %


def test_each_dropped_vertebra_says_why(verse, verse_root):
    reasons = {(Path(p).relative_to(verse_root).as_posix(), r) for p, r in verse.dropped}
    assert reasons == {
        (SCAN, "sub-verse600_dir-ax_T12 (label 19): cut by the scan border (touches the outermost voxel "
               "layer); 2 connected components (26-connectivity); 193 voxels < 5000 at 1 mm"),
        (SCAN, "sub-verse600_dir-ax_L2 (label 21): 576 voxels < 5000 at 1 mm"),
        (SCAN, "sub-verse600_dir-ax_L3 (label 22): 2 connected components (26-connectivity)"),
        ("verse20challenge/verse601_seg.nii.gz", "sub-verse601_L2 (label 21): 161 voxels < 5000 at 1 mm"),
    }


def test_the_rules_can_be_changed(verse_root):
    strict = load_verse(verse_root, connectivity=6, labels=(L4,))
    assert len(strict) == 0
    assert [r for _, r in strict.dropped if "L4" in r] == ["sub-verse600_dir-ax_L4 (label 23): 2 connected "
                                                           "components (6-connectivity)"]
    lenient = load_dataset("verse", verse_root, min_voxels=500, drop_border_touching=False, labels=(T12, L2))
    assert [i.name for i in lenient] == ["sub-verse600_dir-ax_L2"]
    assert sorted(r for _, r in lenient.dropped) == [
        "sub-verse600_dir-ax_T12 (label 19): 2 connected components (26-connectivity); 193 voxels < 500 at 1 mm",
        "sub-verse601_L2 (label 21): 161 voxels < 500 at 1 mm"]          # 192 voxels at 0.96 mm
    with pytest.raises(ValueError, match="connectivity must be 6, 18 or 26, got 8"):
        load_verse(verse_root, connectivity=8)
