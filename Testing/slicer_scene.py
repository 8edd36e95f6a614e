"""Real MRML outside the Slicer application (`slicer-core` from PyPI), shared by the tests of the
module's Qt-free logic: scene set-up, segmentations from numpy masks, reading segments back.

Set-up order matters (see ../shared/slicer-core/README.md): converter rules are registered
before any segmentation exists; the scene gets an application logic with colour logic and a
Segmentations module logic; `slicer.mrmlScene` / `slicer.modules` are assigned for the few
`slicer.util` helpers that read them. Rendering uses Mesa through EGL when there is no display.
"""
from __future__ import annotations

import os
import sys
import types
from pathlib import Path

import numpy as np

if not os.environ.get("DISPLAY"):
    os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")   # before VTK makes a window

import vtk  # noqa: E402
from vtk.util import numpy_support  # noqa: E402

import slicer  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
MODULE_DIR = ROOT / "PatchSampler"
for folder in (ROOT, MODULE_DIR):               # `import PatchSamplerLib`, `PatchSamplerLogic`, `PatchSamplerMRML`
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

CONVERTER_RULES = ("vtkBinaryLabelmapToClosedSurfaceConversionRule", "vtkClosedSurfaceToBinaryLabelmapConversionRule",
                   "vtkClosedSurfaceToFractionalLabelmapConversionRule",
                   "vtkFractionalLabelmapToClosedSurfaceConversionRule")
_rules_registered = False


def register_converter_rules() -> None:
    """Once per process, before the first segmentation node is created."""
    global _rules_registered
    if not _rules_registered:
        factory = slicer.vtkSegmentationConverterFactory.GetInstance()
        for name in CONVERTER_RULES:
            factory.RegisterConverterRule(getattr(slicer, name)())
        _rules_registered = True


def new_scene():
    """A fresh vtkMRMLScene with application, colour and Segmentations logic, made current for
    slicer.util (slicer.mrmlScene, slicer.modules.segmentations.logic())."""
    register_converter_rules()
    scene = slicer.vtkMRMLScene()
    app_logic = slicer.vtkSlicerApplicationLogic()
    app_logic.SetMRMLScene(scene)
    color_logic = app_logic.GetColorLogic()
    color_logic.SetMRMLScene(scene)
    color_logic.AddDefaultColorNodes()
    app_logic.SetModuleLogic("Colors", color_logic)
    segmentations_logic = slicer.vtkSlicerSegmentationsModuleLogic()
    segmentations_logic.SetMRMLScene(scene)
    segmentations_logic.SetMRMLApplicationLogic(app_logic)
    app_logic.SetModuleLogic("Segmentations", segmentations_logic)
    scene._patchsampler_keep = (app_logic, segmentations_logic)       # keep the logics alive with the scene
    slicer.mrmlScene = scene
    slicer.modules = types.SimpleNamespace(segmentations=types.SimpleNamespace(logic=lambda: segmentations_logic))
    return scene


def rotation_matrix(rx: float, ry: float, rz: float) -> np.ndarray:
    """(3, 3) proper rotation from angles in radians about x, then y, then z (extrinsic)."""
    from scipy.spatial.transform import Rotation
    return Rotation.from_euler("xyz", [rx, ry, rz]).as_matrix()


def ijk_to_ras_matrix(spacing, direction_ras, origin_ras) -> np.ndarray:
    """(4, 4) IJK-to-RAS: columns = direction * spacing, last column = RAS of voxel (0, 0, 0)."""
    m = np.eye(4)
    m[:3, :3] = np.asarray(direction_ras, float) * np.asarray(spacing, float)
    m[:3, 3] = origin_ras
    return m


