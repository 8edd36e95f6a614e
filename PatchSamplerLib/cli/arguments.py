"""Parsing helpers and options shared by the commands (argparse only lives in `cli/`)."""
from __future__ import annotations

import argparse

from PatchSamplerLib.data.synthetic import FAMILIES
from PatchSamplerLib.devices import DEVICE_CHOICES
from PatchSamplerLib.method.samplers import SAMPLER_NAMES


def parse_configs(text: str) -> tuple[tuple[int, int], ...]:
    """"4x9,8x11" -> ((4, 9), (8, 11)); "" -> (); ValueError naming the expected form."""
    try:
        configs = tuple(tuple(int(v) for v in item.lower().split("x")) for item in text.split(",") if item)
    except ValueError:
        configs = ((),)
    if any(len(c) != 2 for c in configs):
        raise ValueError(f"configurations must look like 4x9,8x11 (N x K), got {text!r}")
    return configs


def parse_ints(text: str, what: str = "T") -> tuple[int, ...]:
    """"33,66,100" -> (33, 66, 100); ValueError naming `what`."""
    try:
        return tuple(int(v) for v in str(text).split(",") if v)
    except ValueError:
        raise ValueError(f"{what} must be a comma list of integers, got {text!r}") from None


def parse_samplers(text: str) -> tuple[str, ...]:
    """"learned,fps" -> ("learned", "fps"); ValueError for a name not in the sampler registry."""
    names = tuple(s for s in text.split(",") if s)
    unknown = [s for s in names if s not in SAMPLER_NAMES]
    if unknown:
        raise ValueError(f"unknown sampler {unknown[0]!r}; choose from {', '.join(SAMPLER_NAMES)}")
    return names


def add_device_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help=f"{' | '.join(DEVICE_CHOICES)} (auto: CUDA when present)")
