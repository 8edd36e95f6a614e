"""`benchmark --fit`: the fast latent fit against the thesis's fit, side by side (`method.fitting`).

For one prior and its shapes (held-out synthetic shapes of its family and any real labelmaps),
per (N, K): FPS patches (seed 0), then the whole pipeline (`pipeline.reconstruct`) with the
default fit ("fast") and with "adam", T = 100, in the same process, one thread: the latent-fit
seconds, the Dice / ASD / HD95 of both, and, on the first shape, the peak memory of each fit in a
fresh process (`experiments.memory.first_call_peak_mb`; a 2-step fit: every step builds the same
graph, so the peak does not depend on T). The tables: per (N, K) the mean fit seconds of both and
their ratio, the mean paired Dice difference (fast - adam) with the thesis's paired t-test and
Wilcoxon signed-rank test.

The thesis's fit at large N K^3 takes minutes per shape on a CPU (64 x 31^3: about half an hour):
above `paired_max_voxels` patch voxels it runs on the first `large_count` shapes only, and beyond
`timed_max_voxels` it is not run to the end at all: its time is that of `timing_steps` steps
times T / timing_steps (the steps cost the same; the row says "extrapolated") and it has no Dice.
"""
from __future__ import annotations

import functools
import time
from dataclasses import dataclass

import numpy as np

from PatchSamplerLib.experiments.memory import first_call_peak_mb
from PatchSamplerLib.experiments.tables import case_log, check_unique_case_names, paired_tests
from PatchSamplerLib.method.fitting import FITS, fit_patches, fit_settings
from PatchSamplerLib.pipeline import RunConfig, reconstruct

THESIS_GRID = tuple((n, k) for n in (4, 8, 12) for k in (9, 11, 13))
LARGE_CONFIGS = ((32, 15), (64, 31))
FIELDS = ["case", "n", "k", "fit", "t", "steps_run", "dice", "asd_mm", "hd95_mm", "fit_s", "total_s", "peak_mb"]


@dataclass(frozen=True)
class FitBenchmark:
    """What `benchmark --fit` measures (module docstring)."""
    configs: tuple = THESIS_GRID + LARGE_CONFIGS
    t: int = 100
    paired_max_voxels: int = 30_000       # above: the thesis's fit on the first `large_count` shapes only
    large_count: int = 3
    timed_max_voxels: int = 200_000       # above: the thesis's fit timed over `timing_steps` steps only
    timing_steps: int = 3

    def adam_steps(self, n: int, k: int, index: int) -> int | None:
        """Steps of the thesis's fit for shape `index` at (N, K): T, `timing_steps` (timed
        only, on the first shape) or None (not run)."""
        voxels = n * k ** 3
        if voxels > self.timed_max_voxels:
            return self.timing_steps if index == 0 else None
        if voxels > self.paired_max_voxels and index >= self.large_count:
            return None
        return self.t


def fit_row(case: str, volume, prior, n: int, k: int, fit: str, steps: int, t: int) -> dict:
    """One pipeline run (FPS seed 0, CPU) with `fit` for `steps` steps -> its CSV row; a run of
    fewer steps than T reports its fit time scaled to T and no metrics."""
    config = RunConfig(n=n, k=k, t=steps, sampler="fps", seed=0, device="cpu", fit=fit, force=True)
    result = reconstruct(volume, config, prior)
    seconds = result.timings["latent_fit"] * t / max(steps, 1)
    metrics = result.metrics if steps == t else {"dice": "", "asd_mm": "", "hd95_mm": ""}
    total = result.timings["total"] - result.timings["latent_fit"] + seconds
    return {"case": case, "n": n, "k": k, "fit": fit, "t": t, "steps_run": steps, **metrics,
            "fit_s": round(seconds, 4), "total_s": round(total, 4), "peak_mb": ""}


def fit_peak_mb(volume, prior, n: int, k: int, fit: str) -> float:
    """Peak memory (MB) of a 2-step `fit` on the FPS (seed 0) patches of `volume` at (N, K), in a
    fresh process with this process's threads."""
    from PatchSamplerLib.method.baselines import fps_centres
    from PatchSamplerLib.method.frame import place_frame
    from PatchSamplerLib.method.patches import extract_patches
    from PatchSamplerLib.orientation import to_anatomical
    anatomical, _ = to_anatomical(volume)
    centre_mm, _, _ = place_frame(anatomical.mask, anatomical.spacing, prior.extent_mm, [])
    centres = fps_centres(anatomical.mask, n, seed=0, spacing=anatomical.spacing)
    _, labels, coords = extract_patches(anatomical.mask, anatomical.spacing, centres, k, centre_mm)
    call = functools.partial(fit_patches, prior.decoder, coords.reshape(1, -1, 3), labels.reshape(1, -1),
                             fit_settings(fit, n * k ** 3, 2), k=k)
    return first_call_peak_mb(call)


