"""`evaluate`: samplers over an N x K x T grid on held-out shapes [T ch. 5], with the presets
(`PRESETS`: the thesis protocol and a reduced one for a 2-core CPU) and cross-validation."""
from __future__ import annotations

import sys
from pathlib import Path

from PatchSamplerLib.cli.arguments import (FAMILIES, add_dataset_arguments, add_device_argument, add_threads_argument,
                                           data_structure_mismatch, dataset_options, existing_folder, non_negative_float,
                                           non_negative_int, parse_configs, parse_ints, parse_samplers, positive_float,
                                           positive_int)

# What --preset fills in (options given on the command line win). full: the thesis protocol
# [T §4.1, §5]: N 4, 8, 12 x K 9, 11, 13 x T 33, 66, 100; 30 runs; 100 shapes in 5 folds.
PRESETS = {
    "full": dict(configs=",".join(f"{n}x{k}" for n in (4, 8, 12) for k in (9, 11, 13)), t="33,66,100",
                 samplers="learned,fps,random", runs=30, count=100, folds=5, train_missing=True),
    "cpu": dict(configs="4x9,8x9,4x13", t="33,100", samplers="learned,fps,random", runs=5, count=8, folds=0,
                train_missing=False),
}
DEFAULTS = dict(configs="4x9,8x11,12x13", t="100", samplers="fps,random", runs=1, count=20, folds=0,
                train_missing=False)


def add_commands(sub) -> None:
    """Register `evaluate` on the subparsers `sub`."""
    p = sub.add_parser("evaluate", help="score FPS / random sampling over an (N, K) grid on held-out shapes")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--family", choices=FAMILIES, help="synthetic family")
    src.add_argument("--data", type=existing_folder, help="dataset folder (layout: --dataset)")
    p.add_argument("--preset", choices=list(PRESETS),
                   help="full: the thesis protocol (N 4, 8, 12 x K 9, 11, 13 x T 33, 66, 100; learned, FPS, RS; "
                        "30 runs; 100 shapes in 5 folds, the missing per-fold samplers trained); cpu: 4x9, 8x9, "
                        "4x13 x T 33, 100, 5 runs, 8 held-out shapes, the bundled samplers, no folds. "
                        "Options given explicitly override it")
    p.add_argument("--count", type=positive_int, help="number of shapes (default 20)")
    p.add_argument("--data-seed", type=non_negative_int, default=1,
                   help="synthetic: family seed (default 1; the bundled priors were trained on seed 0)")
    p.add_argument("--scale", type=positive_float, default=1.0, help="synthetic: grid scale (1 = full resolution)")
    p.add_argument("--configs", help="N x K list (default 4x9,8x11,12x13)")
    p.add_argument("--t", help="T list, e.g. 33,66,100 (default 100)")
    p.add_argument("--samplers",
                   help="comma list of fps, random, learned (learned: the bundled sampler of the prior per (N, K); "
                        "default fps,random)")
    p.add_argument("--runs", type=positive_int,
                   help="runs (seeds) per case for fps and random (learned is deterministic: one run; default 1)")
    p.add_argument("--figures", action="store_true",
                   help="also draw dice_surface.png (mean Dice over N, K per T), and errors_<sampler>.png and "
                        "placement.png for the first shape at the first (N, K) and the largest T")
    add_dataset_arguments(p)
    p.add_argument("--folds", type=positive_int,
                   help="cross-validation folds (grouped by subject; 5: 70/10/20 train/val/test): every shape is "
                        "scored in its fold's test split with that fold's learned samplers (default 0: no folds, "
                        "the bundled samplers on all shapes)")
    p.add_argument("--only-folds", help="--folds: evaluate only these folds, e.g. 0 or 0,1")
    p.add_argument("--sampler-dir", help="--folds: per-fold samplers DIR/fold<f>/sampler_n<N>_k<K>_t<T>.pt "
                                         "(default OUT/samplers); without --folds: the learned samplers "
                                         "DIR/sampler_n<N>_k<K>_t<T>.pt, else DIR/sampler_any_t<T>.pt (one "
                                         "sampler for any N and K), else any sampler file in DIR or its "
                                         "subfolders recorded as trained for that N, K, T (train-sampler's "
                                         "OUT/sampler.pt: give its OUT, or a folder of such OUTs), instead of "
                                         "the bundled ones")
    p.add_argument("--train-missing", action="store_true", default=None,
                   help="--folds: train the missing per-fold samplers on the fold's train/validation split")
    p.add_argument("--train-mode", choices=["fast", "faithful"], default="fast", help="--train-missing: fidelity mode")
    p.add_argument("--train-epochs", type=positive_int, default=400, help="--train-missing: epochs (the thesis: 400)")
    p.add_argument("--train-minutes", type=positive_float, help="--train-missing: wall-clock budget per sampler")
    p.add_argument("--prior", required=True,
                   help="bundled prior name (kidney, kidney-anatomical, vertebra, vertebra-anatomical, ...) or a prior file")
    p.add_argument("--fit", choices=["adam", "fast"], default="adam",
                   help="latent fit: adam (default: the thesis protocol, every step on all patch voxels) or fast "
                        "(the product's default: every step on a boundary-weighted eighth of them, method.fitting)")
    p.add_argument("--fit-lr", type=positive_float, default=1e-2,
                   help="Adam learning rate of the latent fit (default 0.01)")
    add_device_argument(p)
    add_threads_argument(p)
    add_executor_arguments(p)
    p.add_argument("--out", required=True,
                   help="output folder (cases.csv, table.md, settings.json); resumable: the same command (or one "
                        "with more configs, T, samplers, runs or shapes) adds what is missing; other prior, data, "
                        "fit or sampler folder are refused")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the results in --out (cases.csv, failures.csv, table.md, settings.json) instead")
    p.set_defaults(func=evaluate_main)


