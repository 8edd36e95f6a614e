"""The evaluation's records and tables [T §5.1-5.2]: `cases.csv` written as it goes
(`case_log`, resumable), per-case means, the thesis's paired t-test and Wilcoxon signed-rank
test (learned vs FPS, p < 0.05 in both), and the Markdown tables (`summary_table`,
`significance_table`); the mean-Dice grid behind the Dice-surface figures (Figs 5.2-5.4).
"""
from __future__ import annotations

import csv
import json
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from PatchSamplerLib.method.samplers import SAMPLER_NAMES, SAMPLERS


def check_unique_case_names(names) -> None:
    """ValueError naming the repeated ones when two cases share a name: cases.csv identifies a
    case by its name, so the second would be taken as done (resumed) or pooled with the first."""
    seen, repeated = set(), []
    for name in names:
        if name in seen and name not in repeated:
            repeated.append(name)
        seen.add(name)
    if repeated:
        raise ValueError(f"two or more shapes are named {', '.join(map(repr, repeated[:5]))}: cases.csv needs one "
                         "name per shape (give files of different names, or one folder per subject)")


SETTINGS_FILE = "settings.json"


def resume_with_same_settings(out_dir, settings: dict, overwrite: bool = False,
                              files=("cases.csv", "failures.csv", "table.md")) -> None:
    """Before a resumable command (evaluate, evaluate-slices, benchmark --fit) adds rows to
    out_dir/cases.csv: the settings that give its rows their meaning beyond their own columns
    (the prior, the data, the fit, ...; JSON values) must be those recorded in
    out_dir/settings.json by the run that wrote them, else the table would mix two experiments.
    Raises ValueError naming what differs. `overwrite`: the earlier run's `files` and its
    settings are deleted first (nothing else in the folder). A folder with rows but no
    settings.json (written before they were recorded) is resumed as it is. Records `settings`."""
    out = Path(out_dir)
    path = out / SETTINGS_FILE
    settings = json.loads(json.dumps(settings))               # tuples as lists: as read back
    if overwrite:
        for name in (*files, SETTINGS_FILE):
            (out / name).unlink(missing_ok=True)
    elif path.exists():
        recorded = json.loads(path.read_text())
        differing = [key for key in settings if key in recorded and recorded[key] != settings[key]]
        if differing:
            shown = "; ".join(f"{key}: {recorded[key]} there, {settings[key]} now" for key in differing)
            raise ValueError(f"{out} holds results of other settings ({shown}); adding these rows would mix two "
                             "experiments in one table: choose another --out, or --overwrite to replace them")
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(settings, indent=2) + "\n")


@contextmanager
def case_log(out_dir, fields: list[str], key, name: str = "cases.csv"):
    """Append to out_dir/`name` (created with a header if new). Yields (write(row dict),
    done: the set of `key(row)` of the rows already there, path); each row is flushed at once,
    so an interrupted evaluation resumes where it stopped. A last row that a killed run left
    unfinished (no line end) is removed first, so that its case is run again."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / name
    done = set()
    if path.exists():
        drop_unfinished_row(path)
        with open(path) as f:
            done = {key(r) for r in csv.DictReader(f)}
    new_file = not path.exists() or path.stat().st_size == 0
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, fields)
        if new_file:
            writer.writeheader()

        def write(row: dict) -> None:
            writer.writerow(row)
            f.flush()
        yield write, done, path


def drop_unfinished_row(path) -> bool:
    """Cut the CSV at `path` after its last line end: a row written only in part (the process was
    killed while writing it) would otherwise read as a finished case with wrong or empty values.
    Returns whether anything was cut."""
    path = Path(path)
    data = path.read_bytes()
    keep = data.rfind(b"\n") + 1
    if keep == len(data):
        return False
    with open(path, "r+b") as f:
        f.truncate(keep)
    return True


def sort_case_log(path, rank) -> bool:
    """Rewrite the CSV at `path` with its rows stably sorted by `rank(row)` (rows with rank None
    first, in their order; then the others by rank), atomically; nothing is written when the
    order is already that. Returns whether the file was rewritten. Rows come back from parallel
    workers in the order they finish; this gives the order of a run in one process."""
    path = Path(path)
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        rows, fields = list(reader), reader.fieldnames
    ranks = [rank(r) for r in rows]
    order = sorted(range(len(rows)), key=lambda i: (0, i, ()) if ranks[i] is None else (1, 0, ranks[i]))
    if order == list(range(len(rows))):
        return False
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fields)
        writer.writeheader()
        writer.writerows(rows[i] for i in order)
    tmp.replace(path)
    return True


def column_name(sampler: str) -> str:
    """A sampler's table column suffix ("FPS", "RS", "LEARNED"; other names upper-cased)."""
    return SAMPLERS[sampler].short if sampler in SAMPLERS else sampler.upper()


