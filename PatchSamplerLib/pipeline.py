"""End to end: volume + (N, K, T, sampler, prior) -> centres, patches, reconstruction, errors,
metrics and timings. The only place that knows the order of the stages (DESIGN.md).

The INR frame: coordinates are millimetres relative to the centre of the shape's bounding
box. The prior knows shapes only inside its training box (`ShapePrior.extent_mm`) around
that centre, so only the voxels of the input grid inside that box are decoded; everything
else is background. A shape larger than the box gets a warning (its outside parts cannot be
reconstructed). Inputs of any size work: a vertebra inside a 512 x 512 x 300 CT labelmap
costs the same as the cropped vertebra.
"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch

from .baselines import SAMPLERS
from .devices import check_precision, precision_context, resolve_device
from .inr import DEFAULT_FIT_LR, ShapePrior, decode_grid, decode_grid_coarse_to_fine, fit_latent
from .metrics import all_metrics, error_labels
from .patches import check_patch_request, extract_patches
from .sampler import learned_centres, load_learned_sampler
from .volume import BinaryVolume, VolumeError, bbox_centre_mm

DEFAULT_N, DEFAULT_K, DEFAULT_T = 8, 11, 100


class Cancelled(Exception):
    """Raised inside `reconstruct` when its `should_cancel()` returns True."""


class Monitor:
    """Progress reports (stage name, fraction of the whole run in [0, 1]) and cancellation.
    `weights`: stage -> (start, end) share of the run."""
    WEIGHTS = {"sampling": (0.0, 0.05), "extraction": (0.05, 0.1), "latent_fit": (0.1, 0.8),
               "decode": (0.8, 0.95), "metrics": (0.95, 1.0)}

    def __init__(self, progress=None, should_cancel=None, weights: dict | None = None):
        self.progress, self.should_cancel = progress, should_cancel
        self.weights = weights or self.WEIGHTS

    def __call__(self, stage: str, within: float = 0.0) -> None:
        if self.should_cancel is not None and self.should_cancel():
            raise Cancelled(f"cancelled during {stage}")
        if self.progress is not None:
            lo, hi = self.weights[stage]
            self.progress(stage, lo + (hi - lo) * min(max(within, 0.0), 1.0))


@dataclass
class ReconstructionResult:
    """Everything a run produces, in the input volume's voxel grid (i, j, k order)."""
    centres: np.ndarray                 # (N, 3) float voxel index of the patch centres
    patch_coords: np.ndarray            # (N, K^3, 3) float voxel index of the patch voxels
    patch_values: np.ndarray            # (N, K^3) 0/1 labels of the patch voxels
    reconstruction: np.ndarray          # (X, Y, Z) bool
    errors: np.ndarray                  # (X, Y, Z) uint8: 0 bg, 1 intersection, 2 extra, 3 missing
    metrics: dict                       # dice, asd_mm, hd95_mm
    timings: dict                       # seconds per stage
    latent: np.ndarray                  # (D,) fitted latent
    settings: dict                      # n, k, t, sampler, seed, device, prior, frame
    warnings: list = field(default_factory=list)
    generated: np.ndarray | None = None  # (N, 3) learned sampler: generated points before projection


def frame_box(volume: BinaryVolume, centre_mm: np.ndarray, extent_mm) -> tuple[np.ndarray, np.ndarray]:
    """Inclusive voxel-index box (lo, hi) of the voxels whose centres lie in the prior's frame
    (centre_mm +- extent_mm / 2, local mm), clipped to the grid."""
    spacing = np.asarray(volume.spacing)
    half = np.asarray(extent_mm) / 2.0
    lo = np.ceil((centre_mm - half) / spacing - 0.5).astype(int)
    hi = np.floor((centre_mm + half) / spacing - 0.5).astype(int)
    return np.maximum(lo, 0), np.minimum(hi, np.array(volume.shape) - 1)