def add_executor_arguments(p) -> None:
    """--executor local|ray and the Ray options (`experiments.executors`)."""
    p.add_argument("--executor", choices=["local", "ray"], default="local",
                   help="local: the runs one after another in this process; ray: each run (and each missing "
                        "per-fold sampler training) a Ray task, on a local Ray instance or the cluster at --address "
                        "(needs `pip install -r requirements-cluster.txt`). Same cases.csv rows either way")
    p.add_argument("--address", help="--executor ray: the running Ray cluster to use (auto: the one started on "
                                     "this node with `ray start`, or HEAD:6379; default: start a local instance "
                                     "with every CPU of this machine)")
    p.add_argument("--cpus-per-task", type=positive_int, default=1,
                   help="--executor ray: CPUs of each task, and torch's threads in it (default 1)")
    p.add_argument("--gpus-per-task", type=non_negative_float, default=0.0,
                   help="--executor ray: GPUs of each task (e.g. 0.25: four runs share a GPU; default 0). With "
                        "--device auto, > 0 runs on CUDA and 0 on the CPU")


def apply_preset(args) -> None:
    """Fill the grid options the command line left unset (None) from --preset, else the defaults."""
    chosen = PRESETS[args.preset] if getattr(args, "preset", None) else DEFAULTS
    for key, value in chosen.items():
        if getattr(args, key) is None:
            setattr(args, key, value)


def evaluation_cases(args) -> list:
    """[(name, BinaryVolume)] of the held-out shapes: a synthetic family's seed, or a dataset's items."""
    from PatchSamplerLib.data.synthetic import make_shape
    if args.family:
        return [(f"{args.family}_{args.data_seed}_{i:04d}", make_shape(args.family, args.data_seed, i, args.scale))
                for i in range(args.count)]
    return [(item.name, item.volume) for item in evaluation_items(args)]      # unique: subject/structure, path


