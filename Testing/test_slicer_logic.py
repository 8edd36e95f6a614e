"""The module's Qt-free logic (PatchSampler/PatchSamplerLogic.py and its PatchSamplerMRML package) on
real MRML via slicer-core: geometry, outputs, scene bookkeeping, CLI parity on the real kidney,
offscreen 3-D rendering (Testing/offscreen_render.py)."""
import itertools
import re
import json
import subprocess
import sys

import numpy as np
import pytest

slicer = pytest.importorskip("slicer", reason="slicer-core is not installed (pip install slicer-core)")

from slicer_scene import (ROOT, add_segmentation, ijk_to_ras_matrix, rotation_matrix, load_segmentation, new_scene,  # noqa: E402
                          node_ids, save_segmentation, segment_fingerprint, segment_id_by_name, segment_names,
                          segment_on_world_grid)
from tiny_prior import (held_out_vertebra, tiny_any_sampler_path, tiny_sampler_path, TINY_SCALE,  # noqa: E402
                        tiny_prior_path)

import PatchSamplerLogic as L  # noqa: E402
from PatchSamplerMRML import choices, dependencies, geometry, metrics_table, outputs  # noqa: E402
from PatchSamplerLib.data.synthetic import make_shape  # noqa: E402
from PatchSamplerLib.method.metrics import dice  # noqa: E402
from PatchSamplerLib.method.patches import patch_boxes  # noqa: E402
from PatchSamplerLib.orientation import anatomical_reorientation  # noqa: E402
from PatchSamplerLib.pipeline import Cancelled, reconstruct  # noqa: E402
from PatchSamplerLib.reporting.overview import ERROR_COLOURS  # noqa: E402
from PatchSamplerLib.volume import BinaryVolume, index_to_world  # noqa: E402
from PatchSamplerLib.method.inr import ShapePrior  # noqa: E402
from test_structures import VERTEBRA_TERMINOLOGY  # noqa: E402

N, K, T, FIT_LR = 6, 5, 20, 3e-2          # small: a run takes well under a second
SPACING = (4.0, 3.0, 5.0)                 # anisotropic, mm along i, j, k
ORIGIN_RAS = np.array([-31.5, 12.25, 80.0])
EXPECTED_SEGMENTS = [f"Patch {i}" for i in range(1, N + 1)] + ["Reconstruction", "Intersection", "Extra", "Missing"]


def oblique_direction_ras() -> np.ndarray:
    """Columns = RAS directions of i, j, k: oblique (no axis aligned with a world axis) and
    left-handed (one axis flipped), as a resliced, mirrored scan may be."""
    direction = rotation_matrix(0.3, -0.5, 0.8) @ np.diag([1.0, -1.0, 1.0])
    assert np.all(np.abs(direction) > 1e-2) and np.isclose(np.linalg.det(direction), -1.0)
    return direction


@pytest.fixture(scope="module")
def prior():
    return str(tiny_prior_path())


@pytest.fixture(scope="module")
def case(prior):
    """A synthetic vertebra (not seen by the tiny prior) as a segmentation with anisotropic spacing
    and an oblique, flipped IJK-to-RAS matrix, and one FPS run of the logic on it."""
    scene = new_scene()
    shape = make_shape("vertebra", 99, 0, TINY_SCALE)
    ijk_to_ras = ijk_to_ras_matrix(SPACING, oblique_direction_ras(), ORIGIN_RAS)
    node, segment_id = add_segmentation(scene, shape.mask, ijk_to_ras, name="Spine", segment_name="L1")
    fingerprint, ids_before = segment_fingerprint(node, segment_id), node_ids(scene)
    output = L.PatchSamplerLogic().process(node, segment_id, N, K, T, sampler="fps", prior=prior, fit_lr=FIT_LR)
    return dict(scene=scene, shape=shape, ijk_to_ras=ijk_to_ras, node=node, segment_id=segment_id,
                fingerprint=fingerprint, ids_before=ids_before, output=output, run=output.runs[0])


def world_mask(case, node, name):
    return segment_on_world_grid(node, segment_id_by_name(node, name), case["ijk_to_ras"], case["shape"].shape)


# ------------------------------------------------------------------------ outputs
def test_outputs_have_names_colours_surfaces_and_opacities(case):
    seg = case["run"].segmentation_node
    assert seg.GetScene() is case["scene"] and seg.GetName() == "L1 - FPS patches"
    assert segment_names(seg) == EXPECTED_SEGMENTS
    colours = {name: seg.GetSegmentation().GetSegment(segment_id_by_name(seg, name)).GetColor()
               for name in EXPECTED_SEGMENTS}
    assert colours["Extra"] == pytest.approx(ERROR_COLOURS[2])           # blue
    assert colours["Missing"] == pytest.approx(ERROR_COLOURS[3])         # orange
    assert colours["Intersection"] == pytest.approx(ERROR_COLOURS[1])    # grey
    assert colours["Patch 3"] == pytest.approx(outputs.PATCH_COLOUR)
    assert seg.GetSegmentation().ContainsRepresentation("Closed surface")
    surface = seg.GetSegmentation().GetSegment(segment_id_by_name(seg, "Patch 1")).GetRepresentation("Closed surface")
    assert surface.GetNumberOfPoints() > 8
    display = seg.GetDisplayNode()
    for name, style in outputs.output_styles().items():
        segment_id = segment_id_by_name(seg, "Patch 2" if name == "Patch" else name)
        assert display.GetSegmentOpacity3D(segment_id) == pytest.approx(style.opacity_3d)
        assert display.GetSegmentVisibility3D(segment_id) == style.visible_3d
    assert 0 < display.GetSegmentOpacity3D(segment_id_by_name(seg, "Intersection")) < 1   # input visible through
    centres = case["run"].centres_node
    assert centres.GetName() == "L1 - FPS patch centres" and centres.GetNumberOfControlPoints() == N
    table = case["output"].table_node
    assert table.GetName() == "L1 - PatchSampler metrics"
    rows = metrics_table.table_rows(table)
    assert [row["Sampler"] for row in rows] == ["FPS"]
    assert rows[0]["Dice"] == pytest.approx(case["run"].result.metrics["dice"])
    assert rows[0]["Latent fit (s)"] > 0 and rows[0]["Total (s)"] >= rows[0]["Latent fit (s)"]


def test_outputs_lie_on_the_input_grid_in_ras(case):
    """Every output voxel sits on an input voxel centre in world RAS, and holds what the library
    computed for that voxel: the oblique, flipped, anisotropic geometry survives the round trip."""
    seg, result = case["run"].segmentation_node, case["run"].result
    assert np.array_equal(world_mask(case, seg, "Reconstruction"), result.reconstruction)
    for name, code in outputs.ERROR_SEGMENTS.items():
        assert np.array_equal(world_mask(case, seg, name), result.errors == code), name
    for i, (lo, hi) in enumerate(patch_boxes(result.centres, K)):
        box = world_mask(case, seg, f"Patch {i + 1}")
        expected = np.zeros_like(box)
        lo_c, hi_c = np.maximum(lo, 0), np.minimum(hi, np.array(box.shape) - 1)
        expected[lo_c[0]:hi_c[0] + 1, lo_c[1]:hi_c[1] + 1, lo_c[2]:hi_c[2] + 1] = True
        assert np.array_equal(box, expected)
    centres_ras = np.array([case["run"].centres_node.GetNthControlPointPositionWorld(i) for i in range(N)])
    expected_ras = result.centres @ case["ijk_to_ras"][:3, :3].T + case["ijk_to_ras"][:3, 3]
    assert np.allclose(centres_ras, expected_ras, atol=1e-4)
    # the same points through the library's own LPS world coordinates
    lps = index_to_world(result.centres, case["output"].volume)
    assert np.allclose(centres_ras, lps @ geometry.LPS_FROM_RAS.T, atol=1e-4)


def test_the_library_sees_the_input_in_lps_with_its_spacing(case):
    """The BinaryVolume handed to the library equals one built independently from the known mask
    and geometry, and reconstructing that one gives the same voxels and the same Dice."""
    shape, volume = case["shape"], case["output"].volume
    assert np.array_equal(volume.mask, shape.mask) and volume.spacing == pytest.approx(SPACING)
    assert np.allclose(volume.origin, geometry.LPS_FROM_RAS @ ORIGIN_RAS)
    assert np.allclose(volume.direction, geometry.LPS_FROM_RAS @ oblique_direction_ras())
    direct = BinaryVolume(shape.mask, SPACING, geometry.LPS_FROM_RAS @ ORIGIN_RAS,
                          geometry.LPS_FROM_RAS @ oblique_direction_ras())
    library = reconstruct(direct, n=N, k=K, t=T, sampler="fps", prior=str(tiny_prior_path()), seed=0, fit_lr=FIT_LR)
    result = case["run"].result
    assert np.array_equal(result.centres, library.centres)
    assert np.array_equal(result.reconstruction, library.reconstruction)
    mrml_dice = dice(world_mask(case, case["run"].segmentation_node, "Reconstruction"), shape.mask)
    assert mrml_dice == pytest.approx(library.metrics["dice"], abs=1e-12)
    assert result.metrics == pytest.approx(library.metrics)
    assert 0.2 < mrml_dice < 1.0                       # a real, imperfect reconstruction


