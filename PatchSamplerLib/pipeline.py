"""End to end: volume + run configuration + prior -> centres, patches, reconstruction, errors,
metrics and timings [T §3.1, Fig. 3.1]. The only place that knows the order of the stages:
volume -> cloud -> centres -> patches -> latent -> reconstruction -> metrics.

The INR frame (`method.frame`): coordinates are millimetres relative to the centre of the
shape's bounding box. The prior knows shapes only inside its training box
(`ShapePrior.extent_mm`) around that centre, so only the voxels of the input grid inside that
box are decoded; everything else is background. A shape larger than the box gets a warning
(its outside parts cannot be reconstructed). Inputs of any size work: a run works on the part
of the grid that box can reach (`frame.work_box`: the shape's bounding box widened by half the box)
and puts the result back on the whole grid, so a vertebra inside a 512 x 512 x 300 CT labelmap
costs about the same as the cropped vertebra, with the same result voxel for voxel.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from PatchSamplerLib.devices import check_precision, precision_context, resolve_device, sync_device
from PatchSamplerLib.method.components import component_note, largest_component
from PatchSamplerLib.method.cost import check_affordable, decoder_macs_per_point, estimate_run
from PatchSamplerLib.method.decoding import DEFAULT_CHUNK, decode_in_frame
from PatchSamplerLib.method.frame import frame_records_on_whole_grid, padded_to, place_frame, work_box
from PatchSamplerLib.method.fitting import check_fit, fit_patches, fit_settings
from PatchSamplerLib.method.inr import DEFAULT_FIT_LR, ShapePrior
from PatchSamplerLib.method.metrics import all_metrics, error_labels
from PatchSamplerLib.method.patches import check_patch_request, extract_patches
from PatchSamplerLib.method.sampler import learned_centres, load_learned_sampler
from PatchSamplerLib.method.samplers import baseline_centres, sampler_spec
from PatchSamplerLib.method.sides import check_side, to_canonical_side, unmirror_frame_records
from PatchSamplerLib.orientation import AxisReorientation, to_anatomical
from PatchSamplerLib.progress import Cancelled, Monitor  # noqa: F401  (Cancelled: part of this API)
from PatchSamplerLib.volume import BinaryVolume, VolumeError, sub_volume

DEFAULT_N, DEFAULT_K, DEFAULT_T = 8, 11, 100


@dataclass(frozen=True)
class RunConfig:
    """What one patch reconstruction is asked to do; `asdict` of it is the run's recorded
    settings (`ReconstructionResult.settings`, `metrics.json`). Used by `reconstruct`, the
    evaluation and the Slicer module.

    n: patches N; k: patch size K (voxels per side; the thesis's and the learned samplers' K are
    odd; FPS and random take any K >= 1, an even K's patch then half a voxel off its centre); t:
    latent-fit steps T [T §3.5];
    sampler: a name of `method.samplers.SAMPLERS` (None: the caller gives the centres);
    seed: FPS / RS start, latent init and the fast fit's voxel subsets;
    device: "auto" | "cpu" | "cuda[:i]"; precision: "fp32", or on CUDA "tf32" / "bf16";
    fit: "fast" (each step on a random, boundary-weighted eighth of the patch voxels, 384-2,048) or "adam" (the
    thesis: each step on every patch voxel), `method.fitting`; fit_lr: Adam learning rate of the fit;
    dense_decode: every voxel instead of coarse-to-fine;
    chunk: points per decoder call; sampler_model: a learned sampler file or a run's
    settings["sampler_model"] record (None: the bundled
    one of the prior and (N, K)); largest_component: keep only the mask's largest connected
    component (drops false-positive specks; they are then neither reconstructed nor scored);
    force: run even when the estimate (`method.cost`) is above the time or memory limit;
    side: "left" / "right", the input's side for a prior trained on one side (`method.sides`:
    an input of the other side is mirrored onto it and back); None: detected when such a prior
    needs it, ignored by priors of both sides."""
    n: int = DEFAULT_N
    k: int = DEFAULT_K
    t: int = DEFAULT_T
    sampler: str | None = "fps"
    seed: int = 0
    device: str = "auto"
    precision: str = "fp32"
    fit: str = "fast"
    fit_lr: float = DEFAULT_FIT_LR
    dense_decode: bool = False
    chunk: int = DEFAULT_CHUNK
    sampler_model: str | None = None
    largest_component: bool = False
    force: bool = False
    side: str | None = None

    def check(self) -> "RunConfig":
        """Itself; ValueError with a user-facing message for an N, K, T, sampler or precision
        the pipeline cannot run."""
        check_patch_request(self.n, self.k)
        if int(self.t) != self.t or self.t < 0:
            raise ValueError(f"the number of latent-fit steps T must be an integer >= 0, got {self.t}")
        if self.sampler is not None:
            sampler_spec(self.sampler)
        check_fit(self.fit)
        check_side(self.side)
        if isinstance(self.sampler_model, os.PathLike):
            return replace(self, sampler_model=os.fspath(self.sampler_model))
        if isinstance(self.sampler_model, dict):
            return replace(self, sampler_model=recorded_sampler_file(self.sampler_model))
        if self.sampler_model is not None and not isinstance(self.sampler_model, str):
            raise TypeError("RunConfig.sampler_model is a file name (or a run's settings['sampler_model'] record); "
                            "pass a loaded SamplerModel as reconstruct(..., learned=model)")
        return self


def recorded_sampler_file(record: dict) -> str:
    """The file of a run's `settings["sampler_model"]` record ({"path", "sha256", ...}), so that
    a result's settings run the same sampler again; ValueError when the record names no file or
    the file's SHA-256 is no longer the recorded one (it was replaced since)."""
    from PatchSamplerLib.checkpoints import file_sha256
    path = record.get("path")
    if not path:
        raise ValueError(f"this sampler record names no file: {record}")
    if not os.path.isfile(path):
        raise ValueError(f"the learned sampler of that run is gone: {path} not found")
    if record.get("sha256") and file_sha256(path) != record["sha256"]:
        raise ValueError(f"{path} is not the learned sampler of that run any more (its SHA-256 differs from the "
                         "record): it was replaced since")
    return str(path)


