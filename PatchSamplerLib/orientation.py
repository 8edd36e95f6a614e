"""The library's anatomical frame, entered at the edges and left again.

The samplers and the INR work on arrays whose axes i, j, k point as closely as possible to +L,
+P, +S (LPS, the convention of ITK / NIfTI world coordinates and of the training loaders), never
on the axis order a file happens to be stored in: TotalSegmentator and nnU-Net write RAS-ordered
files, DICOM series come in any order. The same anatomy stored in any of the 48 axis orders and
signs gives the same anatomical array, so the same patches, latent, reconstruction and metrics
in world coordinates.

Reorientation only permutes and flips array axes: no interpolation, and every voxel keeps its
world position. An oblique grid goes to its nearest anatomical axes (greedy on the largest
|cosine|, as the training loaders do); the angle left over is recorded
(`AxisReorientation.oblique_deg`), and the INR sees millimetres along the array axes.

Index convention: (i, j, k) voxel index of the input grid; "anatomical index" of the
reoriented grid.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from PatchSamplerLib.volume import BinaryVolume

ANATOMICAL_AXES = "LPS"


def lps_axis_order(direction: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each world axis w (L, P, S): the array axis closest to it and the sign of that axis.

    direction: (3, 3), columns = world directions of the i, j, k axes.
    Returns perm (3,) int, with perm[w] the array axis along world axis w, and signs (3,)
    of +1 / -1 (-1: the array axis points along -w). Oblique directions go to the nearest
    axis (greedy on the largest |cosine|), so perm is always a permutation.
    """
    cosines = np.abs(np.asarray(direction, float).reshape(3, 3))
    perm = np.full(3, -1)
    used_world, used_array = set(), set()
    for flat in np.argsort(-cosines, axis=None, kind="stable"):
        w, a = divmod(int(flat), 3)
        if w not in used_world and a not in used_array:
            perm[w] = a
            used_world.add(w)
            used_array.add(a)
    signs = np.where(np.asarray(direction, float)[np.arange(3), perm] < 0, -1, 1)
    return perm, signs


@dataclass(frozen=True)
class AxisReorientation:
    """How an input grid of `shape` (X, Y, Z) voxels maps to the anatomical frame.

    perm[w]: the input array axis along anatomical axis w (L, P, S); flips[w]: that input axis
    points along -w; oblique_deg: the largest angle (degrees) between an input axis and the
    anatomical axis it was assigned to (0 for axis-aligned grids)."""
    perm: tuple
    flips: tuple
    shape: tuple
    oblique_deg: float = 0.0

    @property
    def is_identity(self) -> bool:
        return self.perm == (0, 1, 2) and not any(self.flips)

    @property
    def anatomical_shape(self) -> tuple:
        return tuple(self.shape[a] for a in self.perm)

    def array_to_anatomical(self, array: np.ndarray) -> np.ndarray:
        """(X, Y, Z, ...) array of the input grid -> the same voxels on the anatomical grid."""
        out = np.transpose(array, self.perm + tuple(range(3, array.ndim)))
        flipped = tuple(w for w in range(3) if self.flips[w])
        return np.ascontiguousarray(np.flip(out, flipped) if flipped else out)

    def array_from_anatomical(self, array: np.ndarray) -> np.ndarray:
        """Inverse of `array_to_anatomical`: an anatomical-grid array back on the input grid."""
        flipped = tuple(w for w in range(3) if self.flips[w])
        out = np.flip(array, flipped) if flipped else array
        inverse = tuple(int(w) for w in np.argsort(self.perm))
        return np.ascontiguousarray(np.transpose(out, inverse + tuple(range(3, array.ndim))))

    def index_to_anatomical(self, index) -> np.ndarray:
        """(..., 3) input voxel index (continuous allowed) -> (..., 3) anatomical index."""
        index = np.asarray(index, float)
        out = index[..., list(self.perm)]
        size = np.array(self.anatomical_shape, float) - 1
        return np.where(self.flips, size - out, out)

    def index_from_anatomical(self, index) -> np.ndarray:
        """(..., 3) anatomical index -> (..., 3) input voxel index (inverse of the above)."""
        index = np.asarray(index, float)
        size = np.array(self.anatomical_shape, float) - 1
        unflipped = np.where(self.flips, size - index, index)
        return unflipped[..., list(np.argsort(self.perm))]

    def axis_to_anatomical(self, axis: int) -> int:
        """The anatomical axis (0 L, 1 P, 2 S) that input array axis `axis` was assigned to."""
        return self.perm.index(axis)

    def record(self) -> dict:
        """JSON-able description for metrics.json / patches.json."""
        return {"axes": ANATOMICAL_AXES, "input_axis_along_L_P_S": list(self.perm),
                "input_axis_reversed": [bool(f) for f in self.flips], "oblique_deg": round(self.oblique_deg, 3),
                "note": "the samplers and the INR ran on the input's voxels with the array axes permuted and "
                        "flipped to point along +L, +P, +S (no interpolation); results are on the input's grid"}


def anatomical_reorientation(direction: np.ndarray, shape) -> AxisReorientation:
    """The AxisReorientation of a grid of `shape` with `direction` (3, 3) (columns: world LPS
    directions of the i, j, k axes)."""
    direction = np.asarray(direction, float).reshape(3, 3)
    perm, signs = lps_axis_order(direction)
    cosines = np.abs(direction[np.arange(3), perm]) / np.linalg.norm(direction[:, perm], axis=0)
    oblique = float(np.degrees(np.arccos(np.clip(cosines.min(), -1.0, 1.0))))
    return AxisReorientation(tuple(int(a) for a in perm), tuple(bool(s < 0) for s in signs),
                             tuple(int(n) for n in shape), oblique)


def reorient_to_lps(array: np.ndarray, spacing, origin, direction
                    ) -> tuple[np.ndarray, tuple[float, float, float], np.ndarray, np.ndarray]:
    """Permute / flip an (X, Y, Z) array so its axes point to +L, +P, +S as closely as possible.

    Lossless (voxels are only reordered) and world-preserving: voxel v of the result sits at
    the same world position as the voxel it came from. Returns (array, spacing, origin,
    direction) of the reoriented grid; direction is the identity for axis-aligned inputs.
    """
    direction = np.asarray(direction, float).reshape(3, 3)
    spacing = np.asarray(spacing, float)
    orient = anatomical_reorientation(direction, array.shape[:3])
    perm, signs = np.array(orient.perm), np.where(orient.flips, -1, 1)
    first_voxel = np.where(orient.flips, np.array(array.shape[:3])[perm] - 1, 0)   # input index of new voxel 0,
    first_input = np.zeros(3)                                                       # per input axis
    first_input[perm] = first_voxel
    new_direction = direction[:, perm] * signs
    new_origin = np.asarray(origin, float) + direction @ (spacing * first_input)
    return (orient.array_to_anatomical(array), tuple(float(s) for s in spacing[perm]), new_origin, new_direction)


def to_anatomical(volume: BinaryVolume) -> tuple[BinaryVolume, AxisReorientation]:
    """`volume` on the anatomical grid (same voxels, same world positions) and the
    AxisReorientation that maps results back (`array_from_anatomical`, `index_from_anatomical`)."""
    orient = anatomical_reorientation(volume.direction, volume.shape)
    mask, spacing, origin, direction = reorient_to_lps(volume.mask, volume.spacing, volume.origin, volume.direction)
    return BinaryVolume(mask, spacing, origin, direction), orient
