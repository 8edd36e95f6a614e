"""Anatomical kidney family: left and right kidney parenchyma segmentations like TotalSegmentator's.

Replaces the hand-made bean (`synthetic.kidney_mask`) for training the kidney prior. A kidney is
built from analytic solids in millimetres in a kidney frame (u: width axis, + towards the hilum;
v: thickness axis; w: long axis, + towards the upper pole), placed in the library's LPS frame
(x = patient left +L, y = posterior +P, z = superior +S) and rendered like a segmentation:

- envelope: an ellipsoid-like solid (rounder poles than an ellipsoid: exponent `pole_power` on
  w), bent so that the medial border is concave and the lateral border convex (bean), with a
  tapering upper / lower pole and mild surface bumps or, in about a third of kidneys, fetal
  lobulation;
- renal sinus: NOT part of a kidney segmentation (TotalSegmentator's kidney label is parenchyma;
  sinus fat, pelvis and vessels are background), so it is a background cavity inside the
  envelope: an inner core that leaves a parenchymal rim of the published parenchymal width
  (thicker at the poles), opened medially through the hilum, a vertical slit that widens
  outwards (the hilar lips); its wall is bumpy like the calyceal outline;
- orientation: the hilum faces medially (-x for the left kidney, +x for the right) and, by the
  kidney's rotation about its long axis, anteriorly (-y); the long axis is tilted so that the
  upper pole is more medial and more posterior than the lower pole;
- rendering (`rendering.render_sdf` / `render_sdf_resampled` on `kidney_sdf`, an approximate
  signed distance): partial volume at the target spacing (a voxel is kidney when at least half
  of it is, from 2 x 2 x 2 sub-samples near the surface), or optionally at a coarse spacing
  (`render_mm=3.0`, like the TotalSegmentator example data) resampled to the target grid (linear
  interpolation of the 0/1 mask, threshold 0.5: what `Resources/SampleData/prepare.py` did to
  the real samples). The bounding box is centred in the grid (+ a small jitter). The right
  kidney is the mirror image (x -> -x) of a left kidney drawn from the right-side numbers.

Sources (numbers in `KIDNEY_SIZES_MM` and `KIDNEY_ANGLES_DEG`, mean and SD; each checked against
the stored public copy named by its URL, results/anatomy/SOURCES.md has the table). VERIFIED =
read there; DERIVED = computed from numbers read there (rule stated); ASSUMED = not verified
against a source available here.
- Glodny B, Unterholzner V, Taferner B, Hofmann KJ, Rehder P, Strasak A, Petersen J. Normal
  kidney size and its influencing factors - a 64-slice MDCT study of 1.040 asymptomatic
  patients. BMC Urology 2009;9:19 (abstract, Results): pole-to-pole length right
  108.5 +- 12.2 mm, left 111.3 +- 12.6 mm; parenchymal width (PW) right 15.4 +- 2.8 mm, left
  15.9 +- 2.7 mm; cortical width 6.6 +- 1.9 mm (not used: cortex and medulla are one label).
  Body size is the strongest common predictor of length and PW (hence the shared size factor).
  VERIFIED. http://bmcurol.biomedcentral.com/articles/10.1186/1471-2490-9-19 ,
  https://pmc.ncbi.nlm.nih.gov/articles/PMC2813848/
- Su H-A, Hsieh H-Y, Lee C-T, Liao S-C, Chu C-H, Wu C-H. Reference ranges for ultrasonographic
  renal dimensions as functions of age and body indices: a retrospective observational study in
  Taiwan. PLoS ONE 2019;14(11):e0224785 (3,707 healthy adults, summary): width right
  4.78 +- 0.75 cm, left 5.10 +- 0.64 cm. VERIFIED (ultrasound, Chinese population).
  https://www.prolekare.cz/casopisy/plos-one/2019-11-2/reference-ranges-for-ultrasonographic-renal-dimensions-as-functions-of-age-and-body-indices-a-retrospective-observational-study-in-taiwan-116800
- Thickness (antero-posterior, perpendicular to length and width): ASSUMED 40 +- 6 mm both sides
  (not verified against a source available here). No in-vivo CT value was found, and the
  published values that were found are smaller, so this is a deliberate departure from them:
  autopsy, Northwest Indian adults (Am J Hum Biol 2001;13:726-732, abstract): men right
  33.3 +- 5.2, left 34.0 +- 6.4 mm, women 31.2 +- 4.7 / 31.1 +- 6.1 mm
  (https://maternidadycrianzavivencial.com/ja/weight-and-measurements-of-kidneys-in-northwest-indian-adults);
  ultrasound, Jos (Highland Med Res J 2005;3(2):116-120, abstract): antero-posterior diameter
  2.8 +- 0.8 cm (https://ajol.info/index.php/hmrj/article/view/33881); Nigerian cadavers
  (Ajani & Femi-Akinlosotu, 30 adults): 3.45 +- 0.56 cm
  (http://anatomyafrica.org/Vol6issue2/ajani.php); Iranian cadavers (Mashhad, 604):
  2.60 +- 1.39 cm (https://journal.razavihospital.ir/article_113581.html). Against them: the
  ellipsoid volumes of Lee HK, J Korean Soc Med Ultrasound 1996;15(1):63-69 (532 men; right
  129.30 +- 30.20, left 137.06 +- 29.73 cm3 at lengths 10.42 / 10.63 cm,
  https://www.e-ultrasonography.org/journal/view.php?number=1241) imply ~45 mm at a 50 mm width,
  and (reasoning, not a source) with Glodny's PW of 15.4-15.9 mm on each side a 28-34 mm thick
  kidney would leave almost no renal sinus; cadaver kidneys are not perfused.
- Hilum rotation: Sakate M, Sakate ATY, Yamashita S, Teixeira AS, Barbosa L, Correia LA. Normal
  abdominal computed tomography: a retrospective study of renal hila angles. Radiol Bras
  2009;42(1):27-29 (250 CT studies, 500 hila; abstract): angle of the hilum to the horizontal
  (coronal) plane, 95% CI of the mean 40.40-44.54 deg right, 39.91-43.23 deg left (VERIFIED),
  so the hilum faces antero-medially. Mean and SD DERIVED: means 42.47 (right) / 41.57 (left)
  deg = the CI centres; SD = CI half-width * sqrt(250) / 1.96 = 16.7 (right) / 13.4 (left) deg;
  both sides share one (mean, SD): the equal mixture, 42.0 +- 15.1 deg.
  http://rb.org.br/detalhe_artigo.asp?id=812&idioma=English
- Long-axis tilt: ASSUMED (not verified against a source available here): coronal tilt
  18 +- 7 deg (upper pole medial), sagittal tilt 15 +- 5 deg (upper pole posterior). The
  direction is verified, the size is not: "They lie obliquely so that their upper poles are
  nearer the midline and more posterior than their lower poles"
  (https://learnsurgeryonline.com/the-kidneys/). The only number found is in children:
  Ansari-Gilani K, Gholamrezanezhad A, Beiki D, et al. Renal axis deviation in urinary tract
  abnormalities of children: the role of renal scintigraphy. Clin Nucl Med
  2011;36(12):1086-1091 (abstract): mean "renal angle" (long axis to the body axis, posterior
  image) 11.7 deg in normal children, no SD (http://tums.ac.ir/faculties/beikidav?paperid=966);
  not used for adults. 18 +- 7 deg holds both this and the ~30 deg of the two sample kidneys
  (measured on their centre lines; upper poles ~12 deg posterior). Note: the earlier session
  read "more medial and anterior" in a stored Radiopaedia text (not re-checked here); the text
  above and both sample kidneys say posterior.
- Fetal lobulation: a cadaver series of 33 kidney pairs (Bosnia, "Functional dependence of the
  size of the left kidney to the size of the right kidney and the opposite", abstract): fetal
  lobulation in 33.33 % of left and 27.27 % of right kidneys. VERIFIED;
  `LOBULATION_PROBABILITY` = 0.3 rounds their mean.
  https://akademskiimenik.ba/publikacije/5c9c2915edf68e623c3fc163c76db1460f808ccb
- Not found in the stored literature: Emamian et al. 1993 AJR ("Kidney dimensions at
  sonography") - its numbers could not be read, so none are used.

Other ASSUMPTIONS (no source found; uniform ranges in `_sample_shape`): the shared size factor
correlation 0.6; hilum height 25-40 % of the length, centred within +-5 % of the half-length of the
middle; parenchyma 1.2-1.6 x PW at the poles, 0.85-1.05 x PW in the hilar lips (but the sinus
keeps at least a quarter of each semi-axis), 0.7-0.9 x PW medially above and below the hilum
(so the sinus lies medially of the kidney's middle);
hilum slit half-width 0.6-1.1 x the sinus half-thickness, widening by 0.05-0.3 mm per mm
outwards; bend (medial concavity) 10-30 % of the half-width at the poles; pole taper -8..+12 %
(upper pole broader); envelope pole exponent 2-2.6; surface bumps (wavelength 15-30 mm) of RMS
0.7-1.5 mm in lobulated kidneys, else 0-0.4 mm; sinus wall bumps (calyces, 10-20 mm) 0.5-1.5 mm.

Each dimension is drawn as mean + z * SD with z = 0.6 * z_shared + 0.8 * z_own, both standard
normal, z clipped to +-2 SD. Sizes are measured as in the sources: length pole to pole along the
long axis, width perpendicular to it through the hilum, thickness perpendicular to both
(`kidney_measurements` measures a mask the same way, along its principal axes).

Everything is a deterministic function of the generator's state.

API: `kidney_shape(rng, side=None, spacing_mm=1.5, grid=(85, 85, 110), render_mm=None,
jitter_mm=3.0) -> BinaryVolume`; `kidney_shape_with_params` (also the `KidneyParams`, whose
`record()` is JSON-able and holds the side drawn); `sample_kidney_params` + `render_kidney`
(render given parameters); `kidney_sdf`; measurements `kidney_measurements`, `sinus_cavity`,
`convex_hull_mask`; `KIDNEY_FAMILY_VERSION`. The figure `results/anatomy/kidney_family.png`:
``python results/anatomy/kidney_figure.py [out.png]``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from PatchSamplerLib.data.anatomy.rendering import (SDF, SmoothNoise, grid_points_mm, mask_bbox_centre_mm,
                                                    render_sdf, render_sdf_resampled)
from PatchSamplerLib.volume import BinaryVolume

KIDNEY_FAMILY_VERSION = "anatomical-2"
SIDES = ("left", "right")

KIDNEY_SIZES_MM = {                      # (mean, SD) in mm, per side; sources in the module docstring
    "length": {"left": (111.3, 12.6), "right": (108.5, 12.2)},     # Glodny 2009, CT pole to pole (VERIFIED)
    "width": {"left": (51.0, 6.4), "right": (47.8, 7.5)},          # Su 2019, ultrasound (VERIFIED)
    "thickness": {"left": (40.0, 6.0), "right": (40.0, 6.0)},      # ASSUMED (not verified; see docstring)
    "parenchyma": {"left": (15.9, 2.7), "right": (15.4, 2.8)},     # Glodny 2009, PW (VERIFIED)
}
KIDNEY_ANGLES_DEG = {                    # (mean, SD) in degrees, both sides
    "coronal_tilt": (18.0, 7.0),         # upper pole medial (ASSUMED)
    "sagittal_tilt": (15.0, 5.0),        # upper pole posterior (ASSUMED)
    "hilum_rotation": (42.0, 15.1),      # hilum from medial towards anterior (Sakate 2009; DERIVED from the 95% CIs)
}
SIZE_CORRELATION = 0.6                   # share of the size factor common to all dimensions (ASSUMED)
CLIP_SD = 2.0
LOBULATION_PROBABILITY = 0.3             # cadaver series, 33 % left / 27 % right (docstring)
LOBE_WAVELENGTH_MM = 30.0                # surface bumps: about one renal lobe (ASSUMED)
CALYX_WAVELENGTH_MM = 20.0               # bumps of the sinus wall: about one calyx (ASSUMED)


@dataclass(frozen=True)
class KidneyParams:
    """Everything that defines one kidney (mm, degrees, fractions); JSON-able via `record()`."""
    side: str
    length_mm: float
    width_mm: float
    thickness_mm: float
    parenchyma_mm: float
    coronal_tilt_deg: float
    sagittal_tilt_deg: float
    hilum_rotation_deg: float
    bend: float                  # medial shift of the poles, fraction of the half-width
    taper: float                 # relative half-width change from the middle to the upper pole
    pole_power: float            # exponent of |w| / half-length in the envelope (2 = ellipsoid)
    pole_rim: float              # polar parenchyma / PW
    lip_rim: float               # antero-posterior parenchyma (hilar lips) / PW
    medial_rim: float            # medial parenchyma above and below the hilum / PW
    hilum_height: float          # fraction of the length
    hilum_level: float           # hilum centre along w, fraction of the half-length (+ up)
    hilum_gap: float             # half-width of the hilum slit at the sinus core / core half-thickness
    hilum_flare: float           # widening of the half-slit per mm towards the medial side
    lobulated: bool
    surface_bump_mm: float       # RMS of the surface bumps (fetal lobulation when `lobulated`)
    sinus_bump_mm: float         # RMS of the bumps of the sinus wall
    noise_seed: int              # seed of both bump fields

    def record(self) -> dict:
        """JSON-able dict of the parameters and the family version."""
        out = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in dataclasses.asdict(self).items()}
        out["family_version"] = KIDNEY_FAMILY_VERSION
        return out


# ---------------------------------------------------------------- sampling
def _clipped_normal(mean_sd: tuple, z: float) -> float:
    """mean + z * SD with z clipped to +-CLIP_SD."""
    return float(mean_sd[0] + np.clip(z, -CLIP_SD, CLIP_SD) * mean_sd[1])


def _sample_sizes(rng: np.random.Generator, side: str) -> dict:
    """Length, width, thickness, parenchyma (mm) with a shared size factor (see module docstring)."""
    shared = rng.normal()
    own = np.sqrt(1.0 - SIZE_CORRELATION ** 2)
    return {f"{name}_mm": _clipped_normal(table[side], SIZE_CORRELATION * shared + own * rng.normal())
            for name, table in KIDNEY_SIZES_MM.items()}


def _sample_shape(rng: np.random.Generator) -> dict:
    """The shape parameters without a published distribution (ASSUMED uniform ranges)."""
    lobulated = bool(rng.uniform() < LOBULATION_PROBABILITY)
    return dict(bend=rng.uniform(0.10, 0.30), taper=rng.uniform(-0.08, 0.12), pole_power=rng.uniform(2.0, 2.6),
                pole_rim=rng.uniform(1.2, 1.6), lip_rim=rng.uniform(0.85, 1.05), medial_rim=rng.uniform(0.7, 0.9),
                hilum_height=rng.uniform(0.25, 0.40), hilum_level=rng.uniform(-0.05, 0.05),
                hilum_gap=rng.uniform(0.6, 1.1), hilum_flare=rng.uniform(0.05, 0.30), lobulated=lobulated,
                surface_bump_mm=rng.uniform(0.7, 1.5) if lobulated else rng.uniform(0.0, 0.4),
                sinus_bump_mm=rng.uniform(0.5, 1.5), noise_seed=int(rng.integers(2 ** 31)))


def sample_kidney_params(rng: np.random.Generator, side: str | None = None) -> KidneyParams:
    """One kidney's parameters; `side` ("left" / "right") is drawn with equal odds when None."""
    if side is None:
        side = SIDES[int(rng.integers(2))]
    if side not in SIDES:
        raise ValueError(f"side must be 'left', 'right' or None, got {side!r}")
    sizes = _sample_sizes(rng, side)
    angles = {f"{name}_deg": _clipped_normal(ms, rng.normal()) for name, ms in KIDNEY_ANGLES_DEG.items()}
    return KidneyParams(side=side, **sizes, **angles, **_sample_shape(rng))


