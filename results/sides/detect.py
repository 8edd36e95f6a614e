"""How often `method.sides.detect_side` names the right side: held-out kidneys of the
kidney-anatomical family (their side is drawn by the generator, so it is known), each as it is
and mirrored, and the real kidneys of `Resources/SampleData` (named by TotalSegmentator),
with the time of one detection.

    python results/sides/detect.py --prior runs/prior_kidney_anatomical_left/prior.pt > results/sides/detection.md
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from PatchSamplerLib.data.anatomy.kidney import kidney_shape_with_params  # noqa: E402
from PatchSamplerLib.data.synthetic import GRIDS, scaled_grid, shape_rng  # noqa: E402
from PatchSamplerLib.method.inr import ShapePrior  # noqa: E402
from PatchSamplerLib.method.sides import detect_side  # noqa: E402
from PatchSamplerLib.orientation import to_anatomical  # noqa: E402
from PatchSamplerLib.structures import side_in_name  # noqa: E402
from PatchSamplerLib.volume import read_labelmap  # noqa: E402

OTHER = {"left": "right", "right": "left"}


def family_cases(seeds):
    """(name, anatomical volume, true side) of held-out family kidneys, as they are and mirrored."""
    shape, spacing = scaled_grid(GRIDS["kidney-anatomical"], 1.0)
    for seed, count in seeds:
        for i in range(count):
            volume, params = kidney_shape_with_params(shape_rng("kidney-anatomical", seed, i), None, spacing, shape)
            yield f"kidney-anatomical_{seed}_{i:04d}", volume, params.side
            yield f"kidney-anatomical_{seed}_{i:04d} mirrored", volume.with_mask(volume.mask[::-1].copy()), OTHER[params.side]


def real_cases():
    for path in sorted((ROOT / "Resources" / "SampleData").glob("kidney_*.nii.gz")):
        yield path.name, to_anatomical(read_labelmap(path))[0], side_in_name(path.name)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--prior", required=True)
    args = p.parse_args()
    torch.set_num_threads(1)
    prior = ShapePrior.load(args.prior)
    print(f"# Side detection with {args.prior}\n\n| case | true side | detected | loss as it is | loss mirrored | seconds |")
    print("|---|---|---|---|---|---|")
    right, total, seconds = 0, 0, []
    for name, volume, truth in [*family_cases([(1, 15), (3, 20)]), *real_cases()]:
        start = time.perf_counter()
        side, losses = detect_side(prior, volume.mask, volume.spacing)
        seconds.append(time.perf_counter() - start)
        right, total = right + (side == truth), total + 1
        print(f"| {name} | {truth} | {side}{'' if side == truth else ' (wrong)'} | {losses[0]} | {losses[1]} | "
              f"{seconds[-1]:.2f} |")
    print(f"\n{right} of {total} right; {np.median(seconds):.2f} s per detection (median, one thread).")
    print(f"\nCommand: `python results/sides/detect.py --prior {args.prior}`")


if __name__ == "__main__":
    main()
