"""`benchmark`: time and memory of the sampler and the reconstruction on this machine
(`experiments.benchmark`), or with --training the sampler training step, faithful vs fast mode
(`experiments.benchmark_training`)."""
from __future__ import annotations

from PatchSamplerLib.cli.arguments import (add_device_argument, add_threads_argument, parse_configs, positive_float,
                                           positive_int)


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
    p.add_argument("--out", required=True, help="output folder (table and raw numbers)")
    p.set_defaults(func=benchmark_main)


def benchmark_main(args) -> int:
    import torch
    if args.training:
        return training_benchmark_main(args)
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
