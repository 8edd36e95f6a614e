"""Decoding a fitted latent on a voxel grid [T eq. 3.11]: the occupancy at every voxel centre,
evaluated in chunks (`logits_in_chunks`, the one chunked loop of the package), densely
(`decode_grid`) or coarse-to-fine (`decode_grid_coarse_to_fine`: far fewer MLP evaluations,
the same thresholded result; results/decode/README.md), and `decode_in_frame`, the decode of the
prior's frame on an input grid.

Coordinates are millimetres in the INR frame: (voxel index + 0.5) * spacing - frame centre.
"""
from __future__ import annotations

import numpy as np
import torch

from PatchSamplerLib.method.inr import OccupancyDecoder

DEFAULT_CHUNK = 65536
COARSE_STRIDE = 4
COARSE_MARGIN = 4.0   # |logit| below this at a coarse corner: refine the block
COARSE_GROW = 0       # blocks added around the refined ones (results/decode: not needed at margin 4)


def logits_in_chunks(decoder: OccupancyDecoder, feats: torch.Tensor, coords: torch.Tensor,
                     chunk: int = DEFAULT_CHUNK) -> torch.Tensor:
    """coords (M, 3) mm, feats (1, W) from `decoder.latent_features` -> (M,) float32 logits,
    `chunk` points at a time (float32 also under a bf16 autocast). Keeps the autograd graph
    when one is being recorded."""
    if not len(coords):
        return coords.new_zeros(0)
    return torch.cat([decoder.forward_features(coords[None, s:s + chunk], feats)[0].float()
                      for s in range(0, len(coords), chunk)])


def _grid_axes(shape, offset, spacing, centre_mm, device, stride: int = 1) -> list[torch.Tensor]:
    """Per axis, the mm coordinates of every `stride`-th voxel centre offset, offset + stride, ..
    below offset + n (coordinates (offset + idx + 0.5) * spacing - centre_mm)."""
    return [(torch.arange(0, n, stride, device=device, dtype=torch.float32) + o + 0.5) * s - c
            for n, o, s, c in zip(shape, offset, spacing, centre_mm)]


