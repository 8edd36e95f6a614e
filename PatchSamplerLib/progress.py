"""Progress reporting that works in a terminal, a log file and under Slicer.

- `task(name, total, unit)`: a long piece of work of the library (a latent fit, a decode, a
  validation, the runs of an evaluation) reports how far it is. Silent unless a console is
  active, so the library prints nothing when called from Python or Slicer.
- `console_progress(stream)`: what the command line wraps every command in. The tasks opened
  inside are rendered on `stream`: tqdm bars on a terminal; otherwise (a log, CI, `Slicer
  --no-main-window`) one plain line at most every `interval` seconds (and every tenth of the time
  elapsed, once that is longer: a long run's log stays short) with every open task's name,
  done / total and the estimated time left, and a line when a task ends.
- `Monitor`: a run's stages mapped to one fraction for a progress callback (the Slicer module's
  bar) and cancellation (`Cancelled`); each stage is also a `task`.
- `Progress`: the training loop's epoch bar (drawn in place on a TTY; one line per finished
  epoch otherwise); under an active console the bar is the console's.
"""
from __future__ import annotations

import contextlib
import io
import os
import sys
import time
from contextvars import ContextVar

PLAIN_INTERVAL_S = 5.0       # plain lines: at most one per this many seconds (and one per finished task)
PLAIN_GROWTH = 0.1           # ... and at most one per this share of the time since the console started
END_LINE_MIN_S = 1.0         # a top-level task without a total gets an end line when it took this long
UNCOUNTED_BAR = "{desc}: {elapsed}"   # the bar of a task without a total (until it gets one)


def _now() -> float:
    """The clock of every task and line, in seconds (monotonic)."""
    return time.perf_counter()


