"""TotalSegmentator outputs -> centred kidney or vertebra masks [T §4.2].

Layouts. The root holds one entry per subject, in either form (a subject folder with both is
read from its ``segmentations/`` folder; hidden entries are skipped):

1. One file per structure: the TotalSegmentator dataset release and the default output of
   ``TotalSegmentator -i ct.nii.gz -o <subject>/segmentations``::

       <root>/s0000/ct.nii.gz                              (not read, need not exist)
       <root>/s0000/segmentations/kidney_left.nii.gz
       <root>/s0000/segmentations/vertebrae_L1.nii.gz

   ``<structure>.nii.gz`` is read, else the one ``.nii`` / ``.nii.gz`` file named after the
   structure in any case (``kidney_left.nii``, ``Kidney_Left.nii.gz``); two such files are
   reported ("several files are ..."), and a missing structure's report names a file that looks
   meant for it (``kidney-left.nii.gz``, ``kidney_left.nrrd``: "file missing (similar: ...)").

2. One multi-label file (``TotalSegmentator ... --ml``): ``<root>/<subject>/segmentations.nii``
   or ``.nii.gz``, or ``<root>/<subject>.nii`` / ``.nii.gz`` directly in the root (subject = the
   file name without its suffix). With ``--ml`` TotalSegmentator saves the label image at the
   ``-o`` path itself (wasserth/TotalSegmentator, totalsegmentator/nnunet.py,
   ``nnUNet_predict_image``); nibabel adds ``.nii`` to a path without extension, which is why the
   3D Slicer extension (lassoan/SlicerTotalSegmentator, TotalSegmentator/TotalSegmentator.py)
   runs ``-o <tmp>/segmentation --ml`` and reads ``<tmp>/segmentation.nii``. A structure is the
   voxels equal to its class number (`CLASS_MAPS`). A file holding a single label that is none
   of the class numbers wanted (a binary 0 / 1 mask, e.g. ``<root>/kidney_left.nii.gz`` of a flat
   folder of masks: that layout is ``--dataset folder``'s) is dropped as a whole with that
   reason, and so is a file with labels outside the class map (below 1 or above its last
   class: a CT image, another task's labelmap).

A folder in the root with neither a ``segmentations/`` folder nor a multi-label file (only
``ct.nii.gz``) is no subject: it is reported in `.dropped` ("no segmentations/ folder and no
multi-label file", with the NIfTI files it holds); other files (``meta.csv``) are skipped.

Class numbers (`CLASS_MAPS`, copied from ``class_map`` in wasserth/TotalSegmentator,
totalsegmentator/map_to_binary.py). ``"total"`` is TotalSegmentator v2's default task:
kidney_right 2, kidney_left 3, vertebrae_S1 26, vertebrae_L5 27 ... vertebrae_L1 31,
vertebrae_T12 32 ... vertebrae_T1 43, vertebrae_C7 44 ... vertebrae_C1 50. ``"total_v1"`` is
the v1 order (TotalSegmentator v1, or v2 run with ``--v1_order``): kidneys 2 / 3, vertebrae_L5
18 ... vertebrae_L1 22, vertebrae_T12 23 ... vertebrae_T1 34, vertebrae_C7 35 ... vertebrae_C1
41, no S1; the kidneys have the same numbers in both. A NIfTI file does not say which order it
uses, and the loader assumes v2: load v1 files with ``class_map="total_v1"`` (a Python option of
`load_totalsegmentator` and `loaders.load_dataset("totalsegmentator", ...)`; the command line has
no option for it). What the loader can tell: a file with a label above the map's last class (117
in v2, 104 in v1: `CLASS_COUNTS`) is not of that map and is dropped; when vertebrae are loaded
with the v2 map from files that hold no label above 104, `.notes` warns that they may be v1
files (a v2 file of a scan without right ribs 2-12, sternum and costal cartilages, v2's classes
105-117, holds none either, so this is a hint, not a proof).

Structures (`STRUCTURE_RULES`): ``"kidney"`` (kidney_left, kidney_right) or ``"vertebra"`` (the
levels chosen, default T10-L5: `parse_levels`). Each mask (non-zero / its class number =
foreground) is reoriented to LPS axes (`orientation.reorient_to_lps`), so the crop's last axis
runs inferior-superior, resampled to the family's isotropic spacing (`volume.resample_isotropic`:
linear interpolation of 0/1, threshold 0.5, physical box kept; computed only near the foreground,
`folder.resample_near_foreground`, as for VerSe) and then filtered, all on the resampled grid, as the thesis does:

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
with the structure and its class number. Unreadable files say why ("... is 4-D; a 3-D labelmap
is needed", "... is incomplete").
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator, NamedTuple, Sequence

import numpy as np

from PatchSamplerLib.data.filters import (CONNECTIVITY, EMPTY, KIDNEY_MIN_VOXELS, VERTEBRA_MIN_VOXELS,
                                          check_connectivity, rejection_reasons, touches_border)
from PatchSamplerLib.data.folder import (Dropped, ShapeDataset, ShapeItem, check_crop_size, check_dataset_root,
                                         crop_centred, isotropic_grid, labelmap_stem, reorient_volume,
                                         resample_near_foreground)
from PatchSamplerLib.data.verse import read_label_grid
from PatchSamplerLib.progress import tracked
from PatchSamplerLib.volume import BinaryVolume, VolumeError

# isotropic_grid, resample_near_foreground (data.folder, shared with VerSe) and touches_border
# (data.filters) stay importable from here for the callers of this module.


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
CLASS_COUNTS = {"total": 117, "total_v1": 104}   # the last class number of each map (map_to_binary.py)


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


NO_MASKS = "no segmentations/ folder and no multi-label file (segmentations.nii[.gz])"


def _no_masks_reason(folder: Path) -> str:
    """Why a folder of the root is not a subject, naming up to 3 NIfTI files it holds."""
    if folder.name == "segmentations":
        return ("this is a subject's segmentations/ folder: pass the folder that holds the subject folders "
                f"(<root>/<subject>/segmentations/<structure>.nii.gz, here perhaps {folder.parent.parent}), "
                "not a subject's folder")
    held = sorted(p.name for p in folder.iterdir() if nifti_stem(p.name) and not p.name.startswith("."))
    return NO_MASKS + (f"; it holds {', '.join(held[:3])}{' ...' if len(held) > 3 else ''}" if held else "")


def _subject_of(entry: Path) -> Subject | Dropped | None:
    if entry.is_dir():
        if (entry / "segmentations").is_dir():
            return Subject(entry.name, entry / "segmentations", False)
        files = [entry / n for n in MULTILABEL_NAMES if (entry / n).is_file()]
        return Subject(entry.name, files[0], True) if files else Dropped(str(entry), _no_masks_reason(entry))
    stem = nifti_stem(entry.name)
    return Subject(stem, entry, True) if stem and entry.is_file() else None


def scan_root(root) -> tuple[list[Subject], list[Dropped]]:
    """Every subject under `root` (module docstring, layouts 1 and 2), sorted by name, and the
    folders of the root that are no subject, with why (`NO_MASKS`). Other files (meta.csv) and
    hidden entries are skipped silently. Raises FileNotFoundError if the folder is missing or
    holds no subject."""
    root = check_dataset_root(root)
    found = [_subject_of(p) for p in sorted(root.iterdir()) if not p.name.startswith(".")]
    subjects = [s for s in found if isinstance(s, Subject)]
    dropped = [d for d in found if isinstance(d, Dropped)]
    if not subjects:
        folders = f"; {len(dropped)} folder(s) with no segmentations/ folder and no multi-label file " \
                  f"({Path(dropped[0].path).name}: {dropped[0].reason})" if dropped else ""
        raise FileNotFoundError(f"no TotalSegmentator subjects in {root}: expected <subject>/segmentations/"
                                "<structure>.nii.gz files, or multi-label (--ml) files <subject>/segmentations.nii"
                                f"[.gz] or <subject>.nii[.gz]{folders}")
    return subjects, dropped


def find_subjects(root) -> list[Subject]:
    """Every subject under `root` (`scan_root`'s first list), sorted by name.

    Raises FileNotFoundError if the folder is missing or holds no subject."""
    return scan_root(root)[0]


class Candidate(NamedTuple):
    """One structure of one subject before filtering: the mask, or why there is none."""
    name: str
    path: str
    label: int | None                 # class number in a multi-label file, else None
    volume: BinaryVolume | None
    reason: str = ""
    highest_label: int | None = None  # a multi-label file's highest label (class map check)

    def dropped(self, reason: str) -> Dropped:
        """The report entry; a multi-label file's reason names the structure and its label."""
        prefix = f"{self.name} (label {self.label}): " if self.label is not None else ""
        return Dropped(self.path, prefix + reason)


# ---------------------------------------------------------------- per-structure files
def _normalised(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def similar_files(name: str, listing: Sequence[Path]) -> list[str]:
    """Names of files in `listing` that look meant as structure `name` but are not read: the same
    name in another format (``kidney_left.nrrd``) or spelling (``kidney-left.nii.gz``,
    ``kidney_left_mask.nii.gz``); files named after another TotalSegmentator structure are not."""
    key = _normalised(name)
    others = {_normalised(n) for numbers in CLASS_MAPS.values() for n in numbers} - {key}
    stems = [(p.name, _normalised(labelmap_stem(p.name))) for p in listing]
    return [file for file, stem in stems if key in stem and stem not in others]


def structure_file(folder: Path, name: str, listing: Sequence[Path]) -> tuple[Path, str]:
    """(file, "") of structure `name` in a ``segmentations/`` folder holding `listing`, or
    (the expected ``<name>.nii.gz`` path, why there is none). ``<name>.nii.gz`` first, else the
    one ``.nii`` / ``.nii.gz`` file whose name is `name` in any case (``Kidney_Left.nii``); several
    such files, or none, are reasons (a missing file's reason names similar files, if any)."""
    expected = folder / f"{name}.nii.gz"
    if expected.is_file():
        return expected, ""
    matches = [p for p in listing if (nifti_stem(p.name) or "").lower() == name.lower()]
    if len(matches) == 1:
        return matches[0], ""
    if matches:
        return expected, f"several files are {name}: {', '.join(p.name for p in matches)}; keep one"
    similar = similar_files(name, listing)[:2]
    return expected, "file missing" + (f" (similar: {', '.join(similar)}; <structure>.nii.gz or .nii is read)"
                                       if similar else "")


def read_structure_mask(path) -> BinaryVolume:
    """A per-structure file's mask (file geometry): every non-zero voxel is foreground (0 / 1,
    0 / 255). FileNotFoundError / VolumeError naming the file (unreadable, incomplete, 4-D,
    several components per voxel, non-integer values)."""
    grid = read_label_grid(path, reorient=False)
    return BinaryVolume(grid.labels != 0, grid.spacing, grid.origin, grid.direction)


def _structure_files(subject: Subject, names: Sequence[str]) -> Iterator[Candidate]:
    listing = sorted(p for p in subject.path.iterdir() if p.is_file() and not p.name.startswith("."))
    for name in names:
        path, reason = structure_file(subject.path, name, listing)
        if reason:
            yield Candidate(name, str(path), None, None, reason)
            continue
        try:
            yield Candidate(name, str(path), None, read_structure_mask(path))
        except VolumeError as exc:
            yield Candidate(name, str(path), None, None, str(exc))


# ---------------------------------------------------------------- multi-label files
def present_labels(labels: np.ndarray) -> np.ndarray:
    """Sorted non-zero values of an integer (X, Y, Z) label array (one pass for small labels)."""
    if labels.dtype.kind in "ui" and labels.size and labels.min() >= 0 and labels.max() < 2 ** 16:
        values = np.flatnonzero(np.bincount(labels.ravel()))
    else:
        values = np.unique(labels)
    return values[values != 0]


def multilabel_problem(present: np.ndarray, wanted: dict[str, int], class_map: str) -> str:
    """Why a file holding the non-zero labels `present` is not a multi-label file of TotalSegmentator's
    `class_map` ("": it may be): labels outside the map's classes, or a single label that is none
    of the `wanted` {structure: class number} (a binary mask read as a multi-label file)."""
    last = CLASS_COUNTS[class_map]
    if present.size and (present[0] < 0 or present[-1] > last):
        hint = " (a TotalSegmentator v2 file? it is read with class_map='total')" if class_map == "total_v1" else ""
        return (f"labels {int(present[0])} to {int(present[-1])} present, outside the classes 1-{last} of "
                f"TotalSegmentator's {class_map!r} class map: not a multi-label file of that map{hint}")
    if len(present) == 1 and int(present[0]) not in wanted.values():
        numbers = ", ".join(f"{n} {v}" for n, v in wanted.items())
        return (f"holds a single label ({int(present[0])}) and none of the class numbers wanted ({numbers}): "
                "a binary mask, not a TotalSegmentator multi-label file; for a folder of binary masks use "
                "--dataset folder, for TotalSegmentator's per-structure masks the layout "
                "<subject>/segmentations/<structure>.nii.gz")
    return ""


def _multilabel_structures(subject: Subject, names: Sequence[str], numbers: dict[str, int],
                           class_map: str) -> Iterator[Candidate]:
    path = str(subject.path)
    try:
        grid = read_label_grid(subject.path, reorient=False)        # reoriented per mask, as files are
    except VolumeError as exc:
        yield Candidate("", path, None, None, str(exc))
        return
    present = present_labels(grid.labels)
    problem = multilabel_problem(present, {n: numbers[n] for n in names if n in numbers}, class_map)
    if problem:
        yield Candidate("", path, None, None, problem)
        return
    highest = int(present[-1]) if present.size else 0
    for name in names:
        if name not in numbers:
            yield Candidate(name, path, None, None, f"{name}: not in the TotalSegmentator class map")
            continue
        mask = grid.labels == numbers[name]
        yield Candidate(name, path, numbers[name], BinaryVolume(mask, grid.spacing, grid.origin, grid.direction),
                        highest_label=highest)


def subject_masks(subject: Subject, names: Sequence[str], numbers: dict[str, int],
                  class_map: str = "total") -> Iterator[Candidate]:
    """The raw mask (file geometry, not reoriented) of each structure `names` of a subject;
    `numbers` and `class_map` (`class_numbers`) read its multi-label file."""
    if subject.multilabel:
        return _multilabel_structures(subject, names, numbers, class_map)
    return _structure_files(subject, names)


def class_map_note(highest: dict[str, int], names: Sequence[str], class_map: str) -> str:
    """A warning ("" for none) when multi-label files read with v2's class numbers may be v1 files:
    `highest` {file: highest label} has files with no label above v1's last class (104) and some
    structure of `names` has another number in v1 (kidneys do not; vertebrae do)."""
    differ = any(CLASS_MAPS["total"].get(n) != CLASS_MAPS["total_v1"].get(n) for n in names)
    low = sorted(f for f, h in highest.items() if h <= CLASS_COUNTS["total_v1"])
    if class_map != "total" or not differ or not low:
        return ""
    return (f"{len(low)} of {len(highest)} multi-label files hold no label above {CLASS_COUNTS['total_v1']}, "
            f"the last class of TotalSegmentator v1 (e.g. {low[0]}): they were read with v2's class numbers; "
            "if they are v1 outputs (or v2 with --v1_order) their vertebrae have other numbers: load them with "
            "class_map='total_v1' (Python: load_totalsegmentator / load_dataset)")


# ---------------------------------------------------------------- filtering and cropping
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
    structure's); class_map: label numbers of multi-label files, "total" (v2, the default) or
    "total_v1" (v1 files, or v2 run with ``--v1_order``): module docstring, *Class numbers*.
    spacing_mm / min_voxels / crop_size (x, y, z voxels) / connectivity: override the family's
    rules (module docstring). Returns a ShapeDataset: one item per kept mask (subject = the
    subject's name, name = ``<subject>/<structure>``, label = class number for multi-label files,
    volume = `crop_size` voxels at `spacing_mm`, LPS axes, world positions kept), in subject
    order then `structures` order; `.dropped` has (path, reason) for every mask, file or folder
    left out; `.notes` a warning when multi-label files may use the other class map.
    Raises ValueError for bad options, FileNotFoundError if there is no subject."""
    rules = structure_rules(structure, spacing_mm=spacing_mm, min_voxels=min_voxels, connectivity=connectivity,
                            crop_size=crop_size, reorient=reorient)
    names, numbers = structure_names(structure, levels, structures), class_numbers(class_map)
    subjects, dropped = scan_root(root)
    items, highest = [], {}
    for subject in tracked(subjects, "reading subjects", unit="subjects"):
        for candidate in subject_masks(subject, names, numbers, class_map):
            if candidate.highest_label is not None:
                highest[candidate.path] = candidate.highest_label
            result = _item_or_dropped(candidate, subject.name, rules)
            (dropped if isinstance(result, Dropped) else items).append(result)
    note = class_map_note(highest, names, class_map)
    return ShapeDataset(items, dropped, [note] if note else [])
