"""What a patch reconstruction will cost, known before it starts [T §5.3, Tables 5.8-5.9].

The latent fit dominates: every one of its T steps runs the INR forward and backward on all
N K^3 patch voxels (the thesis's fit), or on a fixed number of them (the fast fit,
`method.fitting`: then the step cost does not grow with N K^3). Its FLOP floor is
2 x 2 x (multiply-adds per point) x (points per step) x T (forward + backward to the
activations); on the 2-core CPU of `results/benchmark/cpu/` the fit took 1.27-1.55x
its floor, so the estimate is 1.6x the floor at this device's measured fp32 matmul throughput.
Memory: the autograd graph of one step keeps the activations of every patch voxel, measured at
4.4-4.7 KB per voxel (400k-800k voxels, 1 thread, `experiments.memory.first_call_peak_mb`);
the estimate takes 4.8 KB per voxel plus 0.5 GB for the process (N 64 x K 31: 9.6 GB; measured
7-9 GB).

Limits (`check_affordable`): a run estimated above 10 minutes of fitting or above half of the
device's memory (the machine's RAM on a CPU, the GPU's on CUDA) is refused unless forced.
"""
from __future__ import annotations

import functools
import os
import time
from dataclasses import dataclass

import torch

from PatchSamplerLib.devices import sync_device
from PatchSamplerLib.method.inr import N_BLOCKS, OccupancyDecoder

FIT_OVER_FLOOR = 1.6          # fit seconds / FLOP floor (results/benchmark/cpu: 1.27-1.55)
BYTES_PER_PATCH_VOXEL = 4800  # activations kept per patch voxel by one fit step (measured 4.4-4.7 KB)
PATCH_TABLE_BYTES = 40        # per patch voxel: voxel index and mm coordinates (float32 x 6), label, subsets
BASE_MB = 512.0               # torch, the prior and the input, besides the fit's graph
MAX_FIT_SECONDS = 600.0       # refused above this unless forced
MEMORY_SHARE = 0.5            # refused above this share of the device's memory unless forced
CHEAP_FLOP = 2e11             # below this floor the estimate needs no throughput measurement


@functools.lru_cache(maxsize=None)
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


def device_memory_mb(device: torch.device) -> float:
    """Total memory of `device` in MB: the GPU's on CUDA, the machine's RAM otherwise (NaN when
    the platform does not say)."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory / 2 ** 20
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 20
    except (ValueError, OSError, AttributeError):
        return float("nan")


@dataclass(frozen=True)
class RunEstimate:
    """Estimated latent-fit seconds and peak memory (MB) of a run, with the limits it is held to."""
    fit_seconds: float
    peak_mb: float
    max_seconds: float
    max_mb: float

    def describe(self) -> str:
        """One line; a cheap run (below CHEAP_FLOP, not timed: fit_seconds 0) is "under a minute"."""
        fit = f"about {_duration(self.fit_seconds)}" if self.fit_seconds > 0 else "under a minute"
        return f"{fit} of latent fit and {self.peak_mb / 1024:.1f} GB of memory"

    def excess(self) -> str | None:
        """Why the run is over a limit (one line), or None."""
        over = []
        if self.fit_seconds > self.max_seconds:
            over.append(f"the fit limit is {_duration(self.max_seconds)}")
        if self.peak_mb > self.max_mb:
            over.append(f"the memory limit is {self.max_mb / 1024:.1f} GB (half of this device's)")
        return "; ".join(over) or None


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def estimate_run(n: int, k: int, t: int, device: torch.device, macs_per_point: int | None = None,
                 points_per_step: int | None = None) -> RunEstimate:
    """The RunEstimate of N patches of K^3 voxels and T fit steps on `device`, each step on all
    N K^3 patch voxels or on `points_per_step` of them (the fast fit, `method.fitting`): the
    throughput is measured once per device and process, and only for runs that are not obviously
    cheap. The patch table itself (coordinates and labels, PATCH_TABLE_BYTES per voxel) is held
    either way."""
    return estimate_fit(n * k ** 3, t, device, macs_per_point, points_per_step)


def estimate_fit(points: int, t: int, device: torch.device, macs_per_point: int | None = None,
                 points_per_step: int | None = None) -> RunEstimate:
    """The RunEstimate of a latent fit of T steps to `points` known voxels (patch voxels, or every
    voxel for the representation ceiling), each step on all of them or on `points_per_step`."""
    step_points = points if points_per_step is None else min(points, int(points_per_step))
    macs = macs_per_point or decoder_macs_per_point(OccupancyDecoder())
    floor_gflop = flop_floor(macs, step_points, t, 0)["fit_gflop"]
    seconds = 0.0 if floor_gflop * 1e9 < CHEAP_FLOP else FIT_OVER_FLOOR * floor_gflop / matmul_gflops(device)
    peak = BASE_MB + (step_points * BYTES_PER_PATCH_VOXEL + points * PATCH_TABLE_BYTES) / 2 ** 20
    return RunEstimate(seconds, peak, MAX_FIT_SECONDS, MEMORY_SHARE * device_memory_mb(device))


def check_affordable(estimate: RunEstimate, force: bool = False) -> None:
    """ValueError with the estimate and the limits when a run exceeds them, unless `force`."""
    excess = estimate.excess()
    if excess and not force:
        raise ValueError(f"this run needs {estimate.describe()}; {excess}. Choose fewer or smaller patches, "
                         "or run it anyway with --force (force=True)")