def format_seconds(seconds: float) -> str:
    """"4.2 s", "3 min 05 s", "1 h 02 min" for a duration in seconds (>= 0)."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


class Task:
    """How far one long piece of work is: `done` of `total` `unit`s (total None: unknown).
    Made by `task()`; without an active console an update costs next to nothing."""

    def __init__(self, name: str, total: int | None = None, unit: str = "steps"):
        self.name, self.total, self.unit = name, total, unit
        self.done, self.depth, self.start = 0, 0, _now()
        self.first: tuple[int, float] | None = None      # (done, time) at the first update with done > 0
        self.console: ConsoleProgress | None = None
        self.bar = None                          # the tqdm bar, on a terminal

    def update(self, done: int, total: int | None = None) -> None:
        """`done` units finished so far (absolute); `total` changes the total (it may grow)."""
        self.done = done
        if total is not None:
            self.total = total
        if self.first is None and done > 0:
            self.first = done, _now()
        if self.console is not None:
            self.console.updated(self)

    def advance(self, count: int = 1) -> None:
        """`count` more units finished."""
        self.update(self.done + count)

    def elapsed(self) -> float:
        return _now() - self.start

    def remaining(self) -> float | None:
        """Seconds left at the rate since the first finished unit (one-off start-up costs, e.g.
        imports or allocations before it, do not count), or at the mean rate while only that
        one is known; None before the first unit or without a total."""
        if not self.total or self.first is None or self.done <= 0:
            return None
        done, since = self.first
        if self.done > done:
            rate = (_now() - since) / (self.done - done)
        else:
            rate = self.elapsed() / self.done
        return rate * max(self.total - self.done, 0)

    def describe(self) -> str:
        """"latent fit: 40/100 steps (40%), 4.2 s elapsed, about 6.3 s left"."""
        elapsed = format_seconds(self.elapsed())
        if self.total is None:
            count = f"{self.done:,} {self.unit}, " if self.done else ""
            return f"{self.name}: {count}{elapsed} elapsed"
        left = self.remaining()
        eta = "time left unknown" if left is None else f"about {format_seconds(left)} left"
        share = 100.0 * self.done / self.total if self.total else 100.0
        return f"{self.name}: {self.done:,}/{self.total:,} {self.unit} ({share:.0f}%), {elapsed} elapsed, {eta}"

    def describe_end(self) -> str:
        """"latent fit: done, 100/100 steps in 10.7 s"."""
        count = "" if self.total is None and not self.done else (
            f"{self.done:,} {self.unit}" if self.total is None else f"{self.done:,}/{self.total:,} {self.unit}")
        return f"{self.name}: done, {count + ' ' if count else ''}in {format_seconds(self.elapsed())}"


class ConsoleProgress:
    """Renders the tasks opened while it is active (`console_progress`) on `stream`.

    bars True (a terminal): one tqdm bar per open task (nested tasks below their parent), left on
    screen when the task ends if it is worth a line (`worth_a_line`). bars False: one plain line
    at most every `interval` seconds and every PLAIN_GROWTH of the time since the start (about
    50 lines in an hour), naming every open task, outermost first, each with done / total, the
    time elapsed and the estimated time left; and one line for each task that ends and is worth
    a line."""

    def __init__(self, stream, interval: float | None = None, bars: bool = False):
        self.stream, self.bars = stream, bars
        self.interval = float(PLAIN_INTERVAL_S if interval is None else interval)
        self.tasks: list[Task] = []
        self.start = self.last_line = _now()

    def open(self, task: Task) -> None:
        task.console, task.depth = self, len(self.tasks)
        self.tasks.append(task)
        if self.bars:
            task.bar = self._bar(task)

    def _bar(self, task: Task):
        from tqdm import tqdm
        size = fixed_size(self.stream)
        return tqdm(total=task.total, desc=task.name, unit=f" {task.unit}", file=self.stream, position=task.depth,
                    leave=True, dynamic_ncols=not size, mininterval=0.2, bar_format=UNCOUNTED_BAR if task.total is None
                    else None, unit_scale=bool(task.total and task.total >= 100_000), **size)

    def updated(self, task: Task) -> None:
        if task.bar is not None:
            if task.total != task.bar.total:
                task.bar.total, task.bar.bar_format = task.total, None
            task.bar.update(task.done - task.bar.n)
            return
        now = _now()
        if now - self.last_line >= max(self.interval, PLAIN_GROWTH * (now - self.start)):
            self.last_line = now
            self.write(" | ".join(t.describe() for t in self.tasks))

    def close(self, task: Task, ok: bool = True) -> None:
        """End `task` (ok False: it failed; nothing is said about it)."""
        if task in self.tasks:
            self.tasks.remove(task)
        worth = ok and self.worth_a_line(task)
        if task.bar is not None:
            task.bar.leave = worth
            task.bar.close()
        elif worth:
            self.write(task.describe_end())
        task.console = None

    def worth_a_line(self, task: Task) -> bool:
        """A finished task gets a line (plain) or keeps its bar (terminal) when it is top-level and
        counted or took END_LINE_MIN_S, or when nested and it took `interval` or more."""
        if task.depth > 0:
            return task.elapsed() >= self.interval
        return task.total is not None or task.elapsed() >= END_LINE_MIN_S

    def write(self, line: str) -> None:
        self.stream.write(line + "\n")
        self.stream.flush()


_CONSOLE: ContextVar[ConsoleProgress | None] = ContextVar("patchsampler_console_progress", default=None)


def is_terminal(stream) -> bool:
    return hasattr(stream, "isatty") and stream.isatty()


def fixed_size(stream) -> dict:
    """{} when the terminal of `stream` knows its size (the bars follow it), else tqdm's ncols
    and nrows for 100 x 24 characters (a pseudo-terminal without a size, e.g. under `script`,
    would otherwise hide every bar)."""
    try:
        size = os.get_terminal_size(stream.fileno())
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        size = os.terminal_size((0, 0))
    return {} if size.columns > 0 and size.lines > 0 else {"ncols": 100, "nrows": 24}


def _tqdm_available() -> bool:
    try:
        import tqdm  # noqa: F401
    except ImportError:
        return False
    return True


class LinesAboveBars:
    """sys.stdout while tqdm bars are drawn on the same terminal: printed text is passed on in
    whole lines, each written with the bars cleared first and redrawn after it, so a print does
    not land in the middle of a bar."""

    def __init__(self, stream, bar_stream):
        self.stream, self.bar_stream, self.pending = stream, bar_stream, ""

    def write(self, text: str) -> int:
        self.pending += text
        if "\n" in self.pending:
            lines, self.pending = self.pending.rsplit("\n", 1)
            from tqdm import tqdm
            with tqdm.external_write_mode(file=self.bar_stream):
                self.stream.write(lines + "\n")
                self.stream.flush()
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def close_lines(self) -> None:
        """Write what is left of an unfinished line."""
        if self.pending:
            self.stream.write(self.pending)
            self.pending = ""
        self.stream.flush()

    def __getattr__(self, name):
        return getattr(self.stream, name)


@contextlib.contextmanager
def console_progress(stream=None, interval: float | None = None, bars: bool | None = None):
    """Render the `task`s opened inside the block (in this thread) on `stream` (default
    sys.stderr): bars None chooses tqdm bars on a terminal (when tqdm is installed) and plain
    lines otherwise (at most one per `interval` seconds, default PLAIN_INTERVAL_S, plus one per
    finished task). With bars and a terminal on sys.stdout too, prints go above the bars
    (`LinesAboveBars`). Yields the ConsoleProgress; tasks still open at the end are closed
    without a line."""
    stream = stream if stream is not None else sys.stderr
    if bars is None:
        bars = is_terminal(stream) and _tqdm_available()
    console = ConsoleProgress(stream, interval, bars)
    token = _CONSOLE.set(console)
    above = LinesAboveBars(sys.stdout, stream) if bars and is_terminal(sys.stdout) else None
    try:
        with contextlib.redirect_stdout(above) if above is not None else contextlib.nullcontext():
            yield console
    finally:
        _CONSOLE.reset(token)
        for left in reversed(list(console.tasks)):
            console.close(left, ok=False)
        if above is not None:
            above.close_lines()


def open_task(name: str, total: int | None = None, unit: str = "steps") -> Task:
    """A Task, registered with the active console if there is one; end it with `close_task`.
    `task()` is the context-manager form."""
    new = Task(name, None if total is None else int(total), unit)
    console = _CONSOLE.get()
    if console is not None:
        console.open(new)
    return new


def close_task(item: Task, ok: bool = True) -> None:
    """End a task from `open_task` (ok False: it failed, no end line)."""
    if item.console is not None:
        item.console.close(item, ok)


@contextlib.contextmanager
def task(name: str, total: int | None = None, unit: str = "steps"):
    """A long piece of work: yields a Task to `update(done)` / `advance(n)` inside the block.
    name: what the user reads ("latent fit"); total: units of the whole work (None: unknown);
    unit: their name, plural ("steps", "shapes", "points"). Shown only under `console_progress`."""
    item = open_task(name, total, unit)
    ok = False
    try:
        yield item
        ok = True
    finally:
        close_task(item, ok)


def tracked(items, name: str, total: int | None = None, unit: str = "items"):
    """Iterate over `items` as a `task` (one unit per item; total: len(items) when it has one)."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)
    with task(name, total, unit) as item:
        for value in items:
            yield value
            item.advance()