def test_the_input_segment_is_not_modified(case):
    node = case["node"]
    assert segment_fingerprint(node, case["segment_id"]) == case["fingerprint"]
    assert segment_names(node) == ["L1"] and node.GetName() == "Spine"


# ------------------------------------------------------------------------ scene bookkeeping
def test_a_second_run_replaces_only_that_samplers_outputs(case, prior):
    scene, node, segment_id = case["scene"], case["node"], case["segment_id"]
    logic = L.PatchSamplerLogic()
    first = logic.process(node, segment_id, N, K, T, sampler="random", prior=prior, fit_lr=FIT_LR)
    ids_after_first = node_ids(scene)
    old_seg_id = first.runs[0].segmentation_node.GetID()
    fps_seg_id = case["run"].segmentation_node.GetID()
    second = logic.process(node, segment_id, N, K, T, sampler="random", prior=prior, seed=5, fit_lr=FIT_LR)
    assert len(node_ids(scene)) == len(ids_after_first)                  # replaced, not added
    assert scene.GetNodeByID(old_seg_id) is None
    assert second.runs[0].segmentation_node.GetName() == "L1 - Random patches"
    assert scene.GetNodeByID(fps_seg_id) is case["run"].segmentation_node      # FPS outputs untouched
    assert len([i for i in node_ids(scene) if scene.GetNodeByID(i).GetName() == "L1 - Random patches"]) == 1
    rows = metrics_table.table_rows(second.table_node)
    assert [row["Sampler"] for row in rows] == ["FPS", "Random"]
    assert rows[1]["Seed"] == 5 and rows[1]["Dice"] == pytest.approx(second.runs[0].result.metrics["dice"])
    assert second.table_node is first.table_node and second.table_node.GetScene() is scene   # one table node
    assert segment_fingerprint(node, segment_id) == case["fingerprint"]


def test_a_failing_run_leaves_the_scene_unchanged(case, prior):
    scene, node = case["scene"], case["node"]
    empty_id = node.GetSegmentation().AddEmptySegment("", "Empty")
    before = node_ids(scene)
    logic = L.PatchSamplerLogic()
    with pytest.raises(ValueError, match="'Empty' is empty"):
        logic.process(node, empty_id, N, K, T, prior=prior)
    with pytest.raises(choices.SamplerUnavailable, match="no bundled learned sampler belongs to the prior"):
        logic.process(node, case["segment_id"], N, K, T, sampler="learned", prior=prior)
    with pytest.raises(ValueError, match="K must be odd"):
        logic.process(node, case["segment_id"], N, 6, T, prior=prior)
    with pytest.raises(ValueError, match="not in Spine"):
        logic.process(node, "no-such-segment", N, K, T, prior=prior)
    assert node_ids(scene) == before
    node.GetSegmentation().RemoveSegment(empty_id)


@pytest.mark.parametrize("when", ["during the latent fit", "after the reconstruction, before the commit"])
def test_cancelling_leaves_the_scene_unchanged(case, prior, when):
    scene = case["scene"]
    before = node_ids(scene)
    messages = []
    if when == "during the latent fit":
        def should_cancel():
            return any("fitting" in m for m in messages)
    else:
        def should_cancel():
            return any(m.startswith("Creating the output nodes") for m in messages)
    with pytest.raises(Cancelled):
        L.PatchSamplerLogic().process(case["node"], case["segment_id"], N, K, T, sampler="all", prior=prior,
                                      fit_lr=FIT_LR, progress=lambda m, f: messages.append(m),
                                      should_cancel=should_cancel)
    assert node_ids(scene) == before


def test_compare_all_runs_the_available_samplers_and_says_why_learned_did_not(prior):
    scene = new_scene()
    shape = make_shape("vertebra", 99, 1, TINY_SCALE)
    node, segment_id = add_segmentation(scene, shape.mask, ijk_to_ras_matrix(SPACING, np.eye(3), (0, 0, 0)))
    reports = []
    output = L.PatchSamplerLogic().process(node, segment_id, 4, 3, 10, sampler="all", prior=prior,
                                           progress=lambda m, f: reports.append((m, f)))
    assert [run.sampler for run in output.runs] == ["fps", "random"]
    assert "no bundled learned sampler" in output.skipped["learned"]
    rows = metrics_table.table_rows(output.table_node)
    assert [row["Sampler"] for row in rows] == ["Learned", "FPS", "Random"]
    assert np.isnan(rows[0]["Dice"]) and "no bundled learned sampler" in rows[0]["Note"]
    assert [row["Dice"] for row in rows[1:]] == pytest.approx([run.result.metrics["dice"] for run in output.runs])
    fractions = [f for _, f in reports]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert any(m.startswith("FPS: fitting") for m, _ in reports) and any(m.startswith("Random:") for m, _ in reports)


def test_a_seg_nrrd_written_from_the_output_reloads_with_the_same_segments(case, tmp_path):
    seg = case["run"].segmentation_node
    path = tmp_path / "result.seg.nrrd"
    save_segmentation(case["scene"], seg, path)
    reloaded = load_segmentation(new_scene(), path)
    assert segment_names(reloaded) == EXPECTED_SEGMENTS
    for name in EXPECTED_SEGMENTS:
        a = seg.GetSegmentation().GetSegment(segment_id_by_name(seg, name))
        b = reloaded.GetSegmentation().GetSegment(segment_id_by_name(reloaded, name))
        assert b.GetColor() == pytest.approx(a.GetColor(), abs=1e-3)
        assert np.array_equal(world_mask(case, reloaded, name), world_mask(case, seg, name)), name


# ------------------------------------------------------------------------ grids and transforms
def test_a_tight_labelmap_without_reference_geometry_is_extended_to_the_prior_frame(case, prior):
    """Without a reference geometry the grid is the segment's labelmap extended to the prior's
    frame: the reconstruction is not clipped by the tight extent, and equals the one computed on a
    reference grid that holds the whole frame."""
    shape = case["shape"]
    occupied = np.argwhere(shape.mask)
    lo, hi = occupied.min(axis=0), occupied.max(axis=0)
    tight = shape.mask[lo[0]:hi[0] + 1, lo[1]:hi[1] + 1, lo[2]:hi[2] + 1]
    pad = 12                                           # (32, 30, 22) + 24 voxels hold the 128 x 120 x 88 mm frame
    large = np.pad(shape.mask, pad)
    large_ijk_to_ras = case["ijk_to_ras"] @ _translation(-pad)
    scene = new_scene()
    tight_node, tight_id = add_segmentation(scene, tight, case["ijk_to_ras"] @ _translation(lo), name="Tight",
                                            reference_geometry=False)
    large_node, large_id = add_segmentation(scene, large, large_ijk_to_ras, name="Large")
    logic = L.PatchSamplerLogic()
    from_tight = logic.process(tight_node, tight_id, N, K, T, prior=prior, fit_lr=FIT_LR)
    from_large = logic.process(large_node, large_id, N, K, T, prior=prior, fit_lr=FIT_LR)
    frame_mm = np.array(logic.load_prior(prior).extent_mm)                   # along L, P, S
    along_lps = list(anatomical_reorientation(geometry.LPS_FROM_RAS @ oblique_direction_ras(), large.shape).perm)
    assert np.all((np.array(from_tight.grid.mask.shape) * np.array(SPACING))[along_lps] >= frame_mm)
    assert np.all((np.array(large.shape) * np.array(SPACING))[along_lps] >= frame_mm)
    assert from_tight.runs[0].result.metrics == pytest.approx(from_large.runs[0].result.metrics, rel=1e-9)
    on_large = {"ijk_to_ras": large_ijk_to_ras, "shape": BinaryVolume(large)}
    assert np.array_equal(world_mask(on_large, from_tight.runs[0].segmentation_node, "Reconstruction"),
                          from_large.runs[0].result.reconstruction)


def _translation(offset) -> np.ndarray:
    m = np.eye(4)
    m[:3, 3] = offset
    return m


