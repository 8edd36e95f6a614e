"""Which structure an input or a prior is about (`PatchSamplerLib.structures`), and the warning
that a run gives when they differ (command line; the Slicer logic's in test_slicer_logic.py)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from PatchSamplerLib.checkpoints import bundled_models, load_checkpoint
from PatchSamplerLib.cli.main import main
from PatchSamplerLib.data.totalsegmentator import CLASS_MAPS
from PatchSamplerLib.method.inr import ShapePrior
from PatchSamplerLib.structures import (DEFAULT_PRIORS, bundled_priors_of, prior_structure, structure_in_name,
                                        structure_mismatch)
from PatchSamplerLib.volume import segment_description, write_volume
from tiny_prior import held_out_vertebra, tiny_prior_path

# Names the TotalSegmentator 3D Slicer extension gives segments (terminology labels) and the
# SNOMED CT terminology entries it tags them with (Slicer's serialised form).
KIDNEY_TERMINOLOGY = ("Segmentation category and type - DICOM master list~SCT^123037004^Anatomical Structure~"
                      "SCT^64033007^Kidney~SCT^7771000^Left~Anatomic codes - DICOM master list~^^~^^|")
VERTEBRA_TERMINOLOGY = ("Segmentation category and type - DICOM master list~SCT^123037004^Anatomical Structure~"
                        "SCT^23215003^T12 vertebra~^^~Anatomic codes - DICOM master list~^^~^^|")


def every_totalsegmentator_name() -> list[str]:
    return sorted({name for class_map in CLASS_MAPS.values() for name in class_map})


@pytest.mark.parametrize("name", every_totalsegmentator_name())
def test_every_totalsegmentator_kidney_and_vertebra_file_name_is_recognised(name):
    expected = "kidney" if name.startswith("kidney_") else "vertebra" if name.startswith("vertebrae_") else None
    assert structure_in_name(f"{name}.nii.gz") == expected
    assert structure_in_name(name.upper()) == expected


@pytest.mark.parametrize("text, expected", [
    ("left kidney", "kidney"), ("Kidney", "kidney"), ("T12 vertebra", "vertebra"), ("L1 Vertebra", "vertebra"),
    (KIDNEY_TERMINOLOGY, "kidney"), (VERTEBRA_TERMINOLOGY, "vertebra"),
    # not the structure itself, or neither, or both
    ("kidney_cyst_left", None), ("Kidney cyst", None), ("renal tumour of the kidney", None),
    ("intervertebral disc", None), ("vertebrae disk L1-L2", None), ("vertebral canal", None),
    ("liver", None), ("spleen.nii.gz", None), ("Segment_1", None), ("", None), (None, None),
    ("kidney and vertebra", None), ("kidneyish", None),
])
def test_names_of_segments_and_terminology(text, expected):
    assert structure_in_name(text) == expected


def test_every_bundled_prior_says_what_it_was_trained_on():
    """Read from each bundled prior's metadata (its training data), it agrees with its name; the
    default prior of each structure is bundled and listed first."""
    for name, path in bundled_models().items():
        _, metadata = load_checkpoint(path, "prior")
        assert prior_structure(metadata) == structure_in_name(name), name
    for structure, default in DEFAULT_PRIORS.items():
        assert bundled_priors_of(structure)[0] == default
        assert all("sparse" not in n and structure_in_name(n) == structure for n in bundled_priors_of(structure))


@pytest.mark.parametrize("metadata, expected", [
    ({"data": "synthetic kidney-anatomical"}, "kidney"), ({"data": "synthetic vertebra"}, "vertebra"),
    ({"data": "/data/ts", "dataset": "totalsegmentator"}, "kidney"),          # the loader's default structure
    ({"data": "/data/ts", "dataset": "totalsegmentator", "structure": "vertebra"}, "vertebra"),
    ({"data": "/data/verse", "dataset": "verse"}, "vertebra"),
    ({"data": "/data/kidney_shapes", "dataset": "folder"}, None),               # a folder does not say
    ({"data": "cross-validation fold 2"}, None), ({}, None),
])
def test_prior_structure_from_metadata(metadata, expected):
    assert prior_structure(metadata) == expected


def test_mismatch_only_when_both_are_known_and_differ():
    vertebra_prior = {"data": "synthetic vertebra-anatomical"}
    note = structure_mismatch(["left kidney", KIDNEY_TERMINOLOGY, "x.nii.gz"], vertebra_prior, "vertebra-anatomical")
    assert "looks like a kidney ('left kidney')" in note and "trained on vertebrae" in note
    assert "kidney, kidney-anatomical" in note                      # the bundled kidney priors, default first
    assert structure_mismatch(["T12 vertebra"], vertebra_prior, "v") is None
    assert structure_mismatch(["Segment_1", None, "scan.nii.gz"], vertebra_prior, "v") is None
    assert structure_mismatch(["kidney_left.nii.gz"], {"data": "/d", "dataset": "folder"}, "p") is None
    # the first name that names a structure decides (a segment renamed by the user beats its tag)
    assert structure_mismatch(["T12 vertebra", KIDNEY_TERMINOLOGY], vertebra_prior, "v") is None


def test_segment_description_of_a_seg_nrrd(tmp_path):
    labels = np.zeros((6, 5, 4), np.uint8)
    labels[1:3, 1:3, 1:3], labels[4, 3, 2] = 1, 2
    image = sitk.GetImageFromArray(labels.transpose(2, 1, 0))
    for key, value in {"Segment0_LabelValue": "1", "Segment0_Name": "left kidney",
                       "Segment0_Terminology": KIDNEY_TERMINOLOGY, "Segment1_LabelValue": "2",
                       "Segment1_Name": "T12 vertebra"}.items():
        image.SetMetaData(key, value)
    sitk.WriteImage(image, str(tmp_path / "two.seg.nrrd"))
    assert segment_description(tmp_path / "two.seg.nrrd", 1) == ["left kidney", KIDNEY_TERMINOLOGY]
    assert segment_description(tmp_path / "two.seg.nrrd", 2) == ["T12 vertebra"]
    assert segment_description(tmp_path / "two.seg.nrrd", 3) == []
    assert segment_description(tmp_path / "two.seg.nrrd") == []                # two segments: which one?
    sitk.WriteImage(sitk.GetImageFromArray(labels.transpose(2, 1, 0)), str(tmp_path / "plain.nii.gz"))
    assert segment_description(tmp_path / "plain.nii.gz", 1) == []


@pytest.fixture(scope="module")
def tiny_vertebra_prior(tmp_path_factory):
    """The tests' tiny prior, saved saying it was trained on the synthetic vertebra family."""
    prior = ShapePrior.load(tiny_prior_path())
    prior.metadata["data"] = "synthetic vertebra"
    path = tmp_path_factory.mktemp("prior") / "tiny_vertebra.pt"
    prior.save(path)
    return path


