"""Qt-free logic of the PatchSampler module: a segment in, standard MRML results out.

Usable from Slicer's Python console and, through `slicer-core`, from pytest without the
application:

    from PatchSamplerLogic import PatchSamplerLogic
    run = PatchSamplerLogic().process(segmentationNode, segmentId, n=8, k=11, t=100,
                                      sampler="fps", prior="kidney")
    run.runs[0].result.metrics        # {'dice': ..., 'asd_mm': ..., 'hd95_mm': ...}

A run: check the request, load the prior and refuse a run over the library's time or memory
estimate unless forced (PatchSamplerMRML.choices); read the segment onto the run's grid in world
RAS and hand it to the library in LPS (PatchSamplerMRML.geometry, whose docstring says which grid);
run the library once per sampler with one RunConfig each (`PatchSamplerLib.pipeline.reconstruct`,
or `sparse.reconstruction.reconstruct_sparse` from slices, whose known voxels come from
PatchSamplerMRML.slices); build the output nodes outside the scene (PatchSamplerMRML.outputs,
.metrics_table) and add them at the end, replacing the previous outputs of that segment and
sampler. A failed, refused or cancelled run leaves the scene as it was.

Imports: slicer and the PatchSamplerMRML package next to this file, neither of which imports
PatchSamplerLib at load. PatchSamplerLib is imported inside the functions that use it (torch
only once a run starts), so this file loads without torch and before the module has put the
extension root on sys.path.
"""
from __future__ import annotations

import os
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field, replace

from PatchSamplerMRML.choices import (check_request, check_run_cost, check_segment, choice_label, prior_of_segment,
                                      samplers_to_run, segment_description)
from PatchSamplerMRML.geometry import SegmentGrid, grid_axis, mask_on_grid, read_segment_grid
from PatchSamplerMRML.metrics_table import metrics_row, updated_metrics_table
from PatchSamplerMRML.outputs import (build_centres_node, build_result_segmentation, commit_nodes, find_outputs,
                                      output_base_name, tag_output)
from PatchSamplerMRML.slices import drawn_slices

# library stage -> what the progress bar says
PRIORS_KEPT = 4
LOADED_PRIORS: "OrderedDict[tuple, object]" = OrderedDict()   # (file, size, mtime, device) -> ShapePrior

STAGE_TEXT = {"frame": "placing the shape frame",
              "sampling": "choosing patch centres", "extraction": "extracting patches",
              "latent_fit": "fitting the shape code", "decode": "decoding the shape",
              "metrics": "computing metrics"}


@dataclass
class SamplerRun:
    """One sampler's result and its output nodes (in the scene once process() returned)."""
    sampler: str
    result: object                   # PatchSamplerLib.pipeline.ReconstructionResult
    segmentation_node: object        # vtkMRMLSegmentationNode "<segment> - <Sampler> patches"
    centres_node: object             # vtkMRMLMarkupsFiducialNode "<segment> - <Sampler> patch centres"


@dataclass
class ProcessResult:
    """What process() produced: a run per sampler, the metrics table, skipped samplers with the
    reason, and the input as the library saw it (LPS BinaryVolume) with its world-RAS grid."""
    runs: list
    table_node: object
    skipped: dict = field(default_factory=dict)
    volume: object = None
    grid: SegmentGrid | None = None

    def notes(self) -> list[str]:
        """What the user should read besides the metrics, one line each: with several samplers,
        the warnings every run has once (about the input or the prior, e.g. several connected
        components and their sizes, a prior of another structure); why a sampler was skipped; then
        each run's (other) warnings prefixed by its sampler."""
        shared = [w for w in (self.runs[0].result.warnings if len(self.runs) > 1 else [])
                  if all(w in run.result.warnings for run in self.runs)]
        skipped = [f"{choice_label(name)} not run: {reason}" for name, reason in self.skipped.items()]
        warned = [f"{choice_label(run.sampler)}: {warning}" for run in self.runs for warning in run.result.warnings
                  if warning not in shared]
        return shared + skipped + warned


