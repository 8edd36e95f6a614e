"""Issue #20: the evaluation grid on Ray and prior training with DistributedDataParallel.

The tests marked `cluster` (about 1 min on 2 CPU cores) share one local Ray instance of 2 CPUs
(module fixture; skipped when ray is not installed) or launch torchrun with 2 CPU processes
(gloo). The others check, without Ray, what the executors promise: failed runs recorded and
retried, no `ray` import outside the Ray executor, and a clear error when it is missing.
"""
from __future__ import annotations

import contextlib
import csv
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from PatchSamplerLib.cli.main import main
from PatchSamplerLib.experiments.executors import Failure, Job, LocalExecutor

ROOT = Path(__file__).resolve().parent.parent
# 2 kidneys at 1/4 scale; N x K 2x3 and 4x9, T = 3, learned (the bundled any-(N, K) kidney sampler at 2x3, the
# per-(4, 9) one at 4x9), FPS and random 2 runs each: 20 runs
GRID = ["evaluate", "--family", "kidney", "--prior", "kidney", "--scale", "0.25", "--count", "2",
        "--configs", "2x3,4x9", "--t", "3", "--samplers", "learned,fps,random", "--runs", "2", "--threads", "1"]
RUNS = 20
TIMINGS = ("fit_s", "decode_s")          # wall times: the only columns that differ between two evaluations


