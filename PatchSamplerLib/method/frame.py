"""The INR frame on an input grid [T §3.5; A §2]: the prior knows shapes only inside its
training box (`ShapePrior.extent_mm`, millimetres) centred on the shape's bounding-box centre;
only the voxels of the input grid inside that box are decoded, everything else is background.

Coordinates: voxel index (i, j, k) of the grid; local millimetres (index + 0.5) * spacing.
"""
from __future__ import annotations

import warnings

import numpy as np

from PatchSamplerLib.method.components import main_components
from PatchSamplerLib.orientation import AxisReorientation, anatomical_reorientation
from PatchSamplerLib.volume import BinaryVolume, bbox_centre_mm, box_slices, foreground_bbox


def frame_box(centre_mm: np.ndarray, extent_mm, spacing, shape=None) -> tuple[np.ndarray, np.ndarray]:
    """Inclusive voxel-index box (lo (3,), hi (3,)) of the voxels whose centres lie in the frame
    `centre_mm` +- `extent_mm` / 2 (local mm), clipped to a grid of `shape` (X, Y, Z) when given
    (unclipped, it may reach below 0 or past the grid: the box to pad a grid to)."""
    spacing = np.asarray(spacing, float)
    half = np.asarray(extent_mm, float) / 2.0
    lo = np.ceil((np.asarray(centre_mm) - half) / spacing - 0.5).astype(int)
    hi = np.floor((np.asarray(centre_mm) + half) / spacing - 0.5).astype(int)
    if shape is None:
        return lo, hi
    return np.maximum(lo, 0), np.minimum(hi, np.array(shape) - 1)


def shape_outside_frame(mask: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> int:
    """Number of foreground voxels of the (X, Y, Z) mask outside the inclusive box [lo, hi]."""
    inside = mask[lo[0]:hi[0] + 1, lo[1]:hi[1] + 1, lo[2]:hi[2] + 1].sum()
    return int(mask.sum() - inside)


def place_frame(foreground: np.ndarray, spacing, extent_mm, notes: list, robust: bool = True) -> tuple:
    """The INR frame for a shape: centred on the bounding box of `foreground`'s main components
    (X, Y, Z) bool (`components.main_components`: a small speck does not move it), `extent_mm`
    (3,) wide. Returns (centre_mm (3,), lo (3,), hi (3,) inclusive voxel box clipped to the
    grid); foreground sticking out of the frame adds a warning to `notes` (and warns). `robust`
    False: the bounding box of all of `foreground` (sparse slices are many components by nature)."""
    centre_mm = bbox_centre_mm(main_components(foreground) if robust else foreground, spacing)
    lo, hi = frame_box(centre_mm, extent_mm, spacing, foreground.shape)
    outside = shape_outside_frame(foreground, lo, hi)
    if outside:
        notes.append(f"the shape is larger than the prior's frame {tuple(extent_mm)} mm: {outside} foreground "
                     "voxels lie outside it and cannot be reconstructed")
        warnings.warn(notes[-1])
    return centre_mm, lo, hi


# ---------------------------------------------------------------- the work box of a run
def work_box(mask: np.ndarray, spacing, extent_mm, k: int = 1, also: np.ndarray | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
    """lo (3,) inclusive and hi (3,) exclusive voxel index of the part of a grid a run needs:
    the bounding box of `mask` (X, Y, Z) bool, on which the frame is centred, widened on each
    side by half the prior's frame (`extent_mm` (3,): its largest side over the smallest voxel
    size, as the frame's axes are the anatomical ones) or by half a patch of K voxels, whichever
    is more, + 2 voxels; joined with the bounding box of `also` (a reference to score against)
    when it has foreground; within the grid. It holds every voxel the frame, the patches and the
    decode can reach, so a run on it equals a run on the whole grid. Raises VolumeError for an
    empty mask."""
    first, last = foreground_bbox(mask)
    spacing = np.asarray(spacing, float)
    reach = int(np.ceil(max(max(extent_mm) / 2.0 / spacing.min(), (k - 1) / 2.0))) + 2
    lo, hi = first - reach, last + 1 + reach
    if also is not None and np.any(also):
        first, last = foreground_bbox(also)
        lo, hi = np.minimum(lo, first), np.maximum(hi, last + 1)
    return np.maximum(lo, 0), np.minimum(hi, mask.shape)


def padded_to(array: np.ndarray, lo, shape) -> np.ndarray:
    """`array` (a work box's result starting at voxel `lo`) on a grid of `shape`, 0 elsewhere."""
    out = np.zeros(shape, array.dtype)
    out[box_slices(lo, np.asarray(lo) + array.shape)] = array
    return out


def frame_records_on_whole_grid(settings: dict, orient: AxisReorientation, whole: BinaryVolume, lo) -> None:
    """Move `frame_centre_mm` (anatomical local mm) and `decoded_box_index` (anatomical index) of
    a run on the work box of `whole` starting at input voxel `lo` (`orient`: the box's
    reorientation) to the anatomical frame of the whole grid, as a run on the whole grid records them."""
    grid = anatomical_reorientation(whole.direction, whole.shape)
    shift = grid.index_to_anatomical(orient.index_from_anatomical(np.zeros(3)) + np.asarray(lo, float))
    spacing = np.asarray(whole.spacing, float)[list(grid.perm)]
    settings["frame_centre_mm"] = (np.asarray(settings["frame_centre_mm"]) + shift * spacing).tolist()
    settings["decoded_box_index"] = [(np.asarray(b) + shift).astype(int).tolist() for b in settings["decoded_box_index"]]
