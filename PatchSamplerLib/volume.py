"""Shape I/O and geometry: the `BinaryVolume` and NIfTI / NRRD labelmap reading and writing.

Array order used inside the library: **(i, j, k) = (x, y, z)**, i.e. the index order of
SimpleITK's ``image[i, j, k]`` and of ITK / NIfTI headers. SimpleITK's and Slicer's numpy
arrays are (k, j, i); they are transposed here, at the edge, and nowhere else.

Coordinate systems (one function each, all tested by round trips):
- voxel index (i, j, k): integer at voxel centres;
- world (ITK / NIfTI files: LPS mm): ``origin + direction @ (spacing * index)``;
- local millimetres (what the INR sees, before the frame centre is subtracted):
  ``(index + 0.5) * spacing``, axis aligned with the image grid (direction ignored).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

LABELMAP_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".seg.nrrd", ".nhdr", ".mha", ".mhd")


class VolumeError(ValueError):
    """A labelmap that cannot be used, with a message meant for the user."""


def binary_mask(values) -> np.ndarray:
    """`values` as a bool array; VolumeError when they are not all 0 / 1 (bool, integer or float),
    which `astype(bool)` would silently make foreground (NaN, 0.7, a second label)."""
    array = np.asarray(values)
    if array.dtype != bool:
        odd = array[(array != 0) & (array != 1)]
        if odd.size:
            raise VolumeError(f"a binary mask (bool or 0 / 1) is needed, got the value {odd.flat[0]}: select one "
                              "label first (mask == label), or threshold a probability map")
    return array.astype(bool, copy=False)


@dataclass
class BinaryVolume:
    """A binary mask with its geometry.

    mask: (X, Y, Z) bool, index order (i, j, k).
    spacing: (3,) float mm per voxel along i, j, k.
    origin: (3,) float, world (LPS) mm of voxel (0, 0, 0)'s centre.
    direction: (3, 3) float, columns = world directions of the i, j, k axes.
    Raises VolumeError for a mask that is not 3-D or holds values other than 0 / 1 (NaN, 0.7, a
    label 2: select the label first, `mask == label`) and for a spacing that is not positive.
    """
    mask: np.ndarray
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    origin: np.ndarray = field(default_factory=lambda: np.zeros(3))
    direction: np.ndarray = field(default_factory=lambda: np.eye(3))

    def __post_init__(self):
        self.mask = binary_mask(self.mask)
        if self.mask.ndim != 3:
            raise VolumeError(f"a labelmap must be 3-D, got shape {self.mask.shape}")
        self.spacing = tuple(float(s) for s in self.spacing)
        if any(not np.isfinite(s) or s <= 0 for s in self.spacing):
            raise VolumeError(f"voxel spacing must be positive, got {self.spacing}")
        self.origin = np.asarray(self.origin, dtype=float).reshape(3)
        self.direction = np.asarray(self.direction, dtype=float).reshape(3, 3)

    def __repr__(self) -> str:
        """One line: the shape, spacing, origin, axis directions and foreground count, not the
        mask's values (a dataclass repr prints the array)."""
        return (f"BinaryVolume(shape={self.shape}, spacing={self.spacing} mm, "
                f"origin={np.round(self.origin, 3).tolist()} mm LPS, direction={np.round(self.direction, 3).tolist()}, "
                f"foreground={self.voxel_count} voxels)")

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.mask.shape)

    @property
    def voxel_count(self) -> int:
        return int(self.mask.sum())

    def with_mask(self, mask: np.ndarray) -> "BinaryVolume":
        """A volume with the same geometry and another (X, Y, Z) mask."""
        if tuple(mask.shape) != self.shape:
            raise VolumeError(f"mask shape {mask.shape} differs from the volume's {self.shape}")
        return BinaryVolume(mask, self.spacing, self.origin.copy(), self.direction.copy())

    def mirrored_left_right(self) -> "BinaryVolume":
        """The mirror image across the sagittal plane of a volume on the anatomical grid (axis 0
        along +L): its mask flipped along axis 0, the geometry kept (`method.sides`)."""
        return self.with_mask(np.ascontiguousarray(self.mask[::-1]))


