"""Where the independent jobs of an experiment run: in this process, or as tasks on a Ray cluster.

An experiment (the evaluation grid, the per-fold sampler trainings) is a list of `Job`s, each a
call ``fn(*args)`` of a module-level function. `executor.share(obj)` makes a large read-only
argument (the prior, a shape, a fold's volumes) available to every job once; jobs then carry
the handle instead of a copy. `executor.map(fn, jobs)` yields ``(job, result)`` pairs as the jobs
finish; only the caller (the driver) writes files, so the records do not depend on where the
jobs ran.

- `LocalExecutor`: one job after another in this process, in the given order; an exception
  ends the map (and the experiment) with its message, as before executors existed.
- `RayExecutor`: every job is a Ray task (`num_cpus` / `num_gpus` per task; torch uses as many
  threads as the task has CPUs). Ray is imported here only, when such an executor is made, so
  `run`, the Slicer module and the local executor never need it (`pip install -r
  requirements-cluster.txt`). A job whose function raises is run once more in the same task;
  when it fails again the result is a `Failure` with the error, and the other jobs go on. A
  worker process that dies (killed, out of memory, lost node) is restarted by Ray, which runs
  the task once more (``max_retries=1``); a second death is a `Failure` too. Results come back
  in the order the tasks finish, not the order of the jobs.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

TRIES = 2                   # attempts of a job before it is recorded as failed (Ray executor)
EXECUTORS = ("local", "ray")
INSTALL_HINT = "pip install -r requirements-cluster.txt (or pip install 'patchsampler[cluster]')"


@dataclass(frozen=True)
class Job:
    """One call of an experiment's job function: `key` identifies it (e.g. the cases.csv key of a
    run), `args` are the function's positional arguments (shared objects as their handles)."""
    key: tuple
    args: tuple


@dataclass(frozen=True)
class Failure:
    """A job that failed `attempts` times; `error` is the last error ("TypeName: message")."""
    error: str
    attempts: int


