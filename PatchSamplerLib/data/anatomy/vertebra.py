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

Sources. Every (mean, SD) of `MORPHOMETRY` was checked against the stored public copies of the
literature (results/anatomy/SOURCES.md has the per-level table); `SOURCES` names the source of
each row. A value is VERIFIED (read in the source named, URL below), DERIVED (computed from
numbers read there, by the rule stated) or ASSUMED (not verified against a source available
here). The verified values come from different cohorts and methods (CT and dry bone; New
Zealand, Indian, Pakistani, Nigerian and other adults), the assumed ones from no cohort at all.

Verified / derived:
[CB21] Cook WH, Baker JF. Comparative analysis of lumbar spine vertebral morphology between
      Maori and New Zealand Europeans: a computed tomography study. Int J Spine Surg
      2021;15(6):1072-1081 (196 patients, CT). Table 6 (L5, total, mean +- SD): VBPH 26.3 +- 1.9
      (body_height), VBSL 35.7 +- 3.5 (body_depth), PH 12.9 +- 1.9, PW 16.1 +- 2.3, VCL
      15.6 +- 2.1 (canal_depth), VCW 28.2 +- 3.1 mm (canal_width). VERIFIED, L5 only (the stored
      copy holds Table 6 only).
      http://ijssurgery.com/highwire/markup/11003/expansion?height=500&iframe=true&width=1000 ;
      citation: https://researchspace.auckland.ac.nz/handle/2292/63851?show=full
[M10] Eur Spine J 2010;19(5):768-773, doi:10.1007/s00586-009-1256-6 (first author given as
      Masharawi Y by the earlier docstring; the author list is not on the stored table page),
      Table 1 (120 F + 120 M, 20-80 y): vertebral body sagittal wedging (deg, + = ventral)
      F / M: T10 2.6 / 3.8, T11 4.6 / 5.4, T12 3.5 / 4.9, L1 2.6 / 4.1, L2 0.7 / 2.6,
      L3 -1.1 / 1.3, L4 -3.1 / -0.7, L5 -7.8 / -4.6; interfacet width / VB width F (SD) /
      M (SD): T10 0.80 (0.03) / 0.73 (0.01), T11 0.72 (0.02) / 0.71 (0.03), T12 0.75 (0.04) /
      0.74 (0.01), L1 0.73 (0.05) / 0.67 (0.04), L2 0.70 (0.06) / 0.63 (0.07), L3 0.70 (0.05) /
      0.65 (0.08), L4 0.73 (0.06) / 0.66 (0.02), L5 0.77 (0.09) / 0.74 (0.08).
      https://pmc.ncbi.nlm.nih.gov/articles/PMC2899959/table/Tab1
      Means: DERIVED, (F + M) / 2. interfacet_ratio SD: DERIVED, SD of the equal F/M mixture,
      sqrt((SD_F^2 + SD_M^2) / 2 + ((mean_F - mean_M) / 2)^2). body_wedge_deg SD: ASSUMED 2 deg
      -- the table gives +-0.03-0.05 deg, labelled SD in its footnote, which cannot be a
      between-subject SD of a wedge angle (and the F/M mixture alone would give only 0.4-1.6 deg).
