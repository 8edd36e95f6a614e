"""Reconstruction from a sparse observation (a few slices, any labelled voxels) with the INR,
the task of Amiranashvili et al. [A §2.3]: fit a latent to the known voxels only, decode the
whole grid. Stage order: frame -> known points -> latent fit -> decode -> metrics.

The frame (`method.frame.place_frame`) is centred on the bounding box of the *known* foreground,
which along a sparse axis may lie up to half a slice gap off the full shape's. The known
voxels inside the prior's frame are the fit's points (all of them per step as in [A] App. B,
or a random subset of `points_per_step` per step, much cheaper on a CPU). The fit stops after
`steps` or, with `patience`, once the training Dice over all known voxels, rounded to 2
decimals and checked every `check_every` steps, has not risen for `patience` checks in a row
(the paper's femur rule: 5 blocks of 100 steps).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch

from PatchSamplerLib.devices import resolve_device, sync_device
from PatchSamplerLib.method.decoding import DEFAULT_CHUNK, decode_in_frame, logits_in_chunks
from PatchSamplerLib.method.frame import frame_records_on_whole_grid, padded_to, place_frame, work_box
from PatchSamplerLib.method.inr import ShapePrior, fit_latent
from PatchSamplerLib.method.metrics import all_metrics, dice, error_labels
from PatchSamplerLib.method.sides import check_side, mirrored_orientation, side_record, unmirror_frame_records
from PatchSamplerLib.orientation import to_anatomical
from PatchSamplerLib.progress import Monitor
from PatchSamplerLib.sparse.inputs import SparseInput
from PatchSamplerLib.volume import BinaryVolume, VolumeError, box_slices, sub_volume

DEFAULT_SPARSE_STEPS = 300
DEFAULT_SPARSE_LR = 1e-2
DEFAULT_POINTS_PER_STEP = 8192
DEFAULT_CHECK_EVERY = 50
STAGES = {"frame": (0.0, 0.05), "latent_fit": (0.05, 0.85), "decode": (0.85, 0.95), "metrics": (0.95, 1.0)}


@dataclass(frozen=True)
class SparseConfig:
    """The settings of a reconstruction from sparse input; `asdict` of it is recorded in
    `SparseResult.settings`. steps: latent-fit steps (upper bound with `patience`); fit_lr:
    Adam learning rate; points_per_step: known voxels per step (None: all, as [A] App. B);
    check_every / patience: the Dice-plateau early stop (module docstring); seed; device;
    dense_decode: every voxel instead of coarse-to-fine; chunk: points per decoder call;
    boundary_weight: with points_per_step, a known voxel on the boundary (`known_boundary`) is
    drawn this many times as often as another and weighted back (`inr.fit_latent`'s
    `sampling`, as `method.fitting`'s fast fit); 1: uniformly. side: "left" / "right", the
    input's side for a prior trained on one side (`method.sides`; None: detected from the known
    voxels when such a prior needs it)."""
    steps: int = DEFAULT_SPARSE_STEPS
    fit_lr: float = DEFAULT_SPARSE_LR
    points_per_step: int | None = DEFAULT_POINTS_PER_STEP
    check_every: int = DEFAULT_CHECK_EVERY
    patience: int | None = None
    seed: int = 0
    device: str = "auto"
    dense_decode: bool = False
    chunk: int = DEFAULT_CHUNK
    boundary_weight: float = 1.0
    side: str | None = None

    def check(self) -> "SparseConfig":
        """Itself; ValueError for a step count the fit cannot run or a boundary weight <= 0."""
        if int(self.steps) != self.steps or self.steps < 1:
            raise ValueError(f"the number of latent-fit steps must be an integer >= 1, got {self.steps}")
        if not self.boundary_weight > 0:
            raise ValueError(f"the boundary weight must be > 0, got {self.boundary_weight}")
        check_side(self.side)
        return self


@dataclass
class SparseResult:
    """A reconstruction from sparse input, in the input grid ((i, j, k) order)."""
    reconstruction: np.ndarray            # (X, Y, Z) bool
    errors: np.ndarray | None             # (X, Y, Z) uint8 vs the full reference (0 bg, 1 both, 2 extra, 3 missing)
    metrics: dict                         # dice, asd_mm, hd95_mm vs the reference ({} without one)
    timings: dict                         # seconds per stage
    latent: np.ndarray                    # (D,)
    settings: dict
    fit_history: list                     # [(step, rounded training Dice)] at each check
    warnings: list = field(default_factory=list)


def known_points(sparse: SparseInput, spacing, centre_mm: np.ndarray, lo: np.ndarray,
                 hi: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """The known voxels inside the inclusive box [lo, hi]: ((P, 3) float32 mm in the INR frame,
    (P,) float32 0/1 labels), in `np.argwhere` order."""
    box = tuple(slice(a, b + 1) for a, b in zip(lo, hi))
    idx = np.argwhere(sparse.known[box])
    labels = sparse.labels[box][tuple(idx.T)]
    mm = (idx + lo + 0.5) * np.asarray(spacing) - centre_mm
    return torch.as_tensor(mm, dtype=torch.float32), torch.as_tensor(labels, dtype=torch.float32)


def known_boundary_points(sparse: SparseInput, lo: np.ndarray, hi: np.ndarray) -> torch.Tensor:
    """(P,) bool, for `known_points`' P points in its order: the point lies on the boundary
    (`known_boundary`)."""
    box = tuple(slice(a, b + 1) for a, b in zip(lo, hi))
    return torch.as_tensor(known_boundary(sparse.known[box], sparse.labels[box])[sparse.known[box]])


def known_boundary(known: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(X, Y, Z) bool: known voxels with a known 6-neighbour of the other label (on a slice, its
    in-plane neighbours: the drawn contour's two sides)."""
    edge = np.zeros(known.shape, bool)
    for axis in range(3):
        a = [slice(None)] * 3
        b = [slice(None)] * 3
        a[axis], b[axis] = slice(1, None), slice(None, -1)
        a, b = tuple(a), tuple(b)
        differs = known[a] & known[b] & (labels[a] != labels[b])
        edge[a] |= differs
        edge[b] |= differs
    return edge


