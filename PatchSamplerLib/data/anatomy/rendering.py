"""Shared pieces of the anatomical shape families: signed-distance primitives, smooth CSG,
rotations, smooth surface noise and segmentation-like rendering onto a voxel grid.

Conventions (the library's anatomical frame, LPS):
- points are float32 arrays (N, 3) in millimetres, x = patient left (+L), y = posterior (+P),
  z = superior (+S); a grid's points are relative to the grid centre (`grid_points_mm`);
- a signed distance is negative inside, positive outside, in mm. Some primitives
  (superellipsoids, round cones, the noise) give an approximate distance: the zero level is
  exact, the magnitude a smooth estimate -- enough for smooth unions, the rendering band and
  thresholding at 0;
- a placed primitive has a `centre` (3,) and a `rotation` (3, 3) whose columns are its local
  axes in world coordinates: ``local = (p - centre) @ rotation``;
- an SDF callable maps points (N, 3) float32 -> (N,) float32 signed distances.

Rendering (`render_sdf`): a voxel is foreground when at least half of it is inside the surface,
estimated by supersampling (s x s x s sub-points) the voxels near the surface (|d| below about
one voxel); deep voxels take the sign of their centre's distance. This is the partial-volume
behaviour of a segmentation drawn or thresholded at 50 %. Distances are first evaluated on
4 x 4 x 4-voxel blocks and refined only near the surface (`sample_sdf`; exact for SDFs that
change by at most ~1 mm per mm; `block=1` evaluates every voxel). `render_sdf_resampled`
renders at a coarser spacing (e.g. 3 mm) and resamples to the target grid (linear
interpolation of the label, threshold 0.5; or nearest neighbour), as labelmaps made on
thick-slice CT often are. Clean-up and placement: `remove_specks`, `mask_bbox_centre_mm`,
`bbox_centring_shift` (the crop rule of `folder.centred_window_start`), `shift_mask`.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
from scipy import ndimage

SDF = Callable[[np.ndarray], np.ndarray]
BOUND_MARGIN_MM = 4.0        # primitives are evaluated exactly only this close to their bounding sphere


# ---------------------------------------------------------------- frames
def axis_rotation(axis: int, angle: float) -> np.ndarray:
    """(3, 3) rotation by `angle` radians about coordinate axis 0 (x), 1 (y) or 2 (z)."""
    c, s = np.cos(angle), np.sin(angle)
    i, j = (axis + 1) % 3, (axis + 2) % 3
    m = np.eye(3)
    m[i, i] = m[j, j] = c
    m[i, j], m[j, i] = -s, s
    return m


def rotation_xyz(rx: float, ry: float, rz: float) -> np.ndarray:
    """(3, 3) float32 rotation Rz @ Ry @ Rx from angles in radians about x, y, z."""
    return (axis_rotation(2, rz) @ axis_rotation(1, ry) @ axis_rotation(0, rx)).astype(np.float32)


def frame_from_axis(axis_y, up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """(3, 3) rotation whose local y is the unit `axis_y` and local z is `up` made orthogonal."""
    v = np.asarray(axis_y, float)
    v = v / np.linalg.norm(v)
    w = np.asarray(up, float) - np.dot(up, v) * v
    w = w / np.linalg.norm(w)
    return np.stack([np.cross(v, w), v, w], axis=1).astype(np.float32)


def to_local(p: np.ndarray, centre, rotation: np.ndarray | None = None) -> np.ndarray:
    """(N, 3) points in a primitive's local frame: ``(p - centre) @ rotation``."""
    q = p - np.asarray(centre, np.float32)
    return q if rotation is None else q @ np.asarray(rotation, np.float32)


def bounded(p: np.ndarray, centre, radius: float, sdf_local: SDF) -> np.ndarray:
    """Evaluate `sdf_local(p[near])` only near a bounding sphere; elsewhere |p - c| - radius.

    The far value is a lower bound of the distance to anything inside the sphere, so unions,
    smooth unions (blend radius < BOUND_MARGIN_MM) and the inside test stay correct."""
    q = p - np.asarray(centre, np.float32)
    dist = np.sqrt(np.einsum("ij,ij->i", q, q))
    out = dist - np.float32(radius)
    near = out < BOUND_MARGIN_MM
    if np.any(near):
        out[near] = sdf_local(p[near])
    return out.astype(np.float32, copy=False)


