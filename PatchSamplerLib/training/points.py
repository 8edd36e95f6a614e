"""Point tables of the training shapes: where the training losses are evaluated.

`TrainingShape` holds one volume's tables for the prior's training (and the sampler's fast
mode): the flat mask, the voxels near the surface and, for sparse input, the known voxels.
`sample_points` draws training points from them. `SamplerShape` is what the sampler's training
needs per shape: its point cloud, its mask on the device of the loss and a TrainingShape.

Coordinates are millimetres in the shape's INR frame: (voxel index + 0.5) * spacing - frame
centre, the frame centre being the foreground bounding-box centre (`volume.bbox_centre_mm`).
Flat voxel indices are in (i, j, k) C order of the (X, Y, Z) grid.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage

from PatchSamplerLib.method.pointcloud import CloudNormalisation, simplified_cloud
from PatchSamplerLib.volume import BinaryVolume, bbox_centre_mm, index_to_local_mm


@dataclass
class TrainingShape:
    """Precomputed sampling tables of one training volume of shape (X, Y, Z)."""
    mask: torch.Tensor          # (X*Y*Z,) bool, flat (i, j, k) order
    band: torch.Tensor          # (B,) long flat indices near the surface
    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]     # mm
    centre_mm: np.ndarray       # (3,) frame centre in local mm
    known: torch.Tensor | None = None   # (M,) long flat indices of the known voxels (sparse); None = all


def prepare_shape(volume: BinaryVolume, band_mm: float) -> TrainingShape:
    """The tables of `volume`; the band is the voxels within about `band_mm` mm of the surface
    (dilation minus erosion, ceil(band_mm / finest spacing) iterations each)."""
    iters = max(1, int(math.ceil(band_mm / min(volume.spacing))))
    band = (ndimage.binary_dilation(volume.mask, iterations=iters)
            & ~ndimage.binary_erosion(volume.mask, iterations=iters))
    return TrainingShape(torch.from_numpy(np.ascontiguousarray(volume.mask).reshape(-1)),
                         torch.from_numpy(np.flatnonzero(band)), volume.shape, volume.spacing,
                         bbox_centre_mm(volume.mask, volume.spacing))


def sample_points(shape: TrainingShape, count: int, surface_fraction: float,
                  gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """-> coords (count, 3) mm in the frame, labels (count,) 0/1 float32, drawn with replacement:
    round(count * surface_fraction) from the band, the rest uniformly from the whole grid, or
    from the known voxels only when `shape.known` is set (sparse)."""
    n_band = int(round(count * surface_fraction)) if len(shape.band) else 0
    band = shape.band[torch.randint(len(shape.band), (n_band,), generator=gen)]      # drawn first (reproducibility)
    uniform = torch.randint(shape.mask.numel() if shape.known is None else len(shape.known), (count - n_band,),
                            generator=gen)
    flat = torch.cat([band, uniform if shape.known is None else shape.known[uniform]])
    return flat_to_frame_mm(flat, shape), shape.mask[flat].float()


def flat_to_frame_mm(flat: torch.Tensor, shape: TrainingShape) -> torch.Tensor:
    """(M,) flat voxel indices of `shape`'s grid -> (M, 3) float32 mm in its INR frame."""
    ny, nz = shape.shape[1], shape.shape[2]
    ijk = torch.stack([flat // (ny * nz), (flat // nz) % ny, flat % nz], dim=-1).float()
    return index_to_local_mm(ijk, shape.spacing) - torch.as_tensor(shape.centre_mm, dtype=torch.float32)


@dataclass
class SamplerShape:
    """Everything one sampler training / validation shape needs, computed once."""
    volume: BinaryVolume
    cloud: torch.Tensor                 # (2048, 3) float32, normalised to [-0.5, 0.5]^3
    norm: CloudNormalisation            # normalised cloud space <-> voxel index
    mask: torch.Tensor                  # (X, Y, Z) bool, on the device of the latent fits and the loss
    centre_mm: np.ndarray               # (3,) INR frame centre, local mm
    table: TrainingShape                # sampling tables of the fast mode's loss voxels (CPU)


def prepare_sampler_shape(volume: BinaryVolume, band_mm: float, device="cpu") -> SamplerShape:
    """The mask goes to `device` (where the INR fit and the loss run); the cloud and the
    fast mode's sampling tables (band of `band_mm` mm) stay on the CPU (the sampler runs there)."""
    cloud, norm = simplified_cloud(volume.mask)
    mask = torch.from_numpy(np.ascontiguousarray(volume.mask)).to(device)
    return SamplerShape(volume, torch.from_numpy(cloud), norm, mask, bbox_centre_mm(volume.mask, volume.spacing),
                        prepare_shape(volume, band_mm))


def full_grid_points(shape: SamplerShape) -> tuple[torch.Tensor, torch.Tensor]:
    """Every voxel of the grid: coords (X*Y*Z, 3) float32 mm in the frame, labels (X*Y*Z,) 0/1
    float32, flat (i, j, k) order, on the device of `shape.mask`."""
    vol, device = shape.volume, shape.mask.device
    ijk = torch.stack(torch.meshgrid(*[torch.arange(n, dtype=torch.float32, device=device) for n in vol.shape],
                                     indexing="ij"), dim=-1).reshape(-1, 3)
    coords = index_to_local_mm(ijk, vol.spacing) - torch.as_tensor(shape.centre_mm, dtype=torch.float32, device=device)
    return coords, shape.mask.reshape(-1).float()
