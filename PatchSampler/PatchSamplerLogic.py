"""Qt-free logic of the PatchSampler module: a segment in, standard MRML results out.

Usable from Slicer's Python console and, through `slicer-core`, from pytest without the
application:

    from PatchSamplerLogic import PatchSamplerLogic
    run = PatchSamplerLogic().process(segmentationNode, segmentId, n=8, k=11, t=100,
                                      sampler="fps", prior="kidney")
    run.runs[0].result.metrics        # {'dice': ..., 'asd_mm': ..., 'hd95_mm': ...}

Coordinates. Slicer works in RAS, the library in LPS with (i, j, k) = (x, y, z) arrays
(`PatchSamplerLib/volume.py`). A segment's binary labelmap is read with its IJK-to-RAS matrix,
the segmentation's parent transform applied (so results are in world coordinates and carry no
parent transform), and converted once: LPS = diag(-1, -1, 1) RAS. Every output labelmap uses
that same IJK-to-RAS matrix, so results lie voxel for voxel on the input's grid.

Grid. The reconstruction is computed on the segmentation's reference image geometry -- the
image it was drawn on or the file it was loaded from, i.e. the grid the command line uses for
the same file -- whenever the segment's labelmap lies on that lattice. Otherwise the segment's
own labelmap grid is extended to cover the prior's frame around the shape, so that the
reconstruction is never clipped by a tight labelmap extent.

Imports: slicer, vtk, numpy and PatchSamplerLib. PatchSamplerLib is imported inside the
functions that use it (torch only once a run starts), so this file loads without torch and
before the module has put the extension root on sys.path.
"""
from __future__ import annotations

import importlib.util
import logging
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import vtk
from vtk.util import numpy_support

import slicer

LPS_FROM_RAS = np.diag([-1.0, -1.0, 1.0])    # the same matrix maps LPS -> RAS

SAMPLERS = ("learned", "fps", "random")
COMPARE_ALL = "all"
SAMPLER_CHOICES = SAMPLERS + (COMPARE_ALL,)
SAMPLER_LABELS = {"learned": "Learned", "fps": "FPS", "random": "Random"}

N_RANGE, K_RANGE, T_RANGE = (1, 64), (3, 31), (0, 2000)

# node attributes that identify the outputs of a (segmentation node, segment, sampler)
ATTRIBUTE_ROLE = "PatchSampler.Role"                  # "reconstruction" | "centres" | "metrics"
ATTRIBUTE_INPUT = "PatchSampler.InputSegmentationID"
ATTRIBUTE_SEGMENT = "PatchSampler.SegmentID"
ATTRIBUTE_SAMPLER = "PatchSampler.Sampler"

PATCH_COLOUR = (0.86, 0.1, 0.1)                       # red, as the patch boxes of the CLI figure
RECONSTRUCTION_COLOUR = (0.3, 0.75, 0.35)
# labelmap -> surface smoothing of the outputs: Slicer's default 0.5 rounds an 11-voxel box into a
# ball and erases one-voxel-thin errors; 0.15 keeps boxes boxy and errors visible, still smooth
SURFACE_SMOOTHING = 0.15

# library stage -> what the progress bar says
STAGE_TEXT = {"frame": "placing the shape frame",
              "sampling": "choosing patch centres", "extraction": "extracting patches",
              "latent_fit": "fitting the shape code", "decode": "decoding the shape",
              "metrics": "computing metrics"}

# pip requirements of the logic besides what Slicer ships (numpy, vtk); one per line
REQUIREMENTS_FILE = Path(__file__).resolve().parent / "Resources" / "requirements.txt"


class SamplerUnavailable(ValueError):
    """A sampler that cannot run here (e.g. no learned sampler model for this N, K)."""


# ------------------------------------------------------------------------ requests and samplers
def check_request(n: int, k: int, t: int, sampler: str) -> None:
    """Raise ValueError with a user message unless N, K, T and the sampler are what the module
    offers: N in 1..64, K odd in 3..31, T in 0..2000, sampler in SAMPLER_CHOICES."""
    for label, value, (lo, hi) in (("N", n, N_RANGE), ("K", k, K_RANGE), ("T", t, T_RANGE)):
        if int(value) != value or not lo <= value <= hi:
            raise ValueError(f"{label} must be an integer from {lo} to {hi}, got {value}")
    if k % 2 == 0:
        raise ValueError(f"K must be odd (a patch is centred on a voxel), got {k}")
    if sampler not in SAMPLER_CHOICES:
        raise ValueError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLER_CHOICES)}")


def find_learned_sampler(prior, n: int, k: int, t: int, sampler_model=None):
    """-> (SamplerModel, notes) for (prior, N, K, T), or (None, why it cannot run).

    `sampler_model`: a sampler file (or SamplerModel); None looks up the bundled sampler of the
    prior for (N, K) (PatchSamplerLib.sampler.load_learned_sampler)."""
    from PatchSamplerLib.sampler import load_learned_sampler
    try:
        return load_learned_sampler(prior.metadata.get("path"), n, k, t, sampler_model)
    except ValueError as exc:
        return None, f"{exc} Use FPS or random, or compare all to run the samplers that are available."


def learned_sampler_status(prior, n: int, k: int, t: int, sampler_model=None) -> str:
    """One line for the module's status label about the learned sampler for (prior, N, K, T),
    from the model files only (works before torch is installed): which file will be used, or
    why none can be."""
    from PatchSamplerLib.checkpoints import CheckpointError, resolve_prior_path, resolve_sampler_path
    if sampler_model:
        return f"Learned sampler: {Path(sampler_model).name}"
    try:
        path, note = resolve_sampler_path(resolve_prior_path(prior), n, k, t)
    except CheckpointError as exc:
        return str(exc)
    return f"Learned sampler: {path.name}" + (f" ({note})" if note else "")


def sampler_centres(sampler: str, volume, n: int, seed: int, learned=None) -> tuple[np.ndarray, np.ndarray | None]:
    """(centres (N, 3), generated points (N, 3) or None), float32 voxel index (i, j, k) of
    `volume`, for one sampler.

    The single place where a sampler name becomes centres: "fps" and "random" are the
    library's baselines, "learned" the SamplerModel `learned` (exactly what the command line
    runs)."""
    if sampler == "learned":
        from PatchSamplerLib.sampler import learned_centres
        if learned is None:
            raise SamplerUnavailable("no learned sampler model was given")
        generated, projected = learned_centres(learned, volume.mask)
        return projected, generated
    from PatchSamplerLib.pipeline import choose_centres
    return np.asarray(choose_centres(volume, n, sampler, seed), np.float32), None