def describe_error(exc: BaseException) -> str:
    """"TypeName: first line of the message" (a Ray error's message can be a whole traceback)."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".strip()


def attempt(fn, args: tuple, tries: int = TRIES):
    """fn(*args), tried up to `tries` times while it raises an Exception -> its result, or a
    Failure with the last error. KeyboardInterrupt and SystemExit are not caught."""
    error = ""
    for _ in range(tries):
        try:
            return fn(*args)
        except Exception as exc:   # noqa: BLE001 -- any job error is recorded, the grid goes on
            error = describe_error(exc)
    return Failure(error, tries)


def run_job(fn, threads: int, tries: int, *args):
    """The body of every Ray task: torch on `threads` CPU threads, then `attempt(fn, args, tries)`."""
    import torch
    torch.set_num_threads(max(1, int(threads)))
    return attempt(fn, args, tries)


class LocalExecutor:
    """The jobs one after another in this process (exceptions propagate)."""

    name = "local"

    def share(self, obj):
        """The object itself: every job of this process sees it."""
        return obj

    def map(self, fn, jobs):
        """Yield (job, fn(*job.args)) for every job of `jobs` (a list of Job), in order."""
        for job in jobs:
            yield job, fn(*job.args)

    def close(self) -> None:
        """Nothing to release."""


def import_ray():
    """The `ray` module; RuntimeError (the command line exits 2) with the install command when it
    is not installed."""
    try:
        import ray
    except ImportError:
        raise RuntimeError(f"--executor ray needs Ray, which is not installed: {INSTALL_HINT}") from None
    return ray


def package_parent() -> str:
    """The folder holding the PatchSamplerLib package (put on the workers' PYTHONPATH)."""
    import PatchSamplerLib
    return str(Path(PatchSamplerLib.__file__).resolve().parent.parent)


def worker_environment() -> dict:
    """Ray's runtime_env for the workers of a local instance: the package importable from them
    whatever their working folder (a pip-installed package is found anyway)."""
    paths = [package_parent()] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return {"env_vars": {"PYTHONPATH": os.pathsep.join(dict.fromkeys(paths))}}


def start_ray(address: str | None = None, **options):
    """ray.init for PatchSampler: without `address` a local instance (the dashboard off, the
    package on the workers' path); with one, a connection to that running cluster (whose nodes
    must have PatchSamplerLib and torch installed). `options` go to ray.init (e.g. num_cpus).
    Returns the ray module. RuntimeError when Ray is not installed."""
    ray = import_ray()
    options.setdefault("include_dashboard", False)
    if address is None:
        options.setdefault("runtime_env", worker_environment())
    ray.init(address=address, **options)
    return ray


class RayExecutor:
    """Jobs as Ray tasks of `cpus_per_task` CPUs and `gpus_per_task` GPUs each, at most
    `max_in_flight` submitted at a time (default: 4 per CPU of the cluster / task CPUs, at least
    8). Uses the Ray instance this process is already connected to; otherwise starts a local
    one (`address` None) or connects to `address` ("auto", "host:6379"),
    and shuts down on `close()` only what it started. RuntimeError when Ray is not installed,
    ValueError for a CPU count < 1 or a negative GPU count."""

    name = "ray"

    def __init__(self, address: str | None = None, cpus_per_task: float = 1, gpus_per_task: float = 0,
                 max_in_flight: int | None = None, log=print):
        if cpus_per_task < 1 or gpus_per_task < 0:
            raise ValueError(f"--cpus-per-task must be >= 1 and --gpus-per-task >= 0, got {cpus_per_task}, "
                             f"{gpus_per_task}")
        self.ray = import_ray()
        self.owned = not self.ray.is_initialized()
        if self.owned:
            start_ray(address)                  # what the workers print (e.g. sampler training) is shown here
        self.cpus, self.gpus = cpus_per_task, gpus_per_task
        cluster_cpus = int(self.ray.cluster_resources().get("CPU", 1))
        self.max_in_flight = max_in_flight or max(8, 4 * int(cluster_cpus // cpus_per_task))
        log(f"Ray: {cluster_cpus} CPUs, {int(self.ray.cluster_resources().get('GPU', 0))} GPUs in the cluster; "
            f"{cpus_per_task:g} CPU and {gpus_per_task:g} GPU per task")

    def share(self, obj):
        """An object reference: the object is stored once in the cluster's object store."""
        return self.ray.put(obj)

    def map(self, fn, jobs):
        """Yield (job, result or Failure) for every Job as its task finishes (any order). Tasks
        still pending when the caller stops early are cancelled."""
        remote = self.ray.remote(run_job).options(num_cpus=self.cpus, num_gpus=self.gpus, max_retries=TRIES - 1,
                                                  retry_exceptions=False)
        queue, pending = iter(jobs), {}

        def submit() -> None:
            job = next(queue, None)
            if job is not None:
                pending[remote.remote(fn, max(1, int(self.cpus)), TRIES, *job.args)] = job

        try:
            for _ in range(self.max_in_flight):
                submit()
            while pending:
                ready, _ = self.ray.wait(list(pending), num_returns=1)
                job = pending.pop(ready[0])
                yield job, self._result(ready[0])
                submit()
        finally:
            for ref in pending:
                self.ray.cancel(ref)

    def _result(self, ref):
        """The task's value, or a Failure when its worker died twice (or Ray lost the task)."""
        try:
            return self.ray.get(ref)
        except self.ray.exceptions.RayError as exc:
            return Failure(describe_error(exc), TRIES)

    def close(self) -> None:
        """Shut down the Ray instance this executor started (a cluster it connected to stays up)."""
        if self.owned and self.ray.is_initialized():
            self.ray.shutdown()


def make_executor(name: str = "local", address: str | None = None, cpus_per_task: float = 1,
                  gpus_per_task: float = 0, log=print):
    """An executor by name ("local" or "ray"; EXECUTORS). ValueError for another name; see
    RayExecutor for its errors."""
    if name == "local":
        return LocalExecutor()
    if name == "ray":
        return RayExecutor(address, cpus_per_task, gpus_per_task, log=log)
    raise ValueError(f"unknown executor {name!r}; choose one of {', '.join(EXECUTORS)}")


class Rate:
    """Jobs finished per second since `start` (time.time()), for the progress lines."""

    def __init__(self):
        self.start, self.count = time.time(), 0

    def add(self, count: int = 1) -> None:
        self.count += count

    def describe(self) -> str:
        """"12/s", "0.35/s" or "3.1 s each"."""
        seconds = max(time.time() - self.start, 1e-9)
        per_second = self.count / seconds
        if per_second >= 1:
            return f"{per_second:.2g}/s" if per_second < 10 else f"{per_second:.0f}/s"
        return f"{seconds / max(self.count, 1):.1f} s each"
