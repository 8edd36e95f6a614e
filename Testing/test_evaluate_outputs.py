"""What `evaluate` writes into --out: one case per shape (never two subjects' shapes merged by
their file name), results of one experiment only (other settings refused, --overwrite), and a
warning when the shapes were seen in training."""
from __future__ import annotations

import argparse
import csv

import pytest

from PatchSamplerLib.cli.evaluate import shapes_seen_in_training
from PatchSamplerLib.cli.main import main
from PatchSamplerLib.data.synthetic import make_shape
from PatchSamplerLib.volume import write_volume
from tiny_prior import TINY_SCALE, tiny_prior_path

TINY_GRID = ["--configs", "2x3", "--t", "1", "--samplers", "fps", "--runs", "1"]


def _rows(out) -> list[dict]:
    with open(out / "cases.csv") as f:
        return list(csv.DictReader(f))


def test_shapes_of_two_subjects_with_one_file_name_are_two_cases(tmp_path):
    root = tmp_path / "data"
    for index, subject in enumerate(("s01", "s02")):
        (root / subject).mkdir(parents=True)
        write_volume(root / subject / "vertebra.nii.gz", make_shape("vertebra", 99, index, TINY_SCALE))
    out = tmp_path / "eval"
    assert main(["evaluate", "--data", str(root), "--dataset", "folder", "--prior", str(tiny_prior_path()),
                 *TINY_GRID, "--out", str(out)]) == 0
    assert [r["case"] for r in _rows(out)] == ["s01/vertebra", "s02/vertebra"]


def test_an_evaluation_folder_holds_one_experiment(tmp_path, capsys):
    out = tmp_path / "eval"
    base = ["evaluate", "--family", "vertebra", "--data-seed", "99", "--scale", str(TINY_SCALE), "--count", "1",
            "--prior", str(tiny_prior_path()), *TINY_GRID, "--out", str(out)]
    assert main(base) == 0
    first = _rows(out)
    assert main(base + ["--t", "2"]) == 0                      # more T: added to the same experiment
    assert len(_rows(out)) == 2 * len(first)
    capsys.readouterr()
    assert main(base + ["--fit", "fast"]) == 2                 # another fit: refused before any run
    error = capsys.readouterr().err
    assert "holds results of other settings (fit: adam there, fast now)" in error and "--overwrite" in error
    assert main(base + ["--prior", "vertebra"]) == 2
    assert "prior: " in capsys.readouterr().err
    assert len(_rows(out)) == 2 * len(first)                   # nothing added
    assert main(base + ["--fit", "fast", "--overwrite"]) == 0
    assert len(_rows(out)) == len(first) and (out / "settings.json").exists()


def _args(**given) -> argparse.Namespace:
    return argparse.Namespace(**dict(dict(family=None, data_seed=1, scale=1.0), **given))


def test_shapes_seen_in_training_are_found_from_the_metadata():
    synthetic = {"data": "synthetic kidney", "data_seed": 0, "scale": 1.0, "train_indices": [0, 2],
                 "val_indices": [3, 4]}
    names = [f"kidney_0_{i:04d}" for i in range(7)]
    assert shapes_seen_in_training(synthetic, _args(family="kidney", data_seed=0), names) == names[:5]
    assert shapes_seen_in_training(synthetic, _args(family="kidney", data_seed=1), names) == []
    assert shapes_seen_in_training(synthetic, _args(family="kidney", data_seed=0, scale=0.5), names) == []
    assert shapes_seen_in_training(synthetic, _args(family="vertebra", data_seed=0), names) == []
    folder = {"data": "/x", "files": ["s01/kidney_left", "s01/kidney_right"]}
    fold = {"data": "/x", "train": ["s02/kidney_left"], "val": ["s03/kidney_left"], "test": ["s04/kidney_left"]}
    evaluated = ["s01/kidney_left", "s02/kidney_left", "s03/kidney_left", "s04/kidney_left"]
    assert shapes_seen_in_training(folder, _args(), evaluated) == ["s01/kidney_left"]
    assert shapes_seen_in_training(fold, _args(), evaluated) == evaluated[1:3]


def test_evaluating_a_priors_training_shapes_warns(tmp_path, capsys):
    root = tmp_path / "data"
    root.mkdir()
    write_volume(root / "a.nii.gz", make_shape("vertebra", 99, 0, TINY_SCALE))
    from PatchSamplerLib.method.inr import ShapePrior
    prior = ShapePrior.load(tiny_prior_path())
    prior.metadata.update(data=str(root), files=["a"])
    prior.save(tmp_path / "prior.pt")
    assert main(["evaluate", "--data", str(root), "--dataset", "folder", "--prior", str(tmp_path / "prior.pt"),
                 *TINY_GRID, "--out", str(tmp_path / "eval")]) == 0
    assert "1 of the 1 evaluated shapes were training or validation shapes of the prior" in capsys.readouterr().err


def test_benchmark_fit_refuses_two_inputs_of_one_file_name(tmp_path, capsys):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        write_volume(tmp_path / folder / "kidney.nii.gz", make_shape("kidney", 99, 0, 0.25))
    assert main(["benchmark", "--fit", "--prior", str(tiny_prior_path()), "--inputs", str(tmp_path / "a/kidney.nii.gz"),
                 str(tmp_path / "b/kidney.nii.gz"), "--fit-configs", "2x3", "--out", str(tmp_path / "bench")]) == 2
    assert "two or more shapes are named 'kidney.nii.gz'" in capsys.readouterr().err
    assert not (tmp_path / "bench" / "cases.csv").exists()


@pytest.mark.parametrize("given, expected", [
    (dict(dataset="totalsegmentator", min_voxels=9000, class_map="total_v1"), {"min_voxels": 9000,
                                                                                "class_map": "total_v1"}),
    (dict(dataset="verse", min_voxels=2000), {"min_voxels": 2000}),
    (dict(dataset="folder", label=3), {"label": 3}),
    (dict(dataset="folder", min_voxels=2000), "--min-voxels applies to --dataset totalsegmentator and verse"),
    (dict(dataset="verse", class_map="total"), "--class-map apply to --dataset totalsegmentator"),
    (dict(dataset="verse", label=3), "--label applies to --dataset folder"),
    (dict(dataset="folder", family="kidney", min_voxels=10), "--min-voxels applies to --data"),
])
def test_dataset_options_reach_their_layout_and_are_refused_elsewhere(given, expected):
    from PatchSamplerLib.cli.arguments import dataset_options
    args = argparse.Namespace(**dict(dict(family=None, structure=None, levels=None, label=None, min_voxels=None,
                                          class_map=None), **given))
    if isinstance(expected, str):
        with pytest.raises(ValueError, match=expected):
            dataset_options(args)
    else:
        assert dataset_options(args) == expected