# ---------------------------------------------------------------- geometry
def _rotation_z_to(direction: np.ndarray) -> np.ndarray:
    """(3, 3) smallest rotation taking +z to the unit vector `direction` (Rodrigues)."""
    axis = np.cross([0.0, 0.0, 1.0], direction)
    s, c = np.linalg.norm(axis), float(direction[2])
    if s < 1e-12:
        return np.eye(3)
    k = axis / s
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + s * kx + (1 - c) * kx @ kx


def kidney_axes(params: KidneyParams) -> np.ndarray:
    """(3, 3) columns = LPS directions of the kidney axes u (towards the hilum), v, w (to the
    upper pole) of a LEFT kidney with these angles (a right kidney mirrors x)."""
    a = np.radians(params.hilum_rotation_deg)
    hilum_turn = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    canonical = np.diag([-1.0, 1.0, 1.0])                 # u medial (-x), v posterior (+y), w up (+z)
    long_axis = np.array([-np.tan(np.radians(params.coronal_tilt_deg)),
                          np.tan(np.radians(params.sagittal_tilt_deg)), 1.0])
    return _rotation_z_to(long_axis / np.linalg.norm(long_axis)) @ hilum_turn @ canonical


def _ellipsoid_like(u, v, w, half: tuple, pole_power: float) -> np.ndarray:
    """Approximate signed distance (mm, < 0 inside) of r = sqrt((u/a)^2 + (v/b)^2 + |w/c|^p) <= 1,
    `half` = (a, b, c) semi-axes in mm (arrays broadcast): (r - 1) / |grad r|, exact to first
    order near the surface."""
    a, b, c = half
    r = np.sqrt((u / a) ** 2 + (v / b) ** 2 + np.abs(w / c) ** pole_power)
    dw = 0.5 * pole_power * np.abs(w / c) ** (pole_power - 1.0) / c
    grad = np.sqrt((u / (a * a)) ** 2 + (v / (b * b)) ** 2 + dw * dw) / np.maximum(r, 1e-6)
    return (r - 1.0) / np.maximum(grad, 1e-6)


