"""`train-prior` and `train-sampler`: the INR prior [A §2, App. A] and the learned sampler
[T §3.6] trained on a folder of labelmaps, a dataset layout or a synthetic family."""
from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
import time
from dataclasses import asdict, fields
from pathlib import Path

from PatchSamplerLib.cli.arguments import (FAMILIES, add_dataset_arguments, add_threads_argument, data_structure_mismatch,
                                           dataset_options, existing_folder, non_negative_float, non_negative_int,
                                           positive_float, positive_int)
from PatchSamplerLib.data.augment import AugmentConfig, augment_shapes
from PatchSamplerLib.devices import resolve_device
from PatchSamplerLib.training.loop import earlier_run_files, prepare_run_folder
from PatchSamplerLib.training.prior import LR_SCHEDULES, PriorConfig, PriorTrainer
from PatchSamplerLib.training.sampler import ANCHORS, CONTINUATIONS, INITS, LEAD_STARTS, MODES


class Tee:
    """Write to a stream and a log file at once (the file gets whole lines only)."""

    def __init__(self, stream, path):
        self.stream, self.file = stream, open(path, "a")

    def write(self, text):
        self.stream.write(text)
        clean = re.sub(r" +\n", "\n", text.split("\r")[-1])       # a progress line's padding stays on the console
        if clean:
            self.file.write(clean)
            self.file.flush()

    def flush(self):
        self.stream.flush()

    def isatty(self):
        return hasattr(self.stream, "isatty") and self.stream.isatty()


def add_commands(sub) -> None:
    """Register `train-prior` and `train-sampler` on the subparsers `sub`."""
    p = sub.add_parser("train-prior", help="train the auto-decoder INR prior")
    add_prior_arguments(p)
    p.set_defaults(func=train_prior_main)
    p = sub.add_parser("train-sampler", help="train the learned patch sampler through a frozen prior",
                       description="Train one learned sampler for (N, K, T) and a prior [T §3.6] -- or, with --any-nk "
                                   "(#18), one for every N <= --n and odd K in 3-31, as the bundled any-(N, K) "
                                   "samplers were (Resources/Models/README.md). --mode faithful: "
                                   "the thesis (all patch voxels, loss on every voxel of the grid); --mode fast: "
                                   "fit on every --patch-stride-th patch voxel and loss on --loss-voxels "
                                   "boundary-weighted voxels per shape (practical on a CPU).")
    add_sampler_arguments(p)
    p.set_defaults(func=train_sampler_main)


def add_data_arguments(p: argparse.ArgumentParser, count: int) -> None:
    """--data / --family, the layout options (`arguments.add_dataset_arguments`) and the
    synthetic-data options shared by the training commands."""
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", type=existing_folder,
                     help="dataset folder (layout --dataset: by default binary labelmaps, NIfTI / NRRD, one shape "
                          "per file)")
    src.add_argument("--family", choices=FAMILIES, help="train on a synthetic shape family")
    p.add_argument("--count", type=positive_int, default=count, help=f"synthetic: number of training shapes (default {count})")
    p.add_argument("--scale", type=positive_float, default=1.0, help="synthetic: grid scale (1 = full resolution)")
    p.add_argument("--data-seed", type=non_negative_int, default=0, help="synthetic: seed of the shape family")
    add_dataset_arguments(p)
    p.add_argument("--one-side", choices=["left", "right"], default=None,
                   help="--data: train on one side of a paired organ: a shape whose name says the other side "
                        "(kidney_right) is mirrored onto this one, one whose name says no side is skipped; the "
                        "prior records the side, and runs mirror inputs of the other side onto it and back "
                        "(method/sides.py; the kidney-anatomical-left family is the synthetic one)")
    p.add_argument("--fold", type=non_negative_int, default=None,
                   help="--data: train / validate on the train / val split of this cross-validation fold "
                        "(0-4; grouped by subject, 70/10/20). Default: the last --val-count shapes validate")
    p.add_argument("--val-count", type=non_negative_int, default=None,
                   help=f"validation shapes (synthetic: extra shapes, default {SYNTHETIC_VAL_COUNT}; --data: taken from "
                        f"the end, default a fifth of the shapes, at most {SYNTHETIC_VAL_COUNT}, none below 5 shapes)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from OUT/last.pt")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an earlier run in --out (its models, last.pt, logs, curves); without it or "
                        "--resume a folder holding a run is refused before any work")
    add_threads_argument(p)


