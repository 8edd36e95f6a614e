"""Prior training: resume after a kill reproduces an uninterrupted run, early stopping, CLI outputs."""
import contextlib
import io
import json

import pytest
import torch

from PatchSamplerLib.checkpoints import load_checkpoint
from PatchSamplerLib.cli.main import main
from PatchSamplerLib.data.synthetic import make_shapes
from PatchSamplerLib.method.inr import ShapePrior
from PatchSamplerLib.training.prior import PriorConfig, PriorTrainer, frame_of


@pytest.fixture(scope="module")
def shapes():
    return make_shapes("kidney", 10, seed=3, scale=0.2)


def _cfg(**kw):
    base = dict(epochs=4, batch_size=4, points_per_shape=256, surface_fraction=0.5, val_every=2, val_t=3,
                val_n=2, val_k=3, lr_schedule="cosine")
    base.update(kw)
    return PriorConfig(**base)


def _quiet(fn):
    with contextlib.redirect_stdout(io.StringIO()):
        return fn()


def test_resume_after_a_kill_matches_an_uninterrupted_run(shapes, tmp_path):
    full = PriorTrainer(shapes[:8], shapes[8:], tmp_path / "full", _cfg())
    _quiet(full.run)

    killed = PriorTrainer(shapes[:8], shapes[8:], tmp_path / "killed", _cfg())
    original, calls = killed.train_epoch, []
    def dying_epoch(progress):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(progress)
    killed.train_epoch = dying_epoch
    with pytest.raises(KeyboardInterrupt):
        _quiet(killed.run)
    assert load_checkpoint(tmp_path / "killed" / "last.pt", "prior-training")[1]["history"][-1]["epoch"] == 2

    resumed = PriorTrainer(shapes[:8], shapes[8:], tmp_path / "killed", _cfg())
    _quiet(resumed.resume)
    assert resumed.epoch == 2
    _quiet(resumed.run)
    for a, b in zip(full.decoder.state_dict().values(), resumed.decoder.state_dict().values()):
        assert torch.equal(a, b)
    assert [r["epoch"] for r in resumed.history] == [1, 2, 3, 4]


def test_early_stopping_when_validation_does_not_improve(shapes, tmp_path):
    cfg = _cfg(epochs=50, val_every=1, patience=2, lr_net=0.0, lr_latent=0.0)
    trainer = PriorTrainer(shapes[:8], shapes[8:], tmp_path, cfg)
    _quiet(trainer.run)
    assert trainer.epoch == 3             # best at epoch 1, then 2 validations without improvement


def test_frame_is_the_largest_training_extent(shapes):
    extent, spacing = frame_of(shapes)
    assert extent == pytest.approx([s * sp for s, sp in zip(shapes[0].shape, shapes[0].spacing)])
    assert spacing == shapes[0].spacing


def test_train_prior_cli_writes_prior_logs_and_curves(tmp_path):
    out = tmp_path / "run"
    args = ["train-prior", "--family", "kidney", "--count", "6", "--val-count", "2", "--scale", "0.2",
            "--epochs", "2", "--batch-size", "3", "--points-per-shape", "128", "--val-every", "1", "--val-t", "2",
            "--val-n", "2", "--val-k", "3", "--out", str(out)]
    assert _quiet(lambda: main(args)) == 0
    assert {p.name for p in out.iterdir()} >= {"prior.pt", "last.pt", "train.log", "train_log.jsonl", "curves.png"}
    prior = ShapePrior.load(out / "prior.pt")
    meta = prior.metadata
    assert meta["n_train"] == 6 and meta["n_val"] == 2 and meta["config"]["points_per_shape"] == 128
    assert "train-prior --family kidney" in meta["command"] and meta["data"] == "synthetic kidney"
    assert meta["family_version"] == "solid-1" and len(meta["mean_latent"]) == prior.decoder.latent_dim
    assert 0.0 <= meta["val_dice"] <= 1.0
    rows = [json.loads(l) for l in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2] and all("val_dice" in r for r in rows)
    assert "epoch 2/2" in (out / "train.log").read_text()
    assert _quiet(lambda: main(args[:-2] + ["--epochs", "3", "--resume", "--out", str(out)])) == 0
    assert ShapePrior.load(out / "prior.pt").metadata["epochs"] in (1, 2, 3)
    assert len((out / "train_log.jsonl").read_text().splitlines()) == 3


def test_train_prior_from_a_folder_skips_unusable_files(tmp_path, capsys):
    import numpy as np
    from PatchSamplerLib.volume import BinaryVolume, write_volume
    data = tmp_path / "data"
    data.mkdir()
    for i, vol in enumerate(make_shapes("kidney", 4, seed=5, scale=0.2)):
        write_volume(data / f"case{i}.nii.gz", vol)
    write_volume(data / "empty.nii.gz", BinaryVolume(np.zeros((5, 5, 5), bool)))
    out = tmp_path / "run"
    args = ["train-prior", "--data", str(data), "--val-count", "1", "--epochs", "1", "--batch-size", "2",
            "--points-per-shape", "64", "--val-t", "1", "--val-n", "1", "--val-k", "3", "--out", str(out)]
    assert main(args) == 0
    assert "skipped" in capsys.readouterr().out
    meta = ShapePrior.load(out / "prior.pt").metadata
    assert (meta["n_train"], meta["n_val"]) == (3, 1) and len(meta["files"]) == 4
    for wrong in (tmp_path / "nothing", data / "case0.nii.gz"):        # no folder, a file: argparse, exit 2
        with pytest.raises(SystemExit) as leaving:
            main(["train-prior", "--data", str(wrong), "--out", str(tmp_path / "other")])
        assert leaving.value.code == 2 and not (tmp_path / "other").exists()
    assert "a dataset folder is needed" in capsys.readouterr().err