def kidney_sdf(params: KidneyParams) -> SDF:
    """Approximate signed distance (mm) of the parenchyma, points (N, 3) LPS mm relative to the
    kidney centre: envelope minus sinus core minus hilum slit, with bumps on envelope and core."""
    axes = kidney_axes(params).astype(np.float32)
    a, b, c = params.width_mm / 2, params.thickness_mm / 2, params.length_mm / 2
    pw = params.parenchyma_mm
    medial = pw * params.medial_rim
    core_a, core_u = max(a - (pw + medial) / 2, 0.25 * a), (pw - medial) / 2   # rim pw laterally, `medial` medially
    core_b, core_c = max(b - pw * params.lip_rim, 0.25 * b), max(c - pw * params.pole_rim, 0.25 * c)
    h_w, h_half = params.hilum_level * c, params.hilum_height * params.length_mm / 2
    mirror = np.array([1.0 if params.side == "left" else -1.0, 1.0, 1.0], np.float32)
    surface = SmoothNoise(np.random.default_rng([params.noise_seed, 0]), params.surface_bump_mm, LOBE_WAVELENGTH_MM)
    calyces = SmoothNoise(np.random.default_rng([params.noise_seed, 1]), params.sinus_bump_mm, CALYX_WAVELENGTH_MM)

    def sdf(points: np.ndarray) -> np.ndarray:
        p = np.asarray(points, np.float32) * mirror
        u, v, w = (p @ axes).T
        t = np.clip(w / c, -1.0, 1.0)
        ub = u - params.bend * a * t * t                  # bent frame: the poles move medially
        envelope = _ellipsoid_like(ub, v, w, (a * (1 + params.taper * t), b * (1 + 0.5 * params.taper * t), c),
                                   params.pole_power) + surface(p)
        core = _ellipsoid_like(ub - core_u, v, w, (core_a, core_b, core_c), 2.0) + calyces(p)
        gap = params.hilum_gap * core_b + params.hilum_flare * np.maximum(ub - core_u, 0.0)
        slit = np.maximum((np.sqrt((v / gap) ** 2 + ((w - h_w) / h_half) ** 2) - 1.0) * gap, core_u - ub)
        return np.maximum(envelope, -np.minimum(core, slit)).astype(np.float32)

    return sdf


