"""Progress reporting that works in a terminal, a log file and under Slicer.

`Progress`: on a TTY the bar is redrawn in place; otherwise only one line per finished task is
printed (no carriage-return-only output in logs). `Monitor`: a run's stages mapped to one
fraction for a progress callback, and cancellation (`Cancelled`)."""
from __future__ import annotations

import sys
import time
from contextlib import contextmanager


class Progress:
    def __init__(self, total: int, label: str, stream=None):
        self.total, self.label, self.stream = max(int(total), 1), label, stream or sys.stdout
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.start = time.time()

    def update(self, done: int, info: str = "") -> None:
        if not self.tty:
            return
        frac = min(done / self.total, 1.0)
        bar = "#" * int(frac * 30)
        self.stream.write(f"\r{self.label} [{bar:<30}] {done}/{self.total} {info}   ")
        self.stream.flush()

    def done(self, info: str = "") -> None:
        prefix = "\r" if self.tty else ""
        self.stream.write(f"{prefix}{self.label}: {info} ({time.time() - self.start:.1f} s)" + " " * 20 + "\n")
        self.stream.flush()


class Cancelled(Exception):
    """Raised inside a run (`pipeline.reconstruct`, `sparse.reconstruction.reconstruct_sparse`)
    when its `should_cancel()` returns True."""


class Monitor:
    """Progress reports (stage name, fraction of the whole run in [0, 1]) and cancellation.
    `weights`: stage -> (start, end) share of the run."""
    WEIGHTS = {"sampling": (0.0, 0.05), "extraction": (0.05, 0.1), "latent_fit": (0.1, 0.8),
               "decode": (0.8, 0.95), "metrics": (0.95, 1.0)}

    def __init__(self, progress=None, should_cancel=None, weights: dict | None = None):
        self.progress, self.should_cancel = progress, should_cancel
        self.weights = weights or self.WEIGHTS

    def __call__(self, stage: str, within: float = 0.0) -> None:
        if self.should_cancel is not None and self.should_cancel():
            raise Cancelled(f"cancelled during {stage}")
        if self.progress is not None:
            lo, hi = self.weights[stage]
            self.progress(stage, lo + (hi - lo) * min(max(within, 0.0), 1.0))

    @contextmanager
    def stage(self, name: str, timings: dict, key: str | None = None):
        """Report the start of stage `name` (raises Cancelled when asked to stop) and time the
        block into `timings[key or name]` (seconds)."""
        self(name)
        clock = time.perf_counter()
        yield
        timings[key or name] = time.perf_counter() - clock
