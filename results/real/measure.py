"""Real-shape results (issue 17, item 7): every real segmentation of this repository, fed as
TotalSegmentator stores it, reconstructed by each prior: the representation ceiling (latent fitted
to every voxel, 300 steps) and FPS (10 seeds), random (3 seeds) and the bundled learned sampler
(where one is bundled for the prior and N, K: the per-(N, K) one, else the
prior's any-(N, K) one) at (N, K) = (4, 9), (8, 9), (8, 11), (12, 13), T = 100.

    python results/real/measure.py --priors vertebra-anatomical,vertebra --threads 1 --out results/real/rows_vertebra.csv
    python results/real/measure.py --priors kidney-anatomical,kidney --threads 1 --fps-seeds 5 --random-seeds 2 \
        --out results/real/rows_kidney.csv
    python results/real/measure.py --table results/real/rows_*.csv > results/real/real.md

(the two kidneys got 5 FPS and 2 random seeds to fit the session's CPU time; the seeds column of the
table says how many each row has).

Sparse slices (`--slices-only`): the shape known only on every 8th sagittal slice (every 8th x slice
of the anatomical LPS frame, whatever the file's storage; first slice drawn by the seed, 3 seeds),
the latent fitted to those slices (300 steps, 8,192 known voxels per step, `reconstruct_sparse`)
and scored against the whole shape; the method column says `slices-x8`. Run for the full-volume
priors and for the priors trained on sparse slices only:

    python results/real/measure.py --slices-only --priors vertebra,vertebra-anatomical,vertebra_sparse8_x,vertebra-anatomical_sparse8_x,kidney,kidney-anatomical,kidney_sparse8_x,kidney-anatomical_sparse8_x --threads 1 --out results/real/rows_slices.csv

Each shape is resampled (linear, threshold 0.5, `volume.resample_isotropic`) to the spacing its
prior was trained at (kidneys 3 mm -> 1.5 mm, the T12 1.5 mm -> 1 mm); nothing else is changed:
the run itself reorients to the anatomical frame and maps back. The kidney prior reconstructs
the kidneys, the vertebra prior the T12 (cut by the scan's edge: part of it is missing, which
lowers every number). Rows are appended to the CSV as they are measured (a rerun skips rows
already there).
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from PatchSamplerLib.checkpoints import CheckpointError, resolve_prior_path, resolve_sampler_path  # noqa: E402
from PatchSamplerLib.method.inr import ShapePrior  # noqa: E402
from PatchSamplerLib.pipeline import RunConfig, reconstruct  # noqa: E402
from PatchSamplerLib.orientation import to_anatomical  # noqa: E402
from PatchSamplerLib.sparse.ceiling import representation_ceiling  # noqa: E402
from PatchSamplerLib.sparse.inputs import every_nth_slice  # noqa: E402
from PatchSamplerLib.sparse.reconstruction import reconstruct_sparse  # noqa: E402
from PatchSamplerLib.structures import side_in_name  # noqa: E402
from PatchSamplerLib.volume import read_labelmap, resample_isotropic  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
SHAPES = {  # name: (file, organ)
    "kidney_left": (DATA / "totalsegmentator-example/kidney_left.nii.gz", "kidney"),
    "kidney_right": (DATA / "totalsegmentator-example/kidney_right.nii.gz", "kidney"),
    "T12 (cut by the scan)": (DATA / "totalsegmentator-t12/vertebrae_T12.nii.gz", "vertebra"),
}
CONFIGS = ((4, 9), (8, 9), (8, 11), (12, 13))
SEEDS = {"fps": 10, "random": 3, "learned": 1}
SLICE_STEP, SLICE_SEEDS = 8, 3
SLICES = f"slices-x{SLICE_STEP}"
FIELDS = ("shape", "prior", "method", "n", "k", "seed", "dice", "asd_mm", "hd95_mm", "seconds")


def organ_of(prior: str) -> str:
    return "kidney" if prior.startswith("kidney") else "vertebra"


def has_learned_sampler(prior: str, n: int, k: int) -> bool:
    """Whether `run --sampler learned` has a bundled sampler for (prior, N, K) at T = 100: the
    per-(N, K) one, else the prior's any-(N, K) one (#18; `checkpoints.resolve_sampler_path`)."""
    try:
        return resolve_sampler_path(resolve_prior_path(prior), n, k, 100)[1] is None
    except CheckpointError:
        return False


def measurements(prior_name: str, seeds: dict, slices_only: bool = False):
    """(shape, method, n, k, seed) of every measurement of one prior."""
    for shape, (path, organ) in SHAPES.items():
        if organ != organ_of(prior_name):
            continue
        if slices_only:
            yield from ((shape, SLICES, 0, 0, seed) for seed in range(SLICE_SEEDS))
            continue
        yield shape, "ceiling", 0, 0, 0
        for n, k in CONFIGS:
            for method, count in seeds.items():
                if method == "learned" and not has_learned_sampler(prior_name, n, k):
                    continue
                for seed in range(count):
                    yield shape, method, n, k, seed


