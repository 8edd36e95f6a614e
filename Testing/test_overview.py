"""The run's overview picture (reporting.overview, Pillow): where voxels and patch boxes land."""
import numpy as np
import pytest
from PIL import Image

from PatchSamplerLib.reporting.overview import (ERROR_RGB, HEIGHT, KNOWN_RGB, LEGEND_BAND, PATCH_RGB, WIDTH,
                                                cube_edges, known_outline, overview_panels, overview_picture,
                                                overview_views, panel_box, sparse_overview_picture, view_basis,
                                                view_window)

SPACING = (0.8, 1.0, 2.5)           # anisotropic: the panels keep the aspect in mm


def _errors() -> np.ndarray:
    """A 40 x 36 x 20 block of intersection with an extra layer on one side and a missing corner."""
    errors = np.zeros((40, 36, 20), np.uint8)
    errors[8:32, 6:30, 4:16] = 1
    errors[32:35, 6:30, 4:16] = 2
    errors[8:12, 6:10, 4:16] = 3
    return errors


def _panel(errors, cell, centres=np.zeros((0, 3)), k=1):
    """(panel, whole plane, axis, index, crop) of slice cell `cell`."""
    axis, index, panel, crop = overview_panels(errors, SPACING, centres, k)[cell]
    assert (axis, index) == overview_views(errors)[cell]
    return panel, np.take(errors, index, axis=axis), axis, index, crop


def _rgb_at(image: np.ndarray, xy) -> tuple:
    x, y = (int(np.floor(v)) for v in xy)
    return tuple(image[y, x])


def test_every_voxel_of_each_slice_lands_at_its_pixel_with_its_colour(tmp_path):
    errors = _errors()
    overview_picture(errors, SPACING, np.zeros((0, 3)), 5, "title", tmp_path / "o.png")
    image = np.asarray(Image.open(tmp_path / "o.png").convert("RGB"))
    assert image.shape == (HEIGHT, WIDTH, 3)
    for cell in range(5):
        panel, plane, axis, _, crop = _panel(errors, cell)
        shown = [a for a in range(3) if a != axis]
        assert panel.px_a / panel.px_b == pytest.approx(SPACING[shown[0]] / SPACING[shown[1]])
        for a, b in zip(*np.nonzero(plane)):
            assert _rgb_at(image, panel.pixel(a, b)) == ERROR_RGB[plane[a, b]], (cell, a, b)
        a, b = np.argwhere(plane[crop] == 0)[0] + (crop[0].start, crop[1].start)
        assert _rgb_at(image, panel.pixel(a, b)) == (255, 255, 255)


def test_patch_boxes_frame_their_patch_in_the_slices_they_cross(tmp_path):
    errors, k = _errors(), 5
    axis, index = overview_views(errors)[0]                       # axial: the plane z = index
    centres = np.array([[20.0, 18.0, index], [10.0, 10.0, index + 10]])   # the second misses the plane
    overview_picture(errors, SPACING, centres, k, "title", tmp_path / "o.png")
    image = np.asarray(Image.open(tmp_path / "o.png").convert("RGB"))
    panel, *_ = _panel(errors, 0, centres, k)
    left, middle = panel.pixel(20 - 2.5, 18)[0], panel.pixel(20, 18)[1]
    assert any(_rgb_at(image, (left + dx, middle)) == PATCH_RGB for dx in (-1, 0, 1))
    right = panel.pixel(20 + 2.5, 18)[0]
    assert any(_rgb_at(image, (right + dx, middle)) == PATCH_RGB for dx in (-1, 0, 1))
    inside = panel.pixel(20 - 1.5, 18 + 1.5)
    assert _rgb_at(image, inside) == ERROR_RGB[1]                 # the box is drawn, not filled
    x0, y0, x1, y1 = panel_box(0)
    ys, xs = np.nonzero(np.all(image[y0:y1, x0:x1] == PATCH_RGB, axis=-1))
    (bx0, bx1), (by1, by0) = panel.pixel(20 + np.array([-2.5, 2.5]), 18 + np.array([-2.5, 2.5]))
    assert xs.min() + x0 >= bx0 - 2 and xs.max() + x0 <= bx1 + 2      # only the first patch's box
    assert ys.min() + y0 >= by0 - 2 and ys.max() + y0 <= by1 + 2


def test_known_outline_is_the_border_of_the_known_voxels():
    plane = np.zeros((9, 9), bool)
    plane[2:7, 2:7] = True
    edge = known_outline(plane)
    assert edge.sum() == 16 and not edge[3:6, 3:6].any() and edge[2, 2:7].all()
    whole = known_outline(np.ones((4, 6), bool))
    assert whole.sum() == 2 * 4 + 2 * 6 - 4


