"""The fast fit (boundary-weighted, B = 4) at N = 12: its last steps' noise. Variants: as kept
(2,048 voxels a step at most), the latent averaged over the last 20 / 40 steps (Polyak tail
averaging; no extra cost), a cap of 4,096 voxels a step. Held-out shapes of family seed 1,
FPS seed 0, T = 100, one thread, Dice difference to the thesis's fit.

    PYTHONPATH=. python results/benchmark/fit/selection/tail.py PRIOR FAMILY COUNT CELLS
"""
import sys
import numpy as np
import torch
from scipy.stats import ttest_1samp
torch.set_num_threads(1)
from PatchSamplerLib.data.synthetic import make_shape
from PatchSamplerLib.method.baselines import fps_centres
from PatchSamplerLib.method.fitting import fit_settings
from PatchSamplerLib.method.frame import place_frame
from PatchSamplerLib.method.inr import ShapePrior, _Frozen, _subset, _weighted_subsets, adam_update_, fit_latent, initial_latent
from PatchSamplerLib.method.losses import latent_regulariser, occupancy_loss
from PatchSamplerLib.method.patches import boundary_voxels, extract_patches
from PatchSamplerLib.orientation import to_anatomical
from PatchSamplerLib.training.scores import dice_at_stride

prior_name, family, count, cells = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
prior = ShapePrior.load(prior_name)


def fit(decoder, coords, labels, k, points, tails=(0, 20, 40), steps=100, lr=0.01):
    sampling = torch.where(boundary_voxels(labels, k), 4.0, 1.0)
    subset = _weighted_subsets(sampling, points, steps, 0)
    z = initial_latent(1).requires_grad_(True)
    m, v = torch.zeros_like(z), torch.zeros_like(z)
    kept = []
    with _Frozen(decoder):
        for step in range(steps):
            c, y, w = _subset(coords, labels, next(subset))
            loss = occupancy_loss(decoder(c, z), y, w) + 1e-4 * latent_regulariser(z)
            (g,) = torch.autograd.grad(loss, z)
            with torch.no_grad():
                adam_update_(z, g, m, v, step + 1, lr)
            kept.append(z.detach().clone())
    return [kept[-1] if t == 0 else torch.stack(kept[-t:]).mean(0) for t in tails]


names = ["kept", "avg20", "avg40", "cap4096"]
diffs = {}
for n, k in [tuple(int(v) for v in c.split("x")) for c in cells.split(",")]:
    for i in range(count):
        anat, _ = to_anatomical(make_shape(family, 1, i))
        centre_mm, _, _ = place_frame(anat.mask, anat.spacing, prior.extent_mm, [])
        centres = fps_centres(anat.mask, n, seed=0, spacing=anat.spacing)
        _, labels, coords = extract_patches(anat.mask, anat.spacing, centres, k, centre_mm)
        c, y = coords.reshape(1, -1, 3), labels.reshape(1, -1).float()
        p = fit_settings("fast", c.shape[1]).points
        zs = [fit_latent(prior.decoder, c, y, 100)] + fit(prior.decoder, c, y, k, p) + \
             fit(prior.decoder, c, y, k, min(c.shape[1], max(p, min(4096, c.shape[1] // 4))), tails=(0,))
        dice = [dice_at_stride(prior.decoder, z, anat, centre_mm) for z in zs]
        for name, d in zip(names, dice[1:]):
            diffs.setdefault((n, k, name), []).append(d - dice[0])
        print(n, k, i, "adam", round(dice[0], 4), {nm: round(d - dice[0], 4) for nm, d in zip(names, dice[1:])}, flush=True)
for key, d in diffs.items():
    print(*key, f"mean {np.mean(d):+.4f} min {np.min(d):+.4f} p {ttest_1samp(d, 0).pvalue:.3f}")
