"""How far apart two samplers put their patch centres (mm) on the same synthetic shapes.

    git show b6ed0e7:Resources/Models/sampler_kidney_n8_k9_t100.pt > runs/k89_start.pt
    python results/learned_vs_fps/centre_shift.py kidney runs/k89_start.pt Resources/Models/sampler_kidney_n8_k9_t100.pt --seed 3

Pairs each shape's centres in order (the anchored generator keeps the FPS order) and prints the
mean, median and max distance of the projected centres and of the generated points.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from PatchSamplerLib.data.synthetic import make_shapes  # noqa: E402
from PatchSamplerLib.method.sampler import SamplerModel, learned_centres  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("family", choices=["kidney", "vertebra"])
    ap.add_argument("first")
    ap.add_argument("second")
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--count", type=int, default=20)
    args = ap.parse_args()
    a, b = SamplerModel.load(args.first), SamplerModel.load(args.second)
    shifts = {"projected centres": [], "generated points": []}
    for vol in make_shapes(args.family, args.count, seed=args.seed):
        (ga, ca), (gb, cb) = learned_centres(a, vol.mask), learned_centres(b, vol.mask)
        for key, (p, q) in (("projected centres", (ca, cb)), ("generated points", (ga, gb))):
            shifts[key].append(np.linalg.norm((p - q) * np.asarray(vol.spacing), axis=1))
    for key, values in shifts.items():
        d = np.concatenate(values)
        print(f"{key}: mean {d.mean():.2f} mm, median {np.median(d):.2f} mm, max {d.max():.2f} mm "
              f"({len(d)} points, {args.count} shapes of seed {args.seed})")


if __name__ == "__main__":
    main()
