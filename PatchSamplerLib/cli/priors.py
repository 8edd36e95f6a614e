"""`ceiling` (how well a prior can represent a shape at all) and `mean-shape` (what a prior
learned), the prior diagnostics of `sparse.ceiling`."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from PatchSamplerLib.cli.arguments import (add_device_argument, add_side_argument, add_threads_argument,
                                           existing_file, input_side, non_negative_int, positive_float, positive_int,
                                           print_side, prior_from_input, structure_warning)
from PatchSamplerLib.reporting.names import SPARSE_FILES


def add_commands(sub) -> None:
    """Register `ceiling` and `mean-shape` on the subparsers `sub`."""
    p = sub.add_parser("ceiling", help="fit a prior's latent to every voxel of a shape: the best Dice it can reach",
                       description="The representation ceiling: the latent fitted to every voxel of the shape's "
                                   "frame (--steps Adam steps on --points-per-step voxels each), decoded and scored. "
                                   "An upper bound for any patch reconstruction of this shape with this prior.")
    p.add_argument("--input", required=True, type=existing_file, help="labelmap (.nii, .nii.gz, .nrrd, .seg.nrrd)")
    p.add_argument("--label", type=int, default=None, help="label value to use in a multi-label file")
    p.add_argument("--prior", default=None,
                   help="bundled prior name or a prior file; default: the bundled one for the structure the input's "
                        "name says (the word kidney: kidney; vertebra or vertebrae: vertebra-anatomical)")
    p.add_argument("--steps", type=positive_int, default=300, help="latent-fit steps (default 300)")
    p.add_argument("--points-per-step", type=non_negative_int, default=16384, help="voxels drawn per step (0: all; default 16384)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="seed of the latent start and the point draws")
    add_side_argument(p)
    add_device_argument(p)
    add_threads_argument(p)
    p.add_argument("--out", default=None, help=f"optional folder: {', '.join(SPARSE_FILES)}")
    p.set_defaults(func=ceiling_main, out_files=SPARSE_FILES)

    p = sub.add_parser("mean-shape", help="decode a prior's mean training latent ([A] App. C)",
                       description="Decode the mean of a prior's training latents ([A] App. C) on an isotropic grid "
                                   "of its frame: a quick look at what the prior learned. Priors that do not record "
                                   "a mean latent (the synthetic kidney and vertebra) decode the zero latent.")
    p.add_argument("--prior", required=True, help="bundled prior name or a prior file")
    p.add_argument("--spacing", type=positive_float, default=None,
                   help="isotropic voxel size of the output in mm (default: the prior's training spacing, e.g. "
                        "1.5 for the kidney priors, 1 for the vertebra ones)")
    add_threads_argument(p)
    p.add_argument("--out", required=True, help="output labelmap (.nii.gz, .nrrd)")
    p.set_defaults(func=mean_shape_main, out_kind="file")


def ceiling_main(args) -> int:
    import warnings
    from PatchSamplerLib.devices import resolve_device
    from PatchSamplerLib.method.inr import ShapePrior
    from PatchSamplerLib.reporting.outputs import write_sparse_outputs
    from PatchSamplerLib.sparse.ceiling import every_voxel_known, representation_ceiling
    from PatchSamplerLib.volume import read_labelmap
    device = resolve_device(args.device)
    args.prior = prior_from_input(args)
    prior = ShapePrior.load(args.prior, device=device)
    volume = read_labelmap(args.input, args.label)
    mismatch = structure_warning(args, prior)
    print(ceiling_estimate_line(volume, args.steps, args.points_per_step or None, device))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = representation_ceiling(volume, prior, args.steps, args.points_per_step or None, args.seed,
                                        str(device), input_side(args))
    for note in result.warnings:
        print(f"warning: {note}", file=sys.stderr)
    print_side(result.settings, args)
    result.warnings[:0] = [mismatch] if mismatch else []          # recorded in metrics.json
    m = result.metrics
    print(f"ceiling of {args.prior} on {args.input}: Dice {m['dice']:.3f}, ASD {m['asd_mm']:.2f} mm, "
          f"HD95 {m['hd95_mm']:.2f} mm ({result.settings['steps_run']} steps, {result.timings['total']:.1f} s)")
    if args.out:
        out = write_sparse_outputs(result, every_voxel_known(volume), volume, args.out, f"ceiling of {args.prior}: Dice {m['dice']:.3f}")
        print(f"outputs in {Path(out).resolve()}: {' '.join(SPARSE_FILES)}")
    return 0


def ceiling_estimate_line(volume, steps: int, points_per_step: int | None, device) -> str:
    """What the ceiling's fit will cost, printed before it: `steps` steps on `points_per_step`
    (None: all) of the input grid's voxels (`method.cost.estimate_fit`)."""
    from PatchSamplerLib.method.cost import estimate_fit
    voxels = int(np.prod(volume.shape))
    drawn = f"{min(points_per_step, voxels):,}" if points_per_step else "all"
    estimate = estimate_fit(voxels, steps, device, points_per_step=points_per_step)
    return f"ceiling fit: {steps} steps on {drawn} of {voxels:,} voxels a step: {estimate.describe()} (estimated)"


def mean_shape_main(args) -> int:
    from PatchSamplerLib.method.inr import ShapePrior
    from PatchSamplerLib.sparse.ceiling import mean_shape
    from PatchSamplerLib.volume import write_volume
    if args.spacing is not None and args.spacing <= 0:
        raise ValueError(f"--spacing must be positive, got {args.spacing}")
    prior = ShapePrior.load(args.prior)
    args.spacing = args.spacing or float(min(prior.spacing_mm))
    volume, what = mean_shape(prior, args.spacing)
    if not volume.mask.any():
        print(f"warning: {what} decodes to an empty shape", file=sys.stderr)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_volume(args.out, volume)
    print(f"mean shape of {args.prior} ({what}): {' x '.join(map(str, volume.shape))} voxels at {args.spacing:g} mm, "
          f"{volume.voxel_count:,} foreground; written to {Path(args.out).resolve()}")
    return 0