CONFIG_HELP = {
    # both trainers
    "epochs": "epochs in all (a resumed run continues up to it)",
    "batch_size": "shapes per optimiser step",
    "surface_fraction": "share of the drawn points that lie within --surface-band-mm of the surface",
    "surface_band_mm": "width of the surface band in mm",
    "val_every": "epochs between validations (the last epoch is always validated)",
    "max_minutes": "wall-clock budget in minutes of training, resumes added up (stops after the epoch that "
                   "exceeds it, validated; default: none)",
    "seed": "seed of the latent initialisation, point draws and batch order",
    "SamplerConfig.seed": "seed of the sampler network's initial weights, the point draws and the batch order",
    "fit_lr": "Adam learning rate of the latent fit (as at inference)",
    # prior [A App. A]
    "points_per_shape": "points drawn per shape and step (the paper: 64^3)",
    "lr_net": "Adam learning rate of the decoder",
    "lr_latent": "Adam learning rate of the training latents",
    "latent_init_std": "standard deviation of the initial latents",
    "latent_reg": "weight of the latent L2 penalty",
    "reg_ramp_epochs": "epochs over which the latent penalty ramps in linearly (0: at once)",
    "lr_schedule": "constant (the paper) or cosine (decay to 10 %% over --epochs)",
    "patience": "validations without improvement before early stopping",
    "val_n": "validation: FPS patches N per held-out shape",
    "val_k": "validation: patch size K in voxels",
    "val_t": "validation: latent-fit steps T",
    "val_fit_lr": "validation: Adam learning rate of the latent fit",
    "sparse_step": "> 0: train from every STEP-th slice only, no full-resolution voxel [A §3.2] (0: full volumes)",
    "sparse_axis": "slice axis of --sparse-step: 0 1 2 = i j k",
    "sparse_val_share": "sparse: share of training shapes validated on held-out slices",
    "step_memory_gb": "GB of autograd graph one backward pass may hold: a step is backpropagated in parts "
                      "of at most this many (same gradient; the expected peak is printed at the start)",
    # sampler [T §3.6, §4.4]
    "n": "patches N the sampler places", "k": "patch size K in voxels", "t": "latent-fit steps T it trains through",
    "mode": "faithful: the thesis (every patch voxel in the fit, loss on every voxel of the grid); fast: fit on "
            "every --patch-stride-th patch voxel, loss on --loss-voxels boundary-weighted voxels (practical on a CPU)",
    "init": "random: the thesis's start; fps: first fit the generator to FPS points; file: start from --init-from",
    "init_from": "with --init file: the sampler file whose weights start the training",
    "anchor": "none: the thesis's free generator; fps: the generator learns offsets from the cloud's FPS points "
              "(FPS from the point farthest from the centroid); central: the same, FPS from the point nearest it; "
              "lead: the generator places the first --lead-points centres, the rest are FPS continued from them",
    "lead_points": "--anchor lead: how many centres the generator places before FPS continues (1-4)",
    "continuation": "--anchor lead: where FPS continues after the lead: cloud (the 2,048-point cloud, each centre "
                    "soft-projected), voxels (all occupied voxels, as the FPS baseline) or central-voxels (the voxel "
                    "nearest the centroid, then FPS over the voxels)",
    "lead_start": "--anchor lead: free (the thesis's generator places the lead) or central (offsets, zero at the "
                  "start, from the cloud's FPS points from the point nearest its centroid)",
    "init_steps": "--init fps: generator steps of the FPS fit",
    "init_lr": "--init fps: Adam learning rate of the FPS fit (cosine decay to 0)",
    "init_count": "--init fps with --family: extra synthetic shapes seen only by the FPS fit",
    "lr": "Adam learning rate of the generator",
    "lr_step_epoch": "StepLR: the learning rate is multiplied by --lr-gamma after this many epochs",
    "lr_gamma": "StepLR factor",
    "neighbours": "soft projection: neighbours k of each generated point",
    "initial_temperature": "soft projection: temperature t at the start (the learned t is saved)",
    "repulsion_weight": "weight of the repulsion term of the sampler loss",
    "patch_stride": "fast mode: fit on every s-th patch voxel per axis",
    "loss_voxels": "fast mode: voxels of the reconstruction loss per shape and step",
    "chunk": "voxels per decoder call (memory vs speed)",
    "fit_points": "--any-nk, fast mode: patch voxels per step of the unrolled latent fit (the fast fit, unrolled)",
    "min_prefix": "--any-nk: the smallest N the training schedule draws (1: every prefix size)",
    # augmentation
    "augment_copies": "augmented copies added per training shape (0: off)",
    "augment_rotation_deg": "augmentation: rotation uniform in +- this many degrees about each anatomical axis",
    "augment_scale": "augmentation: per-axis scale factor uniform in 1 +- this",
    "augment_deform_mm": "augmentation: standard deviation of the B-spline deformation in mm",
    "augment_deform_spacing_mm": "augmentation: control-point spacing of the deformation in mm",
    "augment_seed": "augmentation: seed of the random transforms",
}
"""What each config field does, for --help (the configs' own comments say the same, with sources)."""

