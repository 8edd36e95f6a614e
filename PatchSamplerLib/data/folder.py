"""Dataset items, the geometry shared by the loaders, and the loader of any folder of labelmaps.

Every loader returns a `ShapeDataset`: a list of `ShapeItem` (a `BinaryVolume` with the
subject it comes from, for grouped splits) that also carries `dropped`, the list of
`Dropped(path, reason)` records of the inputs it rejected and why.

Geometry (library convention, see `volume.py`): arrays are (i, j, k) = (x, y, z), world
coordinates are LPS millimetres. Two operations are shared by all loaders:

- **Reorientation to LPS axes** (`orientation.reorient_to_lps`, the frame of every run): real
  scans come in any axis order and sign (VerSe: "NOT in the same orientation"). The array axes
  are permuted and flipped so that
  i, j, k point as closely as possible to +L, +P, +S (direction ~ identity), which is also the
  axis convention of the synthetic families (x left-right, y anterior -> posterior, z inferior
  -> superior). This only reorders voxels: no interpolation, the world position of every voxel
  is unchanged, so a crop size (x, y, z) means the same anatomy in every item.
- **Resampling near the foreground** (`resample_window`, `resample_near_foreground`): a mask
  (or a window of a scan holding one label) resampled to an isotropic spacing as
  `volume.resample_isotropic` would resample the whole grid (linear interpolation of 0/1,
  threshold 0.5, physical box kept, SimpleITK), computed only on the output voxels that can be
  foreground, with whether it touches the full resampled grid's border.
- **Centring and cropping** (`crop_centred`): the window of the requested size whose centre is
  the nearest voxel position to the centre of the foreground bounding box; the window may
  reach outside the scan (padded with background). The origin moves to the window's first
  voxel, so world positions are preserved exactly. A foreground larger than the window is an
  error (`VolumeError`), never silently cut.

`data.loaders.load_dataset(kind, root, **options)` dispatches to the loaders.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable, NamedTuple, Sequence

import numpy as np

from PatchSamplerLib.orientation import to_anatomical
from PatchSamplerLib.progress import tracked
from PatchSamplerLib.structures import side_in_name
from PatchSamplerLib.volume import (LABELMAP_SUFFIXES, BinaryVolume, VolumeError, foreground_bbox, index_to_world,
                                    read_labelmap, resample_isotropic, to_sitk_image)


# ---------------------------------------------------------------- items
@dataclass
class ShapeItem:
    """One training / evaluation shape.

    volume: the binary mask with its geometry (arrays (X, Y, Z), world LPS mm).
    subject: the patient / subject id; items of one subject must stay in one split.
    name: unique, human-readable id of the item (e.g. ``sub-verse500_dir-ax_L1``).
    label: the label value the mask was taken from (VerSe vertebra label), else None.
    source: the file the item was read from ("" for synthetic shapes).
    """
    volume: BinaryVolume
    subject: str
    name: str
    label: int | None = None
    source: str = ""


class Dropped(NamedTuple):
    """An input a loader rejected: the file (path) and why (reason, one line)."""
    path: str
    reason: str


class ShapeDataset(list):
    """A list of `ShapeItem` that also remembers what was dropped (`.dropped`) and the loader's
    warnings about the dataset as a whole (`.notes`, one line each, e.g. a class map that may
    not be the files')."""

    def __init__(self, items: Iterable[ShapeItem] = (), dropped: Iterable[Dropped] = (),
                 notes: Iterable[str] = ()):
        super().__init__(items)
        self.dropped: list[Dropped] = list(dropped)
        self.notes: list[str] = list(notes)

    @property
    def subjects(self) -> list[str]:
        """The subject of every item, in item order (input of `splits.cross_validation_folds`)."""
        return [item.subject for item in self]

    def __repr__(self) -> str:
        return (f"ShapeDataset({len(self)} items, {len(set(self.subjects))} subjects, "
                f"{len(self.dropped)} dropped)")


def item_on_side(item: ShapeItem, side: str) -> ShapeItem | None:
    """`item` (LPS axes, as every loader gives it) on `side` ("left" / "right"): mirrored across
    the sagittal plane (its array flipped along L) when its name or file says the other side
    (``kidney_right``, `structures.side_in_name`), as it is when it says `side`, None when it
    says neither. For a prior trained on one side (`method.sides`)."""
    said = side_in_name(item.name) or side_in_name(Path(item.source).name if item.source else None)
    if said is None or said == side:
        return None if said is None else item
    return replace(item, volume=item.volume.mirrored_left_right())


def to_one_side(dataset: ShapeDataset, side: str) -> ShapeDataset:
    """The items of `dataset` on one side (`item_on_side`); an item whose name says no side is
    dropped with the reason. Raises ValueError for a side that is not left / right."""
    if side not in ("left", "right"):
        raise ValueError(f"unknown side {side!r}; choose left or right")
    items, dropped = [], list(dataset.dropped)
    for item in dataset:
        kept = item_on_side(item, side)
        if kept is None:
            dropped.append(Dropped(item.source or item.name, "its name says neither left nor right (--one-side)"))
        else:
            items.append(kept)
    return ShapeDataset(items, dropped, dataset.notes)


# ---------------------------------------------------------------- reorientation
def reorient_volume(volume: BinaryVolume) -> BinaryVolume:
    """`volume` on the anatomical (LPS-axes) grid, `orientation.to_anatomical`."""
    return to_anatomical(volume)[0]


# ---------------------------------------------------------------- resampling near the foreground
def isotropic_grid(volume: BinaryVolume, spacing_mm: float, offset: Sequence[int] = (0, 0, 0),
                   shape: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(size (3,) int, origin (3,) world mm) of `volume.resample_isotropic`'s output grid for
    the full grid of `shape` voxels (default `volume.shape`) of which `volume` is the block
    starting at voxel `offset` (same spacing and direction)."""
    shape = volume.shape if shape is None else shape
    size = np.array([max(1, int(round(n * s / spacing_mm))) for n, s in zip(shape, volume.spacing)])
    corner = index_to_world(-np.asarray(offset, float) - 0.5, volume)
    return size, corner + volume.direction @ np.full(3, spacing_mm / 2.0)


def _on_border(mask: np.ndarray, lo: np.ndarray, hi: np.ndarray, size: np.ndarray) -> bool:
    """Whether a window [lo, hi] of a grid of `size` has foreground in the grid's outer layer."""
    for axis in range(3):
        planes = np.moveaxis(mask, axis, 0)
        if (lo[axis] == 0 and planes[0].any()) or (hi[axis] == size[axis] - 1 and planes[-1].any()):
            return True
    return False


def resample_window(window: BinaryVolume, offset: Sequence[int], shape: Sequence[int],
                    spacing_mm: float) -> tuple[BinaryVolume, bool]:
    """Resample a mask to isotropic `spacing_mm` near its foreground, when the mask is a window
    of a larger grid: `window` is the block of a (X, Y, Z) = `shape` grid (same spacing and
    direction) starting at voxel `offset`, and holds all of the grid's foreground with 2
    voxels of margin (or up to the grid's edge).

    Returns (resampled, at_border): a block of `volume.resample_isotropic(full grid, spacing_mm)`
    (same spacing mm, direction and voxel positions) holding every foreground voxel, and whether
    the foreground touches that full resampled grid's outermost voxel layer. A window already
    at `spacing_mm` is returned as it is (at_border: its foreground reaches the full grid's
    edge). VolumeError for an empty mask."""
    import SimpleITK as sitk
    offset, shape = np.asarray(offset, int), np.asarray(shape, int)
    lo, hi = foreground_bbox(window.mask)
    if np.allclose(window.spacing, spacing_mm, rtol=1e-6, atol=0.0):
        return window, bbox_touches_border(lo + offset, hi + offset, shape)
    size, origin = isotropic_grid(window, spacing_mm, offset, shape)
    ratio = np.asarray(window.spacing) / spacing_mm
    lo_full, hi_full = lo + offset, hi + offset
    # output voxel m sits at input index (m + 0.5) / ratio - 0.5: non-zero only within (lo - 1, hi + 1)
    out_lo = np.maximum(np.floor((lo_full - 0.5) * ratio - 0.5).astype(int) - 1, 0)
    out_hi = np.minimum(np.ceil((hi_full + 1.5) * ratio - 0.5).astype(int) + 1, size - 1)
    in_lo, in_hi = np.maximum(lo - 2, 0), np.minimum(hi + 2, np.array(window.shape) - 1)
    block = window.mask[tuple(slice(a, b + 1) for a, b in zip(in_lo, in_hi))]
    source = BinaryVolume(block, window.spacing, index_to_world(in_lo, window), window.direction)
    out_origin = origin + window.direction @ (out_lo * spacing_mm)
    out = sitk.Resample(to_sitk_image(block, source, np.float32), [int(n) for n in out_hi - out_lo + 1],
                        sitk.Transform(), sitk.sitkLinear, tuple(out_origin), (spacing_mm,) * 3,
                        tuple(window.direction.reshape(-1)), 0.0, sitk.sitkFloat32)
    mask = sitk.GetArrayFromImage(out).transpose(2, 1, 0) >= 0.5
    resampled = BinaryVolume(mask, (spacing_mm,) * 3, out_origin, window.direction.copy())
    return resampled, _on_border(mask, out_lo, out_hi, size)


def resample_near_foreground(volume: BinaryVolume, spacing_mm: float) -> tuple[BinaryVolume, bool]:
    """`volume.resample_isotropic(volume, spacing_mm)`, computed only on the output voxels that
    can be foreground, and whether the foreground touches the full output grid's border.

    Returns (window, at_border): the window is a block of the full output grid (same spacing,
    direction and voxel positions) holding every foreground voxel, so centring, cropping,
    counts and components are those of the full resampling, without resampling a whole CT
    grid per structure. A volume already at `spacing_mm` is returned as it is. VolumeError for
    an empty mask."""
    return resample_window(volume, np.zeros(3, int), volume.shape, spacing_mm)


# ---------------------------------------------------------------- centring and cropping
def check_crop_size(size: Sequence[int]) -> np.ndarray:
    """(3,) int array of a crop size (x, y, z) in voxels; raises ValueError if not 3 positives."""
    arr = np.asarray(size)
    if arr.shape != (3,) or arr.dtype.kind not in "iuf" or not np.all(arr == np.round(arr)) \
            or np.any(arr < 1):
        raise ValueError(f"a crop size is 3 positive voxel counts (x, y, z), got {size!r}")
    return arr.astype(int)


def centred_window_start(lo: np.ndarray, hi: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """(3,) int first voxel of the `size` window centred on the box [lo, hi] (inclusive indices).

    The window centre start + (size - 1) / 2 is the nearest reachable position to the box
    centre (lo + hi) / 2 (ties rounded up). A box no larger than the window lies inside it."""
    size = check_crop_size(size)
    centre = (np.asarray(lo, float) + np.asarray(hi, float)) / 2.0
    return np.floor(centre - (size - 1) / 2.0 + 0.5).astype(int)


def copy_window(array: np.ndarray, start: Sequence[int], size: Sequence[int], fill=0) -> np.ndarray:
    """The `size` block of `array` starting at index `start`; outside the array: `fill`."""
    size = check_crop_size(size)
    start = np.asarray(start, int)
    out = np.full(tuple(size), fill, dtype=array.dtype)
    src_lo = np.maximum(start, 0)
    src_hi = np.minimum(start + size, array.shape)
    if np.any(src_hi <= src_lo):
        return out
    dst_lo, dst_hi = src_lo - start, src_hi - start
    out[tuple(slice(a, b) for a, b in zip(dst_lo, dst_hi))] = \
        array[tuple(slice(a, b) for a, b in zip(src_lo, src_hi))]
    return out


def bbox_touches_border(lo: np.ndarray, hi: np.ndarray, shape: Sequence[int]) -> bool:
    """Whether an inclusive foreground box reaches the outermost voxel layer of a grid."""
    return bool(np.any(np.asarray(lo) <= 0) or np.any(np.asarray(hi) >= np.asarray(shape) - 1))


def check_fits(lo: np.ndarray, hi: np.ndarray, size: Sequence[int], spacing) -> None:
    """Raise VolumeError if the inclusive box [lo, hi] is larger than a crop of `size` voxels."""
    extent = np.asarray(hi) - np.asarray(lo) + 1
    size = check_crop_size(size)
    if np.any(extent > size):
        mm = extent * np.asarray(spacing, float)
        raise VolumeError(f"foreground extent {tuple(int(e) for e in extent)} voxels "
                          f"({', '.join(f'{m:.1f}' for m in mm)} mm) is larger than the crop "
                          f"{tuple(int(s) for s in size)}")


def crop_centred(volume: BinaryVolume, size: Sequence[int]) -> BinaryVolume:
    """Centre the foreground's bounding box in a `size` (x, y, z) voxel window (crop / pad).

    Spacing and direction are kept; the origin moves to the window's first voxel, so every
    foreground voxel keeps its world position. Raises VolumeError on an empty mask or a
    foreground larger than the window."""
    lo, hi = foreground_bbox(volume.mask)
    check_fits(lo, hi, size, volume.spacing)
    start = centred_window_start(lo, hi, size)
    mask = copy_window(volume.mask, start, size, fill=False)
    return BinaryVolume(mask, volume.spacing, index_to_world(start, volume),
                        volume.direction.copy())


# ---------------------------------------------------------------- files
def check_dataset_root(root) -> Path:
    """The dataset folder as a Path; FileNotFoundError / NotADirectoryError with its name."""
    path = Path(os.fspath(root)).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"dataset folder not found: {path}")
    if not path.is_dir():
        raise NotADirectoryError(f"dataset root must be a folder, got a file: {path}")
    return path


def check_3d_labelmap(image, path) -> None:
    """Raise VolumeError, with `volume.read_labelmap`'s messages, unless the SimpleITK `image` read
    from `path` is 3-D with one component per voxel ("PATH is 4-D; a 3-D labelmap is needed")."""
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise VolumeError(f"{path} has {image.GetNumberOfComponentsPerPixel()} components per voxel "
                          "(an overlapping multi-layer segmentation?); export a single-layer labelmap")
    if image.GetDimension() != 3:
        raise VolumeError(f"{path} is {image.GetDimension()}-D; a 3-D labelmap is needed")


def labelmap_stem(name: str) -> str:
    """File name without its labelmap suffix (longest match: ``a.seg.nrrd`` -> ``a``)."""
    lower = name.lower()
    for suffix in sorted(LABELMAP_SUFFIXES, key=len, reverse=True):
        if lower.endswith(suffix):
            return name[: len(name) - len(suffix)]
    return name


def find_labelmaps(root, recursive: bool = True) -> list[Path]:
    """Sorted labelmap files (NIfTI / NRRD / MetaImage) in `root`, hidden files skipped.

    Raises FileNotFoundError if the folder is missing or holds no labelmap file."""
    root = check_dataset_root(root)
    candidates = root.rglob("*") if recursive else root.iterdir()
    files = sorted(p for p in candidates
                   if p.is_file() and p.name.lower().endswith(LABELMAP_SUFFIXES)
                   and not any(part.startswith(".") for part in p.relative_to(root).parts))
    if not files:
        raise FileNotFoundError(f"no labelmap files ({', '.join(LABELMAP_SUFFIXES)}) in {root}"
                                + (" or its subfolders" if recursive else ""))
    return files


def folder_subject(path: Path, root: Path) -> str:
    """Subject of a file in a folder dataset: its top subfolder, or its stem for top-level files."""
    rel = path.relative_to(root)
    return rel.parts[0] if len(rel.parts) > 1 else labelmap_stem(rel.name)


def load_folder(root, *, label: int | None = None, crop_size: Sequence[int] | None = None,
                spacing_mm: float | None = None, reorient: bool = True,
                recursive: bool = True) -> ShapeDataset:
    """Every binary labelmap in a folder, one item per file.

    label: the label to take from multi-label files (None: each file must hold one label).
    spacing_mm: resample to this isotropic spacing (None: keep the file's grid).
    crop_size: centre and crop / pad to (x, y, z) voxels (None: keep the whole grid).
    reorient: reorder axes to LPS (see the module docstring).
    Subjects: files in subfolders belong to the subject named by their top subfolder
    (``root/patient7/liver.nii.gz`` -> ``patient7``); top-level files are their own subject.
    Unreadable, empty, multi-label (without `label`) or too-large masks are dropped with the
    reason in `.dropped`.
    """
    root = check_dataset_root(root)
    items, dropped = [], []
    for path in tracked(find_labelmaps(root, recursive), "reading labelmaps", unit="files"):
        try:
            volume = read_labelmap(path, label)
            if reorient:
                volume = reorient_volume(volume)
            if spacing_mm is not None:
                volume = resample_isotropic(volume, spacing_mm)
            if crop_size is not None:
                volume = crop_centred(volume, crop_size)
        except VolumeError as exc:
            dropped.append(Dropped(str(path), str(exc)))
            continue
        name = labelmap_stem(str(path.relative_to(root)).replace(os.sep, "/"))
        items.append(ShapeItem(volume, folder_subject(path, root), name, label, str(path)))
    return ShapeDataset(items, dropped)
