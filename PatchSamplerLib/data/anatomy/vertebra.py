"""Anatomical thoracolumbar vertebrae (T10-L5) as binary segmentations.

A vertebra is a smooth union of signed-distance parts, evaluated at voxel centres in mm
(`rendering`): a vertebral body (superelliptic cross-section, flat posterior wall, concave
endplates, a waist, anterior/posterior wedging), two pedicles (converging anteriorly), two
laminae meeting at the midline, superior and inferior articular processes (facet plates turned
from coronal in the thorax to near sagittal in the lumbar spine), two transverse processes, a
spinous process pointing posteriorly and inferiorly, and the vertebral foramen, subtracted last
so that the canal is always open (background, enclosed by body, pedicles and laminae).

Frame (LPS, the library's): x = patient left, y = posterior, z = superior. In the shape frame
the body centre is the origin and its posterior wall is at y = depth / 2. The posed shape
(sagittal tilt, axial rotation, lateral tilt) is centred on its bounding-box centre in the grid,
as the VerSe loader centres real vertebrae (`folder.crop_centred`); default grid 128 x 120 x 90
at 1 mm.

Sampling. Each row of `MORPHOMETRY` is (mean, SD) per level. A dimension is
``mean + SD * z`` with ``z = r * s + sqrt(1 - r^2) * e`` for size-like dimensions (s: one
shared "size" draw per vertebra, e: the dimension's own draw, r = `SIZE_CORRELATION`) and
``z = e`` for angles, ratios and shape details; z is clipped to +-2 SD. The level is drawn
uniformly when not given and recorded in `VertebraParameters`. Pose: sagittal tilt from the
table (level dependent), axial rotation uniform in +-3 deg, lateral tilt N(0, 2 deg) clipped to
+-4 deg. Pathology: with probability 5 % a wedge compression fracture, the anterior body height
reduced by 20-40 % (Genant grades 1-2).

Sources (SD = SEM * sqrt(n) where a paper gives SEM; n = 12 per level in Panjabi's studies):
[P91] Panjabi MM, Takata K, Goel V, et al. Thoracic human vertebrae: quantitative
      three-dimensional anatomy. Spine 1991;16(8):888-901 -- tables of endplate width / depth
      (EPWu, EPDu), posterior body height (VBHp), canal width / depth (SCW, SCD), transverse
      process width (TPW), spinous process length and inclination (SPL, SPI). T10-T12.
[P92] Panjabi MM, Goel V, Oxland T, et al. Human lumbar vertebrae: quantitative
      three-dimensional anatomy. Spine 1992;17(3):299-306 -- the same dimensions for L1-L5.
[Z87] Zindrick MR, Wiltse LL, Doornik A, et al. Analysis of the morphometric characteristics
      of the thoracic and lumbar pedicles. Spine 1987;12(2):160-166 -- pedicle width and height,
      transverse pedicle angle, T10-L4.
[CB21] Cook WH, Baker JF. Comparative analysis of lumbar spine vertebral morphology between
      Maori and New Zealand Europeans: a CT study. Int J Spine Surg 2021;15(6):1072-1081,
      Table 6 (L5, all 196 patients, mean +- SD): anterior / posterior body height 30.3 +- 1.9 /
      26.3 +- 1.9, superior body length 35.7 +- 3.5, pedicle height / width 12.9 +- 1.9 /
      16.1 +- 2.3, canal length 15.6 +- 2.1, canal width 28.2 +- 3.1 mm. Used for L5.
[M10] Masharawi Y, et al. Eur Spine J 2010;19(5):768-773, doi:10.1007/s00586-009-1256-6,
      Table 1 (120 F + 120 M, mean +- SD): vertebral body sagittal wedging (deg, + = ventral)
      T10 2.6 / 3.8, T11 4.6 / 5.4, T12 3.5 / 4.9, L1 2.6 / 4.1, L2 0.7 / 2.6, L3 -1.1 / 1.3,
      L4 -3.1 / -0.7, L5 -7.8 / -4.6 (F / M; the table's +-0.04 is taken as an SEM, SD assumed
      2 deg); interfacet width / body width T10 0.80 / 0.73, T11 0.72 / 0.71, T12 0.75 / 0.74,
      L1 0.73 / 0.67, L2 0.70 / 0.63, L3 0.70 / 0.65, L4 0.73 / 0.66, L5 0.77 / 0.74. The
      means of F and M are used.
[PF]  Panjabi's inferior articular facet width / height as tabulated by Patel MM, Singel TC,
      Gohil DV, Pandya AM. A study of osteometric measurements of articular facets from C3 to
      S1 (part 2). J Anat Soc India 2007;56(1), Table 4: W / H (mm) T10 11.9 / 12.4,
      T11 11.4 / 13.3, T12 9.5 / 12.5, L1 12.4 / 15.3, L2 12.7 / 16.0, L3 13.8 / 15.7,
      L4 14.7 / 16.2, L5 15.6 / 18.4. No SD there: 1.5 mm assumed.
[E19] Egwu OA, et al. Typical thoracic vertebrae morphometry: a cadaveric study in Nigeria.
      J Anat Soc India 2019;68(2):110-118: lamina thickness at T9 7.30 +- 1.24 mm (T10-T12).
[K16] Kaur K, et al. J Clin Orthop Trauma 2016;7(2):101-108 (CT, 50 patients): T12 pedicle
      width 8.31 +- 1.83 mm.
[G93] Genant HK, Wu CY, van Kuijk C, Nevitt MC. Vertebral fracture assessment using a
      semiquantitative technique. J Bone Miner Res 1993;8(9):1137-1148 -- grade 1: 20-25 %,
      grade 2: 25-40 % height reduction.

Provenance and assumptions (read before trusting a number):
- The [P91] / [P92] / [Z87] means and spreads are transcribed from memory of those tables
  (the full texts could not be retrieved here) and rounded; they agree with [CB21], [M10],
  [K16] and [E19] where those overlap (e.g. L5 body: posterior height + depth * tan(wedge)
  = 26.3 + 35.7 * tan 6.2 deg = 30.2 mm vs [CB21]'s anterior height 30.3 mm). Check them
  against the printed tables before publishing results that depend on them.
- Not found, assumed: spinous process height (cranio-caudal: 11-22 mm) and thickness (6-7 mm),
  lamina height (19 / 24 mm) and lumbar lamina thickness (6.5 mm), endplate concavity
  (1.5 +- 0.5 mm at the centre) and body waist (1.5 +- 0.5 mm per side), facet orientation
  (angle from the sagittal plane: thoracic ~ coronal, lumbar 25-50 deg), transverse process
  sweep / elevation and radii, superellipse exponents, the size correlation r = 0.7.
- Sagittal tilt (deg, + = superior endplate facing anteriorly) follows the supine sagittal
  curve: thoracolumbar kyphosis tilts T10-L1 a few degrees backwards (-3 to -5), the lumbar
  lordosis (about 40 deg supine, two thirds of it at L4-S1) tilts L4 and L5 forwards (+7, +12);
  SD 4 deg. Not taken from a table.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from PatchSamplerLib.data.anatomy.rendering import (
    SmoothNoise, bbox_centring_shift, bounded, extrude, frame_from_axis, mask_bbox_centre_mm,
    remove_specks, render_sdf, render_sdf_resampled, rotation_xyz, sd_elliptic_cylinder, sd_round_box, sd_round_cone,
    sd_superellipsoid, shift_mask, smooth_union_all, subtract, superellipse_norm, with_noise)
from PatchSamplerLib.volume import BinaryVolume

VERTEBRA_FAMILY_VERSION = "anatomical-1"
LEVELS = ("T10", "T11", "T12", "L1", "L2", "L3", "L4", "L5")
GRID = (128, 120, 90)                 # voxels (x, y, z) at 1 mm, as the VerSe crop
SIZE_CORRELATION = 0.7                # correlation of size-like dimensions with the shared size draw
CLIP_SD = 2.0
COMPRESSION_PROBABILITY = 0.05
COMPRESSION_RANGE = (0.20, 0.40)      # fraction of the anterior body height lost [G93]
AXIAL_ROTATION_DEG = 3.0              # uniform in +- this
LATERAL_TILT_SD_DEG = 2.0             # normal, clipped to +- CLIP_SD SD
SMOOTH_MM = 2.0                       # blend radius of the smooth unions
PEDICLE_OVERLAP_MM = 3.0              # pedicles reach this far into the body
SPECK_VOXELS = 50                     # rendered islands smaller than this are dropped (partial-volume specks)

# (mean, SD) per level in LEVELS order; mm unless the name ends in _deg or _ratio.
MORPHOMETRY: dict[str, tuple[tuple[float, float], ...]] = {
    #                         T10          T11          T12          L1           L2           L3           L4           L5
    "body_width":           ((36.0, 3.0), (38.5, 3.0), (40.5, 3.2), (42.0, 3.3), (44.0, 3.4), (46.0, 3.5), (48.0, 3.6), (49.5, 3.8)),
    "body_depth":           ((29.0, 2.3), (30.5, 2.4), (31.5, 2.5), (33.0, 2.6), (34.0, 2.7), (35.0, 2.8), (35.5, 3.0), (35.7, 3.5)),
    "body_height":          ((21.5, 1.6), (22.8, 1.7), (24.0, 1.8), (25.5, 1.8), (26.5, 1.9), (27.0, 1.9), (26.8, 1.9), (26.3, 1.9)),
    "body_wedge_deg":       ((3.2, 2.0), (5.0, 2.0), (4.2, 2.0), (3.4, 2.0), (1.7, 2.0), (0.1, 2.0), (-1.9, 2.0), (-6.2, 2.0)),
    "canal_width":          ((17.5, 1.5), (18.5, 1.7), (20.5, 2.0), (22.0, 2.0), (22.5, 2.0), (23.0, 2.2), (25.0, 2.5), (28.2, 3.1)),
    "canal_depth":          ((16.0, 1.3), (16.8, 1.4), (17.5, 1.5), (18.0, 1.6), (17.5, 1.7), (16.5, 1.8), (16.5, 1.9), (15.6, 2.1)),
    "pedicle_width":        ((6.5, 1.4), (7.5, 1.6), (8.3, 1.8), (8.7, 1.7), (8.9, 1.8), (10.3, 2.0), (12.9, 2.2), (16.1, 2.3)),
    "pedicle_height":       ((14.5, 1.5), (16.0, 1.6), (15.5, 1.6), (15.4, 1.5), (15.0, 1.5), (14.9, 1.6), (14.8, 1.7), (12.9, 1.9)),
    "pedicle_angle_deg":    ((5.0, 4.0), (3.0, 4.0), (1.0, 4.0), (11.0, 4.0), (12.0, 4.0), (14.0, 4.0), (18.0, 4.0), (28.0, 4.0)),
    "transverse_width":     ((63.0, 5.0), (57.0, 5.0), (52.0, 5.0), (72.0, 6.0), (80.0, 6.0), (88.0, 6.0), (86.0, 6.0), (93.0, 6.0)),
    "transverse_sweep_deg": ((35.0, 5.0), (25.0, 5.0), (15.0, 5.0), (10.0, 5.0), (10.0, 5.0), (10.0, 5.0), (10.0, 5.0), (12.0, 5.0)),
    "transverse_elev_deg":  ((8.0, 4.0), (5.0, 4.0), (0.0, 4.0), (0.0, 4.0), (0.0, 4.0), (0.0, 4.0), (5.0, 4.0), (10.0, 4.0)),
    "spinous_length":       ((32.0, 3.5), (30.0, 3.5), (29.0, 3.5), (30.0, 3.5), (31.0, 3.5), (31.0, 3.5), (29.0, 3.5), (25.0, 3.5)),
    "spinous_angle_deg":    ((35.0, 7.0), (25.0, 7.0), (15.0, 6.0), (10.0, 5.0), (8.0, 5.0), (6.0, 5.0), (6.0, 5.0), (12.0, 6.0)),
    "spinous_height":       ((11.0, 2.0), (14.0, 2.0), (18.0, 2.5), (21.0, 3.0), (22.0, 3.0), (22.0, 3.0), (20.0, 3.0), (17.0, 3.0)),
    "spinous_thickness":    ((6.0, 1.2), (6.0, 1.2), (6.5, 1.2), (7.0, 1.5), (7.0, 1.5), (7.0, 1.5), (7.0, 1.5), (7.0, 1.5)),
    "facet_height":         ((12.4, 1.5), (13.3, 1.5), (12.5, 1.5), (15.3, 1.5), (16.0, 1.5), (15.7, 1.5), (16.2, 1.5), (18.4, 1.5)),
    "facet_width":          ((11.9, 1.5), (11.4, 1.5), (9.5, 1.5), (12.4, 1.5), (12.7, 1.5), (13.8, 1.5), (14.7, 1.5), (15.6, 1.5)),
    "facet_angle_deg":      ((70.0, 6.0), (55.0, 6.0), (35.0, 6.0), (25.0, 6.0), (28.0, 6.0), (35.0, 6.0), (45.0, 6.0), (50.0, 6.0)),
    "interfacet_ratio":     ((0.765, 0.04), (0.715, 0.04), (0.745, 0.04), (0.70, 0.05), (0.665, 0.06), (0.675, 0.06), (0.695, 0.05), (0.755, 0.08)),
    "lamina_thickness":     ((7.3, 1.2), (7.3, 1.2), (7.0, 1.2), (6.5, 1.2), (6.5, 1.2), (6.5, 1.2), (6.5, 1.2), (6.5, 1.2)),
    "lamina_height":        ((19.0, 2.0), (19.0, 2.0), (21.0, 2.5), (24.0, 3.0), (24.0, 3.0), (24.0, 3.0), (24.0, 3.0), (23.0, 3.0)),
    "endplate_concavity":   ((1.5, 0.5),) * 8,
    "body_waist":           ((1.5, 0.5),) * 8,
    "sagittal_tilt_deg":    ((-5.0, 4.0), (-5.0, 4.0), (-4.0, 4.0), (-3.0, 4.0), (0.0, 4.0), (3.0, 4.0), (7.0, 4.0), (12.0, 4.0)),
}

SOURCES = {
    "body_width": "P91/P92 EPWu", "body_depth": "P91/P92 EPDu; L5 CB21 VBSL", "body_height": "P91/P92 VBHp; L5 CB21",
    "body_wedge_deg": "M10 Table 1", "canal_width": "P91/P92 SCW; L5 CB21 VCW", "canal_depth": "P91/P92 SCD; L5 CB21 VCL",
    "pedicle_width": "Z87; T12 K16; L5 CB21", "pedicle_height": "Z87; L5 CB21", "pedicle_angle_deg": "Z87",
    "transverse_width": "P91/P92 TPW", "spinous_length": "P91/P92 SPL", "spinous_angle_deg": "P91/P92 SPI",
    "facet_height": "PF", "facet_width": "PF", "interfacet_ratio": "M10 Table 1", "lamina_thickness": "E19 (thoracic); assumed (lumbar)",
}  # every other row: assumed (module docstring)

SIZE_DIMENSIONS = frozenset({
    "body_width", "body_depth", "body_height", "canal_width", "canal_depth", "pedicle_width", "pedicle_height",
    "transverse_width", "spinous_length", "spinous_height", "spinous_thickness", "facet_height", "facet_width",
    "lamina_thickness", "lamina_height"})

# transverse process radii (root, tip) mm and body superellipse exponent: assumed
_TP_RADII = {"T": (5.0, 4.5), "L": (4.5, 3.2), "L5": (6.5, 4.5)}
_BODY_EXPONENT = {"T": 2.2, "L": 2.5}


@dataclass(frozen=True)
class VertebraParameters:
    """One sampled vertebra: level, dimensions (MORPHOMETRY keys -> value), their clipped
    z-scores, the pose angles that are not in the table (deg), the compression fraction of the
    anterior body height (0: intact) and the seed of its surface noise."""
    level: str
    dims: dict
    z_scores: dict
    axial_rotation_deg: float
    lateral_tilt_deg: float
    compression: float
    noise_seed: int

    def with_dims(self, **values) -> "VertebraParameters":
        """A copy with some dimensions replaced (e.g. ``sagittal_tilt_deg=20``)."""
        return dataclasses.replace(self, dims={**self.dims, **values})


def level_dimensions(level: str) -> dict[str, tuple[float, float]]:
    """{dimension: (mean, SD)} of one level."""
    if level not in LEVELS:
        raise ValueError(f"unknown vertebral level {level!r}; choose one of {', '.join(LEVELS)}")
    column = LEVELS.index(level)
    return {name: row[column] for name, row in MORPHOMETRY.items()}


def sample_parameters(rng: np.random.Generator, level: str | None = None,
                      z_score: float | None = None) -> VertebraParameters:
    """Draw one vertebra's parameters (module docstring: Sampling). `z_score` fixes the z of
    every size-like dimension (e.g. +2 for a large vertebra); angles and pose stay random.
    The number of draws is the same for every level, so a seed's pose does not depend on it."""
    drawn_level = LEVELS[int(rng.integers(len(LEVELS)))]
    level = drawn_level if level is None else level
    table = level_dimensions(level)
    shared = rng.standard_normal()
    own = rng.standard_normal(len(table))
    r = SIZE_CORRELATION
    dims, z_scores = {}, {}
    for (name, (mean, sd)), e in zip(table.items(), own):
        z = r * shared + np.sqrt(1 - r * r) * e if name in SIZE_DIMENSIONS else e
        if z_score is not None and name in SIZE_DIMENSIONS:
            z = z_score
        z_scores[name] = float(np.clip(z, -CLIP_SD, CLIP_SD))
        dims[name] = float(mean + sd * z_scores[name])
    axial = rng.uniform(-AXIAL_ROTATION_DEG, AXIAL_ROTATION_DEG)
    lateral = np.clip(rng.normal(0.0, LATERAL_TILT_SD_DEG), -CLIP_SD * LATERAL_TILT_SD_DEG,
                      CLIP_SD * LATERAL_TILT_SD_DEG)
    fractured, amount = rng.random() < COMPRESSION_PROBABILITY, rng.uniform(*COMPRESSION_RANGE)
    return VertebraParameters(level, dims, z_scores, float(axial), float(lateral),
                              float(amount) if fractured else 0.0, int(rng.integers(2 ** 31)))


