"""VerSe 2019 / 2020 vertebra masks -> one centred 128 x 120 x 90 volume per vertebra [T §4.2].

Layouts (searched recursively under the root, so a folder holding both releases, one
release, one split or a flat folder of masks all work):

1. The subject-based ("VerSe complete", BIDS-like) layout of VerSe'19 and VerSe'20, the one the
   maintainers recommend (github.com/anjany/verse README; osf.io/4skx2 wiki)::

       dataset-verse20training/rawdata/sub-verse500/sub-verse500_dir-ax_ct.nii.gz
       dataset-verse20training/derivatives/sub-verse500/sub-verse500_dir-ax_seg-vert_msk.nii.gz

   VerSe'19 names carry no ``dir-`` entity (``sub-verse004_seg-vert_msk.nii.gz``), other sites
   other subject ids (``sub-gl003_dir-ax_...``), and a patient with several CT series has one
   file per series with a ``split-`` entity (``sub-verse503_split-verse553_...``). Every
   ``*_seg-vert_msk.nii.gz`` file is a mask; its scan id is the name without that suffix and its
   subject the first entity (``sub-verse503``), so the series of one patient share a subject.
2. The MICCAI-challenge layout (VerSe'19 challenge release and the challenge copy of VerSe'20):
   ``verse004_seg.nii.gz`` / ``verse500_CT-orient_seg.nii.gz`` next to the CT. A file
   ``verse<digits>[...]_seg.nii.gz`` is a mask of subject ``sub-verse<digits>``.

Assumptions (not verifiable without the data, stated so they can be checked on it):
- Only the masks are read; the CT (``rawdata/``) is not needed and not required to exist.
- VerSe'20 re-ships scans of VerSe'19 (374 unique scans out of 160 + 319): the same scan id
  found twice is loaded once (the first path in sorted order) and the others are reported as
  duplicates. Series of one patient across releases share the subject id, so grouped splits
  never leak a patient even where ids differ.
- Labels (README): 1-7 C1-C7, 8-19 T1-T12, 20-25 L1-L6, 28 T13; 26 (sacrum) and 27 (coccyx) are
  not vertebrae and are not loaded by default (`labels` selects any set).

Filters and geometry:
- The label array is reoriented to LPS axes (`orientation.reorient_to_lps`), so the crop's
  128 x 120 x 90 is left-right x anterior-posterior x inferior-superior in every item.
- Scans of any voxel spacing are read (VerSe'19 / '20 mix isotropic and anisotropic scans of
  several resolutions). Each vertebra (the voxels of one label, anywhere in the scan) is
  resampled to the isotropic target spacing (`spacing_mm`, default 1 mm) as the
  TotalSegmentator loader does: `folder.resample_window` (linear interpolation of 0/1,
  threshold 0.5, the scan's physical box kept, SimpleITK), computed only near the vertebra; the
  result is voxel for voxel that of resampling the whole scan. World positions are kept: on the
  vertebra-sized ellipsoids of ``Testing/test_dataset_messages.py`` (0.8 mm, 0.7 x 0.7 x 2 mm)
  the centroid moves by less than 1 mm and the volume in mm^3 by less than 3 %; parts only a few
  voxels thin change more (~5 % on 2-voxel processes at 0.96 mm). A scan already at the target
  spacing is not interpolated.
- Each resampled vertebra must be complete, by the rules TotalSegmentator vertebrae follow
  (`data.filters`), all tested on the resampled grid; a vertebra failing any is dropped and the
  report gives every reason, joined by "; ", after the vertebra's name and label
  (``sub-verse500_dir-ax_L3 (label 22): 2 connected components (26-connectivity)``):
  * cut by the field of view: a voxel in the outermost voxel layer of the scan, before or after
    resampling (common at the top and bottom of a spine scan; `drop_border_touching`, default
    on), reported as "cut by the scan border (touches the outermost voxel layer)", the first
    reason;
  * more than one connected component under 26-connectivity (`connectivity`): stray voxels
    or a split label drop the vertebra, they are never silently removed;
  * fewer than 5,000 voxels (`min_voxels`, `filters.VERTEBRA_MIN_VOXELS`: 5 ml at 1 mm, the
    TotalSegmentator vertebra minimum), counted at the target spacing.
- Each kept vertebra is centred on its bounding-box centre in a 128 x 120 x 90 window
  (`folder.crop_centred` rules: background padding, origin moved, world positions kept); a
  vertebra larger than the window is dropped with its extent.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from PatchSamplerLib.data.filters import CONNECTIVITY, VERTEBRA_MIN_VOXELS, check_connectivity, rejection_reasons
from PatchSamplerLib.data.folder import (Dropped, ShapeDataset, ShapeItem, bbox_touches_border, check_3d_labelmap,
                                         check_crop_size, check_dataset_root, crop_centred, resample_window)
from PatchSamplerLib.orientation import reorient_to_lps
from PatchSamplerLib.progress import tracked
from PatchSamplerLib.volume import BinaryVolume, VolumeError, read_image

CROP_SIZE = (128, 120, 90)
SPACING_MM = 1.0
MARGIN = 2                                       # voxels around a vertebra's box read for its resampling
CUT = "cut by the scan border (touches the outermost voxel layer)"
MASK_SUFFIX = "_seg-vert_msk.nii.gz"
CHALLENGE_MASK = re.compile(r"^(verse\d+)(.*)_seg\.nii(\.gz)?$", re.IGNORECASE)

VERTEBRA_NAMES = {**{i: f"C{i}" for i in range(1, 8)}, **{i: f"T{i - 7}" for i in range(8, 20)},
                  **{i: f"L{i - 19}" for i in range(20, 26)}, 28: "T13"}
VERTEBRA_LABELS = tuple(sorted(VERTEBRA_NAMES))


@dataclass(frozen=True)
class VerseScan:
    """One vertebra mask file: path, scan id (file name without the mask suffix), subject."""
    path: Path
    scan_id: str
    subject: str


@dataclass(frozen=True)
class VertebraRules:
    """How each vertebra of a scan is filtered and cropped (module docstring).

    crop_size: (x, y, z) voxels of an item; min_voxels: smallest kept vertebra, in voxels at
    `spacing_mm`; connectivity: 6, 18 or 26; drop_border_touching: drop vertebrae cut by the scan
    border; spacing_mm: the isotropic spacing (mm) every vertebra is resampled to."""
    crop_size: tuple[int, int, int] = CROP_SIZE
    min_voxels: int = VERTEBRA_MIN_VOXELS
    connectivity: int = CONNECTIVITY
    drop_border_touching: bool = True
    spacing_mm: float = SPACING_MM


@dataclass
class LabelGrid:
    """An integer label array with its geometry (see `volume.BinaryVolume` for the fields).

    labels: (X, Y, Z) integer array, (i, j, k) order; spacing (3,) mm; origin (3,) world LPS mm
    of voxel (0, 0, 0); direction (3, 3), columns = world directions of i, j, k."""
    labels: np.ndarray
    spacing: tuple[float, float, float]
    origin: np.ndarray
    direction: np.ndarray

    def index_to_world(self, index) -> np.ndarray:
        """(3,) voxel index -> (3,) world LPS mm."""
        return self.origin + self.direction @ (np.asarray(self.spacing) * np.asarray(index, float))


# ---------------------------------------------------------------- finding the masks
def parse_mask_name(name: str) -> tuple[str, str] | None:
    """(scan id, subject) of a VerSe mask file name, or None if it is not one.

    ``sub-verse503_split-verse553_seg-vert_msk.nii.gz`` -> (``sub-verse503_split-verse553``,
    ``sub-verse503``); ``verse004_seg.nii.gz`` -> (``sub-verse004``, ``sub-verse004``)."""
    if name.endswith(MASK_SUFFIX):
        scan_id = name[: -len(MASK_SUFFIX)]
        subject = scan_id.split("_", 1)[0]
        return scan_id, subject if subject.startswith("sub-") else f"sub-{subject}"
    match = CHALLENGE_MASK.match(name)
    if match:
        subject = f"sub-{match.group(1).lower()}"
        return subject + match.group(2), subject
    return None


def find_verse_scans(root) -> tuple[list[VerseScan], list[Dropped]]:
    """All VerSe vertebra masks under `root` (sorted by path), and the duplicates skipped.

    Raises FileNotFoundError if the folder is missing or holds no mask."""
    root = check_dataset_root(root)
    scans, dropped, first_path = [], [], {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        parsed = parse_mask_name(path.name)
        if parsed is None:
            continue
        scan_id, subject = parsed
        if scan_id in first_path:
            dropped.append(Dropped(str(path), f"duplicate of {first_path[scan_id]} "
                                              f"(scan {scan_id} is in more than one release)"))
            continue
        first_path[scan_id] = path
        scans.append(VerseScan(path, scan_id, subject))
    if not scans:
        raise FileNotFoundError(f"no VerSe vertebra masks (*{MASK_SUFFIX} or verse<N>_seg.nii.gz) "
                                f"in {root} or its subfolders")
    return scans, dropped


# ---------------------------------------------------------------- reading and filtering
def read_label_grid(path, reorient: bool = True) -> LabelGrid:
    """Read a multi-label mask as an integer (X, Y, Z) array with its geometry.

    reorient: reorder the axes to LPS (`orientation.reorient_to_lps`). Raises FileNotFoundError
    for a missing file, VolumeError for an unreadable one or one that is not a 3-D
    single-component integer labelmap ("PATH is 4-D; a 3-D labelmap is needed")."""
    import SimpleITK as sitk
    image, _ = read_image(path)
    check_3d_labelmap(image, path)
    array = sitk.GetArrayFromImage(image).transpose(2, 1, 0)
    if array.dtype.kind == "f":
        if not np.all(array == np.round(array)):
            raise VolumeError(f"{path} holds non-integer values: a labelmap is needed")
        array = array.astype(np.int32)
    geometry = (image.GetSpacing(), np.array(image.GetOrigin()),
                np.array(image.GetDirection(), float).reshape(3, 3))
    if reorient:
        array, spacing, origin, direction = reorient_to_lps(array, *geometry)
    else:
        array, (spacing, origin, direction) = np.ascontiguousarray(array), geometry
    return LabelGrid(array, tuple(float(s) for s in spacing), origin, direction)


def label_boxes(labels: np.ndarray, wanted: Sequence[int]) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Inclusive (lo, hi) voxel bounding box of every wanted label present (one pass)."""
    from scipy import ndimage
    wanted = sorted(int(v) for v in wanted if int(v) > 0)
    if not wanted:
        return {}
    slices = ndimage.find_objects(labels, max_label=wanted[-1])
    boxes = {}
    for value in wanted:
        box = slices[value - 1]
        if box is not None:
            boxes[value] = (np.array([s.start for s in box]), np.array([s.stop - 1 for s in box]))
    return boxes


