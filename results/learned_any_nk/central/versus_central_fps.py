"""The bundled kidney sampler (lead, then the central voxel, then FPS over the voxels) against FPS
from the central voxel with no learned centre (`../continuation/variants/kidney_central_fps_seed3.csv`),
on the 20 seed-3 kidneys: paired t-test and Wilcoxon of the Dice per (N, K) cell.

    python results/learned_any_nk/central/versus_central_fps.py
"""
import csv
from collections import defaultdict
from pathlib import Path

from scipy import stats

HERE = Path(__file__).resolve().parent


def learned_dice(path: Path) -> dict:
    """{(N, K): {case: Dice}} of the learned rows of a cases.csv."""
    out = defaultdict(dict)
    with open(path) as f:
        for row in csv.DictReader(f):
            if row["sampler"] == "learned":
                out[(int(row["n"]), int(row["k"]))][row["case"]] = float(row["dice"])
    return out


if __name__ == "__main__":
    bundled = learned_dice(HERE / "kidney-anatomical" / "seed3" / "cases.csv")
    central = learned_dice(HERE.parent / "continuation" / "variants" / "kidney_central_fps_seed3.csv")
    print("| N | K | cases | Dice, bundled − central FPS | t-test p | Wilcoxon p |\n|---|---|---|---|---|---|")
    for cell in sorted(bundled):
        cases = sorted(bundled[cell])
        a, b = [bundled[cell][c] for c in cases], [central[cell][c] for c in cases]
        diff = sum(x - y for x, y in zip(a, b)) / len(a)
        print(f"| {cell[0]} | {cell[1]} | {len(a)} | {diff:+.4f} | {stats.ttest_rel(a, b).pvalue:.2g} | "
              f"{stats.wilcoxon(a, b).pvalue:.2g} |")
