"""Left and right: a prior trained on one side only, and the mirror that puts an input on it.

A paired organ's left and right shapes are mirror images of each other across the sagittal
plane (x -> -x in the anatomical frame, +L). A prior trained on both (the thesis's
TotalSegmentator kidneys, "either the left or the right kidney" [T §4.2.1]; `kidney-anatomical`)
spends latent capacity on the side and, from a few patches, must tell it: its mean shape is a
symmetric kidney with a central cavity (results/real/mean_shapes.png). A prior trained on one
side (`kidney-anatomical-left`: every right kidney of the family mirrored to a left one) records
that side in its metadata (`canonical_side`); a run with it mirrors an input of the other side
onto that side at the edge, once, and mirrors every result back (`to_canonical_side`,
`mirrored_orientation`), so the result is on the input's grid as always.

The input's side is given (`RunConfig.side`, `run --side`, read from a file or segment name by
`structures.side_in_name`) or, when not, detected (`detect_side`): the latent is fitted to the
voxels around the whole shape as it is and mirrored, both at once, and the side whose fit leaves
the lower loss is taken -- the prior itself says which side the shape looks like. The whole
segmentation is the input of a run (the samplers see it too), so this uses nothing a run does
not have. Measured on held-out family kidneys and the real ones: results/sides/README.md.
"""
from __future__ import annotations

import hashlib

import numpy as np
import torch

from PatchSamplerLib.method.inr import ShapePrior, fit_latent
from PatchSamplerLib.method.losses import occupancy_loss
from PatchSamplerLib.orientation import AxisReorientation
from PatchSamplerLib.volume import BinaryVolume, foreground_bbox

SIDES = ("left", "right")
DETECT_STEPS = 20              # Adam steps of each of the two fits
DETECT_POINTS = 1024           # voxels per step, drawn from the box around the shape
DETECT_MARGIN = 3              # voxels around the shape's bounding box that the fits see
DETECT_SCORE_POINTS = 8192     # voxels the two fitted latents are scored on
DETECTED_KEPT = 16             # detections remembered (one per prior, shape, spacing, known voxels, seed)

_detected: dict = {}


def check_side(side: str | None) -> None:
    """ValueError naming the choices for a side that is not None, "left" or "right"."""
    if side is not None and side not in SIDES:
        raise ValueError(f"unknown side {side!r}; choose left or right (or leave it out to detect it)")


def canonical_side(metadata: dict) -> str | None:
    """The one side a prior was trained on ("left" / "right", its metadata's `canonical_side`),
    None for a prior of both sides or of an unpaired structure."""
    side = metadata.get("canonical_side")
    check_side(side)
    return side


def mirrored_orientation(orient: AxisReorientation) -> AxisReorientation:
    """`orient` with its L axis reversed once more: it maps the input grid to the anatomical grid
    mirrored across the sagittal plane (x -> X - 1 - x) and back."""
    return AxisReorientation(orient.perm, (not orient.flips[0],) + tuple(orient.flips[1:]), orient.shape,
                             orient.oblique_deg)


def mirrored(volume: BinaryVolume, orient: AxisReorientation) -> tuple[BinaryVolume, AxisReorientation]:
    """`volume` on the anatomical grid mirrored across the sagittal plane (its array flipped
    along L, geometry kept) and the reorientation that maps the mirrored grid's arrays and
    indices back to the input grid (`mirrored_orientation`)."""
    return volume.mirrored_left_right(), mirrored_orientation(orient)


def box_points(labels: np.ndarray, spacing, known: np.ndarray | None = None,
               margin: int = DETECT_MARGIN) -> tuple[np.ndarray, np.ndarray]:
    """(coords (P, 3) mm relative to the bounding-box centre of the foreground of the (X, Y, Z)
    `labels`, their labels (P,) 0/1) of every voxel of that box widened by `margin` voxels
    (within the grid) that is `known` ((X, Y, Z) bool; None: all). Raises VolumeError when
    `labels` has no foreground."""
    first, last = foreground_bbox(labels)
    lo, hi = np.maximum(first - margin, 0), np.minimum(last + 1 + margin, labels.shape)
    index = np.stack(np.meshgrid(*[np.arange(a, b) for a, b in zip(lo, hi)], indexing="ij"), -1).reshape(-1, 3)
    if known is not None:
        index = index[known[tuple(index.T)]]
    coords = (index - (first + last) / 2.0) * np.asarray(spacing, float)   # mm from the bounding box's centre
    return coords.astype(np.float32), labels[tuple(index.T)].astype(np.float32)


def side_losses(prior: ShapePrior, labels: np.ndarray, spacing, known: np.ndarray | None = None,
                seed: int = 0) -> np.ndarray:
    """(2,) the loss (BCE + 1 - soft Dice, `losses`) left by fitting the latent to the known
    voxels around the shape of the (X, Y, Z) anatomical-frame `labels` (`box_points`; `known`
    None: all) as they are [0] and mirrored across the sagittal plane [1]: `DETECT_STEPS` Adam
    steps on `DETECT_POINTS` voxels each, both fits in one batch, scored on the same
    `DETECT_SCORE_POINTS` voxels."""
    coords, values = box_points(labels, spacing, known)
    pick = np.random.default_rng(seed).choice(len(coords), min(len(coords), DETECT_SCORE_POINTS), replace=False)
    device = next(prior.decoder.parameters()).device
    c = torch.from_numpy(coords).to(device)
    both = torch.stack([c, c * torch.tensor([-1.0, 1.0, 1.0], device=device)])
    y = torch.from_numpy(values).to(device).expand(2, -1)
    z = fit_latent(prior.decoder, both, y, steps=DETECT_STEPS, seed=seed, points_per_step=DETECT_POINTS)
    with torch.no_grad():
        logits = prior.decoder(both[:, pick], z)
        return np.array([float(occupancy_loss(logits[b:b + 1], y[b:b + 1, pick])) for b in range(2)])