@pytest.mark.parametrize("angles", [(0.0, 0.05, -0.1), (0.0, 0.2, -0.4)])
def test_a_linear_parent_transform_is_applied_and_the_output_is_in_world_coordinates(case, prior, angles):
    """The run is the library's on the transformed (world) geometry. The library works along the
    anatomical axes nearest to the grid's axes in the world: a small rotation keeps them (nothing
    changes but the world positions), the larger one changes which grid axis is nearest to L / P."""
    scene = new_scene()
    node, segment_id = add_segmentation(scene, case["shape"].mask, case["ijk_to_ras"])
    transform = np.eye(4)
    transform[:3, :3] = rotation_matrix(*angles)
    transform[:3, 3] = (15.0, -7.5, 3.0)
    transform_node = slicer.vtkMRMLLinearTransformNode()
    scene.AddNode(transform_node)
    transform_node.SetMatrixTransformToParent(geometry.array_to_vtk_matrix(transform))
    node.SetAndObserveTransformNodeID(transform_node.GetID())
    output = L.PatchSamplerLogic().process(node, segment_id, N, K, T, prior=prior, fit_lr=FIT_LR)
    run = output.runs[0]
    assert run.segmentation_node.GetParentTransformNode() is None
    world_ijk_to_ras = transform @ case["ijk_to_ras"]
    assert np.allclose(output.grid.ijk_to_ras, world_ijk_to_ras)
    world = {"ijk_to_ras": world_ijk_to_ras, "shape": case["shape"]}
    assert np.array_equal(world_mask(world, run.segmentation_node, "Reconstruction"), run.result.reconstruction)
    direction = world_ijk_to_ras[:3, :3] / np.array(SPACING)
    library = reconstruct(BinaryVolume(case["shape"].mask, SPACING, geometry.LPS_FROM_RAS @ world_ijk_to_ras[:3, 3],
                                       geometry.LPS_FROM_RAS @ direction),
                          n=N, k=K, t=T, sampler="fps", prior=prior, seed=0, fit_lr=FIT_LR)
    assert run.result.metrics == pytest.approx(library.metrics)
    assert np.array_equal(run.result.reconstruction, library.reconstruction)
    centres = np.array([run.centres_node.GetNthControlPointPositionWorld(i) for i in range(N)])
    assert np.allclose(centres, library.centres @ world_ijk_to_ras[:3, :3].T + world_ijk_to_ras[:3, 3], atol=1e-4)
    axes = [anatomical_reorientation(geometry.LPS_FROM_RAS @ d, (1, 1, 1))
            for d in (direction, oblique_direction_ras())]
    same_axes = (axes[0].perm, axes[0].flips) == (axes[1].perm, axes[1].flips)
    assert same_axes == (angles[2] == -0.1)
    if same_axes:                                 # a rigid motion that keeps the nearest axes changes nothing
        assert run.result.metrics == pytest.approx(case["run"].result.metrics)
        untransformed = np.array([case["run"].centres_node.GetNthControlPointPositionWorld(i) for i in range(N)])
        assert np.allclose(centres, untransformed @ transform[:3, :3].T + transform[:3, 3], atol=1e-4)


def signed_permutations() -> list[tuple[tuple, tuple]]:
    """The 48 ways to store a grid's axes: (perm, flips), array axis a = input axis perm[a],
    reversed where flips[a]."""
    return [(perm, flips) for perm in itertools.permutations(range(3))
            for flips in itertools.product((False, True), repeat=3)]


def stored_as(mask: np.ndarray, ijk_to_ras: np.ndarray, perm, flips) -> tuple[np.ndarray, np.ndarray]:
    """The (I, J, K) mask with its axes permuted and reversed as (perm, flips) say, and the
    IJK-to-RAS (4, 4) that keeps every voxel at its world position."""
    array = np.transpose(mask, perm)
    array = np.flip(array, [a for a in range(3) if flips[a]]) if any(flips) else array
    matrix, first = np.eye(4), np.zeros(3)
    for a in range(3):
        matrix[:3, a] = ijk_to_ras[:3, perm[a]] * (-1.0 if flips[a] else 1.0)
        first[perm[a]] = mask.shape[perm[a]] - 1 if flips[a] else 0
    matrix[:3, 3] = ijk_to_ras[:3, :3] @ first + ijk_to_ras[:3, 3]
    return np.ascontiguousarray(array), matrix


def world_points(node, name: str) -> np.ndarray:
    """(P, 3) world RAS of a segment's voxels, sorted, rounded to 1e-3 mm."""
    mask, ijk_to_ras = geometry.segment_mask_local(node, segment_id_by_name(node, name))
    points = np.round(np.argwhere(mask) @ ijk_to_ras[:3, :3].T + ijk_to_ras[:3, 3], 3)
    return points[np.lexsort(points.T[::-1])]


def run_stored_as(mask, ijk_to_ras, perm, flips, prior, tight: bool) -> tuple:
    """process() of the mask stored as (perm, flips), as a tight labelmap without reference geometry
    (the logic extends it to the prior's frame) or on its whole grid as reference geometry:
    (metrics, (N, 3) centres in world RAS, (P, 3) world RAS of the reconstruction's voxels)."""
    array, matrix = stored_as(mask, ijk_to_ras, perm, flips)
    if tight:
        occupied = np.argwhere(array)
        lo, hi = occupied.min(axis=0), occupied.max(axis=0)
        array, matrix = array[lo[0]:hi[0] + 1, lo[1]:hi[1] + 1, lo[2]:hi[2] + 1], matrix @ _translation(lo)
    node, segment_id = add_segmentation(new_scene(), array, matrix, reference_geometry=not tight)
    run = L.PatchSamplerLogic().process(node, segment_id, N, K, T, prior=prior, fit_lr=FIT_LR).runs[0]
    centres = np.array([run.centres_node.GetNthControlPointPositionWorld(i) for i in range(N)])
    return run.result.metrics, centres, world_points(run.segmentation_node, "Reconstruction")


@pytest.mark.parametrize("tight", [True, False], ids=["tight labelmap", "reference geometry"])
def test_any_axis_order_of_the_same_anatomy_gives_the_same_world_result(prior, tight):
    """The same vertebra in world RAS, stored in all 48 axis orders and signs (tight labelmaps: the
    logic's own grid extension is exercised) or 8 of them (pure flips, pure permutations, RAS- and
    LPS-like orders; with reference geometry the grid is the input's, so this checks only that the
    logic hands the geometry over intact): the same metrics, patch centres (in order) and
    reconstruction voxels in world RAS."""
    shape = held_out_vertebra(0)
    ijk_to_ras = ijk_to_ras_matrix(SPACING, rotation_matrix(0.1, -0.05, 0.08), ORIGIN_RAS)   # slightly oblique
    orders = signed_permutations()
    if not tight:
        orders = [((0, 1, 2), (False, False, False)), ((0, 1, 2), (True, True, False)),
                  ((0, 1, 2), (False, False, True)), ((0, 1, 2), (True, True, True)), ((1, 0, 2), (False,) * 3),
                  ((2, 0, 1), (False,) * 3), ((2, 1, 0), (True, False, True)), ((1, 2, 0), (False, True, True))]
    first = run_stored_as(shape.mask, ijk_to_ras, *orders[0], prior, tight)
    assert 0.05 < first[0]["dice"] < 1.0 and len(first[2]) > 0
    for perm, flips in orders[1:]:
        metrics, centres, points = run_stored_as(shape.mask, ijk_to_ras, perm, flips, prior, tight)
        assert metrics == pytest.approx(first[0], rel=1e-9, abs=1e-12), (perm, flips)
        assert np.allclose(centres, first[1], atol=1e-4), (perm, flips)
        assert points.shape == first[2].shape and np.allclose(points, first[2], atol=2e-3), (perm, flips)


def test_a_tight_labelmap_under_a_parent_transform_is_extended_along_its_world_axes(case, prior):
    """A tight labelmap under a rotation that changes which of its axes is nearest to L, P, S gives
    the result of the same labelmap stored directly in world coordinates (no transform)."""
    occupied = np.argwhere(case["shape"].mask)
    lo, hi = occupied.min(axis=0), occupied.max(axis=0)
    tight = case["shape"].mask[lo[0]:hi[0] + 1, lo[1]:hi[1] + 1, lo[2]:hi[2] + 1]
    local = case["ijk_to_ras"] @ _translation(lo)
    transform = np.eye(4)
    transform[:3, :3], transform[:3, 3] = rotation_matrix(0.0, 1.2, -0.4), (15.0, -7.5, 3.0)
    scene = new_scene()
    moved, moved_id = add_segmentation(scene, tight, local, name="Moved", reference_geometry=False)
    transform_node = slicer.vtkMRMLLinearTransformNode()
    scene.AddNode(transform_node)
    transform_node.SetMatrixTransformToParent(geometry.array_to_vtk_matrix(transform))
    moved.SetAndObserveTransformNodeID(transform_node.GetID())
    direct, direct_id = add_segmentation(scene, tight, transform @ local, name="Direct", reference_geometry=False)
    logic = L.PatchSamplerLogic()
    runs = [logic.process(node, segment_id, N, K, T, prior=prior, fit_lr=FIT_LR).runs[0]
            for node, segment_id in ((moved, moved_id), (direct, direct_id))]
    assert runs[0].result.metrics == pytest.approx(runs[1].result.metrics, rel=1e-9)
    assert np.array_equal(world_points(runs[0].segmentation_node, "Reconstruction"),
                          world_points(runs[1].segmentation_node, "Reconstruction"))