# ---------------------------------------------------------------- primitives (mm)
def superellipse_norm(u: np.ndarray, v: np.ndarray, a, b, exponent: float) -> np.ndarray:
    """(|u/a|^n + |v/b|^n)^(1/n): 1 on a superellipse with semi-axes a, b (arrays broadcast)."""
    n = float(exponent)
    return (np.abs(u / a) ** n + np.abs(v / b) ** n) ** (1.0 / n)


def sd_superellipsoid(p: np.ndarray, centre, radii, exponent: float = 2.0,
                      rotation: np.ndarray | None = None) -> np.ndarray:
    """Approximate SDF of a superellipsoid (|x/rx|^n + |y/ry|^n + |z/rz|^n <= 1); n = 2: ellipsoid."""
    r = np.asarray(radii, np.float32)
    n = float(exponent)

    def local(pts):
        q = np.abs(to_local(pts, centre, rotation)) / r
        rho = np.sum(q ** n, axis=1) ** (1.0 / n)
        return (rho - 1.0) * r.min()
    return bounded(p, centre, float(r.max()), local)


def sd_round_box(p: np.ndarray, centre, half_sizes, rounding: float,
                 rotation: np.ndarray | None = None) -> np.ndarray:
    """Exact SDF of a box with `half_sizes` (mm) whose edges are rounded by `rounding` mm."""
    h = np.asarray(half_sizes, np.float32) - np.float32(rounding)

    def local(pts):
        q = np.abs(to_local(pts, centre, rotation)) - h
        outside = np.linalg.norm(np.maximum(q, 0.0), axis=1)
        return outside + np.minimum(q.max(axis=1), 0.0) - rounding
    return bounded(p, centre, float(np.linalg.norm(half_sizes)), local)


def sd_round_cone(p: np.ndarray, a, b, radius_a: float, radius_b: float) -> np.ndarray:
    """Approximate SDF of a capsule from `a` to `b` whose radius goes linearly from radius_a to
    radius_b (radius_a == radius_b: an exact capsule)."""
    a = np.asarray(a, np.float32)
    ab = np.asarray(b, np.float32) - a
    length2 = float(ab @ ab)

    def local(pts):
        q = pts - a
        t = np.clip((q @ ab) / length2, 0.0, 1.0)
        radius = radius_a + (radius_b - radius_a) * t
        return np.linalg.norm(q - t[:, None] * ab, axis=1) - radius
    centre = a + ab / 2
    return bounded(p, centre, float(np.sqrt(length2) / 2 + max(radius_a, radius_b)), local)


def sd_elliptic_cylinder(p: np.ndarray, centre, radii_xy, rotation: np.ndarray | None = None) -> np.ndarray:
    """Approximate SDF of an infinite elliptic cylinder along the local z axis."""
    q = to_local(p, centre, rotation)
    rho = superellipse_norm(q[:, 0], q[:, 1], radii_xy[0], radii_xy[1], 2.0)
    return ((rho - 1.0) * min(radii_xy)).astype(np.float32)


def extrude(d_xy: np.ndarray, d_z: np.ndarray, rounding: float = 0.0) -> np.ndarray:
    """Intersection of a 2-D profile distance and a slab distance with the rim rounded by
    `rounding` mm (both distances measured to the unrounded solid)."""
    qx, qz = d_xy + rounding, d_z + rounding
    outside = np.sqrt(np.maximum(qx, 0.0) ** 2 + np.maximum(qz, 0.0) ** 2)
    return (outside + np.minimum(np.maximum(qx, qz), 0.0) - rounding).astype(np.float32)


