"""Score sampler files on the same validation shapes (synthetic family seed 0, the shapes after the
64 training ones), to choose between samplers without touching the held-out shapes:

    python results/learned_vs_fps/validation_score.py vertebra 8 9 A.pt B.pt [...] [--count 24]

Per file: mean Dice over the 12 (--count) validation shapes (indices 64-75; 64-87 with 24) of the reconstruction from the
sampler's projected centres, N patches of K^3 voxels, T = 100 (`training.scores.patch_dice`, the
score the training's validation uses).
"""
import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from PatchSamplerLib.data.synthetic import make_shapes  # noqa: E402
from PatchSamplerLib.method.inr import ShapePrior  # noqa: E402
from PatchSamplerLib.method.sampler import SamplerModel, learned_centres  # noqa: E402
from PatchSamplerLib.training.scores import patch_dice  # noqa: E402
from PatchSamplerLib.volume import bbox_centre_mm  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("family")
    p.add_argument("n", type=int)
    p.add_argument("k", type=int)
    p.add_argument("files", nargs="+")
    p.add_argument("--count", type=int, default=12)
    args = p.parse_args()
    family, n, k, files = args.family, args.n, args.k, args.files
    torch.set_num_threads(1)
    vols = make_shapes(family, args.count, seed=0, start=64)
    decoder = ShapePrior.load(family).decoder.eval()
    for path in files:
        model = SamplerModel.load(path)
        if model.n != n:
            raise SystemExit(f"{path} places N={model.n} patches, not {n}")
        dice = [patch_dice(decoder, v, bbox_centre_mm(v.mask, v.spacing), learned_centres(model, v.mask)[1], k, 100,
                           1e-2) for v in vols]
        print(f"{path}: mean validation Dice {np.mean(dice):.4f}")


if __name__ == "__main__":
    main()