def samplers_to_run(sampler: str, n: int, k: int, t: int, prior, sampler_model=None):
    """(samplers to run, {sampler: why it is skipped}, the learned SamplerModel or None).

    A single unavailable sampler raises SamplerUnavailable; "all" runs the available ones and
    lists the others as skipped."""
    learned, reason = None, None
    if sampler in ("learned", COMPARE_ALL):
        learned, notes = find_learned_sampler(prior, n, k, t, sampler_model)
        reason = notes if learned is None else None
    if sampler == COMPARE_ALL:
        run = [s for s in SAMPLERS if s != "learned" or reason is None]
        return run, ({"learned": reason} if reason else {}), learned
    if sampler == "learned" and reason:
        raise SamplerUnavailable(reason)
    return [sampler], {}, learned


# ------------------------------------------------------------------------ dependencies
def requirements(path=REQUIREMENTS_FILE) -> list[str]:
    """The pip requirement strings of Resources/requirements.txt (comments and blank lines dropped)."""
    lines = (line.split("#", 1)[0].strip() for line in Path(path).read_text().splitlines())
    return [line for line in lines if line]


def requirement_name(requirement: str) -> str:
    """"higher==0.2.1" -> "higher": the distribution name, which is also the import name here."""
    return re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0]


def missing_packages() -> list[str]:
    """The requirements whose package cannot be imported in this Python."""
    return [r for r in requirements() if importlib.util.find_spec(requirement_name(r)) is None]


def install_packages(requirements: list[str], log=logging.info) -> None:
    """Install pip requirements into Slicer's Python; never called at import.

    torch comes from the PyTorch extension's PyTorchUtils when it is installed (it picks the
    build that matches the GPU and driver); everything else, and torch without PyTorchUtils,
    through `slicer.packaging.pip_ensure` (Slicer >= 5.12) or `slicer.util.pip_install`."""
    torch = [r for r in requirements if requirement_name(r) == "torch"]
    others = [r for r in requirements if requirement_name(r) != "torch"]
    if torch and not _install_torch_with_pytorch_utils(torch[0], log):
        others = torch + others
    for requirement in others:
        log(f"Installing {requirement} ...")
        _pip_install(requirement)


def _install_torch_with_pytorch_utils(requirement: str, log) -> bool:
    """True when PyTorchUtils (the PyTorch extension) is there and installed torch."""
    try:
        import PyTorchUtils  # module of the PyTorch extension
    except ImportError:
        return False
    log("Installing PyTorch with the PyTorch extension ...")
    torch_logic = PyTorchUtils.PyTorchUtilsLogic()
    if not torch_logic.torchInstalled():
        version = requirement[len("torch"):].strip() or None          # "torch>=2.0" -> ">=2.0"
        if torch_logic.installTorch(askConfirmation=False, torchVersionRequirement=version) is None:
            raise RuntimeError("PyTorch could not be installed; see the PyTorch Utils module")
    return True


def _pip_install(requirement: str) -> None:
    packaging = getattr(slicer, "packaging", None)
    if packaging is not None and hasattr(packaging, "pip_ensure"):
        packaging.pip_ensure([requirement])
    else:
        slicer.util.pip_install(requirement)


# ------------------------------------------------------------------------ segment -> library volume
@dataclass
class SegmentGrid:
    """A segment's mask on a voxel grid in world RAS.

    mask: (I, J, K) bool, the library's (i, j, k) index order.
    ijk_to_ras: (4, 4) float, world RAS mm of voxel index (i, j, k) of `mask` (voxel centres)."""
    mask: np.ndarray
    ijk_to_ras: np.ndarray

    @property
    def spacing(self) -> np.ndarray:
        """(3,) mm per voxel along i, j, k."""
        return np.linalg.norm(self.ijk_to_ras[:3, :3], axis=0)

    def to_volume(self):
        """The library's BinaryVolume: same voxels, LPS origin and direction."""
        from PatchSamplerLib.volume import BinaryVolume
        spacing = self.spacing
        direction_ras = self.ijk_to_ras[:3, :3] / spacing
        return BinaryVolume(self.mask, tuple(spacing), LPS_FROM_RAS @ self.ijk_to_ras[:3, 3],
                            LPS_FROM_RAS @ direction_ras)


def vtk_matrix_to_array(matrix: vtk.vtkMatrix4x4) -> np.ndarray:
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def array_to_vtk_matrix(array: np.ndarray) -> vtk.vtkMatrix4x4:
    matrix = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            matrix.SetElement(r, c, float(array[r, c]))
    return matrix


def image_to_array(image) -> tuple[np.ndarray, np.ndarray]:
    """vtkOrientedImageData -> ((I, J, K) scalars in (i, j, k) order, (4, 4) IJK-to-world matrix
    whose index 0 is the first voxel of the image's extent)."""
    e = image.GetExtent()
    shape = (e[1] - e[0] + 1, e[3] - e[2] + 1, e[5] - e[4] + 1)
    matrix = vtk.vtkMatrix4x4()
    image.GetImageToWorldMatrix(matrix)
    ijk_to_world = vtk_matrix_to_array(matrix) @ _translation((e[0], e[2], e[4]))
    if min(shape) <= 0 or image.GetPointData().GetScalars() is None:
        return np.zeros((0, 0, 0), np.uint8), ijk_to_world
    scalars = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())
    return scalars.reshape(shape[::-1]).transpose(2, 1, 0), ijk_to_world


def array_to_image(array: np.ndarray, ijk_to_ras: np.ndarray, offset=(0, 0, 0)):
    """(I, J, K) array (i, j, k order) -> vtkOrientedImageData (uint8) whose voxel `offset + index`
    is at `ijk_to_ras @ (offset + index)`: the extent starts at `offset`, on the given lattice."""
    image = slicer.vtkOrientedImageData()
    lo = [int(v) for v in offset]
    shape = array.shape
    image.SetExtent(lo[0], lo[0] + shape[0] - 1, lo[1], lo[1] + shape[1] - 1, lo[2], lo[2] + shape[2] - 1)
    image.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 1)
    numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())[:] = \
        np.ascontiguousarray(np.asarray(array, np.uint8).transpose(2, 1, 0)).ravel()
    image.SetImageToWorldMatrix(array_to_vtk_matrix(ijk_to_ras))
    return image