CONFIG_CHOICES = {"mode": MODES, "init": INITS, "anchor": ANCHORS, "lr_schedule": LR_SCHEDULES,
                  "continuation": CONTINUATIONS, "lead_start": LEAD_STARTS}

FLAG_HELP = {"thick": "with --sparse-step: thick slices (mean over each window, threshold 0.5)",
             "proximity_max": "ablation: add SampleNet's max term to the proximity loss",
             "coverage": "ablation: SampleNet's coverage term instead of repulsion",
             "projection_loss": "ablation: add t^2 to the sampler loss",
             "soft_labels": "trilinear patch labels, differentiable in the centres (not in the thesis)",
             "continuation_gradient": "--continuation voxels: the loss of the FPS-continued centres reaches the lead "
                                      "through a soft FPS over the same voxels (straight-through; values unchanged)",
             "select_continuation": "--any-nk --anchor lead: after training, validate the kept sampler with every "
                                    "continuation and save it with the best one (three more validations)",
             "any_nk": "train one sampler for every N <= --n (up to 64) and every odd K in 3-31: ordered centres "
                       "(the first N are the N patches), K an input; --k is then unused (training.any_sampler)"}


ZERO_ALLOWED = {"init_steps", "reg_ramp_epochs"}      # integer settings where 0 is meaningful despite a default >= 1
POSITIVE_FLOATS = {"max_minutes", "initial_temperature", "augment_deform_spacing_mm", "step_memory_gb"}   # besides learning rates


def config_value_type(name: str, default):
    """The argparse type of a config field: integers >= 1 (>= 0 when the default is 0, for seeds
    and axes, and for ZERO_ALLOWED), learning rates and POSITIVE_FLOATS > 0, other numbers >= 0,
    strings as they are (the config's `check()` validates names)."""
    if isinstance(default, str):
        return str
    if isinstance(default, int):
        return positive_int if default >= 1 and name not in ZERO_ALLOWED else non_negative_int
    if name in POSITIVE_FLOATS or "lr" in name.split("_"):
        return positive_float
    return non_negative_float


def add_config_arguments(p: argparse.ArgumentParser, config_class) -> None:
    """One --option per field of a config dataclass, with its default (booleans: flags) and a
    type that refuses out-of-range numbers at parse time (`config_value_type`)."""
    defaults = config_class()
    for f in fields(config_class):
        flag = "--" + f.name.replace("_", "-")
        default = getattr(defaults, f.name)
        if isinstance(default, bool):
            p.add_argument(flag, action="store_true", help=FLAG_HELP.get(f.name, "(ablation switch; default off)"))
            continue
        kind = positive_float if f.name == "max_minutes" else config_value_type(f.name, default)
        help_text = CONFIG_HELP.get(f"{config_class.__name__}.{f.name}", CONFIG_HELP.get(f.name, ""))
        shown = "" if default in (None, "") or "default" in help_text else f" (default {default})"
        p.add_argument(flag, type=kind, default=default, choices=CONFIG_CHOICES.get(f.name),
                       help=f"{help_text}{shown}".strip())


