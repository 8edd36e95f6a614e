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

Where the runs go (`experiments.executors`): one after another in this process, or as tasks on
a Ray cluster; the rows are written by this process only and put in the same order either way,
so cases.csv holds the same rows whatever the executor (only the timing columns differ between
any two evaluations). A run that failed twice on a worker goes to `failures.csv` (and is retried
by the next evaluation); the others go on.

Cross-validation (`experiments.crossval`): each shape is scored in its fold's test split with
that fold's own learned samplers (trained when missing). Tables and tests: `experiments.tables`.
The command line (`cli.evaluate`) adds the presets: the thesis protocol and a reduced one.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass, replace
from pathlib import Path

from PatchSamplerLib.checkpoints import CheckpointError, resolve_sampler_path
from PatchSamplerLib.experiments.executors import Failure, Job, LocalExecutor, Rate
from PatchSamplerLib.experiments.tables import case_log, check_unique_case_names, mean_dice_grid, sort_case_log
from PatchSamplerLib.method.inr import DEFAULT_FIT_LR, ShapePrior
from PatchSamplerLib.method.sampler import load_learned_sampler
from PatchSamplerLib.method.samplers import sampler_label
from PatchSamplerLib.pipeline import RunConfig, reconstruct
from PatchSamplerLib.progress import task
from PatchSamplerLib.structures import side_in_name
from PatchSamplerLib.reporting.figures import dice_surface_figure, placement_figure
from PatchSamplerLib.reporting.overview import overview_picture
from PatchSamplerLib.volume import BinaryVolume

FIELDS = ["case", "n", "k", "t", "sampler", "run", "dice", "asd_mm", "hd95_mm", "fit_s", "decode_s"]
FAILURE_FIELDS = ["case", "n", "k", "t", "sampler", "run", "attempts", "error"]


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
    fit: str = "adam"                   # the thesis protocol (`method.fitting`); "fast": the product's default

    def run_config(self, n: int, k: int, t: int, sampler: str, seed: int) -> RunConfig:
        """The pipeline configuration of one case of the grid."""
        return RunConfig(n=n, k=k, t=t, sampler=sampler, seed=seed, fit_lr=self.fit_lr, device=self.device,
                         fit=self.fit)


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


def _runs_of(plan, runs: int):
    """(N, K, T, sampler, run) of every run of `plan` (the learned sampler: one run)."""
    return [(n, k, t, sampler, run) for n, k, t, sampler in plan for run in range(1 if sampler == "learned" else runs)]


def evaluate_run(volume: BinaryVolume, name: str, grid: EvaluationGrid, n: int, k: int, t: int, sampler: str,
                 run: int, prior: ShapePrior, model) -> dict:
    """One run of the grid (the job every executor runs) -> its cases.csv row. model: the
    learned sampler (a SamplerModel) for sampler "learned", else None. The side a case's name
    says (``s0001_kidney_right``, the family ``kidney-anatomical-left``) is the run's side for a
    prior trained on one side; else that prior detects it (`method.sides`)."""
    config = replace(grid.run_config(n, k, t, sampler, run), side=side_in_name(name))
    res = reconstruct(volume, config, prior, learned=model)
    return case_row(name, n, k, t, sampler, run, res)


def grid_samplers(prior: ShapePrior, runs, learned_models: dict | None) -> dict:
    """{(N, K, T): SamplerModel} for the learned runs among `runs` ((N, K, T, sampler, run)):
    `learned_models` when given, else the bundled samplers of `prior`, each loaded once here
    (so a job needs no file of this machine); a bundled one's notes (trained for another T, ...)
    are printed, "note: learned sampler N=.., K=.., T=..: ..."."""
    if learned_models is not None:
        return learned_models
    models = {}
    for key in sorted({(n, k, t) for n, k, t, sampler, _ in runs if sampler == "learned"}):
        models[key], notes = load_learned_sampler(prior, *key)
        for note in notes:
            print("note: learned sampler N={}, K={}, T={}: {}".format(*key, note))
    return models


def grid_jobs(cases, runs, done: set, grid: EvaluationGrid, prior: ShapePrior, models: dict, executor) -> list[Job]:
    """The Jobs of `evaluate_run` for every (case, run) not in `done`, case by case in the order
    of `cases` and `runs`; the prior, each shape and each sampler shared once (`executor.share`)."""
    shared_prior, shared_models, jobs = executor.share(prior), {}, []
    for name, volume in cases:
        todo = [r for r in runs if (name, *r) not in done]
        shared_volume = executor.share(volume) if todo else None
        for n, k, t, sampler, run in todo:
            model = None
            if sampler == "learned":
                if (n, k, t) not in shared_models:
                    shared_models[(n, k, t)] = executor.share(models[(n, k, t)])
                model = shared_models[(n, k, t)]
            jobs.append(Job((name, n, k, t, sampler, run),
                            (shared_volume, name, grid, n, k, t, sampler, run, shared_prior, model)))
    return jobs


