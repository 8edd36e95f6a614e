"""One learned sampler for every N <= 64 and odd K (#18): nesting, K conditioning, range errors,
the unrolled fast fit, the training schedule, training end to end and the bundled lookup."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from PatchSamplerLib import checkpoints
from PatchSamplerLib.checkpoints import CheckpointError, resolve_sampler_path
from PatchSamplerLib.method.inr import OccupancyDecoder, ShapePrior, fit_latent, fit_latent_unrolled
from PatchSamplerLib.method.sampler import SamplerModel, learned_centres, load_learned_sampler
from PatchSamplerLib.pipeline import reconstruct
from PatchSamplerLib.training.any_sampler import GRID_K, GRID_N, PREFIXES, draw_setting, per_step_patch_points
from PatchSamplerLib.training.points import prepare_sampler_shape
from PatchSamplerLib.volume import index_to_local_mm
from tiny_prior import held_out_vertebra, tiny_any_sampler_path, tiny_prior_path

TRAINED = Path(__file__).resolve().parents[1] / "results" / "learned_any_nk" / "models"   # #18's trained samplers


ANY_ANCHORS = ("fps", "central", "lead", "none")


def _moving_any_sampler(seed=0, anchor="fps") -> SamplerModel:
    """An any-(N, K) sampler whose centres depend on K (last layer not zero), projection t small."""
    torch.manual_seed(seed)
    model = SamplerModel.new(64, 0, 100, initial_temperature=1e-3, anchor=anchor, conditioned=True)
    torch.nn.init.normal_(model.sampler.generator.head[-1].weight, std=0.02)
    model.sampler.eval()
    return model


@pytest.mark.parametrize("anchor", ANY_ANCHORS)
def test_prefixes_are_nested_and_the_centres_lie_in_the_shape(anchor):
    model, vol = _moving_any_sampler(anchor=anchor), held_out_vertebra(0)
    gen64, proj64 = learned_centres(model, vol.mask, 64, 9)
    for n in (1, 4, 5, 17, 63):
        gen, proj = learned_centres(model, vol.mask, n, 9)
        assert proj.shape == gen.shape == (n, 3)
        np.testing.assert_array_equal(proj, proj64[:n])           # the first N of N + 1 are the N sampler
    ijk = np.floor(proj64 + 0.5).astype(int)
    assert vol.mask[tuple(ijk.T)].all()                            # t small: each centre is a voxel of the shape
    assert len({tuple(v) for v in ijk}) == 64                      # distinct


@pytest.mark.parametrize("anchor", ANY_ANCHORS)
def test_the_patch_size_changes_the_centres(anchor):
    model, vol = _moving_any_sampler(anchor=anchor), held_out_vertebra(0)
    small, large = learned_centres(model, vol.mask, 8, 5)[0], learned_centres(model, vol.mask, 8, 21)[0]
    assert np.abs(small - large).max() > 0.1
    np.testing.assert_array_equal(small, learned_centres(model, vol.mask, 8, 5)[0])   # deterministic


@pytest.mark.parametrize("lead", [1, 2, 4])
def test_a_lead_sampler_generates_its_lead_and_continues_it_by_fps(lead, tmp_path):
    from PatchSamplerLib.method.sampler import LEAD_POINTS
    torch.manual_seed(0)
    model = SamplerModel.new(64, 0, 100, initial_temperature=1e-3, anchor="lead", conditioned=True, lead_points=lead)
    torch.nn.init.normal_(model.sampler.generator.head[-1].weight, std=0.02)
    assert model.sampler.generator.n_points == lead and LEAD_POINTS == 4
    cloud = torch.rand(2, 400, 3) - 0.5
    model.sampler.train()
    generated, projected = model.sampler(cloud, [9, 13])
    assert generated.shape == projected.shape == (2, 64, 3)
    for b in range(2):                                   # the later 64 - lead: greedy FPS after the projected lead
        c, first = cloud[b].numpy(), projected[b, :lead].detach().numpy()
        np.testing.assert_array_equal(generated[b, lead:].detach().numpy(), c[_fps_after(c, first, 64 - lead)])
    projected[:, :lead].sum().backward()
    assert model.sampler.generator.head[-1].weight.grad.abs().sum() > 0    # the lead is learned
    model.sampler.eval()
    model.save(tmp_path / "lead.pt")
    loaded = SamplerModel.load(tmp_path / "lead.pt")
    assert loaded.sampler.lead_points == loaded.metadata["lead_points"] == lead
    mask = held_out_vertebra(0).mask
    np.testing.assert_array_equal(learned_centres(loaded, mask, 12, 9)[1], learned_centres(model, mask, 12, 9)[1])


@pytest.mark.parametrize("lead", [1, 4])
@pytest.mark.parametrize("continuation", ["voxels", "central-voxels"])
def test_a_voxel_continuation_is_the_fps_baseline_after_the_learned_lead(lead, continuation, tmp_path):
    """continuation "voxels": the lead is the network's (as with "cloud"), every later centre is
    greedy FPS over all occupied voxels in mm from the lead, checked against a brute-force FPS on
    an anisotropic spacing; "central-voxels": the first after the lead is the voxel nearest the
    centroid in mm, then FPS from the lead and it; prefixes stay nested; the choice survives the
    file."""
    torch.manual_seed(0)
    cloud_model = SamplerModel.new(64, 0, 100, initial_temperature=1e-3, anchor="lead", conditioned=True,
                                   lead_points=lead)
    torch.nn.init.normal_(cloud_model.sampler.generator.head[-1].weight, std=0.02)
    cloud_model.save(tmp_path / "cloud.pt")
    model = SamplerModel.load(tmp_path / "cloud.pt")
    assert model.sampler.continuation == "cloud" and model.sampler.voxel_lead == 0
    model.sampler.continuation = continuation
    model.save(tmp_path / "voxels.pt")
    model = SamplerModel.load(tmp_path / "voxels.pt")
    assert model.metadata["continuation"] == continuation and model.sampler.voxel_lead == lead
    mask, spacing = held_out_vertebra(0).mask, np.array([0.8, 1.0, 2.5], np.float32)
    gen, full = learned_centres(model, mask, 20, 9, spacing)
    np.testing.assert_array_equal(full[:lead], learned_centres(cloud_model, mask, 20, 9, spacing)[1][:lead])
    voxels = np.argwhere(mask).astype(np.float32)
    scaled = voxels * spacing
    chosen, first = full[:lead] * spacing, []
    if continuation == "central-voxels":
        first = [int(np.argmin(np.linalg.norm(scaled - scaled.mean(0), axis=1)))]
        chosen = np.concatenate([chosen, scaled[first]])
    expected = voxels[first + list(_fps_after(scaled, chosen, 20 - lead - len(first)))]
    np.testing.assert_array_equal(full[lead:], expected)
    np.testing.assert_array_equal(gen[lead:], expected)
    assert not np.array_equal(full[lead:], learned_centres(model, mask, 20, 9)[1][lead:])   # spacing counts
    for n in (1, lead, lead + 1, 12, 19):
        np.testing.assert_array_equal(learned_centres(model, mask, n, 9, spacing)[1], full[:n])
    assert len({tuple(v) for v in np.floor(full + 0.5).astype(int)}) == 20


def test_a_central_lead_starts_at_the_cloud_point_nearest_the_centroid_and_learns_offsets(tmp_path):
    from PatchSamplerLib.method.pointcloud import simplified_cloud
    torch.manual_seed(0)
    model = SamplerModel.new(64, 0, 100, initial_temperature=1e-3, anchor="lead", conditioned=True, lead_points=2,
                             continuation="voxels", lead_start="central")
    model.save(tmp_path / "central.pt")
    model = SamplerModel.load(tmp_path / "central.pt")
    assert model.metadata["lead_start"] == "central" and model.sampler.central_lead
    mask = held_out_vertebra(0).mask
    cloud, norm = simplified_cloud(mask)
    central = cloud[np.argmin(((cloud - cloud.mean(0)) ** 2).sum(1))]
    gen, centres = learned_centres(model, mask, 12, 9)
    np.testing.assert_allclose(gen[0], norm.inverse(central), atol=1e-5)     # offsets start at zero
    np.testing.assert_allclose(centres[0], norm.inverse(central), atol=1e-3)
    model.sampler.train()
    generated, _ = model.sampler(torch.from_numpy(cloud)[None].expand(2, -1, -1), [9, 13])
    generated[:, :2].sum().backward()
    assert model.sampler.generator.head[-1].weight.grad.abs().sum() > 0      # the offsets learn
    with pytest.raises(ValueError, match="lead start must be one of free, central, got 'pole'"):
        SamplerModel.new(64, 0, 100, anchor="lead", conditioned=True, lead_start="pole")


def test_a_continuation_other_than_cloud_or_voxels_or_without_a_lead_is_refused():
    from PatchSamplerLib.training.sampler import SamplerConfig
    with pytest.raises(ValueError, match="continuation must be one of cloud, voxels, central-voxels, got 'mesh'"):
        SamplerModel.new(64, 0, 100, anchor="lead", conditioned=True, continuation="mesh")
    with pytest.raises(ValueError, match="need --anchor lead"):
        SamplerConfig(n=64, any_nk=True, anchor="fps", continuation="voxels").check()
    with pytest.raises(ValueError, match="need --anchor lead"):
        SamplerConfig(n=64, any_nk=True, anchor="none", lead_start="central").check()


def test_the_trainer_continues_each_shape_on_its_voxels_up_to_its_n_and_learns_only_the_lead():
    from PatchSamplerLib.training.sampler import SamplerTrainer
    from PatchSamplerLib.method.sampler import voxel_continuation
    vol = held_out_vertebra(1)
    shape = prepare_sampler_shape(vol, 2.0)
    torch.manual_seed(0)
    model = SamplerModel.new(64, 0, 100, initial_temperature=1e-3, anchor="lead", conditioned=True,
                             lead_points=2, continuation="voxels")
    generated, projected = model.sampler(shape.cloud[None].expand(2, -1, -1), [9, 9])
    row = SamplerTrainer.voxel_continued_row(projected[0], shape, 10, 2)
    lead_index = shape.norm.inverse(projected[0, :2].detach().numpy())
    np.testing.assert_allclose(shape.norm.inverse(row[2:10].detach().numpy()),
                               voxel_continuation(lead_index, 8, vol.mask, vol.spacing), atol=1e-4)
    np.testing.assert_array_equal(row[10:].detach().numpy(), projected[0, 10:].detach().numpy())
    row.sum().backward()
    assert model.sampler.generator.head[-1].weight.grad.abs().sum() > 0      # through the lead only
    assert torch.equal(SamplerTrainer.voxel_continued_row(projected[1], shape, 2, 2), projected[1])   # N <= lead


def test_the_straight_through_fps_keeps_the_hard_centres_and_moves_them_with_the_lead():
    """On a line of points 0..1 with the lead at 0, FPS picks 1, then 0.5 (the midpoint of the
    lead and 1): the values stay the hard picks, d(second pick)/d(lead) is the midpoint's 1/2,
    d(first pick)/d(lead) about 0 (the far end stays the far end; measured -0.03, the blur)."""
    from PatchSamplerLib.method.sampler import fps_continued, straight_through_fps
    points = torch.zeros(2001, 3)
    points[:, 0] = torch.linspace(0, 1, 2001)
    lead = torch.tensor([[0.0, 0.0, 0.0]], requires_grad=True)
    hard = fps_continued(points[None], lead.detach()[None], 2)[0]
    np.testing.assert_allclose(hard[:, 0].numpy(), [1.0, 0.5], atol=1e-6)
    out = straight_through_fps(points, lead, hard)
    assert torch.equal(out.detach(), hard)
    first, = torch.autograd.grad(out[0, 0], lead, retain_graph=True)
    second, = torch.autograd.grad(out[1, 0], lead)
    assert abs(first[0, 0].item()) < 0.05 and abs(second[0, 0].item() - 0.5) < 0.02


def test_the_continuation_gradient_reaches_the_lead_only_when_asked():
    """`continuation_gradient`: the continued centres' loss moves the generator (it does not
    without it: the lead's own row is then the only path), the values are those of FPS."""
    from PatchSamplerLib.training.sampler import SamplerConfig, SamplerTrainer
    vol = held_out_vertebra(1)
    shape = prepare_sampler_shape(vol, 2.0)
    torch.manual_seed(0)
    model = SamplerModel.new(64, 0, 100, initial_temperature=1e-3, anchor="lead", conditioned=True,
                             lead_points=1, continuation="voxels")
    grads = []
    for gradient in (False, True):
        _, projected = model.sampler(shape.cloud[None].expand(2, -1, -1), [9, 9])
        row = SamplerTrainer.voxel_continued_row(projected[0], shape, 10, 1, gradient)
        model.sampler.zero_grad()
        row[1:10].sum().backward()                       # the continued centres only
        grads.append(model.sampler.generator.head[-1].weight.grad)
        plain = row.detach() if not gradient else plain
    assert grads[0] is None or grads[0].abs().sum() == 0
    assert grads[1].abs().sum() > 0
    assert torch.equal(row.detach(), plain)
    SamplerConfig(n=64, any_nk=True, anchor="lead", continuation="voxels", continuation_gradient=True).check()
    with pytest.raises(ValueError, match="--continuation-gradient .* needs --anchor lead --continuation voxels"):
        SamplerConfig(n=64, any_nk=True, anchor="lead", continuation_gradient=True).check()


