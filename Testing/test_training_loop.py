"""The epoch loop shared by the trainers (`training.loop`), on a toy trainer: resume after a kill
equals an uninterrupted run, the time budget (resumes included), early stopping, the best model;
and the one-way imports inside `training/`."""
from __future__ import annotations

import ast
import json
import types
from pathlib import Path

import pytest
import torch

from PatchSamplerLib.checkpoints import load_checkpoint, save_checkpoint
from PatchSamplerLib.training import loop
from PatchSamplerLib.training.loop import LoopSettings, TrainingLoop
from import_graph import import_graph

ROOT = Path(__file__).resolve().parent.parent


class Clock:
    """A fake wall clock for the loop: each toy epoch takes one minute."""

    def __init__(self):
        self.now = 1000.0

    def time(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    fake = Clock()
    monkeypatch.setattr(loop, "time", types.SimpleNamespace(time=fake.time))
    return fake


class ToyModel:
    def __init__(self, weights: torch.Tensor, epoch: int):
        self.weights, self.epoch = weights, epoch

    def save(self, path) -> None:
        save_checkpoint(path, "toy", {"w": self.weights}, {"epoch": self.epoch})


class ToyTrainer(TrainingLoop):
    """Least squares with Adam on shuffled batches of 2 of 8 points; `scores`: the validation
    score after each epoch (default: -loss); `kill_at`: the epoch interrupted (as by Ctrl-C)."""

    CHECKPOINT_KIND, MODEL_FILE = "toy-training", "toy.pt"
    SCALARS = ("epoch", "best_val", "bad_validations", "elapsed")
    SUMMARY = ("loss", "score")

    def __init__(self, out_dir, settings: LoopSettings, clock: Clock | None = None, scores=None,
                 kill_at: int | None = None):
        self.logged = []
        super().__init__(out_dir, settings, log=self.logged.append)
        self.clock, self.scores, self.kill_at = clock, scores, kill_at
        self.shapes = list(range(8))
        self.x = torch.randn(8, 3, generator=torch.Generator().manual_seed(1))
        self.y = self.x @ torch.tensor([1.0, -2.0, 0.5])
        self.w = torch.nn.Parameter(torch.zeros(3))
        self.opt = torch.optim.Adam([self.w], lr=0.1)
        self.gen = torch.Generator().manual_seed(0)

    def train_epoch(self, progress) -> dict:
        if self.epoch + 1 == self.kill_at:
            raise KeyboardInterrupt
        losses = []
        for batch in torch.randperm(8, generator=self.gen).split(2):
            loss = ((self.x[batch] @ self.w - self.y[batch]) ** 2).mean()
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
            losses.append(loss.item())
        if self.clock is not None:
            self.clock.now += 60
        return {"loss": sum(losses) / len(losses)}

    def validation(self, row: dict) -> float:
        row["score"] = self.scores[self.epoch - 1] if self.scores else -row["loss"]
        return row["score"]

    def best_model(self, row: dict) -> ToyModel:
        return ToyModel(self.w.detach().clone(), self.epoch)

    def training_state(self) -> dict:
        return {"w": self.w.detach(), "optimizer": self.opt.state_dict(), "gen": self.gen.get_state()}

    def load_training_state(self, state: dict, meta: dict) -> None:
        with torch.no_grad():
            self.w.copy_(state["w"])
        self.opt.load_state_dict(state["optimizer"])
        self.gen.set_state(state["gen"])

    def checkpoint_meta(self) -> dict:
        return {"n_train": len(self.shapes)}

    def plot(self, path) -> None:
        Path(path).write_text(json.dumps([r["epoch"] for r in self.history]))


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in (path / "train_log.jsonl").read_text().splitlines()]


def _without_times(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in ("seconds", "elapsed_min")} for r in rows]


def test_resume_after_a_kill_matches_an_uninterrupted_run(tmp_path):
    settings = LoopSettings(epochs=5, val_every=2)
    full = ToyTrainer(tmp_path / "full", settings)
    full.run_epochs()

    with pytest.raises(KeyboardInterrupt):
        ToyTrainer(tmp_path / "killed", settings, kill_at=4).run_epochs()
    assert [r["epoch"] for r in load_checkpoint(tmp_path / "killed" / "last.pt", "toy-training")[1]["history"]] \
        == [1, 2, 3]

    resumed = ToyTrainer(tmp_path / "killed", settings)
    resumed.resume()
    best_so_far = full.history[1]["score"]                        # validated at epochs 2 and 5
    assert resumed.epoch == 3 and resumed.logged == [f"resumed at epoch 3 (best validation Dice {best_so_far:.4f})"]
    best = resumed.run_epochs()
    assert torch.equal(resumed.w, full.w)
    assert _without_times(resumed.history) == _without_times(full.history)
    assert _without_times(_rows(tmp_path / "killed")) == _without_times(_rows(tmp_path / "full"))
    assert load_checkpoint(best, "toy")[1] == load_checkpoint(tmp_path / "full" / "toy.pt", "toy")[1]
    assert (resumed.best_val, resumed.bad_validations) == (full.best_val, full.bad_validations)
    assert (tmp_path / "killed" / "curves.png").read_text() == "[1, 2, 3, 4, 5]"


