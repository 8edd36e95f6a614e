"""`evaluate-slices`: reconstruction from sparse slices on held-out shapes, in the layout of
[A] Tables 1-3: one table per input (sagittal / coronal / axial every s-th slice, thick slices,
three orthogonal slices), rows = methods (trilinear, cubic B-spline, Slicer's Fill between
slices, the INR with a full-resolution prior, the INR with a sparse-only prior), columns Dice /
ASD / HD95 (mean +- std over cases).

Sagittal, coronal, axial = slices along axis 0 (x), 1 (y), 2 (z) of the (i, j, k) grid, i.e. the
LPS image axes of the synthetic families. Thick slices are along `thick_axis` (default 0,
sagittal, as [A] App. E). Each case's slice start is drawn from (case index, input) so every
method sees the same slices. `cases.csv` has one row per (case, input, method); an interrupted
evaluation resumes where it stopped. Methods that cannot take an input (interpolation of
orthogonal slices) are left out of its table.
"""
from __future__ import annotations

import csv
import time
from pathlib import Path

import numpy as np
import torch

from .evaluation import case_log, mean_std
from .metrics import all_metrics
from .slice_baselines import slice_baseline
from .sparse import sparse_input
from .sparse_reconstruction import reconstruct_sparse

INPUTS = {"sagittal": 0, "coronal": 1, "axial": 2, "thick": None, "orthogonal": None}
METHODS = {"linear": "Trilinear interpolation", "bspline": "Cubic B-spline interpolation",
           "fill": "Fill between slices (Slicer)", "inr": "INR, full-resolution prior",
           "inr-sparse": "INR, sparse-only prior"}
FIELDS = ["case", "input", "method", "dice", "asd_mm", "hd95_mm", "seconds", "known_voxels"]


def make_input(mask: np.ndarray, name: str, step: int, case_index: int, thick_axis: int = 0):
    """The sparse input `name` of one case (start of the slices seeded by the case index)."""
    if name not in INPUTS:
        raise ValueError(f"unknown input {name!r}: use {', '.join(INPUTS)}")
    mode = name if name in ("orthogonal", "thick") else "slices"
    axis = thick_axis if name == "thick" else INPUTS[name]
    return sparse_input(mask, mode, step, axis if axis is not None else 0, seed=case_index)


def applicable(method: str, sparse) -> bool:
    """Interpolation needs parallel slices; the others take any input."""
    return method not in ("linear", "bspline") or sparse.axis is not None


def reconstruct_with(method: str, vol, sparse, priors: dict, fit: dict) -> np.ndarray:
    """(X, Y, Z) bool reconstruction of `vol`'s grid from `sparse` by `method`."""
    if method in ("inr", "inr-sparse"):
        return reconstruct_sparse(vol, sparse, priors[method], **fit).reconstruction
    return slice_baseline(sparse, method)


def run_slice_cases(cases, inputs, methods, priors: dict, out_dir, step: int = 8, thick_axis: int = 0,
                    fit: dict | None = None, log=print) -> Path:
    """Every (case, input, method) not yet in out_dir/cases.csv. cases: [(name, BinaryVolume)];
    priors: method -> ShapePrior for the INR methods; fit: options of `reconstruct_sparse`."""
    fit = dict(fit or {})
    with case_log(out_dir, FIELDS, lambda r: (r["case"], r["input"], r["method"])) as (write, done, path):
        for ci, (name, vol) in enumerate(cases):
            start = time.time()
            for inp in inputs:
                sparse = make_input(vol.mask, inp, step, ci, thick_axis)
                for method in methods:
                    if (name, inp, method) in done or not applicable(method, sparse):
                        continue
                    clock = time.perf_counter()
                    recon = reconstruct_with(method, vol, sparse, priors, fit)
                    seconds = time.perf_counter() - clock
                    m = all_metrics(recon, vol.mask, vol.spacing)
                    write({"case": name, "input": inp, "method": method,
                           **{k: f"{m[k]:.6f}" for k in ("dice", "asd_mm", "hd95_mm")},
                           "seconds": f"{seconds:.3f}", "known_voxels": sparse.known_count})
            log(f"case {ci + 1}/{len(cases)} {name}: {time.time() - start:.1f} s")
    return path