def test_a_trained_voxel_continued_sampler_records_it_and_places_fps_after_its_lead(tmp_path):
    from PatchSamplerLib.data.synthetic import make_shapes
    from PatchSamplerLib.method.baselines import fps_continued_indices
    from PatchSamplerLib.training.any_sampler import AnySamplerTrainer
    from tiny_prior import TINY_SCALE, tiny_sampler_config
    vols = make_shapes("vertebra", 5, seed=0, scale=TINY_SCALE)
    cfg = tiny_sampler_config(n=8, k=3, t=3, epochs=1, any_nk=True, anchor="lead", lead_points=2,
                              continuation="voxels", fit_points=64, batch_size=4)
    AnySamplerTrainer(vols[:4], vols[4:], ShapePrior.load(tiny_prior_path()), tmp_path, cfg, log=lambda *a: None).run()
    model = SamplerModel.load(tmp_path / "sampler.pt")
    assert model.metadata["continuation"] == model.metadata["config"]["continuation"] == "voxels"
    vol = held_out_vertebra(0)
    centres = learned_centres(model, vol.mask, 8, 5, vol.spacing)[1]
    voxels = np.argwhere(vol.mask).astype(np.float32)
    np.testing.assert_array_equal(centres[2:], voxels[fps_continued_indices(voxels, centres[:2], 6, vol.spacing)])


