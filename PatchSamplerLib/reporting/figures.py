"""Figures a person looks at: slices with the thesis's error colours (Fig. 5.5) and the
patch boxes, a 3-D view of the patch placement (Fig. 5.10), and mean Dice over the (N, K) grid
per T (Figs 5.2-5.4).

Colours: intersection grey, extra (reconstruction only) blue, missing (input only) orange.
"""
from __future__ import annotations

import numpy as np

from PatchSamplerLib.method.metrics import surface
from PatchSamplerLib.method.samplers import SAMPLERS, sampler_label

ERROR_COLOURS = {1: (0.6, 0.6, 0.6), 2: (0.12, 0.47, 0.85), 3: (1.0, 0.55, 0.0)}  # grey, blue, orange
ERROR_NAMES = {1: "intersection", 2: "extra", 3: "missing"}


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _overview_canvas():
    """A 15 x 9 inch matplotlib Figure outside pyplot (no pyplot import, no figure manager:
    0.3 s less per run; saved with the Agg canvas)."""
    from matplotlib.figure import Figure
    return Figure(figsize=(15, 9))


def error_rgb(errors2d: np.ndarray) -> np.ndarray:
    """(A, B) error codes -> (A, B, 3) RGB on a white background."""
    rgb = np.ones(errors2d.shape + (3,))
    for code, colour in ERROR_COLOURS.items():
        rgb[errors2d == code] = colour
    return rgb


def _slice(volume_array: np.ndarray, axis: int, index: int) -> np.ndarray:
    return np.take(volume_array, index, axis=axis)


def _draw_boxes(ax, centres: np.ndarray, k: int, axis: int, index: int, every: bool = False,
                colour: str = "red") -> None:
    """Rectangles of the patches that intersect the plane `axis = index` (all with `every`)."""
    from matplotlib.patches import Rectangle
    shown = [a for a in range(3) if a != axis]
    half = (k - 1) / 2.0
    for n, c in enumerate(centres):
        if every or abs(c[axis] - index) <= half + 0.5:
            ax.add_patch(Rectangle((c[shown[0]] - half - 0.5, c[shown[1]] - half - 0.5), k, k,
                                   fill=False, edgecolor=colour, linewidth=1.2))
            ax.text(c[shown[0]], c[shown[1]], str(n + 1), color=colour, fontsize=7, ha="center", va="center")


def _slice_positions(mask: np.ndarray, axis: int, count: int) -> list[int]:
    occupied = np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != axis)))
    if len(occupied) == 0:
        return [mask.shape[axis] // 2] * count
    return [int(v) for v in np.quantile(occupied, np.linspace(0.25, 0.75, count)).round()]


def _overview_views(errors: np.ndarray) -> list[tuple[int, int]]:
    """(axis, index) of the five slices an overview shows: three axial, one coronal, one sagittal."""
    reference = (errors == 1) | (errors == 3)
    views = [(2, z) for z in _slice_positions(reference | (errors == 2), 2, 3)]
    return views + [(1, _slice_positions(reference, 1, 1)[0]), (0, _slice_positions(reference, 0, 1)[0])]


def _draw_error_slices(fig, errors: np.ndarray, spacing, overlay) -> None:
    """The five overview slices in subplots 1-5; `overlay(ax, axis, index)` draws on each."""
    names = {0: "sagittal x", 1: "coronal y", 2: "axial z"}
    for i, (axis, index) in enumerate(_overview_views(errors)):
        ax = fig.add_subplot(2, 3, i + 1)
        shown = [a for a in range(3) if a != axis]
        ax.imshow(error_rgb(_slice(errors, axis, index)).transpose(1, 0, 2), origin="lower",
                  aspect=spacing[shown[1]] / spacing[shown[0]], interpolation="nearest")
        overlay(ax, axis, index)
        ax.set_title(f"{names[axis]} = {index}", fontsize=10)
        ax.set_xticks([]); ax.set_yticks([])


def _finish(fig, extra_handles, extra_names, title: str, path) -> None:
    """Legend (error colours + `extra_handles`), title, fixed margins (tight_layout took 0.2 s
    of a run), PNG at 80 dpi."""
    from matplotlib.patches import Rectangle
    handles = [Rectangle((0, 0), 1, 1, color=c) for c in ERROR_COLOURS.values()]
    fig.legend(handles + extra_handles, list(ERROR_NAMES.values()) + extra_names, loc="lower center",
               ncol=3 + len(extra_names))
    fig.suptitle(title)
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.08, top=0.9, wspace=0.12, hspace=0.22)
    fig.savefig(path, dpi=80)


