"""How much the thesis's own fit moves on the real kidneys when only the latent's start changes
(z ~ N(0, 1e-4^2), seeds 0-4; the same FPS patches, seed 0), at the cells where the fast fit was
furthest from it: is the fast fit's difference there larger than that? Kidney prior, real kidneys
resampled to 1.5 mm, T = 100, one thread; seed 0 of the fast fit for comparison.

    python results/benchmark/fit/selection/seed_spread.py > results/benchmark/fit/selection/seed_spread.log
"""
import os
import sys

import numpy as np
import torch

ROOT = os.path.join(os.path.dirname(__file__), "..", "..", "..", "..")
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(__file__))
from patch_sets import draw_patches, prepare_encoder_shape  # noqa: E402
from PatchSamplerLib.method.fitting import fast_points  # noqa: E402
from PatchSamplerLib.method.inr import ShapePrior, fit_latent  # noqa: E402
from PatchSamplerLib.orientation import to_anatomical  # noqa: E402
from PatchSamplerLib.training.scores import dice_at_stride  # noqa: E402
from PatchSamplerLib.volume import read_labelmap, resample_isotropic  # noqa: E402

torch.set_num_threads(1)
prior = ShapePrior.load("kidney")
data = os.path.join(ROOT, "..", "shared", "data", "totalsegmentator-example")
for name in ("kidney_left", "kidney_right"):
    volume = to_anatomical(resample_isotropic(read_labelmap(os.path.join(data, f"{name}.nii.gz")), 1.5))[0]
    shape = prepare_encoder_shape(volume)
    for n, k in ((12, 9), (8, 13), (12, 13)):
        c, y = draw_patches(shape, n, k)
        c, y = c[None], y[None]
        adam = [dice_at_stride(prior.decoder, fit_latent(prior.decoder, c, y, 100, seed=s), volume, shape.centre_mm)
                for s in range(5)]
        fast = [dice_at_stride(prior.decoder, fit_latent(prior.decoder, c, y, 100, seed=s,
                                                         points_per_step=fast_points(c.shape[1])), volume, shape.centre_mm)
                for s in range(5)]
        print(f"{name} {n}x{k}: thesis fit, latent seeds 0-4: {np.round(adam, 4)} (mean {np.mean(adam):.4f}, "
              f"range {np.ptp(adam):.4f}); fast fit seeds 0-4: {np.round(fast, 4)} (mean {np.mean(fast):.4f})",
              flush=True)
