"""Builds results/fit_lr/README.md from the two evaluations. Run from the repository root:
python results/fit_lr/compare.py"""
import csv

import numpy as np

CONFIGS = [(4, 9), (8, 11), (12, 13)]


def rows_for(path, sampler="fps"):
    return [r for r in csv.DictReader(open(path)) if r["sampler"] == sampler]


def values(rows, cases, n, k, metric):
    return np.array([float(r[metric]) for r in rows if r["case"] in cases and (int(r["n"]), int(r["k"])) == (n, k)])


def table_lines():
    lines = ["| family | N | K | Dice lr 1e-2 | Dice lr 1e-3 | ASD mm lr 1e-2 | ASD mm lr 1e-3 |",
             "|---|---|---|---|---|---|---|"]
    for fam in ("vertebra", "kidney"):
        a = rows_for(f"results/baselines/{fam}/cases.csv")
        b = rows_for(f"results/fit_lr/{fam}_lr1e-3/cases.csv")
        cases = {r["case"] for r in b}
        for n, k in CONFIGS:
            da, db = values(a, cases, n, k, "dice"), values(b, cases, n, k, "dice")
            sa, sb = values(a, cases, n, k, "asd_mm"), values(b, cases, n, k, "asd_mm")
            lines.append(f"| {fam} | {n} | {k} | {da.mean():.3f} ± {da.std():.3f} | {db.mean():.3f} ± {db.std():.3f} "
                         f"| {sa.mean():.3f} | {sb.mean():.3f} |")
    return lines


HEAD = """# Latent-fit learning rate: 1e-2 vs 1e-3 (the thesis leaves it open: picked by measurement)

FPS, T = 100, the first 10 held-out shapes (seed 1) of each family, one run each. lr 1e-2 rows come from
`results/baselines/<family>/cases.csv`; lr 1e-3 rows from the commands below. Mean Dice ± std over the
10 shapes. Result: 1e-2 is as good or better everywhere and stays the default (`--fit-lr`).
"""
TAIL = """
```bash
python -m PatchSamplerLib evaluate --family vertebra --count 10 --data-seed 1 --configs 4x9,8x11,12x13 --t 100 --samplers fps --fit-lr 0.001 --prior vertebra --out results/fit_lr/vertebra_lr1e-3
python -m PatchSamplerLib evaluate --family kidney --count 10 --data-seed 1 --configs 4x9,8x11,12x13 --t 100 --samplers fps --fit-lr 0.001 --prior kidney --out results/fit_lr/kidney_lr1e-3
python results/fit_lr/compare.py
```
"""

if __name__ == "__main__":
    text = HEAD + "\n" + "\n".join(table_lines()) + "\n" + TAIL
    open("results/fit_lr/README.md", "w").write(text)
    print(text)