# ---------------------------------------------------------------- layout (shape frame, mm)
@dataclass(frozen=True)
class _Layout:
    """Derived landmarks of the shape frame (mm): posterior body wall y, pedicle centre z,
    canal centre, and per side (index 0: left +x, 1: right -x) pedicle centre, axis, length,
    posterior end and lamina start (on the pedicle axis, a quarter pedicle width before its end);
    the midline point of the laminae' centre lines (their inner surfaces meet canal_depth behind
    the body wall)."""
    wall_y: float
    pedicle_z: float
    canal_centre: np.ndarray
    pedicle_centres: tuple
    pedicle_axes: tuple
    pedicle_length: float
    pedicle_ends: tuple
    lamina_starts: tuple
    lamina_mid: np.ndarray


def _lamina_mid_y(start: np.ndarray, back_y: float, thickness: float) -> float:
    """y of the midline point m of a lamina centre line from `start` whose inner surface (half
    a thickness inside) passes through (0, back_y): |sx| (m - back_y) = t / 2 * |S - M|,
    solved by fixed-point iteration (a contraction: t / 2 < |sx|)."""
    sx, sy = abs(float(start[0])), float(start[1])
    m = back_y + thickness / 2
    for _ in range(8):
        m = back_y + thickness / 2 * np.hypot(sx, m - sy) / sx
    return float(m)


