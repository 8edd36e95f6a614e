"""Parsing helpers and options shared by the commands (argparse only lives in `cli/`)."""
from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
from pathlib import Path

from PatchSamplerLib.data.synthetic import FAMILIES
from PatchSamplerLib.devices import DEVICE_CHOICES
from PatchSamplerLib.method.samplers import SAMPLER_NAMES


def _number(text: str, kind, lowest, inclusive: bool):
    """`text` as a `kind` (int / float) that is finite and >= (or >) `lowest`; argparse's
    ArgumentTypeError otherwise (argparse exits 2 naming the option, before any work)."""
    import math
    name = "an integer" if kind is int else "a number"
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {name}, got {text!r}") from None
    if not math.isfinite(value) or (value < lowest if inclusive else value <= lowest):
        raise argparse.ArgumentTypeError(f"must be {name} {'>=' if inclusive else '>'} {lowest}, got {text}")
    return value


def existing_file(text: str) -> str:
    """argparse type: the path of an existing file (a labelmap to read); a missing path or a folder
    is refused by argparse (exit 2, naming the option) before any work -- before a prior is chosen
    from the file's name or a cost estimate is printed (`volume.missing_file_problem`)."""
    from PatchSamplerLib.volume import missing_file_problem
    problem = missing_file_problem(text)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return text