@pytest.mark.parametrize("trained, scores, kept", [
    ("cloud", {"cloud": 0.61, "voxels": 0.72, "central-voxels": 0.70}, "voxels"),
    ("central-voxels", {"cloud": 0.8, "voxels": 0.8, "central-voxels": 0.8}, "central-voxels"),   # a tie
])
def test_select_continuation_keeps_the_continuation_that_validates_best(tmp_path, monkeypatch, trained, scores, kept):
    """--select-continuation: the saved sampler = the weights a run without it saves, with the
    continuation of the highest validation Dice (the trained one on a tie), all scores recorded.
    The validation is replaced by known scores per continuation (the tiny prior's Dice is 0 for all)."""
    from PatchSamplerLib.data.synthetic import make_shapes
    from PatchSamplerLib.training.any_sampler import AnySamplerTrainer
    from tiny_prior import TINY_SCALE, tiny_sampler_config
    monkeypatch.setattr(AnySamplerTrainer, "validation_dice", lambda self: scores[self.model.sampler.continuation])
    vols = make_shapes("vertebra", 5, seed=0, scale=TINY_SCALE)
    prior = ShapePrior.load(tiny_prior_path())
    models, lines = {}, []
    for select in (False, True):
        cfg = tiny_sampler_config(n=8, k=3, t=3, epochs=1, any_nk=True, anchor="lead", lead_points=1,
                                  continuation=trained, fit_points=64, batch_size=4, select_continuation=select)
        AnySamplerTrainer(vols[:4], vols[4:], prior, tmp_path / str(select), cfg, log=lines.append).run()
        models[select] = SamplerModel.load(tmp_path / str(select) / "sampler.pt")
    plain, selected = models[False], models[True]
    assert selected.sampler.continuation == selected.metadata["continuation"] == kept
    assert plain.sampler.continuation == trained and "val_dice_by_continuation" not in plain.metadata
    assert selected.metadata["val_dice_by_continuation"] == scores
    assert selected.metadata["val_dice"] == scores[kept] and selected.metadata["trained_continuation"] == trained
    for name, weight in plain.sampler.state_dict().items():
        assert torch.equal(weight, selected.sampler.state_dict()[name]), name
    assert f"continuation kept: {kept} (validation Dice {scores[kept]:.4f}; trained with {trained})" in lines