def shape_outside_frame(mask: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> int:
    """Number of foreground voxels of the (X, Y, Z) mask outside the inclusive box [lo, hi]."""
    inside = mask[lo[0]:hi[0] + 1, lo[1]:hi[1] + 1, lo[2]:hi[2] + 1].sum()
    return int(mask.sum() - inside)


def place_frame(volume: BinaryVolume, foreground: np.ndarray, prior: ShapePrior, notes: list) -> tuple:
    """The INR frame for a shape: centred on the bounding box of `foreground` (X, Y, Z), the
    prior's extent. Returns (centre_mm (3,), lo (3,), hi (3,) inclusive voxel box); a shape
    sticking out of the frame adds a warning to `notes`."""
    centre_mm = bbox_centre_mm(foreground, volume.spacing)
    lo, hi = frame_box(volume, centre_mm, prior.extent_mm)
    outside = shape_outside_frame(foreground, lo, hi)
    if outside:
        notes.append(f"the shape is larger than the prior's frame {prior.extent_mm} mm: {outside} foreground "
                     "voxels lie outside it and cannot be reconstructed")
        warnings.warn(notes[-1])
    return centre_mm, lo, hi


def decode_in_frame(decoder, latent: torch.Tensor, volume: BinaryVolume, centre_mm: np.ndarray, lo: np.ndarray,
                    hi: np.ndarray, dense: bool = False, chunk: int = 65536) -> tuple[np.ndarray, int]:
    """Decode the inclusive voxel box [lo, hi] of `volume`'s grid (coarse-to-fine unless `dense`),
    threshold at 0.5. Returns ((X, Y, Z) bool reconstruction, background outside the box;
    number of INR evaluations)."""
    box = tuple(int(v) for v in hi - lo + 1)
    if dense:
        prob = decode_grid(decoder, latent, box, volume.spacing, centre_mm, offset=lo, chunk=chunk)
        evaluated = int(np.prod(box))
    else:
        prob, evaluated = decode_grid_coarse_to_fine(decoder, latent, box, volume.spacing, centre_mm, offset=lo,
                                                     chunk=chunk)
    recon = np.zeros(volume.shape, bool)
    recon[lo[0]:hi[0] + 1, lo[1]:hi[1] + 1, lo[2]:hi[2] + 1] = prob.cpu().numpy() >= 0.5
    return recon, evaluated


def choose_centres(volume: BinaryVolume, n: int, sampler: str, seed: int) -> np.ndarray:
    """(N, 3) voxel-index patch centres from a baseline sampler ("fps" or "random")."""
    if sampler == "fps":
        return SAMPLERS["fps"](volume.mask, n, seed=seed, spacing=volume.spacing)
    if sampler == "random":
        return SAMPLERS["random"](volume.mask, n, seed=seed)
    raise ValueError(f"unknown sampler {sampler!r}; choose fps, random or learned")


def sample_centres(volume: BinaryVolume, n: int, k: int, t: int, sampler: str, seed: int, prior: ShapePrior,
                   sampler_model=None) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    """-> (centres (N, 3), generated points (N, 3) or None, notes) voxel index. "learned" uses
    `sampler_model` (a SamplerModel or file) or the bundled sampler of (prior, N, K)."""
    if sampler != "learned":
        return choose_centres(volume, n, sampler, seed), None, []
    model, notes = load_learned_sampler(prior.metadata.get("path"), n, k, t, sampler_model)
    generated, projected = learned_centres(model, volume.mask)
    return projected, generated, notes


def validate_request(volume: BinaryVolume, n: int, k: int, t: int) -> None:
    check_patch_request(n, k)
    if int(t) != t or t < 0:
        raise ValueError(f"the number of latent-fit steps T must be an integer >= 0, got {t}")
    if volume.voxel_count == 0:
        raise VolumeError("the mask is empty: nothing to reconstruct")


def reconstruct(volume: BinaryVolume, n: int = DEFAULT_N, k: int = DEFAULT_K, t: int = DEFAULT_T,
                sampler: str = "fps", prior: ShapePrior | str = "vertebra", seed: int = 0,
                device: str = "auto", fit_lr: float = DEFAULT_FIT_LR, centres: np.ndarray | None = None,
                chunk: int = 65536, progress=None, should_cancel=None, sampler_model=None,
                generated: np.ndarray | None = None, dense_decode: bool = False,
                precision: str = "fp32") -> ReconstructionResult:
    """Reconstruct `volume` from N patches of K^3 voxels with T latent-fit steps.

    `prior` is a ShapePrior or a bundled name / file; sampler "fps", "random" or "learned" (with
    `sampler_model`, a SamplerModel or file, or else the bundled sampler for (prior, N, K)).
    `centres` (N, 3) voxel index overrides the sampler (then `sampler` only names where they
    came from, None records "given"; `generated` are a learned sampler's points before
    projection, recorded). The decode is coarse-to-fine (`inr.decode_grid_coarse_to_fine`)
    unless `dense_decode` (every voxel, the reference). `precision`: fp32, or on CUDA tf32 / bf16
    for the fit and the decode (`devices.precision_context`). `progress(stage, fraction)` is called as
    the run advances; when `should_cancel()` returns True the run stops with `Cancelled`. Raises ValueError subclasses
    with user-facing messages on bad input."""
    validate_request(volume, n, k, t)
    monitor = Monitor(progress, should_cancel)
    monitor("sampling")
    dev = resolve_device(device)
    check_precision(dev, precision)
    if not isinstance(prior, ShapePrior):
        prior = ShapePrior.load(prior)
    decoder = prior.decoder.to(dev)
    timings, notes = {}, []

    clock = time.perf_counter()
    centre_mm, lo, hi = place_frame(volume, volume.mask, prior, notes)
    if centres is None:
        centres, generated, sampler_notes = sample_centres(volume, n, k, t, sampler, seed, prior, sampler_model)
        notes += sampler_notes
    centres = np.asarray(centres, np.float32).reshape(-1, 3)
    timings["sampling"] = time.perf_counter() - clock

    monitor("extraction")
    clock = time.perf_counter()
    coords_idx, values, coords_mm = extract_patches(volume.mask, volume.spacing, centres, k, centre_mm)
    timings["extraction"] = time.perf_counter() - clock

    monitor("latent_fit")
    clock = time.perf_counter()
    with precision_context(dev, precision):
        latent = fit_latent(decoder, coords_mm.reshape(1, -1, 3).to(dev), values.reshape(1, -1).to(dev),
                            steps=t, lr=fit_lr, seed=seed,
                            callback=lambda step: monitor("latent_fit", step / t) if step % 10 == 0 else None)
    sync_device(dev)
    timings["latent_fit"] = time.perf_counter() - clock

    monitor("decode")
    clock = time.perf_counter()
    with precision_context(dev, precision):
        recon, evaluated = decode_in_frame(decoder, latent, volume, centre_mm, lo, hi, dense_decode, chunk)
    timings["decode"] = time.perf_counter() - clock

    monitor("metrics")
    clock = time.perf_counter()
    metrics = all_metrics(recon, volume.mask, volume.spacing)
    errors = error_labels(recon, volume.mask)
    timings["metrics"] = time.perf_counter() - clock
    timings["total"] = sum(timings.values())
    monitor("metrics", 1.0)

    settings = {"n": n, "k": k, "t": t, "sampler": sampler or "given", "seed": seed,
                "device": str(dev), "precision": precision, "fit_lr": fit_lr,
                "prior": prior.metadata.get("path", "in memory"),
                "frame_centre_mm": centre_mm.tolist(), "frame_extent_mm": list(prior.extent_mm),
                "decoded_box_index": [lo.tolist(), hi.tolist()],
                "decode": "dense" if dense_decode else "coarse-to-fine", "decoder_points": evaluated}
    return ReconstructionResult(centres, coords_idx.numpy(), values.numpy(), recon, errors, metrics, timings,
                                latent[0].cpu().numpy(), settings, notes, generated)


def sync_device(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