def _translation(offset) -> np.ndarray:
    m = np.eye(4)
    m[:3, 3] = offset
    return m


def segment_mask_local(segmentation_node, segment_id: str) -> tuple[np.ndarray, np.ndarray]:
    """((I, J, K) bool mask, (4, 4) IJK-to-local-RAS) of one segment, in the segmentation node's own
    coordinates (parent transform not applied). Works for any source representation (a copy is
    converted; the node is not modified). Raises ValueError for an unknown segment."""
    segment = segmentation_node.GetSegmentation().GetSegment(segment_id)
    if segment is None:
        raise ValueError(f"segment {segment_id!r} is not in {segmentation_node.GetName()}")
    labelmap = slicer.vtkOrientedImageData()
    if not slicer.vtkSlicerSegmentationsModuleLogic.GetSegmentBinaryLabelmapRepresentation(
            segmentation_node, segment_id, labelmap, False):
        raise ValueError(f"segment {segment.GetName()!r} has no binary labelmap and cannot be converted to one")
    values, ijk_to_local = image_to_array(labelmap)
    # segments share labelmap layers: this segment is the voxels holding its label value
    return values == segment.GetLabelValue(), ijk_to_local


def reference_grid(segmentation_node) -> tuple[tuple[int, int, int], np.ndarray] | None:
    """(shape (I, J, K), (4, 4) IJK-to-local-RAS) of the segmentation's reference image geometry,
    or None when it has none."""
    converter = slicer.vtkSegmentationConverter
    text = segmentation_node.GetSegmentation().GetConversionParameter(
        converter.GetReferenceImageGeometryParameterName())
    if not text:
        return None
    geometry = slicer.vtkOrientedImageData()
    if not converter.DeserializeImageGeometry(text, geometry, False):
        return None
    e = geometry.GetExtent()
    shape = (e[1] - e[0] + 1, e[3] - e[2] + 1, e[5] - e[4] + 1)
    if min(shape) <= 0:
        return None
    matrix = vtk.vtkMatrix4x4()
    geometry.GetImageToWorldMatrix(matrix)
    return shape, vtk_matrix_to_array(matrix) @ _translation((e[0], e[2], e[4]))


def lattice_offset(ijk_to_ras: np.ndarray, other_ijk_to_ras: np.ndarray, tol: float = 1e-3) -> np.ndarray | None:
    """Integer (3,) index of `other`'s voxel 0 in the first grid when both grids share one
    lattice (same axes and spacing, voxel centres on each other), else None."""
    if not np.allclose(ijk_to_ras[:3, :3], other_ijk_to_ras[:3, :3], atol=tol * np.abs(ijk_to_ras[:3, :3]).max()):
        return None
    index = np.linalg.solve(ijk_to_ras[:3, :3], other_ijk_to_ras[:3, 3] - ijk_to_ras[:3, 3])
    rounded = np.round(index)
    return rounded.astype(int) if np.allclose(index, rounded, atol=tol) else None


def frame_box(mask: np.ndarray, spacing, frame_mm) -> tuple[np.ndarray, np.ndarray]:
    """Inclusive (lo, hi) voxel index box that holds every voxel centre of the prior's frame
    (`frame_mm` wide, centred on the foreground's bounding-box centre), as the pipeline decodes it."""
    occupied = np.argwhere(mask)
    centre = (occupied.min(axis=0) + occupied.max(axis=0)) / 2.0
    half = np.ceil(np.asarray(frame_mm, float) / 2.0 / np.asarray(spacing, float)).astype(int) + 1
    return np.floor(centre).astype(int) - half, np.ceil(centre).astype(int) + half


def pad_to_box(mask: np.ndarray, ijk_to_ras: np.ndarray, lo, hi) -> tuple[np.ndarray, np.ndarray]:
    """The mask on the grid box [min(lo, 0), max(hi, shape - 1)] of the same lattice, and that
    box's IJK-to-RAS (its voxel 0 at index min(lo, 0) of the input)."""
    lo = np.minimum(np.asarray(lo, int), 0)
    hi = np.maximum(np.asarray(hi, int), np.array(mask.shape) - 1)
    out = np.zeros(tuple(hi - lo + 1), bool)
    at = -lo
    out[at[0]:at[0] + mask.shape[0], at[1]:at[1] + mask.shape[1], at[2]:at[2] + mask.shape[2]] = mask
    return out, ijk_to_ras @ _translation(lo)


def read_segment_grid(segmentation_node, segment_id: str, frame_mm=None) -> SegmentGrid:
    """The segment as a world-RAS SegmentGrid on the grid described in the module docstring.

    frame_mm: (3,) size of the prior's frame; used to extend a labelmap that has no reference
    geometry. Raises ValueError for an unknown or empty segment."""
    mask, ijk_to_local = segment_mask_local(segmentation_node, segment_id)
    name = segmentation_node.GetSegmentation().GetSegment(segment_id).GetName()
    if not mask.any():
        raise ValueError(f"segment {name!r} is empty: nothing to reconstruct")
    reference = reference_grid(segmentation_node)
    offset = None if reference is None else lattice_offset(ijk_to_local, reference[1])
    if offset is not None:
        mask, ijk_to_local = pad_to_box(mask, ijk_to_local, offset, offset + np.array(reference[0]) - 1)
    elif frame_mm is not None:
        lo, hi = frame_box(mask, np.linalg.norm(ijk_to_local[:3, :3], axis=0), frame_mm)
        mask, ijk_to_local = pad_to_box(mask, ijk_to_local, lo, hi)
    return apply_parent_transform(segmentation_node, SegmentGrid(mask, ijk_to_local))