def test_select_continuation_needs_an_any_nk_lead_sampler():
    from PatchSamplerLib.training.sampler import SamplerConfig
    SamplerConfig(n=64, any_nk=True, anchor="lead", select_continuation=True).check()
    for cfg in (dict(n=64, any_nk=True, anchor="fps"), dict(n=4, anchor="lead")):
        with pytest.raises(ValueError, match="--select-continuation .* needs --any-nk --anchor lead"):
            SamplerConfig(select_continuation=True, **cfg).check()


@pytest.mark.parametrize("lead", [0, 5])
def test_a_lead_outside_one_to_four_is_refused(lead):
    from PatchSamplerLib.training.sampler import SamplerConfig
    with pytest.raises(ValueError, match=f"lead points must be 1-4, got {lead}"):
        SamplerModel.new(64, 0, 100, anchor="lead", conditioned=True, lead_points=lead)
    with pytest.raises(ValueError, match="lead points must be 1-4"):
        SamplerConfig(n=64, any_nk=True, anchor="lead", lead_points=lead).check()


def _fps_after(cloud: np.ndarray, chosen: np.ndarray, m: int) -> list[int]:
    """Indices of the next m greedy-FPS points of cloud (n, 3) after the points chosen (j, 3)."""
    dist, picked = ((cloud[:, None] - chosen[None]) ** 2).sum(-1).min(1), []
    for _ in range(m):
        picked.append(int(dist.argmax()))
        dist = np.minimum(dist, ((cloud - cloud[picked[-1]]) ** 2).sum(1))
    return picked


@pytest.mark.parametrize("n, k, message", [(0, 9, "1 to 64 patches; N=0"), (65, 9, "1 to 64 patches; N=65"),
                                           (4, 8, "odd K from 3 to 31; K=8"), (4, 33, "odd K from 3 to 31; K=33"),
                                           (4, 1, "K=1")])
def test_out_of_range_n_or_k_is_a_clear_error(n, k, message):
    with pytest.raises(ValueError, match=message):
        learned_centres(_moving_any_sampler(), held_out_vertebra(0).mask, n, k)


def test_an_any_sampler_round_trips_through_its_file(tmp_path):
    model = _moving_any_sampler()
    model.save(tmp_path / "any.pt")
    loaded = SamplerModel.load(tmp_path / "any.pt")
    assert loaded.any_nk and loaded.n == 64 and loaded.record()["any_nk"]
    mask = held_out_vertebra(1).mask
    np.testing.assert_array_equal(learned_centres(loaded, mask, 6, 13)[1], learned_centres(model, mask, 6, 13)[1])
    with pytest.raises(ValueError, match="needs N and K"):
        learned_centres(loaded, mask)


def test_the_unrolled_fast_fit_follows_the_fast_fit_step_by_step():
    torch.manual_seed(0)
    decoder = OccupancyDecoder().double().requires_grad_(False)
    coords, labels = torch.randn(1, 300, 3, dtype=torch.float64) * 10, (torch.rand(1, 300) > 0.5).double()
    steps, size, seed = 6, 64, 3
    g = torch.Generator().manual_seed(seed)
    idx = torch.stack([torch.randint(300, (size,), generator=g) for _ in range(steps)])     # fit_latent's draws
    unrolled = fit_latent_unrolled(decoder, coords[0, idx][:, None], labels[0, idx][:, None], steps, seed=seed,
                                   per_step=True)
    plain = fit_latent(decoder, coords, labels, steps, seed=seed, points_per_step=size)
    torch.testing.assert_close(unrolled.detach(), plain, rtol=1e-9, atol=1e-12)
    with pytest.raises(ValueError, match="for 6 steps, 7 steps asked"):
        fit_latent_unrolled(decoder, coords[0, idx][:, None], labels[0, idx][:, None], 7, per_step=True)


