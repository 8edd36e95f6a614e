"""One entry point to every dataset the product reads: `load_dataset(kind, root, **options)`
for VerSe, TotalSegmentator, any folder of labelmaps and the synthetic families. Every loader
returns a `data.folder.ShapeDataset`."""
from __future__ import annotations

from PatchSamplerLib.data.folder import ShapeDataset, ShapeItem, load_folder
from PatchSamplerLib.data.synthetic import make_shape
from PatchSamplerLib.data.totalsegmentator import load_totalsegmentator
from PatchSamplerLib.data.verse import load_verse
from PatchSamplerLib.progress import tracked

DATASET_KINDS = ("verse", "totalsegmentator", "folder", "synthetic-vertebra", "synthetic-kidney")


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


def load_usable_dataset(folder, kind: str = "folder", log=print, **options) -> ShapeDataset:
    """The dataset at `folder` in layout `kind` (`load_dataset`: axes reoriented to LPS, the
    layout's filters and crops; `options` go to the loader, e.g. structure="vertebra",
    levels="L1-L5" for TotalSegmentator); each file or structure that cannot be used is
    reported through `log` and skipped. ValueError when nothing is usable."""
    dataset = load_dataset(kind, folder, **options)
    for path, reason in dataset.dropped:
        log(f"skipped {path}: {reason}")
    if not dataset:
        shown = "".join(f", {k}={v}" for k, v in options.items())
        raise ValueError(f"no usable labelmap (.nii, .nii.gz, .nrrd) in {folder} (layout {kind}{shown})")
    return dataset
