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

from PatchSamplerLib.experiments.tables import case_log, check_unique_case_names, mean_std
from PatchSamplerLib.method.inr import ShapePrior
from PatchSamplerLib.method.metrics import all_metrics
from PatchSamplerLib.progress import task
from PatchSamplerLib.sparse.inputs import sparse_input
from PatchSamplerLib.sparse.reconstruction import SparseConfig, reconstruct_sparse
from PatchSamplerLib.sparse.slice_baselines import slice_baseline

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


def reconstruct_with(method: str, vol, sparse, priors: dict, fit: SparseConfig) -> np.ndarray:
    """(X, Y, Z) bool reconstruction of `vol`'s grid from `sparse` by `method`."""
    if method in ("inr", "inr-sparse"):
        return reconstruct_sparse(vol, sparse, priors[method], fit).reconstruction
    return slice_baseline(sparse, method)


def run_slice_cases(cases, inputs, methods, priors: dict, out_dir, step: int = 8, thick_axis: int = 0,
                    fit: SparseConfig | None = None, log=print) -> Path:
    """Every (case, input, method) not yet in out_dir/cases.csv. cases: [(name, BinaryVolume)];
    priors: method -> ShapePrior for the INR methods; fit: the INR methods' settings. Progress:
    the task "slice evaluation" over the (case, input) pairs still to do."""
    fit = fit or SparseConfig()
    check_unique_case_names(name for name, _ in cases)
    with case_log(out_dir, FIELDS, lambda r: (r["case"], r["input"], r["method"])) as (write, done, path):
        pending = sum(any((name, inp, m) not in done for m in methods) for name, _ in cases for inp in inputs)
        with task("slice evaluation", pending, "inputs") as progress:
            for ci, (name, vol) in enumerate(cases):
                start = time.time()
                for inp in inputs:
                    if all((name, inp, m) in done for m in methods):
                        continue
                    run_slice_input(name, vol, ci, inp, methods, priors, done, write, step, thick_axis, fit)
                    progress.advance()
                log(f"case {ci + 1}/{len(cases)} {name}: {time.time() - start:.1f} s")
    return path


def run_slice_input(name: str, vol, case_index: int, inp: str, methods, priors: dict, done: set, write, step: int,
                    thick_axis: int, fit: SparseConfig) -> None:
    """Every method not yet `done` on the sparse input `inp` of case `name` (`vol`), one
    cases.csv row each through `write`."""
    sparse = make_input(vol.mask, inp, step, case_index, thick_axis)
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


def check_names(inputs, methods) -> None:
    """ValueError naming the choices for an unknown input or method."""
    for name in inputs:
        if name not in INPUTS:
            raise ValueError(f"unknown input {name!r}: use {', '.join(INPUTS)}")
    for name in methods:
        if name not in METHODS:
            raise ValueError(f"unknown method {name!r}: use {', '.join(METHODS)}")


def slice_priors(methods, prior, sparse_prior=None, device="cpu") -> dict:
    """{method: ShapePrior on `device`} of the INR methods among `methods` (names or files);
    ValueError when inr-sparse has no sparse prior."""
    if "inr-sparse" in methods and not sparse_prior:
        raise ValueError("method inr-sparse needs --sparse-prior (a prior trained with train-prior --sparse-step)")
    priors = {"inr": ShapePrior.load(prior, device=device)} if "inr" in methods else {}
    if "inr-sparse" in methods:
        priors["inr-sparse"] = ShapePrior.load(sparse_prior, device=device)
    return priors


def evaluate_slices(cases, inputs, methods, priors: dict, out_dir, step: int, thick_axis: int,
                    fit: SparseConfig, title: str, command: str = "") -> str:
    """Every (case, input, method) into out_dir/cases.csv (resumable), then table.md and
    dice.png; returns the tables' Markdown. cases: [(name, BinaryVolume)]."""
    check_names(inputs, methods)
    path = run_slice_cases(cases, inputs, methods, priors, out_dir, step, thick_axis, fit)
    table = slice_tables(path, step, title)
    (Path(out_dir) / "table.md").write_text(table + f"\nCommand: `{command}`\n")
    dice_bars(path, Path(out_dir) / "dice.png")
    return table
