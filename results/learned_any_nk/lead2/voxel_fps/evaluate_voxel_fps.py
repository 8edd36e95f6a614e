"""`python -m PatchSamplerLib evaluate ...` with the lead sampler's later centres continued by
greedy FPS over the mask's voxels (mm distances, as the FPS baseline) instead of over its
2,048-point cloud with the soft projection: does the cloud FPS cost the lead sampler at N = 8-12?

    PYTHONPATH=. python results/learned_any_nk/lead2/voxel_fps/evaluate_voxel_fps.py evaluate ...

Only the run's centres change (`pipeline.learned_centres` is wrapped); the first min(N, lead)
centres are the sampler's projected ones.
"""
import sys

import numpy as np

import PatchSamplerLib.pipeline as pipeline
from PatchSamplerLib.method.pointcloud import dense_cloud

cloud_continued = pipeline.learned_centres


def voxel_continued(model, mask, n=None, k=None):
    generated, projected = cloud_continued(model, mask, n, k)
    if model.sampler.anchor != "lead" or n is None or n <= model.sampler.lead_points:
        return generated, projected
    lead = model.sampler.lead_points
    voxels = dense_cloud(mask).astype(np.float64)             # isotropic synthetic shapes: voxels = mm / spacing
    dist = ((voxels[:, None] - projected[None, :lead]) ** 2).sum(-1).min(1)
    chosen = list(projected[:lead])
    for _ in range(n - lead):
        i = int(np.argmax(dist))
        chosen.append(voxels[i])
        dist = np.minimum(dist, ((voxels - voxels[i]) ** 2).sum(1))
    return generated, np.asarray(chosen, np.float32)


pipeline.learned_centres = voxel_continued
if __name__ == "__main__":
    from PatchSamplerLib.cli.main import main
    sys.exit(main(sys.argv[1:]))
