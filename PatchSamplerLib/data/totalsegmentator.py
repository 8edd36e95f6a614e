"""TotalSegmentator outputs -> centred kidney or vertebra masks [T §4.2].

Layouts. The root holds one entry per subject, in either form (a subject folder with both is
read from its ``segmentations/`` folder; hidden entries are skipped):

1. One file per structure: the TotalSegmentator dataset release and the default output of
   ``TotalSegmentator -i ct.nii.gz -o <subject>/segmentations``::

       <root>/s0000/ct.nii.gz                              (not read, need not exist)
       <root>/s0000/segmentations/kidney_left.nii.gz
       <root>/s0000/segmentations/vertebrae_L1.nii.gz

2. One multi-label file (``TotalSegmentator ... --ml``): ``<root>/<subject>/segmentations.nii``
   or ``.nii.gz``, or ``<root>/<subject>.nii`` / ``.nii.gz`` directly in the root (subject = the
   file name without its suffix). With ``--ml`` TotalSegmentator saves the label image at the
   ``-o`` path itself (wasserth/TotalSegmentator, totalsegmentator/nnunet.py,
   ``nnUNet_predict_image``); nibabel adds ``.nii`` to a path without extension, which is why the
   3D Slicer extension (lassoan/SlicerTotalSegmentator, TotalSegmentator/TotalSegmentator.py)
   runs ``-o <tmp>/segmentation --ml`` and reads ``<tmp>/segmentation.nii``. A structure is the
   voxels equal to its class number (`CLASS_MAPS`).

Class numbers (`CLASS_MAPS`, copied from ``class_map`` in wasserth/TotalSegmentator,
totalsegmentator/map_to_binary.py). ``"total"`` is TotalSegmentator v2's default task:
kidney_right 2, kidney_left 3, vertebrae_S1 26, vertebrae_L5 27 ... vertebrae_L1 31,
vertebrae_T12 32 ... vertebrae_T1 43, vertebrae_C7 44 ... vertebrae_C1 50. ``"total_v1"`` is
the v1 order (TotalSegmentator v1, or v2 run with ``--v1_order``): kidneys 2 / 3, vertebrae_L5
18 ... vertebrae_L1 22, vertebrae_T12 23 ... vertebrae_T1 34, vertebrae_C7 35 ... vertebrae_C1
41, no S1. A NIfTI file does not say which order it uses: pass ``class_map="total_v1"`` for v1
files.

Structures (`STRUCTURE_RULES`): ``"kidney"`` (kidney_left, kidney_right) or ``"vertebra"`` (the
levels chosen, default T10-L5: `parse_levels`). Each mask (non-zero / its class number =
foreground) is reoriented to LPS axes (`orientation.reorient_to_lps`), so the crop's last axis
runs inferior-superior, resampled to the family's isotropic spacing (`volume.resample_isotropic`:
linear interpolation of 0/1, threshold 0.5, physical box kept; computed only near the foreground,
`resample_near_foreground`) and then filtered, all on the resampled grid, as the thesis does:

- empty: no foreground voxel (in the file, or left after resampling);
- the rules of `data.filters` (shared with VerSe): more than one connected component, with
  **26-connectivity** (`connectivity=6` or 18 selects the stricter rules); touching the volume
  border: a foreground voxel in the outermost voxel layer of the resampled grid (resampling
  keeps the physical box, so a mask that fills voxels of the file's border layer normally
  still does; a lone border voxel can vanish in the 0.5 threshold); too small: kidneys under
  25,000 voxels at 1.5 mm (84.4 ml, the thesis's rule), vertebrae under 5,000 voxels at 1 mm
  (5 ml, this library's assumption: `data.filters` gives the reasoning; for C levels check the
  report of dropped shapes and lower `min_voxels` if complete ones are dropped).
A mask failing several rules gets all their reasons, joined by "; ". A kept mask is centred and
cropped (`folder.crop_centred`) to the family grid: 85 x 85 x 110 at 1.5 mm for kidneys,
128 x 120 x 90 at 1 mm for vertebrae (VerSe's); one larger than that is dropped too. Every
dropped mask is reported in `.dropped` with its reason; in a multi-label file the reason starts
with the structure and its class number.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator, NamedTuple, Sequence

import numpy as np

from PatchSamplerLib.data.filters import (CONNECTIVITY, EMPTY, KIDNEY_MIN_VOXELS, VERTEBRA_MIN_VOXELS,
                                          check_connectivity, rejection_reasons, touches_border)
from PatchSamplerLib.data.folder import (Dropped, ShapeDataset, ShapeItem, check_crop_size, check_dataset_root,
                                         crop_centred, reorient_volume)
from PatchSamplerLib.data.verse import read_label_grid
from PatchSamplerLib.progress import tracked
from PatchSamplerLib.volume import (BinaryVolume, VolumeError, foreground_bbox, index_to_world, read_nonzero_mask,
                                    to_sitk_image)


# ---------------------------------------------------------------- structures and class numbers
@dataclass(frozen=True)
class StructureRules:
    """How one family's masks are resampled, filtered and cropped (module docstring).

    spacing_mm: isotropic target spacing (mm); min_voxels: smallest kept mask, counted at that
    spacing; crop_size: (x, y, z) voxels of the kept mask's grid; connectivity: 6, 18 or 26;
    reorient: reorder axes to LPS first."""
    spacing_mm: float
    min_voxels: int
    crop_size: tuple[int, int, int]
    connectivity: int = CONNECTIVITY
    reorient: bool = True


STRUCTURE_RULES = {"kidney": StructureRules(1.5, KIDNEY_MIN_VOXELS, (85, 85, 110)),
                   "vertebra": StructureRules(1.0, VERTEBRA_MIN_VOXELS, (128, 120, 90))}
KIDNEYS = ("kidney_left", "kidney_right")
# kept for callers of the kidney-only loader
CROP_SIZE, SPACING_MM, MIN_VOXELS = (85, 85, 110), 1.5, KIDNEY_MIN_VOXELS
VERTEBRA_LEVELS = tuple([f"C{i}" for i in range(1, 8)] + [f"T{i}" for i in range(1, 13)]
                        + [f"L{i}" for i in range(1, 6)] + ["S1"])          # cranial -> caudal
DEFAULT_LEVELS = "T10-L5"
_CAUDAL_FIRST = [f"vertebrae_{level}" for level in reversed(VERTEBRA_LEVELS)]  # S1, L5, ..., C1
CLASS_MAPS = {   # map_to_binary.py: "total" S1 = 26 ... C1 = 50; "total_v1" L5 = 18 ... C1 = 41
    "total": {"kidney_right": 2, "kidney_left": 3, **{n: 26 + i for i, n in enumerate(_CAUDAL_FIRST)}},
    "total_v1": {"kidney_right": 2, "kidney_left": 3, **{n: 18 + i for i, n in enumerate(_CAUDAL_FIRST[1:])}},
}


def _level_index(token: str) -> int:
    """Index in VERTEBRA_LEVELS of "L1", "l1" or "vertebrae_L1"; ValueError otherwise."""
    level = token.strip()
    if level.lower().startswith("vertebrae_"):
        level = level[len("vertebrae_"):]
    if level.upper() not in VERTEBRA_LEVELS:
        raise ValueError(f"unknown vertebra level {token.strip()!r}: TotalSegmentator's levels are "
                         "C1-C7, T1-T12, L1-L5 and S1 (e.g. 'T12,L1' or 'T10-L5')")
    return VERTEBRA_LEVELS.index(level.upper())


def parse_levels(levels: str | Sequence[str] = DEFAULT_LEVELS) -> tuple[str, ...]:
    """TotalSegmentator structure names of vertebra levels, cranial to caudal, no repeats.

    levels: comma-separated levels or ranges, or a sequence of them: "T12,L1", "L1-L5",
    "T10-L5" (ranges cross regions: T10, T11, T12, L1, ..., L5; either direction), names
    with their prefix ("vertebrae_L1") too. ValueError for an unknown level or an empty choice."""
    parts = levels.split(",") if isinstance(levels, str) else list(levels)
    chosen = set()
    for part in (p for p in parts if p.strip()):
        ends = [_level_index(token) for token in part.split("-")]
        if len(ends) > 2:
            raise ValueError(f"a level range has two ends (e.g. 'L1-L5'), got {part.strip()!r}")
        chosen.update(range(min(ends), max(ends) + 1))
    if not chosen:
        raise ValueError(f"no vertebra level chosen in {levels!r} (e.g. 'T10-L5')")
    return tuple(f"vertebrae_{VERTEBRA_LEVELS[i]}" for i in sorted(chosen))


def check_structure(structure: str) -> str:
    """`structure` if it is a key of STRUCTURE_RULES, else ValueError naming the choices."""
    if structure not in STRUCTURE_RULES:
        raise ValueError(f"unknown structure {structure!r}; choose one of {', '.join(STRUCTURE_RULES)}")
    return structure


def structure_names(structure: str, levels=None, structures: Sequence[str] | None = None) -> tuple[str, ...]:
    """TotalSegmentator names to load: `structures` if given, else the kidneys or the vertebrae
    of `levels` (default T10-L5). ValueError for an unknown structure or levels with kidneys."""
    check_structure(structure)
    if levels is not None and structure != "vertebra":
        raise ValueError(f"vertebra levels ({levels!r}) only apply to structure 'vertebra', not {structure!r}")
    if structures is not None:
        return tuple(structures)
    return KIDNEYS if structure == "kidney" else parse_levels(DEFAULT_LEVELS if levels is None else levels)


def class_numbers(class_map: str = "total") -> dict[str, int]:
    """{structure name: label value} of a TotalSegmentator class map ("total" or "total_v1")."""
    if class_map not in CLASS_MAPS:
        raise ValueError(f"unknown TotalSegmentator class map {class_map!r}; choose one of {', '.join(CLASS_MAPS)}")
    return CLASS_MAPS[class_map]


# ---------------------------------------------------------------- finding the subjects
@dataclass(frozen=True)
class Subject:
    """One subject: its name and either its ``segmentations/`` folder or its multi-label file."""
    name: str
    path: Path
    multilabel: bool


MULTILABEL_NAMES = ("segmentations.nii.gz", "segmentations.nii")


def nifti_stem(name: str) -> str | None:
    """File name without ``.nii.gz`` / ``.nii`` (any case); None for other files."""
    for suffix in (".nii.gz", ".nii"):
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return None


def _subject_of(entry: Path) -> Subject | None:
    if entry.is_dir():
        if (entry / "segmentations").is_dir():
            return Subject(entry.name, entry / "segmentations", False)
        files = [entry / n for n in MULTILABEL_NAMES if (entry / n).is_file()]
        return Subject(entry.name, files[0], True) if files else None
    stem = nifti_stem(entry.name)
    return Subject(stem, entry, True) if stem and entry.is_file() else None


def find_subjects(root) -> list[Subject]:
    """Every subject under `root` (module docstring, layouts 1 and 2), sorted by name.

    Raises FileNotFoundError if the folder is missing or holds no subject."""
    root = check_dataset_root(root)
    found = [_subject_of(p) for p in sorted(root.iterdir()) if not p.name.startswith(".")]
    subjects = [s for s in found if s is not None]
    if not subjects:
        raise FileNotFoundError(f"no TotalSegmentator subjects in {root}: expected <subject>/segmentations/"
                                "<structure>.nii.gz files, or multi-label (--ml) files <subject>/segmentations.nii"
                                "[.gz] or <subject>.nii[.gz]")
    return subjects


class Candidate(NamedTuple):
    """One structure of one subject before filtering: the mask, or why there is none."""
    name: str
    path: str
    label: int | None                 # class number in a multi-label file, else None
    volume: BinaryVolume | None
    reason: str = ""

    def dropped(self, reason: str) -> Dropped:
        """The report entry; a multi-label file's reason names the structure and its label."""
        prefix = f"{self.name} (label {self.label}): " if self.label is not None else ""
        return Dropped(self.path, prefix + reason)


