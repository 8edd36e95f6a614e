"""`reconstruct-slices` (the INR reconstruction from sparse slices or labelled voxels [A §2.3])
and `evaluate-slices` (INR vs interpolation and Fill between slices on held-out synthetic
shapes, [A] Tables 1-3)."""
from __future__ import annotations

import argparse
import sys

from PatchSamplerLib.cli.arguments import (FAMILIES, add_device_argument, add_side_argument, add_threads_argument,
                                           existing_file, input_side, non_negative_int, positive_float, positive_int,
                                           print_side, prior_from_input, structure_warning)
from PatchSamplerLib.sparse.inputs import AXIS_HELP
from PatchSamplerLib.sparse.reconstruction import (DEFAULT_CHECK_EVERY, DEFAULT_POINTS_PER_STEP, DEFAULT_SPARSE_LR,
                                                   DEFAULT_SPARSE_STEPS)
from PatchSamplerLib.reporting.names import SPARSE_FILES

DESCRIPTION = f"""Reconstruct a whole shape from sparse input with the INR prior [Amiranashvili et al. 2022].
Simulate the input from a full segmentation (--step S --axis A [--thick], or --orthogonal; the
metrics then compare with the full input) or give real sparse data: --known-mask FILE (which
voxels of --input are observed) or --labelled-slices A (the slices of --input along axis A that
carry any label are the known ones). Axis numbering: {AXIS_HELP}.
Outputs in --out: reconstruction.nii.gz, sparse_input.nii.gz (0 unknown, 1 known background,
2 known foreground), errors.nii.gz and Dice / ASD / HD95 in metrics.json when a full reference is
known, overview.png."""


def add_commands(sub) -> None:
    """Register `reconstruct-slices` and `evaluate-slices` on the subparsers `sub`."""
    p = sub.add_parser("reconstruct-slices", help="reconstruct a whole shape from a few slices or labelled voxels",
                       description=DESCRIPTION)
    add_reconstruct_slices_arguments(p)
    p.set_defaults(func=reconstruct_slices_main, out_files=SPARSE_FILES)
    p = sub.add_parser("evaluate-slices", help="sparse-slice reconstruction: INR vs interpolation and Fill between "
                                               "slices on held-out synthetic shapes ([A] Tables 1-3)")
    add_evaluate_slices_arguments(p)
    p.set_defaults(func=evaluate_slices_main)


