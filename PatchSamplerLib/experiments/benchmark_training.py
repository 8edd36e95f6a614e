"""`benchmark --training`: the sampler training step [T §4.4], faithful vs fast mode.

For each mode, in its own fresh (spawned) Python process, on the same small synthetic case
(`TrainingCase`):
1. peak memory of the *first* training step (one batch: generator, per-shape unrolled latent fit,
   loss, backward), as the increase of the resident set size over the step (`memory.call_peak_mb`:
   sampled every 2 ms and the process's high-water mark), with the trainer, shapes and prior
   already loaded -- so what the process holds before (torch, the data) is not counted;
2. wall time per training step: median and quartiles over `steps` further steps;
3. validation Dice (the real task: all patch voxels, T steps, decoded Dice) after each of `epochs`
   epochs of a fresh trainer with the same seed, i.e. the same initial sampler for both modes.

Both modes see the same shapes, batches (same seed), prior and hyperparameters; only `mode`
differs. Output: the rows as JSON-able dicts and a Markdown table (`training_markdown`).
"""
from __future__ import annotations

import contextlib
import io
import json
import multiprocessing
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from PatchSamplerLib.data.synthetic import make_shapes
from PatchSamplerLib.experiments.memory import call_peak_mb, quartiles
from PatchSamplerLib.method.inr import ShapePrior
from PatchSamplerLib.progress import tracked
from PatchSamplerLib.training.sampler import SamplerConfig, SamplerTrainer


@dataclass
class TrainingCase:
    """The small case both modes train on; `config` holds SamplerConfig overrides."""
    family: str = "vertebra"
    prior: str = "vertebra"
    scale: float = 0.5                  # half resolution: 64 x 60 x 45 voxels at 2 mm for vertebrae
    train_count: int = 8
    val_count: int = 8
    steps: int = 3                      # timed steps after the first (measured) one
    epochs: int = 3
    config: dict = field(default_factory=lambda: dict(n=4, k=9, t=100, batch_size=4, lr_step_epoch=200))

    def label(self) -> str:
        c = self.config
        extra = ", ".join(f"{k} {v}" for k, v in c.items() if k not in ("n", "k", "t", "batch_size", "lr_step_epoch"))
        plural = {"vertebra": "vertebrae"}.get(self.family, self.family + "s")
        return (f"{self.train_count} synthetic {plural} at scale {self.scale}, {self.val_count} validation, "
                f"N={c['n']} K={c['k']} T={c['t']}, batch {c['batch_size']}" + (f", {extra}" if extra else ""))


def _trainer(case: TrainingCase, mode: str, out_dir):
    vols = make_shapes(case.family, case.train_count + case.val_count, seed=0, scale=case.scale)
    cfg = SamplerConfig(**dict(case.config, mode=mode, epochs=case.epochs))
    return SamplerTrainer(vols[:case.train_count], vols[case.train_count:], ShapePrior.load(case.prior), out_dir,
                          cfg, log=lambda *a: None)


def measure_mode(case: TrainingCase, mode: str, threads: int) -> dict:
    """In this process: first-step peak memory (MB), step times (s), validation Dice per epoch."""
    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = _trainer(case, mode, f"{tmp}/steps")
        batch = list(range(trainer.cfg.batch_size))
        trainer.model.sampler.train()
        peak_mb = call_peak_mb(lambda: trainer.train_step(batch), threads)
        seconds = []
        for _ in range(case.steps):
            t0 = time.perf_counter()
            trainer.train_step(batch)
            seconds.append(time.perf_counter() - t0)
        trainer = _trainer(case, mode, f"{tmp}/epochs")
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            trainer.run()
        dice = [round(r["val_dice"], 4) for r in trainer.history if "val_dice" in r]
        fps = trainer.baseline
    return {"mode": mode, "first_step_peak_mb": peak_mb, "step_seconds": quartiles(seconds),
            "epochs_wall_s": time.perf_counter() - t0, "val_dice": dice, "fps_val_dice": fps}


def compare_modes(case: TrainingCase, threads: int) -> list[dict]:
    """One fresh spawned process per mode (faithful, fast) -> their `measure_mode` rows."""
    rows = []
    for mode in tracked(("faithful", "fast"), "training benchmark", unit="modes"):   # shutdown waits for the worker
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            rows.append(pool.submit(measure_mode, case, mode, threads).result())
        print(f"{mode}: step {rows[-1]['step_seconds']['median']:.2f} s, first-step peak "
              f"{rows[-1]['first_step_peak_mb']:.0f} MB, validation Dice {rows[-1]['val_dice']}", flush=True)
    return rows


def training_summary(rows: list[dict]) -> dict:
    """Ratios faithful / fast (time, memory) and the last-epoch Dice difference fast - faithful (points)."""
    by = {r["mode"]: r for r in rows}
    slow, fast = by["faithful"], by["fast"]
    return {"speedup": slow["step_seconds"]["median"] / fast["step_seconds"]["median"],
            "memory_ratio": slow["first_step_peak_mb"] / fast["first_step_peak_mb"],
            "dice_points": 100 * (fast["val_dice"][-1] - slow["val_dice"][-1])}


def training_markdown(case: TrainingCase, rows: list[dict], command: str) -> str:
    s = training_summary(rows)
    lines = [f"## Sampler training step: faithful vs fast ({case.label()})", "",
             "| mode | step median (s) | step IQR (s) | first-step peak (MB) | validation Dice per epoch "
             "(epoch 0 first when validated) | FPS (seed 0) |", "|---|---|---|---|---|---|"]
    for r in rows:
        q = r["step_seconds"]
        lines.append(f"| {r['mode']} | {q['median']:.2f} | {q['q1']:.2f}-{q['q3']:.2f} | {r['first_step_peak_mb']:.0f} | "
                     f"{', '.join(f'{d:.4f}' for d in r['val_dice'])} | {r['fps_val_dice']:.4f} |")
    lines += ["", f"Fast vs faithful: **{s['speedup']:.1f}x faster per step, {s['memory_ratio']:.1f}x less peak memory, "
                  f"validation Dice after {case.epochs} epochs {s['dice_points']:+.2f} points** (target: >= 4x, >= 4x, "
                  "within 0.5 points).", "",
              "Peak memory: the resident set size increase over the first training step in a fresh process "
              "(trainer, shapes and prior loaded before), sampled every 2 ms and from the high-water mark.", "",
              f"Command: `{command}`", ""]
    return "\n".join(lines)


def anchored_case(epochs: int) -> TrainingCase:
    """The small case from the FPS-anchored start (t = 0.02) at lr 1e-4 with soft labels (the
    bundled kidney 8x9 recipe) instead of the thesis's random start at lr 0.01."""
    case = TrainingCase(epochs=epochs)
    case.config.update(anchor="fps", initial_temperature=0.02, soft_labels=True, lr=1e-4)
    return case


def run_training_benchmark(case: TrainingCase, threads: int, out_dir, command: str = "") -> str:
    """Both modes on `case` with `threads` torch threads each; writes training.json and
    training.md into `out_dir` and returns the Markdown. Measures the CPU process only (its memory
    figure is the process's resident set)."""
    rows = compare_modes(case, threads)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = {"case": asdict(case), "rows": rows, "summary": training_summary(rows), "command": command}
    (out / "training.json").write_text(json.dumps(report, indent=2))
    text = training_markdown(case, rows, command)
    (out / "training.md").write_text(text)
    return text