# ---------------------------------------------------------------- CSG
def smooth_union(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Polynomial smooth minimum of two distances, blending over `k` mm (k = 0: union)."""
    if k <= 0:
        return np.minimum(a, b)
    h = np.clip(0.5 + 0.5 * (b - a) / k, 0.0, 1.0)
    return (b * (1 - h) + a * h - k * h * (1 - h)).astype(np.float32)


def smooth_union_all(distances: Sequence[np.ndarray], k: float) -> np.ndarray:
    """Left fold of `smooth_union` over several distances."""
    out = distances[0]
    for d in distances[1:]:
        out = smooth_union(out, d, k)
    return out


def subtract(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a minus b (hard difference)."""
    return np.maximum(a, -b)


# ---------------------------------------------------------------- surface noise
class SmoothNoise:
    """A smooth random field: sum of `waves` plane waves with random directions, wavelengths in
    [wavelength_mm / 2, wavelength_mm] and phases; RMS about `amplitude_mm`. Deterministic in rng."""

    def __init__(self, rng: np.random.Generator, amplitude_mm: float, wavelength_mm: float = 12.0,
                 waves: int = 6):
        directions = rng.normal(size=(waves, 3))
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
        wavelengths = rng.uniform(wavelength_mm / 2, wavelength_mm, size=waves)
        self.k = (2 * np.pi * directions / wavelengths[:, None]).astype(np.float32)   # (waves, 3)
        self.phase = rng.uniform(0, 2 * np.pi, size=waves).astype(np.float32)
        self.weight = np.float32(amplitude_mm * np.sqrt(2.0 / waves))

    def __call__(self, p: np.ndarray) -> np.ndarray:
        """(N,) noise values (mm) at points (N, 3)."""
        return self.weight * np.sin(p @ self.k.T + self.phase).sum(axis=1)


def with_noise(sdf: SDF, noise: SmoothNoise | None, band_mm: float = 3.0) -> SDF:
    """`sdf` plus `noise` near the surface (|d| < band_mm), where it moves the zero level."""
    if noise is None:
        return sdf

    def noisy(p):
        d = sdf(p)
        near = np.abs(d) < band_mm
        d[near] += noise(p[near])
        return d
    return noisy


# ---------------------------------------------------------------- grids and rendering
def grid_points_mm(shape: Sequence[int], spacing_mm: float) -> np.ndarray:
    """(X*Y*Z, 3) float32 voxel-centre coordinates (mm) relative to the grid centre, C order."""
    axes = [((np.arange(n) + 0.5) - n / 2.0) * spacing_mm for n in shape]
    grid = np.meshgrid(*axes, indexing="ij")
    return np.stack([g.ravel() for g in grid], axis=1).astype(np.float32)


def _subvoxel_offsets(supersample: int, spacing_mm: float) -> np.ndarray:
    """(s^3, 3) offsets (mm) of the sub-voxel centres from the voxel centre."""
    u = ((np.arange(supersample) + 0.5) / supersample - 0.5) * spacing_mm
    return np.stack(np.meshgrid(u, u, u, indexing="ij"), axis=-1).reshape(-1, 3).astype(np.float32)


def sample_sdf(sdf: SDF, shape: Sequence[int], spacing_mm: float, block: int = 4) -> np.ndarray:
    """(X, Y, Z) float32 signed distances at the voxel centres of a grid centred on 0.

    Evaluated first at the centres of block^3-voxel blocks; a block whose centre is farther
    from the surface than 1.5 x its half-diagonal + 1 voxel keeps that value for all its voxels
    (right sign, not the exact distance), the others are evaluated voxel by voxel. Assumes the
    SDF changes by at most about 1 mm per mm (true of the primitives here)."""
    shape = np.asarray(shape, int)
    n_blocks = -(-shape // block)
    centre_index = np.stack(np.meshgrid(*[np.arange(nb) * block + (block - 1) / 2.0 for nb in n_blocks],
                                        indexing="ij"), axis=-1).reshape(-1, 3)
    d_block = sdf(((centre_index + 0.5 - shape / 2.0) * spacing_mm).astype(np.float32))
    reach = 1.5 * np.sqrt(3.0) * block / 2.0 * spacing_mm + spacing_mm
    full = np.repeat(np.repeat(np.repeat(d_block.reshape(tuple(n_blocks)), block, 0), block, 1), block, 2)
    near = np.flatnonzero(np.abs(d_block) <= reach)
    if len(near):
        offsets = np.stack(np.meshgrid(*[np.arange(block)] * 3, indexing="ij"), axis=-1).reshape(-1, 3)
        first = np.stack(np.unravel_index(near, tuple(n_blocks)), axis=1) * block
        index = (first[:, None, :] + offsets[None]).reshape(-1, 3)
        index = index[np.all(index < shape, axis=1)]
        full[tuple(index.T)] = sdf(((index + 0.5 - shape / 2.0) * spacing_mm).astype(np.float32))
    return full[:shape[0], :shape[1], :shape[2]]


def render_sdf(sdf: SDF, shape: Sequence[int], spacing_mm: float, supersample: int = 2,
               block: int = 4) -> np.ndarray:
    """(X, Y, Z) bool mask: voxels at least half inside the surface d = 0 (grid centred on 0).

    Voxel centres farther than ~1 voxel from the surface take their own sign (`sample_sdf`
    with `block`; block = 1: every voxel centre evaluated, for SDFs that are not about
    1-Lipschitz); the others are decided by the inside fraction of supersample^3 sub-points
    (threshold 0.5)."""
    d = sample_sdf(sdf, shape, spacing_mm, block)
    inside = d <= 0
    if supersample > 1:
        near = np.argwhere(np.abs(d) < 1.0 * spacing_mm)
        centres = (near + 0.5 - np.asarray(shape) / 2.0) * spacing_mm
        offsets = _subvoxel_offsets(supersample, spacing_mm)
        sub = (centres[:, None, :] + offsets[None]).reshape(-1, 3).astype(np.float32)
        fraction = (sdf(sub) <= 0).reshape(len(near), -1).mean(axis=1)
        inside[tuple(near.T)] = fraction >= 0.5
    return inside


def resample_mask(mask: np.ndarray, spacing_from: float, shape_to: Sequence[int], spacing_to: float,
                  order: int = 1) -> np.ndarray:
    """Resample a centred mask to another centred grid: linear interpolation of the label and
    threshold 0.5 (order 1) or nearest neighbour (order 0). Outside the source: background."""
    scale = spacing_to / spacing_from
    n_from = np.asarray(mask.shape, float)
    n_to = np.asarray(shape_to, float)
    # source index of a target voxel centre i: ((i + 0.5) - n_to / 2) * scale + n_from / 2 - 0.5
    offset = (0.5 - n_to / 2.0) * scale + n_from / 2.0 - 0.5
    out = ndimage.affine_transform(mask.astype(np.float32), np.full(3, scale), offset=offset,
                                   output_shape=tuple(int(s) for s in shape_to), order=order,
                                   mode="constant", cval=0.0)
    return out >= 0.5


def render_sdf_resampled(sdf: SDF, shape: Sequence[int], spacing_mm: float, render_spacing_mm: float,
                         supersample: int = 2, order: int = 1, block: int = 4) -> np.ndarray:
    """Render at `render_spacing_mm` on a grid covering the target, then resample to `shape`
    at `spacing_mm` (`resample_mask`)."""
    coarse = tuple(int(np.ceil(n * spacing_mm / render_spacing_mm)) for n in shape)
    mask = render_sdf(sdf, coarse, render_spacing_mm, supersample, block)
    return resample_mask(mask, render_spacing_mm, shape, spacing_mm, order)


def remove_specks(mask: np.ndarray, min_voxels: int) -> np.ndarray:
    """Mask without its 26-connected components smaller than `min_voxels` voxels."""
    labels, count = ndimage.label(mask, np.ones((3, 3, 3), bool))
    if count <= 1:
        return mask
    sizes = np.bincount(labels.ravel())
    keep = sizes >= min_voxels
    keep[0] = False
    return keep[labels]


def mask_bbox_centre_mm(mask: np.ndarray, spacing_mm: float) -> np.ndarray:
    """(3,) mm of the foreground bounding-box centre relative to the grid centre."""
    idx = np.argwhere(mask)
    if len(idx) == 0:
        raise ValueError("empty mask: nothing to centre")
    centre_index = (idx.min(axis=0) + idx.max(axis=0)) / 2.0
    return ((centre_index + 0.5) - np.asarray(mask.shape) / 2.0) * spacing_mm


def shift_mask(mask: np.ndarray, shift: Sequence[int]) -> np.ndarray:
    """Mask moved by integer voxels `shift` (x, y, z); what leaves the grid is lost, background
    comes in."""
    out = np.zeros_like(mask)
    src = tuple(slice(max(0, -s), n - max(0, s)) for s, n in zip(shift, mask.shape))
    dst = tuple(slice(max(0, s), n - max(0, -s)) for s, n in zip(shift, mask.shape))
    out[dst] = mask[src]
    return out


def bbox_centring_shift(mask: np.ndarray) -> np.ndarray:
    """(3,) int voxel shift that puts the foreground's bounding-box centre on the grid centre
    (the rule of `folder.centred_window_start`: ties rounded up)."""
    idx = np.argwhere(mask)
    lo, hi = idx.min(axis=0), idx.max(axis=0)
    size = np.asarray(mask.shape)
    start = np.floor((lo + hi) / 2.0 - (size - 1) / 2.0 + 0.5).astype(int)
    return -start