def evaluation_items(args):
    """The ShapeDataset to evaluate on: `count` synthetic shapes (each its own subject) or the
    first `count` items of the dataset at --data (layout --dataset; TotalSegmentator: the
    kidneys or the vertebrae of --levels, --structure), loaded as train-prior loads them
    (`loaders.load_usable_dataset`). ValueError for bad --structure / --levels or no usable item."""
    from PatchSamplerLib.data.folder import ShapeDataset
    from PatchSamplerLib.data.loaders import load_synthetic, load_usable_dataset
    if args.family:
        return load_synthetic(args.family, args.count, args.data_seed, args.scale)
    items = load_usable_dataset(args.data, args.dataset, **dataset_options(args))
    return ShapeDataset(items[:args.count], items.dropped)


def evaluate_folds(args, grid, prior, executor) -> tuple:
    """--folds F: cross-validation -> (cases.csv, the test cases of all folds, the first
    evaluated fold's learned samplers {(N, K, T): SamplerModel}); the trainings and runs go
    through `executor`."""
    from PatchSamplerLib.experiments.crossval import run_cross_validation, split_folds
    items = evaluation_items(args)
    warn_seen_shapes(args, [item.name for item in items], {"the prior": prior.metadata})
    folds = split_folds(items, args.folds, side=prior.metadata.get("canonical_side"))
    if args.only_folds:
        wanted = parse_ints(args.only_folds, "--only-folds")
        folds = [f for f in folds if f.index in wanted]
    train = None
    if args.train_missing:
        train = dict(mode=args.train_mode, epochs=args.train_epochs, max_minutes=args.train_minutes)
    sampler_dir = args.sampler_dir or str(Path(args.out) / "samplers")
    path, models = run_cross_validation(folds, grid, prior, args.out, sampler_dir, train, executor=executor)
    return path, [case for f in folds for case in f.test], models[0] if models else {}


def run_device(args) -> str:
    """Where the runs compute: --device resolved here for the local executor; for Ray, on the
    workers (auto: CUDA when --gpus-per-task > 0, else the CPU), so this machine needs no GPU."""
    from PatchSamplerLib.devices import resolve_device
    if args.executor == "local":
        return str(resolve_device(args.device))
    if args.device == "auto":
        return "cuda" if args.gpus_per_task > 0 else "cpu"
    return args.device


def evaluate_main(args) -> int:
    from PatchSamplerLib.experiments.evaluation import EvaluationGrid, evaluation_figures
    from PatchSamplerLib.experiments.crossval import check_sampler_dir
    from PatchSamplerLib.experiments.tables import resume_with_same_settings
    from PatchSamplerLib.experiments.executors import make_executor
    from PatchSamplerLib.method.inr import ShapePrior
    apply_preset(args)
    dataset_options(args)                            # bad --structure / --levels: fail before loading anything
    device = run_device(args)                        # once: every run uses the prior where it is loaded
    grid = EvaluationGrid(parse_configs(args.configs), parse_ints(args.t), parse_samplers(args.samplers), args.runs,
                          args.fit_lr, device, args.fit)
    prior = ShapePrior.load(args.prior, device=device if args.executor == "local" else "cpu")
    mismatch = data_structure_mismatch(args, prior)
    if mismatch:
        print(f"warning: {mismatch}", file=sys.stderr)
    if args.sampler_dir and not args.folds:
        check_sampler_dir(args.sampler_dir)             # before settings.json names it
    resume_with_same_settings(args.out, evaluation_settings(args, prior), args.overwrite)
    executor = make_executor(args.executor, args.address, args.cpus_per_task, args.gpus_per_task)
    try:
        path, cases, learned_models = evaluate_grid(args, grid, prior, executor)
    finally:
        executor.close()
    write_report(args, grid, path)
    if args.figures:
        evaluation_figures(path, cases[0], grid, prior, args.out, learned_models)
    return failure_status(args.out)


def evaluation_settings(args, prior) -> dict:
    """What the rows of an evaluation's cases.csv mean beyond their columns (`tables.
    resume_with_same_settings`): the prior (its weights' SHA-256: the same prior under another
    path is the same), the fit, the shapes' source and the learned samplers' folder."""
    source = ({"family": args.family, "data_seed": args.data_seed, "scale": args.scale} if args.family else
              {"data": str(Path(args.data).resolve()), "dataset": args.dataset, **dataset_options(args)})
    sampler_dir = args.sampler_dir or (str(Path(args.out) / "samplers") if args.folds else None)
    return {"prior": prior.fingerprint(), "fit": args.fit, "fit_lr": args.fit_lr, "shapes": source,
            "folds": args.folds or 0, "sampler_dir": str(Path(sampler_dir).resolve()) if sampler_dir else None}