def test_shared_labelmap_layers_give_each_segment_its_own_voxels():
    """Segments imported from one multi-label labelmap share a layer; each is read by its label value."""
    scene = new_scene()
    labels = np.zeros((12, 10, 8), np.uint8)
    labels[2:5, 2:5, 2:5], labels[7:10, 5:9, 3:7] = 1, 2
    lm = slicer.vtkMRMLLabelMapVolumeNode()
    scene.AddNode(lm)
    lm.SetAndObserveImageData(geometry.array_to_image(labels, np.eye(4)))
    lm.SetIJKToRASMatrix(geometry.array_to_vtk_matrix(ijk_to_ras_matrix((1.0, 2.0, 3.0), np.eye(3), (5, 6, 7))))
    node = slicer.vtkMRMLSegmentationNode()
    scene.AddNode(node)
    assert slicer.modules.segmentations.logic().ImportLabelmapToSegmentationNode(lm, node)
    assert node.GetSegmentation().GetNumberOfLayers() == 1 and node.GetSegmentation().GetNumberOfSegments() == 2
    for i, value in enumerate((1, 2)):
        grid = geometry.read_segment_grid(node, node.GetSegmentation().GetNthSegmentID(i))
        assert grid.mask.sum() == (labels == value).sum()
        assert np.allclose(grid.ijk_to_ras[:3, :3], np.diag([1.0, 2.0, 3.0]))


# ------------------------------------------------------------------------ samplers and dependencies
def test_the_sampler_seam_gives_the_library_centres(case, prior):
    """A sampler's run is the library's reconstruct() with that sampler's RunConfig: the registry's
    baseline centres, or the learned SamplerModel's projected points (and its generated ones), drawn
    on the volume in the library's anatomical frame and given on the input's grid."""
    from PatchSamplerLib.method.inr import ShapePrior
    from PatchSamplerLib.method.sampler import SamplerModel, learned_centres
    from PatchSamplerLib.method.samplers import baseline_centres
    from PatchSamplerLib.orientation import to_anatomical
    from PatchSamplerLib.pipeline import RunConfig
    volume, shape_prior = case["output"].volume, ShapePrior.load(prior)
    anatomical, orient = to_anatomical(volume)
    for name in ("fps", "random"):
        result = L.PatchSamplerLogic.run_sampler(volume, RunConfig(5, K, T, name, seed=3), shape_prior, None,
                                                 None, None)
        expected = baseline_centres(name, anatomical.mask, anatomical.spacing, 5, 3)
        assert np.array_equal(result.centres, orient.index_from_anatomical(expected))
        assert result.generated is None and (result.settings["sampler"], result.settings["seed"]) == (name, 3)
    model = SamplerModel.load(tiny_sampler_path())
    result = L.PatchSamplerLogic.run_sampler(volume, RunConfig(2, 3, T, "learned"), shape_prior, model, None, None)
    generated, projected = learned_centres(model, anatomical.mask)
    assert np.allclose(result.centres, orient.index_from_anatomical(projected), atol=1e-4)
    assert np.allclose(result.generated, orient.index_from_anatomical(generated), atol=1e-4)
    shape_prior = ShapePrior.load(prior)
    with pytest.raises(choices.SamplerUnavailable, match="model.pt"):
        choices.samplers_to_run("learned", 5, 9, T, shape_prior, sampler_model="model.pt")
    assert choices.samplers_to_run("all", 5, 9, T, shape_prior)[0] == ["fps", "random"]
    assert choices.samplers_to_run("random", 5, 9, T, shape_prior) == (["random"], {}, None)
    run, skipped, learned = choices.samplers_to_run("all", 2, 3, T, shape_prior, str(tiny_sampler_path()))
    assert run == ["learned", "fps", "random"] and not skipped and learned.n == 2


def test_compare_all_with_a_sampler_model_runs_the_learned_sampler_like_the_library(prior):
    from PatchSamplerLib.pipeline import reconstruct
    scene = new_scene()
    shape = make_shape("vertebra", 99, 2, TINY_SCALE)
    node, segment_id = add_segmentation(scene, shape.mask, ijk_to_ras_matrix(SPACING, np.eye(3), (0, 0, 0)))
    output = L.PatchSamplerLogic().process(node, segment_id, 2, 3, 10, sampler="all", prior=prior,
                                           sampler_model=str(tiny_sampler_path()))
    assert [run.sampler for run in output.runs] == ["learned", "fps", "random"] and not output.skipped
    learned = output.runs[0]
    assert learned.segmentation_node.GetName().endswith("Learned patches")
    assert learned.centres_node.GetNumberOfControlPoints() == 2
    library = reconstruct(output.volume, n=2, k=3, t=10, sampler="learned", prior=prior,
                          sampler_model=str(tiny_sampler_path()))
    assert learned.result.metrics["dice"] == pytest.approx(library.metrics["dice"], abs=1e-6)
    np.testing.assert_allclose(learned.result.generated, library.generated)


def test_the_status_line_names_the_learned_sampler_or_why_there_is_none(prior):
    assert choices.learned_sampler_status(prior, 4, 9, 100, "/x/my_sampler.pt") == "Learned sampler: my_sampler.pt"
    assert "no bundled learned sampler belongs to the prior" in choices.learned_sampler_status(prior, 4, 9, 100)
    assert "no prior given" in choices.learned_sampler_status(None, 4, 9, 100)


@pytest.mark.parametrize("segment, prior, switched", [
    (["left kidney", ""], "vertebra-anatomical", "kidney"), (["kidney_left"], "vertebra", "kidney"),
    (["T12 vertebra", ""], "kidney", "vertebra-anatomical"), (["Segment_1", VERTEBRA_TERMINOLOGY], "kidney-anatomical",
                                                           "vertebra-anatomical"),
    (["left kidney"], "kidney-anatomical", None),                  # already a kidney prior: the user's choice stays
    (["left kidney"], "file", None),                               # a prior file is never switched
    (["Segment_1", ""], "kidney", None), ([], "vertebra", None), (["kidney_cyst_left"], "vertebra", None),
])
def test_selecting_a_kidney_or_vertebra_segment_switches_a_bundled_prior_of_the_other_structure(segment, prior,
                                                                                               switched):
    chosen, why = choices.prior_for_segment(segment, prior)
    assert chosen == switched
    assert (f"Prior set to {switched}" in why) if switched else why == ""


def test_segment_description_reads_the_name_and_terminology():
    scene = new_scene()
    node, segment_id = add_segmentation(scene, np.ones((3, 3, 3), bool), np.eye(4), segment_name="T12 vertebra")
    node.GetSegmentation().GetSegment(segment_id).SetTerminology(VERTEBRA_TERMINOLOGY)
    assert choices.segment_description(node, segment_id) == ["T12 vertebra", VERTEBRA_TERMINOLOGY, node.GetName()]
    assert choices.segment_description(node, "missing") == [] and choices.segment_description(None, "") == []


def test_a_run_with_a_prior_of_another_structure_warns_once_and_notes_it_in_the_table(tmp_path):
    """Compare all with a vertebra prior on a segment named "left kidney": each row's Note and
    the status notes carry the warning, shown once for all samplers."""
    prior = ShapePrior.load(tiny_prior_path())
    prior.metadata["data"] = "synthetic vertebra"
    prior.save(tmp_path / "tiny_vertebra.pt")
    scene = new_scene()
    shape = make_shape("vertebra", 99, 1, TINY_SCALE)
    node, segment_id = add_segmentation(scene, shape.mask, ijk_to_ras_matrix(SPACING, np.eye(3), (0, 0, 0)),
                                        segment_name="left kidney")
    output = L.PatchSamplerLogic().process(node, segment_id, 4, 3, 5, sampler="all", prior=tmp_path / "tiny_vertebra.pt")
    notes = output.notes()
    warned = [note for note in notes if "looks like a kidney ('left kidney')" in note]
    assert len(warned) == 1 and notes[0] == warned[0] and "trained on vertebrae" in warned[0]
    rows = metrics_table.table_rows(output.table_node)
    assert all("looks like a kidney" in row["Note"] for row in rows if row["Sampler"] != "Learned")
    plain = L.PatchSamplerLogic().process(node, segment_id, 4, 3, 5, sampler="fps", prior=str(tiny_prior_path()))
    assert not any("looks like" in note for note in plain.notes())       # a prior that does not say: no verdict


def test_dependencies_go_through_pytorch_utils_then_pip(monkeypatch):
    calls = []

    class FakeTorchLogic:
        @staticmethod
        def torchInstalled():
            return False

        def installTorch(self, askConfirmation=False, forceComputationBackend=None, torchVersionRequirement=None):
            calls.append(("PyTorchUtils", askConfirmation, torchVersionRequirement))
            return object()

    fake_utils = type(sys)("PyTorchUtils")
    fake_utils.PyTorchUtilsLogic = FakeTorchLogic
    monkeypatch.setitem(sys.modules, "PyTorchUtils", fake_utils)
    packaging = type(sys)("packaging")
    packaging.pip_ensure = lambda requirements: calls.append(("pip_ensure", tuple(requirements)))
    monkeypatch.setattr(slicer, "packaging", packaging, raising=False)
    dependencies.install_packages(["scipy>=1.10", "torch>=2.0", "matplotlib>=3.7"], log=lambda text: None)
    assert calls == [("PyTorchUtils", False, ">=2.0"), ("pip_ensure", ("scipy>=1.10",)),
                     ("pip_ensure", ("matplotlib>=3.7",))]

    calls.clear()                                # no PyTorch extension: torch by pip as well
    monkeypatch.setitem(sys.modules, "PyTorchUtils", None)
    dependencies.install_packages(["scipy", "torch>=2.0"], log=lambda text: None)
    assert calls == [("pip_ensure", ("torch>=2.0",)), ("pip_ensure", ("scipy",))]

    calls.clear()                                # Slicer before 5.12: slicer.util.pip_install
    monkeypatch.setattr(slicer, "packaging", None, raising=False)
    monkeypatch.setattr(slicer.util, "pip_install", lambda requirement: calls.append(("pip_install", requirement)))
    dependencies.install_packages(["scipy"], log=lambda text: None)
    assert calls == [("pip_install", "scipy")]


