"""The farthest-point FPS anchor vs FPS from a random voxel (4 seeds), on the 8 validation shapes
(family seed 0, shapes 64-71) of the any-(N, K) training, fast fit, T = 100, Dice at stride 2.

    PYTHONPATH=. python results/learned_any_nk/anchor/anchor_check.py vertebra-anatomical > anchor_check.log

(run with the two trainings on the same 2 cores; timing not recorded)."""
import sys, numpy as np, torch
torch.set_num_threads(1)
from PatchSamplerLib.data.synthetic import make_shapes
from PatchSamplerLib.method.inr import ShapePrior
from PatchSamplerLib.method.baselines import fps_centres
from PatchSamplerLib.method.sampler import cloud_fps_anchor
from PatchSamplerLib.method.pointcloud import simplified_cloud
from PatchSamplerLib.method.fitting import fast_points
from PatchSamplerLib.training.scores import patch_dice
from PatchSamplerLib.training.points import bbox_centre_mm
fam = sys.argv[1]
vols = make_shapes(fam, 72, seed=0)[64:]
prior = ShapePrior.load(fam)
for n, k in ((4, 9), (12, 13)):
    a, f = [], []
    for v in vols:
        c = bbox_centre_mm(v.mask, v.spacing)
        cloud, norm = simplified_cloud(v.mask)
        anc = norm.inverse(cloud_fps_anchor(torch.from_numpy(cloud)[None], n)[0].numpy())
        a.append(patch_dice(prior.decoder, v, c, anc, k, 100, 1e-2, points=fast_points(n*k**3)))
        f.append(np.mean([patch_dice(prior.decoder, v, c, fps_centres(v.mask, n, seed=s), k, 100, 1e-2, points=fast_points(n*k**3)) for s in range(4)]))
    print(fam, n, k, "anchor", np.round(a, 3), np.mean(a), "fps4", np.round(f, 3), np.mean(f), flush=True)
