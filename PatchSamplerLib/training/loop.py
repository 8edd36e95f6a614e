"""The epoch loop shared by the prior and the sampler trainers.

`TrainingLoop` is their base class. It runs the epochs and owns what every training run does
around them: one JSON row per epoch in train_log.jsonl and one console line; validation every
`val_every` epochs and after the last (also the last of a spent time budget), the best-scoring model saved as it is found; early
stopping after `patience` validations without improvement; a wall-clock budget of
`max_minutes` (checked after each epoch, so the epoch that exceeds it is completed); last.pt,
the resumable state, written atomically after every epoch (`resume()` continues from it); and
curves.png at the end.

A trainer supplies the pieces that differ (the hooks below): one epoch's training step, the
validation, the model to save, its own tensors in last.pt and the curves.
"""
from __future__ import annotations

import contextlib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from PatchSamplerLib.checkpoints import load_checkpoint, save_checkpoint
from PatchSamplerLib.progress import Progress


RUN_FILES = ("last.pt", "prior.pt", "sampler.pt", "train_log.jsonl", "train.log", "curves.png")
"""What a training run writes into its output folder (and metadata.json of a bundled copy is not among them)."""


def earlier_run_files(out_dir, names=RUN_FILES) -> list[str]:
    """The files of `names` an earlier training run left in `out_dir` (a missing folder: [])."""
    return [name for name in names if (Path(out_dir) / name).exists()]


def prepare_run_folder(out_dir, resume: bool, overwrite: bool) -> None:
    """Before any work of a training command: a fresh run never replaces an earlier run's models
    or logs. With `resume`, out_dir/last.pt must exist; with `overwrite`, the earlier run's files
    (RUN_FILES only; nothing else in the folder) are deleted; with neither, a folder holding any
    of them is refused. Raises ValueError naming the files and the options."""
    out = Path(out_dir)
    if resume and overwrite:
        raise ValueError("--resume continues the run in --out and --overwrite replaces it: choose one")
    found = earlier_run_files(out)
    if resume:
        if "last.pt" not in found:
            raise ValueError(f"--resume: {out / 'last.pt'} not found (nothing to continue; drop --resume)")
        return
    if found and not overwrite:
        raise ValueError(f"{out} already holds a training run ({', '.join(found)}); continue it with --resume, "
                         "replace it with --overwrite, or choose another --out")
    for name in found:
        (out / name).unlink()


@dataclass
class LoopSettings:
    """When the loop validates and stops."""
    epochs: int                         # epochs in all (a resumed run continues up to it)
    val_every: int = 1                  # epochs between validations (the last epoch is always validated)
    max_minutes: float | None = None    # wall-clock budget, minutes of training (resumes add up); None: none
    patience: int | None = None         # validations without improvement before stopping; None: never