def _layout(g: dict) -> _Layout:
    """Landmarks from the dimensions `g`: pedicles on the upper body, medial walls at
    +-canal_width / 2, running back over 55 % of the canal depth (3 mm into the body)."""
    wall = g["body_depth"] / 2
    pz = max(g["body_height"] / 2 - g["pedicle_height"] / 2 - 1.0, -g["body_height"] / 2 + g["pedicle_height"] / 2)
    back, overlap = 0.55 * g["canal_depth"], PEDICLE_OVERLAP_MM
    length = back + overlap
    angle = np.radians(g["pedicle_angle_deg"])
    centres, axes, ends = [], [], []
    for side in (1.0, -1.0):
        axis = np.array([side * np.sin(angle), np.cos(angle), 0.0])
        centre = np.array([side * (g["canal_width"] / 2 + g["pedicle_width"] / 2), wall - overlap + length / 2, pz])
        centres.append(centre)
        axes.append(axis)
        ends.append(centre + axis * length / 2)
    starts = tuple(end - axis * g["pedicle_width"] / 4 for end, axis in zip(ends, axes))
    lamina_mid = np.array([0.0, _lamina_mid_y(starts[0], wall + g["canal_depth"], g["lamina_thickness"]), pz])
    return _Layout(wall, pz, np.array([0.0, wall + g["canal_depth"] / 2, pz]), tuple(centres), tuple(axes),
                   length, tuple(ends), starts, lamina_mid)


