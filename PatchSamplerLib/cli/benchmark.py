"""`benchmark`: time and memory of the sampler and the reconstruction on this machine
(`experiments.benchmark`), with --training the sampler training step, faithful vs fast mode
(`experiments.benchmark_training`), or with --fit the fast latent fit vs the thesis's
(`experiments.fit_benchmark`)."""
from __future__ import annotations

from PatchSamplerLib.cli.arguments import (FAMILIES, add_device_argument, add_threads_argument, non_negative_int,
                                           parse_configs, positive_float, positive_int)


def add_commands(sub) -> None:
    """Register `benchmark` on the subparsers `sub`."""
    p = sub.add_parser("benchmark", help="time and memory of the sampler and the reconstruction on this machine",
                       description="Thesis Tables 5.8 / 5.9 for this machine: learned sampler inference, "
                                   "reconstruction (fit + decode) per (N, K) for a 85x85x110 kidney and a 128x120x90 "
                                   "vertebra with the FLOP floor, and scaling plots. Writes benchmark.json, "
                                   "benchmark.md and scaling.png.")
    p.add_argument("--configs", default="4x9,8x9,4x13,8x11,12x13", help="N x K of the reconstructions")
    p.add_argument("--sampler-configs", default="4x9,8x9,4x13", help="N x K of the bundled learned samplers")
    p.add_argument("--t", type=positive_int, default=100, help="latent-fit steps T of the timed runs (default 100)")
    p.add_argument("--repeats", type=positive_int, default=5, help="timed repeats after one warm-up")
    add_device_argument(p)
    add_threads_argument(p)
    p.add_argument("--kidney-prior", default="kidney", help="prior for the kidney rows (bundled name or file)")
    p.add_argument("--vertebra-prior", default="vertebra", help="prior for the vertebra rows (bundled name or file)")
    p.add_argument("--scale", type=positive_float, default=1.0, help="grid scale of the synthetic volumes (1: full size)")
    p.add_argument("--training", action="store_true",
                   help="instead: the sampler training step, faithful vs fast mode (time per step, peak memory, "
                        "validation Dice per epoch) on 8 half-resolution vertebrae, on the CPU; writes "
                        "training.json / training.md")
    p.add_argument("--training-init", choices=["random", "anchor"], default="random",
                   help="--training: the thesis's random start at lr 0.01, or the FPS-anchored start at lr 1e-4 "
                        "with soft labels (the bundled kidney 8x9 recipe)")
    p.add_argument("--training-epochs", type=positive_int, default=3, help="--training: epochs before the Dice comparison")
    add_fit_arguments(p)
    p.add_argument("--out", required=True, help="output folder (table and raw numbers)")
    p.set_defaults(func=benchmark_main)


def add_fit_arguments(p) -> None:
    """The options of `benchmark --fit` (`experiments.fit_benchmark`)."""
    from PatchSamplerLib.experiments.fit_benchmark import FitBenchmark
    default = FitBenchmark()
    p.add_argument("--fit", action="store_true",
                   help="instead: the fast latent fit vs the thesis's fit (T Adam steps on every patch voxel) in the "
                        "same process, CPU: fit seconds, peak memory and the paired Dice difference per (N, K) on "
                        "--count held-out shapes of --family and the --inputs labelmaps; writes cases.csv (resumable) "
                        "and fit.md")
    p.add_argument("--prior", help="--fit: the prior (bundled name or file)")
    p.add_argument("--family", choices=FAMILIES, help="--fit: the synthetic family of the held-out shapes")
    p.add_argument("--count", type=non_negative_int, default=20, help="--fit: held-out synthetic shapes (default 20)")
    p.add_argument("--data-seed", type=non_negative_int, default=2,
                   help="--fit: family seed of the held-out shapes (default 2; the bundled priors were trained on "
                        "seed 0 and the fast fit's subset size was chosen on seed 1)")
    p.add_argument("--inputs", nargs="*", default=[],
                   help="--fit: real binary labelmaps as well, resampled to the prior's spacing")
    p.add_argument("--fit-configs", default=",".join(f"{n}x{k}" for n, k in default.configs),
                   help="--fit: N x K to measure (default: the thesis grid, 32x15 and 64x31)")
    p.add_argument("--overwrite", action="store_true",
                   help="--fit: replace the results in --out (resumable with the same prior, family, seed and "
                        "--large-count; other ones are refused) instead")
    p.add_argument("--large-count", type=positive_int, default=default.large_count,
                   help=f"--fit: shapes with the thesis's fit above {default.paired_max_voxels:,} patch voxels "
                        f"(above {default.timed_max_voxels:,} it is only timed, over {default.timing_steps} steps)")