@torch.no_grad()
def dice_at_points(decoder, latent: torch.Tensor, coords: torch.Tensor, labels: torch.Tensor,
                   chunk: int = 65536) -> float:
    """Dice of the thresholded occupancy (logit >= 0) at coords (P, 3) mm against labels (P,) 0/1."""
    logits = logits_in_chunks(decoder, decoder.latent_features(latent.reshape(1, -1)), coords, chunk)
    return dice((logits >= 0).cpu().numpy(), labels.cpu().numpy() > 0.5)


class DicePlateau:
    """Early stop for `fit_latent(stop=...)`: every `every` steps the Dice of the thresholded
    prediction on all known points, rounded to `decimals`; True once it has not risen for
    `patience` checks in a row (patience None: never stops, still records)."""

    def __init__(self, decoder, coords: torch.Tensor, labels: torch.Tensor, every: int, patience: int | None,
                 decimals: int = 2, chunk: int = 65536):
        self.decoder, self.coords, self.labels = decoder, coords, labels
        self.every, self.patience, self.decimals, self.chunk = int(every), patience, decimals, chunk
        self.history, self.best, self.flat = [], -1.0, 0

    def __call__(self, step: int, z: torch.Tensor) -> bool:
        if self.every <= 0 or step % self.every:
            return False
        score = round(dice_at_points(self.decoder, z, self.coords, self.labels, self.chunk), self.decimals)
        self.history.append((step, score))
        self.flat = 0 if score > self.best else self.flat + 1
        self.best = max(self.best, score)
        return self.patience is not None and self.flat >= self.patience