class TrainingLoop:
    """Epochs, logs, validation with the best model kept, early stopping, time budget,
    checkpoints, resume and curves, around a trainer's hooks.

    A subclass sets the class attributes, `self.shapes` (the training items: the progress bar
    counts them) and implements the hooks. In a run of several processes (`distributed`) only
    the one with `writes` True writes files, and a trainer's `agreed` makes every decision to stop
    that of that process. State (in last.pt): `epoch` (epochs done),
    `best_val` (best validation score so far), `bad_validations` (validations without
    improvement since it; a trainer without patience need not list it in SCALARS), `elapsed`
    (seconds of training) and `history` (the train_log.jsonl rows)."""

    CHECKPOINT_KIND = ""                # kind of last.pt (`checkpoints.save_checkpoint`)
    MODEL_FILE = ""                     # the best model's file in the output folder
    SCALARS = ("epoch", "best_val", "elapsed")   # state saved as last.pt's "scalars" tensor, in this order
    SUMMARY = ()                        # row keys shown on the console line of an epoch

    def __init__(self, out_dir, settings: LoopSettings, log=print):
        self.out, self.settings, self.log = Path(out_dir), settings, log
        self.out.mkdir(parents=True, exist_ok=True)
        self.epoch, self.best_val, self.bad_validations, self.elapsed = 0, -math.inf, 0, 0.0
        self.history: list[dict] = []
        self.resumed = False
        self.writes = True                  # this process writes the run's files (rank 0 of several)
        self._clock = time.time()

    # ---------------------------------------------------------- hooks
    def train_epoch(self, progress: Progress) -> dict:
        """Train one epoch (`self.epoch` is the number of epochs done before it) -> the row's fields."""
        raise NotImplementedError

    def validation(self, row: dict) -> float:
        """Validate the current model: add the scores to `row`; return the one to maximise."""
        raise NotImplementedError

    def best_model(self, row: dict):
        """The model to save (it has `.save(path)`) for the validation `row` ({} at the end of a
        run that never saved one)."""
        raise NotImplementedError

    def training_state(self) -> dict:
        """The trainer's tensors for last.pt (weights, optimiser, generator state)."""
        raise NotImplementedError

    def load_training_state(self, state: dict, meta: dict) -> None:
        """Restore `training_state()` from last.pt (`meta`: its metadata); refuse other settings."""
        raise NotImplementedError

    def checkpoint_meta(self) -> dict:
        """last.pt's metadata besides the history (JSON); "n_train" is checked on resume."""
        raise NotImplementedError

    def plot(self, path: Path) -> None:
        """Draw the curves of `self.history` to `path` (PNG)."""
        raise NotImplementedError

    def before_epochs(self) -> None:
        """Called by `run_epochs` before the first epoch (the clock is running)."""

    def agreed(self, value):
        """`value` as every process of the run sees it (one process: itself; several: the
        writing process's), for decisions all must take together."""
        return value

    # ---------------------------------------------------------- the loop
    def run_epochs(self) -> Path:
        """Train until `settings.epochs`, early stopping or the time budget -> the best model's path.
        Raises ValueError, before the first epoch, when a fresh (not resumed) run would write over
        an earlier run's model, last.pt or train_log.jsonl in the output folder."""
        found = [] if self.resumed else earlier_run_files(self.out, ("last.pt", self.MODEL_FILE, "train_log.jsonl"))
        if found:
            raise ValueError(f"{self.out} already holds a training run ({', '.join(found)}): call resume() to "
                             "continue it, or use another folder")
        self._clock = time.time() - self.elapsed
        self.before_epochs()
        while self.epoch < self.settings.epochs:
            stop = self._one_epoch()
            reason = "early stopping" if stop else self.agreed(self._over_budget())
            if reason and self.epoch < self.settings.epochs:
                self.log(reason)
                break
        return self._finish()

    def _one_epoch(self) -> bool:
        """Train, validate when due, log and checkpoint one epoch -> True when patience ran out."""
        progress = Progress(len(self.shapes), f"epoch {self.epoch + 1}/{self.settings.epochs}")
        start = time.time()
        fields = self.train_epoch(progress)
        self.epoch += 1
        row = {"epoch": self.epoch, **fields, "seconds": round(time.time() - start, 2)}
        self._tick()
        last = bool(self.agreed(self._over_budget()))         # the budget ends the run here: validate it
        stop = self.validate_if_due(row, force=last)
        self.record(row)
        progress.done(summary(row, self.SUMMARY))
        return stop

    def _over_budget(self) -> str:
        """The log line when the time budget is spent, else ""."""
        limit = self.settings.max_minutes
        return f"time budget of {limit} min reached" if limit and self.elapsed > limit * 60 else ""

    def _finish(self) -> Path:
        best = self.out / self.MODEL_FILE
        if self.writes:
            if not best.exists():
                self.best_model({}).save(best)
            self.plot(self.out / "curves.png")
        return best

    def _tick(self) -> None:
        self.elapsed = time.time() - self._clock

    def validate_if_due(self, row: dict, force: bool = False) -> bool:
        """Validate every `val_every` epochs, after the last one, or when forced; save the best
        model (row["saved"]) -> True when `patience` validations in a row did not improve."""
        cfg = self.settings
        if not (force or self.epoch % cfg.val_every == 0 or self.epoch == cfg.epochs):
            return False
        score = self.validation(row)
        if score > self.best_val:
            self.best_val, self.bad_validations = score, 0
            self._tick()
            if self.writes:
                self.best_model(row).save(self.out / self.MODEL_FILE)
            row["saved"] = True
        else:
            self.bad_validations += 1
        return cfg.patience is not None and self.bad_validations >= cfg.patience

    def record(self, row: dict) -> None:
        """Append `row` (with the minutes so far) to the history and (the writing process only)
        train_log.jsonl; write last.pt."""
        self._tick()
        row["elapsed_min"] = round(self.elapsed / 60, 2)
        self.history.append(row)
        if not self.writes:
            return
        with open(self.out / "train_log.jsonl", "a") as jsonl:
            jsonl.write(json.dumps(row) + "\n")
        self.save_last()

    # ---------------------------------------------------------- last.pt
    def save_last(self) -> None:
        scalars = torch.tensor([float(getattr(self, name)) for name in self.SCALARS], dtype=torch.float64)
        save_checkpoint(self.out / "last.pt", self.CHECKPOINT_KIND, dict(self.training_state(), scalars=scalars),
                        dict(self.checkpoint_meta(), history=self.history))

    def resume(self) -> None:
        """Continue from out_dir/last.pt; refuses one of another number of training shapes."""
        state, meta = load_checkpoint(self.out / "last.pt", self.CHECKPOINT_KIND)
        n_train = self.checkpoint_meta()["n_train"]
        if meta["n_train"] != n_train:
            raise ValueError(f"resume: the checkpoint has {meta['n_train']} training shapes, the data {n_train}")
        self.load_training_state(state, meta)
        for name, value in zip(self.SCALARS, state["scalars"].tolist()):
            setattr(self, name, value)
        self.epoch, self.bad_validations, self.history = int(self.epoch), int(self.bad_validations), meta["history"]
        self.resumed = True
        self.log(f"resumed at epoch {self.epoch} (best validation Dice {self.best_val:.4f})")


def summary(row: dict, keys) -> str:
    """The console line of an epoch: the `keys` present in `row`, and whether the model was saved."""
    parts = [f"{key} {row[key]:.4f}" for key in keys if key in row]
    return " ".join(parts) + (" (saved)" if row.get("saved") else "")


@contextlib.contextmanager
def curves_figure(path):
    """Two side-by-side axes (a, b) to draw the curves on inside the `with`; afterwards, with
    b's legend, saved to `path` as a PNG (matplotlib's Agg backend: no display needed)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    try:
        yield axes
        axes[1].legend()
        fig.tight_layout()
        fig.savefig(path, dpi=100)
    finally:
        plt.close(fig)
