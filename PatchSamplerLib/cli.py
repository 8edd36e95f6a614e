"""Argument parsing and dispatch for ``python -m PatchSamplerLib``."""
from __future__ import annotations

import argparse
import sys


def _synth(args) -> int:
    from pathlib import Path
    from .data.synthetic import make_shape
    from .volume import write_volume
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for i in range(args.count):
        vol = make_shape(args.family, args.seed, i, args.scale)
        write_volume(out / f"{args.family}_{args.seed:03d}_{i:04d}.nii.gz", vol)
    print(f"wrote {args.count} {args.family} shapes to {out}")
    return 0


def _run(args) -> int:
    import warnings
    from .devices import check_precision, resolve_device
    from .inr import ShapePrior
    from .outputs import write_run_outputs
    from .pipeline import reconstruct
    from .volume import read_labelmap

    device = resolve_device(args.device)          # fail before any work
    check_precision(device, args.precision)
    prior = ShapePrior.load(args.prior, device=device)
    volume = read_labelmap(args.input, args.label)
    print(f"input {args.input}: {volume.shape} voxels at {volume.spacing} mm, {volume.voxel_count} foreground")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")          # the result carries them; printed below
        result = reconstruct(volume, args.n, args.k, args.t, sampler=args.sampler, prior=prior, seed=args.seed,
                             device=str(device), fit_lr=args.fit_lr, sampler_model=args.sampler_model,
                             dense_decode=args.dense_decode, precision=args.precision)
    for note in result.warnings:
        print(f"warning: {note}", file=sys.stderr)
    m = result.metrics
    title = (f"{args.sampler.upper()} N={args.n} K={args.k} T={args.t}: Dice {m['dice']:.3f}, "
             f"ASD {m['asd_mm']:.2f} mm, HD95 {m['hd95_mm']:.2f} mm")
    out = write_run_outputs(result, volume, args.out, title)
    print(title)
    print("seconds: " + ", ".join(f"{k} {v:.2f}" for k, v in result.timings.items()) + f" (device {device})")
    print(f"outputs in {out.resolve()}: reconstruction.nii.gz errors.nii.gz patches.json metrics.json overview.png")
    return 0


def _lazy(module: str, function: str):
    """A command handler that imports PatchSamplerLib.<module> (torch and all) only when run."""
    def handler(args):
        import importlib
        return getattr(importlib.import_module(f"PatchSamplerLib.{module}"), function)(args)
    return handler


