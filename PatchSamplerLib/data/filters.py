"""The shape filters shared by the dataset loaders (TotalSegmentator, VerSe) [T §4.2].

A mask is a training shape only if it is complete; it is dropped, with every reason that
applies (`rejection_reasons`, joined by "; " in the report of dropped shapes), when it is

- in several pieces: more than one connected foreground component (`count_components`).
  Default 26-connectivity: voxels sharing a face, an edge or a corner are connected (6 or 18
  select the stricter rules). Every rule counts fragmented masks and separate blobs; under
  6-connectivity a single voxel hanging on by a corner -- interpolation noise -- would drop
  the whole organ (it does for 5 of the first 30 synthetic kidneys of seed 0, which are one
  piece under 26-connectivity);
- touching the volume border: a foreground voxel in the outermost voxel layer of the grid
  (`touches_border`): the structure is probably cut by the field of view;
- too small: fewer foreground voxels than the family's minimum. Kidneys: 25,000 voxels at
  1.5 mm (84.4 ml, the thesis's rule, `KIDNEY_MIN_VOXELS`). Vertebrae: 5,000 voxels at 1 mm
  (5 ml, `VERTEBRA_MIN_VOXELS`), this library's assumption, not the thesis's: the anatomical
  T10-L5 model of `data.anatomy.vertebra` (built from Panjabi's morphometry) gives about 28,000
  voxels (T10) to 58,000 (L5) at 1 mm, so 5,000 is under a fifth of the smallest complete
  thoracolumbar vertebra: it drops slivers and partial labels, not small vertebrae. Cervical
  vertebrae are smaller (not measured here): for C levels check the report of dropped shapes
  and lower the loader's `min_voxels` if complete ones are dropped.
"""
from __future__ import annotations

import numpy as np

from PatchSamplerLib.volume import BinaryVolume

CONNECTIVITY = 26
CONNECTIVITY_RANK = {6: 1, 18: 2, 26: 3}         # neighbours -> scipy's generate_binary_structure rank
KIDNEY_MIN_VOXELS = 25_000                       # at 1.5 mm
VERTEBRA_MIN_VOXELS = 5_000                      # at 1 mm
EMPTY = "empty (no foreground voxel)"


def check_connectivity(connectivity: int) -> int:
    """`connectivity` if it is 6, 18 or 26 (neighbours of a voxel), else ValueError."""
    if connectivity not in CONNECTIVITY_RANK:
        raise ValueError(f"connectivity must be 6, 18 or 26, got {connectivity}")
    return connectivity


def count_components(mask: np.ndarray, connectivity: int = CONNECTIVITY) -> int:
    """Number of connected foreground components of an (X, Y, Z) mask (6, 18 or 26 neighbours).

    Raises ValueError for another connectivity."""
    from scipy import ndimage
    rank = CONNECTIVITY_RANK[check_connectivity(connectivity)]
    return int(ndimage.label(mask, structure=ndimage.generate_binary_structure(3, rank))[1])


def touches_border(mask: np.ndarray) -> bool:
    """Whether any foreground voxel lies in the outermost voxel layer of the (X, Y, Z) grid."""
    return bool(mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any()
                or mask[:, :, 0].any() or mask[:, :, -1].any())


def spacing_text(spacing) -> str:
    """"1 mm" for an isotropic (3,) spacing in mm, "1.05 x 0.95 x 1.05 mm" otherwise."""
    values = [float(s) for s in spacing]
    shown = f"{values[0]:g}" if len(set(values)) == 1 else " x ".join(f"{s:g}" for s in values)
    return f"{shown} mm"


def rejection_reasons(volume: BinaryVolume, min_voxels: int = KIDNEY_MIN_VOXELS,
                      connectivity: int = CONNECTIVITY, at_border: bool | None = None) -> list[str]:
    """Why a mask must be dropped (empty list: keep it): empty, several components, at the
    border, fewer than `min_voxels` voxels (counted on `volume`'s grid, at its spacing).

    at_border: whether the mask touches its full grid's border, when `volume` is a window of it
    (False: the caller tests and reports the border itself); None: test `volume`'s own border.
    Raises ValueError for a connectivity other than 6, 18 or 26."""
    count = volume.voxel_count
    if count == 0:
        return [EMPTY]
    reasons = []
    components = count_components(volume.mask, connectivity)
    if components > 1:
        reasons.append(f"{components} connected components ({connectivity}-connectivity)")
    if touches_border(volume.mask) if at_border is None else at_border:
        reasons.append("touches the volume border")
    if count < min_voxels:
        reasons.append(f"{count} voxels < {min_voxels} at {spacing_text(volume.spacing)}")
    return reasons
