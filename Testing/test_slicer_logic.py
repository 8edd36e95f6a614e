"""The module's Qt-free logic (PatchSampler/PatchSamplerLogic.py and its PatchSamplerMRML package) on
real MRML via slicer-core: geometry, outputs, scene bookkeeping, CLI parity on the real kidney,
offscreen 3-D rendering (Testing/offscreen_render.py)."""
import json
import subprocess
import sys

import numpy as np
import pytest

slicer = pytest.importorskip("slicer", reason="slicer-core is not installed (pip install slicer-core)")

from slicer_scene import (ROOT, add_segmentation, ijk_to_ras_matrix, rotation_matrix, load_segmentation, new_scene,  # noqa: E402
                          node_ids, save_segmentation, segment_fingerprint, segment_id_by_name, segment_names,
                          segment_on_world_grid)
from tiny_prior import tiny_sampler_path, TINY_SCALE, tiny_prior_path  # noqa: E402

import PatchSamplerLogic as L  # noqa: E402
from PatchSamplerMRML import choices, dependencies, geometry, metrics_table, outputs  # noqa: E402
from PatchSamplerLib.data.synthetic import make_shape  # noqa: E402
from PatchSamplerLib.method.metrics import dice  # noqa: E402
from PatchSamplerLib.method.patches import patch_boxes  # noqa: E402
from PatchSamplerLib.pipeline import Cancelled, reconstruct  # noqa: E402
from PatchSamplerLib.reporting.figures import ERROR_COLOURS  # noqa: E402
from PatchSamplerLib.volume import BinaryVolume, index_to_world  # noqa: E402

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
    frame_mm = np.array(logic.load_prior(prior).extent_mm)
    assert np.all(np.array(from_tight.grid.mask.shape) * np.array(SPACING) >= frame_mm)
    assert np.all(np.array(large.shape) * np.array(SPACING) >= frame_mm)
    assert from_tight.runs[0].result.metrics == pytest.approx(from_large.runs[0].result.metrics, rel=1e-9)
    on_large = {"ijk_to_ras": large_ijk_to_ras, "shape": BinaryVolume(large)}
    assert np.array_equal(world_mask(on_large, from_tight.runs[0].segmentation_node, "Reconstruction"),
                          from_large.runs[0].result.reconstruction)


def _translation(offset) -> np.ndarray:
    m = np.eye(4)
    m[:3, 3] = offset
    return m


def test_a_linear_parent_transform_is_applied_and_the_output_is_in_world_coordinates(case, prior):
    scene = new_scene()
    node, segment_id = add_segmentation(scene, case["shape"].mask, case["ijk_to_ras"])
    transform = np.eye(4)
    transform[:3, :3] = rotation_matrix(0.0, 0.2, -0.4)
    transform[:3, 3] = (15.0, -7.5, 3.0)
    transform_node = slicer.vtkMRMLLinearTransformNode()
    scene.AddNode(transform_node)
    transform_node.SetMatrixTransformToParent(geometry.array_to_vtk_matrix(transform))
    node.SetAndObserveTransformNodeID(transform_node.GetID())
    output = L.PatchSamplerLogic().process(node, segment_id, N, K, T, prior=prior, fit_lr=FIT_LR)
    run = output.runs[0]
    assert run.segmentation_node.GetParentTransformNode() is None
    assert np.allclose(output.grid.ijk_to_ras, transform @ case["ijk_to_ras"])
    world = {"ijk_to_ras": transform @ case["ijk_to_ras"], "shape": case["shape"]}
    assert np.array_equal(world_mask(world, run.segmentation_node, "Reconstruction"), run.result.reconstruction)
    assert run.result.metrics == pytest.approx(case["run"].result.metrics)        # a rigid motion changes nothing
    centres = np.array([run.centres_node.GetNthControlPointPositionWorld(i) for i in range(N)])
    untransformed = np.array([case["run"].centres_node.GetNthControlPointPositionWorld(i) for i in range(N)])
    assert np.allclose(centres, untransformed @ transform[:3, :3].T + transform[:3, 3], atol=1e-4)


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
    baseline centres, or the learned SamplerModel's projected points (and its generated ones)."""
    from PatchSamplerLib.method.inr import ShapePrior
    from PatchSamplerLib.method.sampler import SamplerModel, learned_centres
    from PatchSamplerLib.method.samplers import baseline_centres
    from PatchSamplerLib.pipeline import RunConfig
    volume, shape_prior = case["output"].volume, ShapePrior.load(prior)
    for name in ("fps", "random"):
        result = L.PatchSamplerLogic.run_sampler(volume, RunConfig(5, K, T, name, seed=3), shape_prior, None,
                                                 None, None)
        assert np.array_equal(result.centres, baseline_centres(name, volume.mask, volume.spacing, 5, 3))
        assert result.generated is None and (result.settings["sampler"], result.settings["seed"]) == (name, 3)
    model = SamplerModel.load(tiny_sampler_path())
    result = L.PatchSamplerLogic.run_sampler(volume, RunConfig(2, 3, T, "learned"), shape_prior, model, None, None)
    expected = learned_centres(model, volume.mask)
    assert np.array_equal(result.centres, expected[1]) and np.array_equal(result.generated, expected[0])
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
