"""Kidney (8, 9) on the 24 validation shapes (seed 0, 64-87): FPS from the voxel farthest from the
centroid vs the cloud FPS anchor of `--anchor fps` without the projection. Prints per shape, then the means.

    python results/learned_vs_fps/anchor_parts.py
"""
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from PatchSamplerLib.data.synthetic import make_shapes  # noqa: E402
from PatchSamplerLib.method.baselines import extreme_fps_centres  # noqa: E402
from PatchSamplerLib.method.inr import ShapePrior  # noqa: E402
from PatchSamplerLib.method.pointcloud import simplified_cloud  # noqa: E402
from PatchSamplerLib.method.sampler import cloud_fps_anchor  # noqa: E402
from PatchSamplerLib.training.scores import patch_dice  # noqa: E402
from PatchSamplerLib.volume import bbox_centre_mm  # noqa: E402
torch.set_num_threads(1)
vols = make_shapes("kidney", 24, seed=0, start=64)
dec = ShapePrior.load("kidney").decoder.eval()
a, b = [], []
for v in vols:
    c = bbox_centre_mm(v.mask, v.spacing)
    a.append(patch_dice(dec, v, c, extreme_fps_centres(v.mask, 8, v.spacing), 9, 100, 1e-2))
    cloud, norm = simplified_cloud(v.mask)
    anc = norm.inverse(cloud_fps_anchor(torch.from_numpy(cloud)[None], 8)[0].numpy())
    b.append(patch_dice(dec, v, c, anc, 9, 100, 1e-2))
    print(len(a), a[-1], b[-1], flush=True)
print("voxel extreme FPS", np.mean(a), "cloud anchor no projection", np.mean(b))