@torch.no_grad()
def decode_grid(decoder: OccupancyDecoder, latent: torch.Tensor, shape, spacing, centre_mm,
                offset=(0, 0, 0), stride: int = 1, chunk: int = DEFAULT_CHUNK) -> torch.Tensor:
    """Occupancy probabilities at voxel centres of a grid [T eq. 3.11], in chunks.

    latent: (D,) or (1, D). shape: (X, Y, Z) voxels of the (sub)grid to decode, whose voxel
    (0, 0, 0) is voxel `offset` of the image; every `stride`-th voxel along each axis.
    Coordinates: (offset + stride * idx + 0.5) * spacing - centre_mm. Returns (x, y, z) float32
    with x = ceil(X / stride) etc."""
    device = latent.device
    latent = latent.reshape(1, -1)
    axes = _grid_axes(shape, offset, spacing, centre_mm, device, stride)
    sizes = [len(a) for a in axes]
    total = sizes[0] * sizes[1] * sizes[2]
    feats = decoder.latent_features(latent)
    out = torch.empty(total, device=device)
    yz = sizes[1] * sizes[2]
    for start in range(0, total, chunk):
        flat = torch.arange(start, min(start + chunk, total), device=device)
        i, rem = flat // yz, flat % yz
        coords = torch.stack([axes[0][i], axes[1][rem // sizes[2]], axes[2][rem % sizes[2]]], dim=-1)
        out[start:start + len(flat)] = torch.sigmoid(logits_in_chunks(decoder, feats, coords, chunk))
    return out.reshape(sizes)


def _block_corners(corner_values: torch.Tensor, blocks) -> torch.Tensor:
    """(B0 + 1, B1 + 1, B2 + 1) values at block corners -> (8, B0, B1, B2): each block's 8 corners."""
    b0, b1, b2 = blocks
    return torch.stack([corner_values[i:i + b0, j:j + b1, k:k + b2].to(torch.int64)
                        for i in (0, 1) for j in (0, 1) for k in (0, 1)])


def _to_voxels(per_block: torch.Tensor, stride: int, shape) -> torch.Tensor:
    """(B0, B1, B2) per-block values -> (X, Y, Z) per-voxel values (blocks of stride^3, cropped)."""
    out = per_block
    for axis in range(3):
        out = out.repeat_interleave(stride, axis)
    return out[:shape[0], :shape[1], :shape[2]]


@torch.no_grad()
def decode_grid_coarse_to_fine(decoder: OccupancyDecoder, latent: torch.Tensor, shape, spacing, centre_mm,
                               offset=(0, 0, 0), stride: int = COARSE_STRIDE, margin: float = COARSE_MARGIN,
                               chunk: int = DEFAULT_CHUNK, grow: int = COARSE_GROW) -> tuple[torch.Tensor, int]:
    """The `decode_grid` result (stride 1) with far fewer MLP evaluations.

    The grid is cut into blocks of `stride`^3 voxels. The INR is evaluated at the block corners
    (the voxel centres at multiples of `stride`, continuing past the grid's end). A block is
    filled with its corners' class when all 8 agree and each |logit| >= `margin`; the others,
    grown by `grow` blocks on every side (safety band), are evaluated voxel by voxel. Returns
    ((X, Y, Z) float32 probabilities, exact where evaluated and 0 / 1 where filled; number of
    points evaluated)."""
    device = latent.device
    feats = decoder.latent_features(latent.reshape(1, -1))
    blocks = [-(-n // stride) for n in shape]                                    # ceil
    corner_axes = _grid_axes([(b + 1) * stride for b in blocks], offset, spacing, centre_mm, device, stride)
    corners = torch.stack(torch.meshgrid(*corner_axes, indexing="ij"), dim=-1).reshape(-1, 3)
    logit = logits_in_chunks(decoder, feats, corners, chunk).reshape([b + 1 for b in blocks])
    vote = _block_corners(logit >= 0, blocks).sum(0)                            # corners inside, 0..8
    refine = (vote > 0) & (vote < 8) | _block_corners(logit.abs() < margin, blocks).any(0)
    if grow > 0:
        refine = torch.nn.functional.max_pool3d(refine[None, None].float(), 2 * grow + 1, stride=1,
                                                padding=grow)[0, 0] > 0
    out = _to_voxels((vote == 8).float(), stride, shape).contiguous()
    idx = torch.nonzero(_to_voxels(refine, stride, shape))
    axes = _grid_axes(shape, offset, spacing, centre_mm, device)
    coords = torch.stack([axes[0][idx[:, 0]], axes[1][idx[:, 1]], axes[2][idx[:, 2]]], dim=-1)
    out[idx[:, 0], idx[:, 1], idx[:, 2]] = torch.sigmoid(logits_in_chunks(decoder, feats, coords, chunk))
    return out, len(corners) + len(idx)


def decode_in_frame(decoder: OccupancyDecoder, latent: torch.Tensor, shape, spacing, centre_mm: np.ndarray,
                    lo: np.ndarray, hi: np.ndarray, dense: bool = False,
                    chunk: int = DEFAULT_CHUNK) -> tuple[np.ndarray, int]:
    """Decode the inclusive voxel box [lo, hi] of a grid of `shape` (X, Y, Z) voxels at `spacing`
    (3,) mm (coarse-to-fine unless `dense`) and threshold at 0.5. Returns ((X, Y, Z) bool
    reconstruction, background outside the box; number of INR evaluations)."""
    box = tuple(int(v) for v in np.asarray(hi) - np.asarray(lo) + 1)
    if dense:
        prob = decode_grid(decoder, latent, box, spacing, centre_mm, offset=lo, chunk=chunk)
        evaluated = int(np.prod(box))
    else:
        prob, evaluated = decode_grid_coarse_to_fine(decoder, latent, box, spacing, centre_mm, offset=lo,
                                                     chunk=chunk)
    recon = np.zeros(tuple(shape), bool)
    recon[lo[0]:hi[0] + 1, lo[1]:hi[1] + 1, lo[2]:hi[2] + 1] = prob.cpu().numpy() >= 0.5
    return recon, evaluated
