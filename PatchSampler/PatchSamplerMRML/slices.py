"""A segment drawn on a few slices: which voxels of its grid are known [A §2.3].

Slicer's slice views are planes of the world -- axial normal to S, coronal to A, sagittal to R --
unless the user rotated them to the volume; then they are slices of the volume's voxel grid. A
segment painted on axial views over a grid tilted to them touches many grid slices with a few
voxels each: taking those grid slices as known (mostly background) makes the fit collapse. So,
for "axial" / "coronal" / "sagittal":

1. painted voxels on separate planes normal to the view direction: known are the voxels those
   planes certainly pass through (`PatchSamplerLib.sparse.inputs.painted_planes`); for a grid
   aligned with the views, exactly the grid slices holding a painted voxel;
   a segment on (nearly) every grid slice of its extent is refused (drawn in another
   orientation, or a full segmentation; `one_block`); some neighbouring slices are fine;
2. else painted voxels on separate, non-adjacent slices of the grid along its axis nearest to the
   view direction (views rotated to the volume): those grid slices (`labelled_slices`);
3. else the run is refused with a message that says how to draw the segment.

A grid axis 0 / 1 / 2 instead of a name: the grid slices along it holding a painted voxel.
Imports numpy; PatchSamplerLib only inside the functions.
"""
from __future__ import annotations

import numpy as np

from PatchSamplerMRML.geometry import SLICE_ORIENTATIONS, SegmentGrid, grid_axis


def view_normal_ras(orientation: str) -> np.ndarray:
    """(3,) RAS unit normal of the slice views of `orientation` ("axial": S, "coronal": A,
    "sagittal": R)."""
    return np.eye(3)[SLICE_ORIENTATIONS[orientation]]


def tilt_degrees(ijk_to_ras: np.ndarray, normal: np.ndarray) -> float:
    """Angle (degrees) between `normal` (3,) and the grid axis nearest to it, either sign."""
    directions = ijk_to_ras[:3, :3] / np.linalg.norm(ijk_to_ras[:3, :3], axis=0)
    return float(np.degrees(np.arccos(np.clip(np.abs(normal @ directions).max(), 0.0, 1.0))))


def drawn_slices(grid: SegmentGrid, orientation):
    """The PatchSamplerLib SparseInput of `grid.mask` (I, J, K) drawn on a few slices of
    `orientation` ("axial" / "coronal" / "sagittal" or a grid axis 0 / 1 / 2), as the module
    docstring says. Raises ValueError (user-facing) for an unknown orientation, an empty mask, or
    voxels that lie neither on separate view planes nor on separate grid slices."""
    from PatchSamplerLib.sparse.inputs import labelled_slices, painted_planes
    from PatchSamplerLib.volume import VolumeError
    axis = grid_axis(orientation, grid.ijk_to_ras)
    if orientation in (0, 1, 2):
        return labelled_slices(grid.mask, axis)
    normal = view_normal_ras(orientation)
    try:
        planes = painted_planes(grid.mask, grid.ijk_to_ras, normal)
    except VolumeError as exc:
        on_views = str(exc)
    else:
        if planes.positions is None or not one_block(planes.positions):
            return planes
        return refuse_block(orientation, planes.positions)
    grid_slices = labelled_slices(grid.mask, axis)
    if separate(grid_slices.positions):
        return grid_slices
    raise ValueError(
        f"The segment is not drawn on separate {orientation} slices: its voxels lie neither on separate planes of "
        f"the {orientation} views ({on_views}) nor on separate slices of its voxel grid, which is tilted "
        f"{tilt_degrees(grid.ijk_to_ras, normal):.1f} degrees to those views. Align the slice views with the volume "
        "(slice view menu: 'Rotate to volume plane'), draw the segment on every few slices and run again, or "
        "choose the orientation it was drawn in.")


def separate(positions) -> bool:
    """Whether sorted slice indices are separate slices (none next to another)."""
    return bool(np.all(np.diff(positions) > 1))


ADJACENT_SHARE = 0.75     # a segment with this share of its slices next to the previous one was not drawn on a few


def one_block(positions) -> bool:
    """Whether sorted slice indices are 4 or more slices, at least ADJACENT_SHARE of them next to
    the one before: a segment on (nearly) every slice of its extent -- a hole in the shape may
    leave a few out -- was not drawn on a few slices."""
    steps = np.diff(positions)
    return len(positions) >= 4 and float(np.mean(steps == 1)) >= ADJACENT_SHARE


def refuse_block(orientation: str, positions) -> None:
    """ValueError for a segment, on a grid aligned with the views, that lies on (nearly) every
    one of its slices: drawn in another orientation, or a full segmentation -- not a few drawn slices."""
    raise ValueError(
        f"The segment is not drawn on separate {orientation} slices: it lies on {len(positions)} of the "
        f"{positions[-1] - positions[0] + 1} {orientation} slices from {positions[0]} to {positions[-1]}, nearly all "
        "next to another. Was it drawn in another orientation? Choose that one; for a full segmentation, keep every "
        "few slices of it with 'step' (a simulation, scored against the full segment).")