def test_missing_packages_come_from_the_requirements_file(monkeypatch):
    requirements = dependencies.requirements()
    assert [dependencies.requirement_name(r) for r in requirements] == ["torch", "scipy", "matplotlib"]
    assert "matplotlib>=3.7" in requirements and "torch>=2.0" in requirements    # torch not pinned in Slicer
    assert dependencies.missing_packages() == []            # this test environment has them all
    find_spec = dependencies.importlib.util.find_spec
    monkeypatch.setattr(dependencies.importlib.util, "find_spec",
                        lambda name, *args: None if name in ("matplotlib", "torch") else find_spec(name, *args))
    assert dependencies.missing_packages() == ["torch>=2.0", "matplotlib>=3.7"]      # in file order


# ------------------------------------------------------------------------ the real kidney
@pytest.fixture(scope="module")
def kidney():
    """The sample kidney loaded as a segmentation through MRML storage nodes and processed with the
    bundled kidney prior when it is installed (else the tiny prior file: the same on both sides)."""
    from PatchSamplerLib.checkpoints import bundled_models
    prior = "kidney" if "kidney" in bundled_models() else str(tiny_prior_path())
    from kidney_screenshot import process_kidney
    scene = new_scene()
    settings = dict(n=8, k=9, t=20, prior=prior, seed=0)
    node, output = process_kidney(scene, **settings)
    return dict(scene=scene, node=node, output=output, settings=settings)