@dataclass
class ReconstructionResult:
    """Everything a run produces, in the input volume's voxel grid (index order i, j, k; X, Y, Z
    its shape), whatever frame the fit ran in (`reconstruct`).

    centres: (N, 3) float voxel index (i, j, k) of the patch centres.
    patch_coords: (N, K^3, 3) float voxel index of every patch voxel, patch by patch.
    patch_values: (N, K^3) float32 0 / 1, the input's label at those voxels.
    reconstruction: (X, Y, Z) bool, the decoded shape on the input's grid.
    errors: (X, Y, Z) uint8, 0 background, 1 in both, 2 extra (reconstructed only), 3 missing
        (input only) -- the labels of the "errors" output.
    metrics: {"dice": Dice in [0, 1], "asd_mm": average symmetric surface distance in mm,
        "hd95_mm": 95th-percentile Hausdorff distance in mm} of reconstruction vs input
        (`method.metrics.all_metrics`).
    timings: seconds per stage: "sampling", "extraction", "latent_fit", "decode", "metrics", "total".
    latent: (D,) float32 fitted latent (D = the prior's latent size, 128 for the bundled priors).
    settings: the RunConfig's fields (n, k, t, sampler, seed, device, precision, fit, ...) as run,
        with "prior" (the file used), "side" and the fit's frame ("frame_centre_mm",
        "frame_extent_mm", "anatomical_frame", "fit_points_per_step", ...); "sampler_model" is
        the learned sampler's record (its file under "path", "sha256"), None for other samplers.
    warnings: the notes of the run (another T's sampler used, components dropped, ...) as str.
    generated: (N, 3) float voxel index of a learned sampler's points before the soft projection
        [T §3.3]; None for other samplers and for given centres without them.
    """
    centres: np.ndarray
    patch_coords: np.ndarray
    patch_values: np.ndarray
    reconstruction: np.ndarray
    errors: np.ndarray
    metrics: dict
    timings: dict
    latent: np.ndarray
    settings: dict
    warnings: list = field(default_factory=list)
    generated: np.ndarray | None = None


