"""Boundary-weighted subsets for the fast fit (importance sampling), against the thesis's fit.

Per shape and (N, K): the thesis's fit (T = 100 Adam steps on every patch voxel), then the fast
fit's variants, each as a Dice difference to it: "uniform" (the fast fit as it was), "bndB"
(boundary voxels -- a 6-neighbour in the patch has the other label -- drawn B times as often,
losses weighted by 1 / (P q)), "bndB_M" (the same with at most M voxels per step). FPS patches
(seed 0), held-out shapes of family seed 1, Dice decoded at stride 2, one thread. Written for
the 2026-12-01 ninth session (before `method.fitting` had the weighting; run from /tmp, copied
here). From the repository root:

    VARIANTS=uniform,bnd4,bnd8,bnd4_384,bnd4_256,bnd8_384 PYTHONPATH=. python results/benchmark/fit/selection/boundary.py kidney-anatomical kidney-anatomical 8 4x9,12x9,12x13 ../shared/data/totalsegmentator-example/kidney_left.nii.gz ../shared/data/totalsegmentator-example/kidney_right.nii.gz > boundary_kidney-anatomical.log
    VARIANTS=uniform,bnd2,bnd4 PYTHONPATH=. python results/benchmark/fit/selection/boundary.py vertebra-anatomical vertebra-anatomical 10 8x11,12x9,12x13 ../shared/data/totalsegmentator-t12/vertebrae_T12.nii.gz > boundary_vertebra-anatomical.log
"""
import sys, time
import numpy as np
import torch
import torch.nn.functional as F
torch.set_num_threads(1)
from PatchSamplerLib.data.synthetic import make_shape
from PatchSamplerLib.method.baselines import fps_centres
from PatchSamplerLib.method.fitting import fast_points
from PatchSamplerLib.method.frame import place_frame
from PatchSamplerLib.method.inr import ShapePrior, adam_update_, fit_latent, initial_latent
from PatchSamplerLib.method.losses import latent_regulariser, SOFT_DICE_EPS
from PatchSamplerLib.method.patches import extract_patches
from PatchSamplerLib.orientation import to_anatomical
from PatchSamplerLib.training.scores import dice_at_stride
from PatchSamplerLib.volume import read_labelmap, resample_isotropic

prior_name, family, count, cells = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
real = sys.argv[5:]
prior = ShapePrior.load(prior_name)
cells = [tuple(int(v) for v in c.split("x")) for c in cells.split(",")]


def boundary(labels, k):
    """(N, K^3) 0/1 -> (N*K^3,) bool: a 6-neighbour inside the patch has the other label."""
    v = labels.reshape(-1, k, k, k)
    b = torch.zeros_like(v, dtype=torch.bool)
    for d in (1, 2, 3):
        diff = v.narrow(d, 1, k - 1) != v.narrow(d, 0, k - 1)
        b.narrow(d, 1, k - 1).logical_or_(diff)
        b.narrow(d, 0, k - 1).logical_or_(diff)
    return b.reshape(-1)


def weighted_loss(logits, y, w):
    bce = (w * F.binary_cross_entropy_with_logits(logits, y, reduction="none")).mean(-1)
    p = torch.sigmoid(logits)
    dice = (2 * (w * p * y).sum(-1) + SOFT_DICE_EPS) / ((w * p).sum(-1) + (w * y).sum(-1) + SOFT_DICE_EPS)
    return (bce + 1 - dice).mean()


def is_fit(decoder, coords, labels, bnd, points, beta, steps=100, lr=0.01, seed=0):
    total = coords.shape[1]
    q = torch.where(bnd, float(beta), 1.0)
    q = q / q.sum()
    g = torch.Generator().manual_seed(seed)
    z = initial_latent(1, seed=seed).requires_grad_(True)
    m, v = torch.zeros_like(z), torch.zeros_like(z)
    decoder.requires_grad_(False)
    idx_all = torch.multinomial(q, steps * points, replacement=True, generator=g).reshape(steps, points)
    wts = 1.0 / (total * q[idx_all])
    wts = wts / wts.mean(-1, keepdim=True)
    for step in range(steps):
        idx = idx_all[step]
        loss = weighted_loss(decoder(coords[:, idx], z), labels[:, idx], wts[step][None]) + 1e-4 * latent_regulariser(z)
        (grad,) = torch.autograd.grad(loss, z)
        with torch.no_grad():
            adam_update_(z, grad, m, v, step + 1, lr)
    return z.detach()


shapes = [(f"{family}_1_{i:04d}", make_shape(family, 1, i)) for i in range(count)]
shapes += [(path.split("/")[-1], resample_isotropic(read_labelmap(path), float(min(prior.spacing_mm)))) for path in real]
import os
VARIANTS = {"uniform": (None, 0), "bnd2": (None, 2), "bnd4": (None, 4), "bnd8": (None, 8), "bnd4_384": (384, 4),
            "bnd4_256": (256, 4), "bnd8_384": (384, 8)}
names = os.environ.get("VARIANTS", "uniform,bnd4,bnd8,bnd4_384,bnd4_256,bnd8_384").split(",")
diffs = {}
for n, k in cells:
    for case, volume in shapes:
        anat, _ = to_anatomical(volume)
        centre_mm, _, _ = place_frame(anat.mask, anat.spacing, prior.extent_mm, [])
        centres = fps_centres(anat.mask, n, seed=0, spacing=anat.spacing)
        _, labels, coords = extract_patches(anat.mask, anat.spacing, centres, k, centre_mm)
        bnd = boundary(labels, k)
        c, y = coords.reshape(1, -1, 3), labels.reshape(1, -1).float()
        p = fast_points(c.shape[1])
        t0 = time.time()
        zs = [fit_latent(prior.decoder, c, y, 100)]
        for name in names:
            pts, beta = VARIANTS[name]
            pts = p if pts is None else min(p, pts)
            zs.append(fit_latent(prior.decoder, c, y, 100, points_per_step=pts) if beta == 0
                      else is_fit(prior.decoder, c, y, bnd, pts, beta))
        dice = [dice_at_stride(prior.decoder, z, anat, centre_mm) for z in zs]
        kind = "real" if case.endswith(".gz") else "synthetic"
        for name, d in zip(names, dice[1:]):
            diffs.setdefault((n, k, kind, name), []).append(d - dice[0])
        print(n, k, case, f"bnd {bnd.float().mean():.2f}", "adam", round(dice[0], 4),
              {nm: round(d - dice[0], 4) for nm, d in zip(names, dice[1:])}, f"{time.time()-t0:.0f}s", flush=True)
from scipy.stats import ttest_1samp
for key, d in diffs.items():
    p = ttest_1samp(d, 0).pvalue if len(d) > 2 else float("nan")
    print(*key, f"mean {np.mean(d):+.4f} min {np.min(d):+.4f} p {p:.3f}")
