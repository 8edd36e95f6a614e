"""Patch extraction [T eq. 3.3, 3.8].

For each centre r~ (voxel index space) a K x K x K block of coordinates x = r~ + o with the
offsets o_i = i - (K + 1) / 2, i = 1..K (eq. 3.3: {-(K-1)/2, ..., (K-1)/2} for odd K, half
voxels for even K). Labels y = V[round(x)], 0 outside the grid. The coordinates are a
differentiable function of the centres (labels are constants), so gradients of anything
computed from the coordinates flow back to the sampler.
"""
from __future__ import annotations

import numpy as np
import torch

MAX_PATCH_VOXELS = 4_000_000  # N * K^3 budget: ~64 MB of coordinates, ~ a minute of CPU fitting


def check_patch_request(n: int, k: int, max_voxels: int = MAX_PATCH_VOXELS) -> None:
    """Raise ValueError for N < 1, K < 1 or N * K^3 above the memory budget."""
    if int(n) != n or n < 1:
        raise ValueError(f"the number of patches N must be an integer >= 1, got {n}")
    if int(k) != k or k < 1:
        raise ValueError(f"the patch size K must be an integer >= 1, got {k}")
    if n * k ** 3 > max_voxels:
        raise ValueError(f"N * K^3 = {n} * {k}^3 = {n * k ** 3:,} patch voxels exceeds the budget of "
                         f"{max_voxels:,}; use fewer or smaller patches")


def patch_offsets(k: int) -> torch.Tensor:
    """(K^3, 3) float32 offsets of a K x K x K patch, i - (K + 1) / 2 for i = 1..K per axis."""
    o = torch.arange(k, dtype=torch.float32) - (k - 1) / 2.0
    return torch.stack(torch.meshgrid(o, o, o, indexing="ij"), dim=-1).reshape(-1, 3)


def patch_coordinates(centres: torch.Tensor, k: int) -> torch.Tensor:
    """(N, 3) centres (voxel index) -> (N, K^3, 3) patch voxel coordinates, differentiable."""
    return centres[:, None, :] + patch_offsets(k).to(centres)[None]


def patch_labels(mask: np.ndarray | torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Labels V[round(x)] for (..., 3) coordinates; 0 outside the grid. Returns (...) float32.

    round = floor(x + 0.5) (ties up), not torch.round's ties-to-even: an even K around a
    voxel-aligned centre puts coordinates on .5 ties, and ties-to-even would map them to
    non-contiguous voxels (8.5, 9.5, 10.5, 11.5 -> 8, 10, 10, 12)."""
    if isinstance(mask, np.ndarray) and not mask.flags.writeable:
        mask = mask.copy()                    # read-only (a Ray task's argument): torch warns on sharing it
    volume = torch.as_tensor(mask, device=coords.device)
    idx = torch.floor(coords.detach() + 0.5).long()
    size = torch.tensor(volume.shape, device=coords.device)
    inside = ((idx >= 0) & (idx < size)).all(dim=-1)
    idx = torch.where(inside[..., None], idx, torch.zeros_like(idx))
    values = volume[idx[..., 0], idx[..., 1], idx[..., 2]].to(torch.float32)
    return values * inside.to(torch.float32)


def extract_patches(mask: np.ndarray, spacing, centres: np.ndarray, k: int, centre_mm):
    """Centres -> the patches as the INR sees them [T eq. 3.8].

    mask (X, Y, Z) bool; spacing (3,) mm; centres (N, 3) voxel index; centre_mm (3,) the INR
    frame's centre in local mm. Returns coords_idx (N, K^3, 3) voxel index, labels (N, K^3) 0/1
    float32 and coords_mm (N, K^3, 3) float32 mm relative to the frame centre."""
    from PatchSamplerLib.volume import index_to_local_mm
    coords_idx = patch_coordinates(torch.as_tensor(np.asarray(centres, np.float32)), k)
    labels = patch_labels(mask, coords_idx)
    coords_mm = index_to_local_mm(coords_idx, spacing) - torch.as_tensor(centre_mm, dtype=torch.float32)
    return coords_idx, labels, coords_mm


def boundary_voxels(labels: torch.Tensor, k: int) -> torch.Tensor:
    """Which patch voxels lie on the shape's boundary within their patch: a voxel one of whose
    6 neighbours in the same patch has the other label. labels: (..., N K^3) 0/1 in
    `extract_patches`' order (N patches of K^3 voxels, x slowest, z fastest). Returns (..., N K^3)
    bool; a patch wholly inside or outside the shape has none. Raises ValueError when the last
    dimension is not a multiple of K^3."""
    if labels.shape[-1] % k ** 3:
        raise ValueError(f"{labels.shape[-1]} patch voxels are not a whole number of {k}^3 patches")
    cubes = labels.reshape(-1, k, k, k)
    edge = torch.zeros(cubes.shape, dtype=torch.bool, device=labels.device)
    for axis in (1, 2, 3):
        differs = cubes.narrow(axis, 1, k - 1) != cubes.narrow(axis, 0, k - 1)   # between neighbours along axis
        edge.narrow(axis, 1, k - 1).logical_or_(differs)
        edge.narrow(axis, 0, k - 1).logical_or_(differs)
    return edge.reshape(labels.shape)


def patch_boxes(centres: np.ndarray, k: int) -> np.ndarray:
    """(N, 3) centres -> (N, 2, 3) inclusive voxel index box corners of the rounded patches."""
    lo = np.floor(np.asarray(centres, float) - (k - 1) / 2.0 + 0.5)  # same rounding as patch_labels
    return np.stack([lo, lo + (k - 1)], axis=1).astype(int)


def soft_patch_labels(mask: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Trilinear interpolation of the mask at (..., 3) voxel-index coordinates, 0 outside the
    grid: equal to `patch_labels` at voxel centres, and differentiable w.r.t. the coordinates
    (an option of sampler training; the thesis keeps the labels constant, T eq. 3.8). Returns (...)."""
    volume = mask.to(coords.dtype)[None, None]                                   # (1, 1, X, Y, Z)
    size = coords.new_tensor(mask.shape)
    grid = (2 * coords / (size - 1) - 1).flip(-1).reshape(1, -1, 1, 1, 3)        # grid_sample wants (z, y, x)
    values = torch.nn.functional.grid_sample(volume, grid, mode="bilinear", padding_mode="zeros",
                                             align_corners=True)
    return values.reshape(coords.shape[:-1])
