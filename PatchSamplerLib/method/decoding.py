"""Decoding a fitted latent on a voxel grid [T eq. 3.11]: the occupancy at every voxel centre,
evaluated in chunks (`logits_in_chunks`, the one chunked loop of the package), densely
(`decode_grid`) or coarse-to-fine (`decode_grid_coarse_to_fine`: far fewer MLP evaluations,
the same thresholded result, on blocks of about equal length in mm along every axis
(`block_strides`) so that anisotropic voxels decode as well; results/decode/README.md), and
`decode_in_frame`, the decode of the prior's frame on an input grid.

Coordinates are millimetres in the INR frame: (voxel index + 0.5) * spacing - frame centre.
"""
from __future__ import annotations

import numpy as np
import torch

from PatchSamplerLib.method.inr import OccupancyDecoder

DEFAULT_CHUNK = 65536
COARSE_STRIDE = 4     # voxels per block along the finest axis (`block_strides`)
COARSE_MARGIN = 4.0   # |logit| below this at a coarse corner: refine the block
COARSE_GROW = 0       # blocks added around the refined ones (results/decode: not needed at margin 4)


def logits_in_chunks(decoder: OccupancyDecoder, feats: torch.Tensor, coords: torch.Tensor,
                     chunk: int = DEFAULT_CHUNK, advance=None) -> torch.Tensor:
    """coords (M, 3) mm, feats (1, W) from `decoder.latent_features` -> (M,) float32 logits,
    `chunk` points at a time (float32 also under a bf16 autocast). Keeps the autograd graph
    when one is being recorded. `advance(count)`, when given, is called after each chunk with
    its number of points (progress)."""
    if not len(coords):
        return coords.new_zeros(0)
    parts = []
    for s in range(0, len(coords), chunk):
        parts.append(decoder.forward_features(coords[None, s:s + chunk], feats)[0].float())
        if advance is not None:
            advance(len(parts[-1]))
    return torch.cat(parts)


class PointCount:
    """Points decoded so far of a decode's `total` (which may grow), reported to
    `progress(done, total)` after every chunk (`advance`, for `logits_in_chunks`)."""

    def __init__(self, progress, total: int = 0):
        self.progress, self.total, self.done = progress, int(total), 0

    def advance(self, count: int) -> None:
        self.done += int(count)
        self.progress(self.done, self.total)

    @classmethod
    def hook(cls, progress, total: int = 0) -> "PointCount | None":
        """A PointCount, or None without a `progress` callable (then nothing is counted)."""
        return None if progress is None else cls(progress, total)


def _per_axis(stride) -> tuple[int, int, int]:
    """An int or 3 ints (voxels) -> 3 ints, one per axis."""
    return (int(stride),) * 3 if np.ndim(stride) == 0 else tuple(int(s) for s in stride)


def _grid_axes(shape, offset, spacing, centre_mm, device, stride=1) -> list[torch.Tensor]:
    """Per axis, the mm coordinates of every `stride`-th voxel centre offset, offset + stride, ..
    below offset + n (coordinates (offset + idx + 0.5) * spacing - centre_mm). `stride`: voxels,
    one int for every axis or 3 ints."""
    return [(torch.arange(0, n, st, device=device, dtype=torch.float32) + o + 0.5) * s - c
            for n, o, s, c, st in zip(shape, offset, spacing, centre_mm, _per_axis(stride))]


def block_strides(spacing, stride: int = COARSE_STRIDE) -> tuple[int, int, int]:
    """Per-axis block size (3 ints, voxels) of the coarse-to-fine decode on a grid of `spacing`
    (3,) mm: `stride` voxels along the finest axis and, along every other axis, as many whole
    voxels as fit in the same length (`stride` * min(spacing) mm), at least 1.

    Why: a block is filled from its 8 corners, so a surface detail smaller than the block that
    lies between them is lost. With `stride` voxels on every axis, a block on 0.7 x 0.7 x 5 mm
    voxels is 20 mm thick, and the decode of a vertebra lost hundreds of voxels there
    (results/decode/README.md); blocks of about equal length in mm on every axis are never
    longer than `stride` voxels of the finest axis (1 voxel -- no skipping -- along an axis
    whose voxels are already that thick). Isotropic spacing: (stride,) * 3, as before."""
    spacing = np.asarray(spacing, float).reshape(3)
    length_mm = stride * spacing.min()
    return tuple(max(1, int(np.floor(length_mm / s + 1e-6))) for s in spacing)