def measure(volume, prior: ShapePrior, method: str, n: int, k: int, seed: int, side: str | None = None) -> dict:
    """Metrics of one measurement; side: the shape's side (from its name, as `run` reads it),
    used by a prior trained on one side (`method.sides`)."""
    if method == "ceiling":
        return representation_ceiling(volume, prior, seed=seed, device="cpu", side=side).metrics
    if method == SLICES:
        return sagittal_slices_reconstruction(volume, prior, seed, side)
    config = RunConfig(n=n, k=k, t=100, sampler=method, seed=seed, device="cpu", fit="adam", side=side)
    return reconstruct(volume, config, prior).metrics


def sagittal_slices_reconstruction(volume, prior: ShapePrior, seed: int, side: str | None = None) -> dict:
    """Metrics of the shape reconstructed from every SLICE_STEP-th x slice of the anatomical
    frame (sagittal slices; first slice drawn by `seed`)."""
    anatomical, _ = to_anatomical(volume)
    sparse = every_nth_slice(anatomical.mask, SLICE_STEP, axis=0, seed=seed)
    return reconstruct_sparse(anatomical, sparse, prior, seed=seed, device="cpu", reference=anatomical.mask,
                              side=side).metrics


def run(priors: list[str], out: Path, seeds: dict, slices_only: bool = False) -> None:
    done = set()
    if out.exists():
        with out.open() as f:
            done = {(r["shape"], r["prior"], r["method"], r["n"], r["k"], r["seed"]) for r in csv.DictReader(f)}
    with row_writer(out) as write:
        for prior_name in priors:
            prior = ShapePrior.load(prior_name, device="cpu")
            volumes = {}
            for shape, method, n, k, seed in measurements(prior_name, seeds, slices_only):
                if (shape, prior_name, method, str(n), str(k), str(seed)) in done:
                    continue
                if shape not in volumes:
                    volumes[shape] = resample_isotropic(read_labelmap(str(SHAPES[shape][0])), prior.spacing_mm[0])
                t0 = time.time()
                metrics = measure(volumes[shape], prior, method, n, k, seed, side_in_name(shape))
                write(shape, prior_name, method, n, k, seed, metrics, t0)


@contextlib.contextmanager
def row_writer(out: Path):
    """Append rows (FIELDS) to the CSV `out` (header when new), each flushed as written; yields
    write(shape, prior, method, n, k, seed, metrics, start time) (seconds: time since the start)."""
    new = not out.exists()
    with out.open("a", newline="") as f:
        writer = csv.DictWriter(f, FIELDS)
        if new:
            writer.writeheader()

        def write(shape, prior, method, n, k, seed, m: dict, t0: float) -> None:
            writer.writerow(dict(shape=shape, prior=prior, method=method, n=n, k=k, seed=seed,
                                 dice=round(m["dice"], 4), asd_mm=round(m["asd_mm"], 3),
                                 hd95_mm=round(m["hd95_mm"], 3), seconds=round(time.time() - t0, 1)))
            f.flush()
        yield write


def table(paths: list[str]) -> str:
    rows = [r for p in paths for r in csv.DictReader(open(p))]
    groups: dict = {}
    for r in rows:
        key = (r["shape"], r["prior"], r["method"], int(r["n"]), int(r["k"]))
        groups.setdefault(key, []).append(float(r["dice"]))
    lines = ["| shape | prior | method | N | K | Dice (mean ± SD over seeds) | seeds |", "|---|---|---|---|---|---|---|"]
    for (shape, prior, method, n, k), d in sorted(groups.items(), key=lambda g: (g[0][0], g[0][1], g[0][3],
                                                                               g[0][4], g[0][2])):
        size = f"{n}" if n else "—"
        lines.append(f"| {shape} | {prior} | {method} | {size} | {k if k else '—'} | "
                     f"{np.mean(d):.3f} ± {np.std(d):.3f} | {len(d)} |")
    return "\n".join(lines)


def printed_table_or_set_up(args, table_of) -> bool:
    """With --table: print table_of(args.table) and return True. Else set torch's thread count to
    --threads, silence warnings and return False (the measuring run follows)."""
    if args.table:
        print(table_of(args.table))
        return True
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--priors", default="kidney,vertebra")
    parser.add_argument("--out", default="results/real/rows.csv")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--fps-seeds", type=int, default=SEEDS["fps"])
    parser.add_argument("--random-seeds", type=int, default=SEEDS["random"])
    parser.add_argument("--slices-only", action="store_true", help=f"only the {SLICES} rows (module docstring)")
    parser.add_argument("--table", nargs="*", help="print the Markdown table of these CSV files and stop")
    args = parser.parse_args()
    if printed_table_or_set_up(args, table):
        return
    run(args.priors.split(","), Path(args.out), dict(SEEDS, fps=args.fps_seeds, random=args.random_seeds),
        args.slices_only)


if __name__ == "__main__":
    main()