def evaluate_grid(args, grid, prior, executor) -> tuple:
    """The runs of the grid (folds or not) -> (cases.csv, the cases, the learned samplers of the
    figures: None for the bundled ones)."""
    from PatchSamplerLib.experiments.crossval import folder_samplers
    from PatchSamplerLib.experiments.evaluation import run_cases
    if args.folds:
        return evaluate_folds(args, grid, prior, executor)
    learned_models = None                       # the bundled samplers
    if args.sampler_dir and "learned" in grid.samplers:
        learned_models = folder_samplers(args.sampler_dir, grid.configs, grid.ts)
    cases = evaluation_cases(args)
    models = {"the prior": prior.metadata, **{f"the sampler for N={n}, K={k}, T={t}": model.metadata
                                              for (n, k, t), model in (learned_models or {}).items()}}
    warn_seen_shapes(args, [name for name, _ in cases], models)
    return run_cases(cases, grid, prior, args.out, learned_models=learned_models, executor=executor), cases, \
        learned_models


def shapes_seen_in_training(metadata: dict, args, names: list) -> list:
    """Those of the evaluated shapes' `names` (in order; synthetic: index i is shape i of the
    family seed) that a prior or sampler trained or validated on, as far as its `metadata`
    records it: the synthetic family, seed, scale and index ranges, or the names of the dataset
    items (train-prior / train-sampler --data: "files", a fold's "train" and "val")."""
    if args.family:
        if (metadata.get("data") != f"synthetic {args.family}" or metadata.get("data_seed") != args.data_seed
                or metadata.get("scale", 1.0) != args.scale):
            return []
        used = set()
        for key in ("train_indices", "val_indices"):
            lo, hi = metadata.get(key) or (0, -1)
            used |= set(range(int(lo), int(hi) + 1))
        return [name for i, name in enumerate(names) if i in used]
    seen = {str(name) for key in ("files", "train", "val") for name in metadata.get(key) or ()}
    return [name for name in names if name in seen]


def warn_seen_shapes(args, names: list, models: dict) -> None:
    """A warning for each model ({what: metadata}) that saw some of the evaluated shapes in its
    training or validation: their scores are not held-out (use other shapes, or --folds)."""
    for what, metadata in models.items():
        seen = shapes_seen_in_training(metadata, args, names)
        if seen:
            print(f"warning: {len(seen)} of the {len(names)} evaluated shapes were training or validation shapes of "
                  f"{what} (its metadata: data {metadata.get('data')}; e.g. {seen[0]}): their scores are not "
                  "held-out; evaluate other shapes (synthetic: another --data-seed) or use --folds", file=sys.stderr)


def write_report(args, grid, path) -> None:
    """table.md (with the command line) from cases.csv, printed too."""
    from PatchSamplerLib.experiments.tables import evaluation_report
    shown = "".join(f", {key} {value}" for key, value in dataset_options(args).items())
    title = f"{args.family or args.data}{shown}, prior {args.prior}, T = {', '.join(map(str, grid.ts))}"
    table = evaluation_report(path, title)
    (Path(args.out) / "table.md").write_text(table + f"\nCommand: `{args.command_line}`\n")
    print(table)


def failure_status(out) -> int:
    """0, or 1 with a message on stderr when runs failed on the workers and are not in cases.csv."""
    import sys
    from PatchSamplerLib.experiments.evaluation import unresolved_failures
    failed = unresolved_failures(out)
    if not failed:
        return 0
    print(f"error: {len(failed)} runs failed twice and are missing from cases.csv and table.md (their errors: "
          f"{Path(out) / 'failures.csv'}); run the same command again to retry them", file=sys.stderr)
    return 1
