"""Where FPS starts, and its Dice: for every stored FPS run (30 seeds) of a held-out set, the start
voxel its seed drew (`baselines.fps_centres`: uniform over the occupied voxels) and two of its
features -- depth (distance to the background, mm, over the shape's largest) and distance from
the centroid (mm, over the largest voxel's) -- against the run's Dice minus its shape's FPS mean
(Pearson r over all runs of a prefix size N, pooled over K).

    python results/learned_any_nk/continuation/fps_start.py kidney-anatomical results/learned_any_nk/lead1_min8/kidney-anatomical/seed3_fps30/cases.csv
    python results/learned_any_nk/continuation/fps_start.py vertebra-anatomical results/learned_any_nk/lead/vertebra-anatomical/seed3_fps30/cases.csv
"""
import csv
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
from scipy import ndimage, stats

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from PatchSamplerLib.data.synthetic import make_shape  # noqa: E402
from PatchSamplerLib.method.pointcloud import dense_cloud  # noqa: E402


def start_features(family: str, case: str, seeds) -> dict:
    """{seed: (relative depth, relative distance from the centroid)} of the FPS start of `case`."""
    data_seed, index = (int(x) for x in case.split("_")[-2:])
    vol = make_shape(family, data_seed, index)
    points = dense_cloud(vol.mask)
    depth = ndimage.distance_transform_edt(vol.mask, sampling=vol.spacing)
    from_centre = np.linalg.norm((points - points.mean(0)) * vol.spacing, axis=1)
    out = {}
    for seed in seeds:
        first = int(np.random.default_rng(seed).integers(len(points)))
        out[seed] = (depth[tuple(points[first].astype(int))] / depth.max(), from_centre[first] / from_centre.max())
    return out


if __name__ == "__main__":
    family, path = sys.argv[1], sys.argv[2]
    runs = defaultdict(list)
    for r in csv.DictReader(open(path)):
        if r["sampler"] == "fps":
            runs[(r["case"], int(r["n"]), int(r["k"]))].append((int(r["run"]), float(r["dice"])))
    seeds = sorted({run for lst in runs.values() for run, _ in lst})
    features = {case: start_features(family, case, seeds) for case in sorted({c for c, _, _ in runs})}
    print(f"{family}, {path}: FPS runs' Dice minus their shape's FPS mean against where the run started\n")
    print("| N | runs | r (depth) | p | r (distance from centroid) | p | nearest fifth to the centroid − the rest |")
    print("|---|---|---|---|---|---|---|")
    for n in sorted({n for _, n, _ in runs}):
        x, y = [], []
        for (case, nn, _), lst in runs.items():
            if nn == n:
                mean = np.mean([d for _, d in lst])
                x += [features[case][run] for run, _ in lst]
                y += [d - mean for _, d in lst]
        x, y = np.array(x), np.array(y)
        near = x[:, 1] <= np.quantile(x[:, 1], 0.2)
        r_depth, r_centre = stats.pearsonr(x[:, 0], y), stats.pearsonr(x[:, 1], y)
        print(f"| {n} | {len(y)} | {r_depth[0]:+.3f} | {r_depth[1]:.2g} | {r_centre[0]:+.3f} | {r_centre[1]:.2g} | "
              f"{y[near].mean() - y[~near].mean():+.4f} |")
