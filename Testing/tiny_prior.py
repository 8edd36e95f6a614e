"""A tiny INR prior trained once per test session (small vertebrae at 4 mm, ~30 s).

Under pytest-xdist (`-n 2`, the README's test command) the workers of one run share what is
trained here: the first worker that needs a model trains it under a file lock in a folder named
after the run (PYTEST_XDIST_TESTRUNUID), the others wait and load it."""
from __future__ import annotations

import contextlib
import functools
import io
import os
import shutil
import tempfile
from pathlib import Path


def built_once(name: str, build) -> Path:
    """A folder holding what `build(folder)` wrote: built once per test run (shared by the
    xdist workers of the run under a file lock; a fresh temporary folder without xdist)."""
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    if not run:
        out = Path(tempfile.mkdtemp(prefix=f"patchsampler-{name}-"))
        build(out)
        return out
    from filelock import FileLock          # a dependency of torch
    out = Path(tempfile.gettempdir()) / f"patchsampler-{name}-{run}"
    with FileLock(f"{out}.lock"):
        if not (out / "built").exists():
            shutil.rmtree(out, ignore_errors=True)         # what a failed build left: start clean, not resumed
            out.mkdir()
            build(out)
            (out / "built").touch()
    return out

TINY_SCALE = 0.25          # 32 x 30 x 22 voxels at 4 mm
TINY_TRAIN, TINY_VAL = 24, 2


@functools.lru_cache(maxsize=1)
def tiny_prior_path() -> Path:
    """Train (once per process) and return the path of a tiny vertebra prior."""
    from PatchSamplerLib.data.synthetic import make_shapes
    from PatchSamplerLib.training.prior import PriorConfig, PriorTrainer

    def build(out: Path) -> None:
        vols = make_shapes("vertebra", TINY_TRAIN + TINY_VAL, seed=0, scale=TINY_SCALE)
        cfg = PriorConfig(epochs=60, points_per_shape=1024, surface_fraction=0.5, val_every=30, val_t=30, val_n=6,
                          val_k=5, lr_net=3e-3, lr_latent=1e-2, reg_ramp_epochs=10)
        with contextlib.redirect_stdout(io.StringIO()):
            PriorTrainer(vols[:TINY_TRAIN], vols[TINY_TRAIN:], out, cfg).run()
    return built_once("tiny-prior", build) / "prior.pt"


def held_out_vertebra(index: int = 0):
    """A small vertebra the tiny prior never saw (another seed)."""
    from PatchSamplerLib.data.synthetic import make_shape
    return make_shape("vertebra", 99, index, TINY_SCALE)


def tiny_sampler_config(**changes):
    """Settings of the tiny sampler runs: N = 2 patches of 3^3 voxels, T = 5, fast mode."""
    from PatchSamplerLib.training.sampler import SamplerConfig
    options = dict(n=2, k=3, t=5, mode="fast", epochs=2, batch_size=2, loss_voxels=512, lr_step_epoch=1)
    options.update(changes)
    return SamplerConfig(**options)


@functools.lru_cache(maxsize=1)
def tiny_sampler_path() -> Path:
    """Train (once per process) and return the path of a tiny learned sampler for the tiny prior."""
    from PatchSamplerLib.data.synthetic import make_shapes
    from PatchSamplerLib.method.inr import ShapePrior
    from PatchSamplerLib.training.sampler import SamplerTrainer

    def build(out: Path) -> None:
        vols = make_shapes("vertebra", 5, seed=0, scale=TINY_SCALE)
        with contextlib.redirect_stdout(io.StringIO()):
            SamplerTrainer(vols[:4], vols[4:], ShapePrior.load(tiny_prior_path()), out, tiny_sampler_config(),
                           log=lambda *a: None).run()
    return built_once("tiny-sampler", build) / "sampler.pt"


@functools.lru_cache(maxsize=1)
def tiny_any_sampler_path() -> Path:
    """Train (once per process) and return the path of a tiny any-(N, K) sampler (N <= 8, T = 3)
    for the tiny prior: one epoch on 4 shapes, validated on a fifth (its history: train_log.jsonl)."""
    from PatchSamplerLib.data.synthetic import make_shapes
    from PatchSamplerLib.method.inr import ShapePrior
    from PatchSamplerLib.training.any_sampler import AnySamplerTrainer

    def build(out: Path) -> None:
        vols = make_shapes("vertebra", 5, seed=0, scale=TINY_SCALE)
        cfg = tiny_sampler_config(n=8, k=3, t=3, epochs=1, any_nk=True, anchor="fps", fit_points=64, batch_size=4)
        with contextlib.redirect_stdout(io.StringIO()):
            AnySamplerTrainer(vols[:4], vols[4:], ShapePrior.load(tiny_prior_path()), out, cfg,
                              log=lambda *a: None).run()
    return built_once("tiny-any-sampler", build) / "sampler.pt"


def embedded_in_a_large_flipped_grid(vol, at=(50, 35, 30), shape=(140, 110, 90)):
    """`vol` inside a much larger grid stored with its axes permuted and two of them reversed."""
    import numpy as np
    from PatchSamplerLib.volume import BinaryVolume
    big = np.zeros(shape, bool)
    big[at[0]:at[0] + vol.shape[0], at[1]:at[1] + vol.shape[1], at[2]:at[2] + vol.shape[2]] = vol.mask
    stored = np.flip(np.transpose(big, (2, 0, 1)), (0, 2))
    direction = np.eye(3)[:, [2, 0, 1]] * np.array([-1.0, 1.0, -1.0])
    return BinaryVolume(np.ascontiguousarray(stored), np.array(vol.spacing)[[2, 0, 1]], np.array([5.0, -7.0, 3.0]),
                        direction)