def apply_parent_transform(segmentation_node, grid: SegmentGrid) -> SegmentGrid:
    """The grid in world coordinates: a linear parent transform changes the IJK-to-RAS matrix
    only; a non-linear one resamples the mask (nearest neighbour) onto a world grid."""
    if segmentation_node.GetParentTransformNode() is None:
        return grid
    image = array_to_image(grid.mask, grid.ijk_to_ras)
    if not slicer.vtkSlicerSegmentationsModuleLogic.ApplyParentTransformToOrientedImageData(segmentation_node, image):
        raise ValueError(f"the parent transform of {segmentation_node.GetName()} cannot be applied to its labelmap")
    values, ijk_to_world = image_to_array(image)
    return SegmentGrid(values != 0, ijk_to_world)


# ------------------------------------------------------------------------ results -> MRML
@dataclass(frozen=True)
class SegmentStyle:
    """How an output segment is shown: colour (RGB 0-1), 3-D opacity, 3-D visibility, 2-D fill."""
    colour: tuple
    opacity_3d: float
    visible_3d: bool = True
    fill_2d: bool = True


def output_styles() -> dict[str, SegmentStyle]:
    """Styles of the output segments; the error colours are the thesis figures' (grey
    intersection, blue extra, orange missing), shared with the command line's overview.png.
    Patches are translucent boxes, outlined in slices; the reconstruction is outlined in slices
    and hidden in 3-D, where intersection + extra show it; extra voxels often form a shell around
    the intersection, so extra is the most transparent."""
    from PatchSamplerLib.figures import ERROR_COLOURS
    return {"Patch": SegmentStyle(PATCH_COLOUR, 0.3, True, False),
            "Reconstruction": SegmentStyle(RECONSTRUCTION_COLOUR, 0.5, False, False),
            "Extra": SegmentStyle(tuple(ERROR_COLOURS[2]), 0.35),
            "Missing": SegmentStyle(tuple(ERROR_COLOURS[3]), 0.9),
            "Intersection": SegmentStyle(tuple(ERROR_COLOURS[1]), 0.8)}


ERROR_SEGMENTS = {"Intersection": 1, "Extra": 2, "Missing": 3}     # segment -> code of metrics.error_labels