def benchmark_main(args) -> int:
    import torch
    if args.training:
        return training_benchmark_main(args)
    if args.fit:
        return fit_benchmark_main(args)
    from PatchSamplerLib.devices import resolve_device
    from PatchSamplerLib.experiments.benchmark import BenchmarkSettings, run_benchmark, write_benchmark
    settings = BenchmarkSettings(parse_configs(args.configs), parse_configs(args.sampler_configs), args.t,
                                 args.repeats, args.device, args.kidney_prior, args.vertebra_prior, args.scale)
    report = run_benchmark(settings, resolve_device(args.device), args.command_line)
    print(write_benchmark(report, args.out))
    return 0


def training_benchmark_main(args) -> int:
    """`benchmark --training`: CPU only (its memory figure is the process's resident set): an
    explicit `--device cuda` is refused before any work."""
    import torch
    from PatchSamplerLib.experiments.benchmark_training import TrainingCase, anchored_case, run_training_benchmark
    if args.device.startswith("cuda"):
        raise ValueError("benchmark --training measures the training step on the CPU; on a GPU, "
                         "train-sampler --device cuda logs the seconds and the peak GPU memory of every epoch "
                         "(train_log.jsonl)")
    epochs = args.training_epochs
    case = anchored_case(epochs) if args.training_init == "anchor" else TrainingCase(epochs=epochs)
    print(run_training_benchmark(case, args.threads or torch.get_num_threads(), args.out, args.command_line))
    return 0


def fit_benchmark_main(args) -> int:
    """`benchmark --fit`: CPU only, like the fits it compares at the sizes a CPU user meets."""
    from pathlib import Path

    from PatchSamplerLib.experiments.fit_benchmark import FitBenchmark, run_fit_benchmark
    from PatchSamplerLib.method.inr import ShapePrior
    if not args.prior or not (args.family or args.inputs):
        raise ValueError("benchmark --fit needs --prior and --family (held-out synthetic shapes) and/or --inputs")
    if args.device.startswith("cuda"):
        raise ValueError("benchmark --fit compares the fits on the CPU")
    from PatchSamplerLib.experiments.tables import resume_with_same_settings
    prior = ShapePrior.load(args.prior)
    resume_with_same_settings(args.out, {"prior": prior.fingerprint(), "family": args.family,
                                         "data_seed": args.data_seed, "large_count": args.large_count},
                              args.overwrite, files=("cases.csv", "fit.md"))
    cases = fit_cases(args, prior)
    bench = FitBenchmark(configs=parse_configs(args.fit_configs), large_count=args.large_count)
    out = Path(args.out)
    report = run_fit_benchmark(cases, prior, bench, out, real=[Path(path).name for path in args.inputs])
    text = (f"# Fast fit vs the thesis's fit, T = {bench.t}, prior {args.prior}\n\n`{args.command_line}`\n\n"
            f"{report}\n")
    (out / "fit.md").write_text(text)
    print(text)
    return 0


def fit_cases(args, prior) -> list:
    """(name, BinaryVolume) of the held-out synthetic shapes and of the --inputs files (resampled
    to the prior's isotropic spacing)."""
    from pathlib import Path

    from PatchSamplerLib.data.synthetic import make_shape
    from PatchSamplerLib.volume import read_labelmap, resample_isotropic
    cases = [(f"{args.family}_{args.data_seed}_{i:04d}", make_shape(args.family, args.data_seed, i))
             for i in range(args.count if args.family else 0)]
    spacing = min(prior.spacing_mm)
    return cases + [(Path(path).name, resample_isotropic(read_labelmap(path), spacing)) for path in args.inputs]