def run_fit_benchmark(cases: list[tuple[str, object]], prior, bench: FitBenchmark, out_dir, real=(),
                      log=print) -> str:
    """Measure every case x (N, K) x fit not yet in out_dir/cases.csv (resumable) -> the report
    (`fit_report`; `real`: the names of the real shapes among the cases)."""
    check_unique_case_names(name for name, _ in cases)
    key = lambda r: (r["case"], int(r["n"]), int(r["k"]), r["fit"])  # noqa: E731
    with case_log(out_dir, FIELDS, key) as (write, done, path):
        for index, (case, volume) in enumerate(cases):
            for n, k in bench.configs:
                for fit in FITS:
                    steps = bench.t if fit == "fast" else bench.adam_steps(n, k, index)
                    if steps is None or (case, n, k, fit) in done:
                        continue
                    start = time.time()
                    row = fit_row(case, volume, prior, n, k, fit, steps, bench.t)
                    if index == 0:
                        row["peak_mb"] = round(fit_peak_mb(volume, prior, n, k, fit), 1)
                    write(row)
                    log(f"{case} N={n} K={k} {fit} ({steps} steps): Dice {row['dice'] if row['dice'] == '' else round(row['dice'], 4)}, "
                        f"fit {row['fit_s']:.2f} s ({time.time() - start:.0f} s)")
    return fit_report(path, real)


def fit_report(csv_path, real=()) -> str:
    """Markdown: per (N, K), over the held-out shapes (every case not in `real`), the fits' mean
    seconds, speed-up, peak memory, mean Dice and the paired Dice difference (fast - adam) with
    both tests, over the cases that have both; then the real shapes' Dice one by one."""
    import csv
    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    held_out = [r for r in rows if r["case"] not in set(real)]
    lines = ["| N | K | N K^3 | fast fit s | adam fit s | speed-up | fast MB | adam MB | cases | Dice fast | Dice adam "
             "| fast - adam | t-test p | Wilcoxon p |", "|" + "---|" * 14]
    for n, k in _configs(held_out):
        lines.append(_config_line(n, k, [r for r in held_out if (int(r["n"]), int(r["k"])) == (n, k)]))
    return "\n".join(lines + _real_lines([r for r in rows if r["case"] in set(real)]))


def _configs(rows: list[dict]) -> list[tuple[int, int]]:
    return sorted({(int(r["n"]), int(r["k"])) for r in rows}, key=lambda c: (c[0] * c[1] ** 3, c))


def _real_lines(rows: list[dict]) -> list[str]:
    """The real shapes' rows: per shape and (N, K) the Dice and fit seconds of both fits."""
    if not rows:
        return []
    lines = ["", "Real shapes:", "", "| shape | N | K | Dice fast | Dice adam | fast - adam | fast fit s | adam fit s |",
             "|" + "---|" * 8]
    for case in sorted({r["case"] for r in rows}):
        for n, k in _configs(rows):
            fits = {r["fit"]: r for r in rows if r["case"] == case and (int(r["n"]), int(r["k"])) == (n, k)}
            if set(fits) != set(FITS) or fits["adam"]["dice"] == "":
                continue
            fast, adam = float(fits["fast"]["dice"]), float(fits["adam"]["dice"])
            lines.append(f"| {case} | {n} | {k} | {fast:.4f} | {adam:.4f} | {fast - adam:+.4f} "
                         f"| {float(fits['fast']['fit_s']):.2f} | {float(fits['adam']['fit_s']):.2f} |")
    return lines


def _config_line(n: int, k: int, rows: list[dict]) -> str:
    by_fit = {fit: {r["case"]: r for r in rows if r["fit"] == fit} for fit in FITS}
    seconds = {fit: np.mean([float(r["fit_s"]) for r in by_fit[fit].values()]) for fit in FITS}
    extrapolated = any(int(r["steps_run"]) < int(r["t"]) for r in by_fit["adam"].values())
    peak = {fit: next((r["peak_mb"] for r in by_fit[fit].values() if r["peak_mb"] != ""), "") for fit in FITS}
    paired = sorted(c for c in by_fit["fast"] if c in by_fit["adam"] and by_fit["adam"][c]["dice"] != "")
    fast = np.array([float(by_fit["fast"][c]["dice"]) for c in paired])
    adam = np.array([float(by_fit["adam"][c]["dice"]) for c in paired])
    p_t, p_w = paired_tests(fast, adam) if len(paired) > 1 else (float("nan"), float("nan"))
    diff = f"{np.mean(fast - adam):+.4f}" if len(paired) else "-"
    adam_s = f"{seconds['adam']:.2f}" + (" (extrapolated)" if extrapolated else "")
    return (f"| {n} | {k} | {n * k ** 3:,} | {seconds['fast']:.2f} | {adam_s} | {seconds['adam'] / seconds['fast']:.1f}x "
            f"| {peak['fast']} | {peak['adam']} | {len(paired)} | {_mean(fast)} | {_mean(adam)} | {diff} "
            f"| {p_t:.3g} | {p_w:.3g} |")


def _mean(values: np.ndarray) -> str:
    return f"{values.mean():.4f}" if len(values) else "-"