# ---------------------------------------------------------------- parts (shape frame)
def _body(p: np.ndarray, g: dict, level: str, compression: float) -> np.ndarray:
    """Vertebral body: superelliptic section (flat posterior wall at depth / 2), heights
    interpolated from posterior (body_height) to anterior (wedge, compression), a waist and
    concave endplates; rims rounded by 1.2 mm."""
    width, depth, hp = g["body_width"], g["body_depth"], g["body_height"]
    ha = (hp - depth * np.tan(np.radians(g["body_wedge_deg"]))) * (1.0 - compression)
    a, b = width / 2, 0.55 * depth
    y0 = b - depth / 2                                    # anterior surface at -depth / 2
    n = _BODY_EXPONENT[level[0]]
    waist, concavity = g["body_waist"], g["endplate_concavity"]

    def local(q):
        x, y, z = q[:, 0], q[:, 1], q[:, 2]
        h = hp + (ha - hp) * np.clip((depth / 2 - y) / depth, 0.0, 1.0)
        t = np.clip(2 * np.abs(z) / h, 0.0, 1.0)
        pinch = waist * (1 - t * t)
        rho = superellipse_norm(x, y - y0, a - pinch, b - pinch, n)
        d_xy = np.maximum((rho - 1) * (min(a, b) - pinch), y - depth / 2)
        d_z = np.abs(z) - (h / 2 - concavity * np.clip(1 - rho * rho, 0.0, 1.0))
        return extrude(d_xy, d_z, 1.2)
    return bounded(p, (0.0, 0.0, 0.0), float(np.sqrt(a * a + b * b + max(ha, hp) ** 2 / 4)), local)


