"""`benchmark`: the computational cost on this machine, in the spirit of the thesis's Tables 5.8
and 5.9 [T §5.3].

- Learned sampler inference per bundled (prior, N, K): median and interquartile range of the
  wall time over repeats after a warm-up, and peak memory.
- Reconstruction (T-step latent fit + decode) per (N, K) for a 85 x 85 x 110 kidney and a
  128 x 120 x 90 vertebra: wall time per stage, peak memory, and the FLOP floor: the MLP
  multiply-adds of the fit (forward + backward to the activations, the weights are frozen) and
  of the decode (the points the decoder really evaluated), as FLOPs, divided by the measured fp32
  matmul throughput of this machine.
- How the time grows with N K^3 (fit) and with the volume size (decode): `scaling.png`.

Peak memory: `experiments.memory` (each row says what was measured).
"""
from __future__ import annotations

import functools
import json
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from PatchSamplerLib.checkpoints import prior_name, resolve_sampler_path
from PatchSamplerLib.data.synthetic import make_shape
from PatchSamplerLib.experiments.memory import PeakMemory, first_call_peak_mb, quartiles
from PatchSamplerLib.method.baselines import fps_centres
from PatchSamplerLib.method.cost import decoder_macs_per_point, flop_floor, matmul_gflops
from PatchSamplerLib.method.inr import ShapePrior
from PatchSamplerLib.method.sampler import SamplerModel, learned_centres
from PatchSamplerLib.pipeline import RunConfig, reconstruct
from PatchSamplerLib.progress import tracked

def benchmark_sampler(prior_path, n: int, k: int, t: int, mask: np.ndarray, device: torch.device,
                      repeats: int) -> dict:
    """Inference time and peak memory of the bundled learned sampler of (prior file, N, K, T)."""
    path, _ = resolve_sampler_path(prior_path, n, k, t)
    prior = prior_name(prior_path)
    run = functools.partial(learned_centres, SamplerModel.load(path), mask, n, k)
    run()                                                          # warm-up
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        seconds.append(time.perf_counter() - start)
    cpu = torch.device("cpu")
    return {"prior": prior, "n": n, "k": k, "seconds": quartiles(seconds), "peak_mb": first_call_peak_mb(run),
            "memory": PeakMemory(cpu).kind, "device": "cpu (the sampler runs on the CPU)"}


def benchmark_reconstruction(volume, name: str, n: int, k: int, t: int, prior, device: torch.device,
                             repeats: int, gflops: float) -> dict:
    """Wall time per stage (median over repeats after a warm-up), peak memory and the FLOP floor
    of an FPS run of the pipeline."""
    run = fps_run(volume, n, k, t, prior, device)
    if device.type == "cuda":
        with PeakMemory(device) as memory:
            results = [run() for _ in range(repeats)]
        peak = memory.peak_mb
    else:                                   # no poller over the timed calls: a fresh process measures
        results = [run() for _ in range(repeats)]
        peak = first_call_peak_mb(run)
    stage = lambda key: float(np.median([r.timings[key] for r in results]))  # noqa: E731
    floor = flop_floor(decoder_macs_per_point(prior.decoder), n * k ** 3, t, results[0].settings["decoder_points"])
    floor_s = (floor["fit_gflop"] + floor["decode_gflop"]) / gflops
    fit_decode = stage("latent_fit") + stage("decode")
    return {"volume": name, "shape": list(volume.shape), "n": n, "k": k, "t": t, "nk3": n * k ** 3,
            "fit_s": stage("latent_fit"), "decode_s": stage("decode"), "total_s": stage("total"),
            "fit_decode_s": fit_decode, "decoder_points": results[0].settings["decoder_points"],
            **floor, "floor_s": floor_s, "floor_ratio": fit_decode / floor_s,
            "peak_mb": peak, "memory": PeakMemory(device).kind, "dice": results[0].metrics["dice"]}


