"""4 x 9 (2,916 patch voxels): the fast fit's smallest subsets, 364 (= 2,916 // 8) and 512 voxels
per step, against the thesis's fit; the vertebra and kidney priors on family seed 1, shapes 0-9,
FPS seed 0, T = 100, one thread.

    python results/benchmark/fit/selection/min_points.py > results/benchmark/fit/selection/min_points.log
"""
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "..", ".."))
sys.path.insert(0, os.path.dirname(__file__))
from patch_sets import draw_patches, prepare_encoder_shape  # noqa: E402
from PatchSamplerLib.data.synthetic import make_shape  # noqa: E402
from PatchSamplerLib.method.inr import ShapePrior, fit_latent  # noqa: E402
from PatchSamplerLib.training.scores import dice_at_stride  # noqa: E402

torch.set_num_threads(1)
for family in ("vertebra", "kidney"):
    prior = ShapePrior.load(family)
    rows = []
    for i in range(10):
        shape = prepare_encoder_shape(make_shape(family, 1, i))
        c, y = draw_patches(shape, 4, 9)
        row = []
        for points in (None, 364, 512):
            start = time.perf_counter()
            z = fit_latent(prior.decoder, c[None], y[None], 100, points_per_step=points)
            row += [dice_at_stride(prior.decoder, z, shape.volume, shape.centre_mm), time.perf_counter() - start]
        rows.append(row)
        print(family, i, np.round(row, 4), flush=True)
    a = np.array(rows)
    for col, name in ((2, "364"), (4, "512")):
        d = a[:, col] - a[:, 0]
        print(f"{family} 4x9 {name} per step: Dice diff mean {d.mean():+.4f} sd {d.std():.4f} min {d.min():+.4f}; "
              f"seconds {a[:, col + 1].mean():.3f} vs {a[:, 1].mean():.3f}")