def cropped(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the mask cropped to its foreground bounding box, (3,) index of the crop's voxel 0);
    an empty mask gives one background voxel at index 0."""
    occupied = np.argwhere(mask)
    if len(occupied) == 0:
        return np.zeros((1, 1, 1), bool), np.zeros(3, int)
    lo, hi = occupied.min(axis=0), occupied.max(axis=0)
    return mask[lo[0]:hi[0] + 1, lo[1]:hi[1] + 1, lo[2]:hi[2] + 1], lo


def add_labelmap_segment(segmentation, name: str, mask: np.ndarray, ijk_to_ras: np.ndarray, offset, style):
    """Add a segment holding `mask` (voxel `offset + index` of the grid `ijk_to_ras`) to a vtkSegmentation."""
    segment = slicer.vtkSegment()
    segment.SetName(name)
    segment.SetColor(*style.colour)
    segment.AddRepresentation(slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName(),
                              array_to_image(mask, ijk_to_ras, offset))
    segmentation.AddSegment(segment)


def build_result_segmentation(name: str, grid: SegmentGrid, result, k: int):
    """A vtkMRMLSegmentationNode (not in any scene) with segments "Patch 1".."Patch N" (K^3 voxel
    boxes, possibly reaching past the grid), "Reconstruction", "Intersection", "Extra", "Missing",
    all on `grid`'s lattice; reference geometry = `grid`; closed surfaces created."""
    from PatchSamplerLib.patches import patch_boxes
    styles = output_styles()
    node = slicer.vtkMRMLSegmentationNode()
    node.SetName(name)
    segmentation = node.GetSegmentation()
    segmentation.SetSourceRepresentationName(slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName())
    for i, (lo, hi) in enumerate(patch_boxes(result.centres, k)):
        add_labelmap_segment(segmentation, f"Patch {i + 1}", np.ones(tuple(hi - lo + 1), bool), grid.ijk_to_ras, lo,
                             styles["Patch"])
    add_result_segments(node, grid, result.reconstruction, result.errors)
    return node


def add_result_segments(node, grid: SegmentGrid, reconstruction: np.ndarray, errors: np.ndarray | None) -> None:
    """Add "Reconstruction" and, with `errors` (codes of metrics.error_labels), "Intersection",
    "Extra", "Missing" to a segmentation node; set its reference geometry and closed surfaces."""
    styles = output_styles()
    segmentation = node.GetSegmentation()
    masks = {"Reconstruction": reconstruction}
    if errors is not None:
        masks.update({segment_name: errors == code for segment_name, code in ERROR_SEGMENTS.items()})
    for segment_name, mask in masks.items():
        part, offset = cropped(mask)
        add_labelmap_segment(segmentation, segment_name, part, grid.ijk_to_ras, offset, styles[segment_name])
    segmentation.SetConversionParameter(slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName(),
                                        serialized_geometry(grid))
    segmentation.SetConversionParameter("Smoothing factor", str(SURFACE_SMOOTHING))
    node.CreateClosedSurfaceRepresentation()


def serialized_geometry(grid: SegmentGrid) -> str:
    """The grid as a segmentation's "Reference image geometry" conversion parameter."""
    geometry = slicer.vtkOrientedImageData()
    geometry.SetExtent(0, grid.mask.shape[0] - 1, 0, grid.mask.shape[1] - 1, 0, grid.mask.shape[2] - 1)
    geometry.SetImageToWorldMatrix(array_to_vtk_matrix(grid.ijk_to_ras))
    return slicer.vtkSegmentationConverter.SerializeImageGeometry(geometry)


def build_centres_node(name: str, grid: SegmentGrid, centres: np.ndarray):
    """A locked vtkMRMLMarkupsFiducialNode (not in any scene): one control point "P<i>" per patch
    centre ((N, 3) voxel index of `grid`), in world RAS."""
    node = slicer.vtkMRMLMarkupsFiducialNode()
    node.SetName(name)
    for i, ras in enumerate(grid_index_to_ras(grid, centres)):
        node.AddControlPoint(vtk.vtkVector3d(*ras), f"P{i + 1}")
    node.SetLocked(True)
    return node


def grid_index_to_ras(grid: SegmentGrid, index: np.ndarray) -> np.ndarray:
    """(..., 3) voxel index of the grid -> (..., 3) world RAS mm."""
    return np.asarray(index, float) @ grid.ijk_to_ras[:3, :3].T + grid.ijk_to_ras[:3, 3]


TABLE_COLUMNS = (("Segment", str), ("Sampler", str), ("N", int), ("K", int), ("T", int), ("Seed", int),
                 ("Dice", float), ("ASD (mm)", float), ("HD95 (mm)", float),
                 ("Sampling (s)", float), ("Extraction (s)", float), ("Latent fit (s)", float),
                 ("Decode (s)", float), ("Metrics (s)", float), ("Total (s)", float),
                 ("Device", str), ("Prior", str), ("Note", str))
TIMING_COLUMNS = {"Sampling (s)": "sampling", "Extraction (s)": "extraction", "Latent fit (s)": "latent_fit",
                  "Decode (s)": "decode", "Metrics (s)": "metrics", "Total (s)": "total"}


def metrics_row(segment_name: str, sampler: str, n: int, k: int, t: int, seed: int, result=None,
                note: str = "") -> dict:
    """One table row (column -> value): metrics and seconds per stage of a run, or NaN and a note
    for a sampler that did not run."""
    row = {"Segment": segment_name, "Sampler": SAMPLER_LABELS[sampler], "N": n, "K": k, "T": t, "Seed": seed,
           "Device": "", "Prior": "", "Note": note}
    metrics = result.metrics if result is not None else {}
    row.update({"Dice": metrics.get("dice", math.nan), "ASD (mm)": metrics.get("asd_mm", math.nan),
                "HD95 (mm)": metrics.get("hd95_mm", math.nan)})
    for column, stage in TIMING_COLUMNS.items():
        row[column] = result.timings.get(stage, math.nan) if result is not None else math.nan
    if result is not None:
        row["Device"], row["Prior"] = result.settings["device"], str(result.settings["prior"])
        row["Note"] = "; ".join(result.warnings)
    return row


def table_rows(table_node) -> list[dict]:
    """The rows of a metrics table node as dicts (column -> value)."""
    table = table_node.GetTable()
    names = [table.GetColumn(c).GetName() for c in range(table.GetNumberOfColumns())]
    return [{name: table.GetValue(r, c).ToString() if isinstance(table.GetColumn(c), vtk.vtkStringArray)
             else table.GetValue(r, c).ToDouble() for c, name in enumerate(names)}
            for r in range(table.GetNumberOfRows())]


def build_metrics_table(name: str, rows: list[dict]):
    """A vtkMRMLTableNode (not in any scene) with TABLE_COLUMNS, one row per dict (a missing
    value is empty, 0 or NaN by column type)."""
    defaults = {str: "", int: 0, float: math.nan}
    node = slicer.vtkMRMLTableNode()
    node.SetName(name)
    table = node.GetTable()
    for column, kind in TABLE_COLUMNS:
        array = vtk.vtkStringArray() if kind is str else (vtk.vtkIntArray() if kind is int else vtk.vtkDoubleArray())
        array.SetName(column)
        for row in rows:
            array.InsertNextValue(kind(row.get(column, defaults[kind])))
        table.AddColumn(array)
    return node


def merged_rows(old_rows: list[dict], new_rows: list[dict]) -> list[dict]:
    """The old table's rows of samplers not in `new_rows`, then the new rows, in sampler order."""
    order = [SAMPLER_LABELS[s] for s in SAMPLERS]
    replaced = {row["Sampler"] for row in new_rows}
    rows = [row for row in old_rows if row.get("Sampler") not in replaced] + new_rows
    return sorted(rows, key=lambda row: order.index(row.get("Sampler")) if row.get("Sampler") in order else len(order))


# ------------------------------------------------------------------------ scene bookkeeping
def tag_output(node, role: str, segmentation_node, segment_id: str, sampler: str = "") -> None:
    node.SetAttribute(ATTRIBUTE_ROLE, role)
    node.SetAttribute(ATTRIBUTE_INPUT, segmentation_node.GetID())
    node.SetAttribute(ATTRIBUTE_SEGMENT, segment_id)
    if sampler:
        node.SetAttribute(ATTRIBUTE_SAMPLER, sampler)


def find_outputs(scene, segmentation_node, segment_id: str, role: str, sampler: str = "") -> list:
    """Nodes of `scene` that are the `role` output of (segmentation node, segment[, sampler])."""
    found = []
    for i in range(scene.GetNumberOfNodes()):
        node = scene.GetNthNode(i)
        if (node.GetAttribute(ATTRIBUTE_ROLE) == role and node.GetAttribute(ATTRIBUTE_INPUT) == segmentation_node.GetID()
                and node.GetAttribute(ATTRIBUTE_SEGMENT) == segment_id
                and (not sampler or node.GetAttribute(ATTRIBUTE_SAMPLER) == sampler)):
            found.append(node)
    return found


def show_result_segmentation(node) -> None:
    """Display node with the output styles (call once the node is in a scene)."""
    node.CreateDefaultDisplayNodes()
    display = node.GetDisplayNode()
    styles = output_styles()
    segmentation = node.GetSegmentation()
    for i in range(segmentation.GetNumberOfSegments()):
        name = segmentation.GetNthSegment(i).GetName()
        style = styles["Patch" if name.startswith("Patch ") else name]
        segment_id = segmentation.GetNthSegmentID(i)
        display.SetSegmentOpacity3D(segment_id, style.opacity_3d)
        display.SetSegmentVisibility3D(segment_id, style.visible_3d)
        display.SetSegmentVisibility2DFill(segment_id, style.fill_2d)


def show_centres(node) -> None:
    node.CreateDefaultDisplayNodes()
    display = node.GetDisplayNode()
    display.SetSelectedColor(*PATCH_COLOUR)
    display.SetColor(*PATCH_COLOUR)
    display.SetTextScale(2.0)


def commit_nodes(scene, new_nodes: list, old_nodes: list) -> None:
    """Add `new_nodes` to the scene (with display nodes), then remove `old_nodes`. If adding fails
    the nodes added so far are removed again, so the scene is as before."""
    added = []
    try:
        for node in new_nodes:
            scene.AddNode(node)
            added.append(node)
            if isinstance(node, slicer.vtkMRMLSegmentationNode):
                show_result_segmentation(node)
            elif isinstance(node, slicer.vtkMRMLMarkupsFiducialNode):
                show_centres(node)
    except BaseException:
        for node in added:
            remove_node(scene, node)
        raise
    for node in old_nodes:
        remove_node(scene, node)


def remove_node(scene, node) -> None:
    """Remove a node with its display and storage nodes (the scene keeps those otherwise)."""
    helpers = []
    if hasattr(node, "GetNumberOfDisplayNodes"):
        helpers += [node.GetNthDisplayNode(i) for i in range(node.GetNumberOfDisplayNodes())]
    if hasattr(node, "GetNumberOfStorageNodes"):
        helpers += [node.GetNthStorageNode(i) for i in range(node.GetNumberOfStorageNodes())]
    scene.RemoveNode(node)
    for helper in helpers:
        if helper is not None and helper.GetScene() is scene:
            scene.RemoveNode(helper)


# ------------------------------------------------------------------------ progress
class _Progress:
    """Maps the stages of a process() call to (message, overall fraction in [0, 1]) reports and
    checks the cancel flag between stages; `should_cancel()` True raises the library's Cancelled."""

    def __init__(self, report=None, should_cancel=None, samplers: int = 1):
        self.report, self.should_cancel, self.samplers = report, should_cancel, max(samplers, 1)

    def step(self, message: str, fraction: float) -> None:
        if self.should_cancel is not None and self.should_cancel():
            from PatchSamplerLib.pipeline import Cancelled
            raise Cancelled(f"cancelled while {message.lower()}")
        if self.report is not None:
            self.report(message, min(max(fraction, 0.0), 1.0))

    def for_sampler(self, index: int, sampler: str):
        """A progress(stage, fraction) callback for the library's run of the `index`-th sampler."""
        width = 0.8 / self.samplers
        start = 0.1 + index * width

        def progress(stage: str, fraction: float) -> None:
            if self.report is not None:
                self.report(f"{SAMPLER_LABELS[sampler]}: {STAGE_TEXT.get(stage, stage)}", start + width * fraction)
        return progress


# ------------------------------------------------------------------------ reconstruction from slices
SLICE_ORIENTATIONS = {"sagittal": 0, "coronal": 1, "axial": 2}     # the RAS axis normal to those slices


def grid_axis(orientation, ijk_to_ras: np.ndarray) -> int:
    """The segment grid's axis (0, 1, 2 = i, j, k) the slices are stacked along: an axis number
    as is, or "axial" / "coronal" / "sagittal": the grid axis closest to S / A / R."""
    if orientation in (0, 1, 2):
        return int(orientation)
    if orientation not in SLICE_ORIENTATIONS:
        raise ValueError(f"slice orientation must be axial, coronal, sagittal or 0, 1, 2, got {orientation!r}")
    direction = ijk_to_ras[:3, :3] / np.linalg.norm(ijk_to_ras[:3, :3], axis=0)
    return int(np.argmax(np.abs(direction[SLICE_ORIENTATIONS[orientation]])))


def mask_on_grid(segmentation_node, segment_id: str, grid: SegmentGrid) -> np.ndarray:
    """Another segment of the same segmentation as an (I, J, K) mask on `grid` (voxels outside the
    grid dropped). Raises ValueError when it is empty or not on the grid's lattice."""
    other = read_segment_grid(segmentation_node, segment_id)
    offset = lattice_offset(grid.ijk_to_ras, other.ijk_to_ras)
    if offset is None:
        raise ValueError("the reference segment does not lie on the input segment's voxel grid")
    out = np.zeros(grid.mask.shape, bool)
    lo, hi = np.maximum(offset, 0), np.minimum(offset + np.array(other.mask.shape), grid.mask.shape)
    if np.any(hi <= lo):
        return out
    src = tuple(slice(a - o, b - o) for a, b, o in zip(lo, hi, offset))
    out[tuple(slice(a, b) for a, b in zip(lo, hi))] = other.mask[src]
    return out


@dataclass
class SliceRun:
    """What process_slices() produced: the library's SparseResult, the sparse input it used, the
    output segmentation (in the scene), the input as a library volume, its grid and the slice axis."""
    result: object                   # PatchSamplerLib.sparse_reconstruction.SparseResult
    sparse: object                   # PatchSamplerLib.sparse.SparseInput
    segmentation_node: object        # "<segment> - reconstruction from slices"
    volume: object
    grid: SegmentGrid
    axis: int


# ------------------------------------------------------------------------ the logic
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
                sampler: str = "fps", prior="kidney", device: str = "auto", seed: int = 0, sampler_model=None,
                fit_lr: float | None = None, progress=None, should_cancel=None) -> ProcessResult:
        """Run the sampler(s) on one segment and write the results as MRML nodes.

        segmentationNode, segmentId: the input segment (never modified).
        n, k, t: patches, patch size in voxels (odd), latent-fit steps. sampler: "learned",
        "fps", "random" or "all" (compare: every available sampler).
        prior: "kidney", "vertebra", a prior file or a loaded ShapePrior. device: "auto" | "cpu" |
        "cuda". seed: reproducibility of the samplers and the latent initialisation.
        progress(message, fraction in [0, 1]) reports; should_cancel() -> True stops the run with
        PatchSamplerLib.pipeline.Cancelled.

        Per sampler, one output segmentation "<segment> - <Sampler> patches" and one markups point
        list "<segment> - <Sampler> patch centres" replace that sampler's previous outputs for this
        segment; the table "<segment> - PatchSampler metrics" gets that sampler's row. Everything
        is built outside the scene and added at the end: a failed or cancelled run leaves the scene
        as it was. Raises ValueError (incl. SamplerUnavailable) with user-facing messages."""
        check_request(n, k, t, sampler)
        scene, shape_prior = self.scene_and_prior(segmentationNode, prior, device, progress)
        samplers, skipped, learned = samplers_to_run(sampler, n, k, t, shape_prior, sampler_model)
        steps = _Progress(progress, should_cancel, len(samplers))
        steps.step("Reading the segment", 0.05)
        grid = read_segment_grid(segmentationNode, segmentId, frame_mm=shape_prior.extent_mm)
        volume = grid.to_volume()
        segment_name = segmentationNode.GetSegmentation().GetSegment(segmentId).GetName()

        results = {}
        for index, name in enumerate(samplers):
            steps.step(f"{SAMPLER_LABELS[name]}: starting", 0.1 + 0.8 * index / len(samplers))
            results[name] = self.run_sampler(volume, name, n, k, t, shape_prior, device, seed, learned, fit_lr,
                                             steps.for_sampler(index, name), should_cancel)

        steps.step("Creating the output nodes", 0.9)
        runs = [SamplerRun(name, result, *self.build_sampler_outputs(segmentationNode, segmentId, segment_name, name,
                                                                     grid, result, k))
                for name, result in results.items()]
        rows = [metrics_row(segment_name, name, n, k, t, seed, result) for name, result in results.items()]
        rows += [metrics_row(segment_name, name, n, k, t, seed, note=reason) for name, reason in skipped.items()]
        old_tables = find_outputs(scene, segmentationNode, segmentId, "metrics")
        table = build_metrics_table(f"{segment_name} - PatchSampler metrics",
                                    merged_rows(table_rows(old_tables[0]) if old_tables else [], rows))
        tag_output(table, "metrics", segmentationNode, segmentId)

        steps.step("Adding the results to the scene", 0.98)
        old = old_tables + [node for name in results for role in ("reconstruction", "centres")
                            for node in find_outputs(scene, segmentationNode, segmentId, role, name)]
        commit_nodes(scene, [node for run in runs for node in (run.segmentation_node, run.centres_node)] + [table], old)
        if progress is not None:
            progress("Done", 1.0)
        return ProcessResult(runs, table, skipped, volume, grid)

    def process_slices(self, segmentationNode, segmentId: str, orientation="axial", step: int | None = None,
                       referenceSegmentId: str | None = None, prior="vertebra", device: str = "auto", seed: int = 0,
                       steps: int | None = None, fit_lr: float | None = None, progress=None,
                       should_cancel=None) -> SliceRun:
        """Reconstruct a whole shape from a segment drawn on a few slices [A].

        orientation: "axial" / "coronal" / "sagittal" (the segment grid's axis closest to S / A /
        R) or a grid axis 0 / 1 / 2. Without `step`, the known slices are those along that axis
        holding any voxel of the segment (the others are unknown, not background); with `step`,
        every step-th slice of a full segment is kept (a simulation) and the full segment is the
        reference. referenceSegmentId: a full segmentation of the same shape to score against.
        The output segmentation "<segment> - reconstruction from slices" (segments Reconstruction
        and, with a reference, Intersection / Extra / Missing) replaces the previous one of this
        segment; the input segment is never modified, and a failed or cancelled run leaves the
        scene as it was. Raises ValueError with user-facing messages."""
        from PatchSamplerLib.sparse import every_nth_slice, labelled_slices
        scene, shape_prior = self.scene_and_prior(segmentationNode, prior, device, progress)
        grid = read_segment_grid(segmentationNode, segmentId, frame_mm=shape_prior.extent_mm)
        axis = grid_axis(orientation, grid.ijk_to_ras)
        if step is not None:
            sparse, reference = every_nth_slice(grid.mask, step, axis, seed=seed), grid.mask
        else:
            sparse, reference = labelled_slices(grid.mask, axis), None
        if referenceSegmentId:
            reference = mask_on_grid(segmentationNode, referenceSegmentId, grid)
        volume = grid.to_volume()
        result = self.run_slices(volume, sparse, shape_prior, device, seed, steps, fit_lr, reference,
                                 progress, should_cancel)
        segment_name = segmentationNode.GetSegmentation().GetSegment(segmentId).GetName()
        node = slicer.vtkMRMLSegmentationNode()
        node.SetName(f"{segment_name} - reconstruction from slices")
        node.GetSegmentation().SetSourceRepresentationName(
            slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName())
        add_result_segments(node, grid, result.reconstruction, result.errors)
        tag_output(node, "slices", segmentationNode, segmentId)
        commit_nodes(scene, [node], find_outputs(scene, segmentationNode, segmentId, "slices"))
        if progress is not None:
            progress("Done", 1.0)
        return SliceRun(result, sparse, node, volume, grid, axis)

    @staticmethod
    def run_slices(volume, sparse, prior, device: str, seed: int, steps, fit_lr, reference, progress, should_cancel):
        """The library's reconstruct_sparse with the module's defaults (None = the library's)."""
        import warnings
        from PatchSamplerLib.sparse_reconstruction import reconstruct_sparse
        options = {key: value for key, value in (("steps", steps), ("fit_lr", fit_lr)) if value is not None}
        report = None if progress is None else (lambda stage, fraction: progress(
            f"Slices: {STAGE_TEXT.get(stage, stage)}", fraction))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return reconstruct_sparse(volume, sparse, prior, seed=seed, device=device, reference=reference,
                                      progress=report, should_cancel=should_cancel, **options)

    def scene_and_prior(self, segmentationNode, prior, device: str, progress) -> tuple:
        """(the input's scene, the loaded ShapePrior); ValueError when the node is in no scene."""
        scene = segmentationNode.GetScene()
        if scene is None:
            raise ValueError(f"{segmentationNode.GetName()} is not in a scene")
        if progress is not None:
            progress("Loading the prior", 0.0)
        return scene, self.load_prior(prior, device)

    @staticmethod
    def load_prior(prior, device: str = "auto"):
        """A ShapePrior from a bundled name, a file or a ShapePrior (returned as is)."""
        from PatchSamplerLib.devices import resolve_device
        from PatchSamplerLib.inr import ShapePrior
        resolve_device(device)                    # fail before any work on a missing CUDA
        return prior if isinstance(prior, ShapePrior) else ShapePrior.load(str(prior))

    @staticmethod
    def run_sampler(volume, sampler: str, n: int, k: int, t: int, prior, device: str, seed: int, learned,
                    fit_lr, progress, should_cancel):
        """The library's reconstruct() with this sampler's centres (`learned`: the SamplerModel
        for "learned"); sampling time included."""
        import warnings
        from PatchSamplerLib.pipeline import reconstruct
        clock = time.perf_counter()
        centres, generated = sampler_centres(sampler, volume, n, seed, learned)
        sampling = time.perf_counter() - clock
        options = {} if fit_lr is None else {"fit_lr": fit_lr}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")            # the result carries them (table "Note")
            result = reconstruct(volume, n, k, t, sampler=sampler, prior=prior, seed=seed, device=device,
                                 centres=centres, generated=generated, progress=progress,
                                 should_cancel=should_cancel, **options)
        result.timings["sampling"] += sampling
        result.timings["total"] += sampling
        return result

    @staticmethod
    def build_sampler_outputs(segmentation_node, segment_id: str, segment_name: str, sampler: str,
                              grid: SegmentGrid, result, k: int) -> tuple:
        """(result segmentation, centres point list) of one sampler, tagged, not in any scene."""
        label = SAMPLER_LABELS[sampler]
        segmentation = build_result_segmentation(f"{segment_name} - {label} patches", grid, result, k)
        tag_output(segmentation, "reconstruction", segmentation_node, segment_id, sampler)
        centres = build_centres_node(f"{segment_name} - {label} patch centres", grid, result.centres)
        tag_output(centres, "centres", segmentation_node, segment_id, sampler)
        return segmentation, centres

    @staticmethod
    def render_snapshot(segmentation_nodes, png_path, size=(800, 600), view_from=(0.0, 1.0, 0.0),
                        zoom: float = 1.1) -> np.ndarray:
        """Render segmentation nodes as Slicer's 3-D view shows them, offscreen, into a PNG.

        view_from: RAS direction from the shapes' centre towards the camera (default anterior, as
        Slicer's default 3-D view), superior up. A private scene holds copies of the nodes (with
        their display settings), so the caller's scene, views and layout are untouched. Returns the
        picture, (H, W, 3) uint8 RGB, top row first. Needs an OpenGL context (Mesa through EGL when
        there is no display)."""
        return render_segmentations(segmentation_nodes, png_path, size, view_from, zoom)


