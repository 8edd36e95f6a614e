"""Score a sampler file (not bundled) on the held-out shapes of this folder against the committed
FPS rows: per shape learned Dice vs the mean over FPS seeds, then paired t-test and Wilcoxon.

    python results/learned_vs_fps/heldout_sampler.py SAMPLER.pt --family kidney --count 12 --n 8 --k 9

The learned rows are not written to cases.csv (bundle the sampler and re-run `evaluate` for that).
"""
import argparse
import csv
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from PatchSamplerLib.data.synthetic import make_shape  # noqa: E402
from PatchSamplerLib.experiments.tables import paired_tests, per_case_means  # noqa: E402
from PatchSamplerLib.method.inr import ShapePrior  # noqa: E402
from PatchSamplerLib.pipeline import reconstruct  # noqa: E402


def fps_means(family: str, n: int, k: int, t: int) -> dict[str, float]:
    """{case: mean FPS Dice over its seeds} from <family>/cases.csv."""
    with open(Path(__file__).parent / family / "cases.csv") as f:
        rows = list(csv.DictReader(f))
    return {case: float(m[0]) for case, m in per_case_means(rows, n, k, t, "fps").items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("sampler")
    p.add_argument("--family", required=True, choices=["vertebra", "kidney"])
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--k", type=int, required=True)
    p.add_argument("--t", type=int, default=100)
    args = p.parse_args()
    torch.set_num_threads(1)
    prior, fps = ShapePrior.load(args.family), fps_means(args.family, args.n, args.k, args.t)
    learned, base = [], []
    for i in range(args.count):
        case = f"{args.family}_1_{i:04d}"
        torch.manual_seed(0)
        result = reconstruct(make_shape(args.family, 1, i, 1.0), n=args.n, k=args.k, t=args.t, sampler="learned",
                             fit="adam", prior=prior, sampler_model=args.sampler, device="cpu")
        learned.append(result.metrics["dice"]), base.append(fps[case])
        print(f"{case}: learned {learned[-1]:.4f}, FPS {base[-1]:.4f}", flush=True)
    t_p, w_p = paired_tests(np.array(learned), np.array(base))
    print(f"mean Dice learned {np.mean(learned):.4f}, FPS {np.mean(base):.4f}; paired t-test p {t_p:.2g}, "
          f"Wilcoxon p {w_p:.2g}")


if __name__ == "__main__":
    main()
