"""The overview picture of a run (`overview.png`), drawn with Pillow: three axial (z) slices, one
coronal (y) and one sagittal (x) slice of the error codes in the thesis's colours [T Fig. 5.5]
with the patch boxes (or, for sparse input, the known voxels outlined in green), and a 3-D view
of the patches on the input surface [T Fig. 5.10].

Pillow, not matplotlib: importing matplotlib and drawing this figure with it took about 1 s of
the README's 5 s demo on the 2-core CPU (issue #19: the demo in under 3 s); with Pillow (which
matplotlib installs) drawing it took 0.06-0.07 s on that demo's kidney. The grid figures of `figures` keep matplotlib.

The slice panels show the part of the array around the shape (`view_window`: the non-zero
error codes and the patch boxes, with a margin), not the whole array: a kidney of a whole-body
labelmap fills its panels instead of being a speck in them.

Geometry of a slice panel (`SlicePanel`): voxel index (a, b) of the plane -- a along the first
shown array axis, b along the second, indices of the whole array -- maps to pixel
x = left + (a - a0 + 0.5) * px_a, y = bottom - (b - b0 + 0.5) * px_b, where (a0, b0) is the
window's first voxel, with px_a / px_b = spacing_a / spacing_b (true aspect in mm; b grows
upwards, as the matplotlib version drew it with origin="lower").
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from PatchSamplerLib.method.metrics import surface
from PatchSamplerLib.volume import box_slices

WIDTH, HEIGHT = 1200, 720                  # pixels (the matplotlib version: 15 x 9 in at 80 dpi)
TITLE_BAND, LEGEND_BAND, PANEL_TITLE = 40, 40, 22
COLUMNS, ROWS = 3, 2
ERROR_COLOURS = {1: (0.6, 0.6, 0.6), 2: (0.12, 0.47, 0.85), 3: (1.0, 0.55, 0.0)}  # grey, blue, orange [T Fig. 5.5]
WINDOW_MARGIN, WINDOW_MIN_MARGIN = 0.1, 3   # the window's margin: a tenth of its extent, at least 3 voxels
ERROR_NAMES = {1: "intersection", 2: "extra", 3: "missing"}   # both, reconstruction only, input only
ERROR_RGB = {code: tuple(round(255 * v) for v in rgb) for code, rgb in ERROR_COLOURS.items()}
PATCH_RGB, KNOWN_RGB, SURFACE_RGB = (220, 0, 0), (0, 150, 0), (115, 115, 115)
VIEW_ELEVATION_DEG, VIEW_AZIMUTH_DEG = 30.0, -60.0   # matplotlib's default 3-D view
AXIS_NAMES = {0: "sagittal x", 1: "coronal y", 2: "axial z"}


def _font(size: int):
    """Pillow's built-in scalable font at `size` px (Pillow >= 10.1, requirements.txt)."""
    from PIL import ImageFont
    return ImageFont.load_default(size=size)


@dataclass(frozen=True)
class SlicePanel:
    """Where a (A, B) plane sits on the canvas: `left`, `bottom` pixel of the corner (voxel edge
    -0.5, -0.5) of its shown part, which starts at voxel (a0, b0), and `px_a`, `px_b` pixels per
    voxel along a and b."""
    left: float
    bottom: float
    px_a: float
    px_b: float
    a0: int = 0
    b0: int = 0

    def pixel(self, a, b) -> tuple[float, float]:
        """Canvas (x, y) of the voxel-index position (a, b) of the plane (voxel centres at integers)."""
        return (self.left + (np.asarray(a) - self.a0 + 0.5) * self.px_a,
                self.bottom - (np.asarray(b) - self.b0 + 0.5) * self.px_b)