TINY_PRIOR_RUN = ["--epochs", "1", "--batch-size", "2", "--points-per-shape", "64", "--val-t", "1", "--val-n", "1",
                  "--val-k", "3"]


def _kidney_folder(root, count: int):
    from PatchSamplerLib.volume import write_volume
    root.mkdir()
    for i, vol in enumerate(make_shapes("kidney", count, seed=5, scale=0.2)):
        write_volume(root / f"case{i}.nii.gz", vol)
    return root


@pytest.mark.parametrize("count, val_count, split", [(4, None, (4, 0)), (6, None, (5, 1)), (12, None, (10, 2)),
                                                     (6, 2, (4, 2))])
def test_the_validation_split_of_a_dataset_leaves_most_shapes_for_training(tmp_path, count, val_count, split):
    """By default a fifth of the shapes validate (at most 8, none below 5 shapes): 6 shapes are 5 + 1,
    not 1 + 5 as with a fixed 8."""
    import argparse
    from PatchSamplerLib.cli.training import load_training_data
    data = _kidney_folder(tmp_path / "data", count)
    args = argparse.Namespace(family=None, data=str(data), dataset="folder", fold=None, val_count=val_count,
                              one_side=None)
    train, val, desc = load_training_data(args)
    assert (len(train), len(val)) == split and len(desc["files"]) == count


def test_a_split_leaving_fewer_than_two_training_shapes_is_refused_and_leaves_no_run_folder(tmp_path, capsys):
    data = _kidney_folder(tmp_path / "data", 3)
    out = tmp_path / "run"
    assert main(["train-prior", "--data", str(data), "--val-count", "2", *TINY_PRIOR_RUN, "--out", str(out)]) == 2
    assert "leave 1 to train on; at least 2 are needed" in capsys.readouterr().err
    assert not out.exists()                                   # no empty train.log refusing the next command
    assert main(["train-prior", "--data", str(data), "--val-count", "1", *TINY_PRIOR_RUN, "--out", str(out)]) == 0
    assert "2 training shapes and 1 validation shape loaded" in (out / "train.log").read_text()
    assert not any(line.endswith(" ") for line in (out / "train.log").read_text().splitlines())


def test_a_failed_command_in_an_existing_folder_keeps_the_folder_and_removes_only_its_log(tmp_path):
    data = _kidney_folder(tmp_path / "data", 3)
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert main(["train-prior", "--data", str(data), "--val-count", "2", *TINY_PRIOR_RUN, "--out", str(out)]) == 2
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_a_spent_time_budget_validates_its_last_epoch(tmp_path):
    out = tmp_path / "run"
    assert main(["train-prior", "--family", "kidney", "--count", "2", "--val-count", "1", "--scale", "0.2",
                 *TINY_PRIOR_RUN[2:], "--epochs", "5", "--val-every", "50", "--max-minutes", "0.0001",
                 "--out", str(out)]) == 0
    meta = ShapePrior.load(out / "prior.pt").metadata
    rows = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert len(rows) < 5 and "val_dice" in rows[-1] and meta["val_dice"] is not None   # every 50: never due


def test_train_prior_on_one_side_mirrors_named_shapes_and_records_the_side(tmp_path, capsys):
    from PatchSamplerLib.volume import write_volume
    data = tmp_path / "data"
    data.mkdir()
    for i, vol in enumerate(make_shapes("kidney-anatomical", 4, seed=5, scale=0.2)):
        write_volume(data / f"case{i}_kidney_{'left' if i % 2 else 'right'}.nii.gz", vol)
    write_volume(data / "case9_kidney.nii.gz", make_shapes("kidney-anatomical", 1, seed=6, scale=0.2)[0])
    out = tmp_path / "run"
    args = ["train-prior", "--data", str(data), "--one-side", "left", "--val-count", "1", "--epochs", "1",
            "--batch-size", "2", "--points-per-shape", "64", "--val-t", "1", "--val-n", "1", "--val-k", "3",
            "--out", str(out)]
    assert main(args) == 0
    assert "case9_kidney.nii.gz: its name says neither left nor right" in capsys.readouterr().out
    meta = ShapePrior.load(out / "prior.pt").metadata
    assert meta["canonical_side"] == "left" and (meta["n_train"], meta["n_val"]) == (3, 1)
    assert main(["train-prior", "--family", "kidney", "--one-side", "left", "--out", str(tmp_path / "x")]) == 2
