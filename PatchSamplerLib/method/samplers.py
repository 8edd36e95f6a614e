"""The samplers the product offers, in one table: the name used on the command line, in files
and in `cases.csv`; the label people read (GUI, figures, tables); the colour of its figures;
and how its centres are made. Used by the CLI, the pipeline, the evaluation, the figures and
the Slicer module. Imports numpy only (the Slicer module reads it before torch is installed).

"learned" is the thesis's sampler [T §3.3-3.4] and needs a trained model
(`method.sampler.learned_centres`); the baselines [T §4.3] need only the mask.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from PatchSamplerLib.method.baselines import fps_centres, random_centres


@dataclass(frozen=True)
class SamplerSpec:
    name: str                  # "learned", "fps", "random"
    label: str                 # what a person reads: "Learned", "FPS", "Random"
    short: str                 # table column suffix [T Tables 5.x]: "LEARNED", "FPS", "RS"
    colour: str                # matplotlib colour of its figures
    centres: Callable | None   # (mask (X, Y, Z) bool, spacing (3,) mm, n, seed) -> (n, 3) voxel index; None: learned


SAMPLERS = {
    "learned": SamplerSpec("learned", "Learned", "LEARNED", "crimson", None),
    "fps": SamplerSpec("fps", "FPS", "FPS", "royalblue",
                       lambda mask, spacing, n, seed: fps_centres(mask, n, seed=seed, spacing=spacing)),
    "random": SamplerSpec("random", "Random", "RS", "darkgreen",
                          lambda mask, spacing, n, seed: random_centres(mask, n, seed=seed)),
}
SAMPLER_NAMES = tuple(SAMPLERS)          # display order: learned, FPS, random


def sampler_spec(name: str) -> SamplerSpec:
    """The registry entry of `name`; ValueError naming the choices for an unknown one."""
    try:
        return SAMPLERS[name]
    except KeyError:
        raise ValueError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLER_NAMES)}") from None


def sampler_label(name: str) -> str:
    """"fps" -> "FPS"; a name not in the registry is returned as it is (e.g. a CSV of other rows)."""
    return SAMPLERS[name].label if name in SAMPLERS else name


def baseline_centres(name: str, mask: np.ndarray, spacing, n: int, seed: int) -> np.ndarray:
    """(n, 3) float32 voxel-index centres of a baseline sampler ("fps" or "random") on the
    (X, Y, Z) bool mask with `spacing` (3,) mm. ValueError for "learned" or an unknown name."""
    spec = sampler_spec(name)
    if spec.centres is None:
        raise ValueError(f"the {spec.label} sampler needs a trained model, not only the mask")
    return np.asarray(spec.centres(mask, spacing, n, seed), np.float32)