def panel_box(index: int) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) pixels of grid cell `index` (0-5, row-major) below its title."""
    cell_w, cell_h = WIDTH // COLUMNS, (HEIGHT - TITLE_BAND - LEGEND_BAND) // ROWS
    x0, y0 = (index % COLUMNS) * cell_w, TITLE_BAND + (index // COLUMNS) * cell_h
    return x0 + 8, y0 + PANEL_TITLE, x0 + cell_w - 8, y0 + cell_h - 4


def slice_panel(shape_ab, spacing_ab, box) -> SlicePanel:
    """The largest true-aspect placement of an (A, B) plane with voxel sizes `spacing_ab` (mm),
    centred in `box` (x0, y0, x1, y1)."""
    (a, b), (sa, sb) = shape_ab, spacing_ab
    x0, y0, x1, y1 = box
    scale = min((x1 - x0) / (a * sa), (y1 - y0) / (b * sb))          # pixels per mm
    w, h = a * sa * scale, b * sb * scale
    left, top = x0 + (x1 - x0 - w) / 2, y0 + (y1 - y0 - h) / 2
    return SlicePanel(left, top + h, sa * scale, sb * scale)


def view_window(errors: np.ndarray, centres=np.zeros((0, 3)), k: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """The part of the (X, Y, Z) array the slice panels show: lo (3,) inclusive and hi (3,)
    exclusive voxel indices around every non-zero error code and every patch box (K voxels
    around each of centres (N, 3), voxel index), widened by WINDOW_MARGIN of its extent (at
    least WINDOW_MIN_MARGIN voxels) on each side and kept within the array; the whole array
    when there is nothing to show."""
    shape = np.array(errors.shape)
    nonzero = errors != 0
    lo, hi = shape.copy(), np.zeros(3, int)
    for axis in range(3):
        occupied = np.flatnonzero(nonzero.any(axis=tuple(a for a in range(3) if a != axis)))
        if len(occupied):
            lo[axis], hi[axis] = occupied[0], occupied[-1] + 1
    centres = np.asarray(centres, float).reshape(-1, 3)
    if len(centres):
        half = (k - 1) / 2.0
        lo = np.minimum(lo, np.floor(centres.min(0) - half).astype(int))
        hi = np.maximum(hi, np.ceil(centres.max(0) + half).astype(int) + 1)
    if np.any(hi <= lo):
        return np.zeros(3, int), shape
    margin = np.maximum(WINDOW_MIN_MARGIN, np.ceil(WINDOW_MARGIN * (hi - lo)).astype(int))
    return np.maximum(lo - margin, 0), np.minimum(hi + margin, shape)


def overview_panels(errors: np.ndarray, spacing, centres=np.zeros((0, 3)), k: int = 1) -> list[tuple]:
    """(axis, index, panel, crop) of the five slice cells (`overview_views`): the plane
    `axis = index`, its `SlicePanel` in its cell and `crop`, the two slices of the plane that
    `view_window` keeps (plane[crop] is what the panel shows)."""
    lo, hi = view_window(errors, centres, k)
    cells = []
    for i, (axis, index) in enumerate(overview_views(errors)):
        a, b = [x for x in range(3) if x != axis]
        panel = slice_panel((hi[a] - lo[a], hi[b] - lo[b]), (spacing[a], spacing[b]), panel_box(i))
        cells.append((axis, index, SlicePanel(panel.left, panel.bottom, panel.px_a, panel.px_b, int(lo[a]), int(lo[b])),
                      (slice(lo[a], hi[a]), slice(lo[b], hi[b]))))
    return cells


def error_image(plane: np.ndarray) -> np.ndarray:
    """(A, B) error codes -> (B, A, 3) uint8 RGB rows from the top (b = B - 1) down, white background."""
    rgb = np.full(plane.shape + (3,), 255, np.uint8)
    for code, colour in ERROR_RGB.items():
        rgb[plane == code] = colour
    return rgb.transpose(1, 0, 2)[::-1]


def _scaled_rows(image_rows: np.ndarray, panel: SlicePanel):
    """(PIL image of the (B, A[, 3]) rows scaled nearest-neighbour to the panel, its top-left (x, y))."""
    from PIL import Image
    rows, cols = image_rows.shape[:2]
    size = (max(1, round(cols * panel.px_a)), max(1, round(rows * panel.px_b)))
    return (Image.fromarray(np.ascontiguousarray(image_rows)).resize(size, Image.NEAREST),
            (round(panel.left), round(panel.bottom - rows * panel.px_b)))


def _paste_plane(canvas, rgb_rows: np.ndarray, panel: SlicePanel):
    """Nearest-neighbour scale the (B, A, 3) rows onto the canvas at `panel`."""
    canvas.paste(*_scaled_rows(rgb_rows, panel))


def _slice_positions(mask: np.ndarray, axis: int, count: int) -> list[int]:
    occupied = np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != axis)))
    if len(occupied) == 0:
        return [mask.shape[axis] // 2] * count
    return [int(v) for v in np.floor(np.quantile(occupied, np.linspace(0.25, 0.75, count)) + 0.5)]   # ties up:
    # the same slices wherever the array starts (round() rounds ties to even)


def reference_mask(errors: np.ndarray) -> np.ndarray:
    """The input shape (intersection or missing) of an error-code volume."""
    return (errors == 1) | (errors == 3)


def _panel_title(draw, box, text: str, font) -> None:
    draw.text(((box[0] + box[2]) / 2, box[1] - PANEL_TITLE / 2), text, fill=(0, 0, 0), font=font, anchor="mm")


def overview_views(errors: np.ndarray) -> list[tuple[int, int]]:
    """(axis, index) of the five slices an overview shows: three axial at the quartiles of the
    shape's z extent (the extra voxels included), one coronal and one sagittal at the first
    quartile of the reference's y and x extent."""
    reference = reference_mask(errors)
    views = [(2, z) for z in _slice_positions(reference | (errors == 2), 2, 3)]
    return views + [(1, _slice_positions(reference, 1, 1)[0]), (0, _slice_positions(reference, 0, 1)[0])]


