"""The sparse-slice fit (`reconstruct-slices`, the Slicer module's *Reconstruct from slices*) on
fewer, boundary-weighted known voxels per step, against its default (8,192 uniform), paired on the
same shapes: every 8th sagittal slice (axis 0 of the anatomical LPS frame, first slice drawn by
the seed), 300 steps, T = the default fit otherwise. Held-out shapes of each anatomical prior's
own family (seed 1; the priors saw seed 0) and the real shapes of ../shared/data/ resampled to the
prior's spacing (as results/real/measure.py). One row per (shape, variant) to a CSV; --table
prints the paired comparison. From the repository root:

    PYTHONPATH=. python results/sparse_slices/fast_fit/compare.py --prior vertebra-anatomical --count 10 --out results/sparse_slices/fast_fit/vertebra.csv
    PYTHONPATH=. python results/sparse_slices/fast_fit/compare.py --table results/sparse_slices/fast_fit/*.csv
"""
from __future__ import annotations

import argparse
import csv
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))
from PatchSamplerLib.data.synthetic import make_shape  # noqa: E402
from PatchSamplerLib.method.inr import ShapePrior  # noqa: E402
from PatchSamplerLib.orientation import to_anatomical  # noqa: E402
from PatchSamplerLib.sparse.inputs import every_nth_slice  # noqa: E402
from PatchSamplerLib.sparse.reconstruction import SparseConfig, reconstruct_sparse  # noqa: E402
from PatchSamplerLib.volume import read_labelmap, resample_isotropic  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
REAL = {"kidney": ["totalsegmentator-example/kidney_left.nii.gz", "totalsegmentator-example/kidney_right.nii.gz"],
        "vertebra": ["totalsegmentator-t12/vertebrae_T12.nii.gz"]}
VARIANTS = {"8192 uniform": (8192, 1.0), "2048 uniform": (2048, 1.0), "2048 boundary x4": (2048, 4.0),
            "1024 boundary x4": (1024, 4.0)}
FIELDS = ("prior", "shape", "variant", "dice", "asd_mm", "hd95_mm", "fit_s")


def shapes(prior_name: str, prior: ShapePrior, count: int):
    organ = "kidney" if prior_name.startswith("kidney") else "vertebra"
    for i in range(count):
        yield f"{prior_name}_1_{i:04d}", make_shape(prior_name, 1, i, 1.0)
    for rel in REAL[organ]:
        yield Path(rel).name, resample_isotropic(read_labelmap(str(DATA / rel)), prior.spacing_mm[0])


def run(prior_name: str, count: int, out: Path, variants: list[str]) -> None:
    done = set()
    if out.exists():
        done = {(r["shape"], r["variant"]) for r in csv.DictReader(out.open())}
    prior = ShapePrior.load(prior_name)
    new = not out.exists()
    with out.open("a", newline="") as f:
        writer = csv.DictWriter(f, FIELDS)
        if new:
            writer.writeheader()
        for name, volume in shapes(prior_name, prior, count):
            anatomical, _ = to_anatomical(volume)
            sparse = every_nth_slice(anatomical.mask, 8, axis=0, seed=0)
            for variant in variants:
                if (name, variant) in done:
                    continue
                points, weight = VARIANTS[variant]
                config = SparseConfig(points_per_step=points, boundary_weight=weight, device="cpu")
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    result = reconstruct_sparse(anatomical, sparse, prior, config, reference=anatomical.mask)
                m = result.metrics
                writer.writerow(dict(prior=prior_name, shape=name, variant=variant, dice=round(m["dice"], 5),
                                     asd_mm=round(m["asd_mm"], 4), hd95_mm=round(m["hd95_mm"], 4),
                                     fit_s=round(result.timings["latent_fit"], 2)))
                f.flush()
                print(name, variant, round(m["dice"], 4), round(result.timings["latent_fit"], 1), flush=True)


def table(paths: list[str]) -> str:
    from scipy.stats import ttest_rel, wilcoxon
    rows = [r for p in paths for r in csv.DictReader(open(p))]
    lines = ["| prior | shapes | variant | Dice (mean) | vs 8192 uniform | t-test p | Wilcoxon p | fit s (mean) | speed-up |",
             "|---|---|---|---|---|---|---|---|---|"]
    for prior in sorted({r["prior"] for r in rows}):
        for kind, pick in (("held-out", lambda s: "_1_" in s), ("real", lambda s: "_1_" not in s)):
            mine = [r for r in rows if r["prior"] == prior and pick(r["shape"])]
            base = {r["shape"]: r for r in mine if r["variant"] == "8192 uniform"}
            for variant in VARIANTS:
                pairs = [(r, base[r["shape"]]) for r in mine if r["variant"] == variant and r["shape"] in base]
                if not pairs:
                    continue
                d = np.array([float(a["dice"]) - float(b["dice"]) for a, b in pairs])
                fit = np.mean([float(a["fit_s"]) for a, _ in pairs])
                base_fit = np.mean([float(b["fit_s"]) for _, b in pairs])
                tests = ("—", "—")
                if variant != "8192 uniform" and len(d) > 2 and np.any(d):
                    tests = (f"{ttest_rel([float(a['dice']) for a, _ in pairs], [float(b['dice']) for _, b in pairs]).pvalue:.2g}",
                             f"{wilcoxon(d).pvalue:.2g}")
                lines.append(f"| {prior} | {kind} ({len(pairs)}) | {variant} | "
                             f"{np.mean([float(a['dice']) for a, _ in pairs]):.4f} | {d.mean():+.4f} | {tests[0]} | "
                             f"{tests[1]} | {fit:.1f} | {base_fit / fit:.1f}x |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prior", default="vertebra-anatomical")
    parser.add_argument("--count", type=int, default=10)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="results/sparse_slices/fast_fit/rows.csv")
    parser.add_argument("--table", nargs="*")
    args = parser.parse_args()
    if args.table:
        print(table(args.table))
        return
    torch.set_num_threads(args.threads)
    t0 = time.time()
    run(args.prior, args.count, Path(args.out), args.variants.split(","))
    print(f"{time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
