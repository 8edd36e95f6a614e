"""`train-prior` and `train-sampler`: the INR prior [A §2, App. A] and the learned sampler
[T §3.6] trained on a folder of labelmaps, a dataset layout or a synthetic family."""
from __future__ import annotations

import argparse
import contextlib
import sys
import time
from dataclasses import asdict, fields
from pathlib import Path

from PatchSamplerLib.cli.arguments import FAMILIES, add_dataset_arguments, dataset_options
from PatchSamplerLib.data.augment import AugmentConfig, augment_shapes
from PatchSamplerLib.data.loaders import load_usable_dataset
from PatchSamplerLib.training.prior import PriorConfig, PriorTrainer


class Tee:
    """Write to a stream and a log file at once (the file gets whole lines only)."""

    def __init__(self, stream, path):
        self.stream, self.file = stream, open(path, "a")

    def write(self, text):
        self.stream.write(text)
        clean = text.split("\r")[-1]
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
                       description="Train one learned sampler for (N, K, T) and a prior [T §3.6]. --mode faithful: "
                                   "the thesis (all patch voxels, loss on every voxel of the grid); --mode fast: "
                                   "fit on every --patch-stride-th patch voxel and loss on --loss-voxels "
                                   "boundary-weighted voxels per shape (practical on a CPU).")
    add_sampler_arguments(p)
    p.set_defaults(func=train_sampler_main)


def add_data_arguments(p: argparse.ArgumentParser, count: int) -> None:
    """--data / --family, the layout options (`arguments.add_dataset_arguments`) and the
    synthetic-data options shared by the training commands."""
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", help="folder of binary labelmaps (NIfTI / NRRD), one shape per file")
    src.add_argument("--family", choices=FAMILIES, help="train on a synthetic shape family")
    p.add_argument("--count", type=int, default=count, help=f"synthetic: number of training shapes (default {count})")
    p.add_argument("--scale", type=float, default=1.0, help="synthetic: grid scale (1 = full resolution)")
    p.add_argument("--data-seed", type=int, default=0, help="synthetic: seed of the shape family")
    add_dataset_arguments(p)
    p.add_argument("--fold", type=int, default=None,
                   help="--data: train / validate on the train / val split of this cross-validation fold "
                        "(0-4; grouped by subject, 70/10/20). Default: the last --val-count shapes validate")
    p.add_argument("--val-count", type=int, default=8,
                   help="validation shapes (synthetic: extra shapes; folder: taken from the end)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")


FLAG_HELP = {"thick": "with --sparse-step: thick slices (mean over each window, threshold 0.5)"}


def add_config_arguments(p: argparse.ArgumentParser, config_class) -> None:
    """One --option per field of a config dataclass, with its default (booleans: flags)."""
    defaults = config_class()
    for f in fields(config_class):
        flag = "--" + f.name.replace("_", "-")
        default = getattr(defaults, f.name)
        if isinstance(default, bool):
            p.add_argument(flag, action="store_true", help=FLAG_HELP.get(f.name, "(ablation switch; default off)"))
            continue
        kind = float if f.name == "max_minutes" else type(default)
        p.add_argument(flag, type=kind, default=default, help=f"(default {default})")


def add_prior_arguments(p: argparse.ArgumentParser) -> None:
    add_data_arguments(p, count=220)
    p.add_argument("--out", required=True, help="output folder (prior.pt, last.pt, logs, curves.png)")
    add_config_arguments(p, PriorConfig)
    add_config_arguments(p, AugmentConfig)


def add_sampler_arguments(p: argparse.ArgumentParser) -> None:
    from PatchSamplerLib.training.sampler import SamplerConfig
    add_data_arguments(p, count=64)
    p.add_argument("--prior", required=True, help="bundled prior name (vertebra, kidney) or a prior file")
    p.add_argument("--out", required=True, help="output folder (sampler.pt, last.pt, logs, curves.png)")
    p.add_argument("--device", default="auto",
                   help="where the latent fits and the loss run: auto (CUDA when present), cpu or cuda "
                        "(the sampler network itself always runs on the CPU)")
    add_config_arguments(p, SamplerConfig)