def test_per_step_points_are_patch_voxels_with_their_labels():
    vol = held_out_vertebra(0)
    shape = prepare_sampler_shape(vol, 2.0)
    projected = shape.cloud[:3].clone().requires_grad_(True)
    coords, labels = per_step_patch_points(shape, projected, 5, 4, 50, torch.Generator().manual_seed(0))
    assert coords.shape == (4, 1, 50, 3) and labels.shape == (4, 1, 50)
    centres_mm = (index_to_local_mm(shape.norm.inverse(projected.detach()), vol.spacing)
                  - torch.as_tensor(shape.centre_mm, dtype=torch.float32))
    nearest = torch.cdist(coords.detach().reshape(-1, 3), centres_mm).min(1).values
    half_diagonal = 2 * np.sqrt(3) * max(vol.spacing)                # K = 5: at most 2 voxels per axis
    assert nearest.max() <= half_diagonal + 1e-3
    coords.sum().backward()
    assert projected.grad.abs().sum() > 0                          # the points move with the centres


def test_the_schedule_covers_every_prefix_and_odd_k_and_favours_the_thesis_grid():
    gen = torch.Generator().manual_seed(0)
    drawn = [draw_setting(gen) for _ in range(3000)]
    ns, ks = {n for n, _ in drawn}, {k for _, k in drawn}
    assert ns == set(PREFIXES) and ks == set(range(3, 32, 2))
    assert 0.5 < np.mean([n in GRID_N for n, _ in drawn]) < 0.7
    assert 0.5 < np.mean([k in GRID_K for _, k in drawn]) < 0.7
    assert max(n for n, _ in (draw_setting(gen, 8) for _ in range(300))) == 8
    late = {n for n, _ in (draw_setting(gen, 64, 8) for _ in range(600))}
    assert late == {n for n in PREFIXES if n >= 8}                     # --min-prefix 8
    with pytest.raises(ValueError, match="no prefix size"):
        draw_setting(gen, 64, 65)


def test_the_per_n_k_trainer_refuses_an_any_sampler_config(tmp_path):
    from PatchSamplerLib.data.synthetic import make_shapes
    from PatchSamplerLib.training.sampler import SamplerConfig, SamplerTrainer
    from tiny_prior import TINY_SCALE
    with pytest.raises(ValueError, match="AnySamplerTrainer"):
        SamplerTrainer(make_shapes("vertebra", 2, seed=0, scale=TINY_SCALE), [], ShapePrior.load(tiny_prior_path()),
                       tmp_path, SamplerConfig(n=8, any_nk=True))
    with pytest.raises(ValueError, match="at most 64 patches"):
        SamplerConfig(n=65, any_nk=True).check()


def test_an_any_sampler_with_no_prefix_size_to_train_is_refused_before_anything_is_written(tmp_path):
    from PatchSamplerLib.data.synthetic import make_shapes
    from PatchSamplerLib.training.any_sampler import AnySamplerTrainer
    from PatchSamplerLib.training.sampler import SamplerConfig
    from tiny_prior import TINY_SCALE
    out = tmp_path / "run"
    cfg = SamplerConfig(n=10, any_nk=True, min_prefix=9)              # in 1..n, but no prefix size in 9..10
    cfg.check()
    with pytest.raises(ValueError, match=r"no prefix size .* 9\.\.10 \(--min-prefix\.\.--n\)"):
        AnySamplerTrainer(make_shapes("vertebra", 2, seed=0, scale=TINY_SCALE), [], ShapePrior.load(tiny_prior_path()),
                          out, cfg)
    assert not out.exists()


def test_training_an_any_sampler_validates_on_the_cells_and_keeps_the_best():
    path = tiny_any_sampler_path()
    model = SamplerModel.load(path)
    assert model.any_nk and model.n == 8 and model.k == 0
    rows = [json.loads(line) for line in (path.parent / "train_log.jsonl").read_text().splitlines()]
    validated = [r for r in rows if "val_dice" in r]
    assert validated[0]["epoch"] == 0 and validated[-1]["epoch"] == 1 and rows[-1]["loss_rec"] > 0
    assert model.metadata["val_dice"] == pytest.approx(max(r["val_dice"] for r in validated))
    with pytest.raises(ValueError, match="1 to 8 patches; N=9"):
        learned_centres(model, held_out_vertebra(0).mask, 9, 3)