def fps_run(volume, n: int, k: int, t: int, prior, device: torch.device, precision: str = "fp32"):
    """A picklable no-argument call of the pipeline on FPS (seed 0) patches, called once (warm-up)."""
    centres = fps_centres(volume.mask, n, seed=0, spacing=volume.spacing)
    config = RunConfig(n=n, k=k, t=t, sampler=None, device=str(device), precision=precision, fit="adam")
    run = functools.partial(reconstruct, volume, config, prior, centres=centres)
    run()
    return run


def benchmark_precision(volume, name: str, n: int, k: int, t: int, prior, device: torch.device, repeats: int,
                        fp32: dict, precision: str) -> dict:
    """CUDA only: the same FPS run at `precision` (tf32 / bf16): fit + decode seconds (median)
    and its Dice minus the fp32 run's (`fp32`: that run's `benchmark_reconstruction` row); the
    criterion of issue #5 is |difference| <= 0.001."""
    run = fps_run(volume, n, k, t, prior, device, precision)
    results = [run() for _ in range(repeats)]
    fit_decode = float(np.median([r.timings["latent_fit"] + r.timings["decode"] for r in results]))
    delta = results[0].metrics["dice"] - fp32["dice"]
    return {"volume": name, "n": n, "k": k, "precision": precision, "fit_decode_s": fit_decode,
            "speedup": fp32["fit_decode_s"] / fit_decode, "dice_delta": delta, "within_0001": abs(delta) <= 1e-3}


