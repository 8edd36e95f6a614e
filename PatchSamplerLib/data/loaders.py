"""One entry point to every dataset the product reads: `load_dataset(kind, root, **options)`
for VerSe, TotalSegmentator, any folder of labelmaps and the synthetic families. Every loader
returns a `data.folder.ShapeDataset`. `load_usable_dataset` is the training and evaluation
commands' entry: it reports every dropped entry, the loader's notes, and one summary line
(`dropped_summary`: how many were kept, and how many were dropped for each kind of reason)."""
from __future__ import annotations

import re
from collections import Counter

from PatchSamplerLib.data.folder import ShapeDataset, ShapeItem, load_folder
from PatchSamplerLib.data.synthetic import make_shape
from PatchSamplerLib.data.totalsegmentator import load_totalsegmentator
from PatchSamplerLib.data.verse import load_verse
from PatchSamplerLib.progress import tracked

DATASET_KINDS = ("verse", "totalsegmentator", "folder", "synthetic-vertebra", "synthetic-kidney")

# The kind of a dropped entry's reason (the loaders' texts), for the summary line. A reason about
# the whole file or folder has one kind (the first match); the shape filters' reasons, joined by
# "; " when several apply, count under each of theirs. Anything else is "other".
ENTRY_KINDS = (
    (r"file missing", "file missing"),
    (r"several files are ", "several files for one structure"),
    (r"no segmentations/ folder and no multi-label file", "no segmentations/ folder or multi-label file"),
    (r"a subject's segmentations/ folder", "a subject's segmentations/ folder as the dataset folder"),
    (r"a binary mask, not a TotalSegmentator multi-label file", "binary mask read as a multi-label file"),
    (r"outside the classes", "labels outside the class map"),
    (r"not in the TotalSegmentator class map", "structure not in the class map"),
    (r"duplicate of ", "duplicate scan"),
    (r"no vertebra label of ", "no vertebra label"),
    (r"holds several labels", "several labels in one file (--label L chooses one)"),
    (r"^label \d+ is not in ", "label not in the file"),
    (r"-D; a 3-D labelmap is needed|components per voxel|not a 3-D single-component", "not a 3-D labelmap"),
    (r"incomplete|cannot read|file not found|non-integer values|is a folder, not a file", "unreadable"),
    (r"neither left nor right", "no side in its name"),
)
FILTER_KINDS = (
    (r"\bempty\b", "empty"),
    (r"connected components", "several components"),
    (r"touches the volume border|cut by the scan border", "touching the border"),
    (r"larger than the crop", "larger than the crop"),
)
TOO_SMALL = re.compile(r"\b\d+ voxels < (\d+) at ([\d.]+(?: x [\d.]+)* mm)")


def load_synthetic(family: str, count: int, seed: int = 0, scale: float = 1.0) -> ShapeDataset:
    """`count` synthetic shapes of `family` ("vertebra" / "kidney"); each is its own subject.

    Shapes already come centred on their family grid (128 x 120 x 90 at 1 mm, 85 x 85 x 110
    at 1.5 mm, times `scale`), so no crop is applied."""
    if int(count) < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    items = []
    for index in tracked(range(int(count)), "synthetic shapes", unit="shapes"):
        name = f"synthetic-{family}-s{seed}-{index:05d}"
        items.append(ShapeItem(make_shape(family, seed, index, scale), name, name))
    return ShapeDataset(items)


def load_dataset(kind: str, root=None, **options) -> ShapeDataset:
    """Load a dataset by kind: the one entry point for training and evaluation code.

    kind: "verse" (`verse.load_verse`), "totalsegmentator"
    (`totalsegmentator.load_totalsegmentator`), "folder" (`load_folder`): `root` is the
    dataset folder; "synthetic-vertebra" / "synthetic-kidney" (`load_synthetic`): no root,
    options count, seed, scale. Other options go to the loader.
    """
    if kind in ("synthetic-vertebra", "synthetic-kidney"):
        if root is not None:
            raise ValueError(f"{kind} is generated, it takes no dataset folder (got {root})")
        if "count" not in options:
            raise ValueError(f"{kind} needs count=<number of shapes>")
        return load_synthetic(kind.split("-", 1)[1], **options)
    if kind not in DATASET_KINDS:
        raise ValueError(f"unknown dataset kind {kind!r}; choose one of {', '.join(DATASET_KINDS)}")
    if root is None:
        raise ValueError(f"dataset kind {kind!r} needs the dataset folder (root)")
    if kind == "verse":
        return load_verse(root, **options)
    if kind == "totalsegmentator":
        return load_totalsegmentator(root, **options)
    return load_folder(root, **options)


def reason_kinds(reason: str) -> list[str]:
    """The kinds of one dropped entry's reason (`ENTRY_KINDS`, `FILTER_KINDS`, "too small (< N voxels
    at S mm)"), e.g. ["several components", "touching the border"]; ["other"] if none is known."""
    for pattern, kind in ENTRY_KINDS:
        if re.search(pattern, reason):
            return [kind]
    kinds = [kind for pattern, kind in FILTER_KINDS if re.search(pattern, reason)]
    small = TOO_SMALL.search(reason)
    if small:
        kinds.append(f"too small (< {int(small.group(1)):,} voxels at {small.group(2)})")
    return kinds or ["other"]


def dropped_counts(dropped) -> str:
    """"dropped 14: 8 file missing, 4 too small (< 25,000 voxels at 1.5 mm), 2 touching the
    border" for a list of `Dropped`: the entries per kind of reason (`reason_kinds`), most
    frequent first; "dropped none" for an empty list."""
    counts = Counter(kind for _, reason in dropped for kind in reason_kinds(reason))
    if not counts:
        return "dropped none"
    shown = ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items(), key=lambda c: (-c[1], c[0])))
    several = " (an entry dropped for several reasons counts under each)" if sum(counts.values()) > len(dropped) else ""
    return f"dropped {len(dropped)}: {shown}{several}"


def dropped_summary(dataset: ShapeDataset) -> str:
    """One line: the shapes kept and the entries dropped per kind of reason (`dropped_counts`),
    e.g. "kept 6 shapes, dropped 14: 8 file missing, 4 too small (< 25,000 voxels at 1.5 mm),
    2 touching the border"."""
    return f"kept {len(dataset)} shape{'' if len(dataset) == 1 else 's'}, {dropped_counts(dataset.dropped)}"


def load_usable_dataset(folder, kind: str = "folder", log=print, **options) -> ShapeDataset:
    """The dataset at `folder` in layout `kind` (`load_dataset`: axes reoriented to LPS, the
    layout's filters and crops; `options` go to the loader, e.g. structure="vertebra",
    levels="L1-L5" for TotalSegmentator, label=L for a folder of multi-label files); each file or
    structure that cannot be used is reported through `log` ("skipped PATH: REASON"), then the
    loader's notes ("warning: ...") and the summary line (`dropped_summary`). ValueError, ending
    with the summary, when nothing is usable."""
    dataset = load_dataset(kind, folder, **options)
    for path, reason in dataset.dropped:
        log(f"skipped {path}: {reason}")
    for note in dataset.notes:
        log(f"warning: {note}")
    if not dataset:
        shown = "".join(f", {k}={v}" for k, v in options.items())
        raise ValueError(f"no usable labelmap (.nii, .nii.gz, .nrrd) in {folder} (layout {kind}{shown}); "
                         f"{dropped_counts(dataset.dropped)}")
    log(dropped_summary(dataset))
    return dataset