[PF]  Patel MM, Singel TC, Gohil DV, Pandya AM. A study of osteometric measurements of articular
      facets from C3 to S1 (part 2). J Anat Soc India 2007;56(1), Table 4 ("Comparison of right
      inferior articular facets mean dimensions with Panjabi et al.", Panjabi's columns): W / H
      (mm) T10 11.9 / 12.4, T11 11.4 / 13.3, T12 9.5 / 12.5, L1 12.4 / 15.3, L2 12.7 / 16.0,
      L3 13.8 / 15.7, L4 14.7 / 16.2, L5 15.6 / 18.4. Means VERIFIED; no SD there: 1.5 mm ASSUMED.
      https://www.indmedica.com/journals.php?journalid=8&issueid=95&articleid=1289&action=article
[E19] Egwu OA, Okechukwu GN, Uzomba GC, Eze SO, Ezemagu UK. Typical thoracic vertebrae
      morphometry: a cadaveric study in Nigeria. J Anat Soc India 2019;68(2):110-118 (26 male
      sets, T2-T9), abstract: lamina thickness at T9 7.30 +- 1.24 mm. VERIFIED for T9; used as a
      proxy for T10 and T11 (the study has no T10-T12).
      https://jasi.org.in/article.asp?issn=0003-2778;year=2019;volume=68;issue=2;spage=110;epage=118;aulast=Egwu;type=3
[K16] Kaur K, Singh R, Prasath V, Magu S, Tanwar M. Computed tomographic-based morphometric
      study of thoracic spine and its relevance to anaesthetic and spinal surgical procedures.
      J Clin Orthop Trauma 2016;7(2):101-108 (CT, 50 patients), abstract: T12 pedicle width
      8.31 +- 1.83 mm, T12 spinous process angle 16.21 +- 7.38 deg. VERIFIED. (Its T12
      transverse pedicle angle, -9.8 +- 2.39 deg, is not used: see [CH].)
      https://pmc.ncbi.nlm.nih.gov/articles/PMC4857161
[CH]  Chughtai WN, Razzaque MA, Ahmad T, Nighat S, Tahir R, Ahmad B. Computerized tomographic
      based study of thoracic spine morphology in relevance to pedicle screw fixation in
      Pakistani population. Pak J Neurol Surg (CT, 200 patients; year not on the stored page),
      abstract: T12 transverse pedicle angle 3.99 +- 2.16 deg. VERIFIED; chosen over [K16]'s
      -9.8 deg as the larger CT sample (published T12 values disagree: -9.8, -3.0, ~0, +3 deg).
      http://pakjns.org/index.php/pjns/article/view/518
[CU]  Thoracic pedicle morphometry of dry vertebral columns in relation to trans-pedicular
      fixation: a cross-sectional study from central India. Cureus (20 dry columns), abstract:
      T12 pedicle height 15.45 +- 0.78 mm. VERIFIED. (A Nigerian cadaver series gives
      17.34 +- 1.59 mm: https://asn-ng.com/journal/article/1611504513 .)
      https://www.cureus.com/articles/31254-thoracic-pedicle-morphometry-of-dry-vertebral-columns-in-relation-to-trans-pedicular-fixation-a-cross-sectional-study-from-central-india
[GJ]  Calculation of canal/body ratio for lumbar spinal canal in dried vertebrae in Gujarat
      (2012; 63 subjects, dry bone; authors and journal not on the stored page), abstract: L1
      interpedicular distance 22.6 mm (M) / 21.3 mm (F). Mean DERIVED (M + F) / 2 = 21.95 mm;
      no SD there: 2.0 mm ASSUMED. https://acemap.info/paper/383412159
[G93] Genant HK, Wu CY, van Kuijk C, Nevitt MC. J Bone Miner Res 1993;8(9):1137-1148, as
      quoted by Wang YXJ, Quant Imaging Med Surg 2019 (editorial, doi:10.21037/qims.2019.02.04):
      grade 1 20-25 %, grade 2 25-40 % height reduction. VERIFIED (secondary source).
      http://qims.amegroups.com/article/view/24006/22821

ASSUMED (not verified against a source available here):
- Every other number of `MORPHOMETRY`. The earlier session attributed body width (all levels),
  depth and posterior height (T10-L4), canal width (T10-T12, L2-L4) and depth (T10-L4), transverse
  process width and spinous process length (all levels) and spinous inclination (all but T12)
  to Panjabi MM et al., Spine 1991;16(8):888-901 (thoracic) and Spine 1992;17(3):299-306
  (lumbar), and pedicle width (T10, T11, L1-L4), height (T10, T11, L1-L4) and transverse
  angle (all but T12) to Zindrick MR et al., Spine 1987;12(2):160-166 -- from memory. The
  stored copies of those papers hold only their abstracts / first page (Panjabi 1991:
  https://www.scribd.com/document/367623127/panjabi1991-toracica ,
  https://pubmed.ncbi.nlm.nih.gov./1948374 -- "means and standard errors of the means ... for
  all thoracic vertebrae", 144 vertebrae, i.e. 12 per level); no table of Panjabi 1992 or
  Zindrick 1987 was found. These values are therefore unverified estimates, not citations.
  (A consistency check between two verified sources, not of these values: L5 posterior
  height + depth * tan(wedge) = 26.3 + 35.7 * tan 6.2 deg = 30.2 mm [CB21, M10] vs [CB21]'s
  anterior height 30.3 mm.)
- Spinous process height (11-22 mm) and thickness (6-7 mm), lamina height (19-24 mm), lumbar
  and T12 lamina thickness (6.5 / 7.0 mm), endplate concavity (1.5 +- 0.5 mm), body waist
  (1.5 +- 0.5 mm per side), facet orientation (thoracic ~ coronal, lumbar 25-50 deg),
  transverse process sweep / elevation and radii, superellipse exponents, the size correlation
  r = 0.7, all SDs not named above.
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

VERTEBRA_FAMILY_VERSION = "anatomical-2"
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
    "body_wedge_deg":       ((3.2, 2.0), (5.0, 2.0), (4.2, 2.0), (3.35, 2.0), (1.65, 2.0), (0.1, 2.0), (-1.9, 2.0), (-6.2, 2.0)),
    "canal_width":          ((17.5, 1.5), (18.5, 1.7), (20.5, 2.0), (21.95, 2.0), (22.5, 2.0), (23.0, 2.2), (25.0, 2.5), (28.2, 3.1)),
    "canal_depth":          ((16.0, 1.3), (16.8, 1.4), (17.5, 1.5), (18.0, 1.6), (17.5, 1.7), (16.5, 1.8), (16.5, 1.9), (15.6, 2.1)),
    "pedicle_width":        ((6.5, 1.4), (7.5, 1.6), (8.31, 1.83), (8.7, 1.7), (8.9, 1.8), (10.3, 2.0), (12.9, 2.2), (16.1, 2.3)),
    "pedicle_height":       ((14.5, 1.5), (16.0, 1.6), (15.45, 0.78), (15.4, 1.5), (15.0, 1.5), (14.9, 1.6), (14.8, 1.7), (12.9, 1.9)),
    "pedicle_angle_deg":    ((5.0, 4.0), (3.0, 4.0), (3.99, 2.16), (11.0, 4.0), (12.0, 4.0), (14.0, 4.0), (18.0, 4.0), (28.0, 4.0)),
    "transverse_width":     ((63.0, 5.0), (57.0, 5.0), (52.0, 5.0), (72.0, 6.0), (80.0, 6.0), (88.0, 6.0), (86.0, 6.0), (93.0, 6.0)),
    "transverse_sweep_deg": ((35.0, 5.0), (25.0, 5.0), (15.0, 5.0), (10.0, 5.0), (10.0, 5.0), (10.0, 5.0), (10.0, 5.0), (12.0, 5.0)),
    "transverse_elev_deg":  ((8.0, 4.0), (5.0, 4.0), (0.0, 4.0), (0.0, 4.0), (0.0, 4.0), (0.0, 4.0), (5.0, 4.0), (10.0, 4.0)),
    "spinous_length":       ((32.0, 3.5), (30.0, 3.5), (29.0, 3.5), (30.0, 3.5), (31.0, 3.5), (31.0, 3.5), (29.0, 3.5), (25.0, 3.5)),
    "spinous_angle_deg":    ((35.0, 7.0), (25.0, 7.0), (16.21, 7.38), (10.0, 5.0), (8.0, 5.0), (6.0, 5.0), (6.0, 5.0), (12.0, 6.0)),
    "spinous_height":       ((11.0, 2.0), (14.0, 2.0), (18.0, 2.5), (21.0, 3.0), (22.0, 3.0), (22.0, 3.0), (20.0, 3.0), (17.0, 3.0)),
    "spinous_thickness":    ((6.0, 1.2), (6.0, 1.2), (6.5, 1.2), (7.0, 1.5), (7.0, 1.5), (7.0, 1.5), (7.0, 1.5), (7.0, 1.5)),
    "facet_height":         ((12.4, 1.5), (13.3, 1.5), (12.5, 1.5), (15.3, 1.5), (16.0, 1.5), (15.7, 1.5), (16.2, 1.5), (18.4, 1.5)),
    "facet_width":          ((11.9, 1.5), (11.4, 1.5), (9.5, 1.5), (12.4, 1.5), (12.7, 1.5), (13.8, 1.5), (14.7, 1.5), (15.6, 1.5)),
    "facet_angle_deg":      ((70.0, 6.0), (55.0, 6.0), (35.0, 6.0), (25.0, 6.0), (28.0, 6.0), (35.0, 6.0), (45.0, 6.0), (50.0, 6.0)),
    "interfacet_ratio":     ((0.765, 0.042), (0.715, 0.026), (0.745, 0.030), (0.70, 0.054), (0.665, 0.074), (0.675, 0.071), (0.695, 0.057), (0.755, 0.087)),
    "lamina_thickness":     ((7.3, 1.24), (7.3, 1.24), (7.0, 1.2), (6.5, 1.2), (6.5, 1.2), (6.5, 1.2), (6.5, 1.2), (6.5, 1.2)),
    "lamina_height":        ((19.0, 2.0), (19.0, 2.0), (21.0, 2.5), (24.0, 3.0), (24.0, 3.0), (24.0, 3.0), (24.0, 3.0), (23.0, 3.0)),
    "endplate_concavity":   ((1.5, 0.5),) * 8,
    "body_waist":           ((1.5, 0.5),) * 8,
    "sagittal_tilt_deg":    ((-5.0, 4.0), (-5.0, 4.0), (-4.0, 4.0), (-3.0, 4.0), (0.0, 4.0), (3.0, 4.0), (7.0, 4.0), (12.0, 4.0)),
}

# Source of each row (module docstring: tags, tables, URLs). "ASSUMED" = not verified against a
# source available here; rows not listed are ASSUMED at every level.
SOURCES = {
    "body_width": "ASSUMED (all levels)",
    "body_depth": "L5: CB21 Table 6 VBSL; T10-L4 ASSUMED",
    "body_height": "L5: CB21 Table 6 VBPH; T10-L4 ASSUMED",
    "body_wedge_deg": "means: M10 Table 1, (F + M) / 2; SD ASSUMED",
    "canal_width": "L1: GJ mean (M + F) / 2, SD ASSUMED; L5: CB21 Table 6 VCW; others ASSUMED",
    "canal_depth": "L5: CB21 Table 6 VCL; T10-L4 ASSUMED",
    "pedicle_width": "T12: K16; L5: CB21 Table 6 PW; others ASSUMED",
    "pedicle_height": "T12: CU; L5: CB21 Table 6 PH; others ASSUMED",
    "pedicle_angle_deg": "T12: CH; others ASSUMED",
    "spinous_angle_deg": "T12: K16; others ASSUMED",
    "facet_height": "means: PF Table 4 (Panjabi's values); SD ASSUMED",
    "facet_width": "means: PF Table 4 (Panjabi's values); SD ASSUMED",
    "interfacet_ratio": "M10 Table 1: mean (F + M) / 2, SD of the F/M mixture",
    "lamina_thickness": "T10, T11: E19 (T9 value); T12-L5 ASSUMED",
}

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
