"""Classical reconstructions from parallel sparse slices, the baselines of [A] Tables 1-3.

- `interpolate_slices(sparse, "linear" | "bspline")`: along the slice axis, linear (what
  trilinear interpolation of the sparse volume reduces to, the slices being complete in-plane)
  or interpolating cubic B-spline of the 0/1 labels, thresholded at 0.5. Past the first and last
  kept slice an empty slice one step further out is assumed (the shape ends half-way to the
  next, unseen slice, the same rule linear interpolation applies between slices).
- `fill_between_slices(sparse)`: 3D Slicer's Segment Editor "Fill between slices", i.e. ITK's
  morphological contour interpolation (`vtkITKMorphologicalContourInterpolator`), taken from
  Slicer (inside the application or the `slicer-core` wheel).

All take and return (X, Y, Z) arrays in the library's (i, j, k) order.
"""
from __future__ import annotations

import os

import numpy as np

from PatchSamplerLib.sparse.inputs import SparseInput

INTERPOLATION_ORDERS = {"linear": 1, "bspline": 3}


def _require_parallel_slices(sparse: SparseInput, what: str, minimum: int = 2) -> None:
    if sparse.axis is None or sparse.positions is None:
        raise ValueError(f"{what} needs parallel slices (every s-th, thick or labelled slices), not "
                         f"'{sparse.description}'")
    if len(sparse.positions) < minimum:
        raise ValueError(f"{what} needs at least {minimum} kept slices, got {len(sparse.positions)}")


def interpolate_slices(sparse: SparseInput, kind: str = "linear") -> np.ndarray:
    """(X, Y, Z) bool: the kept slices interpolated along the slice axis, thresholded at 0.5."""
    from scipy.interpolate import make_interp_spline
    if kind not in INTERPOLATION_ORDERS:
        raise ValueError(f"unknown interpolation {kind!r}: use {', '.join(INTERPOLATION_ORDERS)}")
    _require_parallel_slices(sparse, f"{kind} interpolation")
    axis, positions = sparse.axis, np.asarray(sparse.positions)
    gap = int(np.min(np.diff(positions)))
    nodes = np.concatenate([[positions[0] - gap], positions, [positions[-1] + gap]])
    slabs = np.moveaxis(sparse.labels, axis, 0)[positions].astype(np.float32)
    empty = np.zeros_like(slabs[:1])
    values = np.concatenate([empty, slabs, empty])
    spline = make_interp_spline(nodes, values, k=INTERPOLATION_ORDERS[kind], axis=0)
    out = spline(np.arange(sparse.labels.shape[axis])) >= 0.5
    return np.moveaxis(out, 0, axis)


def _contour_interpolator():
    # ITK's default thread pool crashed the process at exit about one run in three (slicer-core
    # wheel, CPython 3.11); the platform threader does not. Read when ITK makes its first threader.
    os.environ.setdefault("ITK_GLOBAL_DEFAULT_THREADER", "Platform")
    try:
        import slicer
        return slicer.vtkITKMorphologicalContourInterpolator()
    except (ImportError, AttributeError):
        raise RuntimeError("Fill between slices needs 3D Slicer's vtkITK (run inside Slicer, or "
                           "`pip install slicer-core`)") from None


def _to_image_data(array: np.ndarray):
    """(X, Y, Z) uint8 -> vtkImageData with unit spacing (x varies fastest, as VTK stores it)."""
    from vtkmodules.util import numpy_support
    from vtkmodules.vtkCommonDataModel import vtkImageData
    image = vtkImageData()
    image.SetDimensions(*array.shape)
    scalars = numpy_support.numpy_to_vtk(np.ascontiguousarray(array.ravel(order="F")), deep=True)
    image.GetPointData().SetScalars(scalars)
    return image


def _from_image_data(image, shape) -> np.ndarray:
    from vtkmodules.util import numpy_support
    flat = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())
    return flat.reshape(shape, order="F")


def fill_between_slices(sparse: SparseInput) -> np.ndarray:
    """(X, Y, Z) bool: Slicer's "Fill between slices" (morphological contour interpolation
    between the labelled slices along the slice axis; all axes for other inputs). Slices with no
    foreground count as unlabelled, as in Slicer."""
    interpolator = _contour_interpolator()
    interpolator.SetInputData(_to_image_data(sparse.labels.astype(np.uint8)))
    interpolator.SetAxis(-1 if sparse.axis is None else int(sparse.axis))
    interpolator.Update()
    return _from_image_data(interpolator.GetOutput(), sparse.labels.shape) > 0


def slice_baseline(sparse: SparseInput, method: str) -> np.ndarray:
    """method: "linear" (trilinear), "bspline" or "fill" (Fill between slices)."""
    if method == "fill":
        return fill_between_slices(sparse)
    return interpolate_slices(sparse, method)
