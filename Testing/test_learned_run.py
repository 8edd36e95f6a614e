"""The learned sampler in runs: `run --sampler learned`, bundled-model lookup and its messages,
patches.json with generated and projected points, and the coarse-to-fine decode."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from PatchSamplerLib import checkpoints
from PatchSamplerLib.checkpoints import CheckpointError
from PatchSamplerLib.cli.main import main
from PatchSamplerLib.method.inr import ShapePrior
from PatchSamplerLib.method.metrics import dice
from PatchSamplerLib.method.sampler import SamplerModel, learned_centres
from PatchSamplerLib.pipeline import reconstruct
from PatchSamplerLib.volume import write_volume
from tiny_prior import held_out_vertebra, tiny_prior_path, tiny_sampler_path


@pytest.fixture()
def models(tmp_path, monkeypatch):
    """A models folder with the tiny prior as 'tiny' and its sampler for N = 2, K = 3, T = 5."""
    folder = tmp_path / "models"
    folder.mkdir()
    shutil.copy(tiny_prior_path(), folder / "prior_tiny.pt")
    shutil.copy(tiny_sampler_path(), folder / "sampler_tiny_n2_k3_t5.pt")
    monkeypatch.setattr(checkpoints, "MODELS_DIR", folder)
    return folder


def test_learned_centres_are_the_projected_points_inside_the_shape_hull():
    vol = held_out_vertebra(1)
    model = SamplerModel.load(tiny_sampler_path())
    generated, projected = learned_centres(model, vol.mask)
    assert generated.shape == projected.shape == (2, 3)
    occupied = np.argwhere(vol.mask)
    assert np.all(projected >= occupied.min(0) - 1e-4) and np.all(projected <= occupied.max(0) + 1e-4)
    # deterministic
    np.testing.assert_array_equal(projected, learned_centres(model, vol.mask)[1])


def test_bundled_sampler_is_found_by_prior_and_n_k(models):
    vol = held_out_vertebra(0)
    res = reconstruct(vol, n=2, k=3, t=5, sampler="learned", prior="tiny")
    assert res.settings["sampler"] == "learned" and res.generated.shape == (2, 3)
    assert not res.warnings
    other_t = reconstruct(vol, n=2, k=3, t=7, sampler="learned", prior="tiny")
    assert "trained for T=5" in other_t.warnings[0]
    with pytest.raises(CheckpointError, match=r"N=3, K=3 .*tiny N=2 K=3 T=5"):
        reconstruct(vol, n=3, k=3, t=5, sampler="learned", prior="tiny")


def test_a_sampler_for_another_n_is_refused(models):
    with pytest.raises(ValueError, match="places N=2 patches; N=4 was requested"):
        reconstruct(held_out_vertebra(0), n=4, k=3, t=5, sampler="learned", prior="tiny",
                    sampler_model=tiny_sampler_path())


def test_cli_run_learned_writes_generated_and_projected_points(tmp_path, capsys):
    vol = held_out_vertebra(2)
    write_volume(tmp_path / "v.nii.gz", vol)
    out = tmp_path / "out"
    assert main(["run", "--input", str(tmp_path / "v.nii.gz"), "--n", "2", "--k", "3", "--t", "5", "--sampler",
                 "learned", "--sampler-model", str(tiny_sampler_path()), "--prior", str(tiny_prior_path()),
                 "--out", str(out)]) == 0
    assert f"learned sampler: {tiny_sampler_path().name}\n" in capsys.readouterr().out      # the model used, named
    record = json.loads((out / "patches.json").read_text())
    assert record["sampler"] == "learned" and len(record["patches"]) == 2
    model = SamplerModel.load(tiny_sampler_path())
    generated, projected = learned_centres(model, vol.mask)
    for patch, g, r in zip(record["patches"], generated, projected):
        np.testing.assert_allclose(patch["generated_index_ijk"], g, atol=1e-3)
        np.testing.assert_allclose(patch["projected_index_ijk"], r, atol=1e-3)


def test_cli_without_a_sampler_for_the_prior_says_what_exists(tmp_path, capsys):
    vol = held_out_vertebra(2)
    write_volume(tmp_path / "v.nii.gz", vol)
    code = main(["run", "--input", str(tmp_path / "v.nii.gz"), "--n", "2", "--k", "3", "--sampler", "learned",
                 "--prior", str(tiny_prior_path()), "--out", str(tmp_path / "out")])
    assert code == 2
    assert "--sampler-model" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_coarse_to_fine_decode_matches_the_dense_decode_with_fewer_evaluations():
    prior = ShapePrior.load(tiny_prior_path())
    for i in range(3):
        vol = held_out_vertebra(i)
        fast = reconstruct(vol, n=6, k=5, t=30, prior=prior, seed=i)
        dense = reconstruct(vol, n=6, k=5, t=30, prior=prior, seed=i, dense_decode=True)
        assert dice(fast.reconstruction, dense.reconstruction) >= 0.999
        assert fast.settings["decoder_points"] < dense.settings["decoder_points"]
        assert fast.metrics["dice"] == pytest.approx(dense.metrics["dice"], abs=2e-3)


def test_evaluation_runs_learned_once_fps_per_seed_and_tests_per_case_means(models, tmp_path):
    import csv
    from scipy import stats
    from PatchSamplerLib.experiments.evaluation import EvaluationGrid, run_cases
    from PatchSamplerLib.experiments.tables import per_case_means, significance_table, summary_table
    cases = [(f"v{i}", held_out_vertebra(i)) for i in range(3)]
    grid = EvaluationGrid(((2, 3),), (5,), ("learned", "fps"), runs=2)
    path = run_cases(cases, grid, ShapePrior.load("tiny"), tmp_path / "eval", log=lambda *a: None)
    rows = list(csv.DictReader(open(path)))
    assert sum(r["sampler"] == "learned" for r in rows) == 3 and sum(r["sampler"] == "fps" for r in rows) == 6
    learned, fps = per_case_means(rows, 2, 3, 5, "learned"), per_case_means(rows, 2, 3, 5, "fps")
    fps_dice = {c: np.mean([float(r["dice"]) for r in rows if r["case"] == c and r["sampler"] == "fps"])
                for c in learned}
    assert all(fps[c][0] == pytest.approx(fps_dice[c]) for c in learned)
    table = significance_table(path)
    x, y = np.array([learned[c][0] for c in sorted(learned)]), np.array([fps[c][0] for c in sorted(learned)])
    assert f"{stats.ttest_rel(x, y).pvalue:.2g}" in table.split("\n")[4]
    assert f"{np.mean(x - y):+.4f}" in table
    summary = summary_table(path)
    assert "LEARNED 1" in summary and "FPS 2" in summary
    assert summary.index("Dice LEARNED") < summary.index("Dice FPS")


def test_evaluate_command_runs_a_t_grid_skips_missing_samplers_and_draws_figures(models, tmp_path, capsys):
    import csv
    from PatchSamplerLib.cli.main import main
    from tiny_prior import TINY_SCALE
    out = tmp_path / "grid"
    args = ["evaluate", "--family", "vertebra", "--data-seed", "99", "--scale", str(TINY_SCALE), "--preset", "cpu",
            "--count", "2", "--configs", "2x3,3x3", "--t", "3,5", "--runs", "2", "--samplers", "learned,fps",
            "--prior", "tiny", "--figures", "--out", str(out)]
    assert main(args) == 0
    assert "no bundled learned sampler for N=3, K=3" in capsys.readouterr().out
    rows = list(csv.DictReader(open(out / "cases.csv")))
    counts = {}
    for r in rows:
        key = (r["n"], r["t"], r["sampler"])
        counts[key] = counts.get(key, 0) + 1
    # 2 cases: learned once each (only N = 2 has a sampler), FPS 2 runs each, at both T
    assert counts == {("2", "3", "learned"): 2, ("2", "5", "learned"): 2, ("2", "3", "fps"): 4, ("2", "5", "fps"): 4,
                      ("3", "3", "fps"): 4, ("3", "5", "fps"): 4}
    table = (out / "table.md").read_text()
    assert "| 2 | 3 | 3 |" in table and "| 3 | 3 | 5 |" in table and "T = 3, 5" in table
    for name in ("dice_surface.png", "errors_learned.png", "errors_fps.png", "placement.png"):
        assert (out / name).stat().st_size > 10_000, name
    assert main(args) == 0                                       # resumed: nothing recomputed
    assert len(list(csv.DictReader(open(out / "cases.csv")))) == len(rows)


def test_evaluate_uses_the_samplers_of_a_folder_instead_of_the_bundled_ones(tmp_path, capsys):
    import csv
    import shutil
    from PatchSamplerLib.cli.main import main
    from PatchSamplerLib.data.synthetic import make_shape
    from tiny_prior import TINY_SCALE
    folder = tmp_path / "candidates"
    folder.mkdir()
    shutil.copy(tiny_sampler_path(), folder / "sampler_n2_k3_t5.pt")
    out = tmp_path / "eval"
    base = ["evaluate", "--family", "vertebra", "--data-seed", "99", "--scale", str(TINY_SCALE), "--count", "2",
            "--configs", "2x3,3x3", "--t", "5", "--runs", "1", "--samplers", "learned,fps",
            "--prior", str(tiny_prior_path()), "--out", str(out)]
    assert main(base + ["--sampler-dir", str(folder)]) == 0
    printed = capsys.readouterr().out
    assert "no learned sampler" in printed and "sampler_n3_k3_t5.pt" in printed   # 3x3: skipped, said
    rows = list(csv.DictReader(open(out / "cases.csv")))
    learned = [r for r in rows if r["sampler"] == "learned"]
    assert [(r["case"], r["n"]) for r in learned] == [("vertebra_99_0000", "2"), ("vertebra_99_0001", "2")]
    expected = reconstruct(make_shape("vertebra", 99, 1, TINY_SCALE), n=2, k=3, t=5, sampler="learned",
                           prior=str(tiny_prior_path()), sampler_model=str(folder / "sampler_n2_k3_t5.pt"))
    assert float(learned[1]["dice"]) == pytest.approx(expected.metrics["dice"], abs=1e-6)
    assert main(base + ["--sampler-dir", str(tmp_path / "nowhere")]) == 2
    assert "is not a folder" in capsys.readouterr().err


def test_presets_fill_only_what_the_command_line_left_unset():
    import argparse
    from PatchSamplerLib.cli.evaluate import PRESETS, apply_preset
    unset = dict(configs=None, t=None, samplers=None, runs=None, count=None, folds=None, train_missing=None)
    args = argparse.Namespace(**dict(unset, preset="full", t="100", count=5))
    apply_preset(args)
    assert args.configs.count("x") == 9 and args.t == "100" and args.runs == 30 and args.count == 5
    assert args.samplers == PRESETS["full"]["samplers"] and args.folds == 5 and args.train_missing
    plain = argparse.Namespace(**dict(unset, preset=None))
    apply_preset(plain)
    assert (plain.configs, plain.t, plain.runs, plain.count, plain.folds) == ("4x9,8x11,12x13", "100", 1, 20, 0)


def test_summary_table_marks_the_best_sampler_of_every_metric(tmp_path):
    from PatchSamplerLib.experiments.evaluation import FIELDS
    from PatchSamplerLib.experiments.tables import summary_table
    rows = [("a", "fps", 0, 0.80, 1.0, 3.0), ("a", "fps", 1, 0.90, 1.0, 3.0), ("a", "random", 0, 0.80, 2.0, 2.0),
            ("b", "fps", 0, 0.70, 1.0, 3.0), ("b", "fps", 1, 0.70, 1.0, 3.0), ("b", "random", 0, 0.80, 2.0, 2.0)]
    path = tmp_path / "cases.csv"
    with open(path, "w") as f:
        f.write(",".join(FIELDS) + "\n")
        for case, sampler, run, d, asd, hd in rows:
            f.write(f"{case},4,9,100,{sampler},{run},{d},{asd},{hd},1,1\n")
    line = [x for x in summary_table(path).splitlines() if x.startswith("| 4 | 9 | 100")][0]
    cells = [c.strip() for c in line.strip("|").split("|")][4:]
    # Dice: FPS 0.775 (case means 0.85, 0.70) vs RS 0.800; ASD: FPS 1.0 vs 2.0; HD95: FPS 3.0 vs 2.0
    assert cells == ["0.775 ± 0.075", "**0.800 ± 0.000**", "**1.000 ± 0.000**", "2.000 ± 0.000",
                     "3.000 ± 0.000", "**2.000 ± 0.000**"]


def test_summary_table_bolds_no_sampler_when_all_tie_as_shown_and_every_one_of_a_tie(tmp_path):
    from PatchSamplerLib.experiments.evaluation import FIELDS
    from PatchSamplerLib.experiments.tables import summary_table
    rows = [("a", "learned", 0.9, 1.0, 2.0), ("a", "fps", 0.9, 1.0001, 2.0), ("a", "random", 0.8, 1.0, 3.0)]
    path = tmp_path / "cases.csv"
    with open(path, "w") as f:
        f.write(",".join(FIELDS) + "\n")
        for case, sampler, d, asd, hd in rows:
            f.write(f"{case},4,9,100,{sampler},0,{d},{asd},{hd},1,1\n")
    line = [x for x in summary_table(path).splitlines() if x.startswith("| 4 | 9 | 100")][0]
    cells = [c.strip() for c in line.strip("|").split("|")][4:]
    # Dice: learned and FPS tie (both bold); ASD: all three 1.000 as shown (none bold); HD95: learned, FPS
    assert cells == ["**0.900 ± 0.000**", "**0.900 ± 0.000**", "0.800 ± 0.000", "1.000 ± 0.000", "1.000 ± 0.000",
                     "1.000 ± 0.000", "**2.000 ± 0.000**", "**2.000 ± 0.000**", "3.000 ± 0.000"]


def test_summary_table_marks_learned_cells_that_differ_significantly_from_fps(tmp_path):
    from PatchSamplerLib.experiments.evaluation import FIELDS
    from PatchSamplerLib.experiments.tables import summary_table
    path = tmp_path / "cases.csv"
    gains = [0.01, 0.02, 0.03, 0.015, 0.025, 0.012, 0.018, 0.03]      # learned Dice always higher
    noise = [0.1, -0.1, 0.05, -0.05, 0.2, -0.2, 0.0, 0.01]            # ASD: no consistent difference
    with open(path, "w") as f:
        f.write(",".join(FIELDS) + "\n")
        for i, (g, e) in enumerate(zip(gains, noise)):
            f.write(f"c{i},4,9,100,fps,0,{0.8 + i / 100},1.0,3.0,1,1\n")
            f.write(f"c{i},4,9,100,learned,0,{0.8 + i / 100 + g},{1.0 + e},3.0,1,1\n")
    text = summary_table(path)
    cells = [c.strip() for c in [x for x in text.splitlines() if x.startswith("| 4 | 9 | 100")][0].strip("|").split("|")][4:]
    assert cells[0].endswith("†**") and "†" not in cells[1]             # Dice: learned best and significant
    assert not any("†" in c for c in cells[2:])                          # ASD noise, HD95 identical
    assert "† learned vs FPS" in text


def test_cross_validation_trains_one_sampler_per_fold_and_scores_each_shape_in_its_test_fold(models, tmp_path,
                                                                                             capsys):
    import csv
    from PatchSamplerLib.cli.main import main
    from PatchSamplerLib.experiments.crossval import fold_sampler_path
    from PatchSamplerLib.data.loaders import load_synthetic
    from PatchSamplerLib.data.splits import cross_validation_folds
    from PatchSamplerLib.method.sampler import SamplerModel
    from tiny_prior import TINY_SCALE
    out = tmp_path / "cv"
    args = ["evaluate", "--family", "vertebra", "--data-seed", "99", "--scale", str(TINY_SCALE), "--count", "6",
            "--folds", "3", "--configs", "2x3", "--t", "5", "--runs", "2", "--samplers", "learned,fps",
            "--train-missing", "--train-epochs", "1", "--prior", "tiny", "--out", str(out)]
    (models / "sampler_tiny_n2_k3_t5.pt").unlink()                          # no bundled sampler to fall back on
    assert main(args + ["--figures"]) == 0
    assert (out / "errors_learned.png").is_file()                            # drawn with the first fold's sampler
    rows = list(csv.DictReader(open(out / "cases.csv")))
    folds = cross_validation_folds(load_synthetic("vertebra", 6, 99, TINY_SCALE).subjects, n_folds=3)
    names = [f"synthetic-vertebra-s99-{i:05d}" for i in range(6)]
    expected = {f"f{f.index}/{names[i]}" for f in folds for i in f.test}
    assert {r["case"] for r in rows} == expected and len(expected) == 6      # every shape once, in its fold
    assert sum(r["sampler"] == "learned" for r in rows) == 6 and sum(r["sampler"] == "fps" for r in rows) == 12
    for f in folds:                                                          # one sampler per fold, trained
        model = SamplerModel.load(fold_sampler_path(out / "samplers", f.index, 2, 3, 5))
        assert model.metadata["data"] == f"cross-validation fold {f.index}"
        assert model.metadata["n_train"] == len(f.train) and model.metadata["n_val"] == len(f.val)
        assert set(model.metadata["test"]) == {f"f{f.index}/{names[i]}" for i in f.test}
    assert "| 2 | 3 | 5 |" in (out / "table.md").read_text()
    capsys.readouterr()
    assert main(args) == 0                                                   # resumed: nothing recomputed
    assert len(list(csv.DictReader(open(out / "cases.csv")))) == len(rows)
    assert "training the learned sampler" not in capsys.readouterr().out
    other = tmp_path / "cv_missing"                                          # no training: learned skipped
    assert main([a for a in args if a != "--train-missing"][:-1] + [str(other), "--only-folds", "0"]) == 0
    rows = list(csv.DictReader(open(other / "cases.csv")))
    assert {r["sampler"] for r in rows} == {"fps"} and all(r["case"].startswith("f0/") for r in rows)
    assert "no learned sampler" in capsys.readouterr().out


def test_a_results_sampler_record_runs_the_same_sampler_again_while_the_file_is_unchanged(tmp_path):
    copy = tmp_path / "mine.pt"
    shutil.copy(tiny_sampler_path(), copy)
    volume = held_out_vertebra(0)
    settings = dict(n=2, k=3, t=5, sampler="learned", prior=str(tiny_prior_path()))
    first = reconstruct(volume, sampler_model=str(copy), **settings)
    record = first.settings["sampler_model"]
    again = reconstruct(volume, sampler_model=record, **settings)
    np.testing.assert_array_equal(again.centres, first.centres)
    assert again.metrics == first.metrics and again.settings["sampler_model"] == record
    model = SamplerModel.load(copy)
    model.metadata["note"] = "retrained"
    model.save(copy)
    with pytest.raises(ValueError, match="not the learned sampler of that run any more"):
        reconstruct(volume, sampler_model=record, **settings)
    copy.unlink()
    with pytest.raises(ValueError, match="is gone"):
        reconstruct(volume, sampler_model=record, **settings)
