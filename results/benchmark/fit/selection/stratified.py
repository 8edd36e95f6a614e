"""N = 12 (where the benchmark found the fast fit 0.001-0.002 below the thesis's fit on vertebrae):
the fast fit's subset drawn uniformly from all patch voxels (as run) or stratified, the same number
of voxels from every patch, against the thesis's fit; the vertebra prior on family seed 1,
shapes 0-9, FPS seed 0, T = 100, one thread.

    python results/benchmark/fit/selection/stratified.py > results/benchmark/fit/selection/stratified.log
"""
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "..", ".."))
sys.path.insert(0, os.path.dirname(__file__))
from patch_sets import draw_patches, prepare_encoder_shape  # noqa: E402
from PatchSamplerLib.data.synthetic import make_shape  # noqa: E402
from PatchSamplerLib.method.fitting import fast_points  # noqa: E402
from PatchSamplerLib.method.inr import ShapePrior, adam_update_, fit_latent, initial_latent  # noqa: E402
from PatchSamplerLib.method.losses import latent_regulariser, occupancy_loss  # noqa: E402
from PatchSamplerLib.training.scores import dice_at_stride  # noqa: E402

torch.set_num_threads(1)


def stratified_fit(decoder, coords, labels, n, steps=100, lr=0.01):
    """fit_latent with each step's subset: fast_points(P) // n voxels from each of the n patches."""
    per_patch = coords.shape[1] // n
    each = max(1, fast_points(coords.shape[1]) // n)
    g = torch.Generator().manual_seed(0)
    z = initial_latent(1).requires_grad_(True)
    m, v = torch.zeros_like(z), torch.zeros_like(z)
    decoder.requires_grad_(False)
    for step in range(steps):
        idx = (torch.arange(n)[:, None] * per_patch + torch.randint(per_patch, (n, each), generator=g)).reshape(-1)
        (grad,) = torch.autograd.grad(occupancy_loss(decoder(coords[:, idx], z), labels[:, idx])
                                      + 1e-4 * latent_regulariser(z), z)
        with torch.no_grad():
            adam_update_(z, grad, m, v, step + 1, lr)
    return z.detach()


prior = ShapePrior.load("vertebra")
for n, k in ((12, 9), (12, 13), (8, 11)):
    rows = []
    for i in range(int(sys.argv[1]) if len(sys.argv) > 1 else 10):
        shape = prepare_encoder_shape(make_shape("vertebra", 1, i))
        c, y = draw_patches(shape, n, k)
        c, y = c[None], y[None]
        fits = (fit_latent(prior.decoder, c, y, 100), fit_latent(prior.decoder, c, y, 100, points_per_step=fast_points(c.shape[1])),
                stratified_fit(prior.decoder, c, y, n))
        rows.append([dice_at_stride(prior.decoder, z, shape.volume, shape.centre_mm) for z in fits])
        print(n, k, i, np.round(rows[-1], 4), flush=True)
    a = np.array(rows)
    for col, name in ((1, "uniform"), (2, "stratified")):
        d = a[:, col] - a[:, 0]
        print(f"{n}x{k} {name}: Dice diff mean {d.mean():+.4f} sd {d.std():.4f}, lower on {int((d < 0).sum())}/{len(d)}", flush=True)
