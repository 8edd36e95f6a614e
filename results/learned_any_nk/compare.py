"""The any-(N, K) sampler against the per-(N, K) samplers, paired over the same held-out shapes.

    python results/learned_any_nk/compare.py ANY/cases.csv PER_NK/cases.csv [LABEL]

Both files are `evaluate` outputs over the same cases (same family, data seed and count, fit and
T); ANY's learned rows are the any-(N, K) sampler, PER_NK's the per-(N, K) ones. Prints a Markdown
table: per (N, K, T), the mean Dice of each, the mean paired difference any - per-(N, K) and the
paired t-test and Wilcoxon signed-rank p-values (scipy.stats, as `evaluate`'s tables).
"""
from __future__ import annotations

import csv
import sys

import numpy as np
from scipy import stats


def learned_dice(path: str) -> dict:
    """{(N, K, T): {case: Dice}} of the learned rows of an evaluate cases.csv."""
    found: dict = {}
    with open(path) as f:
        for r in csv.DictReader(f):
            if r["sampler"] == "learned":
                found.setdefault((int(r["n"]), int(r["k"]), int(r["t"])), {})[r["case"]] = float(r["dice"])
    return found


def paired_row(key, any_dice: dict, per_dice: dict) -> str:
    cases = sorted(set(any_dice) & set(per_dice))
    a, b = np.array([any_dice[c] for c in cases]), np.array([per_dice[c] for c in cases])
    diff = a - b
    t_p = stats.ttest_rel(a, b).pvalue if len(cases) > 1 and diff.std() > 0 else float("nan")
    w_p = stats.wilcoxon(a, b).pvalue if len(cases) > 1 and np.any(diff != 0) else float("nan")
    n, k, t = key
    return (f"| {n} | {k} | {t} | {len(cases)} | {a.mean():.4f} | {b.mean():.4f} | {diff.mean():+.4f} | "
            f"{t_p:.3g} | {w_p:.3g} |")


def main(any_csv: str, per_csv: str, label: str = "") -> None:
    any_rows, per_rows = learned_dice(any_csv), learned_dice(per_csv)
    print(f"### any-(N, K) vs per-(N, K) sampler{': ' + label if label else ''}\n")
    print("| N | K | T | cases | Dice any | Dice per-(N, K) | any - per | t-test p | Wilcoxon p |")
    print("|---|---|---|---|---|---|---|---|---|")
    for key in sorted(set(any_rows) & set(per_rows)):
        print(paired_row(key, any_rows[key], per_rows[key]))


if __name__ == "__main__":
    main(*sys.argv[1:])