def _register_as_hidden_module(module) -> None:
    module.title = "PatchSampler logic"
    module.categories = []
    module.dependencies = []
    module.contributors = ["PatchSampler developers"]
    module.helpText = "The Qt-free logic of the PatchSampler module (no user interface of its own)."
    module.acknowledgementText = ""
    module.hidden = True


# ------------------------------------------------------------------------ offscreen 3-D snapshot
THREE_D_DISPLAYABLE_MANAGERS = ("vtkMRMLCameraDisplayableManager", "vtkMRMLViewDisplayableManager",
                                "vtkMRMLModelDisplayableManager", "vtkMRMLSegmentationsDisplayableManager3D")


def copy_into_scene(scene, segmentation_node):
    """A copy of a segmentation node (segments, closed surfaces, display settings) in `scene`."""
    copy = slicer.vtkMRMLSegmentationNode()
    scene.AddNode(copy)
    copy.GetSegmentation().DeepCopy(segmentation_node.GetSegmentation())
    copy.CreateClosedSurfaceRepresentation()
    copy.CreateDefaultDisplayNodes()
    if segmentation_node.GetDisplayNode() is not None:
        copy.GetDisplayNode().CopyContent(segmentation_node.GetDisplayNode())
    copy.GetDisplayNode().SetVisibility3D(True)
    return copy