def test_an_any_sampler_file_runs_any_n_and_k_and_is_found_as_the_bundled_one(tmp_path, monkeypatch):
    out = tiny_any_sampler_path().parent
    prior = ShapePrior.load(tiny_prior_path())
    loaded, notes = load_learned_sampler(prior, 5, 7, 3, out / "sampler.pt")
    assert loaded.any_nk and notes == []
    folder = tmp_path / "models"
    folder.mkdir()
    shutil.copy(tiny_prior_path(), folder / "prior_tiny.pt")
    shutil.copy(out / "sampler.pt", folder / "sampler_tiny_any_t3.pt")
    from tiny_prior import tiny_sampler_path
    shutil.copy(tiny_sampler_path(), folder / "sampler_tiny_n2_k3_t3.pt")        # a per-(2, 3) sampler beside it
    monkeypatch.setattr(checkpoints, "MODELS_DIR", folder)
    assert resolve_sampler_path(folder / "prior_tiny.pt", 3, 11, 3) == (folder / "sampler_tiny_any_t3.pt", None)
    assert resolve_sampler_path(folder / "prior_tiny.pt", 2, 3, 3) == (folder / "sampler_tiny_n2_k3_t3.pt", None)
    # both trained for T=3: at another T the per-(N, K) one still wins (a tie on T, and it is specialised)
    assert resolve_sampler_path(folder / "prior_tiny.pt", 2, 3, 100)[0] == folder / "sampler_tiny_n2_k3_t3.pt"
    shutil.copy(out / "sampler.pt", folder / "sampler_tiny_any_t100.pt")        # an any sampler for T=100 wins there
    assert resolve_sampler_path(folder / "prior_tiny.pt", 2, 3, 100) == (folder / "sampler_tiny_any_t100.pt", None)
    assert resolve_sampler_path(folder / "prior_tiny.pt", 2, 3, 4)[0] == folder / "sampler_tiny_n2_k3_t3.pt"
    (folder / "sampler_tiny_any_t100.pt").unlink()
    assert "trained for T=3" in resolve_sampler_path(folder / "prior_tiny.pt", 3, 11, 100)[1]
    with pytest.raises(CheckpointError, match="N=65, K=3"):
        resolve_sampler_path(folder / "prior_tiny.pt", 65, 3, 3)
    res = reconstruct(held_out_vertebra(0), n=3, k=5, t=3, sampler="learned", prior="tiny")
    assert res.centres.shape == (3, 3) and res.settings["sampler"] == "learned"
    with pytest.raises(ValueError, match="1 to 8 patches; N=9"):
        reconstruct(held_out_vertebra(0), n=9, k=5, t=3, sampler="learned", prior="tiny")


@pytest.mark.parametrize("n, k, any_nk", [(6, 9, True), (64, 31, True), (1, 3, True), (65, 11, False),
                                           (8, 33, False), (8, 10, False)])
def test_the_missing_sampler_error_suggests_an_any_sampler_only_within_its_range(tmp_path, monkeypatch, n, k, any_nk):
    folder = tmp_path / "models"
    folder.mkdir()
    shutil.copy(tiny_prior_path(), folder / "prior_tiny.pt")
    monkeypatch.setattr(checkpoints, "MODELS_DIR", folder)
    with pytest.raises(CheckpointError, match=f"N={n}, K={k} with the 'tiny' prior") as error:
        resolve_sampler_path(folder / "prior_tiny.pt", n, k, 100)
    assert ("--any-nk --n 64" in str(error.value)) is any_nk
    assert "train-sampler --prior tiny" in str(error.value) and f"--n {n} --k {k}" in str(error.value)


@pytest.mark.parametrize("n, k", [(8, 8), (65, 9), (8, 33), (8, 1)])
def test_outside_its_range_the_error_says_why_the_priors_any_sampler_does_not_serve(n, k):
    """The bundled `kidney` prior has an any-(N, K) sampler; asked for an even K, N > 64 or K outside
    3-31, the error lists it and says why it does not apply (the newcomer's "--k 8" puzzle)."""
    from PatchSamplerLib.checkpoints import resolve_prior_path
    with pytest.raises(CheckpointError, match=f"N={n}, K={k} with the 'kidney' prior") as error:
        resolve_sampler_path(resolve_prior_path("kidney"), n, k, 100)
    assert "(its any-(N, K) sampler serves N <= 64 and odd K in 3-31 only)" in str(error.value)
    assert "kidney any N, K T=100" in str(error.value) and "--any-nk" not in str(error.value)


def test_a_learned_run_names_the_bundled_any_sampler_it_uses(tmp_path, capsys):
    """`run --sampler learned` prints which model it uses (a newcomer found it only in the JSON files)."""
    from PatchSamplerLib.checkpoints import sample_data_path
    from PatchSamplerLib.cli.main import main
    assert main(["run", "--input", str(sample_data_path("kidney_left_1.5mm.nii.gz")), "--prior", "kidney", "--n", "6",
                 "--k", "7", "--t", "2", "--sampler", "learned", "--out", str(tmp_path / "out")]) == 0
    assert ("learned sampler: sampler_kidney_any_t100.pt (one model for any N and K, here the first 6 of its "
            "centres for K=7)\n") in capsys.readouterr().out


def test_the_missing_sampler_error_of_a_users_prior_file_gives_a_command_that_trains_one(tmp_path):
    """A prior trained by the user (a file outside the bundle) has no bundled sampler: the error
    says how to train one with that file, its path quoted for the shell."""
    import shlex
    prior = tmp_path / "my priors" / "prior.pt"
    prior.parent.mkdir()
    shutil.copy(tiny_prior_path(), prior)
    with pytest.raises(CheckpointError, match="no bundled learned sampler belongs to the prior") as error:
        resolve_sampler_path(prior, 6, 9, 100)
    command = str(error.value).split("`")[1]
    assert shlex.split(command)[:6] == ["python", "-m", "PatchSamplerLib", "train-sampler", "--prior", str(prior)]
    assert "--any-nk --n 64" in command and "--sampler-model FILE" in str(error.value)


