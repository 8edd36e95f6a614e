"""Augmentation of prior-training shapes: rotation, anisotropic scaling and a smooth random
deformation within anatomical limits, applied once per copy before training.

The prior is an auto-decoder [A §2]: every training shape gets its own latent. Augmented copies
are therefore added as new training shapes (each with its own latent), not redrawn every epoch --
one latent cannot stand for a shape that changes from step to step.

Each copy of a shape (X, Y, Z) bool on its grid (spacing in mm, kept):
- rotation about the bounding-box centre by angles drawn uniformly in +-`rotation_deg` about each
  anatomical axis (default 10 deg: about the spread of the sagittal tilt of a lumbar vertebra
  within the lordosis and of the kidney's axes; ASSUMED limits, not from a published table);
- anisotropic scaling: a factor uniform in 1 +- `scale` per axis (default 0.1, within the SD of
  published vertebral and renal dimensions; ASSUMED);
- a smooth deformation: a cubic B-spline transform with control points every
  `deform_spacing_mm` and coefficients drawn N(0, `deform_mm`^2) per axis (displacements of
  about `deform_mm` mm, smooth on the scale of `deform_spacing_mm`).
The transforms are SimpleITK's (AffineTransform, BSplineTransform, CompositeTransform) and the
mask is resampled with linear interpolation of 0/1 and a 0.5 threshold. A copy whose shape
would leave its grid (foreground in the outermost voxel layer) is drawn again, up to
`MAX_DRAWS` times, then skipped (`augment_shapes` reports how many).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from PatchSamplerLib.data.anatomy.rendering import rotation_xyz
from PatchSamplerLib.progress import tracked
from PatchSamplerLib.volume import BinaryVolume, bbox_centre_mm, to_sitk_image

MAX_DRAWS = 5


@dataclass
class AugmentConfig:
    """Options of `augment_shapes` (CLI: `train-prior --augment-copies 1 ...`)."""
    augment_copies: int = 0               # augmented copies added per training shape (0: off)
    augment_rotation_deg: float = 10.0    # uniform +- per anatomical axis
    augment_scale: float = 0.1            # per-axis scale factor uniform in 1 +- this
    augment_deform_mm: float = 2.0        # SD of the B-spline coefficients (mm)
    augment_deform_spacing_mm: float = 25.0   # control-point spacing of the deformation (mm)
    augment_seed: int = 0

    def __post_init__(self):
        if self.augment_copies < 0:
            raise ValueError(f"--augment-copies must be >= 0, got {self.augment_copies}")
        if not 0 <= self.augment_scale < 0.5:
            raise ValueError(f"--augment-scale must be in [0, 0.5), got {self.augment_scale}")
        if self.augment_rotation_deg < 0 or self.augment_deform_mm < 0 or self.augment_deform_spacing_mm <= 0:
            raise ValueError("--augment-rotation-deg and --augment-deform-mm must be >= 0, "
                             "--augment-deform-spacing-mm > 0")


def _affine(rng: np.random.Generator, cfg: AugmentConfig, centre_world):
    import SimpleITK as sitk
    angles = np.deg2rad(rng.uniform(-cfg.augment_rotation_deg, cfg.augment_rotation_deg, size=3))
    scales = 1.0 + rng.uniform(-cfg.augment_scale, cfg.augment_scale, size=3)
    transform = sitk.AffineTransform(3)
    transform.SetCenter(tuple(float(c) for c in centre_world))
    transform.SetMatrix(tuple((rotation_xyz(*angles) @ np.diag(scales)).ravel()))
    return transform


def _deformation(rng: np.random.Generator, cfg: AugmentConfig, image):
    import SimpleITK as sitk
    extent = np.array(image.GetSize()) * np.array(image.GetSpacing())
    mesh = [max(1, int(round(e / cfg.augment_deform_spacing_mm))) for e in extent]
    transform = sitk.BSplineTransformInitializer(image, mesh, 3)
    coefficients = rng.normal(0.0, cfg.augment_deform_mm, size=len(transform.GetParameters()))
    transform.SetParameters(tuple(float(c) for c in coefficients))
    return transform


def touches_border(mask: np.ndarray) -> bool:
    """True if any foreground voxel lies in the outermost voxel layer of the grid."""
    return bool(mask[[0, -1]].any() or mask[:, [0, -1]].any() or mask[:, :, [0, -1]].any())


def augment_volume(volume: BinaryVolume, rng: np.random.Generator, cfg: AugmentConfig) -> BinaryVolume:
    """One augmented copy of `volume` on the same grid (same spacing, origin, direction);
    deterministic in the generator's state. May touch the grid's border (see `augment_shapes`)."""
    import SimpleITK as sitk
    image = to_sitk_image(volume.mask, volume, np.float32)
    centre_local = bbox_centre_mm(volume.mask, volume.spacing) - np.asarray(volume.spacing) / 2.0
    centre_world = volume.origin + volume.direction @ centre_local
    transform = sitk.CompositeTransform([_affine(rng, cfg, centre_world), _deformation(rng, cfg, image)])
    moved = sitk.Resample(image, image, transform, sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    mask = sitk.GetArrayFromImage(moved).transpose(2, 1, 0) >= 0.5
    return BinaryVolume(mask, volume.spacing, volume.origin.copy(), volume.direction.copy())


def augment_shapes(volumes: list[BinaryVolume], cfg: AugmentConfig) -> tuple[list[BinaryVolume], int]:
    """(`volumes` followed by `cfg.augment_copies` augmented copies of each, number of copies
    skipped because every draw left the grid). Copy c of shape i uses the random stream
    (augment_seed, i, c), so the result does not depend on the order of processing."""
    copies, skipped = [], 0
    for i, volume in enumerate(tracked(volumes, "augmentation", unit="shapes")):
        for c in range(cfg.augment_copies):
            rng = np.random.default_rng([cfg.augment_seed, i, c])
            for _ in range(MAX_DRAWS):
                copy = augment_volume(volume, rng, cfg)
                if copy.mask.any() and not touches_border(copy.mask):
                    copies.append(copy)
                    break
            else:
                skipped += 1
    return list(volumes) + copies, skipped