def existing_folder(text: str) -> str:
    """argparse type: an existing folder (a dataset root); a missing path or a file is refused
    by argparse (exit 2, naming the option) before any work."""
    path = Path(text)
    if not path.exists():
        raise argparse.ArgumentTypeError(f"folder not found: {text}")
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a file; a dataset folder is needed (its files are read by "
                                         "--dataset's layout)")
    return text


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (counts, sizes, steps, epochs)."""
    return _number(text, int, 1, True)


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0 (seeds, indices, counts where 0 means none or all)."""
    return _number(text, int, 0, True)


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0 (scales, spacings in mm, learning rates, minutes)."""
    return _number(text, float, 0.0, False)


def non_negative_float(text: str) -> float:
    """argparse type: a finite number >= 0 (weights, shares, mm that may be 0)."""
    return _number(text, float, 0.0, True)


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
    """--dataset (the layout of --data), --label (folder), the TotalSegmentator --structure /
    --levels / --class-map and --min-voxels (TotalSegmentator, VerSe), shared by the commands that
    read a dataset folder (train-prior, train-sampler, evaluate); `dataset_options` checks them."""
    p.add_argument("--dataset", choices=DATASET_LAYOUTS, default="folder",
                   help="layout of --data: any folder of labelmaps (--label for multi-label files), VerSe "
                        "2019/2020 (one shape per complete vertebra at 1 mm, 128 x 120 x 90 crops) or "
                        "TotalSegmentator outputs (a folder of subjects: <subject>/segmentations/*.nii.gz, or the "
                        "multi-label files of TotalSegmentator's --ml option; --structure) (default folder)")
    p.add_argument("--label", type=positive_int, default=None,
                   help="--dataset folder: the label value to take from multi-label files (default: every file "
                        "must hold one label)")
    p.add_argument("--structure", choices=["kidney", "vertebra"], default=None,
                   help="--dataset totalsegmentator: every complete kidney (1.5 mm, 85 x 85 x 110 crops) or "
                        "vertebra of --levels (1 mm, 128 x 120 x 90 crops); masks in several pieces, touching the "
                        "scan border or too small are skipped with the reason (default kidney)")
    p.add_argument("--levels", default=None,
                   help="--structure vertebra: levels or ranges of C1-C7, T1-T12, L1-L5, S1, e.g. 'L1-L5' or "
                        "'T12,L1' (default T10-L5)")
    p.add_argument("--min-voxels", type=positive_int, default=None,
                   help="--dataset totalsegmentator / verse: the smallest kept shape in voxels at the training "
                        "spacing (default: kidneys 25,000 at 1.5 mm, the thesis's rule; vertebrae 5,000 at 1 mm; "
                        "lower it for children or cervical vertebrae)")
    p.add_argument("--class-map", choices=["total", "total_v1"], default=None,
                   help="--dataset totalsegmentator: the class numbers of multi-label files: total "
                        "(TotalSegmentator v2, default) or total_v1 (v1 files, or v2 run with --v1_order)")


def dataset_options(args) -> dict:
    """Loader options of --structure / --levels / --class-map (TotalSegmentator only),
    --min-voxels (TotalSegmentator and VerSe) and --label (folder only); absent or None: not
    given. ValueError when they are given with --family or for another layout, --levels without
    vertebrae or an unknown level (checked here, before any data or model is read)."""
    given = {k: getattr(args, k, None) for k in ("structure", "levels", "label", "min_voxels", "class_map")
             if getattr(args, k, None) is not None}
    if given and getattr(args, "family", None):
        raise ValueError(f"--{' and --'.join(k.replace('_', '-') for k in given)} appl{'ies' if len(given) == 1 else 'y'} to --data (a dataset "
                         f"folder), not to the synthetic --family {args.family}")
    if "label" in given and args.dataset != "folder":
        raise ValueError(f"--label applies to --dataset folder, not {args.dataset} (its layout names the labels)")
    if {"structure", "levels", "class_map"} & set(given) and args.dataset != "totalsegmentator":
        raise ValueError(f"--structure, --levels and --class-map apply to --dataset totalsegmentator, not {args.dataset}")
    if "min_voxels" in given and args.dataset == "folder":
        raise ValueError("--min-voxels applies to --dataset totalsegmentator and verse (a plain folder is not filtered)")
    if "levels" in given:
        if given.get("structure") != "vertebra":
            raise ValueError("--levels needs --structure vertebra")
        from PatchSamplerLib.data.totalsegmentator import parse_levels   # the loaders: only when asked
        parse_levels(given["levels"])
    return given


def check_output_location(path, kind: str = "folder") -> None:
    """Refuse an output `path` that cannot be written, before any work or side effect: an
    existing file where a folder is needed (kind "folder") or a folder where a file is needed
    (kind "file"), a path under a file, or a location on a read-only file system / without write
    permission (probed with a temporary file in the nearest existing folder, removed at once).
    Creates nothing. Raises ValueError naming the option and the reason."""
    target = Path(path).expanduser().absolute()
    if kind == "folder" and target.exists() and not target.is_dir():
        raise ValueError(f"--out {path} is an existing file; an output folder is needed")
    if kind == "file" and target.is_dir():
        raise ValueError(f"--out {path} is a folder; an output file name is needed (e.g. mean.nii.gz)")
    existing = target if kind == "folder" else target.parent
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(f"--out {path} cannot be created: {existing} is a file, not a folder")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        raise ValueError(f"--out {path} cannot be written: {existing}: {exc.strerror or exc}") from None
    if target.exists() and not os.access(target, os.W_OK):
        raise ValueError(f"--out {path} cannot be written: no write permission")


INPUT_OPTIONS = ("input", "reference")


def written_paths(args) -> list[Path]:
    """The files the command of `args` will write: --out itself (out_kind "file") or the names
    `args.out_files` in the --out folder (none declared: nothing checked)."""
    if getattr(args, "out_kind", "folder") == "file":
        return [Path(args.out)]
    return [Path(args.out) / name for name in getattr(args, "out_files", ())]


def check_inputs_kept(args) -> None:
    """Refuse a command whose outputs would replace one of its own input files (--input,
    --reference), e.g. `run --input out/reconstruction.nii.gz --out out`, before any work: the
    user's file would be lost. Raises ValueError naming both."""
    written = [path for path in written_paths(args) if path.exists()]
    for option in INPUT_OPTIONS:
        given = getattr(args, option, None)
        if not given or not Path(given).is_file():
            continue
        for path in written:
            if os.path.samefile(given, path):
                raise ValueError(f"--out {args.out} would replace the input --{option} {given} ({path.name}); "
                                 "choose another output folder or move the input")


def input_names(args) -> list[str]:
    """What --input is called, most telling first: its .seg.nrrd segment's name and terminology
    (for --label), then its file name (`structures.structure_mismatch` reads them)."""
    from PatchSamplerLib.volume import segment_description
    return [*segment_description(args.input, args.label), Path(args.input).name]


def add_side_argument(p: argparse.ArgumentParser) -> None:
    """--side, for the commands that reconstruct one --input."""
    p.add_argument("--side", choices=["left", "right"], default=None,
                   help="the input's side, for a prior trained on one side (kidney-anatomical-left): an input "
                        "of the other side is mirrored onto it and back; default: the side the input's name "
                        "says (left / right), else detected by the prior (method/sides.py)")


