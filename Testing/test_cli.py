"""End-to-end command line: synth -> run with a tiny prior; bad input never half-writes."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from PatchSamplerLib.cli.main import main
from PatchSamplerLib.method.metrics import dice
from PatchSamplerLib.reporting.outputs import OUTPUT_FILES
from PatchSamplerLib.volume import BinaryVolume, index_to_world, read_labelmap, write_labelmap, write_volume
from tiny_prior import held_out_vertebra, tiny_prior_path

ROOT = Path(__file__).resolve().parent.parent


def oblique_input(tmp_path) -> Path:
    """The held-out vertebra with anisotropic spacing, an origin and an oblique direction."""
    vol = held_out_vertebra(0)
    c, s = np.cos(0.3), np.sin(0.3)
    direction = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])
    oblique = BinaryVolume(vol.mask, (4.0, 4.0, 4.4), np.array([-30.0, 12.5, 7.0]), direction)
    path = tmp_path / "shape.nii.gz"
    write_volume(path, oblique)
    return path


def test_synth_then_run_writes_all_outputs_with_input_geometry(tmp_path):
    assert main(["synth", "--family", "kidney", "--count", "2", "--seed", "4", "--scale", "0.3",
                 "--out", str(tmp_path / "syn")]) == 0
    assert len(list((tmp_path / "syn").glob("kidney_004_*.nii.gz"))) == 2
    src = oblique_input(tmp_path)
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "PatchSamplerLib", "run", "--input", str(src), "--n", "8",
                           "--k", "5", "--t", "50", "--fit-lr", "0.03", "--prior", str(tiny_prior_path()),
                           "--seed", "1", "--out", str(out)], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert str(out.resolve()) in proc.stdout
    assert sorted(p.name for p in out.iterdir()) == sorted(OUTPUT_FILES)
    ref, rec = sitk.ReadImage(str(src)), sitk.ReadImage(str(out / "reconstruction.nii.gz"))
    for getter in ("GetSize", "GetSpacing", "GetOrigin", "GetDirection"):
        assert np.allclose(getattr(ref, getter)(), getattr(rec, getter)(), atol=1e-5), getter
    inp, recon = read_labelmap(src), sitk.GetArrayFromImage(rec).transpose(2, 1, 0)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["dice"] == pytest.approx(dice(recon > 0, inp.mask))
    assert metrics["dice"] > 0.6
    errors = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "errors.nii.gz"))).transpose(2, 1, 0)
    assert np.array_equal(errors == 1, (recon > 0) & inp.mask) and set(np.unique(errors)) <= {0, 1, 2, 3}
    patches = json.loads((out / "patches.json").read_text())
    assert (patches["n"], patches["k"], patches["t"], patches["sampler"]) == (8, 5, 50, "fps")
    assert len(patches["patches"]) == 8
    p0 = patches["patches"][0]
    assert np.allclose(index_to_world(np.array(p0["centre_index_ijk"]), inp), p0["centre_world_lps_mm"], atol=1e-3)
    assert np.array(p0["box_index_ijk"]["upper"]) - np.array(p0["box_index_ijk"]["lower"]) == pytest.approx([4, 4, 4])
    assert (out / "overview.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _fails(args, capsys, message):
    try:
        status = main(args)
    except SystemExit as stop:          # argparse: a number out of range, before any work
        status = stop.code
    assert status == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("command", [["run", "--n", "2", "--k", "3", "--t", "2"], ["ceiling", "--steps", "2"],
                                     ["reconstruct-slices", "--step", "3", "--steps", "2"]])
@pytest.mark.parametrize("with_prior", [True, False])
def test_a_folder_or_a_missing_file_as_input_is_refused_before_any_work(tmp_path, capsys, command, with_prior):
    """A folder given as --input (a newcomer's `--input Resources/SampleData`) was "file not found"
    after pages of SimpleITK's HDF5 noise, or "no prior given" without --prior; a missing file came
    after the cost estimate. Now argparse refuses both first, naming the option."""
    folder = tmp_path / "kidney_segmentations"
    folder.mkdir()
    prior = ["--prior", str(tiny_prior_path())] if with_prior else []
    out = tmp_path / "out"
    for message in [f"--input: {folder} is a folder, not a file", f"--input: file not found: {tmp_path / 'k.nii.gz'}"]:
        given = message.split(": ")[-1].split(" is a folder")[0]
        with pytest.raises(SystemExit) as stop:
            main(command + ["--input", given, "--out", str(out)] + prior)
        printed = capsys.readouterr()
        assert stop.value.code == 2 and message in printed.err
        assert printed.out == "" and "HDF5" not in printed.err
    assert not out.exists()


def test_bad_input_gives_a_message_and_writes_nothing(tmp_path, capsys):
    prior = str(tiny_prior_path())
    out = tmp_path / "out"
    base = ["run", "--n", "2", "--k", "3", "--t", "2", "--out", str(out)]
    _fails(base + ["--input", str(tmp_path / "nope.nii.gz"), "--prior", prior], capsys, "not found")
    (tmp_path / "bad.nii.gz").write_text("not an image")
    _fails(base + ["--input", str(tmp_path / "bad.nii.gz"), "--prior", prior], capsys, "cannot read")
    multi = np.zeros((10, 10, 10), np.uint8)
    multi[2:4, 2:4, 2:4], multi[6:8, 6:8, 6:8] = 3, 7
    write_labelmap(tmp_path / "multi.nrrd", multi, BinaryVolume(multi > 0))
    _fails(base + ["--input", str(tmp_path / "multi.nrrd"), "--prior", prior], capsys, "labels: 3, 7")
    _fails(base + ["--input", str(tmp_path / "multi.nrrd"), "--label", "5", "--prior", prior], capsys,
           "label 5 is not in")
    write_labelmap(tmp_path / "empty.nii.gz", np.zeros((6, 6, 6), np.uint8), BinaryVolume(np.zeros((6, 6, 6))))
    _fails(base + ["--input", str(tmp_path / "empty.nii.gz"), "--prior", prior], capsys, "empty")
    good = oblique_input(tmp_path)
    _fails(base + ["--input", str(good)], capsys, "no prior given")
    _fails(base + ["--input", str(good), "--prior", str(tmp_path / "multi.nrrd")], capsys, "not a readable")
    _fails(["run", "--n", "0", "--k", "3", "--t", "2", "--out", str(out), "--input", str(good), "--prior", prior],
           capsys, "--n: must be an integer >= 1")
    _fails(["run", "--n", "2", "--k", "3", "--t", "-4", "--out", str(out), "--input", str(good), "--prior", prior],
           capsys, "--t: must be an integer >= 0")
    _fails(["run", "--n", "50", "--k", "45", "--t", "2", "--out", str(out), "--input", str(good), "--prior", prior],
           capsys, "exceeds the budget")
    assert main(base + ["--input", str(good), "--prior", prior, "--sampler", "learned"]) == 2
    printed = capsys.readouterr()
    assert "learned sampler" in printed.err and "estimated" not in printed.out   # refused before the estimate
    import torch
    if not torch.cuda.is_available():
        _fails(base + ["--input", str(good), "--prior", prior, "--device", "cuda"], capsys, "no CUDA")
        _fails(base + ["--input", str(good), "--prior", prior, "--device", "cpu", "--precision", "bf16"], capsys,
               "CUDA device only")
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []   # no temp folders left


def test_multi_label_file_with_label_runs(tmp_path):
    vol = held_out_vertebra(1)
    labels = vol.mask.astype(np.uint8) * 5
    labels[:3, :3, :3] = 9
    write_labelmap(tmp_path / "multi.nii.gz", labels, vol)
    out = tmp_path / "out"
    assert main(["run", "--input", str(tmp_path / "multi.nii.gz"), "--label", "5", "--n", "4", "--k", "3", "--t",
                 "5", "--prior", str(tiny_prior_path()), "--out", str(out)]) == 0
    assert json.loads((out / "metrics.json").read_text())["dice"] > 0


LEAVE_SCRIPT = """
import atexit, sys, threading, time, types
from PatchSamplerLib.cli.main import leave
atexit.register(lambda: print("finalised"))
if "thread" in sys.argv:
    threading.Thread(target=time.sleep, args=(0.2,)).start()
if "ray" in sys.argv:
    sys.modules["ray"] = types.ModuleType("ray")
sys.stdout.write("x" * 100000)
sys.stderr.write("message")
leave(None if "none" in sys.argv else 3)
"""


@pytest.mark.parametrize("case, finalised", [("plain", False), ("thread", True), ("ray", True), ("none", False)])
def test_leave_keeps_the_status_and_output_and_finalises_only_when_needed(case, finalised):
    """`leave` (the end of `python -m PatchSamplerLib`): the status (None: 0) and every byte
    written reach the caller; the interpreter's finalisation (atexit) runs only with a live
    non-daemon thread or Ray imported."""
    proc = subprocess.run([sys.executable, "-c", LEAVE_SCRIPT, case], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == (0 if case == "none" else 3)
    assert proc.stdout.startswith("x" * 100000) and proc.stderr == "message"
    assert proc.stdout[100000:] == ("finalised\n" if finalised else "")


def test_module_entry_point_exits_with_the_command_status(tmp_path):
    """`python -m PatchSamplerLib`: 0 after a command, 2 with the message on a bad input."""
    ok = subprocess.run([sys.executable, "-m", "PatchSamplerLib", "synth", "--family", "kidney", "--count", "1",
                         "--scale", "0.3", "--out", str(tmp_path / "syn")], cwd=ROOT, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert len(list((tmp_path / "syn").glob("kidney_*.nii.gz"))) == 1
    bad = subprocess.run([sys.executable, "-m", "PatchSamplerLib", "run", "--input", str(tmp_path / "missing.nii.gz"),
                          "--out", str(tmp_path / "out")], cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode == 2 and "error:" in bad.stderr and not (tmp_path / "out").exists()


IMPORT_SCRIPT = """
import sys
import PatchSamplerLib.cli.main
import PatchSamplerLib.data
heavy = [m for m in ("PatchSamplerLib.data.loaders", "PatchSamplerLib.data.totalsegmentator", "scipy.optimize",
                     "scipy.spatial") if m in sys.modules]
print(",".join(heavy))
from PatchSamplerLib.data import ShapeDataset, cross_validation_folds, load_dataset
print(ShapeDataset.__module__, cross_validation_folds.__module__, load_dataset.__module__)
try:
    PatchSamplerLib.data.no_such_name
except AttributeError as exc:
    print("AttributeError", exc)
"""


def test_command_line_does_not_import_the_loaders_until_a_command_needs_them():
    """Building the parser (every command's options) imports neither the dataset loaders nor
    SciPy's optimize / spatial (issue #19: about 0.3 s of the README demo); the package's
    names still resolve, and an unknown one is an AttributeError."""
    proc = subprocess.run([sys.executable, "-c", IMPORT_SCRIPT], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    heavy, modules, missing = proc.stdout.splitlines()
    assert heavy == ""
    assert modules == "PatchSamplerLib.data.folder PatchSamplerLib.data.splits PatchSamplerLib.data.loaders"
    assert missing.startswith("AttributeError") and "no_such_name" in missing
