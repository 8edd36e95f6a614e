"""Does the soft projection (t = 0.05) of FPS-anchored centres cost Dice? Central-start cloud FPS,
projected at t = 0.05 and at the smallest t (about the cloud points themselves), against FPS over
the shape's voxels (seeds 0-2), on the first 6 validation shapes of the training runs.

    PYTHONPATH=. python results/learned_any_nk/anchor/projection_check.py vertebra-anatomical

(projection_check_<family>.log: its console output, copied)."""
import sys

import numpy as np
import torch

from PatchSamplerLib.data.synthetic import make_shapes
from PatchSamplerLib.method.baselines import fps_centres
from PatchSamplerLib.method.fitting import fast_points
from PatchSamplerLib.method.inr import ShapePrior
from PatchSamplerLib.method.sampler import SamplerModel, learned_centres
from PatchSamplerLib.training.points import bbox_centre_mm
from PatchSamplerLib.training.scores import patch_dice

torch.set_num_threads(1)
fam = sys.argv[1]
vols = make_shapes(fam, 70, seed=0)[64:]
prior = ShapePrior.load(fam)
samplers = {f"central t={t}": SamplerModel.new(64, 0, 100, initial_temperature=t, anchor="central", conditioned=True)
            for t in (0.05, 1e-3)}
for m in samplers.values():
    m.sampler.eval()
for n, k in ((4, 9), (12, 13), (32, 15)):
    rows = {}
    for v in vols:
        c = bbox_centre_mm(v.mask, v.spacing)
        dice = lambda centres: patch_dice(prior.decoder, v, c, centres, k, 100, 1e-2, points=fast_points(n * k ** 3))
        rows.setdefault("FPS seeds 0-2", []).append(np.mean([dice(fps_centres(v.mask, n, seed=s)) for s in range(3)]))
        for name, m in samplers.items():
            rows.setdefault(name, []).append(dice(learned_centres(m, v.mask, n, k)[1]))
    print(fam, n, k, {name: round(float(np.mean(d)), 4) for name, d in rows.items()}, flush=True)