def reconstruct_sparse(volume: BinaryVolume, sparse: SparseInput, prior: ShapePrior | str = "vertebra",
                       config: SparseConfig | None = None, *, reference: np.ndarray | None = None,
                       progress=None, should_cancel=None, **settings) -> SparseResult:
    """Reconstruct the whole shape on `volume`'s grid (its mask is not read; only its geometry)
    from `sparse`, with `config` (default SparseConfig()) and any of its fields overridden by
    keyword. `reference` (X, Y, Z) bool, the full segmentation when known, gives metrics and
    errors. `progress(stage, fraction)` / `should_cancel()` as in `pipeline.reconstruct`; a
    ShapePrior on another device is copied, never moved. Raises VolumeError / ValueError.

    Runs in the anatomical frame (`orientation`), like `pipeline.reconstruct`: any storage order
    of the same anatomy gives the same result in world coordinates; the result's arrays are on
    `volume`'s grid. Like it, it works on the part of the grid the prior's frame can reach around
    the labelled voxels (and the reference), `frame.work_box`, with the same result. A prior
    trained on one side gets the observation mirrored onto its side when it is the other
    (`config.side`, else detected from the known voxels; `method.sides`) and the result mirrored
    back; `settings["side"]` says so (None for other priors)."""
    config = replace(config or SparseConfig(), **settings).check()
    if sparse.known.shape != volume.shape:
        raise VolumeError(f"the sparse input has shape {sparse.known.shape}, the image {volume.shape}")
    if reference is not None and np.shape(reference) != volume.shape:
        raise VolumeError(f"the reference has shape {np.shape(reference)}, the image {volume.shape}")
    prior = prior if isinstance(prior, ShapePrior) else ShapePrior.load(prior)
    reference = None if reference is None else np.asarray(reference, bool)
    lo, hi = work_box(sparse.labels, volume.spacing, prior.extent_mm, also=reference)   # see pipeline.reconstruct
    anatomical, orient = to_anatomical(sub_volume(volume, lo, hi))
    box = box_slices(lo, hi)
    observed = sparse.cropped(lo, hi)
    seen = observed.to_anatomical(orient)
    side = side_record(prior, config.side, seen.labels, anatomical.spacing, seen.known, config.seed)
    back = mirrored_orientation(orient) if side is not None and side["mirrored"] else orient
    result = reconstruct_sparse_anatomical(
        anatomical, seen if back is orient else observed.to_anatomical(back), prior, config,
        None if reference is None else back.array_to_anatomical(reference[box]),
        Monitor(progress, should_cancel, STAGES))
    if back is not orient:
        unmirror_frame_records(result.settings, anatomical.shape, anatomical.spacing)
    result.settings.update(anatomical_frame=orient.record(), known_voxels=sparse.known_count, side=side)
    frame_records_on_whole_grid(result.settings, orient, volume, lo)

    def on_whole_grid(array):
        return None if array is None else padded_to(back.array_from_anatomical(array), lo, volume.shape)

    return replace(result, reconstruction=on_whole_grid(result.reconstruction), errors=on_whole_grid(result.errors))


def reconstruct_sparse_anatomical(volume: BinaryVolume, sparse: SparseInput, prior, config: SparseConfig,
                                  reference: np.ndarray | None, report: Monitor) -> SparseResult:
    """`reconstruct_sparse` on a volume, observation and reference already in the anatomical frame."""
    dev = resolve_device(config.device)
    prior = (prior if isinstance(prior, ShapePrior) else ShapePrior.load(prior)).on(dev)
    decoder = prior.decoder
    notes, timings = [], {}

    with report.stage("frame", timings, key="points"):
        centre_mm, lo, hi = place_frame(sparse.labels, volume.spacing, prior.extent_mm, notes, robust=False)
        coords, labels = known_points(sparse, volume.spacing, centre_mm, lo, hi)
        coords, labels = coords.to(dev), labels.to(dev)
        sampling = None if config.boundary_weight == 1 else \
            torch.where(known_boundary_points(sparse, lo, hi), config.boundary_weight, 1.0)[None]
        plateau = DicePlateau(decoder, coords, labels, config.check_every, config.patience)
    steps_run = [0]
    with report.stage("latent_fit", timings, total=config.steps, every=10) as tick:
        def on_step(step: int) -> None:
            steps_run[0] = step
            tick(step)

        latent = fit_latent(decoder, coords[None], labels[None], steps=config.steps, lr=config.fit_lr,
                            seed=config.seed, points_per_step=config.points_per_step, stop=plateau, callback=on_step,
                            sampling=sampling)
        sync_device(dev)
    with report.stage("decode", timings, unit="points") as tick:
        recon, evaluated = decode_in_frame(decoder, latent, volume.shape, volume.spacing, centre_mm, lo, hi,
                                           config.dense_decode, config.chunk, progress=tick)
    report("metrics", 0.0)
    metrics, errors = {}, None
    if reference is not None:
        metrics = all_metrics(recon, np.asarray(reference, bool), volume.spacing)
        errors = error_labels(recon, np.asarray(reference, bool))
    timings["total"] = sum(timings.values())
    report("metrics", 1.0)
    record = dict(asdict(config), input=sparse.description, known_voxels=sparse.known_count, fit_points=len(coords),
                  steps_run=steps_run[0], device=str(dev), prior=prior.metadata.get("path", "in memory"),
                  frame_centre_mm=centre_mm.tolist(), frame_extent_mm=list(prior.extent_mm),
                  decoded_box_index=[lo.tolist(), hi.tolist()],
                  decode="dense" if config.dense_decode else "coarse-to-fine", decoder_points=evaluated)
    return SparseResult(recon, errors, metrics, timings, latent[0].cpu().numpy(), record, plateau.history, notes)