def read_rows(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def without_timings(rows: list[dict]) -> list[dict]:
    return [{key: value for key, value in row.items() if key not in TIMINGS} for row in rows]


def quiet(*_args, **_kwargs) -> None:
    """A log that says nothing."""


@pytest.fixture(scope="module")
def ray_instance():
    pytest.importorskip("ray")
    from PatchSamplerLib.experiments.executors import start_ray
    ray = start_ray(num_cpus=2, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def local_grid(tmp_path_factory) -> Path:
    """The grid evaluated by the local executor: its output folder."""
    out = tmp_path_factory.mktemp("local")
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(GRID + ["--out", str(out)]) == 0
    assert len(read_rows(out / "cases.csv")) == RUNS
    return out


def grid_inputs():
    """The grid of GRID for `run_cases`: (cases, EvaluationGrid, prior)."""
    from PatchSamplerLib.data.synthetic import make_shape
    from PatchSamplerLib.experiments.evaluation import EvaluationGrid
    from PatchSamplerLib.method.inr import ShapePrior
    cases = [(f"kidney_1_{i:04d}", make_shape("kidney", 1, i, 0.25)) for i in range(2)]
    grid = EvaluationGrid(((2, 3), (4, 9)), (3,), ("learned", "fps", "random"), 2, 1e-2, "cpu")
    return cases, grid, ShapePrior.load("kidney")


class Spy:
    """An executor around another that counts the jobs it is given and, with `stop_after`, is
    interrupted (KeyboardInterrupt, as by Ctrl-C) after that many results."""

    def __init__(self, inner, stop_after: int | None = None):
        self.inner, self.stop_after, self.submitted = inner, stop_after, 0

    def share(self, obj):
        return self.inner.share(obj)

    def map(self, fn, jobs):
        self.submitted += len(jobs)
        for count, item in enumerate(self.inner.map(fn, jobs), start=1):
            yield item
            if self.stop_after and count >= self.stop_after:
                raise KeyboardInterrupt


# ---------------------------------------------------------------- Ray
@pytest.mark.cluster
def test_ray_executor_with_2_workers_reproduces_the_local_cases_csv(ray_instance, local_grid, tmp_path):
    assert ray_instance.cluster_resources()["CPU"] == 2
    out = tmp_path / "ray"
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        assert main(GRID + ["--executor", "ray", "--cpus-per-task", "1", "--out", str(out)]) == 0
    assert "Ray: 2 CPUs" in printed.getvalue()
    # the same rows in the same order (rewritten in the local order once all are in); timings differ
    assert without_timings(read_rows(out / "cases.csv")) == without_timings(read_rows(local_grid / "cases.csv"))
    tables = [(folder / "table.md").read_text().split("Command:")[0] for folder in (out, local_grid)]
    assert tables[0] == tables[1] and "LEARNED" in tables[0]
    assert not (out / "failures.csv").exists()
    assert ray_instance.is_initialized()                    # a Ray it did not start is left running


@pytest.mark.cluster
def test_a_killed_ray_evaluation_resumes_without_recomputing_finished_runs(ray_instance, local_grid, tmp_path):
    from PatchSamplerLib.experiments.evaluation import run_cases
    from PatchSamplerLib.experiments.executors import RayExecutor
    cases, grid, prior = grid_inputs()
    killed = Spy(RayExecutor(log=quiet), stop_after=5)
    with pytest.raises(KeyboardInterrupt):
        run_cases(cases, grid, prior, tmp_path, log=quiet, executor=killed)
    finished = read_rows(tmp_path / "cases.csv")
    assert killed.submitted == RUNS and len(finished) == 5

    resumed = Spy(RayExecutor(log=quiet))
    run_cases(cases, grid, prior, tmp_path, log=quiet, executor=resumed)
    assert resumed.submitted == RUNS - 5                     # only the runs not in cases.csv
    rows = read_rows(tmp_path / "cases.csv")
    assert all(row in rows for row in finished)              # kept as written, timings included: not run again
    assert without_timings(rows) == without_timings(read_rows(local_grid / "cases.csv"))


@pytest.mark.cluster
def test_missing_fold_samplers_train_as_ray_tasks_and_resume_from_their_run_folders(ray_instance, tmp_path):
    from PatchSamplerLib.experiments.crossval import fold_sampler_path
    from PatchSamplerLib.method.sampler import SamplerModel
    out = tmp_path / "cv"
    args = ["evaluate", "--family", "kidney", "--prior", "kidney", "--scale", "0.25", "--count", "6", "--folds", "3",
            "--configs", "2x3", "--t", "3", "--runs", "1", "--samplers", "learned,fps", "--train-missing",
            "--train-epochs", "1", "--threads", "1", "--executor", "ray", "--out", str(out)]
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(args) == 0
    rows = read_rows(out / "cases.csv")
    assert sum(r["sampler"] == "learned" for r in rows) == 6 and sum(r["sampler"] == "fps" for r in rows) == 6
    paths = [fold_sampler_path(out / "samplers", fold, 2, 3, 3) for fold in range(3)]
    assert [SamplerModel.load(p).metadata["data"] for p in paths] == [f"cross-validation fold {f}" for f in range(3)]
    # the driver died before writing fold 0's sampler and any row: its run folder (last.pt) is there
    trained = paths[0].read_bytes()
    paths[0].unlink()
    (out / "cases.csv").unlink()
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(args) == 0
    assert paths[0].read_bytes() == trained                  # continued from last.pt, not trained again
    assert len((paths[0].parent / "run_n2_k3_t3" / "train_log.jsonl").read_text().splitlines()) == 1
    assert without_timings(read_rows(out / "cases.csv")) == without_timings(rows)


def _chaos_job(kind: str, path: str):
    """die: the worker process dies the first time (a marker file remembers it); fail: raises
    every time (each attempt appends to `path`); else returns its kind."""
    if kind == "die":
        if not os.path.exists(path):
            Path(path).touch()
            os._exit(1)
        return "second worker"
    if kind == "fail":
        with open(path, "a") as f:
            f.write("x")
        raise ValueError("bad shape\nsecond line")
    return kind


@pytest.mark.cluster
def test_a_dead_worker_is_retried_and_a_failing_job_recorded_after_two_tries(ray_instance, tmp_path):
    from ray import cloudpickle
    from PatchSamplerLib.experiments.executors import RayExecutor
    jobs = [Job((kind,), (kind, str(tmp_path / kind))) for kind in ("die", "fail", "ok")]
    cloudpickle.register_pickle_by_value(sys.modules[__name__])       # the workers cannot import Testing/
    try:
        results = {job.key[0]: result for job, result in RayExecutor(log=quiet).map(_chaos_job, jobs)}
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    assert results == {"die": "second worker", "fail": Failure("ValueError: bad shape", 2), "ok": "ok"}
    assert (tmp_path / "fail").read_text() == "xx"


# ---------------------------------------------------------------- DDP
def _ddp_command(*options) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
            "-m", "PatchSamplerLib", "train-prior", *options]


@pytest.mark.cluster
def test_prior_training_with_ddp_on_2_processes_matches_one_process_and_resumes(tmp_path):
    """5 shapes, batch 4: steps of 4 shapes (2 per process) and of 1 (one process has none);
    768 points per shape in passes of at most 1,024 points (`--step-memory-gb`): each shape is
    its own backward pass, so DDP must sum several passes. Two epochs, then --resume to three
    under torchrun, against three epochs in one process. Tolerance 1e-5 on every weight and
    latent: the runs differ only in the order of float sums (observed differences ~1e-8), while
    one Adam step moves a weight by up to lr = 8e-4, so a lost or doubled gradient share (an
    error of O(lr)) fails it."""
    from PatchSamplerLib.checkpoints import load_checkpoint
    from PatchSamplerLib.method.inr import ShapePrior
    common = ["--family", "kidney", "--scale", "0.25", "--count", "5", "--val-count", "0", "--points-per-shape", "768",
              "--batch-size", "4", "--step-memory-gb", "0.000001", "--threads", "1"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    ddp, one = tmp_path / "ddp", tmp_path / "one"
    for options in (["--epochs", "2"], ["--epochs", "3", "--resume"]):
        done = subprocess.run(_ddp_command(*common, *options, "--out", str(ddp)), cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["train-prior", *common, "--epochs", "3", "--out", str(one)]) == 0
    (state, meta), (ref_state, ref_meta) = (load_checkpoint(d / "last.pt", "prior-training") for d in (ddp, one))
    for name, weight in ref_state["decoder"].items():
        torch.testing.assert_close(state["decoder"][name], weight, atol=1e-5, rtol=0)
    torch.testing.assert_close(state["latents"], ref_state["latents"], atol=1e-5, rtol=0)
    assert [r["epoch"] for r in meta["history"]] == [1, 2, 3]
    assert [r["loss"] for r in meta["history"]] == pytest.approx([r["loss"] for r in ref_meta["history"]], rel=1e-6)
    log = (ddp / "train.log").read_text()
    assert log.count("2 processes (DistributedDataParallel, cpu)") == 2        # rank 0 only, once per launch
    assert log.count("epoch 1/2") == 1 and "resumed at epoch 2" in log
    assert ShapePrior.load(ddp / "prior.pt").metadata["processes"] == 2


# ---------------------------------------------------------------- without Ray
class FailingOnce(LocalExecutor):
    """The local executor, but the job at position `index` fails (as a Ray worker's would)."""

    def __init__(self, index: int):
        self.index = index

    def map(self, fn, jobs):
        for position, job in enumerate(jobs):
            yield job, Failure("RuntimeError: worker lost", 2) if position == self.index else fn(*job.args)


def test_a_failed_run_goes_to_failures_csv_and_the_next_evaluation_retries_it(tmp_path, capsys):
    from PatchSamplerLib.cli.evaluate import failure_status
    from PatchSamplerLib.experiments.evaluation import run_cases, unresolved_failures
    cases, grid, prior = grid_inputs()
    cases = cases[:1]
    run_cases(cases, grid, prior, tmp_path, log=quiet, executor=FailingOnce(3))
    rows, failed = read_rows(tmp_path / "cases.csv"), read_rows(tmp_path / "failures.csv")
    assert len(rows) == RUNS // 2 - 1 and len(failed) == 1
    assert failed[0]["error"] == "RuntimeError: worker lost" and failed[0]["attempts"] == "2"
    assert not any((r["n"], r["sampler"], r["run"]) == (failed[0]["n"], failed[0]["sampler"], failed[0]["run"])
                   for r in rows)
    assert failure_status(tmp_path) == 1 and "1 runs failed twice" in capsys.readouterr().err
    spy = Spy(LocalExecutor())
    run_cases(cases, grid, prior, tmp_path, log=quiet, executor=spy)
    assert spy.submitted == 1 and unresolved_failures(tmp_path) == [] and failure_status(tmp_path) == 0
    order = [("2", "learned", "0"), ("2", "fps", "0"), ("2", "fps", "1"), ("2", "random", "0"), ("2", "random", "1"),
             ("4", "learned", "0"), ("4", "fps", "0"), ("4", "fps", "1"), ("4", "random", "0"), ("4", "random", "1")]
    assert [(r["n"], r["sampler"], r["run"]) for r in read_rows(tmp_path / "cases.csv")] == order   # back in place


def test_ray_is_imported_only_by_the_ray_executor():
    code = ("import sys\n"
            "import PatchSamplerLib.cli.main, PatchSamplerLib.pipeline, PatchSamplerLib.experiments.crossval\n"
            "from PatchSamplerLib.experiments.executors import Job, LocalExecutor, make_executor\n"
            "assert list(make_executor('local').map(abs, [Job((1,), (-2,))]))[0][1] == 2\n"
            "print('ray' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "False"


def test_executor_ray_without_ray_installed_exits_2_with_the_install_command(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)                # `import ray` raises ImportError
    assert main(GRID + ["--executor", "ray", "--out", str(tmp_path)]) == 2
    assert "requirements-cluster.txt" in capsys.readouterr().err
    assert not (tmp_path / "cases.csv").exists()