def vertebra_name(scan_id: str, label: int) -> str:
    """Item name: scan id and vertebra name (``sub-verse500_dir-ax_L1``)."""
    return f"{scan_id}_{VERTEBRA_NAMES.get(label, f'label{label}')}"


def vertebra_window(grid: LabelGrid, label: int, lo: np.ndarray, hi: np.ndarray) -> tuple[BinaryVolume, np.ndarray]:
    """The mask of `label` in its inclusive voxel box [lo, hi] of `grid`, with `MARGIN` voxels
    around it (clipped to the scan), as a block of the scan's grid; and the block's first voxel."""
    start = np.maximum(np.asarray(lo) - MARGIN, 0)
    stop = np.minimum(np.asarray(hi) + MARGIN + 1, grid.labels.shape)
    block = grid.labels[tuple(slice(a, b) for a, b in zip(start, stop))] == label
    return BinaryVolume(block, grid.spacing, grid.index_to_world(start), grid.direction.copy()), start


def resampled_vertebra(grid: LabelGrid, label: int, lo: np.ndarray, hi: np.ndarray,
                       rules: VertebraRules) -> tuple[BinaryVolume, list[str]]:
    """The vertebra `label` (inclusive voxel box [lo, hi] in `grid`) resampled to
    `rules.spacing_mm` near its voxels (`folder.resample_window`), and why it must be dropped
    (empty list: keep it): cut by the scan border, empty after resampling, several components,
    too small -- all on the resampled grid (the border also on the scan's own grid)."""
    window, start = vertebra_window(grid, label, lo, hi)
    volume, at_border = resample_window(window, start, grid.labels.shape, rules.spacing_mm)
    cut = at_border or bbox_touches_border(lo, hi, grid.labels.shape)
    reasons = [CUT] if rules.drop_border_touching and cut else []
    return volume, reasons + rejection_reasons(volume, rules.min_voxels, rules.connectivity, at_border=False)