def print_side(settings: dict, args) -> None:
    """The line saying how a run with a prior of one side treated the input's side (nothing for
    other priors): `method.sides.describe_side` of its settings["side"]. A side the run was given
    without --side came from the input's name (`input_side`): recorded so (side_from, metrics.json)."""
    if settings.get("side") is not None:
        from PatchSamplerLib.method.sides import SIDE_FROM_NAME, describe_side, note_side_source
        if getattr(args, "side", None) is None:
            note_side_source(settings, SIDE_FROM_NAME)
        print(describe_side(settings["side"]))


def input_side(args) -> str | None:
    """--side when given; else the side --input's names say (`structures.first_side`: "left" /
    "right" in ``kidney_left.nii.gz`` or a segment "right kidney"); else None (a prior trained on
    one side then detects it, `method.sides`)."""
    if getattr(args, "side", None) is not None:
        return args.side
    from PatchSamplerLib.structures import first_side
    found = first_side(input_names(args))
    return None if found is None else found[0]


def prior_from_input(args, fallback: str | None = None) -> str | None:
    """--prior when given; else the bundled default prior (`structures.DEFAULT_PRIORS`: kidney ->
    kidney, vertebra -> vertebra-anatomical) of the structure --input's name says, printed; else
    `fallback` (None: `ShapePrior.load` then refuses, naming the bundled priors)."""
    from PatchSamplerLib.structures import DEFAULT_PRIORS, first_structure
    if args.prior is not None:
        return args.prior
    found = first_structure(input_names(args))
    chosen = DEFAULT_PRIORS[found[0]] if found else fallback
    if chosen is not None:
        why = f"the bundled prior for a {found[0]} ({found[1]!r})" if found else "the default"
        print(f"prior: {chosen} ({why}; choose another with --prior)")
    return chosen


def data_structure_mismatch(args, prior) -> str | None:
    """A message when the shapes of --family / --data (--dataset, --structure) are recognisably one
    structure (`structures.prior_structure` of their description) and `prior` was trained on the
    other; None otherwise (also for a --data folder, which does not say)."""
    from PatchSamplerLib.structures import mismatch_message, prior_structure
    family = getattr(args, "family", None)
    described = {"data": f"synthetic {family}"} if family else \
        {"dataset": getattr(args, "dataset", None), **dataset_options(args)}
    structure = prior_structure(described)
    source = f"--family {family}" if family else f"--data {args.data} (--dataset {args.dataset})"
    return structure and mismatch_message(f"the shapes of {source} are {structure} shapes", structure,
                                          prior_structure(prior.metadata), str(args.prior))


def structure_warning(args, prior) -> str | None:
    """The warning of `structures.structure_mismatch` for --input (its .seg.nrrd segment's name and
    terminology, then its file name) and the loaded `prior` (--prior names it), printed at once
    to stderr; None when the input and the prior do not recognisably differ."""
    import sys
    from PatchSamplerLib.structures import structure_mismatch
    note = structure_mismatch(input_names(args), prior.metadata, str(args.prior))
    if note:
        print(f"warning: {note}", file=sys.stderr)
    return note


THREADS_HELP = ("CPU threads of this command's computation: torch's intra-op threads and SimpleITK's (default: "
                "their own, about one per core). On a shared machine give each job its share: two jobs side by "
                "side on 2 cores run far faster with --threads 1 each than with both competing for all cores")


def add_threads_argument(p: argparse.ArgumentParser) -> None:
    """--threads N (an integer >= 1; argparse exits 2 for anything else, before any work), for
    every command that computes; applied by `cli.main` through `threads_applied`."""
    p.add_argument("--threads", type=positive_int, default=None, metavar="N", help=THREADS_HELP)


@contextlib.contextmanager
def threads_applied(args):
    """Inside the block torch (torch.set_num_threads) and SimpleITK (its global default) use
    `args.threads` CPU threads; both are restored afterwards. Nothing changes when the command
    has no --threads or it was not given (None). Yields the thread count torch uses."""
    import SimpleITK as sitk
    import torch
    threads = getattr(args, "threads", None)
    if threads is None:
        yield torch.get_num_threads()
        return
    saved = torch.get_num_threads(), sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    torch.set_num_threads(int(threads))
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(int(threads))
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(saved[0])
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(saved[1])