def build_parser() -> argparse.ArgumentParser:
    from .cli_training import add_prior_arguments, add_sampler_arguments
    parser = argparse.ArgumentParser(prog="python -m PatchSamplerLib",
                                     description="Learned patch sampling for implicit shape reconstruction.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("synth", help="write synthetic shapes as NIfTI files")
    p.add_argument("--family", choices=["vertebra", "kidney"], required=True)
    p.add_argument("--count", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--scale", type=float, default=1.0, help="grid scale; 0.25 gives small volumes for tests")
    p.add_argument("--out", required=True)
    p.set_defaults(func=_synth)

    p = sub.add_parser("run", help="choose patches, reconstruct the shape from them, score it")
    p.add_argument("--input", required=True, help="binary or multi-label labelmap (.nii, .nii.gz, .nrrd, .seg.nrrd)")
    p.add_argument("--label", type=int, default=None, help="label value to use in a multi-label file")
    p.add_argument("--n", type=int, default=8, help="number of patches N (default 8)")
    p.add_argument("--k", type=int, default=11, help="patch size K in voxels (default 11)")
    p.add_argument("--t", type=int, default=100, help="latent-fit steps T (default 100)")
    p.add_argument("--sampler", choices=["fps", "random", "learned"], default="fps",
                   help="fps, random, or learned (the bundled sampler for the prior and (N, K), or --sampler-model)")
    p.add_argument("--sampler-model", default=None, help="a learned sampler file (from train-sampler)")
    p.add_argument("--prior", default=None, help="bundled prior name (vertebra, kidney) or a prior file")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    p.add_argument("--precision", choices=["fp32", "tf32", "bf16"], default="fp32",
                   help="matmul precision of the fit and decode; tf32 / bf16 on CUDA only (default fp32; "
                        "results/gpu/README.md: on one H200 they keep the Dice within 0.003 and are no faster)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fit-lr", type=float, default=1e-2, help="Adam learning rate of the latent fit")
    p.add_argument("--dense-decode", action="store_true",
                   help="decode every voxel (the reference) instead of coarse-to-fine")
    p.add_argument("--out", required=True, help="output folder")
    p.set_defaults(func=_run)

    p = sub.add_parser("evaluate", help="score FPS / random sampling over an (N, K) grid on held-out shapes")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--family", choices=["vertebra", "kidney"], help="synthetic family")
    src.add_argument("--data", help="folder of labelmaps")
    p.add_argument("--preset", choices=["cpu", "full"],
                   help="full: the thesis protocol (N 4, 8, 12 x K 9, 11, 13 x T 33, 66, 100; learned, FPS, RS; "
                        "30 runs; 100 shapes in 5 folds, the missing per-fold samplers trained); cpu: 4x9, 8x9, "
                        "4x13 x T 33, 100, 5 runs, 8 held-out shapes, the bundled samplers, no folds. "
                        "Options given explicitly override it")
    p.add_argument("--count", type=int, help="number of shapes (default 20)")
    p.add_argument("--data-seed", type=int, default=1,
                   help="synthetic: family seed (default 1; the bundled priors were trained on seed 0)")
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--configs", help="N x K list (default 4x9,8x11,12x13)")
    p.add_argument("--t", help="T list, e.g. 33,66,100 (default 100)")
    p.add_argument("--samplers",
                   help="comma list of fps, random, learned (learned: the bundled sampler of the prior per (N, K); "
                        "default fps,random)")
    p.add_argument("--runs", type=int,
                   help="runs (seeds) per case for fps and random (learned is deterministic: one run; default 1)")
    p.add_argument("--figures", action="store_true",
                   help="also draw dice_surface.png (mean Dice over N, K per T), and errors_<sampler>.png and "
                        "placement.png for the first shape at the first (N, K) and the largest T")
    p.add_argument("--dataset", choices=["folder", "verse", "totalsegmentator"], default="folder",
                   help="--data layout: any folder of labelmaps, VerSe, TotalSegmentator (default folder)")
    p.add_argument("--folds", type=int,
                   help="cross-validation folds (grouped by subject; 5: 70/10/20 train/val/test): every shape is "
                        "scored in its fold's test split with that fold's learned samplers (default 0: no folds, "
                        "the bundled samplers on all shapes)")
    p.add_argument("--only-folds", help="--folds: evaluate only these folds, e.g. 0 or 0,1")
    p.add_argument("--sampler-dir", help="--folds: per-fold samplers DIR/fold<f>/sampler_n<N>_k<K>_t<T>.pt "
                                         "(default OUT/samplers); without --folds: the learned samplers "
                                         "DIR/sampler_n<N>_k<K>_t<T>.pt instead of the bundled ones (e.g. "
                                         "train-sampler outputs renamed; use a new --out for each set)")
    p.add_argument("--train-missing", action="store_true", default=None,
                   help="--folds: train the missing per-fold samplers on the fold's train/validation split")
    p.add_argument("--train-mode", choices=["fast", "faithful"], default="fast", help="--train-missing: fidelity mode")
    p.add_argument("--train-epochs", type=int, default=400, help="--train-missing: epochs (the thesis: 400)")
    p.add_argument("--train-minutes", type=float, help="--train-missing: wall-clock budget per sampler")
    p.add_argument("--prior", required=True)
    p.add_argument("--fit-lr", type=float, default=1e-2)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", required=True, help="output folder (cases.csv, table.md); resumable")
    p.set_defaults(func=_lazy("evaluation", "evaluate_main"))

    from .cli_sparse import DESCRIPTION, add_evaluate_slices_arguments, add_reconstruct_slices_arguments
    p = sub.add_parser("reconstruct-slices", help="reconstruct a whole shape from a few slices or labelled voxels",
                       description=DESCRIPTION)
    add_reconstruct_slices_arguments(p)
    p.set_defaults(func=_lazy("cli_sparse", "reconstruct_slices_main"))

    p = sub.add_parser("evaluate-slices", help="sparse-slice reconstruction: INR vs interpolation and Fill between "
                                               "slices on held-out synthetic shapes ([A] Tables 1-3)")
    add_evaluate_slices_arguments(p)
    p.set_defaults(func=_lazy("slice_evaluation", "evaluate_slices_main"))

    p = sub.add_parser("benchmark", help="time and memory of the sampler and the reconstruction on this machine",
                       description="Thesis Tables 5.8 / 5.9 for this machine: learned sampler inference, "
                                   "reconstruction (fit + decode) per (N, K) for a 85x85x110 kidney and a 128x120x90 "
                                   "vertebra with the FLOP floor, and scaling plots. Writes benchmark.json, "
                                   "benchmark.md and scaling.png.")
    p.add_argument("--configs", default="4x9,8x9,4x13,8x11,12x13", help="N x K of the reconstructions")
    p.add_argument("--sampler-configs", default="4x9,8x9,4x13", help="N x K of the bundled learned samplers")
    p.add_argument("--t", type=int, default=100)
    p.add_argument("--repeats", type=int, default=5, help="timed repeats after one warm-up")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--kidney-prior", default="kidney")
    p.add_argument("--vertebra-prior", default="vertebra")
    p.add_argument("--scale", type=float, default=1.0, help="grid scale of the synthetic volumes (1: full size)")
    p.add_argument("--training", action="store_true",
                   help="instead: the sampler training step, faithful vs fast mode (time per step, peak memory, "
                        "validation Dice per epoch) on 8 half-resolution vertebrae, on the CPU; writes "
                        "training.json / training.md")
    p.add_argument("--training-init", choices=["random", "anchor"], default="random",
                   help="--training: the thesis's random start at lr 0.01, or the FPS-anchored start at lr 1e-4 "
                        "with soft labels (the bundled kidney 8x9 recipe)")
    p.add_argument("--training-epochs", type=int, default=3, help="--training: epochs before the Dice comparison")
    p.add_argument("--out", required=True)
    p.set_defaults(func=_lazy("benchmark", "benchmark_main"))

    p = sub.add_parser("train-prior", help="train the auto-decoder INR prior")
    add_prior_arguments(p)
    p.set_defaults(func=_lazy("cli_training", "train_prior_main"))

    p = sub.add_parser("train-sampler", help="train the learned patch sampler through a frozen prior",
                       description="Train one learned sampler for (N, K, T) and a prior [T §3.6]. --mode faithful: "
                                   "the thesis (all patch voxels, loss on every voxel of the grid); --mode fast: "
                                   "fit on every --patch-stride-th patch voxel and loss on --loss-voxels "
                                   "boundary-weighted voxels per shape (practical on a CPU).")
    add_sampler_arguments(p)
    p.set_defaults(func=_lazy("cli_training", "train_sampler_main"))
    return parser


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.command_line = " ".join(["python -m PatchSamplerLib"] + argv)   # recorded in models and results
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