def split_vertebrae(grid: LabelGrid, scan: VerseScan, labels: Sequence[int],
                    rules: VertebraRules) -> tuple[list[ShapeItem], list[Dropped]]:
    """One centred, cropped `ShapeItem` per complete wanted label of a scan (volume
    `rules.crop_size` voxels at `rules.spacing_mm`), and the vertebrae dropped with why."""
    items, dropped = [], []
    for label, (lo, hi) in label_boxes(grid.labels, labels).items():
        name = vertebra_name(scan.scan_id, label)
        volume, reasons = resampled_vertebra(grid, label, lo, hi, rules)
        if not reasons:
            try:
                volume = crop_centred(volume, rules.crop_size)
            except VolumeError as exc:
                reasons = [str(exc)]
        if reasons:
            dropped.append(Dropped(str(scan.path), f"{name} (label {label}): {'; '.join(reasons)}"))
            continue
        items.append(ShapeItem(volume, scan.subject, name, label, str(scan.path)))
    return items, dropped


def read_scan(scan: VerseScan, reorient: bool) -> LabelGrid | Dropped:
    """The scan's label grid, or why it is left out (missing, unreadable, not a 3-D labelmap)."""
    try:
        return read_label_grid(scan.path, reorient)
    except (VolumeError, FileNotFoundError) as exc:
        return Dropped(str(scan.path), str(exc))