def _structure_files(subject: Subject, names: Sequence[str]) -> Iterator[Candidate]:
    for name in names:
        path = subject.path / f"{name}.nii.gz"
        if not path.is_file():
            yield Candidate(name, str(path), None, None, "file missing")
            continue
        try:
            yield Candidate(name, str(path), None, read_nonzero_mask(path))
        except VolumeError as exc:
            yield Candidate(name, str(path), None, None, str(exc))


def _multilabel_structures(subject: Subject, names: Sequence[str], numbers: dict[str, int]) -> Iterator[Candidate]:
    path = str(subject.path)
    try:
        grid = read_label_grid(subject.path, reorient=False)        # reoriented per mask, as files are
    except VolumeError as exc:
        yield Candidate("", path, None, None, str(exc))
        return
    for name in names:
        if name not in numbers:
            yield Candidate(name, path, None, None, f"{name}: not in the TotalSegmentator class map")
            continue
        mask = grid.labels == numbers[name]
        yield Candidate(name, path, numbers[name], BinaryVolume(mask, grid.spacing, grid.origin, grid.direction))


def subject_masks(subject: Subject, names: Sequence[str], numbers: dict[str, int]) -> Iterator[Candidate]:
    """The raw mask (file geometry, not reoriented) of each structure `names` of a subject."""
    if subject.multilabel:
        return _multilabel_structures(subject, names, numbers)
    return _structure_files(subject, names)