# ---------------------------------------------------------------- coordinate conversions
def index_to_world(index: np.ndarray, volume: BinaryVolume) -> np.ndarray:
    """(..., 3) voxel index (i, j, k) -> (..., 3) world LPS mm."""
    return volume.origin + (np.asarray(index, float) * volume.spacing) @ volume.direction.T


def world_to_index(world: np.ndarray, volume: BinaryVolume) -> np.ndarray:
    """(..., 3) world LPS mm -> (..., 3) continuous voxel index."""
    local = (np.asarray(world, float) - volume.origin) @ np.linalg.inv(volume.direction).T
    return local / np.asarray(volume.spacing)


def index_to_local_mm(index, spacing):
    """(..., 3) voxel index -> (..., 3) local mm of the voxel centre, (index + 0.5) * spacing.

    Works on numpy arrays and torch tensors (differentiable)."""
    if isinstance(index, np.ndarray):
        return (index + 0.5) * np.asarray(spacing, dtype=index.dtype if index.dtype.kind == "f" else float)
    return (index + 0.5) * index.new_tensor(spacing)


def local_mm_to_index(local_mm, spacing):
    """Inverse of `index_to_local_mm`."""
    if isinstance(local_mm, np.ndarray):
        return local_mm / np.asarray(spacing, dtype=float) - 0.5
    return local_mm / local_mm.new_tensor(spacing) - 0.5