def mean_std(values) -> str:
    v = np.asarray(values, float)
    return f"{np.mean(v):.3f} ± {np.std(v):.3f}"


def best_samplers(per: dict[str, np.ndarray], samplers, metric: int) -> set:
    """The samplers with the best mean of column `metric` (0 Dice: highest; 1 ASD, 2 HD95:
    lowest) of their (cases, 3) rows, as shown (3 decimals: samplers tied there are all best);
    empty when no sampler has a finite mean or all that have one are tied (no best)."""
    means = {s: round(float(np.mean(per[s][:, metric])), 3) for s in samplers if len(per[s])}
    means = {s: v for s, v in means.items() if np.isfinite(v)}
    if not means:
        return set()
    best = max(means.values()) if metric == 0 else min(means.values())
    tied = {s for s, v in means.items() if v == best}
    return set() if len(tied) == len(means) and len(means) > 1 else tied


def summary_table(csv_path, title: str = "") -> str:
    """Markdown table (rows N, K, T; columns per sampler and metric). Per case the runs are
    averaged first; mean +- std are over cases. The best mean of each metric in a row in bold (all
    of a tie as shown; none when every sampler ties);
    a learned cell marked † differs from FPS with p < 0.05 in both paired tests."""
    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    samplers = sorted({r["sampler"] for r in rows}, key=lambda s: SAMPLER_NAMES.index(s) if s in SAMPLER_NAMES else 9)
    configs = sorted({(int(r["n"]), int(r["k"]), int(r["t"])) for r in rows})
    head = ["N", "K", "T", "N·K³"] + [f"{m} {column_name(s)}" for m in ("Dice", "ASD mm", "HD95 mm")
                                     for s in samplers]
    lines = [f"### {title}" if title else "", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for n, k, t in configs:
        per_case = {s: per_case_means(rows, n, k, t, s) for s in samplers}
        per = {s: np.array(list(v.values())).reshape(-1, 3) for s, v in per_case.items()}
        marks = significant_metrics(per_case.get("learned", {}), per_case.get("fps", {}))
        cells = []
        for m in range(3):
            best = best_samplers(per, samplers, m)
            for s in samplers:
                mark = " †" if s == "learned" and marks[m] else ""
                cell = mean_std(per[s][:, m]) + mark if len(per[s]) else "–"
                cells.append(f"**{cell}**" if s in best and len(samplers) > 1 else cell)
        lines.append("| " + " | ".join([str(n), str(k), str(t), f"{n * k ** 3:,}"] + cells) + " |")
    n_cases = len({r["case"] for r in rows})
    runs = {}
    for r in rows:
        key = (int(r["n"]), int(r["k"]), r["sampler"])
        runs[key] = max(runs.get(key, 0), int(r["run"]) + 1)
    counts = sorted({(s, c) for (_, _, s), c in runs.items()})
    per = ", ".join(f"{column_name(s)} {c}" + (
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


def evaluation_report(csv_path, title: str) -> str:
    """The Markdown of `table.md`: the summary table and, with learned and FPS rows, the paired
    tests' table."""
    table = summary_table(csv_path, title)
    significance = significance_table(csv_path)
    return table + ("\n" + significance if significance else "")