def test_sparse_overview_outlines_the_known_voxels_in_green(tmp_path):
    errors = _errors()
    known = np.zeros(errors.shape, bool)
    known[:, :, ::4] = True                                       # every 4th axial slice is known
    sparse_overview_picture(errors, known, SPACING, "title", tmp_path / "s.png")
    image = np.asarray(Image.open(tmp_path / "s.png").convert("RGB"))
    green = np.all(image[:HEIGHT - LEGEND_BAND] == KNOWN_RGB, axis=-1)
    assert green.any()
    for cell in range(3):                                         # axial: green iff the slice is known
        panel, plane, axis, index, crop = _panel(errors, cell)
        corner = _rgb_at(image, panel.pixel(crop[0].start, crop[1].start))      # the shown part's corner
        assert (corner == KNOWN_RGB) == (index % 4 == 0), (cell, index)


def test_cube_edges_and_view_basis():
    edges = cube_edges(np.array([1.0, 2.0, 3.0]), np.array([0.5, 1.0, 2.0]))
    lengths = np.abs(edges[:, 1] - edges[:, 0])
    assert edges.shape == (12, 2, 3)
    assert sorted(np.count_nonzero(lengths, axis=1)) == [1] * 12
    assert sorted(lengths.max(1)) == [1.0] * 4 + [2.0] * 4 + [4.0] * 4
    basis = view_basis()
    assert basis @ basis.T == pytest.approx(np.eye(2))


def test_a_small_shape_in_a_large_array_fills_its_panels(tmp_path, monkeypatch):
    """A 12^3 kidney-sized block in a 300 x 260 x 200 whole-body array: the panels show the window
    around it (a tenth of its extent, at least 3 voxels, on each side) and the patch boxes."""
    errors = np.zeros((300, 260, 200), np.uint8)
    errors[100:112, 150:162, 40:52] = 1
    centres, k = np.array([[111.0, 150.0, 45.0]]), 7                # a box reaching 3 voxels beyond the block
    lo, hi = view_window(errors, centres, k)
    assert lo.tolist() == [97, 144, 37] and hi.tolist() == [118, 165, 55]
    assert [v.tolist() for v in view_window(np.zeros((5, 6, 7), np.uint8))] == [[0, 0, 0], [5, 6, 7]]
    edge = np.zeros((10, 10, 10), np.uint8)
    edge[0:2, 8:10, 4:6] = 2                                      # at the array's corner: kept within the array
    assert [v.tolist() for v in view_window(edge)] == [[0, 5, 1], [5, 10, 9]]
    from PatchSamplerLib.reporting import overview
    titles = []
    drawn = overview._panel_title
    monkeypatch.setattr(overview, "_panel_title", lambda draw, box, text, font: (titles.append(text),
                                                                               drawn(draw, box, text, font)))
    overview_picture(errors, SPACING, np.zeros((0, 3)), k, "title", tmp_path / "o.png")
    assert titles[:5] == [f"{overview.AXIS_NAMES[a]} = {i}" for a, i in overview_views(errors)]   # whole-grid index
    assert titles[2] == "axial z = 48"
    image = np.asarray(Image.open(tmp_path / "o.png").convert("RGB"))
    for cell in range(5):
        panel, plane, *_ = _panel(errors, cell)
        x0, y0, x1, y1 = panel_box(cell)
        grey = np.all(image[y0:y1, x0:x1] == ERROR_RGB[1], axis=-1)
        ys, xs = np.nonzero(grey)
        assert max((xs.max() - xs.min()) / (x1 - x0), (ys.max() - ys.min()) / (y1 - y0)) > 0.4, cell
        for a, b in zip(*np.nonzero(plane)):
            assert _rgb_at(image, panel.pixel(a, b)) == ERROR_RGB[1]


def test_a_patch_box_past_the_arrays_edge_stays_in_its_cell(tmp_path):
    """A shape cut by the scan's end (z = 0) with a patch centred on that edge: its box reaches
    4 voxels past the array; no red leaves the cells (the gaps between them, the legend band)."""
    errors = np.zeros((30, 30, 30), np.uint8)
    errors[10:20, 10:20, 0:6] = 1
    overview_picture(errors, SPACING, np.array([[15.0, 15.0, 0.0]]), 9, "title", tmp_path / "o.png")
    image = np.asarray(Image.open(tmp_path / "o.png").convert("RGB"))
    red = np.all(image == PATCH_RGB, axis=-1)
    red[HEIGHT - LEGEND_BAND:] = False                              # the legend's patch square
    inside = np.zeros_like(red)
    for cell in range(6):
        x0, y0, x1, y1 = panel_box(cell)
        inside[y0:y1 + 2, x0:x1 + 2] = True                         # + the line's width
    assert red.any() and not (red & ~inside).any()