def sample_centres(volume: BinaryVolume, config: RunConfig, prior: ShapePrior, learned=None,
                   notes: list | None = None) -> tuple[np.ndarray, np.ndarray | None, dict | None]:
    """-> (centres (N, 3), generated points (N, 3) or None, the learned sampler's record or None),
    voxel index of `config.sampler`. "learned" uses `learned` (a loaded SamplerModel), else
    `config.sampler_model` (a file), else the bundled sampler of (prior, N, K); its notes (e.g.
    another T) are appended to `notes`; the record (`SamplerModel.record`: file path and SHA-256)
    says which sampler it was."""
    if config.sampler is None:
        raise ValueError("sampler None means the caller gives the centres; pass centres= or a sampler name")
    if config.sampler != "learned":
        return baseline_centres(config.sampler, volume.mask, volume.spacing, config.n, config.seed), None, None
    model, model_notes = load_learned_sampler(prior, config.n, config.k, config.t,
                                              learned if learned is not None else config.sampler_model)
    if notes is not None:
        notes += model_notes
    generated, projected = learned_centres(model, volume.mask, config.n, config.k, volume.spacing)
    return projected, generated, model.record()


DEFAULT_API_PRIOR = "vertebra"
NO_PRIOR_NOTE = (f"no prior given: the bundled {DEFAULT_API_PRIOR!r} prior (synthetic vertebrae) was used; pass "
                 "prior='vertebra-anatomical' for real vertebrae, 'kidney' / 'kidney-anatomical' for kidneys, or a file")


def reconstruct(volume: BinaryVolume, config: RunConfig | None = None, prior: ShapePrior | str | None = None, *,
                centres: np.ndarray | None = None, generated: np.ndarray | None = None, learned=None,
                progress=None, should_cancel=None, **settings) -> ReconstructionResult:
    """Reconstruct `volume` from N patches of K^3 voxels with T latent-fit steps.

    `config` (a RunConfig; default RunConfig()) with any of its fields overridden by keyword
    (`reconstruct(volume, n=8, k=11, prior="kidney")`). `prior` is a ShapePrior (used where it
    is: a prior on another device is copied, never moved) or a bundled name / file; None (not
    given) uses `DEFAULT_API_PRIOR` with a warning, also in `result.warnings`. `learned`:
    a loaded SamplerModel for sampler "learned" (else `config.sampler_model` or the bundled
    one). `centres` (N, 3) voxel indices (i, j, k) of `volume`, N = config.n, finite and on the
    grid, override the sampler (then `config.sampler` only names where they came from;
    `generated` are a learned sampler's points before projection, recorded). `progress(stage,
    fraction)` is called as the run advances; when `should_cancel()` returns True the run stops
    with `Cancelled`. Raises TypeError when `volume` is not a BinaryVolume and ValueError with a
    user-facing message on bad input (VolumeError: the mask; CheckpointError: a prior or sampler
    file; plain ValueError: settings and `centres`).

    The run happens in the anatomical frame (`orientation`): the same anatomy stored in any axis
    order gives the same result in world coordinates. Every array and index of the result is on
    `volume`'s own grid; `settings["anatomical_frame"]` says how the axes were reordered. A prior
    trained on one side (`method.sides`) gets the input mirrored onto its side when it is the
    other (`config.side`, else detected) and the results mirrored back; `settings["side"]` says
    so (None for other priors)."""
    config = replace(config or RunConfig(), **settings).check()
    if not isinstance(volume, BinaryVolume):
        raise TypeError(f"volume must be a BinaryVolume, got {type(volume).__name__}: read a file with "
                        "PatchSamplerLib.volume.read_labelmap(path), or wrap a 3-D mask as BinaryVolume(mask, spacing)")
    if volume.voxel_count == 0:
        raise VolumeError("the mask is empty: nothing to reconstruct")
    if centres is not None:
        check_given_centres(centres, config.n, volume.shape)
    prior_given = prior is not None
    if not prior_given:
        warnings.warn(NO_PRIOR_NOTE)
        prior = DEFAULT_API_PRIOR
    prior = prior if isinstance(prior, ShapePrior) else ShapePrior.load(prior)
    lo, hi = work_box(volume.mask, volume.spacing, prior.extent_mm, config.k)
    anatomical, orient = to_anatomical(sub_volume(volume, lo, hi))
    anatomical, back, side = to_canonical_side(anatomical, orient, prior, config.side, config.seed)
    given = None if centres is None else (back.index_to_anatomical(np.reshape(centres, (-1, 3)) - lo),
                                          None if generated is None else
                                          back.index_to_anatomical(np.asarray(generated) - lo))
    result = reconstruct_anatomical(anatomical, config, prior, given, learned, Monitor(progress, should_cancel))
    if side is not None and side["mirrored"]:
        unmirror_frame_records(result.settings, anatomical.shape, anatomical.spacing)
    result.settings["anatomical_frame"] = orient.record()
    result.settings["side"] = side
    frame_records_on_whole_grid(result.settings, orient, volume, lo)
    result.warnings[:0] = [] if prior_given else [NO_PRIOR_NOTE]
    return on_whole_grid(result_on_input_grid(result, back), lo, volume.shape)


