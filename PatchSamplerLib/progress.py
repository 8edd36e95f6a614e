"""Progress reporting that works in a terminal, a log file and under Slicer.

On a TTY the bar is redrawn in place; otherwise only one line per finished task is
printed (no carriage-return-only output in logs)."""
from __future__ import annotations

import sys
import time


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