def test_resume_refuses_another_number_of_training_shapes(tmp_path):
    ToyTrainer(tmp_path, LoopSettings(epochs=1)).run_epochs()
    other = ToyTrainer(tmp_path, LoopSettings(epochs=2))
    other.shapes = other.shapes[:5]
    with pytest.raises(ValueError, match="8 training shapes, the data 5"):
        other.resume()


def test_the_time_budget_stops_after_the_epoch_that_exceeds_it(tmp_path, clock):
    trainer = ToyTrainer(tmp_path, LoopSettings(epochs=10, val_every=20, max_minutes=2.5), clock)
    best = trainer.run_epochs()
    assert trainer.epoch == 3 and trainer.logged == ["time budget of 2.5 min reached"]
    assert [r["elapsed_min"] for r in _rows(tmp_path)] == [1.0, 2.0, 3.0]
    assert load_checkpoint(best, "toy")[1] == {"epoch": 3}       # never validated: the last model is kept
    assert load_checkpoint(tmp_path / "last.pt", "toy-training")[0]["scalars"][-1].item() == pytest.approx(180)


def test_a_resumed_run_counts_the_time_already_spent(tmp_path, clock):
    ToyTrainer(tmp_path, LoopSettings(epochs=2), clock).run_epochs()
    resumed = ToyTrainer(tmp_path, LoopSettings(epochs=10, max_minutes=2.5), clock)
    resumed.resume()
    clock.now += 3600                                            # the time between the runs does not count
    resumed.run_epochs()
    assert resumed.epoch == 3 and resumed.elapsed == pytest.approx(180)


def test_early_stopping_after_patience_validations_without_improvement(tmp_path):
    scores = [-3.0, -2.0, -2.5, -2.0, -4.0, -1.0]                # below -1: any score may be the best
    trainer = ToyTrainer(tmp_path, LoopSettings(epochs=6, patience=3), scores=scores)
    trainer.run_epochs()
    assert trainer.epoch == 5 and trainer.logged == ["early stopping"]
    assert [r.get("saved", False) for r in trainer.history] == [True, True, False, False, False]
    assert load_checkpoint(tmp_path / "toy.pt", "toy")[1] == {"epoch": 2}


def test_without_patience_the_run_goes_on_and_the_last_epoch_is_validated(tmp_path):
    trainer = ToyTrainer(tmp_path, LoopSettings(epochs=5, val_every=3), scores=[0.5] * 5)
    trainer.run_epochs()
    assert trainer.epoch == 5 and [r["epoch"] for r in trainer.history if "score" in r] == [3, 5]


# ---------------------------------------------------------------- imports inside training/
TRAINING = ROOT / "PatchSamplerLib" / "training"
ORDER = {"points": 0, "scores": 0, "loop": 0, "budget": 0, "distributed": 0, "sparse_prior": 1, "sampler_init": 1,
         "prior": 2, "sampler": 2, "any_sampler": 3}


def test_training_modules_import_one_way_only():
    graph = import_graph(ROOT / "PatchSamplerLib")
    prefix = "PatchSamplerLib.training."
    modules = {name[len(prefix):] for name in graph if name.startswith(prefix)}
    assert modules == set(ORDER)
    edges = [(a[len(prefix):], b[len(prefix):]) for a, targets in graph.items() if a.startswith(prefix)
             for b in targets if b.startswith(prefix)]
    assert ("prior", "sparse_prior") in edges and ("sampler", "loop") in edges
    assert [(a, b) for a, b in edges if ORDER[b] >= ORDER[a]] == []


def test_training_modules_import_the_package_at_the_top_only():
    lazy = []
    for path in TRAINING.glob("*.py"):
        for func in ast.walk(ast.parse(path.read_text())):
            if isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lazy += [f"{path.name}:{node.lineno}" for node in ast.walk(func)
                         if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("PatchSamplerLib")]
    assert lazy == []