def run_cases(cases: list[tuple[str, BinaryVolume]], grid: EvaluationGrid, prior: ShapePrior, out_dir,
              log=print, learned_models: dict | None = None, executor=None) -> Path:
    """Evaluate every (case, config, T, sampler, run) of `grid` not yet in out_dir/cases.csv;
    returns the CSV path. cases: [(name, volume)]. The learned sampler: the bundled one per
    (N, K), or `learned_models[(N, K, T)]` when that dict is given (cross-validation folds).
    executor: where the runs go (`executors`; default: this process, one after another). The
    rows are written here as the runs finish, then put in the order of one process (cases in
    order, runs in the grid's order; earlier rows of other grids first). A run that failed on a
    worker (`executors.Failure`) is appended to out_dir/failures.csv instead and retried by the
    next evaluation (`unresolved_failures`). Progress: the task "evaluation" over the runs still to do."""
    check_unique_case_names(name for name, _ in cases)
    executor = executor or LocalExecutor()
    runs = _runs_of(run_plan(grid.configs, grid.ts, grid.samplers, prior, log, learned_models), grid.runs)
    with case_log(out_dir, FIELDS, _run_key) as (write, done, path):
        jobs = grid_jobs(cases, runs, done, grid, prior, grid_samplers(prior, runs, learned_models), executor)
        _gather(executor.map(evaluate_run, jobs), jobs, cases, write, out_dir, log)
    positions = {name: i for i, (name, _) in enumerate(cases)}
    order = {run: i for i, run in enumerate(runs)}
    sort_case_log(path, lambda r: _grid_rank(r, positions, order))
    return path


def _grid_rank(row: dict, positions: dict, order: dict):
    """(case position, run position) of a cases.csv row of this grid; None for another grid's row."""
    name, *run = _run_key(row)
    if name not in positions or tuple(run) not in order:
        return None
    return positions[name], order[tuple(run)]


def _gather(results, jobs: list[Job], cases, write, out_dir, log) -> None:
    """Write each finished run's row (a Failure to failures.csv), with progress, and a line when
    the last run of a case is in."""
    left = {}
    for job in jobs:
        left[job.key[0]] = left.get(job.key[0], 0) + 1
    positions, rate = {name: i for i, (name, _) in enumerate(cases)}, Rate()
    with task("evaluation", len(jobs), "runs") as progress:
        for job, result in results:
            if isinstance(result, Failure):
                failures = record_failure(out_dir, job.key, result)
                log(f"{' '.join(map(str, job.key))}: failed {result.attempts} times ({result.error}); "
                    f"recorded in {failures}")
            else:
                write(result)
            progress.advance()
            rate.add()
            name = job.key[0]
            left[name] -= 1
            if not left[name]:
                log(f"case {positions[name] + 1}/{len(cases)} {name}: done ({progress.done}/{len(jobs)} runs, "
                    f"{rate.describe()})")


def record_failure(out_dir, key: tuple, failure: Failure) -> Path:
    """Append the run `key` (case, N, K, T, sampler, run) and its Failure to out_dir/failures.csv
    (made with a header by the first failure) -> the file's path."""
    with case_log(out_dir, FAILURE_FIELDS, _run_key, "failures.csv") as (write, _, path):
        write(dict(zip(FIELDS, key), attempts=failure.attempts, error=failure.error))
    return path


def unresolved_failures(out_dir) -> list[dict]:
    """The rows of out_dir/failures.csv whose run is not (or no longer: a later evaluation
    finished it) in out_dir/cases.csv."""
    out = Path(out_dir)
    if not (out / "failures.csv").exists():
        return []
    with open(out / "failures.csv") as f:
        failed = list(csv.DictReader(f))
    done = set()
    if (out / "cases.csv").exists():
        with open(out / "cases.csv") as f:
            done = {_run_key(r) for r in csv.DictReader(f)}
    return [r for r in failed if _run_key(r) not in done]


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
        overview_picture(res.errors, vol.spacing, res.centres, k,
                        f"{name}, {label}, N={n}, K={k}, T={t}: Dice {res.metrics['dice']:.3f}", paths[-1])
    paths.append(out / "placement.png")
    placement_figure(vol.mask, vol.spacing, placements, k, f"{name}: where each sampler puts {n} patches", paths[-1])
    return paths