def add_prior_arguments(p: argparse.ArgumentParser) -> None:
    add_data_arguments(p, count=220)
    p.add_argument("--out", required=True, help="output folder (prior.pt, last.pt, logs, curves.png)")
    p.add_argument("--device", default="auto",
                   help="auto (default: CUDA when present), cpu or cuda: where the decoder, the latents and each "
                        "step's points are. "
                        "Under torchrun --nproc-per-node G: G processes with DistributedDataParallel (cuda: one GPU "
                        "each, NCCL; cpu: gloo), --batch-size shapes per step in all, rank 0 writes")
    add_config_arguments(p, PriorConfig)
    add_config_arguments(p, AugmentConfig)


def add_sampler_arguments(p: argparse.ArgumentParser) -> None:
    from PatchSamplerLib.training.sampler import SamplerConfig
    add_data_arguments(p, count=64)
    p.add_argument("--prior", required=True,
                   help="bundled prior name (kidney, kidney-anatomical, vertebra, vertebra-anatomical, ...) or a prior file")
    p.add_argument("--out", required=True, help="output folder (sampler.pt, last.pt, logs, curves.png)")
    p.add_argument("--device", default="auto",
                   help="where the latent fits and the loss run: auto (CUDA when present), cpu or cuda "
                        "(the sampler network itself always runs on the CPU)")
    add_config_arguments(p, SamplerConfig)


def one_sided(items, side: str):
    """`data.folder.to_one_side` of the loaded items, each item it drops reported; ValueError
    when none is left."""
    from PatchSamplerLib.data.folder import to_one_side
    kept = to_one_side(items, side)
    for path, reason in kept.dropped[len(items.dropped):]:
        print(f"skipped {path}: {reason}")
    if not kept:
        raise ValueError(f"--one-side {side}: no shape's name says left or right")
    return kept


def load_training_data(args):
    """-> (train volumes, validation volumes, description for the metadata)."""
    dataset_options(args)                                   # --structure, --levels, --label: refused with --family
    if args.family and getattr(args, "one_side", None):
        raise ValueError("--one-side applies to --data; a family is one-sided by its name (kidney-anatomical-left)")
    if args.family:
        from PatchSamplerLib.data.synthetic import CANONICAL_SIDES, FAMILY_VERSIONS, make_shapes
        args.val_count = validation_count(args.val_count)
        vols = make_shapes(args.family, args.count + args.val_count, seed=args.data_seed, scale=args.scale)
        desc = {"data": f"synthetic {args.family}", "family_version": FAMILY_VERSIONS[args.family],
                **({"canonical_side": CANONICAL_SIDES[args.family]} if args.family in CANONICAL_SIDES else {}),
                "data_seed": args.data_seed, "scale": args.scale,
                "train_indices": [0, args.count - 1], "val_indices": [args.count, args.count + args.val_count - 1]}
        return vols[:args.count], vols[args.count:], desc
    from PatchSamplerLib.data.loaders import load_usable_dataset
    options = dataset_options(args)
    items = load_usable_dataset(args.data, args.dataset, **options)
    desc = {"data": args.data, "dataset": args.dataset, **options}
    if getattr(args, "one_side", None):
        items = one_sided(items, args.one_side)
        desc["canonical_side"] = args.one_side
    if args.fold is not None:
        from PatchSamplerLib.data.splits import cross_validation_folds
        folds = cross_validation_folds(items.subjects)
        if not 0 <= args.fold < len(folds):
            raise ValueError(f"--fold must be from 0 to {len(folds) - 1}, got {args.fold}")
        fold = folds[args.fold]
        train, val = [items[i] for i in fold.train], [items[i] for i in fold.val]
        desc.update(fold=args.fold, train=[i.name for i in train], val=[i.name for i in val],
                    test=[items[i].name for i in fold.test])
        return [i.volume for i in train], [i.volume for i in val], desc
    n_val = validation_count(args.val_count, len(items))
    check_training_count(len(items), n_val)
    desc["files"] = [i.name for i in items]
    return ([i.volume for i in items[:len(items) - n_val]], [i.volume for i in items[len(items) - n_val:]], desc)