@torch.no_grad()
def decode_grid(decoder: OccupancyDecoder, latent: torch.Tensor, shape, spacing, centre_mm,
                offset=(0, 0, 0), stride: int = 1, chunk: int = DEFAULT_CHUNK, progress=None) -> torch.Tensor:
    """Occupancy probabilities at voxel centres of a grid [T eq. 3.11], in chunks.

    latent: (D,) or (1, D). shape: (X, Y, Z) voxels of the (sub)grid to decode, whose voxel
    (0, 0, 0) is voxel `offset` of the image; every `stride`-th voxel along each axis.
    Coordinates: (offset + stride * idx + 0.5) * spacing - centre_mm. Returns (x, y, z) float32
    with x = ceil(X / stride) etc. `progress(done, total)` (points), when given, after every chunk."""
    device = latent.device
    latent = latent.reshape(1, -1)
    axes = _grid_axes(shape, offset, spacing, centre_mm, device, stride)
    sizes = [len(a) for a in axes]
    total = sizes[0] * sizes[1] * sizes[2]
    feats = decoder.latent_features(latent)
    out = torch.empty(total, device=device)
    yz = sizes[1] * sizes[2]
    count = PointCount.hook(progress, total)
    for start in range(0, total, chunk):
        flat = torch.arange(start, min(start + chunk, total), device=device)
        i, rem = flat // yz, flat % yz
        coords = torch.stack([axes[0][i], axes[1][rem // sizes[2]], axes[2][rem % sizes[2]]], dim=-1)
        out[start:start + len(flat)] = torch.sigmoid(logits_in_chunks(decoder, feats, coords, chunk,
                                                                      count and count.advance))
    return out.reshape(sizes)


def _block_corners(corner_values: torch.Tensor, blocks) -> torch.Tensor:
    """(B0 + 1, B1 + 1, B2 + 1) values at block corners -> (8, B0, B1, B2): each block's 8 corners."""
    b0, b1, b2 = blocks
    return torch.stack([corner_values[i:i + b0, j:j + b1, k:k + b2].to(torch.int64)
                        for i in (0, 1) for j in (0, 1) for k in (0, 1)])


def _to_voxels(per_block: torch.Tensor, strides, shape) -> torch.Tensor:
    """(B0, B1, B2) per-block values -> (X, Y, Z) per-voxel values (blocks of strides[0] x
    strides[1] x strides[2] voxels, cropped to `shape`)."""
    out = per_block
    for axis, stride in enumerate(strides):
        out = out.repeat_interleave(stride, axis)
    return out[:shape[0], :shape[1], :shape[2]]


@torch.no_grad()
def decode_grid_coarse_to_fine(decoder: OccupancyDecoder, latent: torch.Tensor, shape, spacing, centre_mm,
                               offset=(0, 0, 0), stride=COARSE_STRIDE, margin: float = COARSE_MARGIN,
                               chunk: int = DEFAULT_CHUNK, grow: int = COARSE_GROW,
                               progress=None) -> tuple[torch.Tensor, int]:
    """The `decode_grid` result (stride 1) with far fewer MLP evaluations.

    shape: (X, Y, Z) voxels of the (sub)grid whose voxel (0, 0, 0) is voxel `offset` of the
    image; spacing (3,) mm; centre_mm (3,) the frame centre (coordinates as in `decode_grid`).
    The grid is cut into blocks of s0 x s1 x s2 voxels, (s0, s1, s2) = `block_strides(spacing,
    stride)` (about `stride` voxels of the finest axis long in mm along every axis, so that
    anisotropic voxels do not make blocks long enough to hide structures), or `stride` itself
    when it is 3 ints. The INR is evaluated at the block corners (the voxel centres at multiples
    of the strides, continuing past the grid's end). A block is filled with its corners' class
    when all 8 agree and each |logit| >= `margin`; the others, grown by `grow` blocks on every
    side (safety band), are evaluated voxel by voxel. Returns ((X, Y, Z) float32 probabilities,
    exact where evaluated and 0 / 1 where filled; number of points evaluated). `progress(done,
    total)` (points; the total grows once the blocks to refine are known), when given, after
    every chunk."""
    device = latent.device
    feats = decoder.latent_features(latent.reshape(1, -1))
    strides = block_strides(spacing, stride) if np.ndim(stride) == 0 else _per_axis(stride)
    blocks = [-(-n // s) for n, s in zip(shape, strides)]                         # ceil
    corner_axes = _grid_axes([(b + 1) * s for b, s in zip(blocks, strides)], offset, spacing, centre_mm, device,
                             strides)
    corners = torch.stack(torch.meshgrid(*corner_axes, indexing="ij"), dim=-1).reshape(-1, 3)
    count = PointCount.hook(progress, len(corners))
    logit = logits_in_chunks(decoder, feats, corners, chunk, count and count.advance).reshape([b + 1 for b in blocks])
    vote = _block_corners(logit >= 0, blocks).sum(0)                            # corners inside, 0..8
    refine = (vote > 0) & (vote < 8) | _block_corners(logit.abs() < margin, blocks).any(0)
    if grow > 0:
        refine = torch.nn.functional.max_pool3d(refine[None, None].float(), 2 * grow + 1, stride=1,
                                                padding=grow)[0, 0] > 0
    out = _to_voxels((vote == 8).float(), strides, shape).contiguous()
    idx = torch.nonzero(_to_voxels(refine, strides, shape))
    axes = _grid_axes(shape, offset, spacing, centre_mm, device)
    coords = torch.stack([axes[0][idx[:, 0]], axes[1][idx[:, 1]], axes[2][idx[:, 2]]], dim=-1)
    if count is not None:
        count.total += len(idx)
    out[idx[:, 0], idx[:, 1], idx[:, 2]] = torch.sigmoid(logits_in_chunks(decoder, feats, coords, chunk,
                                                                          count and count.advance))
    return out, len(corners) + len(idx)


def decode_in_frame(decoder: OccupancyDecoder, latent: torch.Tensor, shape, spacing, centre_mm: np.ndarray,
                    lo: np.ndarray, hi: np.ndarray, dense: bool = False,
                    chunk: int = DEFAULT_CHUNK, progress=None) -> tuple[np.ndarray, int]:
    """Decode the inclusive voxel box [lo, hi] of a grid of `shape` (X, Y, Z) voxels at `spacing`
    (3,) mm (coarse-to-fine unless `dense`) and threshold at 0.5. Returns ((X, Y, Z) bool
    reconstruction, background outside the box; number of INR evaluations). `progress(done,
    total)`: points decoded, as in `decode_grid` / `decode_grid_coarse_to_fine`."""
    box = tuple(int(v) for v in np.asarray(hi) - np.asarray(lo) + 1)
    if dense:
        prob = decode_grid(decoder, latent, box, spacing, centre_mm, offset=lo, chunk=chunk, progress=progress)
        evaluated = int(np.prod(box))
    else:
        prob, evaluated = decode_grid_coarse_to_fine(decoder, latent, box, spacing, centre_mm, offset=lo,
                                                     chunk=chunk, progress=progress)
    recon = np.zeros(tuple(shape), bool)
    recon[lo[0]:hi[0] + 1, lo[1]:hi[1] + 1, lo[2]:hi[2] + 1] = prob.cpu().numpy() >= 0.5
    return recon, evaluated
