"""TotalSegmentator kidneys -> centred 85 x 85 x 110 masks at 1.5 mm [T §4.2].

Layout (the TotalSegmentator dataset release: one folder per subject, one file per structure)::

    <root>/s0000/ct.nii.gz
    <root>/s0000/segmentations/kidney_left.nii.gz
    <root>/s0000/segmentations/kidney_right.nii.gz

Each mask (non-zero = foreground) is reoriented to LPS axes (`orientation.reorient_to_lps`), so the
crop's 110 voxels run inferior-superior along the kidney's long axis, resampled to 1.5 mm
isotropic (`volume.resample_isotropic`: linear interpolation of 0/1, threshold 0.5, physical
box kept) and then filtered, all on the resampled grid, as the thesis does:

- empty: no foreground voxel (in the file, or left after resampling);
- more than one connected component, with **26-connectivity** (voxels sharing a face, an edge
  or a corner are connected; `connectivity=6` or 18 selects the stricter rules). The rule is
  meant to catch fragmented masks and separate blobs, which every rule counts; under
  6-connectivity a single voxel hanging on by a corner -- interpolation noise -- would drop
  the whole organ (it does for 5 of the first 30 synthetic kidneys of seed 0, which are one
  piece under 26-connectivity);
- touching the volume border: a foreground voxel in the outermost voxel layer of the grid (the
  organ is probably cut by the field of view). Resampling keeps the physical box, so a mask
  that fills voxels of the file's border layer normally still does after resampling (a lone
  border voxel can vanish in the 0.5 threshold; the rule is applied to the resampled grid);
- fewer than 25,000 voxels at 1.5 mm (84.4 ml).
A mask failing several rules gets all their reasons, joined by "; ". A kept mask is centred
and cropped to 85 x 85 x 110 (`folder.crop_centred`); one larger than that is dropped too.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from PatchSamplerLib.data.folder import (Dropped, ShapeDataset, ShapeItem, check_crop_size, check_dataset_root,
                                         crop_centred, reorient_volume)
from PatchSamplerLib.volume import BinaryVolume, VolumeError, read_nonzero_mask, resample_isotropic

CROP_SIZE = (85, 85, 110)
SPACING_MM = 1.5
MIN_VOXELS = 25_000
CONNECTIVITY = 26
KIDNEYS = ("kidney_left", "kidney_right")
_CONNECTIVITY_RANK = {6: 1, 18: 2, 26: 3}


def find_structure_masks(root, structures: Sequence[str] = KIDNEYS
                         ) -> tuple[list[tuple[str, Path]], list[Dropped]]:
    """(subject, path) of every ``<subject>/segmentations/<structure>.nii.gz`` under `root`.

    Subjects are the sub-folders that have a ``segmentations`` folder, in sorted order; a
    missing structure file is reported in the second list. Raises FileNotFoundError if the
    folder is missing or has no subject folder."""
    root = check_dataset_root(root)
    subjects = sorted(p for p in root.iterdir() if (p / "segmentations").is_dir())
    if not subjects:
        raise FileNotFoundError(f"no TotalSegmentator subjects (<subject>/segmentations/"
                                f"{structures[0]}.nii.gz) in {root}")
    found, missing = [], []
    for subject in subjects:
        for structure in structures:
            path = subject / "segmentations" / f"{structure}.nii.gz"
            if path.is_file():
                found.append((subject.name, path))
            else:
                missing.append(Dropped(str(path), "file missing"))
    return found, missing


def count_components(mask: np.ndarray, connectivity: int = CONNECTIVITY) -> int:
    """Number of connected foreground components of an (X, Y, Z) mask (6, 18 or 26 neighbours)."""
    from scipy import ndimage
    if connectivity not in _CONNECTIVITY_RANK:
        raise ValueError(f"connectivity must be 6, 18 or 26, got {connectivity}")
    structure = ndimage.generate_binary_structure(3, _CONNECTIVITY_RANK[connectivity])
    return int(ndimage.label(mask, structure=structure)[1])


def touches_border(mask: np.ndarray) -> bool:
    """Whether any foreground voxel lies in the outermost voxel layer of the (X, Y, Z) grid."""
    return bool(mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any()
                or mask[:, :, 0].any() or mask[:, :, -1].any())


def rejection_reasons(volume: BinaryVolume, min_voxels: int = MIN_VOXELS,
                      connectivity: int = CONNECTIVITY) -> list[str]:
    """Why a resampled mask must be dropped (empty list: keep it); the thesis's four rules."""
    count = volume.voxel_count
    if count == 0:
        return ["empty (no foreground voxel)"]
    reasons = []
    components = count_components(volume.mask, connectivity)
    if components > 1:
        reasons.append(f"{components} connected components ({connectivity}-connectivity)")
    if touches_border(volume.mask):
        reasons.append("touches the volume border")
    if count < min_voxels:
        reasons.append(f"{count} voxels < {min_voxels} at {volume.spacing[0]:g} mm")
    return reasons


def load_totalsegmentator(root, *, structures: Sequence[str] = KIDNEYS,
                          spacing_mm: float = SPACING_MM, min_voxels: int = MIN_VOXELS,
                          connectivity: int = CONNECTIVITY, crop_size: Sequence[int] = CROP_SIZE,
                          reorient: bool = True) -> ShapeDataset:
    """The kidneys (or other `structures`) of every TotalSegmentator subject under `root`.

    Returns a ShapeDataset of masks resampled to `spacing_mm`, filtered (module docstring) and
    centred in `crop_size` (x, y, z) voxels; subject = the subject folder, name =
    ``<subject>/<structure>``. `.dropped` lists (path, reason) for every mask left out.
    """
    crop_size = tuple(int(s) for s in check_crop_size(crop_size))
    found, dropped = find_structure_masks(root, structures)
    items = []
    for subject, path in found:
        try:
            volume = read_nonzero_mask(path)
            if volume.voxel_count == 0:
                dropped.append(Dropped(str(path), "empty (no foreground voxel)"))
                continue
            if reorient:
                volume = reorient_volume(volume)
            if not np.allclose(volume.spacing, spacing_mm, rtol=1e-6, atol=0.0):
                volume = resample_isotropic(volume, spacing_mm)  # identity at spacing_mm: skipped
            reasons = rejection_reasons(volume, min_voxels, connectivity)
            if reasons:
                dropped.append(Dropped(str(path), "; ".join(reasons)))
                continue
            volume = crop_centred(volume, crop_size)
        except VolumeError as exc:
            dropped.append(Dropped(str(path), str(exc)))
            continue
        structure = path.name[: -len(".nii.gz")]
        items.append(ShapeItem(volume, subject, f"{subject}/{structure}", None, str(path)))
    return ShapeDataset(items, dropped)
