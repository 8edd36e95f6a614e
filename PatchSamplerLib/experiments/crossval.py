"""`evaluate --folds F`: the thesis's cross-validation for the learned sampler [T §4.1, §5].

The shapes (a synthetic family's `count` shapes, each its own subject, or a dataset read by the
loaders, grouped by subject) are split by `data.splits.cross_validation_folds` (F folds; with
F = 5: 70 / 10 / 20 train / validation / test). In fold f, every sampler is scored on the fold's
test shapes only (case names ``f<f>/<shape>``), and the learned sampler for each (N, K, T) is the
fold's own: ``<sampler-dir>/fold<f>/sampler_n<N>_k<K>_t<T>.pt``, trained on the fold's training
shapes and validated on its validation shapes when missing and `train` settings are given
(`SamplerTrainer`, the run folder next to it), else skipped with a note. FPS and RS need no
training. The prior is the given one for every fold (it is not retrained per fold).
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from PatchSamplerLib.checkpoints import sampler_file_name
from PatchSamplerLib.data.splits import cross_validation_folds
from PatchSamplerLib.experiments.evaluation import EvaluationGrid, run_cases
from PatchSamplerLib.method.sampler import SamplerModel
from PatchSamplerLib.training.sampler import SamplerConfig, SamplerTrainer
from PatchSamplerLib.volume import BinaryVolume


@dataclass
class FoldData:
    """One fold: training / validation volumes and named test cases."""
    index: int
    train: list[BinaryVolume]
    val: list[BinaryVolume]
    test: list[tuple[str, BinaryVolume]]


def split_folds(items, n_folds: int, seed: int = 0) -> list[FoldData]:
    """A ShapeDataset (items with .volume, .name, .subject) -> its `n_folds` FoldData."""
    folds = cross_validation_folds(items.subjects, n_folds=n_folds, seed=seed)
    return [FoldData(f.index, [items[i].volume for i in f.train], [items[i].volume for i in f.val],
                     [(f"f{f.index}/{items[i].name}", items[i].volume) for i in f.test]) for f in folds]


def fold_sampler_path(sampler_dir, fold: int, n: int, k: int, t: int) -> Path:
    return Path(sampler_dir) / f"fold{fold}" / sampler_file_name(None, n, k, t)


def folder_samplers(sampler_dir, configs, ts, log=print) -> dict:
    """{(N, K, T): SamplerModel} of the files DIR/sampler_n<N>_k<K>_t<T>.pt for the requested
    (N, K) x T grid (no folds); each missing one is noted and its learned rows skipped."""
    folder, models = Path(sampler_dir), {}
    if not folder.is_dir():
        raise ValueError(f"--sampler-dir {sampler_dir} is not a folder")
    for t in ts:
        for n, k in configs:
            path = folder / sampler_file_name(None, n, k, t)
            if path.exists():
                models[(n, k, t)] = SamplerModel.load(path)
            else:
                log(f"no learned sampler {path} (N={n}, K={k}, T={t}): the learned sampler is skipped there")
    return models


def fold_sampler(fold: FoldData, prior, n: int, k: int, t: int, sampler_dir, train: dict | None, log=print):
    """The fold's learned sampler for (N, K, T): loaded, trained (with `train`: SamplerConfig
    overrides) or None (missing, no training asked for)."""
    path = fold_sampler_path(sampler_dir, fold.index, n, k, t)
    if path.exists():
        return SamplerModel.load(path)
    if train is None:
        log(f"fold {fold.index}: no learned sampler {path} (N={n}, K={k}, T={t}): skipped there "
            f"(--train-missing trains it)")
        return None
    if not fold.val:
        log(f"fold {fold.index}: no validation shapes; the epoch with the lowest training loss is kept")
    run_dir = path.parent / f"run_n{n}_k{k}_t{t}"
    log(f"fold {fold.index}: training the learned sampler N={n}, K={k}, T={t} on {len(fold.train)} shapes "
        f"({len(fold.val)} validation) into {run_dir}")
    cfg = SamplerConfig(**dict(train, n=n, k=k, t=t))
    provenance = {"data": f"cross-validation fold {fold.index}", "test": [name for name, _ in fold.test]}
    trainer = SamplerTrainer(fold.train, fold.val, prior, run_dir, cfg, provenance=provenance, log=log)
    if (run_dir / "last.pt").exists():
        trainer.resume()
    trainer.run()
    shutil.copyfile(run_dir / "sampler.pt", path)
    return SamplerModel.load(path)


def run_cross_validation(folds: list[FoldData], grid: EvaluationGrid, prior, out_dir, sampler_dir,
                         train: dict | None, log=print) -> tuple[Path, list[dict]]:
    """Every fold's test cases into out_dir/cases.csv (resumable), each fold with its own learned
    samplers; returns the CSV path and each fold's samplers {(N, K, T): SamplerModel}."""
    path, per_fold = Path(out_dir) / "cases.csv", []
    for fold in folds:
        models = {}
        if "learned" in grid.samplers:
            for t in grid.ts:
                for n, k in grid.configs:
                    model = fold_sampler(fold, prior, n, k, t, sampler_dir, train, log)
                    if model is not None:
                        models[(n, k, t)] = model
        log(f"fold {fold.index}: {len(fold.test)} test shapes")
        path = run_cases(fold.test, grid, prior, out_dir, log, learned_models=models)
        per_fold.append(models)
    return path, per_fold
