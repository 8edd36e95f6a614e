"""Segments <-> numpy arrays on voxel grids in world RAS, and the grid a run uses.

Coordinates. Slicer works in RAS, the library in LPS with (i, j, k) = (x, y, z) arrays
(`PatchSamplerLib/volume.py`). A segment's binary labelmap is read with its IJK-to-RAS matrix,
the segmentation's parent transform applied (so results are in world coordinates and carry no
parent transform), and converted once: LPS = diag(-1, -1, 1) RAS. Every output labelmap uses
that same IJK-to-RAS matrix, so results lie voxel for voxel on the input's grid.

Grid. The reconstruction is computed on the segmentation's reference image geometry -- the
image it was drawn on or the file it was loaded from, i.e. the grid the command line uses for
the same file -- whenever the segment's labelmap lies on that lattice. Otherwise the segment's
own labelmap grid is extended to cover the prior's frame around the shape [T §3.5] wherever the
library puts it (along the anatomical axes it runs in, `PatchSamplerLib.orientation`), so that the
reconstruction is never clipped by a tight labelmap extent and does not depend on the order in
which the labelmap's axes are stored.

Imports slicer, vtk and numpy; PatchSamplerLib only inside the functions that need it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import vtk
from vtk.util import numpy_support

import slicer

LPS_FROM_RAS = np.diag([-1.0, -1.0, 1.0])    # the same matrix maps LPS -> RAS
SLICE_ORIENTATIONS = {"sagittal": 0, "coronal": 1, "axial": 2}     # the RAS axis normal to those slices


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


# ------------------------------------------------------------------------ matrices and images
def vtk_matrix_to_array(matrix: vtk.vtkMatrix4x4) -> np.ndarray:
    """vtkMatrix4x4 -> (4, 4) float array."""
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def array_to_vtk_matrix(array: np.ndarray) -> vtk.vtkMatrix4x4:
    """(4, 4) array -> vtkMatrix4x4."""
    matrix = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            matrix.SetElement(r, c, float(array[r, c]))
    return matrix


def _translation(offset) -> np.ndarray:
    """(4, 4) homogeneous translation by the (3,) `offset`."""
    m = np.eye(4)
    m[:3, 3] = offset
    return m


def image_grid(image) -> tuple[tuple[int, int, int], np.ndarray]:
    """(shape (I, J, K), (4, 4) IJK-to-world matrix whose index 0 is the first voxel of the
    extent) of a vtkOrientedImageData; a shape with a 0 or negative size for an empty extent."""
    e = image.GetExtent()
    matrix = vtk.vtkMatrix4x4()
    image.GetImageToWorldMatrix(matrix)
    shape = (e[1] - e[0] + 1, e[3] - e[2] + 1, e[5] - e[4] + 1)
    return shape, vtk_matrix_to_array(matrix) @ _translation((e[0], e[2], e[4]))


def image_to_array(image) -> tuple[np.ndarray, np.ndarray]:
    """vtkOrientedImageData -> ((I, J, K) scalars in (i, j, k) order, (4, 4) IJK-to-world matrix
    whose index 0 is the first voxel of the image's extent)."""
    shape, ijk_to_world = image_grid(image)
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


def serialized_geometry(grid: SegmentGrid) -> str:
    """The grid as a segmentation's "Reference image geometry" conversion parameter."""
    geometry = slicer.vtkOrientedImageData()
    geometry.SetExtent(0, grid.mask.shape[0] - 1, 0, grid.mask.shape[1] - 1, 0, grid.mask.shape[2] - 1)
    geometry.SetImageToWorldMatrix(array_to_vtk_matrix(grid.ijk_to_ras))
    return slicer.vtkSegmentationConverter.SerializeImageGeometry(geometry)


def grid_index_to_ras(grid: SegmentGrid, index: np.ndarray) -> np.ndarray:
    """(..., 3) voxel index of the grid -> (..., 3) world RAS mm."""
    return np.asarray(index, float) @ grid.ijk_to_ras[:3, :3].T + grid.ijk_to_ras[:3, 3]


# ------------------------------------------------------------------------ segment -> grid
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
    shape, ijk_to_local = image_grid(geometry)
    return None if min(shape) <= 0 else (shape, ijk_to_local)


def lattice_offset(ijk_to_ras: np.ndarray, other_ijk_to_ras: np.ndarray, tol: float = 1e-3) -> np.ndarray | None:
    """Integer (3,) index of `other`'s voxel 0 in the first grid when both grids share one
    lattice (same axes and spacing, voxel centres on each other), else None."""
    if not np.allclose(ijk_to_ras[:3, :3], other_ijk_to_ras[:3, :3], atol=tol * np.abs(ijk_to_ras[:3, :3]).max()):
        return None
    index = np.linalg.solve(ijk_to_ras[:3, :3], other_ijk_to_ras[:3, 3] - ijk_to_ras[:3, 3])
    rounded = np.round(index)
    return rounded.astype(int) if np.allclose(index, rounded, atol=tol) else None


def pad_to_box(mask: np.ndarray, ijk_to_ras: np.ndarray, lo, hi) -> tuple[np.ndarray, np.ndarray]:
    """The mask on the grid box [min(lo, 0), max(hi, shape - 1)] of the same lattice, and that
    box's IJK-to-RAS (its voxel 0 at index min(lo, 0) of the input)."""
    lo = np.minimum(np.asarray(lo, int), 0)
    hi = np.maximum(np.asarray(hi, int), np.array(mask.shape) - 1)
    out = np.zeros(tuple(hi - lo + 1), bool)
    at = -lo
    out[at[0]:at[0] + mask.shape[0], at[1]:at[1] + mask.shape[1], at[2]:at[2] + mask.shape[2]] = mask
    return out, ijk_to_ras @ _translation(lo)


def prior_frame_box(mask: np.ndarray, ijk_to_ras: np.ndarray, frame_mm) -> tuple[np.ndarray, np.ndarray]:
    """Inclusive (lo (3,), hi (3,)) voxel index box, unclipped, of the (I, J, K) mask's grid
    (`ijk_to_ras` (4, 4), world RAS) that holds the prior's frame wherever the library puts it
    [T §3.5]: `frame_mm` (3,) wide along L, P, S on the anatomical grid of
    `PatchSamplerLib.orientation`, centred on the bounding box of the mask's main components
    (`pipeline.reconstruct`) or of all of it (`sparse.reconstruct_sparse`): the union of both
    boxes, mapped back to the mask's own (i, j, k) index."""
    from PatchSamplerLib.method.components import main_components
    from PatchSamplerLib.method.frame import frame_box
    from PatchSamplerLib.orientation import anatomical_reorientation
    from PatchSamplerLib.volume import bbox_centre_mm
    spacing = np.linalg.norm(ijk_to_ras[:3, :3], axis=0)
    orient = anatomical_reorientation(LPS_FROM_RAS @ ijk_to_ras[:3, :3] / spacing, mask.shape)
    anatomical, anatomical_spacing = orient.array_to_anatomical(mask), spacing[list(orient.perm)]
    corners = [orient.index_from_anatomical(np.array(frame_box(bbox_centre_mm(m, anatomical_spacing), frame_mm,
                                                               anatomical_spacing)))
               for m in (anatomical, main_components(anatomical))]
    corners = np.round(np.concatenate(corners)).astype(int)
    return corners.min(axis=0), corners.max(axis=0)


def linear_to_world(segmentation_node) -> np.ndarray | None:
    """(4, 4) local-to-world matrix of the node's parent transforms (identity without one), or
    None when they are not linear."""
    transform = segmentation_node.GetParentTransformNode()
    if transform is None:
        return np.eye(4)
    if not transform.IsTransformToWorldLinear():
        return None
    matrix = vtk.vtkMatrix4x4()
    transform.GetMatrixTransformToWorld(matrix)
    return vtk_matrix_to_array(matrix)


def read_segment_grid(segmentation_node, segment_id: str, frame_mm=None) -> SegmentGrid:
    """The segment as a world-RAS SegmentGrid on the grid described in the module docstring.

    frame_mm: (3,) size of the prior's frame in mm along L, P, S; used to extend a labelmap that
    has no reference geometry (under a non-linear parent transform, to a cube of the largest
    size, as its axes in the world are not known before resampling). Raises ValueError for an
    unknown or empty segment."""
    mask, ijk_to_local = segment_mask_local(segmentation_node, segment_id)
    name = segmentation_node.GetSegmentation().GetSegment(segment_id).GetName()
    if not mask.any():
        raise ValueError(f"segment {name!r} is empty: nothing to reconstruct")
    reference = reference_grid(segmentation_node)
    offset = None if reference is None else lattice_offset(ijk_to_local, reference[1])
    if offset is not None:
        mask, ijk_to_local = pad_to_box(mask, ijk_to_local, offset, offset + np.array(reference[0]) - 1)
    elif frame_mm is not None:
        to_world = linear_to_world(segmentation_node)
        if to_world is None:
            to_world, frame_mm = np.eye(4), np.full(3, np.max(frame_mm))
        mask, ijk_to_local = pad_to_box(mask, ijk_to_local, *prior_frame_box(mask, to_world @ ijk_to_local, frame_mm))
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


def grid_axis(orientation, ijk_to_ras: np.ndarray) -> int:
    """The segment grid's axis (0, 1, 2 = i, j, k) the slices are stacked along: an axis number
    as is, or "axial" / "coronal" / "sagittal": the grid axis closest to S / A / R."""
    if orientation in (0, 1, 2):
        return int(orientation)
    if orientation not in SLICE_ORIENTATIONS:
        raise ValueError(f"slice orientation must be axial, coronal, sagittal or 0, 1, 2, got {orientation!r}")
    direction = ijk_to_ras[:3, :3] / np.linalg.norm(ijk_to_ras[:3, :3], axis=0)
    return int(np.argmax(np.abs(direction[SLICE_ORIENTATIONS[orientation]])))
