"""Evaluation: FPS, random and the learned sampler over an N x K x T grid, on held-out shapes of
a synthetic family or a folder of labelmaps [T ch. 5].

Writes `cases.csv` (one row per shape, configuration, sampler and run; appended as it goes, so
an interrupted evaluation resumes where it stopped) and `table.md` (rows N, K, T; Dice / ASD /
HD95 mean +- std per sampler, the best of each metric in bold, patch voxels N * K^3; with the learned
sampler and FPS both present, paired t-test and Wilcoxon signed-rank p-values learned vs FPS
per metric, over the cases, each case's FPS runs averaged first). The learned sampler is
deterministic: it is run once per case whatever `runs` is; an (N, K) with no bundled sampler
is skipped for it (with a note). Figures (`evaluation_figures`): mean Dice over (N, K) per T
(Figs 5.2-5.4), error slices and the patches of every sampler on one case (Figs 5.5, 5.10).

Cross-validation (`experiments.crossval`): each shape is scored in its fold's test split with
that fold's own learned samplers (trained when missing). Tables and tests: `experiments.tables`.
The command line (`cli.evaluate`) adds the presets: the thesis protocol and a reduced one.
"""
from __future__ import annotations

import csv
import time
from dataclasses import dataclass
from pathlib import Path

from PatchSamplerLib.checkpoints import CheckpointError, resolve_sampler_path
from PatchSamplerLib.experiments.tables import case_log, mean_dice_grid
from PatchSamplerLib.method.inr import DEFAULT_FIT_LR, ShapePrior
from PatchSamplerLib.method.samplers import sampler_label
from PatchSamplerLib.pipeline import RunConfig, reconstruct
from PatchSamplerLib.reporting.figures import dice_surface_figure, overview_figure, placement_figure
from PatchSamplerLib.volume import BinaryVolume

FIELDS = ["case", "n", "k", "t", "sampler", "run", "dice", "asd_mm", "hd95_mm", "fit_s", "decode_s"]


@dataclass(frozen=True)
class EvaluationGrid:
    """The grid an evaluation runs [T §5]: `configs` ((N, K), ...), `ts` (T, ...), `samplers`
    (names of `method.samplers.SAMPLERS`), `runs` seeds per case for FPS and RS (the learned
    sampler is deterministic: one run), and the fit settings of every run."""
    configs: tuple
    ts: tuple
    samplers: tuple
    runs: int = 1
    fit_lr: float = DEFAULT_FIT_LR
    device: str = "auto"

    def run_config(self, n: int, k: int, t: int, sampler: str, seed: int) -> RunConfig:
        """The pipeline configuration of one case of the grid."""
        return RunConfig(n=n, k=k, t=t, sampler=sampler, seed=seed, fit_lr=self.fit_lr, device=self.device)


def _run_key(r: dict) -> tuple:
    return r["case"], int(r["n"]), int(r["k"]), int(r["t"]), r["sampler"], int(r["run"])


def learned_available(prior: ShapePrior, n: int, k: int, t: int) -> bool:
    """Whether a bundled learned sampler exists for (prior, N, K) (any T; `resolve_sampler_path`)."""
    try:
        resolve_sampler_path(prior.metadata.get("path"), n, k, t)
    except CheckpointError:
        return False
    return True


def run_plan(configs, ts, samplers, prior: ShapePrior, log=print,
             learned_models: dict | None = None) -> list[tuple[int, int, int, str]]:
    """(N, K, T, sampler) to evaluate; the learned sampler only where one is bundled (or, with
    `learned_models` {(N, K, T): SamplerModel}, where that dict has one; missing ones are noted
    by the caller)."""
    if learned_models is not None:
        return [(n, k, t, s) for t in ts for n, k in configs for s in samplers
                if s != "learned" or (n, k, t) in learned_models]
    wanted = configs if "learned" in samplers else []
    missing = sorted({(n, k) for n, k in wanted if not learned_available(prior, n, k, ts[0])})
    for n, k in missing:
        log(f"no bundled learned sampler for N={n}, K={k}: the learned sampler is skipped there "
            f"(train one with train-sampler)")
    return [(n, k, t, s) for t in ts for n, k in configs for s in samplers if s != "learned" or (n, k) not in missing]