def load_verse(root, *, labels: Sequence[int] = VERTEBRA_LABELS,
               crop_size: Sequence[int] = CROP_SIZE, spacing_mm: float = SPACING_MM,
               drop_border_touching: bool = True, min_voxels: int = VERTEBRA_MIN_VOXELS,
               connectivity: int = CONNECTIVITY, reorient: bool = True) -> ShapeDataset:
    """Single complete vertebrae of every VerSe scan under `root`, resampled to `spacing_mm`.

    labels: VerSe labels to take; crop_size: (x, y, z) voxels of an item; spacing_mm: the
    isotropic spacing (mm) of the items (default 1; every scan, whatever its spacing, is
    resampled near each vertebra: module docstring); min_voxels: smallest kept vertebra in voxels
    at `spacing_mm` (default 5,000); connectivity: 6, 18 or 26 (default 26);
    drop_border_touching: drop vertebrae in the scan's outermost voxel layer.
    Returns a ShapeDataset: one item per kept vertebra (subject = patient, label = VerSe label,
    volume = `crop_size` voxels at `spacing_mm`, LPS axes, world positions kept), in scan order
    then label order; `.dropped` says why each scan or vertebra was left out (duplicate,
    unreadable, no vertebra label, cut by the border, several components, too small, too
    large). Raises ValueError for a bad crop size, spacing or connectivity, FileNotFoundError
    if `root` is missing or holds no mask.
    """
    if not np.isfinite(spacing_mm) or spacing_mm <= 0:
        raise ValueError(f"spacing_mm must be a positive number of mm, got {spacing_mm}")
    rules = VertebraRules(tuple(int(s) for s in check_crop_size(crop_size)), int(min_voxels),
                          check_connectivity(connectivity), drop_border_touching, float(spacing_mm))
    scans, dropped = find_verse_scans(root)
    items = []
    for scan in tracked(scans, "reading scans", unit="scans"):
        grid = read_scan(scan, reorient)
        if isinstance(grid, Dropped):
            dropped.append(grid)
            continue
        scan_items, scan_dropped = split_vertebrae(grid, scan, labels, rules)
        if not scan_items and not scan_dropped:
            present = [int(v) for v in np.unique(grid.labels) if v != 0]
            dropped.append(Dropped(str(scan.path), f"no vertebra label of {sorted(labels)} "
                                                   f"(labels present: {present or 'none'})"))
        items.extend(scan_items)
        dropped.extend(scan_dropped)
    return ShapeDataset(items, dropped)
