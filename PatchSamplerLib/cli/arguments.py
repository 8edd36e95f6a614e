"""Parsing helpers and options shared by the commands (argparse only lives in `cli/`)."""
from __future__ import annotations

import argparse

from PatchSamplerLib.data.synthetic import FAMILIES
from PatchSamplerLib.data.totalsegmentator import parse_levels
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


DATASET_LAYOUTS = ("folder", "verse", "totalsegmentator")


def add_dataset_arguments(p: argparse.ArgumentParser) -> None:
    """--dataset (the layout of --data) and the TotalSegmentator --structure / --levels, shared by
    the commands that read a dataset folder (train-prior, train-sampler, evaluate)."""
    p.add_argument("--dataset", choices=DATASET_LAYOUTS, default="folder",
                   help="layout of --data: any folder of labelmaps, VerSe 2019/2020 (one shape per complete "
                        "vertebra, 1 mm scans, 128 x 120 x 90 crops) or TotalSegmentator outputs (a folder of "
                        "subjects: <subject>/segmentations/*.nii.gz or multi-label --ml files; --structure) "
                        "(default folder)")
    p.add_argument("--structure", choices=["kidney", "vertebra"], default=None,
                   help="--dataset totalsegmentator: every complete kidney (1.5 mm, 85 x 85 x 110 crops) or "
                        "vertebra of --levels (1 mm, 128 x 120 x 90 crops); masks in several pieces, touching the "
                        "scan border or too small are skipped with the reason (default kidney)")
    p.add_argument("--levels", default=None,
                   help="--structure vertebra: levels or ranges of C1-C7, T1-T12, L1-L5, S1, e.g. 'L1-L5' or "
                        "'T12,L1' (default T10-L5)")


def dataset_options(args) -> dict:
    """Loader options of --structure / --levels (TotalSegmentator only; absent or None: not
    given); ValueError when they are given for another layout, --levels without vertebrae or
    an unknown level (checked here, before any data or model is read)."""
    given = {k: getattr(args, k, None) for k in ("structure", "levels") if getattr(args, k, None) is not None}
    if given and args.dataset != "totalsegmentator":
        raise ValueError(f"--structure and --levels apply to --dataset totalsegmentator, not {args.dataset}")
    if "levels" in given:
        if given.get("structure") != "vertebra":
            raise ValueError("--levels needs --structure vertebra")
        parse_levels(given["levels"])
    return given