def case_row(name: str, n: int, k: int, t: int, sampler: str, run: int, res) -> dict:
    """One cases.csv row of a ReconstructionResult."""
    return {"case": name, "n": n, "k": k, "t": t, "sampler": sampler, "run": run,
            **{m: f"{res.metrics[m]:.6f}" for m in ("dice", "asd_mm", "hd95_mm")},
            "fit_s": f"{res.timings['latent_fit']:.3f}", "decode_s": f"{res.timings['decode']:.3f}"}


def run_cases(cases: list[tuple[str, BinaryVolume]], grid: EvaluationGrid, prior: ShapePrior, out_dir,
              log=print, learned_models: dict | None = None) -> Path:
    """Evaluate every (case, config, T, sampler, run) of `grid` not yet in out_dir/cases.csv;
    returns the CSV path. cases: [(name, volume)]. The learned sampler: the bundled one per
    (N, K), or `learned_models[(N, K, T)]` when that dict is given (cross-validation folds)."""
    plan = run_plan(grid.configs, grid.ts, grid.samplers, prior, log, learned_models)
    with case_log(out_dir, FIELDS, _run_key) as (write, done, path):
        for ci, (name, vol) in enumerate(cases):
            start = time.time()
            for n, k, t, sampler in plan:
                for run in range(1 if sampler == "learned" else grid.runs):
                    if (name, n, k, t, sampler, run) not in done:
                        model = learned_models.get((n, k, t)) if learned_models and sampler == "learned" else None
                        res = reconstruct(vol, grid.run_config(n, k, t, sampler, run), prior, learned=model)
                        write(case_row(name, n, k, t, sampler, run, res))
            log(f"case {ci + 1}/{len(cases)} {name}: {time.time() - start:.1f} s")
    return path


def figure_sampler_model(sampler: str, prior: ShapePrior, n: int, k: int, t: int, learned_models: dict | None):
    """(run it, SamplerModel or None) for the figures: a learned sampler runs only where there
    is one (in `learned_models` when given, else bundled)."""
    if sampler != "learned":
        return True, None
    if learned_models is not None:
        model = learned_models.get((n, k, t))
        return model is not None, model
    return learned_available(prior, n, k, t), None


def evaluation_figures(csv_path, case: tuple[str, BinaryVolume], grid: EvaluationGrid, prior: ShapePrior, out_dir,
                       learned_models: dict | None = None) -> list[Path]:
    """dice_surface.png (Figs 5.2-5.4) from the CSV; for `case` at the grid's first (N, K) and
    largest T (seed 0 for FPS and RS): errors_<sampler>.png (Fig 5.5) and placement.png
    (Fig 5.10). The learned sampler: the bundled one, or `learned_models[(N, K, T)]` when given
    (the case's fold). Returns the paths."""
    out = Path(out_dir)
    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    paths = [out / "dice_surface.png"]
    dice_surface_figure(mean_dice_grid(rows), paths[0])
    (name, vol), (n, k), t = case, grid.configs[0], max(grid.ts)
    placements = {}
    for sampler in grid.samplers:
        wanted, model = figure_sampler_model(sampler, prior, n, k, t, learned_models)
        if not wanted:
            continue
        res = reconstruct(vol, grid.run_config(n, k, t, sampler, 0), prior, learned=model)
        label = sampler_label(sampler)
        placements[label] = res.centres
        paths.append(out / f"errors_{sampler}.png")
        overview_figure(res.errors, vol.spacing, res.centres, k,
                        f"{name}, {label}, N={n}, K={k}, T={t}: Dice {res.metrics['dice']:.3f}", paths[-1])
    paths.append(out / "placement.png")
    placement_figure(vol.mask, vol.spacing, placements, k, f"{name}: where each sampler puts {n} patches", paths[-1])
    return paths