@dataclass
class SliceRun:
    """What process_slices() produced: the library's SparseResult, the sparse input it used, the
    output segmentation (in the scene), the input as a library volume, its grid and the grid axis
    the known slices lie along (None: planes tilted to the grid, PatchSamplerMRML.slices)."""
    result: object                   # PatchSamplerLib.sparse.reconstruction.SparseResult
    sparse: object                   # PatchSamplerLib.sparse.inputs.SparseInput
    segmentation_node: object        # "<segment> - reconstruction from slices"
    volume: object
    grid: SegmentGrid
    axis: int | None


class _Progress:
    """Maps the stages of a process() call to (message, overall fraction in [0, 1]) reports and
    checks the cancel flag between stages; `should_cancel()` True raises the library's Cancelled."""

    def __init__(self, report=None, should_cancel=None, samplers: int = 1):
        self.report, self.should_cancel, self.samplers = report, should_cancel, max(samplers, 1)

    def step(self, message: str, fraction: float) -> None:
        if self.should_cancel is not None and self.should_cancel():
            from PatchSamplerLib.progress import Cancelled
            raise Cancelled(f"cancelled while {message.lower()}")
        if self.report is not None:
            self.report(message, min(max(fraction, 0.0), 1.0))

    def for_sampler(self, index: int, label: str):
        """A progress(stage, fraction) callback for the library's run of the `index`-th sampler,
        whose messages start with the sampler's `label`."""
        width = 0.8 / self.samplers
        start = 0.1 + index * width

        def progress(stage: str, fraction: float) -> None:
            if self.report is not None:
                self.report(f"{label}: {STAGE_TEXT.get(stage, stage)}", start + width * fraction)
        return progress


def prior_mismatch(segmentation_node, segment_id: str, shape_prior, prior) -> str | None:
    """The library's warning (`PatchSamplerLib.structures.structure_mismatch`) when the segment's
    name or terminology says kidney / vertebra and `shape_prior` was trained on the other; None
    otherwise. prior: what the caller passed (a name, a file or a ShapePrior), to name it."""
    from PatchSamplerLib.structures import structure_mismatch
    label = str(prior) if isinstance(prior, (str, os.PathLike)) else shape_prior.metadata.get("path", "given")
    return structure_mismatch(segment_description(segmentation_node, segment_id), shape_prior.metadata, label)


def segment_side(segmentation_node, segment_id: str) -> str | None:
    """"left" / "right" when the segment's name or terminology says one side ("left kidney",
    `PatchSamplerLib.structures.first_side`), else None."""
    from PatchSamplerLib.structures import first_side
    found = first_side(segment_description(segmentation_node, segment_id))
    return None if found is None else found[0]


def _given(**settings) -> dict:
    """The settings that are not None (None: the library's default)."""
    return {key: value for key, value in settings.items() if value is not None}