# ---------------------------------------------------------------- resampling near the foreground
def isotropic_grid(volume: BinaryVolume, spacing_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """(size (3,) int, origin (3,) world mm) of `volume.resample_isotropic`'s output grid."""
    size = np.array([max(1, int(round(n * s / spacing_mm))) for n, s in zip(volume.shape, volume.spacing)])
    corner = index_to_world(np.full(3, -0.5), volume)
    return size, corner + volume.direction @ np.full(3, spacing_mm / 2.0)


def _on_border(mask: np.ndarray, lo: np.ndarray, hi: np.ndarray, size: np.ndarray) -> bool:
    """Whether a window [lo, hi] of a grid of `size` has foreground in the grid's outer layer."""
    for axis in range(3):
        planes = np.moveaxis(mask, axis, 0)
        if (lo[axis] == 0 and planes[0].any()) or (hi[axis] == size[axis] - 1 and planes[-1].any()):
            return True
    return False


def resample_near_foreground(volume: BinaryVolume, spacing_mm: float) -> tuple[BinaryVolume, bool]:
    """`volume.resample_isotropic(volume, spacing_mm)`, computed only on the output voxels that
    can be foreground, and whether the foreground touches the full output grid's border.

    Returns (window, at_border): the window is a block of the full output grid (same spacing,
    direction and voxel positions) holding every foreground voxel, so centring, cropping,
    counts and components are those of the full resampling, without resampling a whole CT
    grid per structure. A volume already at `spacing_mm` is returned as it is. The mask must
    not be empty."""
    import SimpleITK as sitk
    if np.allclose(volume.spacing, spacing_mm, rtol=1e-6, atol=0.0):
        return volume, touches_border(volume.mask)
    size, origin = isotropic_grid(volume, spacing_mm)
    lo, hi = foreground_bbox(volume.mask)
    ratio = np.asarray(volume.spacing) / spacing_mm
    # output voxel m sits at input index (m + 0.5) / ratio - 0.5: non-zero only within (lo - 1, hi + 1)
    out_lo = np.maximum(np.floor((lo - 0.5) * ratio - 0.5).astype(int) - 1, 0)
    out_hi = np.minimum(np.ceil((hi + 1.5) * ratio - 0.5).astype(int) + 1, size - 1)
    in_lo, in_hi = np.maximum(lo - 2, 0), np.minimum(hi + 2, np.array(volume.shape) - 1)
    block = volume.mask[tuple(slice(a, b + 1) for a, b in zip(in_lo, in_hi))]
    source = BinaryVolume(block, volume.spacing, index_to_world(in_lo, volume), volume.direction)
    out_origin = origin + volume.direction @ (out_lo * spacing_mm)
    out = sitk.Resample(to_sitk_image(block, source, np.float32), [int(n) for n in out_hi - out_lo + 1],
                        sitk.Transform(), sitk.sitkLinear, tuple(out_origin), (spacing_mm,) * 3,
                        tuple(volume.direction.reshape(-1)), 0.0, sitk.sitkFloat32)
    mask = sitk.GetArrayFromImage(out).transpose(2, 1, 0) >= 0.5
    window = BinaryVolume(mask, (spacing_mm,) * 3, out_origin, volume.direction.copy())
    return window, _on_border(mask, out_lo, out_hi, size)


def prepared_shape(volume: BinaryVolume, rules: StructureRules) -> tuple[BinaryVolume | None, str]:
    """(kept, "") or (None, reason): reorient, resample, filter and crop one raw mask.

    Raises VolumeError for a kept mask larger than the crop."""
    if volume.voxel_count == 0:
        return None, EMPTY
    if rules.reorient:
        volume = reorient_volume(volume)
    volume, at_border = resample_near_foreground(volume, rules.spacing_mm)
    reasons = rejection_reasons(volume, rules.min_voxels, rules.connectivity, at_border)
    if reasons:
        return None, "; ".join(reasons)
    return crop_centred(volume, rules.crop_size), ""


def _item_or_dropped(candidate: Candidate, subject: str, rules: StructureRules) -> ShapeItem | Dropped:
    if candidate.volume is None:
        return candidate.dropped(candidate.reason)
    try:
        volume, reason = prepared_shape(candidate.volume, rules)
    except VolumeError as exc:
        volume, reason = None, str(exc)
    if volume is None:
        return candidate.dropped(reason)
    return ShapeItem(volume, subject, f"{subject}/{candidate.name}", candidate.label, candidate.path)


# ---------------------------------------------------------------- the loader
def structure_rules(structure: str = "kidney", **overrides) -> StructureRules:
    """The family's `StructureRules` with the options given (None = the family's value);
    ValueError for an unknown structure, connectivity or crop size."""
    rules = replace(STRUCTURE_RULES[check_structure(structure)], **{k: v for k, v in overrides.items() if v is not None})
    check_connectivity(rules.connectivity)
    return replace(rules, crop_size=tuple(int(s) for s in check_crop_size(rules.crop_size)))


def load_totalsegmentator(root, *, structure: str = "kidney", levels: str | Sequence[str] | None = None,
                          structures: Sequence[str] | None = None, class_map: str = "total",
                          spacing_mm: float | None = None, min_voxels: int | None = None,
                          connectivity: int = CONNECTIVITY, crop_size: Sequence[int] | None = None,
                          reorient: bool = True) -> ShapeDataset:
    """Every complete kidney or vertebra of every TotalSegmentator subject under `root`.

    structure: "kidney" or "vertebra"; levels: the vertebrae to take (`parse_levels`, default
    "T10-L5"); structures: explicit TotalSegmentator names instead (the rules stay the
    structure's); class_map: label numbers of multi-label files ("total" = v2, "total_v1").
    spacing_mm / min_voxels / crop_size (x, y, z voxels) / connectivity: override the family's
    rules (module docstring). Returns a ShapeDataset: one item per kept mask (subject = the
    subject's name, name = ``<subject>/<structure>``, label = class number for multi-label files,
    volume = `crop_size` voxels at `spacing_mm`, LPS axes, world positions kept), in subject
    order then `structures` order; `.dropped` has (path, reason) for every mask left out.
    Raises ValueError for bad options, FileNotFoundError if there is no subject."""
    rules = structure_rules(structure, spacing_mm=spacing_mm, min_voxels=min_voxels, connectivity=connectivity,
                            crop_size=crop_size, reorient=reorient)
    names, numbers = structure_names(structure, levels, structures), class_numbers(class_map)
    items, dropped = [], []
    for subject in tracked(find_subjects(root), "reading subjects", unit="subjects"):
        for candidate in subject_masks(subject, names, numbers):
            result = _item_or_dropped(candidate, subject.name, rules)
            (dropped if isinstance(result, Dropped) else items).append(result)
    return ShapeDataset(items, dropped)
