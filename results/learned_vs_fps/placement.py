"""Where the learned sampler and FPS put their patches [T Fig. 5.10]: a figure on one held-out
vertebra, and placement statistics over the held-out shapes of the evaluation.

    python results/learned_vs_fps/placement.py --family vertebra --n 4 --k 9

Per sampler and shape: the share of patch voxels that are foreground, the depth of the centres
(distance to the nearest background voxel, mm; 0 for a centre outside the shape), and the share
of patch voxels in an enclosed hole of an axial slice (the vertebral foramen / the renal sinus:
background voxels that `binary_fill_holes` fills in that slice). FPS: seeds 0-9 per shape.
Writes placement_<family>_n<N>_k<K>.png and .md next to this file.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))

from PatchSamplerLib.checkpoints import MODELS_DIR, sampler_file_name  # noqa: E402
from PatchSamplerLib.data.synthetic import make_shape  # noqa: E402
from PatchSamplerLib.method.baselines import fps_centres  # noqa: E402
from PatchSamplerLib.method.patches import patch_coordinates, patch_labels  # noqa: E402
from PatchSamplerLib.method.sampler import SamplerModel, learned_centres  # noqa: E402
from PatchSamplerLib.reporting.figures import placement_figure  # noqa: E402
import torch  # noqa: E402


def axial_holes(mask: np.ndarray) -> np.ndarray:
    """Background voxels enclosed by the shape within their axial (z) slice."""
    filled = np.stack([ndimage.binary_fill_holes(mask[:, :, z]) for z in range(mask.shape[2])], axis=2)
    return filled & ~mask


def placement_stats(mask: np.ndarray, spacing, centres: np.ndarray, k: int) -> tuple[float, float, float]:
    """(foreground share of patch voxels, mean centre depth mm, share of patch voxels in holes)."""
    coords = patch_coordinates(torch.as_tensor(centres, dtype=torch.float32), k)
    fg = float(patch_labels(mask, coords).mean())
    holes = float(patch_labels(axial_holes(mask), coords).mean())
    depth_map = ndimage.distance_transform_edt(mask, sampling=spacing)
    idx = np.clip(np.floor(centres + 0.5).astype(int), 0, np.array(mask.shape) - 1)
    depth = float(np.mean(depth_map[idx[:, 0], idx[:, 1], idx[:, 2]]))
    return fg, depth, holes


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--family", default="vertebra")
    p.add_argument("--n", type=int, default=4)
    p.add_argument("--k", type=int, default=9)
    p.add_argument("--t", type=int, default=100)
    p.add_argument("--count", type=int, default=20)
    p.add_argument("--data-seed", type=int, default=1)
    args = p.parse_args()
    model = SamplerModel.load(MODELS_DIR / sampler_file_name(args.family, args.n, args.k, args.t))
    rows = {"learned": [], "FPS": []}
    for i in range(args.count):
        vol = make_shape(args.family, args.data_seed, i)
        learned = learned_centres(model, vol.mask)[1]
        rows["learned"].append(placement_stats(vol.mask, vol.spacing, learned, args.k))
        rows["FPS"] += [placement_stats(vol.mask, vol.spacing, fps_centres(vol.mask, args.n, seed=s), args.k)
                        for s in range(10)]
        if i == 0:
            placement_figure(vol.mask, vol.spacing, {"learned": learned, "FPS (seed 0)": fps_centres(vol.mask, args.n)},
                             args.k, f"held-out {args.family} (family seed {args.data_seed}, shape 0), "
                                     f"N = {args.n}, K = {args.k}",
                             HERE / f"placement_{args.family}_n{args.n}_k{args.k}.png")
    lines = [f"### Patch placement, {args.family}, N = {args.n}, K = {args.k} ({args.count} held-out shapes)", "",
             "| sampler | foreground share of patch voxels | centre depth mm | patch voxels in axial holes |",
             "|---|---|---|---|"]
    for name, values in rows.items():
        v = np.array(values)
        lines.append(f"| {name} | {v[:, 0].mean():.3f} | {v[:, 1].mean():.2f} | {v[:, 2].mean():.3f} |")
    lines += ["", f"Command: `python results/learned_vs_fps/placement.py --family {args.family} --n {args.n} "
                  f"--k {args.k} --count {args.count}`"]
    text = "\n".join(lines) + "\n"
    (HERE / f"placement_{args.family}_n{args.n}_k{args.k}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
