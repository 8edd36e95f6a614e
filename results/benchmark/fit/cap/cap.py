"""12 x 13 with a larger cap on the fast fit's voxels a step (4,096 instead of 2,048: an eighth of
the 26,364 patch voxels, 3,295, is then not cut), against the thesis's fit, through the pipeline
as `benchmark --fit` runs it (FPS seed 0, T = 100, CPU, one thread).

    PYTHONPATH=. python results/benchmark/fit/cap/cap.py PRIOR SEED COUNT [ADAM_CSV]

With ADAM_CSV (a benchmark's cases.csv of the same family seed) the thesis-fit Dice is read from
it; otherwise it is computed here. Prints per shape the Dice of the thesis's fit, the fast fit
as it is and with the cap of 4,096, then the paired t-test and Wilcoxon p of each against it.
"""
import csv
import sys

import numpy as np
import torch
from scipy.stats import ttest_rel, wilcoxon

from PatchSamplerLib.data.synthetic import make_shape
from PatchSamplerLib.method import fitting
from PatchSamplerLib.method.inr import ShapePrior
from PatchSamplerLib.pipeline import RunConfig, reconstruct

torch.set_num_threads(1)
prior_name, seed, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
adam_rows = {}
if len(sys.argv) > 4:
    adam_rows = {r["case"]: float(r["dice"]) for r in csv.DictReader(open(sys.argv[4]))
                 if r["fit"] == "adam" and r["n"] == "12" and r["k"] == "13" and r["dice"]}
prior = ShapePrior.load(prior_name)


def dice(volume, fit):
    config = RunConfig(n=12, k=13, t=100, sampler="fps", seed=0, device="cpu", fit=fit, force=True)
    return reconstruct(volume, config, prior).metrics["dice"]


rows = []
for index in range(count):
    case = f"{prior_name}_{seed}_{index:04d}"
    volume = make_shape(prior_name, seed, index)
    adam = adam_rows[case] if case in adam_rows else dice(volume, "adam")
    fitting.FAST_MAX_POINTS = 2048
    as_is = dice(volume, "fast")
    fitting.FAST_MAX_POINTS = 4096
    capped = dice(volume, "fast")
    rows.append((adam, as_is, capped))
    print(case, f"adam {adam:.4f} fast {as_is - adam:+.4f} cap4096 {capped - adam:+.4f}", flush=True)
rows = np.array(rows)
for name, col in (("fast (cap 2,048)", 1), ("cap 4,096", 2)):
    d = rows[:, col] - rows[:, 0]
    print(f"{name}: mean {d.mean():+.4f}, t-test p {ttest_rel(rows[:, col], rows[:, 0]).pvalue:.4f}, "
          f"Wilcoxon p {wilcoxon(rows[:, col], rows[:, 0]).pvalue:.4f}")