def add_segmentation(scene, mask_ijk: np.ndarray, ijk_to_ras: np.ndarray, name: str = "Input",
                     segment_name: str = "Shape", colour=(0.9, 0.8, 0.5), reference_geometry: bool = True):
    """A segmentation node in `scene` with one binary-labelmap segment holding `mask_ijk`
    ((I, J, K) bool, i-j-k order) on the grid `ijk_to_ras`. With `reference_geometry` the
    segmentation's reference image geometry is that grid (as for a segmentation drawn on an
    image in the Segment Editor). Returns (node, segment id)."""
    from PatchSamplerMRML.geometry import SegmentGrid, array_to_image, serialized_geometry
    node = slicer.vtkMRMLSegmentationNode()
    node.SetName(name)
    scene.AddNode(node)
    node.CreateDefaultDisplayNodes()
    segment = slicer.vtkSegment()
    segment.SetName(segment_name)
    segment.SetColor(*colour)
    segment.AddRepresentation(slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName(),
                              array_to_image(mask_ijk, ijk_to_ras))
    segmentation = node.GetSegmentation()
    segmentation.AddSegment(segment)
    if reference_geometry:
        segmentation.SetConversionParameter(slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName(),
                                            serialized_geometry(SegmentGrid(mask_ijk, ijk_to_ras)))
    return node, segmentation.GetNthSegmentID(0)


def load_segmentation(scene, path, name: str | None = None):
    """Load a labelmap file (.nii.gz, .nrrd, .seg.nrrd) as a segmentation node through
    vtkMRMLSegmentationStorageNode, as Slicer's "load as segmentation" does."""
    node = slicer.vtkMRMLSegmentationNode()
    node.SetName(name or Path(path).name.split(".")[0])
    scene.AddNode(node)
    storage = slicer.vtkMRMLSegmentationStorageNode()
    scene.AddNode(storage)
    node.SetAndObserveStorageNodeID(storage.GetID())
    storage.SetFileName(str(path))
    if not storage.ReadData(node):
        raise RuntimeError(f"could not read {path} as a segmentation")
    node.CreateDefaultDisplayNodes()
    return node


def save_segmentation(scene, node, path) -> None:
    """Write a segmentation node to a .seg.nrrd file through vtkMRMLSegmentationStorageNode."""
    storage = slicer.vtkMRMLSegmentationStorageNode()
    scene.AddNode(storage)
    storage.SetFileName(str(path))
    if not storage.WriteData(node):
        raise RuntimeError(f"could not write {path}")
    scene.RemoveNode(storage)


def segment_on_world_grid(node, segment_id: str, ijk_to_ras: np.ndarray, shape) -> np.ndarray:
    """A segment's voxels placed on a reference grid ((I, J, K) bool), by world position of the
    voxel centres: every segment voxel must lie on a voxel centre of the reference grid (fails
    otherwise), voxels outside the grid are dropped. Checks geometry, not just array values."""
    from PatchSamplerMRML.geometry import segment_mask_local
    mask, segment_ijk_to_ras = segment_mask_local(node, segment_id)
    voxels = np.argwhere(mask)
    ras = voxels @ segment_ijk_to_ras[:3, :3].T + segment_ijk_to_ras[:3, 3]
    index = (ras - ijk_to_ras[:3, 3]) @ np.linalg.inv(ijk_to_ras[:3, :3]).T
    rounded = np.round(index).astype(int)
    assert np.allclose(index, rounded, atol=1e-3), "segment voxels are not on the reference grid"
    out = np.zeros(tuple(shape), bool)
    inside = np.all((rounded >= 0) & (rounded < np.array(shape)), axis=1)
    out[tuple(rounded[inside].T)] = True
    return out


def segment_names(node) -> list[str]:
    segmentation = node.GetSegmentation()
    return [segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())]


def segment_id_by_name(node, name: str) -> str:
    return node.GetSegmentation().GetSegmentIdBySegmentName(name)


def node_ids(scene) -> list[str]:
    """IDs of every node of the scene, in order (the 'node list' the tests compare)."""
    return [scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes())]


def segment_fingerprint(node, segment_id: str) -> tuple:
    """Everything that identifies a segment's labelmap: extent, image-to-world matrix, scalars."""
    image = node.GetSegmentation().GetSegment(segment_id).GetRepresentation(
        slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName())
    matrix = vtk.vtkMatrix4x4()
    image.GetImageToWorldMatrix(matrix)
    scalars = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).copy()
    return (tuple(image.GetExtent()), tuple(matrix.GetElement(r, c) for r in range(4) for c in range(4)),
            scalars.tobytes())