class Progress:
    """The training loop's bar over an epoch's `total` shapes. On a TTY it is redrawn in place;
    otherwise only `done()` prints (one line per epoch, no carriage-return-only output in logs).
    Under an active console (`console_progress`) the advance is the console's task instead, and
    `done()` still prints its line."""

    def __init__(self, total: int, label: str, stream=None):
        self.total, self.label, self.stream = max(int(total), 1), label, stream or sys.stdout
        self.tty = is_terminal(self.stream)
        self.start = time.time()
        self.task = open_task(label, self.total, "shapes") if _CONSOLE.get() is not None else None

    def update(self, done: int, info: str = "") -> None:
        if self.task is not None:
            self.task.update(min(done, self.total))
            return
        if not self.tty:
            return
        frac = min(done / self.total, 1.0)
        bar = "#" * int(frac * 30)
        self.stream.write(f"\r{self.label} [{bar:<30}] {done}/{self.total} {info}   ")
        self.stream.flush()

    def done(self, info: str = "") -> None:
        if self.task is not None:
            close_task(self.task, ok=False)          # the line below says it
            self.task = None
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
            raise Cancelled(f"cancelled during {stage.replace('_', ' ')}")
        if self.progress is not None:
            lo, hi = self.weights[stage]
            self.progress(stage, lo + (hi - lo) * min(max(within, 0.0), 1.0))

    @contextlib.contextmanager
    def stage(self, name: str, timings: dict, key: str | None = None, total: int | None = None,
              unit: str = "steps", every: int = 1):
        """Report the start of stage `name` (raises Cancelled when asked to stop) and time the
        block into `timings[key or name]` (seconds). Yields `tick(done, total=None)`: `done` of
        the stage's `total` units (`total` may be given or grown by a tick), shown by the console
        (`task`, named `name` with spaces) and reported to the progress callback as the stage's
        fraction done / total, with a cancellation check, every `every` units and at the end."""
        self(name)
        clock = time.perf_counter()
        with task(name.replace("_", " "), total, unit) as item:
            yield self._ticker(name, item, every)
        timings[key or name] = time.perf_counter() - clock

    def _ticker(self, name: str, item: Task, every: int):
        reported = [0]

        def tick(done: int, total: int | None = None) -> None:
            item.update(done, total)
            if item.total and (done - reported[0] >= every or done >= item.total):
                reported[0] = done
                self(name, done / item.total)
        return tick