def _draw_clipped_rectangle(draw, rect, box, width: int = 2) -> None:
    """The outline of `rect` (x0, y0, x1, y1) pixels in red, only where it lies inside `box`
    (x0, y0, x1, y1): a patch box reaching past the array's edge does not run into the next cell."""
    x0, y0, x1, y1 = rect
    bx0, by0, bx1, by1 = box
    for a, b, c, d in ((x0, y0, x1, y0), (x0, y1, x1, y1), (x0, y0, x0, y1), (x1, y0, x1, y1)):
        a, b, c, d = max(a, bx0), max(b, by0), min(c, bx1), min(d, by1)     # the side's part inside the box
        if a <= c and b <= d:
            draw.line((a, b, c, d), fill=PATCH_RGB, width=width)


def _draw_patch_boxes(draw, panel: SlicePanel, centres: np.ndarray, k: int, axis: int, index: int, font,
                      box) -> None:
    """Red boxes (and numbers) of the patches whose K^3 box meets the plane `axis = index`, drawn
    within the cell `box` (x0, y0, x1, y1 pixels)."""
    shown = [a for a in range(3) if a != axis]
    half = (k - 1) / 2.0
    for n, c in enumerate(np.asarray(centres, float)):
        if abs(c[axis] - index) <= half + 0.5:
            (x0, x1), (y_bottom, y_top) = panel.pixel(c[shown[0]] + np.array([-1, 1]) * (half + 0.5),
                                                      c[shown[1]] + np.array([-1, 1]) * (half + 0.5))
            _draw_clipped_rectangle(draw, (x0, y_top, x1, y_bottom), box)
            draw.text(panel.pixel(c[shown[0]], c[shown[1]]), str(n + 1), fill=PATCH_RGB, font=font, anchor="mm")


def known_outline(known_plane: np.ndarray) -> np.ndarray:
    """(A, B) bool: the known voxels of a plane with an unknown (or outside) 4-neighbour; a
    wholly known plane gives its border (a frame)."""
    padded = np.pad(known_plane, 1, constant_values=False)
    interior = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return known_plane & ~interior


def _outline_known(canvas, panel: SlicePanel, known_plane: np.ndarray, crop) -> None:
    """Green outline (`known_outline`) of the known voxels of an (A, B) plane's part `crop` on
    its panel (the edge of the shown part counts as outside: a wholly known plane is framed)."""
    edge = known_outline(np.asarray(known_plane, bool)[crop]).T[::-1]
    if edge.any():
        mask, corner = _scaled_rows(edge.astype(np.uint8) * 255, panel)
        canvas.paste(KNOWN_RGB, corner, mask)


