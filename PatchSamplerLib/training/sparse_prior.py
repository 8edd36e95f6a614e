"""Prior training from sparse slices only [A §2.2, §3.2]: no full-resolution ground truth.

Each training volume is reduced once to every `sparse_step`-th slice along `sparse_axis` (thin,
or thick: the window mean thresholded at 0.5), with a random first slice per case that stays
fixed for the whole training (seeded by the case index). Points are drawn from the known
voxels only (a share from an in-plane band around the labelled contours).

Validation, the paper's scheme: a share (`sparse_val_share`) of the training shapes keeps only
every other of its kept slices for training; the other half is held out. The validation Dice
is the Dice, on those held-out slices, of the occupancy predicted with the shape's training
latent -- how well the prior fills the gaps between slices, measured without any full
segmentation.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage

from PatchSamplerLib.sparse.inputs import SparseInput, every_nth_slice, thick_slices
from PatchSamplerLib.sparse.reconstruction import dice_at_points, known_points
from PatchSamplerLib.training.points import TrainingShape, flat_to_frame_mm
from PatchSamplerLib.volume import BinaryVolume, bbox_centre_mm

TRAIN_DICE_POINTS = 32768       # known points per shape scored for the training Dice


@dataclass
class HeldOutSlices:
    """Held-out slices of one training shape: latent row `index`, points (P, 3) mm, labels (P,)."""
    index: int
    coords: torch.Tensor
    labels: torch.Tensor


def training_slices(volume: BinaryVolume, cfg, index: int) -> SparseInput:
    """The sparse version of training volume `index`: every cfg.sparse_step-th slice along
    cfg.sparse_axis (thick when cfg.thick), random first slice fixed by cfg.seed and `index`.
    `cfg`: a `prior.PriorConfig`."""
    make = thick_slices if cfg.thick else every_nth_slice
    return make(volume.mask, cfg.sparse_step, cfg.sparse_axis, seed=cfg.seed * 1_000_003 + index)


def in_plane_band(labels: np.ndarray, axis: int, band_mm: float, spacing) -> np.ndarray:
    """(X, Y, Z) bool: voxels within ~band_mm mm of the contours of `labels` (X, Y, Z) bool,
    measured in the slice planes only (dilation minus erosion with a structuring element flat
    along `axis`); spacing (3,) mm."""
    structure = ndimage.generate_binary_structure(3, 1)
    index = [slice(None)] * 3
    for off in (0, 2):
        index[axis] = off
        structure[tuple(index)] = False
    in_plane = [s for a, s in enumerate(spacing) if a != axis]
    iters = max(1, int(math.ceil(band_mm / min(in_plane))))
    return (ndimage.binary_dilation(labels, structure, iters)
            & ~ndimage.binary_erosion(labels, structure, iters, border_value=1))


def split_slices(sparse: SparseInput) -> tuple[SparseInput, SparseInput]:
    """(every other kept slice from the first, the rest) of a parallel-slice input."""
    axis = sparse.axis
    parts = []
    for positions in (sparse.positions[::2], sparse.positions[1::2]):
        known = np.zeros_like(sparse.known)
        index = [slice(None)] * 3
        index[axis] = positions
        known[tuple(index)] = sparse.known[tuple(index)]
        parts.append(SparseInput(known, sparse.labels & known, axis, positions,
                                 f"{len(positions)} of {sparse.description}"))
    return parts[0], parts[1]


def validation_indices(n: int, share: float, seed: int) -> list[int]:
    """The training shapes that lend half their slices to validation (at least one when n >= 2)."""
    if share <= 0 or n < 2:
        return []
    count = min(n - 1, max(1, int(round(share * n))))
    return sorted(np.random.default_rng(seed).permutation(n)[:count].tolist())


def sparse_training_set(volumes: list[BinaryVolume], cfg,
                        band_mm: float) -> tuple[list[TrainingShape], list[HeldOutSlices]]:
    """-> (one TrainingShape per volume holding only its known slices, with an in-plane band of
    `band_mm` mm; HeldOutSlices of the validation shapes). `cfg`: a `prior.PriorConfig`."""
    val_ids = set(validation_indices(len(volumes), cfg.sparse_val_share, cfg.seed))
    shapes, held = [], []
    for i, vol in enumerate(volumes):
        sparse, rest = training_slices(vol, cfg, i), None
        if i in val_ids and len(sparse.positions) >= 2:
            sparse, rest = split_slices(sparse)
        shapes.append(sparse_shape(vol, sparse, band_mm))
        if rest is not None and rest.labels.any():
            held.append(HeldOutSlices(i, *known_points(rest, vol.spacing, shapes[-1].centre_mm, np.zeros(3, int),
                                                        np.array(vol.shape) - 1)))
    return shapes, held


def sparse_shape(volume: BinaryVolume, sparse: SparseInput, band_mm: float) -> TrainingShape:
    """The sampling tables of the known slices of `volume`: their labels, the known voxels and
    the in-plane band of `band_mm` mm within them; the frame centre is the bounding-box centre
    of the known labels (the full mask is not seen)."""
    band = in_plane_band(sparse.labels, sparse.axis, band_mm, volume.spacing) & sparse.known
    return TrainingShape(torch.from_numpy(np.ascontiguousarray(sparse.labels).reshape(-1)),
                         torch.from_numpy(np.flatnonzero(band)), volume.shape, volume.spacing,
                         bbox_centre_mm(sparse.labels, volume.spacing), torch.from_numpy(np.flatnonzero(sparse.known)))


def known_slice_dice(decoder, latents: torch.Tensor, shapes: list[TrainingShape], count: int = 8,
                     seed: int = 0) -> float:
    """Mean Dice on (up to TRAIN_DICE_POINTS of) the known training voxels of the first `count`
    shapes, each with its training latent (row of `latents` (S, D))."""
    g = torch.Generator().manual_seed(seed)
    scores = []
    for i, shape in enumerate(shapes[:count]):
        flat = shape.known[torch.randperm(len(shape.known), generator=g)[:TRAIN_DICE_POINTS]]
        scores.append(dice_at_points(decoder, latents[i].detach(), flat_to_frame_mm(flat, shape),
                                     shape.mask[flat].float()))
    return float(np.mean(scores))


def held_out_dice(decoder, latents: torch.Tensor, held: list[HeldOutSlices]) -> float:
    """Mean Dice on the held-out slices, each with its shape's training latent (row of `latents` (S, D))."""
    return float(np.mean([dice_at_points(decoder, latents[h.index].detach(), h.coords, h.labels) for h in held]))