def rounded(value) -> str:
    """A validation score as printed: 4 decimals, or "none" (no validation ran)."""
    return "none" if value is None else f"{value:.4f}"


def plural(count: int, noun: str) -> str:
    """"1 training shape", "2 training shapes"."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


SYNTHETIC_VAL_COUNT = 8     # validation shapes of a synthetic family, and the most --val-count takes of a dataset
MIN_TRAINING_SHAPES = 2


def validation_count(given: int | None, available: int | None = None) -> int:
    """--val-count, or by default SYNTHETIC_VAL_COUNT extra shapes of a synthetic family
    (`available` None), or a fifth of a dataset's `available` shapes, at most
    SYNTHETIC_VAL_COUNT (none below 5 shapes)."""
    if given is not None:
        return int(given)
    return SYNTHETIC_VAL_COUNT if available is None else min(SYNTHETIC_VAL_COUNT, available // 5)


def check_training_count(available: int, n_val: int) -> None:
    """ValueError when the validation split of `available` dataset shapes leaves fewer than
    MIN_TRAINING_SHAPES to train on (a model of one shape learns that shape only)."""
    left = available - n_val
    if left < MIN_TRAINING_SHAPES:
        raise ValueError(f"{available} usable shape{'s' if available != 1 else ''} and {n_val} for validation leave "
                         f"{max(left, 0)} to train on; at least {MIN_TRAINING_SHAPES} are needed: give more shapes or "
                         "a smaller --val-count (0: no validation)")


@contextlib.contextmanager
def console_log(out: Path):
    """Everything printed inside also goes to out/train.log. When what runs inside fails before
    the training wrote anything (no last.pt, model or train_log.jsonl: bad data, too few shapes),
    the train.log and the folder it created are removed again, so that the corrected command is
    not refused as a second run into the same folder."""
    created = not out.exists()
    had_log = (out / "train.log").exists()
    out.mkdir(parents=True, exist_ok=True)
    log = Tee(sys.stdout, out / "train.log")
    sys.stdout = log
    try:
        yield
    except BaseException:
        sys.stdout = log.stream
        log.file.close()
        if not had_log and not earlier_run_files(out, ("last.pt", "prior.pt", "sampler.pt", "train_log.jsonl")):
            (out / "train.log").unlink(missing_ok=True)
            if created and not any(out.iterdir()):
                out.rmdir()
        raise
    finally:
        sys.stdout = log.stream
        log.file.close()


def _config(args, config_class):
    return config_class(**{f.name: getattr(args, f.name) for f in fields(config_class)})


def _load_data(args):
    t0 = time.time()
    train, val, desc = load_training_data(args)
    print(f"{plural(len(train), 'training shape')} and {plural(len(val), 'validation shape')} loaded in "
          f"{time.time() - t0:.1f} s" + ("" if val else " (no validation: the epoch with the best training score is kept)"))
    desc["command"] = args.command_line
    return train, val, desc


def _augmented(train: list, cfg: AugmentConfig, desc: dict) -> list:
    """The training shapes plus their augmented copies (`data.augment`), recorded in `desc`."""
    if not cfg.augment_copies:
        return train
    t0 = time.time()
    shapes, skipped = augment_shapes(train, cfg)
    desc["augmentation"] = dict(asdict(cfg), added=len(shapes) - len(train), skipped=skipped)
    print(f"augmentation: {len(shapes) - len(train)} copies added ({skipped} skipped: every draw left the grid) "
          f"in {time.time() - t0:.1f} s")
    return shapes


def train_prior_main(args) -> int:
    """train-prior, in one process or as one rank of a torchrun process group."""
    from PatchSamplerLib.training.distributed import finish, from_environment
    distributed = from_environment(args.device)
    try:
        with quiet_unless_main(distributed):
            return _train_prior(args, distributed)
    finally:
        finish(distributed)


def _train_prior(args, distributed) -> int:
    out = Path(args.out)
    if distributed:
        distributed.on_main(lambda: prepare_run_folder(out, args.resume, args.overwrite))
    else:
        prepare_run_folder(out, args.resume, args.overwrite)
    with console_log(out) if distributed is None or distributed.main else contextlib.nullcontext():
        cfg = _config(args, PriorConfig)
        train, val, desc = _load_data(args)
        train = _augmented(train, _config(args, AugmentConfig), desc)
        device = distributed.device if distributed else resolve_device(args.device)
        if distributed:
            desc["processes"] = distributed.world
            print(f"{distributed.world} processes (DistributedDataParallel, {device.type}): {cfg.batch_size} shapes "
                  f"per step in all")
        trainer = PriorTrainer(train, val, out, cfg, provenance=desc, device=device, distributed=distributed,
                               log=print if distributed is None or distributed.main else _silent)
        if args.resume:
            trainer.resume()
        prior = trainer.run()
        print(f"best prior: {out / 'prior.pt'} (validation Dice {rounded(prior.metadata.get('val_dice'))})")
    return 0


def _silent(*_args, **_kwargs) -> None:
    """The log of the processes other than rank 0."""


@contextlib.contextmanager
def quiet_unless_main(distributed):
    """Ranks other than 0 print nothing and show no progress (their errors still go to stderr)."""
    if distributed is None or distributed.main:
        yield
        return
    from PatchSamplerLib.progress import console_progress
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink), console_progress(sink, bars=False):
        yield


def imitation_shapes(args) -> list:
    """--init fps --init-count M: M more synthetic shapes, after the validation ones, that only
    the generator's FPS fit sees; [] otherwise."""
    if args.init != "fps" or not args.init_count:
        return []
    from PatchSamplerLib.data.synthetic import make_shapes
    start = args.count + args.val_count
    print(f"{args.init_count} extra shapes for the FPS fit: indices {start}-{start + args.init_count - 1}")
    return make_shapes(args.family, args.init_count, seed=args.data_seed, scale=args.scale, start=start)


