"""What the anatomical frame changes on the real shapes of this repository: FPS Dice of each real
segmentation fed as stored (the old behaviour: the INR saw the array axes as the file stores
them, emulated by an identity direction) and in the anatomical frame (every run now).

    python results/orientation/real_shapes.py --seeds 5 --threads 1 > results/orientation/real_shapes.md
"""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from PatchSamplerLib.pipeline import reconstruct  # noqa: E402
from PatchSamplerLib.volume import BinaryVolume, read_labelmap, resample_isotropic  # noqa: E402

SHAPES = {  # name: (file, prior, spacing the prior was trained at)
    "kidney_left (TotalSegmentator example)": (ROOT / "Resources/SampleData/kidney_left_1.5mm.nii.gz", "kidney", 1.5),
    "kidney_right (TotalSegmentator example)": (ROOT / "Resources/SampleData/kidney_right_1.5mm.nii.gz", "kidney", 1.5),
    "T12 (TotalSegmentator, cut by the scan)": (ROOT.parent / "shared/data/totalsegmentator-t12/vertebrae_T12.nii.gz",
                                                "vertebra", 1.0),
}


def as_stored(volume: BinaryVolume) -> BinaryVolume:
    """The same array with an identity direction: the anatomical frame is then the stored one."""
    return BinaryVolume(volume.mask, volume.spacing, volume.origin, np.eye(3))


def mean_dice(volume: BinaryVolume, prior: str, seeds: int, n: int, k: int) -> tuple[float, float]:
    dice = [reconstruct(volume, n=n, k=k, t=100, sampler="fps", seed=s, prior=prior, device="cpu",
                        fit="adam").metrics["dice"]
            for s in range(seeds)]
    return float(np.mean(dice)), float(np.std(dice))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--configs", default="8x11,12x13")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    print("| shape | direction of the file | N | K | Dice as stored (before) | Dice, anatomical frame (now) |")
    print("|---|---|---|---|---|---|")
    for name, (path, prior, spacing) in SHAPES.items():
        volume = read_labelmap(path)
        if not np.allclose(volume.spacing, spacing):
            volume = resample_isotropic(volume, spacing)
        signs = "".join("+" if d > 0 else "-" for d in np.diag(volume.direction))
        for n, k in (tuple(int(v) for v in c.split("x")) for c in args.configs.split(",")):
            before, now = mean_dice(as_stored(volume), prior, args.seeds, n, k), mean_dice(volume, prior, args.seeds, n, k)
            print(f"| {name} | diag {signs} | {n} | {k} | {before[0]:.3f} ± {before[1]:.3f} | "
                  f"{now[0]:.3f} ± {now[1]:.3f} |", flush=True)
    print(f"\nFPS seeds 0-{args.seeds - 1}, T = 100, bundled priors; mean ± std over seeds. "
          f"Command: `python results/orientation/real_shapes.py --seeds {args.seeds} --threads {args.threads}`")


if __name__ == "__main__":
    main()
