"""Sparse observations of a shape: a few labelled slices or any set of labelled voxels [A §3].

A `SparseInput` says which voxels of the (X, Y, Z) grid are known and which of those are
foreground. Axis numbering everywhere: 0, 1, 2 = i, j, k = x, y, z of the image as SimpleITK
orders it (`image[i, j, k]`, the library's array order, `volume.py`).

Simulations from a full mask (for evaluation): every s-th slice along an axis (random or given
start), thick slices (the mean over each s-slice window, thresholded at 0.5, kept at the
window's middle slice), three orthogonal slices through the foreground centroid. Real sparse
data: a mask plus a mask of known voxels, or a segmentation drawn on some slices (the known
slices are those with any foreground along the axis).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from PatchSamplerLib.orientation import AxisReorientation
from PatchSamplerLib.volume import VolumeError, box_slices

AXIS_HELP = "0, 1, 2 = x, y, z (i, j, k) of the image as SimpleITK orders it"


@dataclass
class SparseInput:
    """known: (X, Y, Z) bool, observed voxels. labels: (X, Y, Z) bool, foreground (False where
    not known). axis / positions: for parallel slices, the slice axis and the sorted indices of
    the kept slices along it (None otherwise). description: one line for reports."""
    known: np.ndarray
    labels: np.ndarray
    axis: int | None = None
    positions: np.ndarray | None = None
    description: str = ""

    def __post_init__(self):
        self.known = np.asarray(self.known, bool)
        self.labels = np.asarray(self.labels, bool) & self.known
        if self.known.ndim != 3 or self.known.shape != self.labels.shape:
            raise VolumeError(f"known and label masks must be 3-D of one shape, got {self.known.shape} "
                              f"and {self.labels.shape}")
        if not self.labels.any():
            raise VolumeError("the sparse input has no labelled foreground voxel: nothing to reconstruct")

    @property
    def known_count(self) -> int:
        return int(self.known.sum())

    def cropped(self, lo, hi) -> "SparseInput":
        """The observation of the voxels lo..hi-1 (hi exclusive; it must hold every labelled
        voxel), slice positions renumbered and those outside dropped; the description is kept."""
        box = box_slices(lo, hi)
        positions = self.positions
        if positions is not None and self.axis is not None:
            positions = np.asarray(positions)
            positions = positions[(positions >= lo[self.axis]) & (positions < hi[self.axis])] - int(lo[self.axis])
        return SparseInput(self.known[box], self.labels[box], self.axis, positions, self.description)

    def to_anatomical(self, orient: AxisReorientation) -> "SparseInput":
        """The same observation on the anatomical grid of `orient` (`orientation`): arrays
        reordered, the slice axis and positions renumbered; the description is kept."""
        if self.axis is None:
            axis, positions = None, self.positions
        else:
            axis, positions = orient.axis_to_anatomical(self.axis), self.positions
            if positions is not None and orient.flips[axis]:
                positions = np.sort(self.known.shape[self.axis] - 1 - np.asarray(positions))
        return SparseInput(orient.array_to_anatomical(self.known), orient.array_to_anatomical(self.labels), axis,
                           positions, self.description)


def check_axis(axis: int) -> int:
    if axis not in (0, 1, 2):
        raise ValueError(f"the slice axis must be 0, 1 or 2 ({AXIS_HELP}), got {axis!r}")
    return int(axis)


def check_step(step: int) -> int:
    if int(step) != step or step < 2:
        raise ValueError(f"the slice step must be an integer >= 2, got {step!r}")
    return int(step)


def slice_start(step: int, start: int | None, seed: int) -> int:
    """The first kept slice: `start` when given (0 <= start < step), else drawn from `seed`."""
    if start is None:
        return int(np.random.default_rng(seed).integers(step))
    if not 0 <= start < step:
        raise ValueError(f"the first slice must lie in [0, step) = [0, {step}), got {start}")
    return int(start)


def slab_mask(shape, axis: int, positions) -> np.ndarray:
    """(X, Y, Z) bool: True on the whole slices `positions` along `axis`."""
    known = np.zeros(shape, bool)
    index = [slice(None)] * 3
    index[axis] = np.asarray(positions, int)
    known[tuple(index)] = True
    return known


def every_nth_slice(mask: np.ndarray, step: int, axis: int, start: int | None = None, seed: int = 0) -> SparseInput:
    """Keep slices start, start + step, ... along `axis` of the (X, Y, Z) mask."""
    step, axis = check_step(step), check_axis(axis)
    first = slice_start(step, start, seed)
    positions = np.arange(first, mask.shape[axis], step)
    known = slab_mask(mask.shape, axis, positions)
    return SparseInput(known, mask & known, axis, positions, f"every {step}th slice along axis {axis} from {first}")


def thick_slices(mask: np.ndarray, step: int, axis: int, start: int | None = None, seed: int = 0) -> SparseInput:
    """Thick slices: the mean of the mask over each window [p, p + step) (p = start, start +
    step, ..., whole windows only), thresholded at 0.5, known on the window's middle slice
    p + step // 2."""
    step, axis = check_step(step), check_axis(axis)
    first = slice_start(step, start, seed)
    windows = np.arange(first, mask.shape[axis] - step + 1, step)
    if len(windows) == 0:
        raise ValueError(f"axis {axis} has {mask.shape[axis]} slices: no whole window of {step}")
    moved = np.moveaxis(mask.astype(np.float32), axis, 0)
    thick = np.stack([moved[p:p + step].mean(0) >= 0.5 for p in windows])
    labels = np.zeros_like(moved, bool)
    labels[windows + step // 2] = thick
    positions = windows + step // 2
    known = slab_mask(mask.shape, axis, positions)
    return SparseInput(known, np.moveaxis(labels, 0, axis), axis, positions,
                       f"thick slices of {step} along axis {axis} from {first}")


def orthogonal_slices(mask: np.ndarray, centre=None) -> SparseInput:
    """Three orthogonal slices through `centre` (3,) voxel index, default the foreground centroid
    (rounded)."""
    if centre is None:
        idx = np.argwhere(mask)
        if len(idx) == 0:
            raise VolumeError("the mask is empty: no centroid for the orthogonal slices")
        centre = idx.mean(0)
    centre = np.clip(np.rint(np.asarray(centre, float)).astype(int), 0, np.array(mask.shape) - 1)
    known = np.zeros(mask.shape, bool)
    for axis in range(3):
        known |= slab_mask(mask.shape, axis, [centre[axis]])
    return SparseInput(known, mask & known, None, None, f"three orthogonal slices through {centre.tolist()}")


def from_known_mask(mask: np.ndarray, known: np.ndarray) -> SparseInput:
    """Any labelled voxel set: `known` (X, Y, Z) says which voxels of `mask` are observed."""
    known = np.asarray(known, bool)
    if known.shape != mask.shape:
        raise VolumeError(f"the known-voxel mask has shape {known.shape}, the segmentation {mask.shape}")
    return SparseInput(known, mask & known, None, None, f"{int(known.sum())} known voxels")


def labelled_slices(mask: np.ndarray, axis: int) -> SparseInput:
    """A segmentation drawn on some slices: the known slices along `axis` are those with any
    foreground voxel (the others are unknown, not background)."""
    axis = check_axis(axis)
    other = tuple(a for a in range(3) if a != axis)
    positions = np.flatnonzero(np.asarray(mask, bool).any(axis=other))
    if len(positions) == 0:
        raise VolumeError("the segment is empty: draw it on a few slices first")
    known = slab_mask(mask.shape, axis, positions)
    return SparseInput(known, mask & known, axis, positions,
                       f"{len(positions)} labelled slices along axis {axis}")


def sparse_input(mask: np.ndarray, mode: str, step: int = 8, axis: int = 0, start: int | None = None,
                 seed: int = 0, known: np.ndarray | None = None) -> SparseInput:
    """One entry point: mode "slices", "thick", "orthogonal", "known" (with `known`) or
    "labelled" (the slices that carry any label along `axis`)."""
    if mode == "slices":
        return every_nth_slice(mask, step, axis, start, seed)
    if mode == "thick":
        return thick_slices(mask, step, axis, start, seed)
    if mode == "orthogonal":
        return orthogonal_slices(mask)
    if mode == "known":
        if known is None:
            raise ValueError("mode 'known' needs the mask of known voxels")
        return from_known_mask(mask, known)
    if mode == "labelled":
        return labelled_slices(mask, axis)
    raise ValueError(f"unknown sparse mode {mode!r}: use slices, thick, orthogonal, known or labelled")


PLANE_SLACK = 0.25      # a painted plane may be this share thicker than one voxel along its normal


def painted_planes(labels: np.ndarray, ijk_to_world: np.ndarray, normal, slack: float = PLANE_SLACK) -> SparseInput:
    """A segmentation painted on a few parallel planes of any orientation, e.g. a viewer's axial
    slices over an image grid tilted to them: known are the voxels a painted plane certainly
    passes through, not the whole grid slices that hold a painted voxel.

    labels: (X, Y, Z) bool, the painted voxels. ijk_to_world: (4, 4), voxel index -> world mm
    (any frame; `normal` (3,), any length, in the same frame). Positions along the normal
    h = n . x (mm); a voxel's extent along it is 2e, e = 1/2 sum_a |n . column_a|. The painted
    h are sorted and split where consecutive ones are more than e / 2 apart; neighbouring groups
    are merged while together they are thinner than 2e. Each group is one plane: a plane at h_p
    paints voxels with |h - h_p| <= e, so h_p lies in [max h - e, min h + e] and every voxel with
    min h <= h <= max h of the group is crossed by it wherever it is: those are known (foreground
    where painted). The known set is thus at most one voxel thick, may be thinner than the
    plane's true footprint (never wrong about it), and for a grid axis along the normal it is
    exactly the grid slices holding a painted voxel (`labelled_slices`; `axis` and `positions`
    set, else None). Raises VolumeError when a group is more than (1 + slack) 2e thick: the voxels
    were not painted on separate planes with this normal (e.g. in 3-D, or on planes of another
    orientation)."""
    labels = np.asarray(labels, bool)
    matrix = np.asarray(ijk_to_world, float)
    n = np.asarray(normal, float) / np.linalg.norm(normal)
    along = matrix[:3, :3].T @ n                                     # (3,) mm along n per index step
    painted = np.argwhere(labels)
    if len(painted) == 0:
        raise VolumeError("the segment is empty: draw it on a few slices first")
    lower, upper = _plane_slabs(np.sort(painted @ along), 0.5 * float(np.abs(along).sum()), slack)
    known = _within_slabs(labels.shape, along, lower, upper) | labels
    cosines = np.abs(along) / np.linalg.norm(matrix[:3, :3], axis=0)
    axis = int(np.argmax(cosines)) if cosines.max() >= 1 - 1e-9 else None
    positions = None if axis is None else np.flatnonzero(known.any(axis=tuple(a for a in range(3) if a != axis)))
    return SparseInput(known, labels, axis, positions,
                       f"{len(lower)} painted planes normal to ({', '.join(f'{v:.3g}' for v in n)})")


def _plane_slabs(h: np.ndarray, half: float, slack: float) -> tuple[np.ndarray, np.ndarray]:
    """(lower (P,), upper (P,)) mm along the normal, sorted: the range of each plane's painted
    positions, found in the sorted painted positions `h` (mm, relative to the grid's voxel 0) as
    `painted_planes` says; `half` = e."""
    tol = 1e-6 * max(half, 1.0)
    groups = np.split(h, np.flatnonzero(np.diff(h) > half / 2) + 1)
    merged = [groups[0]]
    for group in groups[1:]:
        if group[-1] - merged[-1][0] < 2 * half - tol:
            merged[-1] = np.concatenate([merged[-1], group])
        else:
            merged.append(group)
    ranges = np.array([(g[0], g[-1]) for g in merged])
    thickest = float((ranges[:, 1] - ranges[:, 0]).max())
    if thickest > (1 + slack) * 2 * half + tol:
        raise VolumeError(f"the painted voxels are not on separate planes with this normal: one group is "
                          f"{thickest:.1f} mm thick along it, a voxel {2 * half:.1f} mm")
    return ranges[:, 0] - tol, ranges[:, 1] + tol


def _within_slabs(shape, along: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """(X, Y, Z) bool: voxels whose position along the normal (index @ `along`, mm) lies in any
    slab [lower_p, upper_p] (sorted by lower); computed slice by slice along z."""
    known = np.zeros(shape, bool)
    reach = np.maximum.accumulate(upper)              # the union of the slabs starting below h ends here
    base = np.arange(shape[0])[:, None] * along[0] + np.arange(shape[1])[None, :] * along[1]
    for z in range(shape[2]):
        h = base + z * along[2]
        index = np.searchsorted(lower, h, side="right") - 1
        known[:, :, z] = (index >= 0) & (h <= reach[np.maximum(index, 0)])
    return known