def check_data_side(args, metadata: dict) -> None:
    """ValueError when the sampler's training shapes are not on the side the prior was trained
    on (`method.sides`): a one-sided prior needs a one-sided family or --one-side of its side,
    and a prior of both sides the opposite."""
    from PatchSamplerLib.data.synthetic import CANONICAL_SIDES
    data_side = CANONICAL_SIDES.get(args.family) if args.family else getattr(args, "one_side", None)
    prior_side = metadata.get("canonical_side")
    if data_side != prior_side:
        wanted = (f"shapes of its {prior_side} side (--one-side {prior_side}, or the kidney-anatomical-left family)"
                  if prior_side else "shapes of both sides (no --one-side, not a -left family)")
        raise ValueError(f"the prior was trained on {prior_side or 'both sides'} and the sampler's training shapes "
                         f"are {data_side or 'of both sides'}: give it {wanted}")


def train_sampler_main(args) -> int:
    from PatchSamplerLib.devices import resolve_device
    from PatchSamplerLib.method.inr import ShapePrior
    from PatchSamplerLib.training.any_sampler import AnySamplerTrainer
    from PatchSamplerLib.training.sampler import SamplerConfig, SamplerTrainer
    out = Path(args.out)
    cfg = _config(args, SamplerConfig)
    cfg.check()                                      # fail before loading anything
    if cfg.init_count and not args.family:
        raise ValueError("--init-count needs synthetic data (--family); "
                         "with --data the FPS fit uses the training shapes")
    prior = ShapePrior.load(args.prior, device=resolve_device(args.device))
    mismatch = data_structure_mismatch(args, prior)
    if mismatch:                                     # hours spent on a sampler of no use: refused
        raise ValueError(f"training data and prior differ: {mismatch}")
    check_data_side(args, prior.metadata)
    prepare_run_folder(out, args.resume, args.overwrite)
    with console_log(out):
        train, val, desc = _load_data(args)
        extra = imitation_shapes(args)
        trainer = (AnySamplerTrainer if cfg.any_nk else SamplerTrainer)(train, val, prior, out, cfg, provenance=desc,
                                                                          init_shapes=extra)
        if args.resume:
            trainer.resume()
        model = trainer.run()
        print(f"best sampler: {out / 'sampler.pt'} (validation Dice {rounded(model.metadata.get('val_dice'))}, "
              f"FPS {rounded(model.metadata.get('fps_val_dice'))})")
    return 0
