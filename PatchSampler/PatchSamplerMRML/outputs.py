"""The output nodes of a run and their life in the scene.

Built outside any scene: the result segmentation (patch boxes, reconstruction, error segments on
the input's grid) and the patch-centre point list. Every output is tagged with node attributes
naming its input (segmentation node, segment, sampler) and role, so that a new run finds and
replaces the outputs of the previous one; `commit_nodes` adds new nodes (with their display
styles) and removes old ones, or leaves the scene as it was when adding fails.

Imports slicer, vtk and numpy; PatchSamplerLib only inside the functions that need it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import vtk

import slicer

from PatchSamplerMRML.geometry import SegmentGrid, array_to_image, grid_index_to_ras, serialized_geometry

# node attributes that identify the outputs of a (segmentation node, segment, sampler)
ATTRIBUTE_ROLE = "PatchSampler.Role"          # "reconstruction" | "centres" | "metrics" | "slices"
ATTRIBUTE_INPUT = "PatchSampler.InputSegmentationID"
ATTRIBUTE_SEGMENT = "PatchSampler.SegmentID"
ATTRIBUTE_SAMPLER = "PatchSampler.Sampler"

PATCH_COLOUR = (0.86, 0.1, 0.1)                       # red, as the patch boxes of the CLI figure
RECONSTRUCTION_COLOUR = (0.3, 0.75, 0.35)
# labelmap -> surface smoothing of the outputs: Slicer's default 0.5 rounds an 11-voxel box into a
# ball and erases one-voxel-thin errors; 0.15 keeps boxes boxy and errors visible, still smooth
SURFACE_SMOOTHING = 0.15

ERROR_SEGMENTS = {"Intersection": 1, "Extra": 2, "Missing": 3}     # segment -> code of metrics.error_labels


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
    from PatchSamplerLib.reporting.overview import ERROR_COLOURS
    return {"Patch": SegmentStyle(PATCH_COLOUR, 0.3, True, False),
            "Reconstruction": SegmentStyle(RECONSTRUCTION_COLOUR, 0.5, False, False),
            "Extra": SegmentStyle(tuple(ERROR_COLOURS[2]), 0.35),
            "Missing": SegmentStyle(tuple(ERROR_COLOURS[3]), 0.9),
            "Intersection": SegmentStyle(tuple(ERROR_COLOURS[1]), 0.8)}


# ------------------------------------------------------------------------ building nodes
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


def output_base_name(segmentation_node, segment_id: str) -> str:
    """What the outputs of a segment are named after: its name, or "<node> <name>" for Slicer's
    default names ("Segment_1", ...), which every dropped-in file has -- so the outputs of two
    files' segments do not share a name ("kidney_left Segment_1 - FPS patches")."""
    name = segmentation_node.GetSegmentation().GetSegment(segment_id).GetName()
    return f"{segmentation_node.GetName()} {name}" if re.fullmatch(r"Segment(_\d+)?", name) else name


def build_result_segmentation(name: str, grid: SegmentGrid, reconstruction: np.ndarray,
                              errors: np.ndarray | None = None, boxes=()):
    """A vtkMRMLSegmentationNode (not in any scene), all segments on `grid`'s lattice: "Patch 1"..
    "Patch N" (one per inclusive voxel box (lo (3,), hi (3,)) of `boxes`, possibly reaching past
    the grid), "Reconstruction" ((I, J, K) bool) and, with `errors` ((I, J, K) codes of
    metrics.error_labels), "Intersection", "Extra", "Missing". Reference geometry = `grid`;
    closed surfaces created."""
    styles = output_styles()
    node = slicer.vtkMRMLSegmentationNode()
    node.SetName(name)
    segmentation = node.GetSegmentation()
    segmentation.SetSourceRepresentationName(slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName())
    for i, (lo, hi) in enumerate(boxes):
        add_labelmap_segment(segmentation, f"Patch {i + 1}", np.ones(tuple(np.asarray(hi) - lo + 1), bool),
                             grid.ijk_to_ras, lo, styles["Patch"])
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
    return node


def build_centres_node(name: str, grid: SegmentGrid, centres: np.ndarray):
    """A locked vtkMRMLMarkupsFiducialNode (not in any scene): one control point "P<i>" per patch
    centre ((N, 3) voxel index of `grid`), in world RAS."""
    node = slicer.vtkMRMLMarkupsFiducialNode()
    node.SetName(name)
    for i, ras in enumerate(grid_index_to_ras(grid, centres)):
        node.AddControlPoint(vtk.vtkVector3d(*ras), f"P{i + 1}")
    node.SetLocked(True)
    return node


# ------------------------------------------------------------------------ tagging and finding
def tag_output(node, role: str, segmentation_node, segment_id: str, sampler: str = "") -> None:
    """Mark `node` as the `role` output of (segmentation node, segment[, sampler])."""
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
        if (node.GetAttribute(ATTRIBUTE_ROLE) == role
                and node.GetAttribute(ATTRIBUTE_INPUT) == segmentation_node.GetID()
                and node.GetAttribute(ATTRIBUTE_SEGMENT) == segment_id
                and (not sampler or node.GetAttribute(ATTRIBUTE_SAMPLER) == sampler)):
            found.append(node)
    return found


# ------------------------------------------------------------------------ display and commit
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
    """Display node of a centres point list: patch red, large labels (call once in a scene)."""
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