def add_reconstruct_slices_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input", required=True, type=existing_file, help="labelmap (.nii, .nii.gz, .nrrd, .seg.nrrd)")
    p.add_argument("--label", type=int, default=None, help="label value to use in a multi-label file")
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--step", type=positive_int, help="keep every STEP-th slice along --axis (simulation)")
    mode.add_argument("--orthogonal", action="store_true",
                      help="keep three orthogonal slices through the foreground centroid (simulation)")
    mode.add_argument("--known-mask", help="labelmap of the observed voxels (nonzero = known)")
    mode.add_argument("--labelled-slices", type=int, choices=(0, 1, 2), metavar="A",
                      help="the input is drawn on some slices along axis A; unlabelled slices are unknown")
    p.add_argument("--axis", type=int, choices=(0, 1, 2), default=0, help=f"slice axis for --step ({AXIS_HELP}; default 0)")
    p.add_argument("--thick", action="store_true",
                   help="with --step: thick slices (mean over each STEP-slice window, threshold 0.5)")
    p.add_argument("--start", type=non_negative_int, default=None, help="with --step: first kept slice (default random by --seed)")
    p.add_argument("--reference", default=None,
                   help="full segmentation to score against (default: the input, for --step / --orthogonal)")
    p.add_argument("--prior", default=None,
                   help="bundled prior name or a prior file; default: the bundled one for the structure the input's "
                        "name says (the word kidney: kidney; vertebra or vertebrae: vertebra-anatomical), else vertebra")
    p.add_argument("--steps", type=positive_int, default=DEFAULT_SPARSE_STEPS,
                   help=f"latent-fit steps (default {DEFAULT_SPARSE_STEPS})")
    p.add_argument("--fit-lr", type=positive_float, default=DEFAULT_SPARSE_LR, help="Adam learning rate of the latent fit")
    add_side_argument(p)
    p.add_argument("--points-per-step", type=non_negative_int, default=DEFAULT_POINTS_PER_STEP,
                   help=f"known voxels per fit step, drawn at random (default {DEFAULT_POINTS_PER_STEP}; "
                        "0 = all, as the paper)")
    p.add_argument("--boundary-weight", type=positive_float, default=1.0,
                   help="draw known voxels on the labels' boundary this many times as often as others, weighted "
                        "back (default 1: uniformly). --points-per-step 2048 --boundary-weight 4: 2-3x faster fit, "
                        "0.001-0.002 lower Dice on held-out shapes (results/sparse_slices/fast_fit/)")
    p.add_argument("--check-every", type=positive_int, default=DEFAULT_CHECK_EVERY,
                   help="steps between training-Dice checks (early stop)")
    p.add_argument("--patience", type=positive_int, default=None,
                   help="stop when the rounded training Dice has not risen for this many checks (default: never)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="seed of the first slice, point draws and latent start")
    add_device_argument(p)
    p.add_argument("--dense-decode", action="store_true", help="decode every voxel instead of coarse-to-fine")
    add_threads_argument(p)
    p.add_argument("--out", required=True, help="output folder")


def sparse_from_args(args, volume, notes: list):
    """(SparseInput, reference mask or None) for the chosen mode. A --known-mask (any non-zero
    voxel is observed) or --reference on another grid than the input is resampled onto it in
    world space, with a note in `notes`."""
    from PatchSamplerLib.sparse.inputs import sparse_input
    from PatchSamplerLib.volume import on_grid_of, read_labelmap, read_nonzero_mask
    if args.thick and args.step is None:
        raise ValueError("--thick goes with --step")
    if args.step is not None:
        mode, axis = ("thick" if args.thick else "slices"), args.axis
    elif args.orthogonal:
        mode, axis = "orthogonal", args.axis
    elif args.known_mask is not None:
        mode, axis = "known", args.axis
    else:
        mode, axis = "labelled", args.labelled_slices
    known = None
    if mode == "known":
        known = on_grid_of(read_nonzero_mask(args.known_mask), volume, f"--known-mask {args.known_mask}", notes).mask
    sparse = sparse_input(volume.mask, mode, args.step or 8, axis, args.start, args.seed, known)
    reference = volume.mask if mode in ("slices", "thick", "orthogonal") else None
    if args.reference is not None:
        reference = on_grid_of(read_labelmap(args.reference, args.label), volume, f"--reference {args.reference}",
                               notes).mask
    return sparse, reference


def sparse_config(args, device: str = "auto", patience: bool = True):
    """The SparseConfig of the command's fit options (--points-per-step 0: all known voxels;
    --boundary-weight where the command has it)."""
    from PatchSamplerLib.sparse.reconstruction import SparseConfig
    options = dict(steps=args.steps, fit_lr=args.fit_lr, points_per_step=args.points_per_step or None,
                   boundary_weight=getattr(args, "boundary_weight", 1.0), device=str(device),
                   side=input_side(args) if "side" in vars(args) else None)
    if patience:
        options.update(check_every=args.check_every, patience=args.patience, seed=args.seed,
                       dense_decode=args.dense_decode)
    return SparseConfig(**options).check()


def reconstruct_slices_main(args) -> int:
    import warnings
    from PatchSamplerLib.devices import resolve_device
    from PatchSamplerLib.method.inr import ShapePrior
    from PatchSamplerLib.reporting.outputs import write_sparse_outputs
    from PatchSamplerLib.sparse.reconstruction import reconstruct_sparse
    from PatchSamplerLib.volume import read_labelmap

    device = resolve_device(args.device)
    args.prior = prior_from_input(args, fallback="vertebra")
    prior = ShapePrior.load(args.prior, device=device)
    volume = read_labelmap(args.input, args.label)
    notes = []
    sparse, reference = sparse_from_args(args, volume, notes)
    mismatch = structure_warning(args, prior)
    print(f"input {args.input}: {volume.shape} voxels at {volume.spacing} mm; {sparse.description}, "
          f"{sparse.known_count} known voxels")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = reconstruct_sparse(volume, sparse, prior, sparse_config(args, device), reference=reference)
    result.warnings[:0] = notes
    for note in result.warnings:
        print(f"warning: {note}", file=sys.stderr)
    print_side(result.settings, args)
    result.warnings[:0] = [mismatch] if mismatch else []          # recorded in metrics.json
    m = result.metrics
    title = f"INR from {sparse.description}" + (
        f": Dice {m['dice']:.3f}, ASD {m['asd_mm']:.2f} mm, HD95 {m['hd95_mm']:.2f} mm" if m else "")
    out = write_sparse_outputs(result, sparse, volume, args.out, title)
    print(title)
    print("seconds: " + ", ".join(f"{k} {v:.2f}" for k, v in result.timings.items())
          + f" ({result.settings['steps_run']} fit steps, device {device})")
    print(f"outputs in {out.resolve()}")
    return 0


def add_evaluate_slices_arguments(p: argparse.ArgumentParser) -> None:
    from PatchSamplerLib.experiments.slice_evaluation import INPUTS, METHODS
    p.add_argument("--family", choices=FAMILIES, required=True, help="synthetic family")
    p.add_argument("--count", type=positive_int, default=20, help="held-out shapes (default 20)")
    p.add_argument("--data-seed", type=non_negative_int, default=1, help="family seed (default 1; the priors saw seed 0)")
    p.add_argument("--scale", type=positive_float, default=1.0, help="grid scale (1 = full resolution)")
    p.add_argument("--inputs", default=",".join(INPUTS), help=f"comma list of {', '.join(INPUTS)} (default all)")
    p.add_argument("--methods", default="linear,bspline,fill,inr",
                   help=f"comma list of {', '.join(METHODS)} (default linear,bspline,fill,inr)")
    p.add_argument("--step", type=positive_int, default=8, help="keep every STEP-th slice (default 8)")
    p.add_argument("--thick-axis", type=int, choices=(0, 1, 2), default=0, help=f"axis of the thick slices ({AXIS_HELP}; default 0)")
    p.add_argument("--prior", required=True, help="full-resolution prior (bundled name or file) for method inr")
    p.add_argument("--sparse-prior", default=None, help="prior trained from sparse slices, for method inr-sparse")
    p.add_argument("--steps", type=positive_int, default=DEFAULT_SPARSE_STEPS,
                   help=f"latent-fit steps (default {DEFAULT_SPARSE_STEPS})")
    p.add_argument("--fit-lr", type=positive_float, default=DEFAULT_SPARSE_LR, help="Adam learning rate of the latent fit")
    p.add_argument("--points-per-step", type=non_negative_int, default=DEFAULT_POINTS_PER_STEP, help="0 = all known voxels")
    add_device_argument(p)
    add_threads_argument(p)
    p.add_argument("--out", required=True,
                   help="output folder (cases.csv, table.md, settings.json); resumable with the same priors, "
                        "family, seed, scale, slices and fit (other ones are refused)")
    p.add_argument("--overwrite", action="store_true", help="replace the results in --out instead")


def evaluate_slices_main(args) -> int:
    from dataclasses import asdict

    from PatchSamplerLib.data.synthetic import make_shape
    from PatchSamplerLib.experiments.tables import resume_with_same_settings
    from PatchSamplerLib.devices import resolve_device
    from PatchSamplerLib.experiments.slice_evaluation import check_names, evaluate_slices, slice_priors
    inputs = [i for i in args.inputs.split(",") if i]
    methods = [m for m in args.methods.split(",") if m]
    check_names(inputs, methods)
    device = resolve_device(args.device)
    priors = slice_priors(methods, args.prior, args.sparse_prior, device)
    config = sparse_config(args, device, patience=False)
    settings = {"priors": {method: prior.fingerprint() for method, prior in priors.items()}, "family": args.family,
                "data_seed": args.data_seed, "scale": args.scale, "step": args.step, "thick_axis": args.thick_axis,
                "fit": {key: value for key, value in asdict(config).items() if key != "device"}}
    resume_with_same_settings(args.out, settings, args.overwrite)
    cases = [(f"{args.family}_{args.data_seed}_{i:04d}", make_shape(args.family, args.data_seed, i, args.scale))
             for i in range(args.count)]
    title = (f"Reconstruction from sparse slices: {args.count} held-out synthetic {args.family} shapes "
             f"(seed {args.data_seed})")
    print(evaluate_slices(cases, inputs, methods, priors, args.out, args.step, args.thick_axis, config, title,
                          args.command_line))
    return 0
