"""Which anatomical structure an input or a prior is about, to catch a prior of the wrong organ.

A prior reconstructs what its training shapes looked like: a kidney fitted with a vertebra prior
comes out vertebra-like (the README's kidney with `vertebra-anatomical`, FPS 8 x 11, seed 0: Dice
0.62 against 0.70 / 0.79 with `kidney` / `kidney-anatomical`; the T12 with `kidney` 0.60 against
0.80 with `vertebra-anatomical`; results/structures/README.md), with no error anywhere. The structures the bundled
priors know are "kidney" and "vertebra". An input's structure is read from its name: a file name
(TotalSegmentator writes ``kidney_left.nii.gz``, ``vertebrae_T12.nii.gz``), a Slicer segment's
name or its terminology entry (the TotalSegmentator extension names segments "left kidney",
"T12 vertebra" with SNOMED CT codes whose meanings say "Kidney" / "... vertebra"). A prior's
structure is read from its metadata: the synthetic family it was trained on, or the data set
(TotalSegmentator: ``--structure``, default kidney; VerSe: vertebrae). Unknown either way: no
verdict, no warning. The side of a paired organ (`side_in_name`) is read from the same names,
for priors trained on one side (`method.sides`).
"""
from __future__ import annotations

import re

_WORDS = {"kidney": {"kidney", "kidneys"}, "vertebra": {"vertebra", "vertebrae"}}
_PLURAL = {"kidney": "kidneys", "vertebra": "vertebrae"}
# A word naming something in or next to the structure that is not the structure itself
# (TotalSegmentator: kidney_cyst_left; intervertebral discs, "vertebrae disk" labels).
_NOT_THE_STRUCTURE = {"cyst", "cysts", "tumor", "tumour", "lesion", "stone", "disc", "disk", "canal"}

# The bundled prior the Slicer module switches to for a segment of each structure: the module's
# default kidney prior, and the anatomical vertebra prior, better on the real T12 at every
# setting (results/real/README.md, summary table).
DEFAULT_PRIORS = {"kidney": "kidney", "vertebra": "vertebra-anatomical"}


def _words(text: str | None) -> set[str]:
    """The lower-case words of `text` (split at anything not a letter or digit); none for None."""
    return set() if text is None else set(re.split(r"[^a-z0-9]+", str(text).lower()))


def structure_in_name(text: str | None) -> str | None:
    """"kidney" or "vertebra" when `text` (a file name -- not its folders --, a segment name, a
    terminology entry) names exactly one of them as a word (case-insensitive; words split at
    anything not a letter or digit), else None. A name that also says cyst, tumour, lesion,
    stone, disc or canal is not the structure (None)."""
    words = _words(text)
    found = [s for s, names in _WORDS.items() if words & names]
    return found[0] if len(found) == 1 and not words & _NOT_THE_STRUCTURE else None


def side_in_name(text: str | None) -> str | None:
    """"left" or "right" when `text` (a file name, a segment name, a terminology entry) has
    exactly one of the words left / right (case-insensitive, words split as in
    `structure_in_name`: ``kidney_left.nii.gz``, "right kidney"), else None."""
    found = _words(text) & {"left", "right"}
    return found.pop() if len(found) == 1 else None


def first_side(names) -> tuple[str, str] | None:
    """(side, the name that says it) for the first of `names` (None entries skipped) that says
    one side (`side_in_name`); None when none does."""
    return next(((s, n) for n in names if (s := side_in_name(n)) is not None), None)


def first_structure(names) -> tuple[str, str] | None:
    """(structure, the name that says it) for the first of `names` (None entries skipped) that
    names a structure (`structure_in_name`); None when none does."""
    return next(((s, n) for n in names if (s := structure_in_name(n)) is not None), None)


def prior_structure(metadata: dict) -> str | None:
    """The structure a prior was trained on, from its metadata ("data": "synthetic <family>" for
    the synthetic families, "dataset": "totalsegmentator" with "structure" (default kidney) or
    "verse"); None when it does not say (a folder of shapes, cross-validation folds)."""
    data, dataset = str(metadata.get("data", "")), metadata.get("dataset")
    if data.startswith("synthetic "):
        return structure_in_name(data.split(" ", 1)[1])
    if dataset == "totalsegmentator":
        return metadata.get("structure") or "kidney"
    return "vertebra" if dataset == "verse" else None


def structure_mismatch(names, metadata: dict, prior_label: str) -> str | None:
    """A warning when the input is recognisably one structure and the prior was trained on the
    other, else None. names: what the input is called, most telling first (segment name,
    terminology entry, file name; None entries skipped): the first that names a structure
    decides. metadata: the prior's (ShapePrior.metadata); prior_label: how to call the prior."""
    found = first_structure(names)
    if found is None:
        return None
    return mismatch_message(f"the input looks like a {found[0]} ({found[1]!r})", found[0],
                            prior_structure(metadata), prior_label)


def mismatch_message(subject: str, structure: str, trained: str | None, prior_label: str) -> str | None:
    """"<subject> but the prior <prior_label> was trained on <trained>s: ...; choose a <structure>
    prior (bundled: ...)" when `trained` is known and differs from `structure`, else None."""
    if trained is None or trained == structure:
        return None
    return (f"{subject} but the prior {prior_label} was trained on {_PLURAL[trained]}: the reconstruction will "
            f"follow a {trained}'s shape; choose a {structure} prior (bundled: "
            f"{', '.join(bundled_priors_of(structure))})")


def bundled_priors_of(structure: str) -> list[str]:
    """Names of the bundled full-volume priors of `structure` (Resources/Models/prior_*.pt; the
    sparse-slice ones, *_sparse*, left out), the module's default first."""
    from PatchSamplerLib.checkpoints import bundled_models
    names = [n for n in bundled_models() if structure_in_name(n) == structure and "sparse" not in n]
    return sorted(names, key=lambda n: (n != DEFAULT_PRIORS.get(structure), n))
