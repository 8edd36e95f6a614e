"""How well a prior can represent a shape at all, whatever the sampler: the representation
ceiling. The latent is fitted to every voxel of the shape's frame (foreground and background),
then decoded and scored -- an upper bound for any patch reconstruction with this prior [A §2.3:
the same fit as from sparse input, with everything known].

And the mean shape of a prior: its mean training latent decoded on a grid of any spacing [A App.
C], a quick look at what it learned.
"""
from __future__ import annotations

import numpy as np
import torch

from PatchSamplerLib.method.decoding import decode_grid
from PatchSamplerLib.method.inr import ShapePrior
from PatchSamplerLib.progress import task
from PatchSamplerLib.sparse.inputs import SparseInput, from_known_mask
from PatchSamplerLib.sparse.reconstruction import SparseConfig, SparseResult, reconstruct_sparse
from PatchSamplerLib.volume import BinaryVolume

CEILING_STEPS = 300
CEILING_POINTS_PER_STEP = 16384


def every_voxel_known(volume: BinaryVolume) -> SparseInput:
    """The observation of the ceiling: every voxel of `volume`'s grid known, with its label."""
    everything = from_known_mask(volume.mask, np.ones(volume.shape, bool))
    everything.description = "every voxel (representation ceiling)"
    return everything


def representation_ceiling(volume: BinaryVolume, prior: ShapePrior | str, steps: int = CEILING_STEPS,
                           points_per_step: int | None = CEILING_POINTS_PER_STEP, seed: int = 0,
                           device: str = "auto", side: str | None = None) -> SparseResult:
    """Fit the latent to every voxel of `volume`'s grid inside the prior's frame (`steps` Adam
    steps on `points_per_step` voxels drawn per step; None: all) and score the decoded shape
    against the mask: `result.metrics` Dice, ASD, HD95 (mm), on `volume`'s grid. side: the
    shape's side for a prior trained on one side (None: detected; `method.sides`)."""
    config = SparseConfig(steps=steps, points_per_step=points_per_step, seed=seed, device=device, side=side)
    return reconstruct_sparse(volume, every_voxel_known(volume), prior, config, reference=volume.mask)


def mean_latent(prior: ShapePrior) -> tuple[torch.Tensor, str]:
    """((D,) latent, what it is): the prior's mean training latent when its metadata records one,
    else the origin of the latent space (the latent the fit starts near)."""
    recorded = prior.metadata.get("mean_latent")
    if recorded is not None:
        return torch.tensor(recorded, dtype=torch.float32), "the mean training latent"
    return torch.zeros(prior.decoder.latent_dim), ("the zero latent (this prior was trained before mean latents "
                                                   "were recorded)")


def mean_shape(prior: ShapePrior, spacing_mm: float) -> tuple[BinaryVolume, str]:
    """(the prior's mean shape on an isotropic grid of `spacing_mm` covering its frame, centred
    on the frame centre; which latent was decoded). Axes: the anatomical frame (+L, +P, +S)."""
    extent = np.asarray(prior.extent_mm, float)
    shape = tuple(int(v) for v in np.maximum(np.round(extent / spacing_mm), 1))
    spacing = (float(spacing_mm),) * 3
    latent, what = mean_latent(prior)
    device = next(prior.decoder.parameters()).device
    centre_mm = np.array(shape) * spacing_mm / 2.0          # the grid's centre, in local mm of voxel 0's corner
    with task("decode", unit="points") as decoding:
        prob = decode_grid(prior.decoder, latent.to(device), shape, spacing, centre_mm, progress=decoding.update)
    return BinaryVolume(prob.cpu().numpy() >= 0.5, spacing, -centre_mm + np.array(spacing) / 2), what
