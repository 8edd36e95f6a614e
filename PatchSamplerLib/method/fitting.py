"""The two latent fits of a patch reconstruction: the thesis's reference and the fast default.

- "adam" [T eq. 3.10, §4.4]: T Adam steps (lr 0.01) from z ~ N(0, 1e-4^2) on all N K^3 patch
  voxels. A step costs the decoder's forward and backward on every patch voxel, so the fit grows
  with N K^3 (a 64 x 31^3 fit: minutes). `evaluate` uses it: the thesis protocol.
- "fast" (the default of `run`, the API and the Slicer module): the same T Adam steps from the
  same start, each on a random subset of the patch voxels drawn with replacement (seeded). The
  subset is 1/8 of the N K^3 patch voxels, at least `FAST_MIN_POINTS` and at most
  `FAST_MAX_POINTS` (`fast_points`), so a step costs at most the decoder on 2,048 points,
  whatever N and K. With N K^3 <= FAST_MIN_POINTS it is the thesis's fit. Boundary-weighted
  (issue #19's "points drawn per step, boundary-weighted"): a voxel on the shape's boundary
  within its patch (`patches.boundary_voxels`, about a fifth of them) is drawn
  `FAST_BOUNDARY_WEIGHT` (4) times as often as the others, and each drawn voxel's loss is
  weighted by 1 / (P q) (importance sampling, `inr.fit_latent`'s `sampling`): the subset
  still estimates the thesis's loss and gradient over all patch voxels, with less noise, since
  the gradient comes mostly from the voxels near the boundary. Why these sizes: with 512
  uniform voxels per step the Dice stayed at the thesis fit's up to about 10^4 patch voxels but
  fell behind at 12 x 13 (26,364 voxels, -0.0036; a noisier gradient makes Adam's steps
  smaller), with 2,048 by less (-0.0016; held-out shapes of family seed 1). Why 4 and a floor
  of 384 (512 before the weighting; 384 uniform voxels lost to the thesis's fit on kidneys at
  4 x 9): against uniform subsets, weights 2 and 8 and floors 256-512 on held-out shapes of
  family seed 1 of both anatomical priors (results/benchmark/fit/selection/boundary.py). Measured against the thesis's fit on
  other held-out shapes and the real ones, with what lost (a learned initial latent, L-BFGS,
  fewer steps, fewer voxels per step): results/benchmark/fit/README.md.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from PatchSamplerLib.method.inr import DEFAULT_FIT_LR, fit_latent
from PatchSamplerLib.method.patches import boundary_voxels

FITS = ("fast", "adam")
FAST_MIN_POINTS = 384
FAST_MAX_POINTS = 2048
FAST_SHARE = 8                 # the fast fit's subset: 1 / FAST_SHARE of the patch voxels, within the two bounds
FAST_BOUNDARY_WEIGHT = 4.0     # a boundary voxel is drawn this many times as often as another


@dataclass(frozen=True)
class FitSettings:
    """How one latent fit runs. kind: "fast" or "adam"; steps: Adam steps T; lr: Adam learning
    rate; points: patch voxels per step (None: all of them); boundary_weight: how many times as
    often a boundary voxel is drawn as another (1: uniformly)."""
    kind: str
    steps: int
    lr: float
    points: int | None
    boundary_weight: float = 1.0


def check_fit(kind: str) -> None:
    """ValueError naming the choices for a fit that is not one of FITS."""
    if kind not in FITS:
        raise ValueError(f"unknown latent fit {kind!r}; choose one of {', '.join(FITS)}")


def fast_points(voxels: int) -> int:
    """Patch voxels per step of the fast fit for `voxels` = N K^3 patch voxels: voxels // 8,
    clamped to [FAST_MIN_POINTS, FAST_MAX_POINTS] (all of them when there are fewer)."""
    return min(int(voxels), max(FAST_MIN_POINTS, min(FAST_MAX_POINTS, int(voxels) // FAST_SHARE)))


def fit_settings(kind: str, voxels: int, t: int = 100, fit_lr: float = DEFAULT_FIT_LR) -> FitSettings:
    """The settings of fit `kind` for `voxels` = N K^3 patch voxels, T steps at Adam learning
    rate `fit_lr`. Raises ValueError for an unknown kind."""
    check_fit(kind)
    if kind == "adam":
        return FitSettings(kind, int(t), float(fit_lr), None)
    return FitSettings(kind, int(t), float(fit_lr), fast_points(voxels), FAST_BOUNDARY_WEIGHT)


def fit_patches(decoder, coords: torch.Tensor, labels: torch.Tensor, settings: FitSettings, seed: int = 0,
                callback=None, k: int | None = None) -> torch.Tensor:
    """The latents (B, D) of patches coords (B, P, 3) mm in the INR frame, labels (B, P) 0/1,
    by `settings`; `seed`: the latent start and the subsets; `callback(step)` after every step
    (`fit_latent`). k: the patch size K when the P points are N K^3 patch voxels in
    `extract_patches`' order -- needed to find the boundary voxels that settings.boundary_weight
    favours; None: the subsets are drawn uniformly. Raises ValueError when P is not a multiple
    of K^3."""
    sampling = None
    if k is not None and settings.points is not None and settings.boundary_weight != 1:
        boundary = boundary_voxels(labels, k)
        sampling = torch.where(boundary, settings.boundary_weight, 1.0).to(torch.float32)
    return fit_latent(decoder, coords, labels, steps=settings.steps, lr=settings.lr, seed=seed, callback=callback,
                      points_per_step=settings.points, sampling=sampling)