def load_training_data(args):
    """-> (train volumes, validation volumes, description for the metadata)."""
    if args.family:
        from PatchSamplerLib.data.synthetic import FAMILY_VERSIONS, make_shapes
        vols = make_shapes(args.family, args.count + args.val_count, seed=args.data_seed, scale=args.scale)
        desc = {"data": f"synthetic {args.family}", "family_version": FAMILY_VERSIONS[args.family],
                "data_seed": args.data_seed, "scale": args.scale,
                "train_indices": [0, args.count - 1], "val_indices": [args.count, args.count + args.val_count - 1]}
        return vols[:args.count], vols[args.count:], desc
    options = dataset_options(args)
    items = load_usable_dataset(args.data, args.dataset, **options)
    desc = {"data": args.data, "dataset": args.dataset, **options}
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
    n_val = min(args.val_count, max(len(items) - 1, 0))
    desc["files"] = [i.name for i in items]
    return ([i.volume for i in items[:len(items) - n_val]], [i.volume for i in items[len(items) - n_val:]], desc)


@contextlib.contextmanager
def console_log(out: Path):
    """Everything printed inside also goes to out/train.log."""
    out.mkdir(parents=True, exist_ok=True)
    log = Tee(sys.stdout, out / "train.log")
    sys.stdout = log
    try:
        yield
    finally:
        sys.stdout = log.stream
        log.file.close()


def _config(args, config_class):
    return config_class(**{f.name: getattr(args, f.name) for f in fields(config_class)})


def _load_data(args):
    import torch
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.time()
    train, val, desc = load_training_data(args)
    print(f"{len(train)} training and {len(val)} validation shapes loaded in {time.time() - t0:.1f} s")
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
    out = Path(args.out)
    with console_log(out):
        cfg = _config(args, PriorConfig)
        train, val, desc = _load_data(args)
        train = _augmented(train, _config(args, AugmentConfig), desc)
        trainer = PriorTrainer(train, val, out, cfg, provenance=desc)
        if args.resume:
            trainer.resume()
        prior = trainer.run()
        print(f"best prior: {out / 'prior.pt'} (validation Dice {prior.metadata.get('val_dice')})")
    return 0


def imitation_shapes(args) -> list:
    """--init fps --init-count M: M more synthetic shapes, after the validation ones, that only
    the generator's FPS fit sees; [] otherwise."""
    if args.init != "fps" or not args.init_count:
        return []
    from PatchSamplerLib.data.synthetic import make_shapes
    start = args.count + args.val_count
    print(f"{args.init_count} extra shapes for the FPS fit: indices {start}-{start + args.init_count - 1}")
    return make_shapes(args.family, args.init_count, seed=args.data_seed, scale=args.scale, start=start)


def train_sampler_main(args) -> int:
    from PatchSamplerLib.devices import resolve_device
    from PatchSamplerLib.method.inr import ShapePrior
    from PatchSamplerLib.training.sampler import SamplerConfig, SamplerTrainer
    out = Path(args.out)
    cfg = _config(args, SamplerConfig)
    cfg.check()                                      # fail before loading anything
    if cfg.init_count and not args.family:
        raise ValueError("--init-count needs synthetic data (--family); "
                         "with --data the FPS fit uses the training shapes")
    prior = ShapePrior.load(args.prior, device=resolve_device(args.device))
    with console_log(out):
        train, val, desc = _load_data(args)
        extra = imitation_shapes(args)
        trainer = SamplerTrainer(train, val, prior, out, cfg, provenance=desc, init_shapes=extra)
        if args.resume:
            trainer.resume()
        model = trainer.run()
        print(f"best sampler: {out / 'sampler.pt'} (validation Dice {model.metadata.get('val_dice')}, "
              f"FPS {model.metadata.get('fps_val_dice')})")
    return 0
