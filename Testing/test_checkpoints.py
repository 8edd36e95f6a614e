"""Checkpoints: atomic writes, weights_only loading, format / kind / version checks."""
import pickle

import pytest
import torch

from PatchSamplerLib import checkpoints
from PatchSamplerLib.checkpoints import CheckpointError, load_checkpoint, resolve_prior_path, save_checkpoint


def test_round_trip_keeps_tensors_and_metadata(tmp_path):
    state = {"w": torch.arange(6.0).reshape(2, 3)}
    save_checkpoint(tmp_path / "a.pt", "prior", state, {"val_dice": 0.9, "command": "x"})
    loaded, meta = load_checkpoint(tmp_path / "a.pt", "prior")
    assert torch.equal(loaded["w"], state["w"]) and meta == {"val_dice": 0.9, "command": "x"}
    assert [p.name for p in tmp_path.iterdir()] == ["a.pt"]  # no temporary file left


def test_wrong_version_kind_and_foreign_files_are_refused(tmp_path):
    torch.save({"format": "patchsampler", "kind": "prior", "version": 99, "state_dict": {}, "metadata": "{}"},
               tmp_path / "v.pt")
    with pytest.raises(CheckpointError, match="version 99"):
        load_checkpoint(tmp_path / "v.pt", "prior")
    torch.save({"weights": torch.zeros(1)}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not a PatchSampler checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt", "prior")
    (tmp_path / "text.pt").write_text("hello")
    with pytest.raises(CheckpointError, match="not a readable"):
        load_checkpoint(tmp_path / "text.pt", "prior")
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt", "prior")


class Evil:
    def __reduce__(self):
        return (print, ("code ran",))


def test_pickled_code_is_not_executed(tmp_path, capsys):
    with open(tmp_path / "evil.pt", "wb") as f:
        pickle.dump({"format": "patchsampler", "x": Evil()}, f)
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "evil.pt", "prior")
    assert "code ran" not in capsys.readouterr().out


def test_failed_save_leaves_the_old_file(tmp_path, monkeypatch):
    save_checkpoint(tmp_path / "a.pt", "prior", {"w": torch.ones(1)}, {})
    def boom(*a, **k):
        raise OSError("disk full")
    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError):
        save_checkpoint(tmp_path / "a.pt", "prior", {"w": torch.zeros(1)}, {})
    monkeypatch.undo()
    assert torch.equal(load_checkpoint(tmp_path / "a.pt", "prior")[0]["w"], torch.ones(1))
    assert [p.name for p in tmp_path.iterdir()] == ["a.pt"]


def test_prior_names_resolve_to_bundled_files_and_errors_list_them(tmp_path, monkeypatch):
    (tmp_path / "prior_bone.pt").write_bytes(b"")
    monkeypatch.setattr(checkpoints, "MODELS_DIR", tmp_path)
    assert resolve_prior_path("bone") == tmp_path / "prior_bone.pt"
    with pytest.raises(CheckpointError, match="bundled priors: bone"):
        resolve_prior_path(None)
    with pytest.raises(CheckpointError, match=r"bundled prior \(bone\)"):
        resolve_prior_path("liver")


@pytest.mark.parametrize("given, message", [
    ("runs/my_prior/prior.pt", "prior file not found: runs/my_prior/prior.pt (bundled priors: "),
    ("my_prior.pt", "prior file not found: my_prior.pt"),
    ("kidny", "prior 'kidny' is neither a bundled prior (")])
def test_a_missing_prior_file_is_not_found_and_a_misspelt_name_is_not_bundled(given, message):
    """A path meant as a file (a .pt or a folder in it) that is not there is "not found"; a bare word
    is a bundled name that does not exist -- both list the bundled priors."""
    with pytest.raises(CheckpointError) as error:
        resolve_prior_path(given)
    assert str(error.value).startswith(message) and "kidney-anatomical-left" in str(error.value)
