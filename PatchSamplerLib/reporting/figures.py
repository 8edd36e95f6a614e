"""Figures of experiments, drawn with matplotlib: the patch placement of several samplers in
3-D and in projection [T Fig. 5.10], and mean Dice over the (N, K) grid per T [T Figs 5.2-5.4].
A run's overview picture (error slices, Fig. 5.5) is `reporting.overview`, drawn with Pillow.
"""
from __future__ import annotations

import numpy as np

from PatchSamplerLib.method.samplers import SAMPLERS, sampler_label
from PatchSamplerLib.reporting.overview import cube_edges, surface_points_mm


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


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


def _patch_view(ax, mask: np.ndarray, spacing, centres: np.ndarray, k: int, max_points: int = 4000,
                colour: str = "red") -> None:
    """3-D scatter of the input surface (mm) with the patch boxes as wireframe cubes."""
    pts = surface_points_mm(mask, spacing, max_points)
    ax.scatter(*pts.T, s=2, c="0.45", alpha=0.5)
    for c in np.asarray(centres) * np.asarray(spacing):
        _wire_cube(ax, c, np.asarray(spacing) * k / 2.0, colour)
    ax.set_title("patches on the input surface (mm)", fontsize=10)
    ax.set_box_aspect(np.ptp(pts, axis=0) + 1e-6 if len(pts) else (1, 1, 1))


def _wire_cube(ax, centre: np.ndarray, half: np.ndarray, colour: str = "red") -> None:
    for a, b in cube_edges(centre, half):
        ax.plot(*zip(a, b), color=colour, linewidth=0.8)


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
