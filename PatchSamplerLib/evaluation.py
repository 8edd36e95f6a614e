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

Cross-validation (`--folds F`, `crossval.py`): each shape is scored in its fold's test split with
that fold's own learned samplers (trained when missing with `--train-missing`).

Presets (`PRESETS`): ``full`` is the thesis protocol (grid, 30 runs, 5 folds with per-fold
samplers); ``cpu`` a reduced one for this 2-core machine (no folds: the bundled samplers, which
were trained on other shapes of the family, on 8 held-out shapes).
"""
from __future__ import annotations

import csv
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from .inr import ShapePrior
from .pipeline import reconstruct
from .volume import BinaryVolume

FIELDS = ["case", "n", "k", "t", "sampler", "run", "dice", "asd_mm", "hd95_mm", "fit_s", "decode_s"]

# What --preset fills in (options given on the command line win).
PRESETS = {
    "full": dict(configs=",".join(f"{n}x{k}" for n in (4, 8, 12) for k in (9, 11, 13)), t="33,66,100",
                 samplers="learned,fps,random", runs=30, count=100, folds=5, train_missing=True),
    "cpu": dict(configs="4x9,8x9,4x13", t="33,100", samplers="learned,fps,random", runs=5, count=8, folds=0,
                train_missing=False),
}
DEFAULTS = dict(configs="4x9,8x11,12x13", t="100", samplers="fps,random", runs=1, count=20, folds=0,
                train_missing=False)


def parse_configs(text: str) -> list[tuple[int, int]]:
    """"4x9,8x11" -> [(4, 9), (8, 11)]."""
    try:
        return [tuple(int(v) for v in item.lower().split("x")) for item in text.split(",") if item]
    except ValueError:
        raise ValueError(f"configurations must look like 4x9,8x11 (N x K), got {text!r}") from None


@contextmanager
def case_log(out_dir, fields: list[str], key):
    """Append to out_dir/cases.csv (created with a header if new). Yields (write(row dict),
    done: the set of `key(row)` of the rows already there, path); each row is flushed at once,
    so an interrupted evaluation resumes where it stopped."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "cases.csv"
    done = set()
    if path.exists():
        with open(path) as f:
            done = {key(r) for r in csv.DictReader(f)}
    new_file = not path.exists()
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, fields)
        if new_file:
            writer.writeheader()

        def write(row: dict) -> None:
            writer.writerow(row)
            f.flush()
        yield write, done, path


def _run_key(r: dict) -> tuple:
    return r["case"], int(r["n"]), int(r["k"]), int(r["t"]), r["sampler"], int(r["run"])


def parse_ints(text: str, what: str = "T") -> list[int]:
    """"33,66,100" -> [33, 66, 100]."""
    try:
        return [int(v) for v in str(text).split(",") if v]
    except ValueError:
        raise ValueError(f"{what} must be a comma list of integers, got {text!r}") from None


def apply_preset(args) -> None:
    """Fill the grid options the command line left unset (None) from --preset, else the defaults."""
    chosen = PRESETS[args.preset] if getattr(args, "preset", None) else DEFAULTS
    for key, value in chosen.items():
        if getattr(args, key) is None:
            setattr(args, key, value)


def learned_available(prior: ShapePrior, n: int, k: int, t: int) -> bool:
    """Whether a bundled learned sampler exists for (prior, N, K) (any T; `resolve_sampler_path`)."""
    from .checkpoints import CheckpointError, resolve_sampler_path
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


def run_cases(cases: list[tuple[str, BinaryVolume]], configs, ts, samplers, prior: ShapePrior, runs: int,
              out_dir, fit_lr: float = 1e-2, device: str = "auto", log=print,
              learned_models: dict | None = None) -> Path:
    """Evaluate every (case, config, T, sampler, run) not yet in out_dir/cases.csv; returns the
    CSV path. `ts`: one T or a list. The learned sampler: the bundled one per (N, K), or
    `learned_models[(N, K, T)]` when that dict is given (cross-validation folds)."""
    plan = run_plan(configs, [ts] if isinstance(ts, int) else ts, samplers, prior, log, learned_models)
    with case_log(out_dir, FIELDS, _run_key) as (write, done, path):
        for ci, (name, vol) in enumerate(cases):
            start = time.time()
            for n, k, t, sampler in plan:
                for run in range(1 if sampler == "learned" else runs):
                    if (name, n, k, t, sampler, run) not in done:
                        model = learned_models.get((n, k, t)) if learned_models and sampler == "learned" else None
                        res = reconstruct(vol, n, k, t, sampler=sampler, prior=prior, seed=run, fit_lr=fit_lr,
                                          device=device, sampler_model=model)
                        write(case_row(name, n, k, t, sampler, run, res))
            log(f"case {ci + 1}/{len(cases)} {name}: {time.time() - start:.1f} s")
    return path


