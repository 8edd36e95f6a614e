"""PatchSamplerLib/cli/train.py: plain-python run end to end, and Slicer's argument / exit handling."""
import subprocess
import sys
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "PatchSamplerLib" / "cli" / "train.py"
sys.path.insert(0, str(ROOT))
from PatchSamplerLib.cli import train  # noqa: E402

TINY = ["--family", "kidney", "--count", "4", "--val-count", "1", "--scale", "0.2", "--epochs", "2",
        "--batch-size", "2", "--points-per-shape", "64", "--val-every", "1", "--val-t", "1", "--val-n", "1",
        "--val-k", "3"]


def test_plain_python_run_trains_a_prior_and_prints_lines(tmp_path):
    out = tmp_path / "prior"
    proc = subprocess.run([sys.executable, str(SCRIPT), "prior", *TINY, "--out", str(out)], cwd=tmp_path,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert (out / "prior.pt").is_file() and (out / "curves.png").is_file()
    assert "\r" not in proc.stdout                       # not a TTY: whole lines only
    assert "epoch 1/2" in proc.stdout and "epoch 2/2" in proc.stdout


def test_plain_python_bad_arguments_exit_non_zero(tmp_path):
    proc = subprocess.run([sys.executable, str(SCRIPT), "prior", "--family", "nope", "--out", str(tmp_path)],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "invalid choice" in proc.stderr
    proc = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True)
    assert proc.returncode == 2 and "usage: train.py" in proc.stderr


@pytest.mark.parametrize("argv", [
    ["/opt/Slicer/PatchSamplerLib/cli/train.py", "prior", "--out", "x"],                       # Slicer's sys.argv
    ["/opt/Slicer/bin/SlicerApp-real", "--no-main-window", "--python-script",
     "/src/PatchSamplerLib/cli/train.py", "prior", "--out", "x"],                               # flags left in
    ["train.py", "prior", "--out", "x"],                                                    # plain python
])
def test_script_arguments_are_what_follows_the_script(argv):
    assert train.script_arguments(argv) == ["prior", "--out", "x"]


def test_under_slicer_the_status_goes_to_slicer_util_exit(monkeypatch):
    seen = []
    fake = types.SimpleNamespace(app=object(), util=types.SimpleNamespace(exit=seen.append))
    monkeypatch.setitem(sys.modules, "slicer", fake)
    train.finish(3)
    assert seen == [3]
    monkeypatch.delitem(sys.modules, "slicer")
    with pytest.raises(SystemExit) as exc:
        train.finish(4)
    assert exc.value.code == 4


def test_run_returns_the_cli_status_for_help_and_errors(capsys):
    assert train.run(["prior", "--help"]) == 0
    assert "--points-per-shape" in capsys.readouterr().out
    assert train.run(["sampler"]) == 2


def test_plain_python_run_trains_a_sampler(tmp_path):
    from tiny_prior import tiny_prior_path
    out = tmp_path / "sampler"
    args = ["sampler", "--family", "vertebra", "--scale", "0.25", "--count", "2", "--val-count", "1",
            "--prior", str(tiny_prior_path()), "--n", "2", "--k", "3", "--t", "3", "--mode", "fast", "--epochs", "1",
            "--batch-size", "2", "--loss-voxels", "256", "--out", str(out)]
    proc = subprocess.run([sys.executable, str(SCRIPT), *args], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "\r" not in proc.stdout and "epoch 1/1" in proc.stdout and "FPS validation Dice" in proc.stdout
    for name in ("sampler.pt", "last.pt", "train_log.jsonl", "train.log", "curves.png"):
        assert (out / name).is_file(), name


def test_extra_fps_fit_shapes_need_synthetic_data(tmp_path, capsys):
    from tiny_prior import tiny_prior_path
    args = ["sampler", "--data", str(tmp_path), "--prior", str(tiny_prior_path()), "--init", "fps",
            "--init-count", "5", "--out", str(tmp_path / "out")]
    assert train.run(args) == 2
    assert "--init-count needs synthetic data" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()                  # refused before anything is written


def test_sampler_training_on_a_missing_gpu_is_refused_before_anything_is_written(tmp_path, capsys):
    import torch
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    from tiny_prior import tiny_prior_path
    args = ["sampler", "--family", "vertebra", "--prior", str(tiny_prior_path()), "--device", "cuda",
            "--out", str(tmp_path / "out")]
    assert train.run(args) == 2
    assert "no CUDA device" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