def _pedicles_and_laminae(p: np.ndarray, g: dict, lay: _Layout) -> list[np.ndarray]:
    """Two pedicles (boxy superellipsoids along their converging axes, each rooted in the body by
    a rod from its front end, which matters where interpedicular distance + 2 pedicle widths
    exceeds the body width, as at L5; cut flat PEDICLE_OVERLAP_MM in front of the body wall)
    and two laminae (round boxes from each pedicle's posterior
    end to the midline behind the canal; tops level with the pedicle tops)."""
    parts = []
    lamina_z = lay.pedicle_z + g["pedicle_height"] / 2 - g["lamina_height"] / 2
    t = g["lamina_thickness"]
    root_x = 0.5 * g["body_width"] / 2
    for centre, axis, start in zip(lay.pedicle_centres, lay.pedicle_axes, lay.lamina_starts):
        radii = (g["pedicle_width"] / 2, lay.pedicle_length / 2, g["pedicle_height"] / 2)
        pedicle = sd_superellipsoid(p, centre, radii, 2.6, frame_from_axis(axis))
        parts.append(np.maximum(pedicle, lay.wall_y - PEDICLE_OVERLAP_MM - p[:, 1]))   # nothing in front of its root
        front = centre - axis * lay.pedicle_length / 2
        root = np.array([np.sign(front[0]) * min(abs(front[0]), root_x), lay.wall_y - 10.0, front[2]])
        thick = 0.35 * min(g["pedicle_width"], g["pedicle_height"])
        parts.append(sd_round_cone(p, front, root, thick, thick))
        span = lay.lamina_mid[:2] - start[:2]
        length = float(np.linalg.norm(span))
        mid = np.array([*(start[:2] + span / 2), lamina_z])
        half = (t / 2, length / 2 + t / 2, g["lamina_height"] / 2)
        parts.append(sd_round_box(p, mid, half, t / 2 - 0.3, frame_from_axis([*span, 0.0])))
    return parts