def overview_figure(errors: np.ndarray, spacing, centres: np.ndarray, k: int, title: str, path) -> None:
    """PNG: three axial (z) slices, one coronal (y) and one sagittal (x) slice with error colours
    and patch boxes, plus a 3-D view of the patches on the input surface."""
    from matplotlib.patches import Rectangle
    fig = _overview_canvas()
    _draw_error_slices(fig, errors, spacing, lambda ax, axis, index: _draw_boxes(ax, centres, k, axis, index))
    _patch_view(fig.add_subplot(2, 3, 6, projection="3d"), (errors == 1) | (errors == 3), spacing, centres, k)
    _finish(fig, [Rectangle((0, 0), 1, 1, fill=False, edgecolor="red")], ["patch"], title, path)


def _draw_known(ax, known: np.ndarray, axis: int, index: int) -> None:
    """Green outline of the known voxels in the plane `axis = index`."""
    plane = _slice(known, axis, index).T.astype(float)
    if plane.any() and not plane.all():
        ax.contour(plane, levels=[0.5], colors="green", linewidths=0.8)
    elif plane.all():
        from matplotlib.patches import Rectangle
        ax.add_patch(Rectangle((-0.5, -0.5), plane.shape[1], plane.shape[0], fill=False, edgecolor="green",
                               linewidth=2))


def sparse_overview_figure(errors: np.ndarray, known: np.ndarray, spacing, title: str, path) -> None:
    """PNG for a reconstruction from sparse input: the overview slices with error colours (or the
    reconstruction in grey when there is no reference) and the known voxels outlined in green
    (a whole known plane gets a green frame), plus a 3-D view of the known foreground."""
    from matplotlib.lines import Line2D
    fig = _overview_canvas()
    _draw_error_slices(fig, errors, spacing, lambda ax, axis, index: _draw_known(ax, known, axis, index))
    ax = fig.add_subplot(2, 3, 6, projection="3d")
    _patch_view(ax, (errors == 1) | (errors == 3), spacing, np.zeros((0, 3)), 1)
    ax.set_title("reference surface (mm)", fontsize=10)
    _finish(fig, [Line2D([0], [0], color="green")], ["known voxels"], title, path)


def _patch_view(ax, mask: np.ndarray, spacing, centres: np.ndarray, k: int, max_points: int = 4000,
                colour: str = "red") -> None:
    """3-D scatter of the input surface (mm) with the patch boxes as wireframe cubes."""
    pts = np.argwhere(surface(mask)) * np.asarray(spacing)
    if len(pts) > max_points:
        pts = pts[np.random.default_rng(0).choice(len(pts), max_points, replace=False)]
    ax.scatter(*pts.T, s=2, c="0.45", alpha=0.5)
    for c in np.asarray(centres) * np.asarray(spacing):
        _wire_cube(ax, c, np.asarray(spacing) * k / 2.0, colour)
    ax.set_title("patches on the input surface (mm)", fontsize=10)
    ax.set_box_aspect(np.ptp(pts, axis=0) + 1e-6 if len(pts) else (1, 1, 1))


def _wire_cube(ax, centre: np.ndarray, half: np.ndarray, colour: str = "red") -> None:
    corners = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)]) * half + centre
    for a in range(8):
        for b in range(a + 1, 8):
            if np.sum(np.abs(corners[a] - corners[b]) > 1e-9) == 1:
                ax.plot(*zip(corners[a], corners[b]), color=colour, linewidth=0.8)


