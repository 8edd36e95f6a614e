"""`synth` (synthetic shapes as files) and `run` (one reconstruction from patches, with its
files: reconstruction, errors, patches.json, metrics.json, overview.png)."""
from __future__ import annotations

import sys
from pathlib import Path

from PatchSamplerLib.cli.arguments import (FAMILIES, add_device_argument, add_side_argument, add_threads_argument,
                                           existing_file, input_side, non_negative_int, positive_float, positive_int,
                                           print_side, prior_from_input, structure_warning)
from PatchSamplerLib.method.samplers import SAMPLER_NAMES
from PatchSamplerLib.reporting.names import RUN_FILES


def add_commands(sub) -> None:
    """Register `synth` and `run` on the subparsers `sub`."""
    p = sub.add_parser("synth", help="write synthetic shapes as NIfTI files")
    p.add_argument("--family", choices=FAMILIES, required=True,
                   help="shape family: hand-made solids (vertebra, kidney) or anatomical (vertebra-anatomical T10-L5, "
                        "kidney-anatomical left and right)")
    p.add_argument("--count", type=positive_int, default=10, help="number of shapes (default 10)")
    p.add_argument("--seed", type=non_negative_int, default=0,
                   help="family seed: the same (family, seed, index) is always the same shape")
    p.add_argument("--scale", type=positive_float, default=1.0, help="grid scale; 0.25 gives small volumes for tests")
    add_threads_argument(p)
    p.add_argument("--out", required=True, help="output folder (<family>_<seed>_<index>.nii.gz)")
    p.set_defaults(func=synth_main)

    p = sub.add_parser("run", help="choose patches, reconstruct the shape from them, score it")
    p.add_argument("--input", required=True, type=existing_file,
                   help="binary or multi-label labelmap (.nii, .nii.gz, .nrrd, .seg.nrrd)")
    p.add_argument("--label", type=int, default=None, help="label value to use in a multi-label file")
    p.add_argument("--n", type=positive_int, default=8, help="number of patches N (default 8)")
    p.add_argument("--k", type=positive_int, default=11, help="patch size K in voxels (default 11)")
    p.add_argument("--t", type=non_negative_int, default=100, help="latent-fit steps T (default 100)")
    p.add_argument("--fit", choices=["fast", "adam"], default="fast",
                   help="latent fit: fast (default: each of the T Adam steps on a random eighth of the patch voxels, "
                        "384 to 2,048 of them, boundary voxels drawn 4x as often and weighted back; "
                        "results/benchmark/fit) or adam (the thesis: each step on every patch "
                        "voxel)")
    p.add_argument("--sampler", choices=SAMPLER_NAMES, default="fps",
                   help="fps, random, or learned (the bundled sampler for the prior and (N, K), or --sampler-model)")
    p.add_argument("--sampler-model", default=None, help="a learned sampler file (from train-sampler)")
    p.add_argument("--prior", default=None,
                   help="bundled prior name (kidney, kidney-anatomical, kidney-anatomical-left, vertebra, "
                        "vertebra-anatomical) or a prior file; default: the bundled one for the structure the "
                        "input's name says (the word kidney: kidney; vertebra or vertebrae: vertebra-anatomical)")
    add_side_argument(p)
    add_device_argument(p)
    p.add_argument("--precision", choices=["fp32", "tf32", "bf16"], default="fp32",
                   help="matmul precision of the fit and decode; tf32 / bf16 on CUDA only (default fp32; "
                        "results/gpu/README.md: on one H200 they keep the Dice within 0.003 and are no faster)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="seed of random sampling and of the latent start")
    p.add_argument("--fit-lr", type=positive_float, default=1e-2,
                   help="Adam learning rate of the latent fit (default 0.01)")
    p.add_argument("--dense-decode", action="store_true",
                   help="decode every voxel (the reference) instead of coarse-to-fine")
    p.add_argument("--largest-component", action="store_true",
                   help="keep only the mask's largest connected component (drops false-positive specks of "
                        "automatic segmentations; several components are always reported)")
    p.add_argument("--force", action="store_true",
                   help="run even when the estimate is above the limits (10 minutes of latent fit, half of the "
                        "device's memory)")
    add_threads_argument(p)
    p.add_argument("--out", required=True, help="output folder")
    p.set_defaults(func=run_main, out_files=RUN_FILES)


def synth_main(args) -> int:
    from PatchSamplerLib.data.synthetic import make_shape
    from PatchSamplerLib.volume import write_volume
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for i in range(args.count):
        vol = make_shape(args.family, args.seed, i, args.scale)
        write_volume(out / f"{args.family}_{args.seed:03d}_{i:04d}.nii.gz", vol)
    print(f"wrote {args.count} {args.family} shapes to {out}")
    return 0


def run_main(args) -> int:
    import warnings
    from PatchSamplerLib.devices import check_precision, resolve_device
    from PatchSamplerLib.method.cost import check_affordable, estimate_run
    from PatchSamplerLib.method.fitting import fit_settings
    from PatchSamplerLib.method.inr import ShapePrior
    from PatchSamplerLib.method.sampler import load_learned_sampler
    from PatchSamplerLib.pipeline import RunConfig, reconstruct
    from PatchSamplerLib.reporting.outputs import write_run_outputs
    from PatchSamplerLib.volume import read_labelmap

    device = resolve_device(args.device)          # fail before any work
    config = RunConfig(n=args.n, k=args.k, t=args.t, sampler=args.sampler, seed=args.seed, device=str(device),
                       precision=args.precision, fit=args.fit, fit_lr=args.fit_lr, dense_decode=args.dense_decode,
                       sampler_model=args.sampler_model, largest_component=args.largest_component,
                       force=args.force, side=input_side(args)).check()
    check_precision(device, config.precision)
    args.prior = prior_from_input(args)
    prior = ShapePrior.load(args.prior, device=device)
    learned, _ = load_learned_sampler(prior, config.n, config.k, config.t, config.sampler_model) \
        if config.sampler == "learned" else (None, [])          # missing / another prior's: refused before the estimate
    if learned is not None:
        print(learned_sampler_line(learned, config.n, config.k))
    fit = fit_settings(config.fit, config.n * config.k ** 3, config.t, config.fit_lr)
    estimate = estimate_run(config.n, config.k, fit.steps, device, points_per_step=fit.points)
    print(f"N={config.n} K={config.k} {fit_label(fit)}: {estimate.describe()} (estimated)")
    check_affordable(estimate, config.force)
    volume = read_labelmap(args.input, args.label)
    print(f"input {args.input}: {volume.shape} voxels at {volume.spacing} mm, {volume.voxel_count} foreground")
    mismatch = structure_warning(args, prior)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")          # the result carries them; printed below
        result = reconstruct(volume, config, prior, learned=learned)
    for note in result.warnings:
        print(f"warning: {note}", file=sys.stderr)
    print_side(result.settings, args)
    result.warnings[:0] = [mismatch] if mismatch else []          # recorded in metrics.json
    m = result.metrics
    title = (f"{args.sampler.upper()} N={args.n} K={args.k} {fit_label(fit)}: Dice {m['dice']:.3f}, "
             f"ASD {m['asd_mm']:.2f} mm, HD95 {m['hd95_mm']:.2f} mm")
    out = write_run_outputs(result, volume, args.out, title)
    print(title)
    print("seconds: " + ", ".join(f"{k} {v:.2f}" for k, v in result.timings.items()) + f" (device {device})")
    print(f"outputs in {out.resolve()}: reconstruction.nii.gz errors.nii.gz patches.json metrics.json overview.png")
    return 0


def learned_sampler_line(model, n: int, k: int) -> str:
    """"learned sampler: FILE" of a run, with which of an any-(N, K) sampler's centres it uses."""
    from PatchSamplerLib.checkpoints import any_sampler_use
    name = Path(model.metadata.get("path", "")).name or "(given as a model)"
    return f"learned sampler: {name}" + (f" ({any_sampler_use(n, k)})" if model.any_nk else "")


def fit_label(fit) -> str:
    """How a run's title names its fit: "T=100" (the thesis's fit) or "T=100 fast"."""
    return f"T={fit.steps}" if fit.kind == "adam" else f"T={fit.steps} fast"