def render_segmentations(segmentation_nodes, png_path, size=(800, 600), view_from=(0.0, 1.0, 0.0),
                         zoom: float = 1.1) -> np.ndarray:
    """See PatchSamplerLogic.render_snapshot. The recipe: an application logic and a view logic on
    a private scene, a displayable-manager group from a private factory (Slicer's singleton
    factory, used by the application's own views, is not touched), a render window with an
    initialised interactor (the displayable managers need one) and a white background."""
    scene = slicer.vtkMRMLScene()
    app_logic = slicer.vtkSlicerApplicationLogic()
    app_logic.SetMRMLScene(scene)
    app_logic.SetSliceLogics(vtk.vtkCollection())
    app_logic.SetViewLogics(vtk.vtkCollection())
    for node in segmentation_nodes:
        copy_into_scene(scene, node)

    renderer, window = vtk.vtkRenderer(), vtk.vtkRenderWindow()
    window.SetOffScreenRendering(1)
    window.SetSize(*size)
    window.AddRenderer(renderer)
    interactor = vtk.vtkGenericRenderWindowInteractor()
    interactor.SetRenderWindow(window)
    interactor.Initialize()
    factory = slicer.vtkMRMLDisplayableManagerFactory()
    factory.SetMRMLApplicationLogic(app_logic)
    for name in THREE_D_DISPLAYABLE_MANAGERS:
        factory.RegisterDisplayableManager(name)
    group = slicer.vtkMRMLDisplayableManagerGroup()
    group.Initialize(factory, renderer)
    view_logic = slicer.vtkMRMLViewLogic()
    view_logic.SetMRMLApplicationLogic(app_logic)
    app_logic.GetViewLogics().AddItem(view_logic)
    view_logic.SetMRMLScene(scene)
    view = view_logic.AddViewNode("PatchSamplerSnapshot")
    view.SetBoxVisible(0)
    view.SetAxisLabelsVisible(0)
    view.SetBackgroundColor(1, 1, 1)
    view.SetBackgroundColor2(1, 1, 1)
    group.SetMRMLDisplayableNode(view)

    aim_camera(renderer, view_from, zoom)
    window.Render()
    pixels = _window_pixels(window, png_path)
    group.SetMRMLDisplayableNode(None)
    window.Finalize()
    scene.Clear(1)
    return pixels


def aim_camera(renderer, view_from, zoom: float) -> None:
    """Look at everything shown from the RAS direction `view_from`, superior up, then zoom."""
    renderer.ResetCamera()
    camera = renderer.GetActiveCamera()
    focal = np.array(camera.GetFocalPoint())
    distance = camera.GetDistance()
    direction = np.asarray(view_from, float) / np.linalg.norm(view_from)
    camera.SetPosition(*(focal + distance * direction))
    camera.SetViewUp(0.0, 0.0, 1.0)
    camera.OrthogonalizeViewUp()
    renderer.ResetCamera()
    camera.Zoom(zoom)
    renderer.ResetCameraClippingRange()


def _window_pixels(window, png_path) -> np.ndarray:
    grab = vtk.vtkWindowToImageFilter()
    grab.SetInput(window)
    grab.ReadFrontBufferOff()
    grab.Update()
    writer = vtk.vtkPNGWriter()
    writer.SetFileName(str(png_path))
    writer.SetInputConnection(grab.GetOutputPort())
    writer.Write()
    image = grab.GetOutput()
    width, height, _ = image.GetDimensions()
    rgb = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(height, width, -1)[..., :3]
    return np.ascontiguousarray(rgb[::-1])
