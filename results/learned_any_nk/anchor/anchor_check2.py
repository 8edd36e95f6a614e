"""FPS from the voxel nearest the centroid (a "central" anchor) on the same 8 validation shapes.

    PYTHONPATH=. python results/learned_any_nk/anchor/anchor_check2.py vertebra-anatomical

(anchor_check2.log: its console output, copied)."""
import sys, numpy as np, torch
torch.set_num_threads(1)
from PatchSamplerLib.data.synthetic import make_shapes
from PatchSamplerLib.method.inr import ShapePrior
from PatchSamplerLib.method.baselines import fps_centres, farthest_point_indices
from PatchSamplerLib.method.pointcloud import dense_cloud
from PatchSamplerLib.method.fitting import fast_points
from PatchSamplerLib.training.scores import patch_dice
from PatchSamplerLib.training.points import bbox_centre_mm
fam = sys.argv[1]
vols = make_shapes(fam, 72, seed=0)[64:]
prior = ShapePrior.load(fam)
def central(mask, n, spacing):
    pts = dense_cloud(mask); sc = pts * np.asarray(spacing, np.float32)
    first = int(np.argmin(((sc - sc.mean(0))**2).sum(1)))
    return pts[farthest_point_indices(pts, n, first, spacing)]
for n, k in ((2, 9), (4, 9), (8, 11)):
    a = []
    for v in vols:
        c = bbox_centre_mm(v.mask, v.spacing)
        a.append(patch_dice(prior.decoder, v, c, central(v.mask, n, v.spacing), k, 100, 1e-2, points=fast_points(n*k**3)))
    print(fam, n, k, "central", np.round(a, 3), np.mean(a), flush=True)
