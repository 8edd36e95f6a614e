"""Where the memory of `train-prior` goes, and what a run peaks at (issue #21, item 7).

    python results/memory/measure.py [--points 65536,131072,262144] [--family vertebra --count 8]
                                     [--cli 1000,3]

Prints, as markdown tables:
1. the bytes the autograd graph of one training pass keeps per point, counted exactly
   (torch.autograd.graph.saved_tensors_hooks, distinct buffers);
2. the peak resident-memory increase of one training pass (forward, loss, backward) of P points,
   each in a fresh process on 1 thread (`experiments.memory.first_call_peak_mb`): its slope is
   `training.budget.BYTES_PER_POINT`;
3. the resident memory of a fresh process once the library, torch and the decoder are loaded
   (`budget.PROCESS_GB`) and the bytes of the training shapes' tables (`PriorTrainer.table_bytes`);
4. with --cli, the peak RSS (the child's ru_maxrss, os.wait4) of
   `python -m PatchSamplerLib train-prior --family F --count C --val-count 2 --epochs 1 --threads 1
   --step-memory-gb G` for each G given (1000: one pass for the whole batch, i.e. the behaviour
   before the budget), with the expected peak the command printed.
"""
from __future__ import annotations

import argparse
import functools
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from PatchSamplerLib.experiments.memory import first_call_peak_mb  # noqa: E402
from PatchSamplerLib.method.inr import OccupancyDecoder  # noqa: E402
from PatchSamplerLib.method.losses import occupancy_loss  # noqa: E402


def saved_bytes_per_point(points: int = 4096) -> float:
    """Bytes of the distinct tensors the autograd graph of one pass saves, per point."""
    saved = {}

    def pack(t):
        saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t
    decoder = OccupancyDecoder()
    z = torch.randn(1, decoder.latent_dim, requires_grad=True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        occupancy_loss(decoder(torch.randn(1, points, 3) * 30, z), (torch.rand(1, points) > 0.5).float())
    return sum(saved.values()) / points


def one_pass(points: int) -> None:
    """Forward, loss and backward of one shape of `points` random points (the measured call)."""
    decoder = OccupancyDecoder()
    z = torch.randn(1, decoder.latent_dim, requires_grad=True)
    coords, labels = torch.randn(1, points, 3) * 30, (torch.rand(1, points) > 0.5).float()
    occupancy_loss(decoder(coords, z), labels).backward()


def process_gb() -> float:
    """RSS (GB) of this process's child once the training command's imports and a decoder are loaded."""
    code = ("import resource, PatchSamplerLib.cli.main, PatchSamplerLib.training.prior, matplotlib.pyplot;"
            "from PatchSamplerLib.method.inr import OccupancyDecoder; OccupancyDecoder();"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=ROOT,
                         env=dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")).stdout
    return int(out.split()[-1]) * 1024 / 1e9


def table_bytes_per_shape(family: str, count: int) -> float:
    """Bytes of the training shapes' tables (masks, bands) per shape, for `count` full-resolution shapes."""
    from PatchSamplerLib.data.synthetic import make_shapes
    from PatchSamplerLib.training.prior import PriorConfig, PriorTrainer
    with tempfile.TemporaryDirectory() as out:
        trainer = PriorTrainer(make_shapes(family, count, seed=0), [], out, PriorConfig(), log=lambda *a: None)
        return trainer.table_bytes() / count


def cli_peak(family: str, count: int, step_memory_gb: float) -> dict:
    """Peak RSS (GB), wall seconds and the printed expected peak of one train-prior command."""
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, "-m", "PatchSamplerLib", "train-prior", "--family", family, "--count", str(count),
               "--val-count", "2", "--epochs", "1", "--threads", "1", "--step-memory-gb", str(step_memory_gb),
               "--out", str(Path(out) / "run")]
        start = time.time()
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env=dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1"))
        text = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        if status:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{text}")
    expected = re.search(r"expected peak memory ~([\d.]+) GB", text)
    return {"command": " ".join(["python"] + cmd[1:-2]), "peak_gb": usage.ru_maxrss * 1024 / 1e9,
            "expected_gb": float(expected[1]) if expected else float("nan"), "seconds": time.time() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", default="65536,131072,262144", help="points per measured pass")
    parser.add_argument("--family", default="vertebra")
    parser.add_argument("--count", type=int, default=8)
    parser.add_argument("--cli", default="", help="comma-separated --step-memory-gb values to run the CLI with")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"saved by the graph: {saved_bytes_per_point():.0f} bytes per point\n")
    print("| points in the pass | peak RSS increase (GB) | bytes per point |\n|---:|---:|---:|")
    for points in [int(p) for p in args.points.split(",")]:
        peak = first_call_peak_mb(functools.partial(one_pass, points)) * 2 ** 20
        print(f"| {points:,} | {peak / 1e9:.2f} | {peak / points:.0f} |")
    print(f"\nprocess after imports and a decoder: {process_gb():.2f} GB")
    print(f"tables of a full-resolution {args.family}: {table_bytes_per_shape(args.family, args.count) / 1e6:.2f} MB "
          f"per shape ({args.count} shapes)\n")
    if args.cli:
        print("| command | --step-memory-gb | expected peak (GB) | peak RSS (GB) | wall (s) |\n|---|---:|---:|---:|---:|")
        for budget in args.cli.split(","):
            row = cli_peak(args.family, args.count, float(budget))
            print(f"| `{row['command']}` | {budget} | {row['expected_gb']:.1f} | {row['peak_gb']:.2f} | "
                  f"{row['seconds']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