def mean_std(values) -> str:
    v = np.asarray(values, float)
    return f"{np.mean(v):.3f} ± {np.std(v):.3f}"


def best_sampler(per: dict[str, np.ndarray], samplers, metric: int) -> str | None:
    """The sampler with the best mean of column `metric` (0 Dice: highest; 1 ASD, 2 HD95:
    lowest) of its (cases, 3) rows; None when no sampler has a finite mean."""
    means = {s: float(np.mean(per[s][:, metric])) for s in samplers if len(per[s])}
    means = {s: v for s, v in means.items() if np.isfinite(v)}
    if not means:
        return None
    return max(means, key=means.get) if metric == 0 else min(means, key=means.get)


def summary_table(csv_path, title: str = "") -> str:
    """Markdown table (rows N, K, T; columns per sampler and metric). Per case the runs are
    averaged first; mean +- std are over cases. The best mean of each metric in a row in bold;
    a learned cell marked † differs from FPS with p < 0.05 in both paired tests."""
    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    samplers = sorted({r["sampler"] for r in rows}, key=lambda s: ["learned", "fps", "random"].index(s)
                      if s in ("learned", "fps", "random") else 9)
    configs = sorted({(int(r["n"]), int(r["k"]), int(r["t"])) for r in rows})
    head = ["N", "K", "T", "N·K³"] + [f"{m} {s.upper() if s != 'random' else 'RS'}" for m in ("Dice", "ASD mm", "HD95 mm")
                                     for s in samplers]
    lines = [f"### {title}" if title else "", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for n, k, t in configs:
        per_case = {s: per_case_means(rows, n, k, t, s) for s in samplers}
        per = {s: np.array(list(v.values())).reshape(-1, 3) for s, v in per_case.items()}
        marks = significant_metrics(per_case.get("learned", {}), per_case.get("fps", {}))
        cells = []
        for m in range(3):
            best = best_sampler(per, samplers, m)
            for s in samplers:
                mark = " †" if s == "learned" and marks[m] else ""
                cell = mean_std(per[s][:, m]) + mark if len(per[s]) else "–"
                cells.append(f"**{cell}**" if s == best and len(samplers) > 1 else cell)
        lines.append("| " + " | ".join([str(n), str(k), str(t), f"{n * k ** 3:,}"] + cells) + " |")
    n_cases = len({r["case"] for r in rows})
    runs = {}
    for r in rows:
        key = (int(r["n"]), int(r["k"]), r["sampler"])
        runs[key] = max(runs.get(key, 0), int(r["run"]) + 1)
    counts = sorted({(s, c) for (_, _, s), c in runs.items()})
    per = ", ".join(f"{s.upper() if s != 'random' else 'RS'} {c}" + (
        " (" + ", ".join(f"{n}x{k}" for (n, k, s2), c2 in sorted(runs.items()) if (s2, c2) == (s, c)) + ")"
        if len({c2 for (_, _, s2), c2 in runs.items() if s2 == s}) > 1 else "") for s, c in counts)
    lines += ["", f"{n_cases} cases; runs (seeds) per case: {per}. Each case's runs are averaged first; "
                  "mean ± std over cases."
              + (" † learned vs FPS: p < 0.05 in both the paired t-test and the Wilcoxon signed-rank test."
                 if "learned" in samplers and "fps" in samplers else "")]
    return "\n".join(lines) + "\n"


def per_case_means(rows: list[dict], n: int, k: int, t: int, sampler: str) -> dict[str, np.ndarray]:
    """{case: (3,) mean Dice, ASD, HD95 over the runs} of one configuration and sampler."""
    by_case = {}
    for r in rows:
        if (int(r["n"]), int(r["k"]), int(r["t"]), r["sampler"]) == (n, k, t, sampler):
            by_case.setdefault(r["case"], []).append([float(r[m]) for m in ("dice", "asd_mm", "hd95_mm")])
    return {case: np.mean(v, axis=0) for case, v in by_case.items()}


def paired_tests(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(paired t-test p, Wilcoxon signed-rank p), two-sided, for paired samples a, b."""
    from scipy import stats
    if len(a) < 2 or np.allclose(a, b):
        return float("nan"), float("nan")
    return float(stats.ttest_rel(a, b).pvalue), float(stats.wilcoxon(a, b).pvalue)


def significant_metrics(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> list[bool]:
    """Per metric (Dice, ASD, HD95): do the per-case means {case: (3,)} of a and b differ with
    p < 0.05 in both paired tests, over the cases both have (False with fewer than 2)."""
    cases = sorted(set(a) & set(b))
    if len(cases) < 2:
        return [False] * 3
    tests = [paired_tests(np.array([a[c][m] for c in cases]), np.array([b[c][m] for c in cases])) for m in range(3)]
    return [bool(p_t < 0.05 and p_w < 0.05) for p_t, p_w in tests]


def significance_table(csv_path, first: str = "learned", second: str = "fps") -> str:
    """Markdown: per configuration, mean difference first - second and both p-values per metric
    (cases present for both samplers only; p < 0.05 marked *); "" when no configuration has
    two such cases."""
    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    configs = sorted({(int(r["n"]), int(r["k"]), int(r["t"])) for r in rows})
    head = ["N", "K", "T", "cases"] + [f"{m} {c}" for m in ("Dice", "ASD mm", "HD95 mm")
                                       for c in ("Δ mean", "t-test p", "Wilcoxon p")]
    lines = [f"### {first} vs {second}: paired tests over cases", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for n, k, t in configs:
        a, b = per_case_means(rows, n, k, t, first), per_case_means(rows, n, k, t, second)
        cases = sorted(set(a) & set(b))
        if len(cases) < 2:
            continue
        cells = []
        for m in range(3):
            x, y = np.array([a[c][m] for c in cases]), np.array([b[c][m] for c in cases])
            p_t, p_w = paired_tests(x, y)
            cells += [f"{np.mean(x - y):+.4f}"] + [f"{p:.2g}" + ("*" if p < 0.05 else "") for p in (p_t, p_w)]
        lines.append("| " + " | ".join([str(n), str(k), str(t), str(len(cases))] + cells) + " |")
    if len(lines) == 4:
        return ""
    lines += ["", f"Δ = {first} − {second} (positive Dice / negative ASD, HD95 favour {first}); * p < 0.05."]
    return "\n".join(lines) + "\n"


def mean_dice_grid(rows: list[dict]) -> dict[tuple[int, str], dict[tuple[int, int], float]]:
    """{(T, sampler): {(N, K): mean over cases of each case's mean Dice}} of cases.csv rows."""
    grid = {}
    for n, k, t, sampler in sorted({(int(r["n"]), int(r["k"]), int(r["t"]), r["sampler"]) for r in rows}):
        means = per_case_means(rows, n, k, t, sampler)
        grid.setdefault((t, sampler), {})[(n, k)] = float(np.mean([m[0] for m in means.values()]))
    return grid


def evaluation_figures(csv_path, case: tuple[str, BinaryVolume], config: tuple[int, int], t: int, samplers,
                       prior: ShapePrior, out_dir, fit_lr: float = 1e-2, device: str = "auto",
                       learned_models: dict | None = None) -> list[Path]:
    """dice_surface.png (Figs 5.2-5.4) from the CSV; for `case` at `config` and T (seed 0 for FPS
    and RS): errors_<sampler>.png (Fig 5.5) and placement.png (Fig 5.10). The learned sampler: the
    bundled one, or `learned_models[(N, K, T)]` when given (the case's fold). Returns the paths."""
    from .figures import dice_surface_figure, overview_figure, placement_figure, sampler_label
    out = Path(out_dir)
    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    paths = [out / "dice_surface.png"]
    dice_surface_figure(mean_dice_grid(rows), paths[0])
    (name, vol), (n, k) = case, config
    placements = {}
    for sampler in samplers:
        model = None
        if sampler == "learned":
            if learned_models is not None:
                model = learned_models.get((n, k, t))
                if model is None:
                    continue
            elif not learned_available(prior, n, k, t):
                continue
        res = reconstruct(vol, n, k, t, sampler=sampler, prior=prior, seed=0, fit_lr=fit_lr, device=device,
                          sampler_model=model)
        label = sampler_label(sampler)
        placements[label] = res.centres
        paths.append(out / f"errors_{sampler}.png")
        overview_figure(res.errors, vol.spacing, res.centres, k,
                        f"{name}, {label}, N={n}, K={k}, T={t}: Dice {res.metrics['dice']:.3f}", paths[-1])
    paths.append(out / "placement.png")
    placement_figure(vol.mask, vol.spacing, placements, k, f"{name}: where each sampler puts {n} patches", paths[-1])
    return paths


def evaluation_cases(args) -> list[tuple[str, BinaryVolume]]:
    """(name, volume) of the held-out shapes: a synthetic family's seed, or a dataset's items."""
    from .data.synthetic import make_shape
    if args.family:
        return [(f"{args.family}_{args.data_seed}_{i:04d}", make_shape(args.family, args.data_seed, i, args.scale))
                for i in range(args.count)]
    return [(Path(item.name).name, item.volume) for item in evaluation_items(args)]


def evaluation_items(args):
    """The ShapeDataset to evaluate on: `count` synthetic shapes (each its own subject) or the
    first `count` items of the dataset at --data (layout --dataset)."""
    from .cli_training import load_items
    from .data.folder import ShapeDataset, load_synthetic
    if args.family:
        return load_synthetic(args.family, args.count, args.data_seed, args.scale)
    items = load_items(args.data, getattr(args, "dataset", "folder"))
    return ShapeDataset(items[:args.count], items.dropped)


def evaluate_folds(args, configs, ts, samplers, prior) -> tuple[Path, list[tuple[str, BinaryVolume]], dict]:
    """--folds F: cross-validation (`crossval.py`) -> (cases.csv, the test cases of all folds,
    the first evaluated fold's learned samplers {(N, K, T): SamplerModel})."""
    from .crossval import run_cross_validation, split_folds
    folds = split_folds(evaluation_items(args), args.folds)
    if getattr(args, "only_folds", None):
        wanted = parse_ints(args.only_folds, "--only-folds")
        folds = [f for f in folds if f.index in wanted]
    train = None
    if args.train_missing:
        train = dict(mode=args.train_mode, epochs=args.train_epochs, max_minutes=args.train_minutes)
    sampler_dir = args.sampler_dir or str(Path(args.out) / "samplers")
    path, models = run_cross_validation(folds, configs, ts, samplers, prior, args.runs, args.out, sampler_dir, train,
                                        args.fit_lr, args.device)
    return path, [case for f in folds for case in f.test], models[0] if models else {}


def evaluate_main(args) -> int:
    apply_preset(args)
    configs, ts, samplers = parse_configs(args.configs), parse_ints(args.t), args.samplers.split(",")
    prior = ShapePrior.load(args.prior)
    learned_models = None                       # the bundled samplers
    if args.folds:
        path, cases, learned_models = evaluate_folds(args, configs, ts, samplers, prior)
    else:
        if args.sampler_dir and "learned" in samplers:
            from .crossval import folder_samplers
            learned_models = folder_samplers(args.sampler_dir, configs, ts)
        cases = evaluation_cases(args)
        path = run_cases(cases, configs, ts, samplers, prior, args.runs, args.out, args.fit_lr, args.device,
                         learned_models=learned_models)
    title = f"{args.family or args.data}, prior {args.prior}, T = {', '.join(map(str, ts))}"
    table = summary_table(path, title)
    significance = significance_table(path)
    if significance:
        table += "\n" + significance
    (Path(args.out) / "table.md").write_text(table + f"\nCommand: `{args.command_line}`\n")
    print(table)
    if args.figures:
        evaluation_figures(path, cases[0], configs[0], max(ts), samplers, prior, args.out, args.fit_lr, args.device,
                           learned_models)
    return 0
