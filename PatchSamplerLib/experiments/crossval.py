"""`evaluate --folds F`: the thesis's cross-validation for the learned sampler [T §4.1, §5].

The shapes (a synthetic family's `count` shapes, each its own subject, or a dataset read by the
loaders, grouped by subject) are split by `data.splits.cross_validation_folds` (F folds; with
F = 5: 70 / 10 / 20 train / validation / test). In fold f, every sampler is scored on the fold's
test shapes only (case names ``f<f>/<shape>``), and the learned sampler for each (N, K, T) is the
fold's own: ``<sampler-dir>/fold<f>/sampler_n<N>_k<K>_t<T>.pt``, trained on the fold's training
shapes and validated on its validation shapes when missing and `train` settings are given
(`SamplerTrainer`, the run folder next to it), else skipped with a note. FPS and RS need no
training. The prior is the given one for every fold (it is not retrained per fold). The missing
samplers of all folds are trained first, each a job of the executor (`executors`: in this
process, or one Ray task each), then the folds are scored.
"""
from __future__ import annotations

import re

from dataclasses import dataclass
from pathlib import Path

from PatchSamplerLib.checkpoints import in_any_range, sampler_file_name
from PatchSamplerLib.data.folder import item_on_side
from PatchSamplerLib.data.splits import cross_validation_folds
from PatchSamplerLib.experiments.evaluation import EvaluationGrid, run_cases
from PatchSamplerLib.experiments.executors import Failure, Job, LocalExecutor
from PatchSamplerLib.method.sampler import SamplerModel
from PatchSamplerLib.progress import task, tracked
from PatchSamplerLib.training.sampler import SamplerConfig, SamplerTrainer
from PatchSamplerLib.volume import BinaryVolume


@dataclass
class FoldData:
    """One fold: training / validation volumes and named test cases."""
    index: int
    train: list[BinaryVolume]
    val: list[BinaryVolume]
    test: list[tuple[str, BinaryVolume]]


def split_folds(items, n_folds: int, seed: int = 0, side: str | None = None) -> list[FoldData]:
    """A ShapeDataset (items with .volume, .name, .subject) -> its `n_folds` FoldData. side: the
    side of a prior trained on one side (`method.sides`): the training and validation shapes of
    the fold samplers are put on it (`data.folder.item_on_side`; a shape whose name says no side
    stays as it is); the test cases stay as stored -- a run mirrors them by their names."""
    folds = cross_validation_folds(items.subjects, n_folds=n_folds, seed=seed)
    fit = [item if side is None else (item_on_side(item, side) or item) for item in items]
    return [FoldData(f.index, [fit[i].volume for i in f.train], [fit[i].volume for i in f.val],
                     [(f"f{f.index}/{items[i].name}", items[i].volume) for i in f.test]) for f in folds]


def fold_sampler_path(sampler_dir, fold: int, n: int, k: int, t: int) -> Path:
    return Path(sampler_dir) / f"fold{fold}" / sampler_file_name(None, n, k, t)


def folder_samplers(sampler_dir, configs, ts, log=print) -> dict:
    """{(N, K, T): SamplerModel} for the requested (N, K) x T grid (no folds) from the folder
    DIR: the files DIR/sampler_n<N>_k<K>_t<T>.pt, else DIR/sampler_any_t<T>.pt (an any-(N, K)
    sampler, #18) where it covers (N, K), else any other sampler file in DIR or one folder down
    (a `train-sampler` output folder's sampler.pt) trained for exactly (N, K, T), else an
    any-(N, K) one of T -- a sampler is known by what it records, whatever its file is called.
    Each missing one is noted and its learned rows skipped. ValueError when DIR is not a folder
    or two other files serve the same cell (which one was meant is not known)."""
    folder, models = check_sampler_dir(sampler_dir), {}
    others = other_sampler_files(folder, configs, ts)
    for t in ts:
        any_path = folder / f"sampler_any_t{t}.pt"
        any_model = SamplerModel.load(any_path) if any_path.exists() else others.get(("any", t))
        for n, k in configs:
            path = folder / sampler_file_name(None, n, k, t)
            if path.exists():
                models[(n, k, t)] = SamplerModel.load(path)
            elif (n, k, t) in others:
                models[(n, k, t)] = others[(n, k, t)]
            elif any_model is not None and in_any_range(n, k) and n <= any_model.n:
                models[(n, k, t)] = any_model
            else:
                log(f"no learned sampler {path} (N={n}, K={k}, T={t}; nor another sampler file in {folder} "
                    f"trained for them): the learned sampler is skipped there")
    return models


def check_sampler_dir(sampler_dir) -> Path:
    """The --sampler-dir of an evaluation without folds as a Path; ValueError when it is not a folder."""
    folder = Path(sampler_dir)
    if not folder.is_dir():
        raise ValueError(f"--sampler-dir {sampler_dir} is not a folder")
    return folder


def other_sampler_files(folder: Path, configs, ts) -> dict:
    """{(N, K, T) or ("any", T): SamplerModel} of the sampler files in `folder` and its
    subfolders (*.pt, not named as `folder_samplers` expects) by their recorded N, K, T; files
    that are not samplers (priors, last.pt) are passed over. ValueError for two files of one key."""
    from PatchSamplerLib.checkpoints import CheckpointError
    wanted = {(n, k, t) for n, k in configs for t in ts} | {("any", t) for t in ts}
    found, paths = {}, {}
    for path in sorted(set(folder.glob("*.pt")) | set(folder.glob("*/sampler.pt"))):
        if re.fullmatch(r"sampler_(n\d+_k\d+|any)_t\d+\.pt", path.name):
            continue                                       # named: read by folder_samplers itself
        try:
            model = SamplerModel.load(path)
        except CheckpointError:
            continue
        key = ("any", model.t) if model.any_nk else (model.n, model.k, model.t)
        if key not in wanted:
            continue
        if key in found:
            raise ValueError(f"--sampler-dir: {paths[key]} and {path} are both samplers for {key}; keep one")
        found[key], paths[key] = model, path
    return found


