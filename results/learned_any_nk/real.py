"""The any-(N, K) sampler on every real shape of this repository (the settings of results/real/).

    python results/learned_any_nk/real.py --priors vertebra-anatomical,kidney-anatomical --threads 1 \
        --out results/learned_any_nk/real_rows.csv
    python results/learned_any_nk/real.py --table results/learned_any_nk/real_rows.csv

Each real shape (`results/real/measure.py`: SHAPES, resampled to its prior's spacing, fed as
TotalSegmentator stores it) is reconstructed from the centres of the any-(N, K) sampler trained
for its prior (`--models DIR`: DIR/<prior>/sampler_any_t100.pt; default results/learned_any_nk/models,
the first attempt's, not bundled) at results/real's (N, K) = (4, 9), (8, 9), (8, 11), (12, 13), T = 100,
with the thesis's fit (`fit="adam"`, as results/real). The table puts each beside the FPS rows
(mean ± SD over seeds) and the per-(N, K) learned rows already measured in results/real/rows_*.csv.
"""
from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "results" / "real"))
import measure  # noqa: E402
from PatchSamplerLib.method.inr import ShapePrior  # noqa: E402
from PatchSamplerLib.method.sampler import SamplerModel  # noqa: E402
from PatchSamplerLib.pipeline import RunConfig, reconstruct  # noqa: E402
from PatchSamplerLib.volume import read_labelmap, resample_isotropic  # noqa: E402

METHOD = "learned-any"
MODELS = ROOT / "results" / "learned_any_nk" / "models"


def run(priors: list[str], out: Path, models: Path = MODELS) -> None:
    with measure.row_writer(out) as write:
        for prior_name in priors:
            prior = ShapePrior.load(prior_name, device="cpu")
            model = SamplerModel.load(models / prior_name / "sampler_any_t100.pt")
            for shape, (path, organ) in measure.SHAPES.items():
                if organ != measure.organ_of(prior_name):
                    continue
                volume = resample_isotropic(read_labelmap(str(path)), prior.spacing_mm[0])
                for n, k in measure.CONFIGS:
                    t0 = time.time()
                    config = RunConfig(n=n, k=k, t=100, sampler="learned", device="cpu", fit="adam")
                    metrics = reconstruct(volume, config, prior, learned=model).metrics
                    write(shape, prior_name, METHOD, n, k, 0, metrics, t0)


def table(any_csv: str) -> str:
    """Markdown: per shape, prior, (N, K): Dice of the any sampler, per-(N, K) learned, FPS mean ± SD."""
    mine = list(csv.DictReader(open(any_csv)))
    earlier = [r for p in sorted((ROOT / "results" / "real").glob("rows_*.csv")) for r in csv.DictReader(open(p))]
    lines = ["| shape | prior | N | K | Dice any-(N, K) | Dice per-(N, K) learned | Dice FPS (mean ± SD, seeds) |",
             "|---|---|---|---|---|---|---|"]
    for r in mine:
        key = (r["shape"], r["prior"], r["n"], r["k"])
        same = [e for e in earlier if (e["shape"], e["prior"], e["n"], e["k"]) == key]
        per = [float(e["dice"]) for e in same if e["method"] == "learned"]
        fps = [float(e["dice"]) for e in same if e["method"] == "fps"]
        per_text = f"{per[0]:.3f}" if per else "—"
        fps_text = f"{np.mean(fps):.3f} ± {np.std(fps):.3f} ({len(fps)})" if fps else "—"
        lines.append(f"| {r['shape']} | {r['prior']} | {r['n']} | {r['k']} | {float(r['dice']):.3f} | {per_text} | "
                     f"{fps_text} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--priors", default="vertebra-anatomical,kidney-anatomical")
    parser.add_argument("--out", default="results/learned_any_nk/real_rows.csv")
    parser.add_argument("--models", type=Path, default=MODELS, help="folder of <prior>/sampler_any_t100.pt")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--table", help="print the Markdown table of this CSV file and stop")
    args = parser.parse_args()
    if measure.printed_table_or_set_up(args, table):
        return
    run(args.priors.split(","), Path(args.out), args.models)


if __name__ == "__main__":
    main()