def view_basis() -> np.ndarray:
    """(2, 3): the screen's right and up directions of the 3-D view (orthographic, elevation
    30 deg, azimuth -60 deg as matplotlib's default), in the array's (x, y, z) mm."""
    el, az = np.radians(VIEW_ELEVATION_DEG), np.radians(VIEW_AZIMUTH_DEG)
    right = np.array([-np.sin(az), np.cos(az), 0.0])
    up = np.array([-np.sin(el) * np.cos(az), -np.sin(el) * np.sin(az), np.cos(el)])
    return np.stack([right, up])


def cube_edges(centre: np.ndarray, half: np.ndarray) -> np.ndarray:
    """(12, 2, 3): the edges of the axis-aligned box `centre` +- `half` (mm)."""
    corners = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], float)
    pairs = [(a, b) for a in range(8) for b in range(a + 1, 8) if np.sum(corners[a] != corners[b]) == 1]
    return np.array([[corners[a], corners[b]] for a, b in pairs]) * half + centre


def surface_points_mm(mask: np.ndarray, spacing, max_points: int = 4000) -> np.ndarray:
    """(M, 3) mm (index x spacing) of the surface voxels of `mask`, M <= max_points (a seeded
    random subset when there are more)."""
    pts = np.argwhere(surface(mask)) * np.asarray(spacing, float)
    if len(pts) > max_points:
        pts = pts[np.random.default_rng(0).choice(len(pts), max_points, replace=False)]
    return pts


def _draw_surface_view(canvas, draw, box, mask: np.ndarray, spacing, centres: np.ndarray, k: int,
                       max_points: int = 4000) -> None:
    """The input surface (grey dots, at most `max_points`) and the patch boxes (red wire cubes),
    projected by `view_basis`, fitted into `box`."""
    spacing = np.asarray(spacing, float)
    pts = surface_points_mm(mask, spacing, max_points)
    edges = np.array([cube_edges(c, spacing * k / 2.0) for c in np.asarray(centres, float) * spacing]).reshape(-1, 3)
    every = np.concatenate([pts.reshape(-1, 3), edges]) @ view_basis().T
    if len(every) == 0:
        return
    lo, hi = every.min(0), every.max(0)
    x0, y0, x1, y1 = box
    scale = min((x1 - x0) / max(hi[0] - lo[0], 1e-6), (y1 - y0) / max(hi[1] - lo[1], 1e-6))
    offset = np.array([x0 + (x1 - x0 - (hi[0] - lo[0]) * scale) / 2, y1 - (y1 - y0 - (hi[1] - lo[1]) * scale) / 2])

    def to_pixels(p2):
        return np.stack([offset[0] + (p2[:, 0] - lo[0]) * scale, offset[1] - (p2[:, 1] - lo[1]) * scale], 1)

    dots = np.round(to_pixels(every[:len(pts)])).astype(int)
    image = np.asarray(canvas).copy()
    for dy in (0, 1):
        for dx in (0, 1):
            image[np.clip(dots[:, 1] + dy, 0, HEIGHT - 1), np.clip(dots[:, 0] + dx, 0, WIDTH - 1)] = SURFACE_RGB
    from PIL import Image
    canvas.paste(Image.fromarray(image))
    for a, b in to_pixels(every[len(pts):]).reshape(-1, 2, 2):
        draw.line((tuple(a), tuple(b)), fill=PATCH_RGB, width=1)


def _draw_legend(draw, entries, font) -> None:
    """Coloured squares with names, centred in the bottom band; entries: (name, fill, outline)."""
    widths = [24 + draw.textlength(name, font=font) + 24 for name, _, _ in entries]
    x, y = (WIDTH - sum(widths)) / 2, HEIGHT - LEGEND_BAND / 2
    for (name, fill, outline), w in zip(entries, widths):
        draw.rectangle((x, y - 7, x + 14, y + 7), fill=fill, outline=outline, width=2)
        draw.text((x + 20, y), name, fill=(0, 0, 0), font=font, anchor="lm")
        x += w


