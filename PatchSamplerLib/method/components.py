"""Connected components of an input mask: automatic segmentations often carry small false-positive
specks far from the structure. A speck must neither move the INR frame (`main_components`) nor
pass unnoticed (`component_note`); `largest_component` removes everything but the structure.

Connectivity: 26 (face, edge and corner neighbours), as the TotalSegmentator loader counts.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

MAIN_COMPONENT_SHARE = 0.05     # a component at least this share of the largest one is part of the shape
_STRUCTURE = np.ones((3, 3, 3), bool)


def labelled_components(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(X, Y, Z) bool -> ((X, Y, Z) int32 component labels 1..C, 0 background; (C,) voxel counts
    of components 1..C). Labelled on the foreground's bounding box (a structure in a whole CT
    grid costs what its box costs)."""
    mask = np.asarray(mask, bool)
    labels = np.zeros(mask.shape, np.int32)
    if not mask.any():
        return labels, np.zeros(0, int)
    box = tuple(slice(int(a.min()), int(a.max()) + 1) for a in np.nonzero(mask))
    labels[box], count = ndimage.label(mask[box], structure=_STRUCTURE)
    return labels, np.bincount(labels[box].ravel(), minlength=count + 1)[1:]


def largest_component(mask: np.ndarray) -> np.ndarray:
    """(X, Y, Z) bool: the largest 26-connected component of `mask` (the mask itself when it has
    at most one)."""
    labels, sizes = labelled_components(mask)
    if len(sizes) <= 1:
        return np.asarray(mask, bool)
    return labels == int(np.argmax(sizes)) + 1


def main_components(mask: np.ndarray, share: float = MAIN_COMPONENT_SHARE) -> np.ndarray:
    """(X, Y, Z) bool: the components of at least `share` times the largest one's size -- what
    the frame is centred on, so that a speck cannot move it."""
    labels, sizes = labelled_components(mask)
    if len(sizes) <= 1:
        return np.asarray(mask, bool)
    keep = np.flatnonzero(sizes >= share * sizes.max()) + 1
    return np.isin(labels, keep)


def component_note(mask: np.ndarray, kept_largest: bool) -> str | None:
    """A warning naming the component sizes (voxels, largest first) when `mask` has more than
    one component, else None. `kept_largest`: the run keeps only the largest one."""
    _, sizes = labelled_components(mask)
    if len(sizes) <= 1:
        return None
    listed = ", ".join(str(int(s)) for s in sorted(sizes, reverse=True)[:10]) + (", ..." if len(sizes) > 10 else "")
    action = ("only the largest was kept (the others are neither reconstructed nor scored)" if kept_largest else
              "patches may be spent on the small ones; keep only the largest with --largest-component "
              "(Python: largest_component=True; the module: Keep only the largest connected piece)")
    return f"the mask has {len(sizes)} connected components of {listed} voxels: {action}"