PLACEMENT_COLOURS = ("crimson", "royalblue", "darkgreen", "darkorange")


def placement_figure(mask: np.ndarray, spacing, placements: dict, k: int, title: str, path) -> None:
    """PNG [T Fig. 5.10]: per sampler (a column) the patches on the shape's surface in 3-D and on
    the shape's projections along z (axial) and y (coronal). placements: {name: (N, 3) centres
    in voxel index}."""
    plt = _plt()
    fig = plt.figure(figsize=(5 * len(placements), 13))
    cols = len(placements)
    for c, (name, centres) in enumerate(placements.items()):
        colour = PLACEMENT_COLOURS[c % len(PLACEMENT_COLOURS)]
        ax = fig.add_subplot(3, cols, c + 1, projection="3d")
        _patch_view(ax, mask, spacing, centres, k, colour=colour)
        ax.set_title(f"{name}: {len(centres)} patches of {k}³ voxels", fontsize=11)
        for row, axis in ((1, 2), (2, 1)):
            ax = fig.add_subplot(3, cols, row * cols + c + 1)
            shown = [a for a in range(3) if a != axis]
            ax.imshow(mask.any(axis=axis).T, origin="lower", cmap="Greys", vmin=0, vmax=2.5,
                      aspect=spacing[shown[1]] / spacing[shown[0]], interpolation="nearest")
            _draw_boxes(ax, centres, k, axis, int(round(float(np.mean(np.asarray(centres)[:, axis])))),
                        every=True, colour=colour)
            ax.set_title(f"{name}: projection along {'xyz'[axis]}", fontsize=10)
            ax.set_xticks([]); ax.set_yticks([])
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    fig.savefig(path, dpi=80)
    plt.close(fig)


def dice_surface_figure(grid: dict, path) -> None:
    """PNG [T Figs 5.2-5.4]: one 3-D panel per T, mean Dice over (N, K) per sampler -- a surface
    where the (N, K) points span one (three or more, not on a line), points joined otherwise.
    grid: {(T, sampler): {(N, K): mean Dice}} (`experiments.tables.mean_dice_grid`)."""
    plt = _plt()
    ts = sorted({t for t, _ in grid})
    fig = plt.figure(figsize=(5.5 * len(ts), 5))
    for i, t in enumerate(ts):
        ax = fig.add_subplot(1, len(ts), i + 1, projection="3d")
        for (gt, sampler), cells in sorted(grid.items()):
            if gt == t:
                _dice_surface(ax, cells, sampler_colour(sampler), sampler_label(sampler))
        keys = {nk for (gt, _), cells in grid.items() if gt == t for nk in cells}
        ax.set_xticks(sorted({n for n, _ in keys})); ax.set_yticks(sorted({k for _, k in keys}))
        ax.set_xlabel("N patches"); ax.set_ylabel("K (patch size)"); ax.set_zlabel("mean Dice")
        ax.set_title(f"T = {t}")
        ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def sampler_colour(sampler: str) -> str:
    """The registry's colour of a sampler; black for a name it does not know."""
    return SAMPLERS[sampler].colour if sampler in SAMPLERS else "black"


def _dice_surface(ax, cells: dict, colour: str, label: str) -> None:
    nk = np.array(sorted(cells), float)
    dice = np.array([cells[key] for key in sorted(cells)])
    ax.scatter(nk[:, 0], nk[:, 1], dice, color=colour, label=label, depthshade=False)
    spans_plane = len(nk) >= 3 and np.linalg.matrix_rank(nk[1:] - nk[0]) == 2
    if spans_plane:
        ax.plot_trisurf(nk[:, 0], nk[:, 1], dice, color=colour, alpha=0.35)
    elif len(nk) > 1:
        ax.plot(nk[:, 0], nk[:, 1], dice, color=colour)