def foreground_bbox(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inclusive (3,) lower and upper voxel index of the foreground. Raises on an empty mask."""
    coords = [np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != d))) for d in range(3)]
    if any(len(c) == 0 for c in coords):
        raise VolumeError("the mask is empty: no foreground voxel")
    return np.array([c[0] for c in coords]), np.array([c[-1] for c in coords])


def box_slices(lo, hi) -> tuple:
    """The slices of the voxels lo..hi-1 (hi exclusive) of a grid."""
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))


def sub_volume(volume: BinaryVolume, lo, hi) -> BinaryVolume:
    """The voxels lo..hi-1 (hi exclusive) of `volume` (a view of its mask) as a volume at the same
    world place (the origin moves to voxel lo); `volume` itself when that is all of it."""
    if not np.any(lo) and tuple(int(v) for v in hi) == volume.shape:
        return volume
    mask = volume.mask[box_slices(lo, hi)]
    return BinaryVolume(mask, volume.spacing, index_to_world(np.asarray(lo, float), volume), volume.direction.copy())


def bbox_centre_mm(mask: np.ndarray, spacing) -> np.ndarray:
    """(3,) local mm of the centre of the foreground bounding box (voxel-centre convention)."""
    lo, hi = foreground_bbox(mask)
    return index_to_local_mm((lo + hi) / 2.0, spacing)


# ---------------------------------------------------------------- file I/O
def _sitk():
    import SimpleITK as sitk
    return sitk


def _segment_fields(reader) -> dict[int, list[str]]:
    """Label value -> [segment name, terminology entry (when written)] from a Slicer .seg.nrrd
    header (empty for other files)."""
    fields, keys = {}, set(reader.GetMetaDataKeys())
    for i in range(1000):
        if f"Segment{i}_LabelValue" not in keys:
            break
        try:
            fields[int(reader.GetMetaData(f"Segment{i}_LabelValue"))] = [
                reader.GetMetaData(f"Segment{i}_Name"),
                *[reader.GetMetaData(key) for key in (f"Segment{i}_Terminology",) if key in keys]]
        except (RuntimeError, ValueError):
            continue
    return fields


def _segment_names(reader) -> dict[int, str]:
    """Label value -> segment name from a Slicer .seg.nrrd header (empty for other files)."""
    return {value: fields[0] for value, fields in _segment_fields(reader).items()}


def segment_description(path, label: int | None = None) -> list[str]:
    """[name, terminology entry] of the Slicer segment with `label` in a .seg.nrrd file (of its only
    segment when `label` is None), read from the header only; [] for other files, unreadable
    headers or no such segment. What the segment is called, for `structures.structure_mismatch`."""
    if not os.path.isfile(path):          # a folder would make SimpleITK's HDF5 probe print pages of noise
        return []
    reader = _sitk().ImageFileReader()
    reader.SetFileName(os.fspath(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return []
    fields = _segment_fields(reader)
    if label is None:
        return next(iter(fields.values())) if len(fields) == 1 else []
    return fields.get(label, [])


def _describe_labels(labels, names) -> str:
    return ", ".join(f"{v} ({names[v]})" if v in names else str(v) for v in labels)


NIFTI_HEADER = {348: ("<i", 40, "h", 72, 108, "f"), 540: ("<i", 16, "q", 14, 168, "q")}
"""sizeof_hdr -> (its format, offset of dim[8], dim type, offset of bitpix, offset of vox_offset,
vox_offset type) of a NIfTI-1 / NIfTI-2 header (the NIfTI-1 and NIfTI-2 standards)."""


def _stored_byte_count(path: str) -> int:
    """Bytes of a file's content: decompressed length of a .gz file. Raises VolumeError when the
    gzip stream ends early or fails its checksum (a truncated or damaged download / copy)."""
    import gzip
    import zlib
    if not path.endswith(".gz"):
        return os.path.getsize(path)
    count = 0
    try:
        with gzip.open(path, "rb") as stream:
            while chunk := stream.read(1 << 22):
                count += len(chunk)
    except (EOFError, OSError, zlib.error) as exc:
        raise VolumeError(f"{path} is incomplete or damaged: its compressed data ends early or fails its "
                          f"checksum ({exc}); copy or export the file again") from None
    return count


def _nifti_expected_bytes(path: str) -> int | None:
    """Header + voxel bytes a single-file NIfTI-1 / -2 header promises; None for other files."""
    import gzip
    import struct
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as stream:
            header = stream.read(540)
    except (EOFError, OSError):
        return None                   # _stored_byte_count names the fault
    for order in "<>":
        if len(header) < 348:
            return None
        size = struct.unpack(order + "i", header[:4])[0]
        if size in NIFTI_HEADER and len(header) >= size:
            _, dim_at, dim_type, bitpix_at, offset_at, offset_type = NIFTI_HEADER[size]
            dims = struct.unpack(f"{order}8{dim_type}", header[dim_at:dim_at + 8 * struct.calcsize(dim_type)])
            bitpix = struct.unpack(order + "h", header[bitpix_at:bitpix_at + 2])[0]
            offset = struct.unpack(order + offset_type, header[offset_at:offset_at + struct.calcsize(offset_type)])[0]
            if not 1 <= dims[0] <= 7 or bitpix <= 0:
                return None
            return int(offset) + int(np.prod([max(int(d), 1) for d in dims[1:dims[0] + 1]])) * bitpix // 8
    return None


def check_data_complete(path) -> None:
    """Refuse a file whose voxel data is incomplete: a gzip stream that ends early or fails its
    checksum (any .gz file), or a NIfTI file (.nii, .nii.gz) shorter than its header promises.
    SimpleITK reads such NIfTI files without an error, zero-filling the missing voxels; NRRD and
    MetaImage readers already fail on them. Raises VolumeError naming the file."""
    path = os.fspath(path)
    stored = _stored_byte_count(path)
    expected = _nifti_expected_bytes(path) if path.endswith((".nii", ".nii.gz")) else None
    if expected is not None and stored < expected:
        raise VolumeError(f"{path} is incomplete: its header promises {expected} bytes but it holds {stored} "
                          f"({100 * stored / expected:.0f} %); copy or export the file again")


def missing_file_problem(path, what: str = "a labelmap") -> str | None:
    """Why `path` cannot be read as `what` before opening it -- "file not found: PATH" or "PATH is a
    folder, not a file: ..." -- else None (`read_image`, and `cli.arguments.existing_file` before any work)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        return f"{path} is a folder, not a file: {what} file (.nii, .nii.gz, .nrrd, .seg.nrrd) is needed"
    return None if os.path.isfile(path) else f"file not found: {path}"


def read_image(path, what: str = "a labelmap"):
    """SimpleITK image of a complete file (`check_data_complete`) -> (image, reader).
    Raises FileNotFoundError / VolumeError naming the file and what it should have been."""
    sitk = _sitk()
    path = os.fspath(path)
    problem = missing_file_problem(path, what)
    if problem:
        raise FileNotFoundError(problem)
    reader = sitk.ImageFileReader()
    reader.SetFileName(path)
    try:
        reader.ReadImageInformation()
        image = reader.Execute()
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[-1] if str(exc).strip() else ""
        raise VolumeError(f"cannot read {path} as {what} (NIfTI or NRRD expected): {first}") from None
    check_data_complete(path)
    return image, reader


def read_labelmap(path: str, label: int | None = None) -> BinaryVolume:
    """Read a NIfTI / NRRD labelmap and select one label as a binary mask.

    A file with a single non-zero label needs no `label`; a multi-label file does, and the
    error lists the labels present (with segment names for Slicer .seg.nrrd files).
    Raises `VolumeError` (or FileNotFoundError) with a user-facing message.
    """
    sitk = _sitk()
    image, reader = read_image(path)
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise VolumeError(f"{path} has {image.GetNumberOfComponentsPerPixel()} components per voxel "
                          "(an overlapping multi-layer segmentation?); export a single-layer labelmap")
    if image.GetDimension() != 3:
        raise VolumeError(f"{path} is {image.GetDimension()}-D; a 3-D labelmap is needed")
    array = sitk.GetArrayViewFromImage(image)
    if array.dtype.kind == "f":
        if not np.all(np.isfinite(array)) or not np.all(array == np.round(array)):
            raise VolumeError(f"{path} holds non-integer values: a labelmap (integer labels) is needed")
    labels = [int(v) for v in np.unique(array) if v != 0]
    names = _segment_names(reader)
    if not labels:
        raise VolumeError(f"{path} is empty: no non-zero voxel")
    if label is None:
        if len(labels) > 1:
            raise VolumeError(f"{path} holds several labels: {_describe_labels(labels, names)}; "
                              "choose one with --label L")
        label = labels[0]
    elif label not in labels:
        raise VolumeError(f"label {label} is not in {path}; labels present: {_describe_labels(labels, names)}")
    mask = (array == label).transpose(2, 1, 0)
    direction = np.array(image.GetDirection(), float).reshape(3, 3)
    return BinaryVolume(np.ascontiguousarray(mask), image.GetSpacing(), np.array(image.GetOrigin()), direction)


def read_nonzero_mask(path) -> BinaryVolume:
    """Read a labelmap file; every non-zero voxel is foreground. An empty mask is allowed.

    Unlike `read_labelmap` this accepts any label values (TotalSegmentator masks are 0/1, a 0/255
    export or the product's own 0/1/2 `sparse_input.nii.gz` load too). Raises FileNotFoundError /
    VolumeError naming the file."""
    sitk = _sitk()
    image, _ = read_image(path)
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise VolumeError(f"{path} is not a 3-D single-component labelmap")
    mask = sitk.GetArrayViewFromImage(image).transpose(2, 1, 0) != 0
    return BinaryVolume(np.ascontiguousarray(mask), image.GetSpacing(), np.array(image.GetOrigin()),
                        np.array(image.GetDirection(), float).reshape(3, 3))


def grid_differences(volume: BinaryVolume, like: BinaryVolume, tolerance: float = 1e-3) -> list[str]:
    """How `volume`'s grid differs from `like`'s (size, spacing, origin, direction), one phrase
    each; [] when they agree within `tolerance` (relative for spacing, times the smallest
    spacing in mm for the origin, absolute for direction cosines)."""
    found = []
    if volume.shape != like.shape:
        found.append(f"size {volume.shape} instead of {like.shape}")
    if not np.allclose(volume.spacing, like.spacing, rtol=tolerance, atol=0):
        found.append(f"spacing {tuple(round(s, 4) for s in volume.spacing)} mm instead of "
                     f"{tuple(round(s, 4) for s in like.spacing)}")
    if not np.allclose(volume.origin, like.origin, atol=tolerance * min(like.spacing)):
        found.append(f"origin {np.round(volume.origin, 3).tolist()} mm instead of {np.round(like.origin, 3).tolist()}")
    if not np.allclose(volume.direction, like.direction, atol=tolerance):
        found.append(f"direction {np.round(volume.direction, 3).tolist()} instead of "
                     f"{np.round(like.direction, 3).tolist()}")
    return found


def resample_like(volume: BinaryVolume, like: BinaryVolume) -> BinaryVolume:
    """`volume`'s mask resampled onto `like`'s grid in world space (nearest neighbour; outside
    `volume` background)."""
    sitk = _sitk()
    out = sitk.Resample(to_sitk_image(volume.mask, volume), to_sitk_image(np.zeros(like.shape, np.uint8), like),
                        sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    return like.with_mask(sitk.GetArrayFromImage(out).transpose(2, 1, 0) > 0)


def on_grid_of(volume: BinaryVolume, like: BinaryVolume, name: str, notes: list) -> BinaryVolume:
    """An auxiliary file's mask (`name`: how the user knows it) on `like`'s grid: itself when the
    grids agree, else resampled in world space with a note in `notes` saying how they differed.
    VolumeError when its foreground does not overlap `like`'s grid at all."""
    differences = grid_differences(volume, like)
    if not differences:
        return volume
    moved = resample_like(volume, like)
    if volume.mask.any() and not moved.mask.any():
        raise VolumeError(f"{name} does not overlap the input in world space ({'; '.join(differences)})")
    notes.append(f"{name} is on another grid than the input ({'; '.join(differences)}): resampled onto the "
                 "input's grid in world space (nearest neighbour)")
    return moved


def to_sitk_image(array: np.ndarray, like: BinaryVolume, dtype=np.uint8):
    """(X, Y, Z) array -> SimpleITK image with `like`'s spacing, origin and direction."""
    sitk = _sitk()
    image = sitk.GetImageFromArray(np.ascontiguousarray(np.asarray(array, dtype).transpose(2, 1, 0)))
    image.SetSpacing(like.spacing)
    image.SetOrigin(tuple(like.origin))
    image.SetDirection(tuple(like.direction.reshape(-1)))
    return image


def write_labelmap(path: str, array: np.ndarray, like: BinaryVolume) -> None:
    """Write an (X, Y, Z) integer array as a labelmap with `like`'s exact geometry."""
    if tuple(array.shape) != like.shape:
        raise VolumeError(f"array shape {array.shape} differs from the reference geometry {like.shape}")
    _sitk().WriteImage(to_sitk_image(array, like), os.fspath(path), True)


def write_volume(path: str, volume: BinaryVolume) -> None:
    """Write a BinaryVolume as a 0/1 uint8 labelmap."""
    write_labelmap(path, volume.mask, volume)


def resample_isotropic(volume: BinaryVolume, spacing_mm: float) -> BinaryVolume:
    """Resample a mask to isotropic `spacing_mm` (linear interpolation of 0/1, threshold 0.5).

    The physical extent and the world position of the image are kept."""
    sitk = _sitk()
    image = to_sitk_image(volume.mask, volume, np.float32)
    size = [max(1, int(round(n * s / spacing_mm))) for n, s in zip(volume.shape, volume.spacing)]
    # keep the physical box: corner of voxel 0 stays where it was
    corner = index_to_world(np.full(3, -0.5), volume)
    new_origin = corner + volume.direction @ np.full(3, spacing_mm / 2.0)
    out = sitk.Resample(image, size, sitk.Transform(), sitk.sitkLinear, tuple(new_origin),
                        (spacing_mm,) * 3, tuple(volume.direction.reshape(-1)), 0.0, sitk.sitkFloat32)
    mask = sitk.GetArrayFromImage(out).transpose(2, 1, 0) >= 0.5
    return BinaryVolume(mask, (spacing_mm,) * 3, new_origin, volume.direction.copy())
