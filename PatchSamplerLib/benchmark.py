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

Peak memory: on CUDA `torch.cuda.max_memory_allocated` over the timed calls; on the CPU the
increase of the resident set size over the *first* call in a fresh Python process (spawned, inputs
unpickled before the measurement starts), sampled every 2 ms from /proc/self/statm (Linux;
elsewhere NaN) and taken from the process's high-water mark (ru_maxrss) when the call raised it.
A fresh process because in a warm one the allocator reuses memory it already holds and the
increase reads ~0. Each row says which.
"""
from __future__ import annotations

import functools
import json
import multiprocessing
import platform
import threading
import time
from pathlib import Path

import numpy as np
import torch

from .inr import N_BLOCKS, OccupancyDecoder
from .pipeline import sync_device

RSS_POLL_S = 0.002


def _rss_bytes() -> float:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096.0
    except (OSError, ValueError, IndexError):
        return float("nan")


class PeakMemory:
    """Context manager: `.peak_mb` after the block (see the module docstring for what is measured)."""

    def __init__(self, device: torch.device):
        self.device, self.peak_mb = device, float("nan")
        self.kind = ("cuda max_memory_allocated" if device.type == "cuda"
                     else "cpu peak RSS increase of a first call in a fresh process (sampled every 2 ms)")

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
            return self
        self.base = self._peak = _rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def _poll(self) -> None:
        while not self._stop.wait(RSS_POLL_S):
            self._peak = max(self._peak, _rss_bytes())

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_mb = (torch.cuda.max_memory_allocated(self.device) - self.base) / 2 ** 20
        else:
            self._stop.set()
            self._thread.join()
            self._peak = max(self._peak, _rss_bytes())
            self.peak_mb = (self._peak - self.base) / 2 ** 20
        return False


def _max_rss_bytes() -> float:
    """The process's high-water resident set size (Linux reports ru_maxrss in KiB); NaN without
    the `resource` module."""
    try:
        import resource
    except ImportError:
        return float("nan")
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024.0


def _first_call_peak_mb(fn, threads: int) -> float:
    """In a spawned process: peak RSS increase (MB) over fn(); the inputs bound in `fn` are
    already unpickled when the measurement starts. The 2 ms samples can miss a short peak; when
    the call sets a new high-water mark of the process, that mark is exact, so take the larger."""
    torch.set_num_threads(threads)
    high_before = _max_rss_bytes()
    with PeakMemory(torch.device("cpu")) as memory:
        fn()
    high_after = _max_rss_bytes()
    if high_after > high_before:
        return max(memory.peak_mb, (high_after - memory.base) / 2 ** 20)
    return memory.peak_mb


def first_call_peak_mb(fn) -> float:
    """Peak RSS increase (MB) of the first call of `fn` (picklable, e.g. a functools.partial of a
    module-level function) in a fresh Python process, with this process's thread count."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(_first_call_peak_mb, (fn, torch.get_num_threads()))


def matmul_gflops(device: torch.device, rows: int = 8788, width: int = 128, repeats: int = 50) -> float:
    """Measured fp32 throughput (GFLOP/s) of (rows x width) @ (width x width), the decoder's shape."""
    a = torch.randn(rows, width, device=device)
    b = torch.randn(width, width, device=device)
    for _ in range(5):
        a @ b
    sync_device(device)
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    sync_device(device)
    return 2.0 * rows * width * width * repeats / (time.perf_counter() - start) / 1e9


def decoder_macs_per_point(decoder: OccupancyDecoder) -> int:
    """Multiply-adds per point of `forward_features` (the latent's share of block 0 is computed
    once per shape, not per point)."""
    macs = 3 * decoder.width                                          # block 0, coordinate columns
    for b in range(1, N_BLOCKS):
        layer = decoder.blocks[b]
        macs += layer.in_features * layer.out_features
    return macs + decoder.out.in_features


def flop_floor(macs_per_point: int, fit_points: int, steps: int, decoded_points: int) -> dict:
    """FLOPs of the fit (forward + backward to the activations ~ 2 forwards) and of the decode."""
    return {"fit_gflop": 2 * 2 * macs_per_point * fit_points * steps / 1e9,
            "decode_gflop": 2 * macs_per_point * decoded_points / 1e9}


def quartiles(values) -> dict:
    v = np.asarray(values, float)
    return {"median": float(np.median(v)), "q1": float(np.percentile(v, 25)), "q3": float(np.percentile(v, 75))}


def benchmark_sampler(prior_path, n: int, k: int, t: int, mask: np.ndarray, device: torch.device,
                      repeats: int) -> dict:
    """Inference time and peak memory of the bundled learned sampler of (prior file, N, K, T)."""
    from .checkpoints import prior_name, resolve_sampler_path
    from .sampler import SamplerModel, learned_centres
    path, _ = resolve_sampler_path(prior_path, n, k, t)
    prior = prior_name(prior_path)
    run = functools.partial(learned_centres, SamplerModel.load(path), mask)
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
    from .baselines import fps_centres
    from .pipeline import reconstruct
    centres = fps_centres(volume.mask, n, seed=0, spacing=volume.spacing)
    run = functools.partial(reconstruct, volume, n, k, t, sampler=None, prior=prior, centres=centres,
                            device=str(device), precision=precision)
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


def benchmark_main(args) -> int:
    from .data.synthetic import make_shape
    from .devices import resolve_device
    from .evaluation import parse_configs
    from .inr import ShapePrior
    if args.threads:
        torch.set_num_threads(args.threads)
    if getattr(args, "training", False):
        from .benchmark_training import training_main
        return training_main(args)
    device = resolve_device(args.device)
    gflops = matmul_gflops(device)
    volumes = {"kidney": make_shape("kidney", 1, 0, args.scale), "vertebra": make_shape("vertebra", 1, 0, args.scale)}
    priors = {"kidney": ShapePrior.load(args.kidney_prior, device=device),
              "vertebra": ShapePrior.load(args.vertebra_prior, device=device)}
    configs = parse_configs(args.configs)
    sampler_rows = [benchmark_sampler(priors[name].metadata["path"], n, k, args.t, volumes[name].mask, device,
                                      args.repeats)
                    for name in volumes for n, k in parse_configs(args.sampler_configs)]
    recon_rows, precision_rows = [], []
    for name, vol in volumes.items():
        for n, k in configs:
            recon_rows.append(benchmark_reconstruction(vol, name, n, k, args.t, priors[name], device, args.repeats,
                                                       gflops))
            print(f"{name} N={n} K={k}: fit {recon_rows[-1]['fit_s']:.2f} s, decode {recon_rows[-1]['decode_s']:.2f} s, "
                  f"floor ratio {recon_rows[-1]['floor_ratio']:.2f}", flush=True)
            if device.type == "cuda":
                precision_rows += [benchmark_precision(vol, name, n, k, args.t, priors[name], device, args.repeats,
                                                       recon_rows[-1], p) for p in ("tf32", "bf16")]
    report = {"machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
                         f"device {device}" + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""),
              "torch": torch.__version__, "gflops": gflops, "matmul_shape": "(8788 x 128) @ (128 x 128)",
              "macs_per_point": decoder_macs_per_point(priors["kidney"].decoder), "t": args.t,
              "repeats": args.repeats, "memory": PeakMemory(device).kind, "sampler": sampler_rows,
              "reconstruction": recon_rows, "precision": precision_rows, "command": args.command_line}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "benchmark.json").write_text(json.dumps(report, indent=2))
    (out / "benchmark.md").write_text(markdown(report))
    scaling_figure(recon_rows, out / "scaling.png")
    print(markdown(report))
    return 0
