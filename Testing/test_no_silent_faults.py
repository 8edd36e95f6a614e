"""Issue #21 items 1-3 and 8: incomplete files are refused, training never replaces an earlier
run unasked, every output location and number is checked before any work, a learned sampler of
another prior is refused, and a run records the sampler file it used."""
from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from PatchSamplerLib.checkpoints import (bundled_any_samplers, bundled_models, bundled_samplers, load_checkpoint,
                                         weights_sha256)
from PatchSamplerLib.cli.main import build_parser, main
from PatchSamplerLib.volume import VolumeError, read_labelmap, read_nonzero_mask

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "Resources" / "SampleData" / "kidney_left_1.5mm.nii.gz"
SAMPLE_VOXELS = 29333            # foreground voxels of the complete sample kidney


# ---------------------------------------------------------------- item 1: incomplete files
def _truncated(tmp_path, kind: str) -> Path:
    """A damaged copy of the sample kidney: `kind` names how (the README example is "half.nii.gz")."""
    data = SAMPLE.read_bytes()
    raw = gzip.decompress(data)
    image = sitk.ReadImage(str(SAMPLE))
    if kind == "half.nii.gz":
        content = data[:len(data) // 2]
    elif kind == "no-checksum.nii.gz":          # the gzip trailer (CRC, size) cut off
        content = data[:-4]
    elif kind == "half.nii":
        content = raw[:len(raw) // 2]
    elif kind == "short-valid-gzip.nii.gz":     # the gzip stream is whole, the voxel data is not
        content = gzip.compress(raw[:-100])
    else:                                       # NRRD / MetaImage written by SimpleITK, then cut in half
        full = tmp_path / f"full.{kind}"
        sitk.WriteImage(image, str(full), useCompression=True)
        content = full.read_bytes()[:full.stat().st_size // 2]
    path = tmp_path / f"cut.{kind}"
    path.write_bytes(content)
    return path


DAMAGE = ["half.nii.gz", "no-checksum.nii.gz", "half.nii", "short-valid-gzip.nii.gz", "nrrd", "seg.nrrd", "mha"]


@pytest.mark.parametrize("kind", DAMAGE)
def test_incomplete_file_is_refused_by_every_reader(tmp_path, kind):
    path = _truncated(tmp_path, kind)
    for reader in (read_labelmap, read_nonzero_mask):
        with pytest.raises(VolumeError, match="cut"):      # the message names the file
            reader(path)


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz", ".nrrd", ".seg.nrrd", ".mha"])
def test_complete_files_of_every_format_still_read(tmp_path, suffix):
    path = tmp_path / f"whole{suffix}"
    sitk.WriteImage(sitk.ReadImage(str(SAMPLE)), str(path))
    assert read_labelmap(path).voxel_count == SAMPLE_VOXELS
    assert read_nonzero_mask(path).voxel_count == SAMPLE_VOXELS


def test_run_on_a_truncated_file_exits_2_and_writes_nothing(tmp_path, capsys):
    """The issue's example: the sample kidney cut to half its bytes was read as 13,346 voxels."""
    cut = _truncated(tmp_path, "half.nii.gz")
    out = tmp_path / "out"
    assert main(["run", "--input", str(cut), "--prior", "kidney", "--t", "2", "--out", str(out)]) == 2
    assert str(cut) in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("option", ["--known-mask", "--reference"])
def test_truncated_auxiliary_file_is_refused(tmp_path, capsys, option):
    cut = _truncated(tmp_path, "half.nii")
    out = tmp_path / "out"
    mode = ["--known-mask", str(cut)] if option == "--known-mask" else ["--step", "4", "--reference", str(cut)]
    assert main(["reconstruct-slices", "--input", str(SAMPLE), *mode, "--prior", "kidney", "--steps", "2",
                 "--out", str(out)]) == 2
    assert "incomplete" in capsys.readouterr().err
    assert not out.exists()


def test_truncated_mask_in_a_totalsegmentator_folder_is_dropped_with_its_reason(tmp_path):
    from PatchSamplerLib.data.totalsegmentator import load_totalsegmentator
    subject = tmp_path / "s0001" / "segmentations"
    subject.mkdir(parents=True)
    (subject / "kidney_left.nii.gz").write_bytes(_truncated(tmp_path, "half.nii.gz").read_bytes())
    dataset = load_totalsegmentator(tmp_path, structure="kidney")
    reasons = {Path(d.path).name: d.reason for d in dataset.dropped}
    assert "incomplete" in reasons["kidney_left.nii.gz"]
    assert not any(item.name.endswith("kidney_left") for item in dataset)


def test_truncated_prior_file_exits_2(tmp_path, capsys):
    cut = tmp_path / "prior.pt"
    data = bundled_models()["kidney"].read_bytes()
    cut.write_bytes(data[:len(data) // 2])
    assert main(["run", "--input", str(SAMPLE), "--prior", str(cut), "--t", "2", "--out", str(tmp_path / "o")]) == 2
    assert "not a readable PatchSampler checkpoint" in capsys.readouterr().err


# ---------------------------------------------------------------- item 2: earlier runs are kept
RUN = {"prior.pt": b"best model", "last.pt": b"state", "train_log.jsonl": b'{"epoch": 1}\n', "notes.txt": b"mine"}


def _earlier_run(folder: Path, files=RUN) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (folder / name).write_bytes(content)
    return folder


@pytest.mark.parametrize("command", [
    ["train-prior", "--family", "kidney", "--scale", "0.25", "--count", "2", "--val-count", "0", "--epochs", "1"],
    ["train-sampler", "--family", "kidney", "--scale", "0.25", "--count", "2", "--val-count", "0", "--epochs", "1",
     "--prior", "kidney"],
])
def test_training_into_an_earlier_run_is_refused_before_any_work(tmp_path, capsys, command):
    out = _earlier_run(tmp_path / "run")
    assert main([*command, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--resume" in err and "--overwrite" in err and "prior.pt" in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == RUN       # nothing touched, no train.log added


def test_overwrite_replaces_only_the_run_files_and_resume_needs_last_pt(tmp_path):
    from PatchSamplerLib.training.loop import prepare_run_folder
    out = _earlier_run(tmp_path / "run")
    with pytest.raises(ValueError, match="choose one"):
        prepare_run_folder(out, resume=True, overwrite=True)
    prepare_run_folder(out, resume=True, overwrite=False)            # last.pt is there: fine, nothing removed
    assert len(list(out.iterdir())) == len(RUN)
    prepare_run_folder(out, resume=False, overwrite=True)
    assert [p.name for p in out.iterdir()] == ["notes.txt"]          # the user's own file stays
    with pytest.raises(ValueError, match="last.pt not found"):
        prepare_run_folder(out, resume=True, overwrite=False)
    prepare_run_folder(tmp_path / "new", resume=False, overwrite=False)   # a new folder: nothing to check
    assert not (tmp_path / "new").exists()


def test_library_trainer_refuses_to_start_over_an_earlier_run(tmp_path):
    from PatchSamplerLib.data.synthetic import make_shapes
    from PatchSamplerLib.training.prior import PriorConfig, PriorTrainer
    out = _earlier_run(tmp_path / "run", {"train_log.jsonl": b'{"epoch": 1}\n'})
    shapes = make_shapes("kidney", 2, seed=0, scale=0.25)
    trainer = PriorTrainer(shapes, [], out, PriorConfig(epochs=1, points_per_shape=64))
    with pytest.raises(ValueError, match="already holds a training run"):
        trainer.run()
    assert (out / "train_log.jsonl").read_bytes() == b'{"epoch": 1}\n'


# ---------------------------------------------------------------- item 3: checks before any work
OUT_COMMANDS = {
    "run": ["run", "--input", str(SAMPLE), "--prior", "kidney", "--t", "2"],
    "synth": ["synth", "--family", "kidney", "--count", "1", "--scale", "0.25"],
    "reconstruct-slices": ["reconstruct-slices", "--input", str(SAMPLE), "--step", "4", "--prior", "kidney"],
    "train-prior": ["train-prior", "--family", "kidney", "--scale", "0.25", "--count", "2", "--epochs", "1"],
    "evaluate": ["evaluate", "--family", "kidney", "--prior", "kidney", "--count", "1", "--scale", "0.25"],
    "ceiling": ["ceiling", "--input", str(SAMPLE), "--prior", "kidney", "--steps", "2"],
}


@pytest.mark.parametrize("name", sorted(OUT_COMMANDS))
def test_out_that_is_an_existing_file_is_refused_before_any_work(tmp_path, capsys, name):
    target = tmp_path / "taken"
    target.write_text("keep me")
    assert main([*OUT_COMMANDS[name], "--out", str(target)]) == 2
    assert "is an existing file" in capsys.readouterr().err
    assert target.read_text() == "keep me"


@pytest.mark.parametrize("name", ["run", "synth", "train-prior"])
def test_out_on_an_unwritable_location_is_refused(capsys, name):
    """/sys is not writable, not even by root (the CI runs as root, so chmod cannot show this)."""
    out = "/sys/patchsampler-test/out"
    assert main([*OUT_COMMANDS[name], "--out", out]) == 2
    assert "cannot be written" in capsys.readouterr().err
    assert not Path(out).parent.exists()


INPUT_IN_OUT = [("run", "--input", name) for name in ("reconstruction.nii.gz", "errors.nii.gz")] + \
    [(command, "--input", name) for command in ("reconstruct-slices", "ceiling")
     for name in ("reconstruction.nii.gz", "sparse_input.nii.gz", "errors.nii.gz")] + \
    [("reconstruct-slices", "--reference", "errors.nii.gz")]


@pytest.mark.parametrize("name, option, file_name", INPUT_IN_OUT)
def test_an_out_whose_files_would_replace_the_input_is_refused_before_any_work(tmp_path, capsys, name, option,
                                                                                   file_name):
    """e.g. `run --input out/reconstruction.nii.gz --out out` (a second run on a first run's
    output) would overwrite the user's input; the same file named another way (out/./) too."""
    out = tmp_path / "out"
    out.mkdir()
    given = out / file_name
    given.write_bytes(SAMPLE.read_bytes())
    command = [*OUT_COMMANDS[name]]
    if option == "--input":
        command[command.index("--input") + 1] = str(given)
    else:
        command += [option, str(given)]
    assert main([*command, "--out", str(out / ".")]) == 2
    assert f"would replace the input {option} {given}" in capsys.readouterr().err
    assert given.read_bytes() == SAMPLE.read_bytes()
    assert [p.name for p in out.iterdir()] == [file_name]


def test_mean_shape_out_must_be_a_file_name(tmp_path, capsys):
    assert main(["mean-shape", "--prior", "kidney", "--out", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err


@pytest.mark.parametrize("command, option, value", [
    (["reconstruct-slices", "--input", str(SAMPLE), "--prior", "kidney"], "--step", "0"),   # the example
    (["reconstruct-slices", "--input", str(SAMPLE), "--prior", "kidney"], "--step", "-1"),
    (["synth", "--family", "kidney"], "--count", "-2"),                                       # the example
    (["run", "--input", str(SAMPLE)], "--k", "0"),
    (["run", "--input", str(SAMPLE)], "--fit-lr", "nan"),
    (["train-prior", "--family", "kidney"], "--epochs", "0"),
    (["train-sampler", "--family", "kidney", "--prior", "kidney"], "--batch-size", "-4"),
    (["evaluate", "--family", "kidney", "--prior", "kidney"], "--runs", "0"),
    (["mean-shape", "--prior", "kidney"], "--spacing", "0"),
])
def test_numbers_out_of_range_exit_2_at_parse_time(tmp_path, capsys, command, option, value):
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as stop:
        main([*command, option, value, "--out", str(out)])
    assert stop.value.code == 2
    assert f"argument {option}: must be" in capsys.readouterr().err
    assert not out.exists()


# Options whose integers may be negative or are checked against the data later (a label value).
UNCHECKED = {"--label"}


def test_every_numeric_option_of_every_command_has_a_range_checked_type():
    """The kind behind --step 0 and --count -2: no int / float option is parsed unchecked."""
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    loose = [f"{name} {action.option_strings[0]}" for name, sub in commands.items() for action in sub._actions
             if action.type in (int, float) and action.choices is None and action.option_strings[0] not in UNCHECKED]
    assert loose == []


# ---------------------------------------------------------------- sampler of another prior; records
def test_learned_sampler_of_another_prior_is_refused_naming_both(tmp_path, capsys):
    out = tmp_path / "out"
    vertebra_sampler = bundled_samplers()[("vertebra", 4, 9, 100)]
    assert main(["run", "--input", str(SAMPLE), "--prior", "kidney", "--n", "4", "--k", "9", "--t", "2",
                 "--sampler", "learned", "--sampler-model", str(vertebra_sampler), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "prior_vertebra.pt" in err and "prior_kidney.pt" in err
    assert not out.exists()


def test_slicer_choice_of_a_sampler_of_another_prior_says_why():
    sys.path.insert(0, str(ROOT / "PatchSampler"))
    from PatchSamplerLib.method.inr import ShapePrior
    from PatchSamplerMRML.choices import find_learned_sampler
    model, why = find_learned_sampler(ShapePrior.load("kidney"), 4, 9, 100, bundled_samplers()[("vertebra", 4, 9, 100)])
    assert model is None and "not with the prior of this run" in why


def test_every_bundled_sampler_records_the_weights_of_its_bundled_prior():
    priors = {name: weights_sha256(load_checkpoint(path, "prior")[0]) for name, path in bundled_models().items()}
    bundled = [(prior, path) for (prior, *_), path in [*bundled_samplers().items(), *bundled_any_samplers().items()]]
    for prior, path in bundled:
        assert load_checkpoint(path, "sampler")[1]["prior_weights_sha256"] == priors[prior], path.name


def test_learned_run_records_the_sampler_file_and_its_checksum(tmp_path):
    out = tmp_path / "out"
    sampler = bundled_samplers()[("kidney", 4, 9, 100)]
    assert main(["run", "--input", str(SAMPLE), "--prior", "kidney", "--n", "4", "--k", "9", "--t", "2",
                 "--sampler", "learned", "--out", str(out)]) == 0
    checksum = hashlib.sha256(sampler.read_bytes()).hexdigest()
    for name in ("patches.json", "metrics.json"):
        record = json.loads((out / name).read_text())["sampler_model"]
        assert Path(record["path"]).resolve() == sampler.resolve() and record["sha256"] == checksum, name


def test_fps_run_records_no_sampler_file(tmp_path):
    out = tmp_path / "out"
    assert main(["run", "--input", str(SAMPLE), "--prior", "kidney", "--n", "2", "--k", "3", "--t", "1",
                 "--out", str(out)]) == 0
    assert json.loads((out / "metrics.json").read_text())["sampler_model"] is None


# ---------------------------------------------------------------- item 8: help
def test_every_command_help_exits_0_and_lists_choices(capsys):
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    for name, sub in commands.items():
        with pytest.raises(SystemExit) as stop:
            main([name, "--help"])
        assert stop.value.code == 0, name
        text = capsys.readouterr().out
        for action in sub._actions:
            if action.option_strings and action.option_strings[0] != "--help":
                assert action.help and not action.help.startswith("(default"), \
                    f"{name} {action.option_strings[0]}: the help does not say what the option does"
            if action.choices and not isinstance(action, argparse._SubParsersAction):
                assert all(str(c) in text for c in action.choices), f"{name} {action.option_strings}"


def test_train_script_help_exits_0():
    proc = subprocess.run([sys.executable, str(ROOT / "PatchSamplerLib" / "cli" / "train.py"), "--help"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "prior" in proc.stdout and "sampler" in proc.stdout


def test_mode_help_says_what_each_mode_does(capsys):
    with pytest.raises(SystemExit):
        main(["train-sampler", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "faithful" in text and "fast" in text and "every patch voxel" in text


def test_checked_number_types_accept_the_boundary():
    from PatchSamplerLib.cli.arguments import non_negative_int, positive_float, positive_int
    assert (positive_int("1"), non_negative_int("0"), positive_float("1e-9")) == (1, 0, 1e-9)
    for parse, text in ((positive_int, "0"), (non_negative_int, "-1"), (positive_float, "0"), (positive_float, "inf"),
                        (positive_int, "2.5")):
        with pytest.raises(argparse.ArgumentTypeError):
            parse(text)
    assert np.isclose(positive_float("0.25"), 0.25)