class PatchSamplerLogic:
    """Reconstruct a segment from N patches of K^3 voxels and put the results in the scene.

    Qt-free: runs in Slicer and under slicer-core. `process()` is the entry point."""

    def __init__(self, parent=None):
        # Slicer's module scanner treats every .py file in a module folder as a scripted module
        # and instantiates the class named after the file with the module object as `parent`.
        # This file is the module's logic, not a module: register it as a hidden one.
        if parent is not None:
            _register_as_hidden_module(parent)

    def process(self, segmentationNode, segmentId: str, n: int = 8, k: int = 11, t: int = 100,
                sampler: str = "fps", prior=None, device: str = "auto", seed: int = 0, sampler_model=None,
                fit_lr: float | None = None, largest_component: bool = True, force: bool = False, fit: str = "fast",
                side: str | None = None, progress=None, should_cancel=None) -> ProcessResult:
        """Run the sampler(s) on one segment and write the results as MRML nodes.

        segmentationNode, segmentId: the input segment (never modified).
        n, k, t: patches, patch size in voxels (odd), latent-fit steps. sampler: "learned",
        "fps", "random" or "all" (compare: every available sampler).
        prior: a bundled prior ("kidney", "kidney-anatomical", "kidney-anatomical-left",
        "vertebra-anatomical", "vertebra"), a prior file or a loaded ShapePrior; None: the bundled
        one of the structure the segment's name, terminology or node name says (kidney: "kidney",
        vertebra: "vertebra-anatomical", as the command line picks it from the file name), else
        "kidney" with a note. device: "auto" | "cpu" |
        "cuda". seed: reproducibility of the samplers and the latent initialisation.
        sampler_model: a learned sampler file (None: the bundled one of the prior and (N, K)).
        fit_lr: the learning rate of the thesis fit (None: the library's).
        fit: "fast" (each of the T steps on a fixed number of patch voxels) or "adam" (the thesis:
        each step on every patch voxel); `method.fitting`.
        largest_component: reconstruct (and score against) only the segment's largest connected
        component; a segment of several components gets a warning naming their sizes either way
        (in the run's warnings, ProcessResult.notes() and the table's "Note").
        force: run even when the library's estimate is above its time or memory limit (else such
        a run is refused with a ValueError before anything runs).
        side: "left" / "right", the segment's side for a prior trained on one side
        (`PatchSamplerLib.method.sides`); None: what the segment's name says, else detected.
        progress(message, fraction in [0, 1]) reports; should_cancel() -> True stops the run with
        PatchSamplerLib.progress.Cancelled.

        Per sampler, one output segmentation "<segment> - <Sampler> patches" (<segment>: its name;
        "<node> <name>" for Slicer's default "Segment_1", ...) and one markups point
        list "<segment> - <Sampler> patch centres" replace that sampler's previous outputs for this
        segment; the table "<segment> - PatchSampler metrics" (the same node from run to run, so a
        view showing it follows) gets that sampler's row. Everything
        is built outside the scene and added at the end: a failed or cancelled run leaves the scene
        as it was. Raises ValueError (incl. SamplerUnavailable) with user-facing messages."""
        from PatchSamplerLib.method.samplers import sampler_label
        from PatchSamplerLib.method.sides import SIDE_FROM_SEGMENT, note_side_source
        from PatchSamplerLib.pipeline import RunConfig
        check_request(n, k, t, sampler, seed)
        check_segment(segmentationNode, segmentId)
        prior, prior_note = prior_of_segment(segment_description(segmentationNode, segmentId), prior)
        scene, shape_prior = self.scene_and_prior(segmentationNode, prior, device, progress)
        samplers, skipped, learned = samplers_to_run(sampler, n, k, t, shape_prior, sampler_model)
        check_run_cost(n, k, t, shape_prior, force, fit)
        named_side = None if side else segment_side(segmentationNode, segmentId)
        config = RunConfig(n=n, k=k, t=t, seed=seed, device=device, largest_component=largest_component, force=force,
                           fit=fit, side=side or named_side, **_given(fit_lr=fit_lr))
        configs = {name: replace(config, sampler=name) for name in [*samplers, *skipped]}
        steps = _Progress(progress, should_cancel, len(samplers))
        steps.step("Reading the segment", 0.05)
        grid = read_segment_grid(segmentationNode, segmentId, frame_mm=shape_prior.extent_mm)
        volume = grid.to_volume()

        results = {}
        for index, name in enumerate(samplers):
            steps.step(f"{sampler_label(name)}: starting", 0.1 + 0.8 * index / len(samplers))
            results[name] = self.run_sampler(volume, configs[name], shape_prior, learned,
                                             steps.for_sampler(index, sampler_label(name)), should_cancel)
        mismatch = prior_mismatch(segmentationNode, segmentId, shape_prior, prior)
        for result in results.values():
            result.warnings[:0] = [note for note in (prior_note, mismatch) if note]   # notes() and the table's Note
            if named_side:
                note_side_source(result.settings, SIDE_FROM_SEGMENT)

        steps.step("Creating the output nodes", 0.9)
        runs, table, replaced = self.build_outputs(segmentationNode, segmentId, grid, configs, results, skipped)
        steps.step("Adding the results to the scene", 0.98)
        kept_table = next((node for node in replaced if node.IsA("vtkMRMLTableNode")), None)
        commit_nodes(scene, [node for run in runs for node in (run.segmentation_node, run.centres_node)]
                     + ([] if kept_table else [table]), [node for node in replaced if node is not kept_table])
        if kept_table is not None:                  # the same table node, new content: views showing it follow
            kept_table.SetName(table.GetName())
            kept_table.SetAndObserveTable(table.GetTable())
            table = kept_table
        if progress is not None:
            progress("Done", 1.0)
        return ProcessResult(runs, table, skipped, volume, grid)

    def process_slices(self, segmentationNode, segmentId: str, orientation="axial", step: int | None = None,
                       referenceSegmentId: str | None = None, prior=None, device: str = "auto", seed: int = 0,
                       steps: int | None = None, fit_lr: float | None = None, progress=None,
                       should_cancel=None) -> SliceRun:
        """Reconstruct a whole shape from a segment drawn on a few slices (the sparse-input task of
        Amiranashvili et al. [A §2.3]).

        orientation: "axial" / "coronal" / "sagittal" (slice views normal to S / A / R) or a grid
        axis 0 / 1 / 2. Without `step`, the segment is what was drawn: known are the view planes
        (or, for views rotated to the volume, the grid slices) it was drawn on, found from its
        voxels (PatchSamplerMRML.slices; everything else is unknown, not background; a segment
        not drawn on separate slices is refused); with `step`, every step-th slice along the grid
        axis closest to that direction of a full segment is kept (a simulation) and the full
        segment is the reference. referenceSegmentId: a full segmentation of the same shape to
        score against. prior: as `process`'s (None: chosen from the segment's names).
        steps, fit_lr: the latent fit's steps and learning rate (None: the library's).
        The output segmentation "<segment> - reconstruction from slices" (segments Reconstruction
        and, with a reference, Intersection / Extra / Missing) replaces the previous one of this
        segment; the input segment is never modified, and a failed, refused or cancelled run
        leaves the scene as it was. Raises ValueError with user-facing messages."""
        from PatchSamplerLib.method.sides import SIDE_FROM_SEGMENT, note_side_source
        from PatchSamplerLib.sparse.inputs import every_nth_slice
        from PatchSamplerLib.sparse.reconstruction import SparseConfig
        check_segment(segmentationNode, segmentId)
        prior, prior_note = prior_of_segment(segment_description(segmentationNode, segmentId), prior)
        scene, shape_prior = self.scene_and_prior(segmentationNode, prior, device, progress)
        grid = read_segment_grid(segmentationNode, segmentId, frame_mm=shape_prior.extent_mm)
        if step is not None:
            sparse = every_nth_slice(grid.mask, step, grid_axis(orientation, grid.ijk_to_ras), seed=seed)
            reference = grid.mask
        else:
            sparse, reference = drawn_slices(grid, orientation), None
        if referenceSegmentId:
            reference = mask_on_grid(segmentationNode, referenceSegmentId, grid)
        volume = grid.to_volume()
        config = SparseConfig(seed=seed, device=device, side=segment_side(segmentationNode, segmentId),
                              **_given(steps=steps, fit_lr=fit_lr))
        result = self.run_slices(volume, sparse, shape_prior, config, reference, progress, should_cancel)
        note_side_source(result.settings, SIDE_FROM_SEGMENT)          # process_slices takes no side of its own
        mismatch = prior_mismatch(segmentationNode, segmentId, shape_prior, prior)
        result.warnings[:0] = [note for note in (prior_note, mismatch) if note]
        segment_name = output_base_name(segmentationNode, segmentId)
        node = build_result_segmentation(f"{segment_name} - reconstruction from slices", grid,
                                         result.reconstruction, result.errors)
        tag_output(node, "slices", segmentationNode, segmentId)
        commit_nodes(scene, [node], find_outputs(scene, segmentationNode, segmentId, "slices"))
        if progress is not None:
            progress("Done", 1.0)
        return SliceRun(result, sparse, node, volume, grid, sparse.axis)

    def scene_and_prior(self, segmentationNode, prior, device: str, progress) -> tuple:
        """(the input's scene, the ShapePrior on the run's device); ValueError when the node is in
        no scene."""
        scene = segmentationNode.GetScene()
        if scene is None:
            raise ValueError(f"{segmentationNode.GetName()} is not in a scene")
        if progress is not None:
            progress("Loading the prior", 0.0)
        return scene, self.load_prior(prior, device)

    @staticmethod
    def load_prior(prior, device: str = "auto"):
        """A ShapePrior on `device` from a bundled name, a file or a ShapePrior (one on another
        device is copied there, never moved). Fails before any work on a missing CUDA. A name or
        file loaded before (the same file, unchanged: path, size and modification time) on the
        same device gives the same ShapePrior again (the last PRIORS_KEPT are kept), so repeated
        runs reuse it, and on CUDA its captured fit graphs (`PatchSamplerLib.method.graphs`)."""
        from PatchSamplerLib.checkpoints import resolve_prior_path
        from PatchSamplerLib.devices import resolve_device
        from PatchSamplerLib.method.inr import ShapePrior
        target = resolve_device(device)
        if isinstance(prior, ShapePrior):
            return prior.on(target)
        path = resolve_prior_path(str(prior))
        stat = path.stat()
        key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, str(target))
        if key not in LOADED_PRIORS:
            LOADED_PRIORS[key] = ShapePrior.load(str(path), target)
            while len(LOADED_PRIORS) > PRIORS_KEPT:
                LOADED_PRIORS.popitem(last=False)
        LOADED_PRIORS.move_to_end(key)
        return LOADED_PRIORS[key]

    @staticmethod
    def run_sampler(volume, config, prior, learned, progress, should_cancel):
        """The library's reconstruct() of `volume` (a BinaryVolume) with `config` (a RunConfig
        naming one sampler); `learned`: the SamplerModel that sampler "learned" uses. Warnings
        are not shown: the result carries them (the table's "Note")."""
        from PatchSamplerLib.pipeline import reconstruct
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return reconstruct(volume, config, prior, learned=learned, progress=progress,
                               should_cancel=should_cancel)

    @staticmethod
    def run_slices(volume, sparse, prior, config, reference, progress, should_cancel):
        """The library's reconstruct_sparse() of `sparse` on `volume`'s grid with `config` (a
        SparseConfig), scored against `reference` ((I, J, K) bool or None); its stages are
        reported as "Slices: <stage>"."""
        from PatchSamplerLib.sparse.reconstruction import reconstruct_sparse
        report = None if progress is None else (lambda stage, fraction: progress(
            f"Slices: {STAGE_TEXT.get(stage, stage)}", fraction))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return reconstruct_sparse(volume, sparse, prior, config, reference=reference, progress=report,
                                      should_cancel=should_cancel)

    def build_outputs(self, segmentation_node, segment_id: str, grid: SegmentGrid, configs: dict, results: dict,
                      skipped: dict) -> tuple:
        """(a SamplerRun per result, the segment's updated metrics table, the old output nodes
        they replace), built outside the scene. configs: {sampler: RunConfig} of the run and
        skipped samplers; results: {sampler: ReconstructionResult}; skipped: {sampler: why}."""
        scene = segmentation_node.GetScene()
        segment_name = output_base_name(segmentation_node, segment_id)
        runs = [SamplerRun(name, result, *self.build_sampler_outputs(segmentation_node, segment_id, segment_name,
                                                                     grid, configs[name], result))
                for name, result in results.items()]
        rows = [metrics_row(segment_name, configs[name], result) for name, result in results.items()]
        rows += [metrics_row(segment_name, configs[name], note=reason) for name, reason in skipped.items()]
        table, old_tables = updated_metrics_table(scene, segmentation_node, segment_id, segment_name, rows)
        old = [node for name in results for role in ("reconstruction", "centres")
               for node in find_outputs(scene, segmentation_node, segment_id, role, name)]
        return runs, table, old_tables + old

    @staticmethod
    def build_sampler_outputs(segmentation_node, segment_id: str, segment_name: str, grid: SegmentGrid, config,
                              result) -> tuple:
        """(result segmentation, centres point list) of one sampler's run (`config` a RunConfig,
        `result` its ReconstructionResult), tagged, not in any scene."""
        from PatchSamplerLib.method.patches import patch_boxes
        from PatchSamplerLib.method.samplers import sampler_label
        label = sampler_label(config.sampler)
        segmentation = build_result_segmentation(f"{segment_name} - {label} patches", grid, result.reconstruction,
                                                 result.errors, patch_boxes(result.centres, config.k))
        tag_output(segmentation, "reconstruction", segmentation_node, segment_id, config.sampler)
        centres = build_centres_node(f"{segment_name} - {label} patch centres", grid, result.centres)
        tag_output(centres, "centres", segmentation_node, segment_id, config.sampler)
        return segmentation, centres


def _register_as_hidden_module(module) -> None:
    """Fill the module object Slicer made for this file as a hidden module's metadata."""
    module.title = "PatchSampler logic"
    module.categories = []
    module.dependencies = []
    module.contributors = ["PatchSampler developers"]
    module.helpText = "The Qt-free logic of the PatchSampler module (no user interface of its own)."
    module.acknowledgementText = ""
    module.hidden = True