def _draw_slices(canvas, draw, errors: np.ndarray, spacing, overlay, font, centres=np.zeros((0, 3)), k: int = 1,
                 offset=(0, 0, 0)) -> None:
    """The five overview slices in cells 0-4 (`overview_panels`); `overlay(panel, axis, index,
    crop, cell box)` draws on each; a title gives its slice's index + offset[axis] (the index in
    the whole grid when `errors` is a window of it starting at `offset`)."""
    for i, (axis, index, panel, crop) in enumerate(overview_panels(errors, spacing, centres, k)):
        _paste_plane(canvas, error_image(np.take(errors, index, axis=axis)[crop]), panel)
        overlay(panel, axis, index, crop, panel_box(i))
        _panel_title(draw, panel_box(i), f"{AXIS_NAMES[axis]} = {index + int(offset[axis])}", font)


def windowed(errors: np.ndarray, centres, k: int, *arrays) -> tuple:
    """(errors, centres (N, 3), [arrays...], lo (3,)) cut to `view_window`: the part an overview
    draws, so that a shape in a whole-body grid costs what the shape costs (the slices, the
    surface of the 3-D view); lo is the window's first voxel in the whole grid. The window of the
    cut errors is all of them, so the panels are the same."""
    lo, hi = view_window(errors, centres, k)
    box = box_slices(lo, hi)
    return errors[box], np.asarray(centres, float).reshape(-1, 3) - lo, [a[box] for a in arrays], lo


def _new_canvas(title: str):
    from PIL import Image, ImageDraw
    canvas = Image.new("RGB", (WIDTH, HEIGHT), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    draw.text((WIDTH / 2, TITLE_BAND / 2), title, fill=(0, 0, 0), font=_font(17), anchor="mm")
    return canvas, draw


def _draw_view_cell(canvas, draw, mask, spacing, centres, k, title: str, font) -> None:
    box = panel_box(5)
    _draw_surface_view(canvas, draw, box, mask, spacing, centres, k)
    _panel_title(draw, box, title, font)


def error_legend(extra) -> list:
    return [(ERROR_NAMES[c], ERROR_RGB[c], ERROR_RGB[c]) for c in ERROR_RGB] + list(extra)


def overview_picture(errors: np.ndarray, spacing, centres: np.ndarray, k: int, title: str, path) -> None:
    """Write the PNG at `path`: errors (X, Y, Z) codes 0-3 (`metrics.error_labels`), spacing (3,)
    mm, centres (N, 3) voxel index of the patches of size k voxels, `title` on top."""
    canvas, draw = _new_canvas(title)
    font = _font(13)
    errors, centres, _, lo = windowed(errors, centres, k)
    _draw_slices(canvas, draw, errors, spacing,
                 lambda panel, axis, index, crop, box: _draw_patch_boxes(draw, panel, centres, k, axis, index, font, box),
                 font, centres, k, lo)
    _draw_view_cell(canvas, draw, reference_mask(errors), spacing, centres, k, "patches on the input surface (mm)", font)
    _draw_legend(draw, error_legend([("patch", None, PATCH_RGB)]), font)
    canvas.save(path, format="PNG")


def sparse_overview_picture(errors: np.ndarray, known: np.ndarray, spacing, title: str, path) -> None:
    """Write the PNG at `path` for a reconstruction from sparse input: errors (X, Y, Z) codes 0-3
    (or the reconstruction as code 1 when there is no reference), known (X, Y, Z) bool voxels
    outlined in green (a whole known plane gets a green frame), spacing (3,) mm."""
    canvas, draw = _new_canvas(title)
    font = _font(13)
    errors, _, (known,), lo = windowed(errors, np.zeros((0, 3)), 1, known)
    _draw_slices(canvas, draw, errors, spacing,
                 lambda panel, axis, index, crop, box: _outline_known(canvas, panel, np.take(known, index, axis=axis), crop),
                 font, offset=lo)
    _draw_view_cell(canvas, draw, reference_mask(errors), spacing, np.zeros((0, 3)), 1, "reference surface (mm)", font)
    _draw_legend(draw, error_legend([("known voxels", None, KNOWN_RGB)]), font)
    canvas.save(path, format="PNG")