def slice_tables(csv_path, step: int, title: str = "") -> str:
    """Markdown: one table per input, rows = methods, Dice / ASD / HD95 mean +- std (n cases);
    the best mean per metric in bold."""
    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    text = [f"# {title}\n"] if title else []
    for inp in [i for i in INPUTS if any(r["input"] == i for r in rows)]:
        label = inp if inp == "orthogonal" else f"{inp} {step}x" if inp != "thick" else f"thick slices {step}x"
        text += [f"\n## {label}\n", "| method | n | Dice | ASD (mm) | HD95 (mm) |", "|---|---|---|---|---|"]
        per_method = {m: [r for r in rows if r["input"] == inp and r["method"] == m] for m in METHODS}
        per_method = {m: rs for m, rs in per_method.items() if rs}
        means = {k: {m: np.mean([float(r[k]) for r in rs]) for m, rs in per_method.items()}
                 for k in ("dice", "asd_mm", "hd95_mm")}
        best = {"dice": max(means["dice"], key=means["dice"].get),
                "asd_mm": min(means["asd_mm"], key=means["asd_mm"].get),
                "hd95_mm": min(means["hd95_mm"], key=means["hd95_mm"].get)}
        for m, rs in per_method.items():
            cells = []
            for k in ("dice", "asd_mm", "hd95_mm"):
                cell = mean_std([float(r[k]) for r in rs])
                cells.append(f"**{cell}**" if best[k] == m else cell)
            text.append(f"| {METHODS[m]} | {len(rs)} | " + " | ".join(cells) + " |")
    return "\n".join(text) + "\n"


def dice_bars(csv_path, path) -> None:
    """PNG: mean Dice (+- std) per input (groups) and method (bars)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    inputs = [i for i in INPUTS if any(r["input"] == i for r in rows)]
    methods = [m for m in METHODS if any(r["method"] == m for r in rows)]
    fig, ax = plt.subplots(figsize=(2 + 1.6 * len(inputs), 4))
    width = 0.8 / max(len(methods), 1)
    for j, m in enumerate(methods):
        values = [[float(r["dice"]) for r in rows if r["input"] == i and r["method"] == m] for i in inputs]
        x = np.arange(len(inputs)) + (j - (len(methods) - 1) / 2) * width
        ax.bar(x, [np.mean(v) if v else np.nan for v in values], width,
               yerr=[np.std(v) if v else 0 for v in values], label=METHODS[m], capsize=2)
    ax.set_xticks(np.arange(len(inputs)), inputs)
    ax.set(ylabel="Dice", ylim=(0, 1), title="Reconstruction from sparse slices")
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def evaluate_slices_main(args) -> int:
    from .data.synthetic import make_shape
    from .inr import ShapePrior
    inputs = [i for i in args.inputs.split(",") if i]
    methods = [m for m in args.methods.split(",") if m]
    for name in inputs:
        if name not in INPUTS:
            raise ValueError(f"unknown input {name!r}: use {', '.join(INPUTS)}")
    for name in methods:
        if name not in METHODS:
            raise ValueError(f"unknown method {name!r}: use {', '.join(METHODS)}")
    if "inr-sparse" in methods and not args.sparse_prior:
        raise ValueError("method inr-sparse needs --sparse-prior (a prior trained with train-prior --sparse-step)")
    if args.threads:
        torch.set_num_threads(args.threads)
    priors = {"inr": ShapePrior.load(args.prior)} if "inr" in methods else {}
    if "inr-sparse" in methods:
        priors["inr-sparse"] = ShapePrior.load(args.sparse_prior)
    cases = [(f"{args.family}_{args.data_seed}_{i:04d}", make_shape(args.family, args.data_seed, i, args.scale))
             for i in range(args.count)]
    fit = {"steps": args.steps, "fit_lr": args.fit_lr, "points_per_step": args.points_per_step or None,
           "device": args.device}
    path = run_slice_cases(cases, inputs, methods, priors, args.out, args.step, args.thick_axis, fit)
    table = slice_tables(path, args.step, f"Reconstruction from sparse slices: {args.count} held-out synthetic "
                                          f"{args.family} shapes (seed {args.data_seed})")
    (Path(args.out) / "table.md").write_text(table + f"\nCommand: `{args.command_line}`\n")
    dice_bars(path, Path(args.out) / "dice.png")
    print(table)
    return 0
