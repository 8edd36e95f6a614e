"""Grouped 5-fold cross-validation with 70 / 10 / 20 train / val / test per fold [T §4.1].

Input: the subject of every item (``ShapeDataset.subjects``); output: item indices. All
items of a subject always land in the same split of a fold (no patient leaks between train,
validation and test), and every item is in the test split of exactly one fold.

Algorithm (deterministic in `seed` and the subject list; independent of item order):
1. Test folds: the distinct subjects are shuffled with ``default_rng(seed)``, stably sorted by
   item count (largest first) and each is given to the fold with the fewest items so far
   (lowest fold index on ties). With one item per subject this is a round robin over the
   shuffled subjects: the folds differ by at most one subject, and each holds ~1 / n_folds
   (20 %) of the items.
2. Validation inside fold f: the other folds' subjects, shuffled with
   ``default_rng([seed, f])``, are taken in turn whenever that brings the validation item
   count closer to ``val_fraction`` (10 %) of all items; the rest is training (~70 %).

Small datasets: at least `n_folds` subjects are needed (else every fold could not have a
test subject: ValueError). Validation always gets at least one subject when that leaves at
least one for training, so training is never empty and validation is empty only when a fold
has a single non-test subject (possible only with n_folds = 2). With 7 single-item subjects
the folds are 5 / 1 / 1 or 4 / 1 / 2 (train / val / test).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

N_FOLDS = 5
VAL_FRACTION = 0.1


@dataclass(frozen=True)
class Fold:
    """One cross-validation fold: sorted int64 item indices of each split."""
    index: int
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def group_items(subjects: Sequence[str]) -> dict[str, np.ndarray]:
    """Subject -> sorted int64 indices of its items, subjects in sorted order."""
    groups: dict[str, list[int]] = {}
    for index, subject in enumerate(subjects):
        groups.setdefault(str(subject), []).append(index)
    return {s: np.array(groups[s], dtype=np.int64) for s in sorted(groups)}


def assign_test_folds(groups: dict[str, np.ndarray], n_folds: int, seed: int) -> list[list[str]]:
    """Subjects of each fold's test split: shuffled, largest first, greedy to the lightest fold."""
    names = list(groups)
    order = [names[i] for i in np.random.default_rng(seed).permutation(len(names))]
    order.sort(key=lambda s: -len(groups[s]))          # stable: ties keep the shuffled order
    folds: list[list[str]] = [[] for _ in range(n_folds)]
    load = np.zeros(n_folds, dtype=np.int64)
    for subject in order:
        fold = int(np.argmin(load))                      # first lightest fold
        folds[fold].append(subject)
        load[fold] += len(groups[subject])
    return folds


def choose_validation(candidates: list[str], groups: dict[str, np.ndarray], target_items: float,
                      rng: np.random.Generator) -> list[str]:
    """Validation subjects among `candidates`: shuffled, each taken if it moves the item count
    closer to `target_items`; at least one when at least two candidates (training keeps one)."""
    if len(candidates) < 2:
        return []
    order = [candidates[i] for i in rng.permutation(len(candidates))]
    chosen, count = [], 0
    for subject in order:
        if len(chosen) == len(order) - 1:
            break                                        # keep one subject for training
        size = len(groups[subject])
        if abs(count + size - target_items) < abs(count - target_items):
            chosen.append(subject)
            count += size
    if not chosen:
        chosen.append(min(order, key=lambda s: len(groups[s])))
    return chosen


def _indices(subjects: list[str], groups: dict[str, np.ndarray]) -> np.ndarray:
    if not subjects:
        return np.zeros(0, dtype=np.int64)
    return np.sort(np.concatenate([groups[s] for s in subjects]))


def cross_validation_folds(subjects: Sequence[str], n_folds: int = N_FOLDS,
                           val_fraction: float = VAL_FRACTION, seed: int = 0) -> list[Fold]:
    """Grouped k-fold splits of items given the subject of each item (module docstring).

    subjects: one subject id per item (e.g. ``dataset.subjects``).
    Returns `n_folds` Folds of item indices; train / val / test of a fold are disjoint and
    cover every item, and the test splits of the folds partition the items.
    """
    if n_folds < 2:
        raise ValueError(f"cross-validation needs at least 2 folds, got {n_folds}")
    if not 0.0 <= val_fraction < 1.0 - 1.0 / n_folds:
        raise ValueError(f"val_fraction must be in [0, {1.0 - 1.0 / n_folds:.2f}) for {n_folds} "
                         f"folds (the test split takes 1 / {n_folds}), got {val_fraction}")
    groups = group_items(subjects)
    if len(groups) < n_folds:
        raise ValueError(f"{n_folds}-fold cross-validation needs at least {n_folds} subjects, "
                         f"got {len(groups)} (in {len(subjects)} items)")
    test_folds = assign_test_folds(groups, n_folds, seed)
    target = val_fraction * len(subjects)
    folds = []
    for f, test in enumerate(test_folds):
        in_test = set(test)
        rest = [s for s in groups if s not in in_test]
        val = choose_validation(rest, groups, target, np.random.default_rng([seed, f])) \
            if val_fraction > 0 else []
        in_val = set(val)
        train = [s for s in rest if s not in in_val]
        folds.append(Fold(f, _indices(train, groups), _indices(val, groups), _indices(test, groups)))
    return folds
