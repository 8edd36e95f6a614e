"""Validation scores shared by the trainers: the task a prior and a sampler are used for.

`patch_dice` fits a latent to the K^3 patches at given centres (T Adam steps [T eq. 3.10]) and
scores the decoded reconstruction [T eq. 3.11] by its Dice against the mask. To save time the
decode is every 2nd voxel per axis (`dice_at_stride`).
"""
from __future__ import annotations

import numpy as np
import torch

from PatchSamplerLib.method.decoding import decode_grid
from PatchSamplerLib.method.inr import OccupancyDecoder, fit_latent
from PatchSamplerLib.method.metrics import dice
from PatchSamplerLib.method.patches import extract_patches
from PatchSamplerLib.progress import task
from PatchSamplerLib.volume import BinaryVolume


def patch_dice(decoder: OccupancyDecoder, vol: BinaryVolume, centre_mm, centres: np.ndarray, k: int, t: int,
               fit_lr: float, seed: int = 0, points: int | None = None) -> float:
    """Dice (decoded at stride 2) of the reconstruction of `vol` from the K^3 patches at
    `centres` (N, 3) voxel index, with T latent-fit steps at Adam lr `fit_lr` (latent init
    seeded by `seed`) on all patch voxels, or `points` of them per step drawn uniformly (the fast
    fit's subset size, `method.fitting`, without its boundary weighting: the validation the
    bundled samplers were chosen with); centre_mm: (3,) the INR frame centre in local mm. The fit and the decode
    run on the decoder's device."""
    _, labels, coords = extract_patches(vol.mask, vol.spacing, centres, k, centre_mm)
    device = next(decoder.parameters()).device
    with task("latent fit", t) as fit:
        z = fit_latent(decoder, coords.reshape(1, -1, 3).to(device), labels.reshape(1, -1).to(device), t,
                       lr=fit_lr, seed=seed, callback=fit.update, points_per_step=points)
    return dice_at_stride(decoder, z, vol, centre_mm)


def dice_at_stride(decoder: OccupancyDecoder, latent: torch.Tensor, vol: BinaryVolume, centre_mm,
                   stride: int = 2) -> float:
    """Dice of the decoded `latent` (D,) or (1, D) (occupancy >= 0.5) against `vol`'s mask, both taken
    at every `stride`-th voxel per axis; centre_mm: (3,) the INR frame centre in local mm."""
    prob = decode_grid(decoder, latent, vol.shape, vol.spacing, centre_mm, stride=stride)
    return dice(prob.cpu().numpy() >= 0.5, vol.mask[::stride, ::stride, ::stride])