def scaling_figure(rows: list[dict], path) -> None:
    """Fit time against N K^3 and decode time against the decoded box, per volume."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    for name in sorted({r["volume"] for r in rows}):
        mine = sorted((r for r in rows if r["volume"] == name), key=lambda r: r["nk3"])
        a.plot([r["nk3"] for r in mine], [r["fit_s"] for r in mine], marker="o", label=name)
        b.scatter([np.prod(r["shape"]) for r in mine], [r["decode_s"] for r in mine], label=name)
    a.set(xlabel="N K³ (patch voxels)", ylabel="latent fit (s)", title="fit time vs patch voxels")
    b.set(xlabel="voxels of the input grid", ylabel="decode (s)", title="decode time vs volume size")
    a.legend(); b.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def markdown(report: dict) -> str:
    lines = [f"# Benchmark on {report['machine']}", "",
             f"fp32 matmul throughput ({report['matmul_shape']}): **{report['gflops']:.1f} GFLOP/s**; "
             f"decoder: {report['macs_per_point']} multiply-adds per point. Memory: {report['memory']}.", "",
             "## Learned sampler inference", "", "| prior | N | K | median (ms) | IQR (ms) | peak (MB) |",
             "|---|---|---|---|---|---|"]
    for r in report["sampler"]:
        s = r["seconds"]
        lines.append(f"| {r['prior']} | {r['n']} | {r['k']} | {1e3 * s['median']:.1f} | "
                     f"{1e3 * s['q1']:.1f}-{1e3 * s['q3']:.1f} | {r['peak_mb']:.0f} |")
    lines += ["", f"## Reconstruction (T = {report['t']}, FPS patches; median of {report['repeats']} runs)", "",
              "| volume | N | K | fit (s) | decode (s) | run total (s) | fit+decode FLOP floor (s) | ratio | "
              "peak (MB) | Dice |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["reconstruction"]:
        lines.append(f"| {r['volume']} {'x'.join(map(str, r['shape']))} | {r['n']} | {r['k']} | {r['fit_s']:.2f} | "
                     f"{r['decode_s']:.2f} | {r['total_s']:.2f} | {r['floor_s']:.2f} | {r['floor_ratio']:.2f} | "
                     f"{r['peak_mb']:.0f} | {r['dice']:.3f} |")
    lines += ["", "Ratio = (fit + decode seconds) / FLOP floor. Run total includes sampling, extraction and "
                  "metrics."]
    if report.get("precision"):
        lines += ["", "## Reduced precision (CUDA): fit + decode vs fp32", "",
                  "| volume | N | K | precision | fit+decode (s) | speed-up | Dice − fp32 | within 0.001 |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in report["precision"]:
            lines.append(f"| {r['volume']} | {r['n']} | {r['k']} | {r['precision']} | {r['fit_decode_s']:.3f} | "
                         f"{r['speedup']:.2f} | {r['dice_delta']:+.5f} | {'yes' if r['within_0001'] else 'no'} |")
    lines += ["", f"Command: `{report['command']}`", ""]
    return "\n".join(lines)


@dataclass(frozen=True)
class BenchmarkSettings:
    """What `run_benchmark` measures: reconstructions at `configs` [(N, K)], the bundled learned
    samplers at `sampler_configs` [(N, K)], T latent-fit steps, `repeats` timed runs after one
    warm-up, on `device` ("auto" | "cpu" | "cuda"), with the two priors (names or files), on
    synthetic volumes at grid `scale` (1: full size)."""
    configs: tuple = ((4, 9), (8, 9), (4, 13), (8, 11), (12, 13))
    sampler_configs: tuple = ((4, 9), (8, 9), (4, 13))
    t: int = 100
    repeats: int = 5
    device: str = "auto"
    kidney_prior: str = "kidney"
    vertebra_prior: str = "vertebra"
    scale: float = 1.0


def machine_name(device: torch.device) -> str:
    """"<processor>, <threads> threads, device <device> (<GPU name>)"."""
    gpu = f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""
    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, device {device}{gpu}"


def reconstruction_rows(volumes: dict, priors: dict, settings: BenchmarkSettings, device: torch.device,
                        gflops: float) -> tuple[list[dict], list[dict]]:
    """(`benchmark_reconstruction` rows, `benchmark_precision` rows (CUDA only)) per volume and (N, K).
    Progress: the task "reconstruction benchmark"."""
    recon_rows, precision_rows = [], []
    cases = [(name, vol, n, k) for name, vol in volumes.items() for n, k in settings.configs]
    for name, vol, n, k in tracked(cases, "reconstruction benchmark", unit="configurations"):
        row = benchmark_reconstruction(vol, name, n, k, settings.t, priors[name], device, settings.repeats, gflops)
        recon_rows.append(row)
        print(f"{name} N={n} K={k}: fit {row['fit_s']:.2f} s, decode {row['decode_s']:.2f} s, "
              f"floor ratio {row['floor_ratio']:.2f}", flush=True)
        if device.type == "cuda":
            precision_rows += [benchmark_precision(vol, name, n, k, settings.t, priors[name], device,
                                                   settings.repeats, row, p) for p in ("tf32", "bf16")]
    return recon_rows, precision_rows


def run_benchmark(settings: BenchmarkSettings, device: torch.device, command: str = "") -> dict:
    """The report (JSON-able dict: machine, throughput, sampler rows, reconstruction rows,
    reduced-precision rows on CUDA) of `settings` on `device`."""
    gflops = matmul_gflops(device)
    volumes = {name: make_shape(name, 1, 0, settings.scale) for name in ("kidney", "vertebra")}
    priors = {"kidney": ShapePrior.load(settings.kidney_prior, device=device),
              "vertebra": ShapePrior.load(settings.vertebra_prior, device=device)}
    sampler_rows = [benchmark_sampler(priors[name].metadata["path"], n, k, settings.t, volumes[name].mask, device,
                                      settings.repeats)
                    for name, n, k in tracked([(name, n, k) for name in volumes for n, k in settings.sampler_configs],
                                              "sampler benchmark", unit="samplers")]
    recon_rows, precision_rows = reconstruction_rows(volumes, priors, settings, device, gflops)
    return {"machine": machine_name(device), "torch": torch.__version__, "gflops": gflops,
            "matmul_shape": "(8788 x 128) @ (128 x 128)",
            "macs_per_point": decoder_macs_per_point(priors["kidney"].decoder), "t": settings.t,
            "repeats": settings.repeats, "memory": PeakMemory(device).kind, "sampler": sampler_rows,
            "reconstruction": recon_rows, "precision": precision_rows, "command": command}


def write_benchmark(report: dict, out_dir) -> str:
    """benchmark.json, benchmark.md and scaling.png into `out_dir`; returns the Markdown."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    text = markdown(report)
    (out / "benchmark.json").write_text(json.dumps(report, indent=2))
    (out / "benchmark.md").write_text(text)
    scaling_figure(report["reconstruction"], out / "scaling.png")
    return text
