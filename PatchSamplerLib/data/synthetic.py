"""Synthetic shape families that stand in for VerSe vertebrae and TotalSegmentator kidneys.

Both families are built from analytic solids evaluated at voxel centres, in millimetres,
so a `scale` option changes the voxel grid (and spacing) but not the anatomy:
``scale=0.25`` gives a 32 x 30 x 22 vertebra at 4 mm for fast tests.

Geometry (library convention, see `volume.py`): arrays are indexed (i, j, k) = (x, y, z);
x = left-right, y = anterior (low) to posterior (high), z = inferior to superior.

- vertebra-like (1 mm, 128 x 120 x 90): an elliptic vertebral body, an arch (pedicles and
  laminae) enclosing the vertebral foramen -- a real hole through the shape along z -- a
  spinous process pointing posteriorly and downwards, and two transverse processes. Size,
  proportions, process lengths and angles and a small rotation vary per shape.
- kidney-like (1.5 mm, 85 x 85 x 110): a curved ellipsoid (bean) with a concave hilum on its
  medial side; size, curvature, hilum depth, orientation and side (left/right) vary.

Two more families, `vertebra-anatomical` and `kidney-anatomical` (`data.anatomy`), are built
from the real parts with dimensions sampled from published morphometry and rendered like a
segmentation (partial volume); they are on the same grids as the families above.
`kidney-anatomical-left` holds the same kidneys with every right one mirrored to a left one (x ->
-x), for a prior of one side (`method.sides`).

Every shape is a deterministic function of (family, seed, index); `FAMILY_VERSIONS` names the
version of each family's generator, recorded in the metadata of every prior trained on it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from PatchSamplerLib.data.anatomy.kidney import KIDNEY_FAMILY_VERSION, kidney_shape, kidney_shape_with_params
from PatchSamplerLib.data.anatomy.rendering import rotation_xyz
from PatchSamplerLib.data.anatomy.vertebra import VERTEBRA_FAMILY_VERSION, vertebra_shape
from PatchSamplerLib.progress import tracked
from PatchSamplerLib.volume import BinaryVolume

FAMILIES = ("vertebra", "kidney", "vertebra-anatomical", "kidney-anatomical", "kidney-anatomical-left")
FAMILY_VERSIONS = {"vertebra": "solid-1", "kidney": "solid-1",
                   "vertebra-anatomical": VERTEBRA_FAMILY_VERSION, "kidney-anatomical": KIDNEY_FAMILY_VERSION,
                   "kidney-anatomical-left": KIDNEY_FAMILY_VERSION}
# The side every shape of a family is stored as (a "-left" family holds each right kidney of its
# parent mirrored to a left one); a prior trained on it reconstructs a right kidney mirrored
# (`PatchSamplerLib.method.sides`).
CANONICAL_SIDES = {"kidney-anatomical-left": "left"}
# A family whose shapes are those of another, drawn from the other's random streams.
_PARENT = {"kidney-anatomical-left": "kidney-anatomical"}


@dataclass(frozen=True)
class FamilyGrid:
    """Full-resolution grid of a family: shape (x, y, z) in voxels, isotropic spacing in mm."""
    shape: tuple[int, int, int]
    spacing_mm: float


GRIDS = {
    "vertebra": FamilyGrid((128, 120, 90), 1.0),
    "kidney": FamilyGrid((85, 85, 110), 1.5),
    "vertebra-anatomical": FamilyGrid((128, 120, 90), 1.0),
    "kidney-anatomical": FamilyGrid((85, 85, 110), 1.5),
    "kidney-anatomical-left": FamilyGrid((85, 85, 110), 1.5),
}


def scaled_grid(grid: FamilyGrid, scale: float) -> tuple[tuple[int, int, int], float]:
    """(voxels (x, y, z), isotropic spacing in mm) of `grid` times `scale`: the physical box is
    kept, so ``scale=0.25`` turns 128 x 120 x 90 at 1 mm into 32 x 30 x 22 at 4 mm."""
    shape = tuple(max(4, int(round(s * scale))) for s in grid.shape)
    spacing = grid.spacing_mm * grid.shape[0] / shape[0] if scale != 1.0 else grid.spacing_mm
    return shape, spacing


def _grid_mm(grid: FamilyGrid, scale: float) -> tuple[np.ndarray, tuple[int, int, int], float]:
    """Voxel-centre coordinates (X, Y, Z, 3) in mm relative to the grid centre, for `scale`."""
    shape, spacing = scaled_grid(grid, scale)
    axes = [(np.arange(n) + 0.5) * spacing - n * spacing / 2.0 for n in shape]
    xyz = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).astype(np.float32)
    return xyz, shape, spacing


def _ellipsoid(p: np.ndarray, centre, radii, rot: np.ndarray | None = None) -> np.ndarray:
    """Inside test of an ellipsoid with semi-axes `radii` (mm)."""
    q = p - np.asarray(centre, np.float32)
    if rot is not None:
        q = q @ rot
    return np.sum((q / np.asarray(radii, np.float32)) ** 2, axis=-1) <= 1.0


def _elliptic_cylinder_z(p: np.ndarray, centre_xy, radii_xy, z_range) -> np.ndarray:
    """Inside test of a z-aligned elliptic cylinder between z_range[0] and z_range[1] (mm)."""
    dx = (p[..., 0] - centre_xy[0]) / radii_xy[0]
    dy = (p[..., 1] - centre_xy[1]) / radii_xy[1]
    return (dx * dx + dy * dy <= 1.0) & (p[..., 2] >= z_range[0]) & (p[..., 2] <= z_range[1])


def _rod(p: np.ndarray, start, direction, length: float, radius: float) -> np.ndarray:
    """Inside test of a capsule from `start` along unit `direction` for `length` mm."""
    d = np.asarray(direction, np.float32)
    d = d / np.linalg.norm(d)
    q = p - np.asarray(start, np.float32)
    t = np.clip(q @ d, 0.0, length)
    closest = t[..., None] * d
    return np.sum((q - closest) ** 2, axis=-1) <= radius * radius


def vertebra_mask(rng: np.random.Generator, scale: float = 1.0) -> BinaryVolume:
    """One vertebra-like shape on the 128 x 120 x 90 / 1 mm grid (times `scale`)."""
    xyz, shape, spacing = _grid_mm(GRIDS["vertebra"], scale)
    s = rng.uniform(0.85, 1.1)                      # overall size
    rot = rotation_xyz(*rng.uniform(-0.12, 0.12, size=3))  # small rotation (~ +-7 deg)
    p = (xyz - np.float32(rng.uniform(-3, 3, size=3))) @ rot  # shape frame

    body_r = np.array([rng.uniform(19, 25), rng.uniform(14, 18)]) * s
    body_h = rng.uniform(11, 15) * s                # half height
    body_y = -22.0 * s                              # body centre, anterior
    inside = _elliptic_cylinder_z(p, (0.0, body_y), body_r, (-body_h, body_h))

    foramen_r = np.array([rng.uniform(9, 13), rng.uniform(7, 10)]) * s
    wall = rng.uniform(5, 8) * s
    foramen_y = body_y + body_r[1] + foramen_r[1] - 1.0 * s
    arch_h = body_h * rng.uniform(0.55, 0.8)
    arch_z = rng.uniform(-0.15, 0.25) * body_h
    arch_outer = foramen_r + wall
    inside |= _elliptic_cylinder_z(p, (0.0, foramen_y), arch_outer,
                                   (arch_z - arch_h, arch_z + arch_h))

    back_y = foramen_y + arch_outer[1] - wall / 2   # posterior lamina, spinous process root
    sp_angle = rng.uniform(0.2, 0.7)                # downward tilt of the spinous process (rad)
    sp_dir = (rng.uniform(-0.08, 0.08), np.cos(sp_angle), -np.sin(sp_angle))
    inside |= _rod(p, (0.0, back_y, arch_z), sp_dir, rng.uniform(22, 32) * s, rng.uniform(3.5, 5) * s)

    tp_len = rng.uniform(18, 28) * s
    tp_r = rng.uniform(2.8, 4.0) * s
    tp_back = rng.uniform(-0.2, 0.35)               # posterior sweep of the transverse processes
    tp_up = rng.uniform(-0.15, 0.25)
    for side in (-1.0, 1.0):
        root = (side * (arch_outer[0] - wall / 2), foramen_y, arch_z)
        inside |= _rod(p, root, (side, tp_back, tp_up), tp_len, tp_r)

    hole = _elliptic_cylinder_z(p, (0.0, foramen_y), foramen_r, (-1e3, 1e3))
    mask = inside & ~hole
    return BinaryVolume(mask, (spacing,) * 3)


def kidney_mask(rng: np.random.Generator, scale: float = 1.0) -> BinaryVolume:
    """One kidney-like shape on the 85 x 85 x 110 / 1.5 mm grid (times `scale`)."""
    xyz, shape, spacing = _grid_mm(GRIDS["kidney"], scale)
    side = rng.choice([-1.0, 1.0])                 # hilum faces -x or +x (left / right kidney)
    tilt = rotation_xyz(rng.uniform(-0.35, 0.35), rng.uniform(-0.5, 0.5), rng.uniform(-0.6, 0.6))
    p = (xyz - np.float32(rng.uniform(-4, 4, size=3))) @ tilt
    p[..., 0] *= side                               # medial direction is +x in the shape frame

    length = rng.uniform(44, 62)                    # semi-axes: long (z), medial-lateral (x), AP (y)
    width = rng.uniform(24, 32)
    depth = rng.uniform(18, 25)
    bend = rng.uniform(0.004, 0.012)                # bean curvature (1/mm): lateral bulge
    # bend the long axis: the medial side becomes concave
    q = p.copy()
    q[..., 0] = p[..., 0] + bend * p[..., 2] ** 2
    inside = _ellipsoid(q, (0.0, 0.0, 0.0), (width, depth, length))

    hilum_depth = rng.uniform(0.35, 0.6) * width
    hilum = _ellipsoid(q, (width + 2.0, rng.uniform(-3, 3), rng.uniform(-6, 6)),
                       (width - hilum_depth + 2.0 + 6.0, depth * rng.uniform(0.45, 0.65),
                        length * rng.uniform(0.28, 0.4)))
    mask = inside & ~hilum
    return BinaryVolume(mask, (spacing,) * 3)


def anatomical_vertebra_mask(rng: np.random.Generator, scale: float = 1.0) -> BinaryVolume:
    """One anatomical vertebra (T10-L5, `data.anatomy.vertebra`) on the 128 x 120 x 90 / 1 mm grid
    (times `scale`), LPS axes."""
    shape, spacing = scaled_grid(GRIDS["vertebra-anatomical"], scale)
    return vertebra_shape(rng, None, spacing, shape)


def anatomical_kidney_mask(rng: np.random.Generator, scale: float = 1.0) -> BinaryVolume:
    """One anatomical kidney (left or right, `data.anatomy.kidney`) on the 85 x 85 x 110 / 1.5 mm
    grid (times `scale`), LPS axes."""
    shape, spacing = scaled_grid(GRIDS["kidney-anatomical"], scale)
    return kidney_shape(rng, None, spacing, shape)


def left_kidney_mask(rng: np.random.Generator, scale: float = 1.0) -> BinaryVolume:
    """`anatomical_kidney_mask` for the same random stream, a right kidney mirrored (x -> -x, the
    grid flipped along L) to a left one: the kidney-anatomical-left family."""
    shape, spacing = scaled_grid(GRIDS["kidney-anatomical"], scale)
    volume, params = kidney_shape_with_params(rng, None, spacing, shape)
    return volume if params.side == "left" else volume.mirrored_left_right()


_GENERATORS = {"vertebra": vertebra_mask, "kidney": kidney_mask,
               "vertebra-anatomical": anatomical_vertebra_mask, "kidney-anatomical": anatomical_kidney_mask,
               "kidney-anatomical-left": left_kidney_mask}


def shape_rng(family: str, seed: int, index: int) -> np.random.Generator:
    """The random stream of shape `index` of `family` for `seed` (independent per shape; a
    derived family, kidney-anatomical-left, uses its parent's: the same kidneys)."""
    return np.random.default_rng([FAMILIES.index(_PARENT.get(family, family)), int(seed), int(index)])


def make_shape(family: str, seed: int, index: int, scale: float = 1.0) -> BinaryVolume:
    """Shape `index` of a family, deterministic in (family, seed, index, scale)."""
    if family not in _GENERATORS:
        raise ValueError(f"unknown shape family {family!r}; choose one of {', '.join(FAMILIES)}")
    if not 0.05 <= scale <= 2.0:
        raise ValueError(f"scale must be in [0.05, 2], got {scale}")
    return _GENERATORS[family](shape_rng(family, seed, index), scale)


def make_shapes(family: str, count: int, seed: int = 0, scale: float = 1.0,
                start: int = 0) -> list[BinaryVolume]:
    """`count` shapes of a family: indices start .. start + count - 1 (progress: the task
    "synthetic shapes")."""
    indices = tracked(range(start, start + count), "synthetic shapes", unit="shapes")
    return [make_shape(family, seed, index, scale) for index in indices]
