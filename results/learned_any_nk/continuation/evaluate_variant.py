"""`evaluate` (the uniform-subset fast fit of the stored rows, `../lead1_min8/evaluate_uniform_fit.py`)
with the any-(N, K) sampler's centres beyond its learned lead continued another way, chosen by
the environment variable CONTINUATION:

- "cloud" (what the bundled samplers do): FPS over the 2,048-point Sobol cloud from the projected
  lead, each continued centre soft-projected;
- "dense": FPS over all occupied voxels (as the FPS baseline does) from the projected lead;
- "central": no learned centre: FPS over all occupied voxels from the voxel nearest the
  shape's centroid (a deterministic FPS start; kidney FPS runs whose random start lay nearer the
  centroid scored higher).

From the repository root:

    CONTINUATION=dense PYTHONPATH=. python results/learned_any_nk/continuation/evaluate_variant.py evaluate ...
"""
import os
import sys

import numpy as np

from PatchSamplerLib.method import fitting

fitting.FAST_BOUNDARY_WEIGHT = 1.0
fitting.FAST_MIN_POINTS = 512

from PatchSamplerLib import pipeline  # noqa: E402
from PatchSamplerLib.cli.main import main  # noqa: E402
from PatchSamplerLib.method.pointcloud import dense_cloud  # noqa: E402
from PatchSamplerLib.method.sampler import learned_centres  # noqa: E402


def dense_continued(model, mask, n=None, k=None, spacing=None):
    generated, projected = learned_centres(model, mask, n, k)
    lead = min(model.sampler.lead_points, len(projected))
    if len(projected) <= lead:
        return generated, projected
    points = dense_cloud(mask)
    dist = ((points[:, None, :] - projected[None, :lead]) ** 2).sum(-1).min(1)
    out = [projected[:lead]]
    for _ in range(len(projected) - lead):
        i = int(np.argmax(dist))
        out.append(points[i][None])
        dist = np.minimum(dist, ((points - points[i]) ** 2).sum(-1))
    return generated, np.concatenate(out).astype(np.float32)


def central_fps(model, mask, n=None, k=None, spacing=None):
    points = dense_cloud(mask)
    first = int(np.argmin(((points - points.mean(0)) ** 2).sum(-1)))
    dist = ((points - points[first]) ** 2).sum(-1)
    out = [first]
    for _ in range(n - 1):
        out.append(int(np.argmax(dist)))
        dist = np.minimum(dist, ((points - points[out[-1]]) ** 2).sum(-1))
    return points[out], points[out]


VARIANTS = {"cloud": learned_centres, "dense": dense_continued, "central": central_fps}

if __name__ == "__main__":
    pipeline.learned_centres = VARIANTS[os.environ.get("CONTINUATION", "cloud")]
    sys.exit(main(sys.argv[1:]))