def check_given_centres(centres, n: int, shape) -> None:
    """Refuse caller-given patch centres that are not (N, 3) finite voxel indices (i, j, k) inside
    a grid of `shape`; ValueError naming what is wrong (an off-grid centre would be fitted as an
    empty patch, a NaN one score Dice 0 without a word)."""
    array = np.asarray(centres, dtype=float)
    if array.shape != (n, 3):
        raise ValueError(f"centres must be an (N, 3) array of voxel indices with N={n}, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError("centres hold NaN or infinite values")
    outside = np.flatnonzero(np.any((array < -0.5) | (array > np.asarray(shape) - 0.5), axis=1))
    if outside.size:
        raise ValueError(f"centres {outside.tolist()} lie outside the {tuple(shape)} voxel grid "
                         f"(first: {array[outside[0]].tolist()})")


def on_whole_grid(result: "ReconstructionResult", lo, shape) -> "ReconstructionResult":
    """A result on the work box starting at input voxel `lo` back on the whole grid of `shape`:
    arrays padded with 0 (background; no error), voxel indices shifted by `lo`."""
    lo = np.asarray(lo)
    if not lo.any() and result.reconstruction.shape == tuple(shape):
        return result

    def shifted(index):
        return None if index is None else (index + lo).astype(np.float32)

    return replace(result, centres=shifted(result.centres), patch_coords=shifted(result.patch_coords),
                   reconstruction=padded_to(result.reconstruction, lo, shape),
                   errors=padded_to(result.errors, lo, shape), generated=shifted(result.generated))


def input_mask(volume: BinaryVolume, config: RunConfig, notes: list) -> BinaryVolume:
    """The mask a run reconstructs: all of `volume`, or with `config.largest_component` its
    largest connected component; several components add a warning naming their sizes."""
    note = component_note(volume.mask, config.largest_component)
    if note is None:
        return volume
    notes.append(note)
    warnings.warn(note)
    return volume.with_mask(largest_component(volume.mask)) if config.largest_component else volume


def reconstruct_anatomical(volume: BinaryVolume, config: RunConfig, prior, given, learned,
                           monitor: Monitor) -> ReconstructionResult:
    """`reconstruct` on a volume already in the anatomical frame; `given`: None or (centres
    (N, 3), generated (N, 3) or None) anatomical index."""
    monitor("sampling")
    dev = resolve_device(config.device)
    check_precision(dev, config.precision)
    prior = (prior if isinstance(prior, ShapePrior) else ShapePrior.load(prior)).on(dev)
    fit = fit_settings(config.fit, config.n * config.k ** 3, config.t, config.fit_lr)
    check_affordable(estimate_run(config.n, config.k, fit.steps, dev, decoder_macs_per_point(prior.decoder),
                                  fit.points), config.force)
    timings, notes = {}, []
    volume = input_mask(volume, config, notes)
    for note in (spacing_note(volume.spacing, prior.spacing_mm, config.k), size_note(volume.voxel_count, config.k)):
        if note:
            notes.append(note)
            warnings.warn(note)

    with monitor.stage("sampling", timings):
        centre_mm, lo, hi = place_frame(volume.mask, volume.spacing, prior.extent_mm, notes)
        centres, generated, model_record = ((*given, _given_record(config, learned)) if given is not None
                                            else sample_centres(volume, config, prior, learned, notes))
        centres = np.asarray(centres, np.float32).reshape(-1, 3)
    with monitor.stage("extraction", timings):
        coords_idx, values, coords_mm = extract_patches(volume.mask, volume.spacing, centres, config.k, centre_mm)
    with monitor.stage("latent_fit", timings, total=fit.steps, every=10) as tick, \
            precision_context(dev, config.precision):
        latent = fit_patches(prior.decoder, coords_mm.reshape(1, -1, 3).to(dev), values.reshape(1, -1).to(dev),
                             fit, seed=config.seed, callback=tick, k=config.k)
        sync_device(dev)
    with monitor.stage("decode", timings, unit="points") as tick, precision_context(dev, config.precision):
        recon, evaluated = decode_in_frame(prior.decoder, latent, volume.shape, volume.spacing, centre_mm, lo, hi,
                                           config.dense_decode, config.chunk, progress=tick)
    with monitor.stage("metrics", timings):
        metrics = all_metrics(recon, volume.mask, volume.spacing)
        errors = error_labels(recon, volume.mask)
    timings["total"] = sum(timings.values())
    monitor("metrics", 1.0)

    record = dict(asdict(config), sampler=config.sampler or "given", device=str(dev),
                  sampler_model=model_record, prior=prior.metadata.get("path", "in memory"),
                  fit_points_per_step=fit.points, fit_boundary_weight=fit.boundary_weight,
                  frame_centre_mm=centre_mm.tolist(), frame_extent_mm=list(prior.extent_mm),
                  decoded_box_index=[lo.tolist(), hi.tolist()],
                  decode="dense" if config.dense_decode else "coarse-to-fine", decoder_points=evaluated)
    return ReconstructionResult(centres, coords_idx.numpy(), values.numpy(), recon, errors, metrics, timings,
                                latent[0].cpu().numpy(), record, notes, generated)


SPACING_RATIO = 2.0     # input voxels this many times finer or coarser than the prior's get a note


def spacing_note(spacing, prior_spacing, k: int) -> str | None:
    """A note when the input's voxels (mm along i, j, k) are at least SPACING_RATIO times finer or
    coarser than the prior's training spacing along some axis: a patch is K input voxels, so its
    size in mm differs as much from the patches of the thesis's setting, and a fine grid (e.g. a
    surface rasterised at 0.2 mm) makes the decode slow. None otherwise."""
    ratio = np.asarray(spacing, float) / float(min(prior_spacing))
    if np.all(ratio < SPACING_RATIO) and np.all(ratio > 1 / SPACING_RATIO):
        return None
    shown = " x ".join(f"{s:g}" for s in spacing)
    side = " x ".join(f"{k * s:.3g}" for s in spacing)
    return (f"the input's voxels ({shown} mm) are far from the prior's {min(prior_spacing):g} mm: a patch of K={k} voxels "
            f"spans {side} mm{' and the decode evaluates many voxels' if ratio.min() <= 1 / SPACING_RATIO else ''}; "
            f"resample the input to {min(prior_spacing):g} mm to run as the prior was trained")


def size_note(voxels: int, k: int) -> str | None:
    """A note when the shape has fewer foreground voxels than one patch of K^3 holds: the patches
    see all of it and little else, the prior fills in the rest (a speck or a wrong segment?)."""
    if voxels >= k ** 3:
        return None
    return (f"the shape has only {voxels} foreground voxels, fewer than one patch of K={k} holds ({k ** 3}): "
            "is it the segment you meant? Its reconstruction is mostly the prior's guess")


def result_on_input_grid(result: ReconstructionResult, orient: AxisReorientation) -> ReconstructionResult:
    """An anatomical-frame result with every index and array mapped back to the input grid
    (`frame_centre_mm` and `decoded_box_index` stay in the anatomical frame, which the record
    says)."""
    back = orient.index_from_anatomical
    return replace(result, centres=back(result.centres).astype(np.float32),
                   patch_coords=back(result.patch_coords).astype(np.float32),
                   reconstruction=orient.array_from_anatomical(result.reconstruction),
                   errors=orient.array_from_anatomical(result.errors),
                   generated=None if result.generated is None else back(result.generated).astype(np.float32))


def _given_record(config: RunConfig, learned) -> dict | None:
    """The learned sampler of a run whose centres were given (computed by the caller with
    `learned` or `config.sampler_model`), for its record; None for other samplers."""
    if config.sampler != "learned":
        return None
    if learned is not None and hasattr(learned, "record"):
        return learned.record()
    return {"path": config.sampler_model or ("in memory" if learned is not None else None), "sha256": None}