def test_a_sampler_folder_falls_back_to_its_any_sampler(tmp_path):
    from PatchSamplerLib.experiments.crossval import folder_samplers
    from tiny_prior import tiny_sampler_path
    shutil.copy(tiny_sampler_path(), tmp_path / "sampler_n2_k3_t3.pt")
    shutil.copy(tiny_any_sampler_path(), tmp_path / "sampler_any_t3.pt")
    said = []
    models = folder_samplers(tmp_path, [(2, 3), (5, 7), (9, 3), (4, 4)], [3], log=said.append)
    assert not models[(2, 3, 3)].any_nk and models[(5, 7, 3)].any_nk          # the per-(N, K) file first
    assert set(models) == {(2, 3, 3), (5, 7, 3)} and len(said) == 2           # N=9 > 8 and even K: skipped, said


def test_a_sampler_folder_finds_train_sampler_outputs_by_what_they_record(tmp_path):
    """`evaluate --sampler-dir DIR` takes train-sampler's output folders as they are (DIR/run/sampler.pt,
    with last.pt and logs next to it; a prior file beside them is passed over), matched by N, K, T."""
    from PatchSamplerLib.experiments.crossval import folder_samplers
    from tiny_prior import tiny_sampler_path
    shutil.copytree(tiny_sampler_path().parent, tmp_path / "my_run")            # sampler.pt, last.pt, logs
    shutil.copy(tiny_any_sampler_path(), tmp_path / "any.pt")
    shutil.copy(tiny_prior_path(), tmp_path / "prior.pt")
    said = []
    models = folder_samplers(tmp_path, [(2, 3), (5, 7), (4, 4)], [3, 5], log=said.append)   # tiny: (2, 3, 5), any T=3
    assert set(models) == {(2, 3, 3), (5, 7, 3), (2, 3, 5)}
    assert not models[(2, 3, 5)].any_nk and models[(5, 7, 3)].any_nk and models[(2, 3, 3)].any_nk
    assert len(said) == 3 and all("skipped" in line for line in said)        # (4, 4) twice and (5, 7, 5)
    shutil.copytree(tiny_sampler_path().parent, tmp_path / "my_run_again")
    with pytest.raises(ValueError, match="both samplers for"):
        folder_samplers(tmp_path, [(2, 3)], [5], log=said.append)


@pytest.mark.parametrize("models, prior", [(m, p) for m in ("models", "lead/models", "continuation/models")
                                            for p in ("vertebra-anatomical", "kidney-anatomical")]
                         + [("lead2/models", "kidney-anatomical"), ("lead1/models", "kidney-anatomical"),
                            ("lead1_min8/models", "kidney-anatomical"), ("central/models", "kidney-anatomical"),
                            ("synthetic/models", "vertebra"), ("synthetic/models", "kidney"),
                            ("synthetic/models", "vertebra_lead2"),
                            ("central/models", "kidney-anatomical-left_lead2_min8")])
def test_the_trained_any_sampler_places_n_distinct_centres_near_the_shape_for_any_n_and_k(prior, models):
    """The any-(N, K) samplers trained for #18 (results/learned_any_nk/: models/, FPS anchor;
    lead/models/, lead anchor, the vertebra one bundled; lead2/, lead1/: kidney leads of 2 and 1;
    lead1_min8/: the kidney lead of 1 trained on N >= 8; continuation/: FPS continued over the
    voxels, the vertebra lead/ weights (bundled) and a kidney lead of 1 starting central;
    central/: the lead1_min8/ weights, then the central voxel and FPS over the voxels, bundled, and
    the one-sided kidney prior's lead of 2 trained on N >= 8, bundled (seventeenth session);
    synthetic/: the samplers of the synthetic priors `vertebra` (a lead of 4, not bundled; vertebra_lead2:
    a lead of 2 trained on N >= 8, bundled) and `kidney` (bundled)). `prior`: the folder, named
    after the family (what follows "_" names the variant)."""
    from PatchSamplerLib.data.synthetic import make_shape
    from scipy import ndimage
    model = SamplerModel.load(TRAINED.parent / models / prior / "sampler_any_t100.pt")
    assert model.any_nk and model.n == 64 and model.t == 100
    vol = make_shape(prior.split("_")[0], 5, 0)                        # a family seed no sampler was trained on
    voxels_off = ndimage.distance_transform_edt(~vol.mask)
    for k in (3, 9, 13, 31):
        full = learned_centres(model, vol.mask, 64, k)[1]
        ijk = np.floor(full + 0.5).astype(int)
        assert len({tuple(v) for v in ijk}) == 64, k                   # 64 distinct voxels
        # the soft projection averages 32 cloud neighbours: most centres are shape voxels, the
        # others next to the surface (measured: 72-94 % on, at most 3.6 voxels off)
        assert (voxels_off[tuple(ijk.T)] == 0).mean() >= 2 / 3 and voxels_off[tuple(ijk.T)].max() <= 4, k
        for n in (1, 2, 4, 8, 12, 16, 32, 63):
            np.testing.assert_array_equal(learned_centres(model, vol.mask, n, k)[1], full[:n])
    # K moves the generated centres (the kidney lead sampler's t fell to the floor: its projected
    # centres snap to cloud points and on this shape stay on the same ones)
    assert np.abs(learned_centres(model, vol.mask, 8, 5)[0] - learned_centres(model, vol.mask, 8, 21)[0]).max() > 0.1


SYNTHETIC_PER_N_K = {(4, 9), (8, 9), (4, 13)}                          # the thesis-style per-(N, K) samplers


