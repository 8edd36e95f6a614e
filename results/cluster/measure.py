"""The speed-up of `evaluate --executor ray` (a local Ray instance) over the local executor on
the same grid (issue #20): runs both commands one after the other in fresh output folders, prints
their wall times and writes results/cluster/speedup.md (commands, seconds, `uptime` load before
and after each, whether the two cases.csv hold the same rows). With --prior, also train-prior in
one process vs under torchrun with 2 processes (DistributedDataParallel, gloo).

    python results/cluster/measure.py [--count 4] [--prior] [--note "..."]

Run it from the repository root with the project's Python (ray installed:
requirements-cluster.txt). The Ray time includes starting the local instance and its workers
(each imports torch), as a user's command does.
"""
from __future__ import annotations

import argparse
import csv
import datetime
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
TIMINGS = ("fit_s", "decode_s")


def grid(count: int) -> list[str]:
    return ["evaluate", "--family", "kidney", "--prior", "kidney", "--count", str(count), "--configs", "4x9,8x9",
            "--t", "33", "--samplers", "fps,random", "--runs", "3", "--threads", "1"]


def uptime() -> str:
    """The load averages (1, 5, 15 min) as `uptime` prints them."""
    text = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    return text.split("load average:")[-1].strip()


def timed(command: list[str], out: Path) -> tuple[float, str, str]:
    """Run `command` (its "python" / "torchrun": this Python's) with --out OUT, from the
    repository root -> (wall seconds, load before, load after)."""
    shutil.rmtree(out, ignore_errors=True)
    launcher = [sys.executable] if command[0] == "python" else [sys.executable, "-m", "torch.distributed.run"]
    before, start = uptime(), time.perf_counter()
    done = subprocess.run(launcher + command[1:] + ["--out", str(out)], cwd=ROOT,
                          env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return seconds, before, uptime()


def rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return [{k: v for k, v in r.items() if k not in TIMINGS} for r in csv.DictReader(f)]


def evaluation_table(count: int, runs: Path) -> list[str]:
    """Both executors on the grid -> the lines of the markdown table and the verdict."""
    commands = {"local": grid(count), "ray": grid(count) + ["--executor", "ray", "--cpus-per-task", "1"]}
    measured = {name: timed(["python", "-m", "PatchSamplerLib", *args], runs / name) for name, args in commands.items()}
    same = rows(runs / "local" / "cases.csv") == rows(runs / "ray" / "cases.csv")
    lines = [f"## evaluate: 2 Ray workers vs the local executor ({len(rows(runs / 'local' / 'cases.csv'))} runs: "
             "4x9, 8x9 at T = 33, FPS and random, 3 seeds each)", ""]
    lines += table(measured, {name: ["python", "-m", "PatchSamplerLib", *args] for name, args in commands.items()},
                   runs)
    speedup = measured["local"][0] / measured["ray"][0]
    return lines + ["", f"Speed-up: **{speedup:.2f}x**. The two cases.csv hold the same rows in the same order "
                        f"(timing columns aside): **{'yes' if same else 'NO'}**.", ""]


def prior_table(runs: Path) -> list[str]:
    """train-prior in one process vs torchrun with 2 processes (gloo), the same global batch: the
    whole command's wall time and the median seconds of a training epoch (train_log.jsonl)."""
    args = ["train-prior", "--family", "kidney", "--count", "8", "--val-count", "0", "--epochs", "4",
            "--points-per-shape", "65536", "--batch-size", "8", "--val-every", "100", "--threads", "1"]
    commands = {"1 process": ["python", "-m", "PatchSamplerLib", *args],
                "torchrun, 2 processes": ["torchrun", "--standalone", "--nproc-per-node", "2", "-m", "PatchSamplerLib",
                                          *args]}
    measured = {name: timed(command, runs / name.split(",")[0].replace(" ", "_")) for name, command in commands.items()}
    epochs = {name: epoch_seconds(runs / name.split(",")[0].replace(" ", "_")) for name in commands}
    whole = measured["1 process"][0] / measured["torchrun, 2 processes"][0]
    step = epochs["1 process"] / epochs["torchrun, 2 processes"]
    lines = ["## train-prior: DistributedDataParallel on 2 CPU processes vs 1 (8 kidneys, 4 epochs of one step of "
             "8 x 65,536 points)", ""]
    lines += table(measured, commands, runs)
    return lines + ["", f"Median training epoch: {epochs['1 process']:.1f} s in one process, "
                        f"{epochs['torchrun, 2 processes']:.1f} s in two: **{step:.2f}x**. Whole command (start-up, "
                        f"shapes, the final validation on rank 0): **{whole:.2f}x**.", ""]


def epoch_seconds(out: Path) -> float:
    """The median training seconds of an epoch of the run in `out` (its train_log.jsonl)."""
    import json
    import statistics
    return statistics.median(json.loads(line)["seconds"] for line in (out / "train_log.jsonl").read_text().splitlines())


def table(measured: dict, commands: dict, runs: Path) -> list[str]:
    lines = ["| how | wall (s) | load before (1, 5, 15 min) | load after | command |", "|---|---|---|---|---|"]
    for name, (seconds, before, after) in measured.items():
        folder = runs / name.split(",")[0].replace(" ", "_")
        command = " ".join(commands[name]) + f" --out {folder.relative_to(ROOT)}"
        lines.append(f"| {name} | {seconds:.1f} | {before} | {after} | `{command}` |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=4, help="held-out kidneys (default 4: 48 runs)")
    parser.add_argument("--prior", action="store_true", help="also time train-prior under torchrun (2 processes)")
    parser.add_argument("--note", default="", help="a line about the machine's load, put under the tables")
    opts = parser.parse_args()
    runs = HERE / "runs"
    now = datetime.datetime.now(datetime.timezone.utc)
    lines = [f"# Measured on this machine, {now:%Y-%m-%d %H:%M} UTC ({os.cpu_count()} CPU cores)", ""]
    lines += evaluation_table(opts.count, runs)
    if opts.prior:
        lines += prior_table(runs)
    if opts.note:
        lines += [opts.note, ""]
    (HERE / "speedup.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