def train_fold_sampler(data: FoldData, test_names: list[str], prior, n: int, k: int, t: int, sampler_dir,
                       train: dict, device: str, log=print) -> bytes:
    """Train the learned sampler (N, K, T) of fold `data.index` on its train / validation shapes
    (`train`: SamplerConfig overrides) in its own run folder next to the sampler's file
    (<sampler-dir>/fold<f>/run_n<N>_k<K>_t<T>: last.pt after every epoch, so a run that was
    stopped continues from there) -> the bytes of the best sampler.pt. The prior runs on
    `device` (resolved here: on a Ray worker, that worker's device). The job of every executor."""
    from PatchSamplerLib.devices import resolve_device
    run_dir = fold_sampler_path(sampler_dir, data.index, n, k, t).parent / f"run_n{n}_k{k}_t{t}"
    if not data.val:
        log(f"fold {data.index}: no validation shapes; the epoch with the lowest training loss is kept")
    log(f"fold {data.index}: training the learned sampler N={n}, K={k}, T={t} on {len(data.train)} shapes "
        f"({len(data.val)} validation) into {run_dir}")
    cfg = SamplerConfig(**dict(train, n=n, k=k, t=t))
    provenance = {"data": f"cross-validation fold {data.index}", "test": list(test_names)}
    trainer = SamplerTrainer(data.train, data.val, prior.on(resolve_device(device)), run_dir, cfg,
                             provenance=provenance, log=log)
    if (run_dir / "last.pt").exists():
        trainer.resume()
    trainer.run()
    return (run_dir / "sampler.pt").read_bytes()


def fold_samplers(folds: list[FoldData], grid: EvaluationGrid, prior, sampler_dir, train: dict | None, executor,
                  log=print) -> dict[int, dict]:
    """Each fold's learned samplers {fold index: {(N, K, T): SamplerModel}}: the files there are
    loaded; the missing ones are trained through `executor` when `train` (SamplerConfig
    overrides) is given, else skipped with a note. A training that failed (a Ray worker's
    `Failure`) is noted and its learned rows skipped."""
    models, jobs = {fold.index: {} for fold in folds}, []
    shared_prior = executor.share(prior) if train is not None else None
    for fold in folds:
        missing = [key for key in _sampler_keys(grid) if _needs_training(fold, key, sampler_dir, models, train, log)]
        if missing:
            data = executor.share(FoldData(fold.index, fold.train, fold.val, []))
            names = [name for name, _ in fold.test]
            jobs += [Job((fold.index, *key), (data, names, shared_prior, *key, str(sampler_dir), train, grid.device,
                                              log)) for key in missing]
    with task("sampler training", len(jobs), "samplers") as progress:
        for job, result in executor.map(train_fold_sampler, jobs):
            fold, key = job.key[0], job.key[1:]
            if isinstance(result, Failure):
                log(f"fold {fold}: training the sampler N={key[0]}, K={key[1]}, T={key[2]} failed "
                    f"{result.attempts} times ({result.error}); its learned rows are skipped")
            else:
                models[fold][key] = SamplerModel.load(_write_atomically(fold_sampler_path(sampler_dir, fold, *key),
                                                                        result))
            progress.advance()
    return models


def _sampler_keys(grid: EvaluationGrid) -> list[tuple[int, int, int]]:
    """(N, K, T) of the learned samplers the grid needs (none without the learned sampler)."""
    if "learned" not in grid.samplers:
        return []
    return [(n, k, t) for t in grid.ts for n, k in grid.configs]


def _needs_training(fold: FoldData, key: tuple, sampler_dir, models: dict, train: dict | None, log) -> bool:
    """Whether the fold's sampler `key` (N, K, T) is to be trained: its file, when it exists, is
    loaded into models[fold.index] (False); a missing one is trained when `train` is given
    (True), else noted as skipped (False)."""
    path = fold_sampler_path(sampler_dir, fold.index, *key)
    if path.exists():
        models[fold.index][key] = SamplerModel.load(path)
        return False
    if train is None:
        n, k, t = key
        log(f"fold {fold.index}: no learned sampler {path} (N={n}, K={k}, T={t}): skipped there "
            f"(--train-missing trains it)")
    return train is not None


def _write_atomically(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return path


def run_cross_validation(folds: list[FoldData], grid: EvaluationGrid, prior, out_dir, sampler_dir,
                         train: dict | None, log=print, executor=None) -> tuple[Path, list[dict]]:
    """Every fold's test cases into out_dir/cases.csv (resumable), each fold with its own learned
    samplers (the missing ones trained first, all folds' at once: `fold_samplers`); returns the
    CSV path and each fold's samplers {(N, K, T): SamplerModel}. executor: where the trainings
    and the runs go (`executors`; default: this process)."""
    executor = executor or LocalExecutor()
    models = fold_samplers(folds, grid, prior, sampler_dir, train, executor, log)
    path, per_fold = Path(out_dir) / "cases.csv", []
    for fold in tracked(folds, "cross-validation", unit="folds"):
        log(f"fold {fold.index}: {len(fold.test)} test shapes")
        path = run_cases(fold.test, grid, prior, out_dir, log, learned_models=models[fold.index], executor=executor)
        per_fold.append(models[fold.index])
    return path, per_fold