@pytest.mark.parametrize("command", ["run", "ceiling"])
@pytest.mark.parametrize("file_name, warned", [("kidney_right.nii.gz", True), ("vertebrae_L2.nii.gz", False),
                                                ("shape.nii.gz", False)])
def test_the_command_line_warns_and_records_a_prior_of_another_structure(tmp_path, capsys, tiny_vertebra_prior,
                                                                        command, file_name, warned):
    """The run goes on (the name may be wrong), the warning is printed and kept in metrics.json."""
    write_volume(tmp_path / file_name, held_out_vertebra(0))
    out = tmp_path / "out"
    settings = ["--n", "2", "--k", "3", "--t", "2"] if command == "run" else ["--steps", "2"]
    assert main([command, "--input", str(tmp_path / file_name), "--prior", str(tiny_vertebra_prior), *settings,
                 "--out", str(out)]) == 0
    recorded = json.loads((out / "metrics.json").read_text())["warnings"]
    err = capsys.readouterr().err
    if warned:
        assert "looks like a kidney ('kidney_right.nii.gz')" in recorded[0] and "trained on vertebrae" in err
    else:
        assert not any("looks like" in w for w in recorded) and "looks like" not in err


@pytest.mark.parametrize("command, file_name, chosen", [
    ("run", "kidney_left.nii.gz", "kidney"), ("run", "vertebrae_L3.nii.gz", "vertebra-anatomical"),
    ("reconstruct-slices", "kidney_right.nii.gz", "kidney"), ("reconstruct-slices", "shape.nii.gz", "vertebra"),
])
def test_without_prior_the_input_name_chooses_the_bundled_prior_of_its_structure(tmp_path, capsys, command,
                                                                                  file_name, chosen):
    write_volume(tmp_path / file_name, held_out_vertebra(0))
    out = tmp_path / "out"
    settings = ["--n", "2", "--k", "3", "--t", "2"] if command == "run" else ["--step", "4", "--steps", "2"]
    assert main([command, "--input", str(tmp_path / file_name), *settings, "--out", str(out)]) == 0
    assert f"prior: {chosen} (" in capsys.readouterr().out
    record = json.loads((out / ("patches.json" if command == "run" else "metrics.json")).read_text())
    assert Path(record["prior"] if command == "run" else record["settings"]["prior"]).name == f"prior_{chosen}.pt"


def test_without_prior_an_input_of_no_known_structure_is_refused_naming_the_priors(tmp_path, capsys):
    write_volume(tmp_path / "shape.nii.gz", held_out_vertebra(0))
    assert main(["run", "--input", str(tmp_path / "shape.nii.gz"), "--out", str(tmp_path / "out")]) != 0
    assert "no prior given; use --prior NAME" in capsys.readouterr().err and not (tmp_path / "out").exists()


@pytest.mark.parametrize("data", [["--family", "kidney-anatomical"], ["--data", ".", "--dataset", "verse"],
                                  ["--data", ".", "--dataset", "totalsegmentator", "--structure",
                                   "kidney"]])
def test_training_a_sampler_on_shapes_of_another_structure_than_the_prior_is_refused_before_anything(tmp_path, capsys,
                                                                                                     data):
    prior = "kidney" if "verse" in data else "vertebra-anatomical"
    out = tmp_path / "sampler"
    assert main(["train-sampler", *data, "--count", "4", "--val-count", "2", "--prior", prior, "--n", "4", "--k", "9",
                 "--epochs", "1", "--out", str(out)]) != 0
    assert "training data and prior differ" in capsys.readouterr().err and not out.exists()


def test_evaluate_warns_when_the_family_is_not_the_priors(tmp_path, capsys):
    assert main(["evaluate", "--family", "kidney-anatomical", "--count", "1", "--configs", "2x3", "--t", "1",
                 "--samplers", "fps", "--runs", "1", "--prior", "vertebra", "--out", str(tmp_path / "eval")]) == 0
    assert "the shapes of --family kidney-anatomical are kidney shapes but the prior vertebra" in capsys.readouterr().err