# ---------------------------------------------------------------- rendering
def render_kidney(params: KidneyParams, spacing_mm: float = 1.5, grid=(85, 85, 110),
                  render_mm: float | None = None, jitter_mm=(0.0, 0.0, 0.0), supersample: int = 2) -> BinaryVolume:
    """The kidney `params` as a BinaryVolume (X, Y, Z) bool on `grid` at isotropic `spacing_mm`,
    identity direction, origin 0, its bounding box centred in the grid (+ `jitter_mm`); only the
    largest 6-connected piece is kept.
    render_mm: None = partial volume at `spacing_mm`; else segment at `render_mm` (e.g. 3.0) and
    resample to `spacing_mm` (rendering.render_sdf_resampled)."""
    sdf = kidney_sdf(params)
    shape = tuple(int(n) for n in grid)
    centres = grid_points_mm(shape, spacing_mm)
    centre = mask_bbox_centre_mm((sdf(centres) <= 0).reshape(shape), spacing_mm)
    shift = (np.asarray(jitter_mm, np.float32) - centre).astype(np.float32)

    def placed(points):
        return sdf(points - shift)
    if render_mm is None or np.isclose(render_mm, spacing_mm):
        mask = render_sdf(placed, shape, spacing_mm, supersample)
    else:
        mask = render_sdf_resampled(placed, shape, spacing_mm, render_mm, supersample)
    return BinaryVolume(_largest_component(mask), (spacing_mm,) * 3)