def _lamina_y(g: dict, lay: _Layout, x: float) -> float:
    """y (mm) of the lamina centre line at |x| (linear from the pedicle end to the midline)."""
    end = lay.pedicle_ends[0]
    frac = np.clip(abs(x) / abs(end[0]), 0.0, 1.0)
    return float(lay.lamina_mid[1] + (end[1] - lay.lamina_mid[1]) * frac)


def _articular_processes(p: np.ndarray, g: dict, lay: _Layout, thoracic: bool) -> list[np.ndarray]:
    """Superior processes rising from the pedicle-lamina junction to 0.55 facet heights above the
    upper endplate, inferior processes hanging from the laminae (centres interfacet_ratio * body
    width apart) to 0.6 facet heights below the lower endplate; plates turned facet_angle_deg
    from the sagittal plane (posterior edge lateral). Lumbar superior processes sit at least
    6.5 mm lateral to the inferior ones (they embrace those of the vertebra above)."""
    beta = np.radians(g["facet_angle_deg"])
    half_h = g["body_height"] / 2
    sap_z = (lay.pedicle_z, half_h + 0.55 * g["facet_height"])
    lamina_z = lay.pedicle_z + g["pedicle_height"] / 2 - g["lamina_height"] / 2
    iap_z = (-half_h - 0.6 * g["facet_height"], lamina_z)
    parts = []
    for i, side in enumerate((1.0, -1.0)):
        frame = frame_from_axis([side * np.sin(beta), np.cos(beta), 0.0])
        iap_x = side * g["interfacet_ratio"] * g["body_width"] / 2
        sap_x = max(g["canal_width"] / 2 + 0.8 * g["pedicle_width"], abs(iap_x) + (0.0 if thoracic else 6.5))
        sap_xy = (side * sap_x, lay.pedicle_ends[i][1])
        iap_xy = (iap_x, _lamina_y(g, lay, iap_x) + g["lamina_thickness"] / 4)
        for (x, y), (z0, z1), thick in ((sap_xy, sap_z, 2.8), (iap_xy, iap_z, 3.0)):
            radii = (thick, g["facet_width"] / 2 + 1.0, (z1 - z0) / 2 + 1.0)
            parts.append(sd_superellipsoid(p, (x, y, (z0 + z1) / 2), radii, 2.5, frame))
    return parts