def test_process_on_the_real_kidney_gives_the_cli_dice(kidney, tmp_path):
    from kidney_screenshot import KIDNEY_FILE
    s = kidney["settings"]
    out = tmp_path / "cli"
    proc = subprocess.run([sys.executable, "-m", "PatchSamplerLib", "run", "--input", str(KIDNEY_FILE),
                           "--n", str(s["n"]), "--k", str(s["k"]), "--t", str(s["t"]), "--sampler", "fps",
                           "--prior", s["prior"], "--seed", str(s["seed"]), "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    cli = json.loads((out / "metrics.json").read_text())
    logic = kidney["output"].runs[0].result.metrics
    assert logic["dice"] == pytest.approx(cli["dice"], abs=1e-6)
    assert logic["asd_mm"] == pytest.approx(cli["asd_mm"], abs=1e-6)
    patches = json.loads((out / "patches.json").read_text())["patches"]
    centres_ras = np.array([kidney["output"].runs[0].centres_node.GetNthControlPointPositionWorld(i)
                            for i in range(s["n"])])
    cli_centres_lps = np.array([p["centre_world_lps_mm"] for p in patches])
    assert np.allclose(centres_ras, cli_centres_lps @ geometry.LPS_FROM_RAS.T, atol=1e-3)


def test_offscreen_render_shows_the_shape_the_boxes_and_the_error_colours(kidney, tmp_path):
    """The whole result renders into a PNG with the patch boxes and the error colours; each error
    segment alone renders in its own colour and in no other (whatever hides what in the full view)."""
    from kidney_screenshot import colour_fractions, render
    scene, output = kidney["scene"], kidney["output"]
    before = node_ids(scene)
    path = tmp_path / "kidney.png"
    pixels = render(output, path, size=(400, 300))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and pixels.shape == (300, 400, 3)
    everything = colour_fractions(pixels)
    assert 0.05 < everything["not background"] < 0.9, everything
    assert everything["patch (red)"] > 0.002 and everything["missing (orange)"] > 0.002, everything
    assert node_ids(scene) == before                   # rendering uses a private scene

    seg, result = output.runs[0].segmentation_node, output.runs[0].result
    classes = {"Extra": "extra (blue)", "Missing": "missing (orange)", "Intersection": "intersection (grey)",
               "Patch 1": "patch (red)"}
    display = seg.GetDisplayNode()
    names = segment_names(seg)
    try:
        for shown, colour in classes.items():
            if shown in outputs.ERROR_SEGMENTS and not (result.errors == outputs.ERROR_SEGMENTS[shown]).any():
                continue
            for name in names:
                display.SetSegmentVisibility(segment_id_by_name(seg, name), name == shown)
            alone = colour_fractions(render(output, tmp_path / f"{shown}.png", size=(400, 300)))
            assert alone[colour] > 0.002, (shown, alone)
            for other in set(classes.values()) - {colour}:
                assert alone[other] < 0.1 * alone[colour], (shown, other, alone)
    finally:
        for name in names:
            display.SetSegmentVisibility(segment_id_by_name(seg, name), True)


def test_the_status_line_names_the_bundled_sampler_of_the_chosen_prior(tmp_path, monkeypatch):
    import shutil
    from PatchSamplerLib import checkpoints
    shutil.copy(tiny_prior_path(), tmp_path / "prior_tiny.pt")
    shutil.copy(tiny_sampler_path(), tmp_path / "sampler_tiny_n2_k3_t5.pt")
    monkeypatch.setattr(checkpoints, "MODELS_DIR", tmp_path)
    assert choices.learned_sampler_status("tiny", 2, 3, 5) == "Learned sampler: sampler_tiny_n2_k3_t5.pt"
    assert "trained for T=5" in choices.learned_sampler_status("tiny", 2, 3, 50)
    assert "tiny N=2 K=3 T=5" in choices.learned_sampler_status("tiny", 4, 9, 100)


def test_the_status_names_the_bundled_vertebra_samplers_per_setting():
    """vertebra-anatomical: its per-(4, 9) sampler at 4 x 9, its any-(N, K) sampler elsewhere, a
    clear error outside the range."""
    assert choices.learned_sampler_status("vertebra-anatomical", 4, 9, 100) == (
        "Learned sampler: sampler_vertebra-anatomical_n4_k9_t100.pt")
    assert choices.learned_sampler_status("vertebra-anatomical", 8, 11, 100) == (
        "Learned sampler: sampler_vertebra-anatomical_any_t100.pt (one model for any N and K, here the first 8 "
        "of its centres for K=11)")
    assert "no bundled learned sampler for N=65, K=11" in choices.learned_sampler_status("vertebra-anatomical", 65,
                                                                                       11, 100)
    assert choices.learned_sampler_status("kidney-anatomical", 8, 11, 100) == (
        "Learned sampler: sampler_kidney-anatomical_any_t100.pt (one model for any N and K, here the first 8 "
        "of its centres for K=11)")


def test_the_default_prior_names_its_any_sampler_where_it_had_none():
    """`kidney` is run's default: 8 x 11 (the README demo's setting) said that no sampler was
    bundled before its any-(N, K) sampler (fifteenth session); 4 x 9 keeps its per-(N, K) one; the
    same for the synthetic `vertebra` prior (sixteenth session)."""
    assert choices.learned_sampler_status("kidney", 8, 11, 100) == (
        "Learned sampler: sampler_kidney_any_t100.pt (one model for any N and K, here the first 8 "
        "of its centres for K=11)")
    assert choices.learned_sampler_status("kidney", 4, 9, 100) == "Learned sampler: sampler_kidney_n4_k9_t100.pt"
    assert choices.learned_sampler_status("vertebra", 8, 11, 100) == (
        "Learned sampler: sampler_vertebra_any_t100.pt (one model for any N and K, here the first 8 "
        "of its centres for K=11)")
    assert choices.learned_sampler_status("vertebra", 8, 9, 100) == "Learned sampler: sampler_vertebra_n8_k9_t100.pt"


@pytest.mark.parametrize("prior", ["kidney", "vertebra", "kidney-anatomical", "kidney-anatomical-left",
                                   "vertebra-anatomical"])
def test_every_bundled_prior_of_the_module_names_a_learned_sampler_for_every_setting(prior):
    """The module's prior choices (PatchSampler.py) all have a bundled any-(N, K) sampler since the
    one-sided kidney prior got one (seventeenth session): "Learned" names a model at every N and K
    the module offers (their ends and a setting no per-(N, K) sampler has)."""
    for n, k in [(1, 3), (6, 9), (64, 31)]:
        assert choices.learned_sampler_status(prior, n, k, 100) == (
            f"Learned sampler: sampler_{prior}_any_t100.pt (one model for any N and K, here the first {n} "
            f"of its centres for K={k})")


def test_an_any_nk_sampler_makes_learned_and_compare_all_work_where_no_sampler_was(tmp_path, monkeypatch):
    import shutil
    from PatchSamplerLib import checkpoints
    shutil.copy(tiny_prior_path(), tmp_path / "prior_tiny.pt")
    shutil.copy(tiny_sampler_path(), tmp_path / "sampler_tiny_n2_k3_t5.pt")
    monkeypatch.setattr(checkpoints, "MODELS_DIR", tmp_path)
    assert "no bundled learned sampler for N=3, K=5" in choices.learned_sampler_status("tiny", 3, 5, 3)
    shutil.copy(tiny_any_sampler_path(), tmp_path / "sampler_tiny_any_t3.pt")
    assert choices.learned_sampler_status("tiny", 3, 5, 3) == (
        "Learned sampler: sampler_tiny_any_t3.pt (one model for any N and K, here the first 3 of its centres for K=5)")
    scene = new_scene()
    shape = make_shape("vertebra", 99, 1, TINY_SCALE)
    node, segment_id = add_segmentation(scene, shape.mask, ijk_to_ras_matrix(SPACING, np.eye(3), (0, 0, 0)))
    output = L.PatchSamplerLogic().process(node, segment_id, 3, 5, 3, sampler="all", prior="tiny")
    assert [run.sampler for run in output.runs] == ["learned", "fps", "random"] and not output.skipped
    assert output.runs[0].centres_node.GetNumberOfControlPoints() == 3
    rows = metrics_table.table_rows(output.table_node)
    assert rows[0]["Sampler"] == "Learned" and rows[0]["Dice"] == pytest.approx(output.runs[0].result.metrics["dice"])


# ------------------------------------------------------------------------ reconstruction from slices
@pytest.fixture(scope="module")
def drawn(prior):
    """A vertebra segmented in full ("Full") and on every 3rd slice along the grid axis closest to
    S ("Drawn"), on an oblique anisotropic grid; one process_slices run on "Drawn"."""
    scene = new_scene()
    shape = make_shape("vertebra", 99, 1, TINY_SCALE)
    direction = rotation_matrix(0.2, -0.1, 0.3)                      # k stays closest to S
    ijk_to_ras = ijk_to_ras_matrix((4.0, 4.0, 4.0), direction, ORIGIN_RAS)
    kept = np.zeros(shape.shape[2], bool)
    kept[1::3] = True
    node, full_id = add_segmentation(scene, shape.mask, ijk_to_ras, name="Spine", segment_name="Full")
    drawn_mask = shape.mask & kept[None, None, :]
    segment = slicer.vtkSegment()
    segment.SetName("Drawn")
    segment.AddRepresentation(slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName(),
                              geometry.array_to_image(drawn_mask, ijk_to_ras))
    node.GetSegmentation().AddSegment(segment)
    drawn_id = segment_id_by_name(node, "Drawn")
    fingerprint = segment_fingerprint(node, drawn_id)
    run = L.PatchSamplerLogic().process_slices(node, drawn_id, "axial", referenceSegmentId=full_id, prior=prior,
                                               steps=40, fit_lr=FIT_LR)
    return dict(scene=scene, shape=shape, ijk_to_ras=ijk_to_ras, node=node, full_id=full_id, drawn_id=drawn_id,
                drawn_mask=drawn_mask, kept=np.flatnonzero(kept & shape.mask.any(axis=(0, 1))),
                fingerprint=fingerprint, run=run)


def test_slices_mode_uses_the_drawn_slices_and_scores_against_the_full_segment(drawn):
    run = drawn["run"]
    assert run.axis == 2 and run.sparse.positions.tolist() == drawn["kept"].tolist()
    assert np.array_equal(run.sparse.labels, drawn["drawn_mask"])
    assert run.result.metrics["dice"] == pytest.approx(dice(run.result.reconstruction, drawn["shape"].mask))
    seg = run.segmentation_node
    assert seg.GetScene() is drawn["scene"] and seg.GetName() == "Drawn - reconstruction from slices"
    assert segment_names(seg) == ["Reconstruction", "Intersection", "Extra", "Missing"]
    on_grid = segment_on_world_grid(seg, segment_id_by_name(seg, "Reconstruction"), drawn["ijk_to_ras"],
                                    drawn["shape"].shape)
    assert np.array_equal(on_grid, run.result.reconstruction)
    assert segment_fingerprint(drawn["node"], drawn["drawn_id"]) == drawn["fingerprint"]   # input untouched


def test_slices_mode_gives_the_library_result(drawn, prior):
    from PatchSamplerLib.sparse.inputs import labelled_slices
    from PatchSamplerLib.sparse.reconstruction import reconstruct_sparse
    run = drawn["run"]
    library = reconstruct_sparse(run.volume, labelled_slices(drawn["drawn_mask"], 2), prior, steps=40, fit_lr=FIT_LR,
                                 reference=drawn["shape"].mask, device="cpu")
    assert np.array_equal(library.reconstruction, run.result.reconstruction)
    assert library.metrics["dice"] == pytest.approx(run.result.metrics["dice"])


def test_slices_mode_replaces_its_output_simulates_steps_and_fails_cleanly(drawn, prior):
    scene, node = drawn["scene"], drawn["node"]
    logic = L.PatchSamplerLogic()
    before = node_ids(scene)
    again = logic.process_slices(node, drawn["drawn_id"], 2, prior=prior, steps=10, fit_lr=FIT_LR)
    assert len(node_ids(scene)) == len(before) and scene.GetNodeByID(drawn["run"].segmentation_node.GetID()) is None
    assert segment_names(again.segmentation_node) == ["Reconstruction"] and not again.result.metrics   # no reference
    simulated = logic.process_slices(node, drawn["full_id"], "axial", step=4, prior=prior, steps=10, fit_lr=FIT_LR)
    assert np.all(np.diff(simulated.sparse.positions) == 4) and "dice" in simulated.result.metrics
    assert simulated.segmentation_node.GetName() == "Full - reconstruction from slices"
    before = node_ids(scene)
    with pytest.raises(ValueError, match="axial, coronal, sagittal"):
        logic.process_slices(node, drawn["drawn_id"], "oblique", prior=prior)
    with pytest.raises(Cancelled):
        logic.process_slices(node, drawn["drawn_id"], "axial", prior=prior, steps=10, should_cancel=lambda: True)
    assert node_ids(scene) == before
    assert segment_fingerprint(node, drawn["drawn_id"]) == drawn["fingerprint"]


def test_grid_axis_follows_the_anatomical_orientation():
    direction = np.array([[0.0, 0.1, 0.99], [0.98, 0.0, 0.1], [0.1, 0.99, 0.0]])   # i ~ A, j ~ S, k ~ R
    m = ijk_to_ras_matrix((1.0, 2.0, 3.0), direction, np.zeros(3))
    assert [geometry.grid_axis(name, m) for name in ("sagittal", "coronal", "axial")] == [2, 0, 1]
    assert geometry.grid_axis(1, m) == 1


# ------------------------------------------------------------------------ slices drawn on views tilted to the grid
PLANE_GAP_MM = 8.0


def view_plane_index(shape, ijk_to_ras: np.ndarray, normal, gap_mm: float = PLANE_GAP_MM) -> np.ndarray:
    """(I, J, K) float: the index m of the view plane n . x = h0 + m gap_mm that passes through each
    voxel's box (NaN where none does); h0 is the plane through the grid's middle voxel centre. A
    voxel's box is crossed when its 8 corners are not all on one side of the plane."""
    corners = np.array(list(itertools.product((-0.5, 0.5), repeat=3))) @ ijk_to_ras[:3, :3].T @ normal
    centres = (np.argwhere(np.ones(shape, bool)) @ ijk_to_ras[:3, :3].T + ijk_to_ras[:3, 3]) @ normal
    middle = np.round((np.array(shape) - 1) / 2.0)
    h0 = (ijk_to_ras[:3, :3] @ middle + ijk_to_ras[:3, 3]) @ normal
    first = np.ceil((centres + corners.min() - h0) / gap_mm)
    last = np.floor((centres + corners.max() - h0) / gap_mm)
    return np.where(last >= first, first, np.nan).reshape(shape)


def painted_on_views(mask: np.ndarray, ijk_to_ras: np.ndarray, orientation: str = "axial") -> tuple:
    """A user's drawing simulated: the shape's cross-sections on the view planes of `orientation`
    every PLANE_GAP_MM, rasterised into the grid (the voxels a plane crosses, inside the shape).
    Returns (painted (I, J, K) bool, footprint: every voxel that a plane with paint crosses)."""
    planes = view_plane_index(mask.shape, ijk_to_ras, np.eye(3)[geometry.SLICE_ORIENTATIONS[orientation]])
    painted = mask & ~np.isnan(planes)
    return painted, np.isin(planes, np.unique(planes[painted]))


def tilted_grid(tilt_deg: float, spacing_mm: float) -> np.ndarray:
    """IJK-to-RAS of an isotropic grid whose k axis is tilted `tilt_deg` from S (and turned in-plane)."""
    return ijk_to_ras_matrix((spacing_mm,) * 3, rotation_matrix(np.radians(tilt_deg), 0.0, 0.3), ORIGIN_RAS)


def add_drawn_segment(node, painted: np.ndarray, ijk_to_ras: np.ndarray, name: str = "Drawn") -> str:
    """Add a segment holding `painted` on the grid `ijk_to_ras` to the segmentation node; its id."""
    segment = slicer.vtkSegment()
    segment.SetName(name)
    segment.AddRepresentation(slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName(),
                              geometry.array_to_image(painted, ijk_to_ras))
    node.GetSegmentation().AddSegment(segment)
    return segment_id_by_name(node, name)


def test_slices_drawn_on_grid_aligned_views_are_the_labelled_grid_slices():
    """For a grid aligned with the views (any axis order and sign) the known voxels are exactly the
    grid slices that hold a painted voxel, as before, neighbouring slices included."""
    from PatchSamplerLib.sparse.inputs import labelled_slices
    from PatchSamplerMRML.slices import drawn_slices
    shape = held_out_vertebra(1)
    for perm, flips in (((0, 1, 2), (False,) * 3), ((2, 0, 1), (True, False, True)), ((1, 2, 0), (False, True, False))):
        mask, ijk_to_ras = stored_as(shape.mask, ijk_to_ras_matrix((4.0, 3.0, 5.0), np.eye(3), ORIGIN_RAS), perm, flips)
        for orientation in ("axial", "coronal", "sagittal"):
            axis = geometry.grid_axis(orientation, ijk_to_ras)
            kept = np.zeros(mask.shape[axis], bool)
            kept[[1, 4, 5, 9, 12, 13, 14]] = True
            drawn = mask & np.expand_dims(kept, tuple(a for a in range(3) if a != axis))
            sparse = drawn_slices(geometry.SegmentGrid(drawn, ijk_to_ras), orientation)
            today = labelled_slices(drawn, axis)
            assert np.array_equal(sparse.known, today.known), (perm, flips, orientation)
            assert np.array_equal(sparse.labels, drawn) and sparse.axis == axis
            assert sparse.positions.tolist() == today.positions.tolist()


@pytest.mark.parametrize("tilt", [5.0, 20.0])
def test_slices_drawn_on_views_tilted_to_the_grid_are_known_only_where_drawn(tilt, prior):
    """Axial views every 8 mm over a grid tilted to them: each view plane crosses several grid
    slices. Known are the voxels the drawn planes pass through -- never a voxel of the shape that
    was not drawn -- not the whole grid slices (which held mostly undrawn shape as background);
    process_slices uses them."""
    from PatchSamplerLib.sparse.inputs import labelled_slices
    from PatchSamplerMRML.slices import drawn_slices
    shape = held_out_vertebra(1)
    ijk_to_ras = tilted_grid(tilt, 4.0)
    painted, footprint = painted_on_views(shape.mask, ijk_to_ras)
    sparse = drawn_slices(geometry.SegmentGrid(painted, ijk_to_ras), "axial")
    assert np.array_equal(sparse.labels, painted) and sparse.axis is None
    assert not (sparse.known & ~footprint).any()                   # nothing known that no drawn plane crosses
    assert sparse.known.sum() > 0.8 * footprint.sum()
    assert not (sparse.known & shape.mask & ~painted).any()        # no undrawn shape voxel taken as background
    old = labelled_slices(painted, geometry.grid_axis("axial", ijk_to_ras))
    assert (old.known & shape.mask & ~painted).sum() > 0.5 * painted.sum()     # what the grid slices did
    node, drawn_id = add_segmentation(new_scene(), painted, ijk_to_ras, segment_name="Drawn")
    run = L.PatchSamplerLogic().process_slices(node, drawn_id, "axial", prior=prior, steps=10, fit_lr=FIT_LR)
    assert np.array_equal(run.sparse.known, sparse.known) and run.axis is None
    assert run.segmentation_node.GetScene() is node.GetScene()


def test_a_segment_not_drawn_on_separate_slices_is_refused_with_how_to_draw_it(drawn, prior):
    """The full vertebra on the oblique grid of `drawn` is neither on separate axial planes nor on
    separate grid slices: refused, the scene unchanged."""
    scene = drawn["scene"]
    before = node_ids(scene)
    with pytest.raises(ValueError, match="Align the slice views with the volume") as refused:
        L.PatchSamplerLogic().process_slices(drawn["node"], drawn["full_id"], "axial", prior=prior, steps=10)
    assert "tilted" in str(refused.value) and "not drawn on separate axial slices" in str(refused.value)
    assert node_ids(scene) == before


@pytest.fixture(scope="module")
def vertebra_prior():
    """The bundled vertebra prior (the tiny prior is too weak to show a collapse from wrong slices)."""
    from PatchSamplerLib.checkpoints import bundled_models
    if "vertebra" not in bundled_models():
        pytest.skip("the bundled vertebra prior is not installed")
    return "vertebra"


def test_tilting_the_grid_to_the_views_keeps_the_dice_of_aligned_views(vertebra_prior):
    """The issue's case in the module: a vertebra (2 mm voxels) drawn on axial views every 8 mm, on a
    grid aligned with the views and tilted 20 degrees to them, scored against the full shape.
    Measured (bundled vertebra prior, 200 steps): 0.775 aligned; 0.782 (20 deg) now, 0.635 when
    the labelled grid slices were taken as known (5 deg: 0.752 now, 0.672 then; left out to save
    30 s: which voxels a 5-degree drawing makes known is checked by
    test_slices_drawn_on_views_tilted_to_the_grid_are_known_only_where_drawn)."""
    dice_by_tilt = {}
    for tilt in (0.0, 20.0):
        shape, ijk_to_ras = make_shape("vertebra", 99, 1, 0.5), tilted_grid(tilt, 2.0)
        node, full_id = add_segmentation(new_scene(), shape.mask, ijk_to_ras, name="Spine", segment_name="Full")
        drawn_id = add_drawn_segment(node, painted_on_views(shape.mask, ijk_to_ras)[0], ijk_to_ras)
        run = L.PatchSamplerLogic().process_slices(node, drawn_id, "axial", referenceSegmentId=full_id,
                                                   prior=vertebra_prior, steps=200, fit_lr=FIT_LR, device="cpu")
        dice_by_tilt[tilt] = run.result.metrics["dice"]
    assert dice_by_tilt[0.0] > 0.7, dice_by_tilt
    assert abs(dice_by_tilt[20.0] - dice_by_tilt[0.0]) < 0.05, dice_by_tilt


# ------------------------------------------------------------------------ specks, estimates and limits
def test_a_stray_speck_is_dropped_by_default_and_its_size_is_named(prior):
    """A vertebra plus a 3 x 3 x 3 speck far from it: by default the run keeps the largest
    component (the result is the clean segment's) and says so, naming both sizes; without that
    option the speck stays and the warning says how to drop it. The input is not modified."""
    from PatchSamplerLib.method.components import labelled_components
    shape = held_out_vertebra(0)
    assert len(labelled_components(shape.mask)[1]) == 1
    with_speck = shape.mask.copy()
    with_speck[0:3, 27:30, 0:3] = True                       # ~17 voxels from the vertebra
    ijk_to_ras = ijk_to_ras_matrix(SPACING, oblique_direction_ras(), ORIGIN_RAS)
    scene = new_scene()
    clean_node, clean_id = add_segmentation(scene, shape.mask, ijk_to_ras, name="Clean")
    speck_node, speck_id = add_segmentation(scene, with_speck, ijk_to_ras, name="Speck")
    fingerprint = segment_fingerprint(speck_node, speck_id)
    logic = L.PatchSamplerLogic()
    clean = logic.process(clean_node, clean_id, N, K, T, prior=prior, fit_lr=FIT_LR).runs[0]
    kept = logic.process(speck_node, speck_id, N, K, T, prior=prior, fit_lr=FIT_LR)
    assert abs(kept.runs[0].result.metrics["dice"] - clean.result.metrics["dice"]) < 0.02
    assert dice(kept.runs[0].result.reconstruction, clean.result.reconstruction) > 0.98
    sizes = f"2 connected components of {int(shape.mask.sum())}, 27 voxels"
    assert [note for note in kept.notes() if sizes in note and "only the largest was kept" in note]
    assert sizes in metrics_table.table_rows(kept.table_node)[0]["Note"]
    everything = logic.process(speck_node, speck_id, N, K, T, prior=prior, fit_lr=FIT_LR, largest_component=False)
    assert [note for note in everything.notes() if note.startswith("FPS: ") and sizes in note
            and "largest_component" in note]
    assert everything.runs[0].result.errors[0:3, 27:30, 0:3].any()           # the speck is scored
    assert segment_fingerprint(speck_node, speck_id) == fingerprint


def test_the_estimate_before_apply_is_the_librarys_and_none_without_torch(monkeypatch):
    import torch
    from PatchSamplerLib.method.cost import estimate_run
    from PatchSamplerLib.method.fitting import fast_points
    cpu = torch.device("cpu")
    assert choices.run_estimate_text(8, 11, 100, "cpu") == \
        f"Estimate: {estimate_run(8, 11, 100, cpu, points_per_step=fast_points(8 * 11 ** 3)).describe()}"
    assert choices.run_estimate_text(8, 11, 100, "cpu", "adam") == \
        f"Estimate: {estimate_run(8, 11, 100, cpu).describe()}"
    assert "over the limit" not in choices.run_estimate_text(64, 31, 100, "cpu")        # the fast fit: any N, K
    over = choices.run_estimate_text(64, 31, 2000, "cpu", "adam")
    assert "of latent fit" in over and "over the limit (the fit limit is 10 min)" in over and "Run anyway" in over
    if not torch.cuda.is_available():
        assert "no CUDA device" in choices.run_estimate_text(8, 11, 100, "cuda")
    find_spec = choices.importlib.util.find_spec
    monkeypatch.setattr(choices.importlib.util, "find_spec",
                        lambda name, *args: None if name == "torch" else find_spec(name, *args))
    assert choices.run_estimate_text(8, 11, 100, "cpu") is None


def test_a_run_over_the_limit_is_refused_unless_forced(case, prior, monkeypatch):
    """Over the limit (here: a limit of -1 s): refused before anything runs with the library's
    message and the module's way out, the scene unchanged; with force the run happens."""
    from PatchSamplerLib.method import cost
    scene, node, segment_id = case["scene"], case["node"], case["segment_id"]
    before = node_ids(scene)
    with pytest.raises(ValueError, match="Run anyway") as refused:
        L.PatchSamplerLogic().process(node, segment_id, 64, 31, 2000, prior=prior, fit="adam")
    assert "of latent fit" in str(refused.value) and "the fit limit is 10 min" in str(refused.value)
    monkeypatch.setattr(cost, "MAX_FIT_SECONDS", -1.0)
    with pytest.raises(ValueError, match="the fit limit is -1 s"):
        L.PatchSamplerLogic().process(node, segment_id, N, K, T, sampler="random", prior=prior, fit_lr=FIT_LR)
    assert node_ids(scene) == before
    forced = L.PatchSamplerLogic().process(node, segment_id, N, K, T, sampler="random", prior=prior, fit_lr=FIT_LR,
                                           force=True)
    assert forced.runs[0].result.settings["force"] is True and forced.runs[0].segmentation_node.GetScene() is scene


def test_a_prior_of_one_side_takes_the_side_from_the_segment_name_else_detects_it(tmp_path):
    """A segment named "right kidney" is mirrored onto a left prior (side given by its name);
    one named "Segment_1" has its side detected; both results land on the input grid."""
    prior = ShapePrior.load(tiny_prior_path())
    prior.metadata["canonical_side"] = "left"
    prior.save(tmp_path / "tiny_left.pt")
    scene = new_scene()
    shape = make_shape("vertebra", 99, 2, TINY_SCALE)
    ijk_to_ras = ijk_to_ras_matrix(SPACING, np.eye(3), (0, 0, 0))
    named, named_id = add_segmentation(scene, shape.mask, ijk_to_ras, segment_name="right kidney")
    output = L.PatchSamplerLogic().process(named, named_id, 3, 3, 5, sampler="fps", prior=tmp_path / "tiny_left.pt")
    side = output.runs[0].result.settings["side"]
    assert side["input_side"] == "right" and side["side_from"] == "read from the segment's name" and side["mirrored"]
    assert output.runs[0].result.reconstruction.shape == shape.mask.shape
    told = L.PatchSamplerLogic().process(named, named_id, 3, 3, 5, sampler="fps", prior=tmp_path / "tiny_left.pt",
                                         side="left")
    assert told.runs[0].result.settings["side"] | {"detection_losses": None} == {
        "canonical_side": "left", "input_side": "left", "side_from": "given", "mirrored": False,
        "detection_losses": None}
    plain, plain_id = add_segmentation(scene, shape.mask, ijk_to_ras, segment_name="Segment_1")
    detected = L.PatchSamplerLogic().process(plain, plain_id, 3, 3, 5, sampler="fps", prior=tmp_path / "tiny_left.pt")
    assert detected.runs[0].result.settings["side"]["side_from"].startswith("detected")


def test_a_prior_loaded_again_unchanged_is_the_same_object_and_a_changed_file_is_reloaded(tmp_path, prior):
    import os
    import shutil
    copy = tmp_path / "my_prior.pt"
    shutil.copy(prior, copy)
    first = L.PatchSamplerLogic.load_prior(str(copy), "cpu")
    assert L.PatchSamplerLogic.load_prior(str(copy), "cpu") is first            # reused (and its CUDA fit graphs)
    ShapePrior(first.decoder, first.extent_mm, first.spacing_mm, dict(first.metadata, note="retrained")).save(copy)
    stat = copy.stat()
    os.utime(copy, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10 ** 9))         # a later modification time, surely
    second = L.PatchSamplerLogic.load_prior(str(copy), "cpu")
    assert second is not first and second.metadata["note"] == "retrained"
    given = L.PatchSamplerLogic.load_prior(second, "cpu")
    assert given is second                                                   # a ShapePrior is used as it is
    assert len(L.LOADED_PRIORS) <= L.PRIORS_KEPT


@pytest.mark.parametrize("segment_name, node_name, expected, noted", [
    ("Segment_1", "vertebrae_T12", "vertebra-anatomical", False),      # a file dragged in: its node's name
    ("left kidney", "Segmentation", "kidney", False),
    ("Segment_1", "Segmentation", "kidney", True),                     # nothing says: the fallback, noted
])
def test_without_a_prior_the_console_run_picks_it_from_the_segments_names(segment_name, node_name, expected, noted):
    scene = new_scene()
    node, segment_id = add_segmentation(scene, np.ones((3, 3, 3), bool), np.eye(4), name=node_name,
                                        segment_name=segment_name)
    prior, note = choices.prior_of_segment(choices.segment_description(node, segment_id), None)
    assert prior == expected and (note is not None) == noted
    assert choices.prior_of_segment(choices.segment_description(node, segment_id), "my.pt") == ("my.pt", None)


@pytest.mark.parametrize("orientation", ["coronal", "sagittal"])
def test_slices_drawn_in_one_orientation_are_refused_as_another_on_aligned_grids(orientation, prior):
    """Every 6th axial slice of a vertebra on a grid aligned with the views, run as coronal or
    sagittal (and a solid segment as axial): the segment lies on every slice of that orientation,
    so it was not drawn on a few of them -- refused, the scene unchanged."""
    shape = held_out_vertebra(1)
    ijk_to_ras = ijk_to_ras_matrix((2.0, 2.0, 2.0), np.eye(3), ORIGIN_RAS)
    axis = geometry.grid_axis("axial", ijk_to_ras)
    kept = np.zeros(shape.mask.shape[axis], bool)
    kept[::6] = True
    drawn = shape.mask & np.expand_dims(kept, tuple(a for a in range(3) if a != axis))
    scene = new_scene()
    node, drawn_id = add_segmentation(scene, drawn, ijk_to_ras, segment_name="Drawn")
    before = node_ids(scene)
    with pytest.raises(ValueError, match=f"not drawn on separate {orientation} slices: it lies on"):
        L.PatchSamplerLogic().process_slices(node, drawn_id, orientation, prior=prior, steps=2)
    assert node_ids(scene) == before
    from PatchSamplerMRML.slices import drawn_slices
    with pytest.raises(ValueError, match="nearly all next to another"):
        drawn_slices(geometry.SegmentGrid(shape.mask, ijk_to_ras), "axial")
    assert drawn_slices(geometry.SegmentGrid(drawn, ijk_to_ras), "axial").positions.tolist() == \
        np.flatnonzero(kept & np.any(shape.mask, axis=tuple(a for a in range(3) if a != axis))).tolist()


@pytest.mark.parametrize("given, message", [
    (dict(n=8.0), "N must be an integer from 1 to 64, got 8.0"),
    (dict(seed=None), "seed must be an integer >= 0, got None"),
    (dict(seed=-1), "seed must be an integer >= 0, got -1"),
    (dict(segmentId=None), "segment None is not in Spine; its segment IDs: "),
    (dict(segmentId="nope"), "segment 'nope' is not in Spine"),
])
def test_console_values_of_the_wrong_kind_are_refused_with_a_message(given, message, prior):
    scene = new_scene()
    node, segment_id = add_segmentation(scene, held_out_vertebra(0).mask, np.eye(4), name="Spine",
                                        segment_name="L1")
    before = node_ids(scene)
    arguments = {**dict(segmentationNode=node, segmentId=segment_id, n=2, k=3, t=1, prior=prior), **given}
    with pytest.raises(ValueError, match=re.escape(message)):
        L.PatchSamplerLogic().process(**arguments)
    assert node_ids(scene) == before


def test_outputs_of_default_named_segments_carry_their_nodes_name(prior):
    """Two dropped-in files each give a segment "Segment_1": their outputs must not share names."""
    scene = new_scene()
    names = []
    for node_name in ("vertebrae_L1", "vertebrae_L2"):
        node, segment_id = add_segmentation(scene, held_out_vertebra(0).mask, np.eye(4), name=node_name,
                                            segment_name="Segment_1")
        run = L.PatchSamplerLogic().process(node, segment_id, 2, 3, 1, sampler="fps", prior=prior)
        names += [run.runs[0].segmentation_node.GetName(), run.runs[0].centres_node.GetName(), run.table_node.GetName()]
    assert names[0] == "vertebrae_L1 Segment_1 - FPS patches" and len(set(names)) == 6
    named, named_id = add_segmentation(scene, held_out_vertebra(0).mask, np.eye(4), name="Spine", segment_name="L3")
    assert outputs.output_base_name(named, named_id) == "L3"