def _largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 6-connected piece of `mask` (partial volume can leave a stray voxel or two
    where a bump of the sinus wall nearly cuts through a thin rim)."""
    labels, n = ndimage.label(mask)
    if n <= 1:
        return mask
    return labels == 1 + int(np.argmax(ndimage.sum(mask, labels, range(1, n + 1))))


def kidney_shape_with_params(rng: np.random.Generator, side: str | None = None, spacing_mm: float = 1.5,
                             grid=(85, 85, 110), render_mm: float | None = None,
                             jitter_mm: float = 3.0) -> tuple[BinaryVolume, KidneyParams]:
    """One anatomical kidney and its parameters (`params.side` records the side drawn when None).
    Draws the parameters, then a uniform +-`jitter_mm` offset of the bounding-box centre."""
    params = sample_kidney_params(rng, side)
    jitter = rng.uniform(-jitter_mm, jitter_mm, size=3)
    return render_kidney(params, spacing_mm, grid, render_mm, jitter), params


def kidney_shape(rng: np.random.Generator, side: str | None = None, spacing_mm: float = 1.5,
                 grid=(85, 85, 110), render_mm: float | None = None, jitter_mm: float = 3.0) -> BinaryVolume:
    """One anatomical kidney segmentation (X, Y, Z) bool, LPS axes, on `grid` at `spacing_mm`;
    deterministic for the generator's state. `kidney_shape_with_params` also returns the side."""
    return kidney_shape_with_params(rng, side, spacing_mm, grid, render_mm, jitter_mm)[0]