def _transverse_processes(p: np.ndarray, g: dict, lay: _Layout, level: str) -> list[np.ndarray]:
    """Tapered rods from the pedicle-lamina junction, swept back and raised by the table angles,
    long enough for the tip-to-tip width `transverse_width`."""
    r_root, r_tip = _TP_RADII.get(level, _TP_RADII[level[0]])
    sweep, elev = np.radians(g["transverse_sweep_deg"]), np.radians(g["transverse_elev_deg"])
    parts = []
    for i, side in enumerate((1.0, -1.0)):
        end = lay.pedicle_ends[i]
        root = np.array([side * (g["canal_width"] / 2 + 0.75 * g["pedicle_width"]),
                         end[1] - (0.0 if level[0] == "T" else 0.3 * lay.pedicle_length),
                         lay.pedicle_z + 1.0])
        direction = np.array([side * np.cos(sweep) * np.cos(elev), np.sin(sweep) * np.cos(elev), np.sin(elev)])
        length = max((g["transverse_width"] / 2 - r_tip - abs(root[0])) / (np.cos(sweep) * np.cos(elev)), 3.0)
        parts.append(sd_round_cone(p, root, root + direction * length, r_root, r_tip))
    return parts


def _spinous_process(p: np.ndarray, g: dict, lay: _Layout) -> list[np.ndarray]:
    """Blade from the lamina junction, spinous_length beyond the canal's posterior border,
    inclined spinous_angle_deg below the transverse plane, top level with the pedicle tops,
    with a thicker tip."""
    angle = np.radians(g["spinous_angle_deg"])
    direction = np.array([0.0, np.cos(angle), -np.sin(angle)])
    frame = frame_from_axis(direction)
    length, height, thick = g["spinous_length"], g["spinous_height"], g["spinous_thickness"]
    back = g["lamina_thickness"]
    root = np.array([0.0, lay.wall_y + g["canal_depth"], lay.pedicle_z + g["pedicle_height"] / 2 - height / 2])
    blade = sd_round_box(p, root + direction * (length - back) / 2, (thick / 2, (length + back) / 2, height / 2),
                         min(thick, height) / 2 - 0.3, frame)
    tip = sd_superellipsoid(p, root + direction * (length - 4.0), (thick / 2 + 1.0, 4.0, height / 2 + 0.5), 2.0, frame)
    return [blade, tip]


def _canal(p: np.ndarray, g: dict, lay: _Layout) -> np.ndarray:
    """Vertebral foramen, infinite along the shape's z: the ellipse canal_width x canal_depth
    behind the body wall, cut by the inner surfaces of the laminae (so it never cuts through
    them: the lumbar canal turns triangular behind)."""
    d = sd_elliptic_cylinder(p, lay.canal_centre, (g["canal_width"] / 2, g["canal_depth"] / 2))
    for start in lay.lamina_starts:
        u = lay.lamina_mid[:2] - start[:2]
        normal = np.array([-u[1], u[0]]) / np.linalg.norm(u)
        normal = normal if normal[1] > 0 else -normal       # pointing posteriorly, out of the canal
        d = np.maximum(d, (p[:, :2] - start[:2]) @ normal.astype(np.float32) + g["lamina_thickness"] / 2)
    return d


def vertebra_local_sdf(params: VertebraParameters):
    """(sdf, layout): the signed distance (N, 3) -> (N,) of the vertebra in its shape frame
    (no pose, no noise) and its landmarks."""
    g, level = params.dims, params.level
    lay = _layout(g)

    def sdf(p):
        parts = [_body(p, g, level, params.compression), *_pedicles_and_laminae(p, g, lay),
                 *_articular_processes(p, g, lay, level[0] == "T"), *_transverse_processes(p, g, lay, level),
                 *_spinous_process(p, g, lay)]
        return subtract(smooth_union_all(parts, SMOOTH_MM), _canal(p, g, lay))
    return sdf, lay


# ---------------------------------------------------------------- pose and rendering
def pose_rotation(params: VertebraParameters) -> np.ndarray:
    """(3, 3) shape -> grid rotation: sagittal tilt about x (+: superior endplate faces
    anteriorly), lateral tilt about y, axial rotation about z."""
    return rotation_xyz(np.radians(params.dims["sagittal_tilt_deg"]), np.radians(params.lateral_tilt_deg),
                        np.radians(params.axial_rotation_deg))


def _posed(local_sdf, rotation: np.ndarray, translation: np.ndarray):
    """Grid-frame SDF of a shape placed by ``p = rotation @ q + translation``."""
    t = np.asarray(translation, np.float32)
    r = np.asarray(rotation, np.float32)
    return lambda p: local_sdf((p - t) @ r)