@pytest.mark.parametrize("prior, trained, lead, continuation, source, per_n_k",
                         [("vertebra-anatomical", "continuation/models/vertebra-anatomical", 4, "voxels",
                           "lead/models/vertebra-anatomical/sampler_any_t100.pt", {(4, 9)}),
                          ("kidney-anatomical", "central/models/kidney-anatomical", 1, "central-voxels",
                           "lead1_min8/models/kidney-anatomical/sampler_any_t100.pt", set()),
                          ("kidney", "synthetic/models/kidney", 1, "voxels",
                           "synthetic/models/kidney/trained_central-voxels.pt", SYNTHETIC_PER_N_K),
                          ("vertebra", "synthetic/models/vertebra_lead2", 2, "voxels", None, SYNTHETIC_PER_N_K),
                          ("kidney-anatomical-left", "central/models/kidney-anatomical-left_lead2_min8", 2, "voxels",
                           None, set())])
def test_the_bundled_any_sampler_is_the_lead_sampler_and_serves_what_no_per_n_k_sampler_does(prior, trained, lead,
                                                                                              continuation, source,
                                                                                              per_n_k):
    """The vertebra-anatomical one: the lead/ weights with FPS continued over the voxels (twelfth
    session); the kidney-anatomical one: the lead1_min8/ weights, then the central voxel, then FPS
    over the voxels (fourteenth session); the synthetic `kidney` prior's (fifteenth session):
    trained with the central voxel, switched to FPS over the voxels; the synthetic `vertebra`
    prior's (sixteenth session) and the one-sided `kidney-anatomical-left` prior's (seventeenth): a
    lead of 2 trained on N >= 8 with FPS over the voxels, as trained (`source` None: not switched).
    Every other (N, K) than its prior's per-(N, K) samplers resolves to it."""
    from PatchSamplerLib.checkpoints import resolve_prior_path
    prior_path = resolve_prior_path(prior)
    any_path = checkpoints.bundled_any_samplers()[(prior, 100)]
    assert any_path.read_bytes() == (TRAINED.parent / trained / "sampler_any_t100.pt").read_bytes()
    model = SamplerModel.load(any_path)
    assert model.sampler.anchor == "lead" and model.sampler.lead_points == lead
    assert model.sampler.continuation == continuation and model.sampler.lead_start == "free"
    if source is None:
        assert "continuation_from" not in model.metadata and model.metadata["config"]["continuation"] == continuation
    else:                            # the same weights as the trained file it was switched from, named with its SHA-256
        assert model.metadata["continuation_from"]["path"].endswith(source)
        trained_model = SamplerModel.load(TRAINED.parent / source)
        assert model.metadata["continuation_from"]["sha256"] == trained_model.file_sha256
        for name, value in trained_model.sampler.state_dict().items():
            assert torch.equal(value, model.sampler.state_dict()[name]), name
    assert {(n, k) for p, n, k, _ in checkpoints.bundled_samplers() if p == prior} == per_n_k
    for n, k in per_n_k:
        assert resolve_sampler_path(prior_path, n, k, 100)[0].name == f"sampler_{prior}_n{n}_k{k}_t100.pt"
    for n, k in {(1, 3), (4, 9), (8, 11), (12, 13), (64, 31)} - per_n_k:
        assert resolve_sampler_path(prior_path, n, k, 100) == (any_path, None)


def test_a_centre_on_an_earlier_centres_voxel_moves_to_the_farthest_shape_voxel():
    from PatchSamplerLib.method.sampler import distinct_centres
    mask = np.zeros((10, 10, 10), bool)
    mask[2:8, 2:8, 2:8] = True
    centres = np.array([[2.2, 2.0, 2.0], [1.8, 2.1, 2.0], [5.0, 5.0, 5.0], [7.1, 6.9, 7.0]], np.float32)
    out = distinct_centres(centres, mask)
    np.testing.assert_array_equal(out[[0, 2]], centres[[0, 2]])                 # the first on a voxel stays
    np.testing.assert_array_equal(out[1], [7, 7, 7])                           # farthest from (2.2, 2, 2)
    voxels = {tuple(np.floor(c + 0.5).astype(int)) for c in out}
    assert len(voxels) == 4 and all(mask[v] for v in voxels)                   # (7.1, 6.9, 7) moved on too
    np.testing.assert_array_equal(distinct_centres(centres[:3], mask), out[:3])  # prefixes stay nested
    np.testing.assert_array_equal(distinct_centres(out, mask), out)             # nothing to move: unchanged


def test_evaluate_says_when_a_bundled_sampler_was_trained_for_another_t(capsys):
    """A newcomer's `evaluate --t 20 --samplers learned` used the T=100 sampler without a word (the
    API warns); the grid's sampler loading now prints the note."""
    from PatchSamplerLib.experiments.evaluation import grid_samplers
    from PatchSamplerLib.method.inr import ShapePrior
    models = grid_samplers(ShapePrior.load("kidney"), [(6, 7, 20, "learned", 0), (6, 7, 20, "fps", 0)], None)
    assert list(models) == [(6, 7, 20)] and models[(6, 7, 20)].any_nk
    assert ("note: learned sampler N=6, K=7, T=20: no bundled sampler for T=20; using the one trained for T=100"
            in capsys.readouterr().out)