# ---------------------------------------------------------------- measurement
def kidney_measurements(volume: BinaryVolume) -> dict:
    """Length, width, thickness (mm) of a kidney mask: its extents along its principal axes of
    inertia, longest first (voxel-centre extents + one voxel), and the parenchyma volume (ml)."""
    points = np.argwhere(volume.mask) * np.asarray(volume.spacing)
    centred = points - points.mean(axis=0)
    _, vectors = np.linalg.eigh(np.cov(centred.T))
    along = centred @ vectors[:, ::-1]
    extent = along.max(axis=0) - along.min(axis=0) + float(np.mean(volume.spacing))
    return {"length_mm": float(extent[0]), "width_mm": float(extent[1]), "thickness_mm": float(extent[2]),
            "volume_ml": float(volume.mask.sum() * np.prod(volume.spacing) / 1000.0)}


def convex_hull_mask(mask: np.ndarray) -> np.ndarray:
    """(X, Y, Z) bool: voxels whose centre lies in the convex hull of the foreground voxels
    (as cubes: their corners span the hull). Needs a non-flat foreground."""
    from scipy.spatial import ConvexHull, Delaunay   # imported here: not needed to list the families
    idx = np.argwhere(mask)
    surface = idx[~ndimage.binary_erosion(mask)[tuple(idx.T)]]
    corners = (surface[:, None, :] + np.array(np.meshgrid(*[(-0.5, 0.5)] * 3)).reshape(3, -1).T[None]).reshape(-1, 3)
    hull = Delaunay(corners[ConvexHull(corners).vertices])
    lo, hi = idx.min(axis=0), idx.max(axis=0) + 1
    box = np.stack(np.meshgrid(*[np.arange(l, h) for l, h in zip(lo, hi)], indexing="ij"), axis=-1)
    out = np.zeros_like(mask, dtype=bool)
    out[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = (hull.find_simplex(box.reshape(-1, 3)) >= 0).reshape(box.shape[:3])
    return out | mask


def sinus_cavity(volume: BinaryVolume) -> dict:
    """The background inside the convex hull (renal sinus and hilum): `cavity` (X, Y, Z) bool, its
    largest 6-connected piece; `hull_share`, all of hull minus mask over the hull volume;
    `depth_mm`, the largest distance from a cavity voxel to the outside of the hull."""
    hull = convex_hull_mask(volume.mask)
    background = hull & ~volume.mask
    cavity = _largest_component(background)
    depth = ndimage.distance_transform_edt(np.pad(hull, 1), sampling=volume.spacing)[1:-1, 1:-1, 1:-1]
    return {"cavity": cavity, "hull_share": float(background.sum() / hull.sum()),
            "depth_mm": float(depth[cavity].max()) if cavity.any() else 0.0}