@dataclass
class GeneratedVertebra:
    """A rendered vertebra with what made it: grid point p (mm from the grid centre) and shape
    point q are related by ``p = rotation @ q + translation_mm``."""
    volume: BinaryVolume
    parameters: VertebraParameters
    rotation: np.ndarray
    translation_mm: np.ndarray
    canal_centre_mm: np.ndarray        # shape frame

    def index_to_shape_mm(self, index: np.ndarray) -> np.ndarray:
        """(N, 3) voxel indices -> (N, 3) shape-frame mm."""
        spacing = self.volume.spacing[0]
        p = (np.asarray(index, float) + 0.5 - np.asarray(self.volume.shape) / 2.0) * spacing
        return (p - self.translation_mm) @ self.rotation

    def shape_mm_to_index(self, q: np.ndarray) -> np.ndarray:
        """(N, 3) shape-frame mm -> (N, 3) continuous voxel indices."""
        p = np.asarray(q, float) @ self.rotation.T + self.translation_mm
        return p / self.volume.spacing[0] + np.asarray(self.volume.shape) / 2.0 - 0.5


def _bbox_centre(local_sdf, rotation: np.ndarray, grid: Sequence[int], spacing_mm: float) -> np.ndarray:
    """(3,) mm bounding-box centre of the posed shape (translation 0), from a 2 mm render of a
    grid 1.5 times the target's extent."""
    coarse = 2.0
    shape = tuple(int(np.ceil(1.5 * n * spacing_mm / coarse)) for n in grid)
    mask = render_sdf(_posed(local_sdf, rotation, np.zeros(3)), shape, coarse, supersample=1)
    return mask_bbox_centre_mm(mask, coarse)


def render_vertebra(params: VertebraParameters, spacing_mm: float = 1.0, grid: Sequence[int] = GRID,
                    render_spacing_mm: float | None = None, supersample: int = 2,
                    surface_noise_mm: float = 0.3) -> GeneratedVertebra:
    """Render `params` on a `grid` (x, y, z voxels) at `spacing_mm`, centred on the shape's
    bounding box; 26-connected islands under SPECK_VOXELS voxels (partial-volume specks at thin
    tips) are dropped, as label clean-up does. `render_spacing_mm` (e.g. 3.0): render that coarse and resample (linear,
    threshold 0.5). `surface_noise_mm`: RMS of a smooth (wavelength 6-12 mm) surface noise."""
    local_sdf, lay = vertebra_local_sdf(params)
    noise = SmoothNoise(np.random.default_rng(params.noise_seed), surface_noise_mm) if surface_noise_mm > 0 else None
    local_sdf = with_noise(local_sdf, noise)
    rotation = pose_rotation(params).astype(float)
    translation = -_bbox_centre(local_sdf, rotation, grid, spacing_mm)
    sdf = _posed(local_sdf, rotation, translation)
    if render_spacing_mm is None or render_spacing_mm == spacing_mm:
        mask = render_sdf(sdf, grid, spacing_mm, supersample)
    else:
        mask = render_sdf_resampled(sdf, grid, spacing_mm, render_spacing_mm, supersample)
    mask = remove_specks(mask, SPECK_VOXELS)
    shift = bbox_centring_shift(mask)
    mask = shift_mask(mask, shift)
    volume = BinaryVolume(mask, (spacing_mm,) * 3)
    return GeneratedVertebra(volume, params, rotation, translation + shift * spacing_mm, lay.canal_centre.copy())


def generate_vertebra(rng: np.random.Generator, level: str | None = None, spacing_mm: float = 1.0,
                      grid: Sequence[int] = GRID, **render_options) -> GeneratedVertebra:
    """Sample (`sample_parameters`) and render (`render_vertebra`) one vertebra."""
    return render_vertebra(sample_parameters(rng, level), spacing_mm, grid, **render_options)


def vertebra_shape(rng: np.random.Generator, level: str | None = None, spacing_mm: float = 1.0,
                   grid: Sequence[int] = GRID, **render_options) -> BinaryVolume:
    """One anatomical vertebra as a BinaryVolume (mask (X, Y, Z) bool, LPS axes, identity
    direction, origin 0), deterministic in the rng state. Options: `render_vertebra`."""
    return generate_vertebra(rng, level, spacing_mm, grid, **render_options).volume


def scaled_grid(scale: float) -> tuple[tuple[int, int, int], float]:
    """(grid, spacing_mm) of the 128 x 120 x 90 / 1 mm grid times `scale`, the rule of the
    synthetic families (`synthetic._grid_mm`): scale 0.25 -> 32 x 30 x 22 at 4 mm."""
    grid = tuple(max(4, int(round(n * scale))) for n in GRID)
    spacing = GRID[0] / grid[0] if scale != 1.0 else 1.0
    return grid, spacing


def vertebra_family_mask(rng: np.random.Generator, scale: float = 1.0) -> BinaryVolume:
    """Drop-in for the synthetic families' generator signature ``(rng, scale)``."""
    grid, spacing = scaled_grid(scale)
    return vertebra_shape(rng, None, spacing, grid)
