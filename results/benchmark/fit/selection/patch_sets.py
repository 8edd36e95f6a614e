"""The FPS patch set the selection scripts fit (what `training/encoder.py` of the encoder attempt
provided when they ran; the same computations): FPS centres (seed 0, mm distances) and the K^3
patches around them, coordinates in mm in the shape's INR frame."""
from dataclasses import dataclass

import numpy as np

from PatchSamplerLib.method.baselines import fps_centres
from PatchSamplerLib.method.patches import extract_patches
from PatchSamplerLib.volume import bbox_centre_mm


@dataclass
class PatchShape:
    volume: object
    centre_mm: np.ndarray


def prepare_encoder_shape(volume, band_mm=None) -> PatchShape:
    return PatchShape(volume, bbox_centre_mm(volume.mask, volume.spacing))


def draw_patches(shape: PatchShape, n: int, k: int, random: bool = False, seed: int = 0):
    vol = shape.volume
    centres = np.asarray(fps_centres(vol.mask, n, seed, vol.spacing), np.float32)
    _, labels, coords = extract_patches(vol.mask, vol.spacing, centres, k, shape.centre_mm)
    return coords.reshape(-1, 3), labels.reshape(-1).float()


def fit(decoder, coords, labels, schedule: str = "constant", **kw):
    """`fit_latent`, or with schedule "cosine" the cosine-decayed variant the selection tried
    (fit_latent had a `schedule` option then; the same Adam steps with lr * (1 + cos(pi s / T)) / 2)."""
    import math

    import torch

    from PatchSamplerLib.method.inr import _point_subsets, adam_update_, fit_latent, initial_latent
    from PatchSamplerLib.method.losses import latent_regulariser, occupancy_loss
    if schedule == "constant":
        return fit_latent(decoder, coords, labels, **kw)
    steps, lr, init = kw["steps"], kw.get("lr", 0.01), kw.get("init")
    z = (init.clone() if init is not None else initial_latent(1)).requires_grad_(True)
    m, v = torch.zeros_like(z), torch.zeros_like(z)
    subset = _point_subsets(coords.shape[1], kw.get("points_per_step"), 0)
    decoder.requires_grad_(False)
    for step in range(steps):
        idx = next(subset)
        c, y = (coords, labels) if idx is None else (coords[:, idx], labels[:, idx])
        (g,) = torch.autograd.grad(occupancy_loss(decoder(c, z), y) + 1e-4 * latent_regulariser(z), z)
        with torch.no_grad():
            adam_update_(z, g, m, v, step + 1, lr * 0.5 * (1 + math.cos(math.pi * step / steps)))
    return z.detach()