def detect_side(prior: ShapePrior, labels: np.ndarray, spacing, known: np.ndarray | None = None,
                seed: int = 0) -> tuple[str, list]:
    """(side, [loss as it is, loss mirrored]) of the shape of the (X, Y, Z) anatomical-frame
    `labels` (voxel size `spacing` mm; `known`: which voxels are observed, None: all) for a prior
    trained on one side (`canonical_side`): that side when the shape as it is fits the prior
    better than mirrored, else the other (`side_losses`); the last `DETECTED_KEPT` detections
    are remembered (`detection_key`). Raises ValueError for a prior of both sides."""
    side = canonical_side(prior.metadata)
    if side is None:
        raise ValueError("the prior was trained on both sides: there is no side to detect")
    key = (side, *detection_key(prior, labels, spacing, known, seed))
    if key not in _detected:
        losses = side_losses(prior, labels, spacing, known, seed)
        other = SIDES[1 - SIDES.index(side)]
        _detected[key] = (side if losses[0] <= losses[1] else other), [round(float(v), 5) for v in losses]
        while len(_detected) > DETECTED_KEPT:
            _detected.pop(next(iter(_detected)))
    found, losses = _detected[key]
    return found, list(losses)


def detection_key(prior: ShapePrior, labels: np.ndarray, spacing, known: np.ndarray | None, seed: int) -> tuple:
    """What a detection depends on: the prior's weights (`ShapePrior.fingerprint`), the voxels of
    `labels` and `known` (SHA-1 of their bytes and shapes), the spacing and the seed. A second
    run on the same shape (each sampler of "Compare all", every seed of an evaluation) reuses
    the first one's detection instead of fitting twice again."""
    def digest(array):
        return None if array is None else (array.shape, hashlib.sha1(np.ascontiguousarray(array).tobytes()).hexdigest())
    return prior.fingerprint(), digest(labels), tuple(float(v) for v in spacing), digest(known), int(seed)


def side_record(prior: ShapePrior, side: str | None, labels: np.ndarray, spacing, known: np.ndarray | None = None,
                seed: int = 0) -> dict | None:
    """What a run with `prior` does about the input's side: None for a prior of both sides; else
    {canonical_side, input_side (`side`, or detected from the anatomical-frame `labels` /
    `known`, `detect_side`), side_from, [detection_losses], mirrored (the input is of the other
    side)}. Raises ValueError for a side that is not left / right / None."""
    canonical = canonical_side(prior.metadata)
    if canonical is None:
        return None
    check_side(side)
    record = {"canonical_side": canonical, "input_side": side, "side_from": "given"}
    if side is None:
        record["input_side"], record["detection_losses"] = detect_side(prior, labels, spacing, known, seed)
        record["side_from"] = "detected (the fit of the shape as it is vs mirrored)"
    record["mirrored"] = record["input_side"] != canonical
    return record


SIDE_FROM_NAME = "read from the input's name"
"""side_from of a side the command line read from a file or segment name (not --side)."""
SIDE_FROM_SEGMENT = "read from the segment's name"
"""side_from of a side the Slicer module read from the segment's name or terminology."""


def note_side_source(settings: dict, source: str) -> None:
    """Record in a run's settings["side"] (a `side_record`) that the side it was given came from
    `source` (SIDE_FROM_NAME, SIDE_FROM_SEGMENT) rather than from the user; nothing for a prior of
    both sides or a detected side."""
    record = settings.get("side")
    if record is not None and record["side_from"] == "given":
        record["side_from"] = source


def describe_side(record: dict) -> str:
    """One line for the user: how a run treated the input's side (a `side_record`)."""
    how = "detected by the prior" if record["side_from"].startswith("detected") else record["side_from"]
    action = (f"mirrored onto the prior's {record['canonical_side']} side and back" if record["mirrored"]
              else "as it is")
    return f"side: {record['input_side']} ({how}), {action}"


def to_canonical_side(volume: BinaryVolume, orient: AxisReorientation, prior: ShapePrior, side: str | None,
                      seed: int = 0) -> tuple[BinaryVolume, AxisReorientation, dict | None]:
    """The anatomical-frame `volume` (with `orient`, its way back to the input grid) on the side
    of a one-sided prior: mirrored when the input's `side` (None: detected) is the other.
    Returns (volume, orient, `side_record`); a prior of both sides leaves everything as it is."""
    record = side_record(prior, side, volume.mask, volume.spacing, seed=seed)
    if record is None or not record["mirrored"]:
        return volume, orient, record
    return (*mirrored(volume, orient), record)


def unmirror_frame_records(settings: dict, shape, spacing) -> None:
    """Move a run's `frame_centre_mm` (local mm) and `decoded_box_index` (inclusive [lo, hi]
    voxel index), recorded on the mirrored anatomical grid of `shape` (X, Y, Z) and `spacing`
    (mm), to the grid before the mirror (x -> X - 1 - x; local mm x -> X * spacing_x - x)."""
    centre = list(settings["frame_centre_mm"])
    centre[0] = shape[0] * float(spacing[0]) - centre[0]
    lo, hi = (list(b) for b in settings["decoded_box_index"])
    lo[0], hi[0] = shape[0] - 1 - hi[0], shape[0] - 1 - lo[0]
    settings["frame_centre_mm"], settings["decoded_box_index"] = centre, [lo, hi]
