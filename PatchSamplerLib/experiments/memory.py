"""Peak memory of a call, as the benchmarks report it [T §5.3, Tables 5.8-5.9].

On CUDA `torch.cuda.max_memory_allocated` over the block; on the CPU the increase of the
resident set size over the *first* call in a fresh Python process (spawned, inputs unpickled
before the measurement starts), sampled every 2 ms from /proc/self/statm (Linux; elsewhere NaN)
and taken from the process's high-water mark (ru_maxrss) when the call raised it. A fresh
process because in a warm one the allocator reuses memory it already holds and the increase
reads ~0.
"""
from __future__ import annotations

import multiprocessing
import threading

import numpy as np
import torch

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


def call_peak_mb(fn, threads: int) -> float:
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
        return pool.apply(call_peak_mb, (fn, torch.get_num_threads()))


def quartiles(values) -> dict:
    """{"median", "q1", "q3"} of `values` (e.g. seconds over repeats)."""
    v = np.asarray(values, float)
    return {"median": float(np.median(v)), "q1": float(np.percentile(v, 25)), "q3": float(np.percentile(v, 75))}
