"""Sampler training: exact chunked loss gradients, the whole chain against finite differences,
the batch gradient against plain autograd, resume after a kill, and the fast mode's subsets."""
from __future__ import annotations

import contextlib
from dataclasses import replace
import io

import numpy as np
import pytest
import torch

from PatchSamplerLib.checkpoints import load_checkpoint
from PatchSamplerLib.data.synthetic import make_shapes
from PatchSamplerLib.method.inr import OccupancyDecoder, ShapePrior
from PatchSamplerLib.method.losses import occupancy_loss
from PatchSamplerLib.method.patches import patch_offsets
from PatchSamplerLib.method.sampler import LearnedSampler
from PatchSamplerLib.training.points import full_grid_points, prepare_sampler_shape
from PatchSamplerLib.training.sampler import (SamplerConfig, SamplerTrainer, patch_subset,
                                              reconstruction_loss_and_grad, unrolled_latent)
from PatchSamplerLib.training.sampler_init import fps_targets, imitate_fps, load_start, matched_squared_distance
from tiny_prior import TINY_SCALE, tiny_prior_path, tiny_sampler_config


@pytest.fixture(scope="module")
def shapes():
    return make_shapes("vertebra", 6, seed=0, scale=TINY_SCALE)


@pytest.fixture(scope="module")
def prior():
    return ShapePrior.load(tiny_prior_path())


def test_chunked_loss_and_gradient_equal_autograd_of_the_whole_loss():
    torch.manual_seed(0)
    decoder = OccupancyDecoder().requires_grad_(False)
    z = torch.randn(1, 128) * 0.1
    coords, labels = torch.randn(1000, 3) * 20, (torch.rand(1000) < 0.3).float()
    zz = z.clone().requires_grad_(True)
    expected = occupancy_loss(decoder(coords[None], zz)[0], labels)
    expected.backward()
    loss, grad = reconstruction_loss_and_grad(decoder, z, coords, labels, chunk=128)
    assert loss == pytest.approx(expected.item(), rel=1e-5)
    torch.testing.assert_close(grad, zz.grad, rtol=1e-4, atol=1e-7)


def test_fast_mode_fits_on_a_subgrid_of_each_patch_that_keeps_the_centre():
    assert len(patch_subset(9, 1)) == 729
    sub = patch_subset(9, 2)
    assert len(sub) == 125
    assert (patch_offsets(9)[sub].abs().sum(1) == 0).sum() == 1      # the centre voxel is kept
    assert len(patch_subset(13, 2)) == 343
    even = patch_offsets(4)[patch_subset(4, 2)]                   # offsets -1.5 .. 1.5: keep -0.5, 1.5
    assert len(even) == 8 and set(even[:, 0].tolist()) == {-0.5, 1.5}


@pytest.mark.parametrize("soft_labels", [False, True])
def test_sampler_gradient_matches_finite_differences_through_the_whole_chain(shapes, soft_labels):
    """cloud -> generator -> projection -> centres -> patches -> 4 fit steps -> decode -> L_r, float64."""
    torch.manual_seed(1)
    shape = prepare_sampler_shape(shapes[0], 2.0)
    decoder = OccupancyDecoder().double().requires_grad_(False)
    sampler = LearnedSampler(2).double().eval()
    with torch.no_grad():
        sampler.generator.head[-1].weight.mul_(0.1)      # start near the shape: non-trivial projections
    coords, labels = (t.double() for t in full_grid_points(shape))
    subset = patch_subset(3, 1)

    def loss() -> torch.Tensor:
        _, projected = sampler(shape.cloud.double()[None])
        z = unrolled_latent(decoder, shape, projected[0], 3, subset, 4, fit_lr=1e-2, soft_labels=soft_labels)
        return occupancy_loss(decoder(coords[None], z)[0], labels)

    params = [sampler.generator.head[-1].bias, sampler.generator.features[0].weight, sampler.projection.temperature]
    grads = torch.autograd.grad(loss(), params)
    eps = 1e-6
    for param, grad in zip(params, grads):
        flat, gflat = param.data.view(-1), grad.reshape(-1)
        for i in range(min(3, flat.numel())):
            old = flat[i].item()
            flat[i] = old + eps
            up = loss().item()
            flat[i] = old - eps
            down = loss().item()
            flat[i] = old
            assert gflat[i].item() == pytest.approx((up - down) / (2 * eps), rel=1e-4, abs=1e-9)
    assert grads[0].abs().sum() > 0


def test_batch_gradient_equals_one_backward_of_the_summed_loss(shapes, prior, tmp_path):
    cfg = tiny_sampler_config(mode="faithful", batch_size=3)
    trainer = SamplerTrainer(shapes[:3], [], prior, tmp_path, cfg)
    trainer.batch_gradients([0, 1, 2])
    accumulated = [p.grad.clone() for p in trainer.model.sampler.parameters()]

    sampler, decoder = trainer.model.sampler, trainer.decoder
    sampler.zero_grad()
    clouds = torch.stack([s.cloud for s in trainer.shapes])
    generated, projected = sampler(clouds)
    total = trainer.sampler_losses(generated, projected, clouds)
    for b, shape in enumerate(trainer.shapes):
        z = unrolled_latent(decoder, shape, projected[b], cfg.k, trainer.subset, cfg.t, cfg.fit_lr)
        coords, labels = full_grid_points(shape)
        total = total + occupancy_loss(decoder(coords[None], z)[0], labels) / 3
    total.backward()
    for mine, plain in zip(accumulated, [p.grad for p in sampler.parameters()]):
        torch.testing.assert_close(mine, plain, rtol=1e-3, atol=1e-6)


def _quiet(fn):
    with contextlib.redirect_stdout(io.StringIO()):
        return fn()


def test_resume_after_a_kill_mid_epoch_matches_an_uninterrupted_run(shapes, prior, tmp_path):
    cfg = tiny_sampler_config(epochs=3)
    full = SamplerTrainer(shapes[:4], shapes[4:5], prior, tmp_path / "full", cfg, log=lambda *a: None)
    _quiet(full.run)

    killed = SamplerTrainer(shapes[:4], shapes[4:5], prior, tmp_path / "killed", cfg, log=lambda *a: None)
    original, calls = killed.train_step, []

    def dying_step(ids):
        calls.append(ids)
        if len(calls) == 5:                        # epoch 3, first batch: after 2 epochs of 2 batches
            raise KeyboardInterrupt("killed")
        return original(ids)
    killed.train_step = dying_step
    with pytest.raises(KeyboardInterrupt):
        _quiet(killed.run)
    assert load_checkpoint(tmp_path / "killed" / "last.pt", "sampler-training")[1]["history"][-1]["epoch"] == 2

    resumed = SamplerTrainer(shapes[:4], shapes[4:5], prior, tmp_path / "killed", cfg, log=lambda *a: None)
    resumed.resume()
    assert resumed.epoch == 2
    _quiet(resumed.run)
    for a, b in zip(full.model.sampler.state_dict().values(), resumed.model.sampler.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert [r["loss_rec"] for r in full.history] == [r["loss_rec"] for r in resumed.history]
    for name in ("sampler.pt", "last.pt", "train_log.jsonl", "curves.png"):
        assert (tmp_path / "killed" / name).is_file()


def test_resume_refuses_other_settings(shapes, prior, tmp_path):
    _quiet(SamplerTrainer(shapes[:2], [], prior, tmp_path, tiny_sampler_config(epochs=1), log=lambda *a: None).run)
    other = SamplerTrainer(shapes[:2], [], prior, tmp_path, tiny_sampler_config(epochs=1, n=3), log=lambda *a: None)
    with pytest.raises(ValueError, match="options differ"):
        other.resume()


@pytest.mark.parametrize("change, message", [(dict(mode="exact"), "mode must be"), (dict(batch_size=1), "batch"),
                                             (dict(t=0), "T must be")])
def test_bad_settings_are_refused(change, message):
    with pytest.raises(ValueError, match=message):
        SamplerConfig(**change).check()


def test_fps_initialisation_fits_the_generator_to_fps_and_validates_it_as_epoch_zero(shapes, prior, tmp_path):
    from PatchSamplerLib.method.baselines import extreme_fps_centres
    from PatchSamplerLib.method.sampler import learned_centres
    cfg = tiny_sampler_config(init="fps", init_steps=100, epochs=1, batch_size=4)
    # the run only has to validate the FPS start as epoch 0: a short FPS fit; the fit's effect is the second part
    trainer = SamplerTrainer(shapes[:4], shapes[4:5], prior, tmp_path, replace(cfg, init_steps=10), log=lambda *a: None)
    untrained = [learned_centres(trainer.model, s.volume.mask)[0] for s in trainer.shapes]
    _quiet(trainer.run)
    assert trainer.history[0]["epoch"] == 0 and "val_dice" in trainer.history[0]
    assert trainer.history[1]["epoch"] == 1

    def chamfer(a, b):
        d = np.linalg.norm(a[:, None] - b[None], axis=-1)
        return d.min(1).mean() + d.min(0).mean()
    targets = [extreme_fps_centres(s.volume.mask, 2, s.volume.spacing) for s in trainer.shapes]
    trainer2 = SamplerTrainer(shapes[:4], [], prior, tmp_path / "b", cfg, log=lambda *a: None)
    imitate_fps(trainer2.model.sampler, *fps_targets(trainer2.shapes, [], cfg.n), cfg, trainer2.gen)
    fitted = [learned_centres(trainer2.model, s.volume.mask)[0] for s in trainer2.shapes]
    before = np.mean([chamfer(u, t) for u, t in zip(untrained, targets)])
    after = np.mean([chamfer(f, t) for f, t in zip(fitted, targets)])
    assert after < 0.5 * before                    # voxel units: the generator now points at FPS (20.3 -> 5.1)


def test_matched_squared_distance_is_order_free_and_one_to_one():
    targets = torch.tensor([[[0.0, 0, 0], [1, 0, 0], [0, 2, 0]]])
    assert matched_squared_distance(targets[:, [2, 0, 1]], targets).item() == 0.0
    # two points on one target: Chamfer's point->target term is 0; the matching charges the
    # uncovered target (0, 2, 0) to the surplus point at (1, 0, 0): (1 + 4) / 3
    doubled = torch.tensor([[[0.0, 0, 0], [1, 0, 0], [1, 0, 0]]])
    assert matched_squared_distance(doubled, targets).item() == pytest.approx(5 / 3)


def test_fps_fit_sees_the_extra_shapes(shapes, prior, tmp_path):
    cfg = tiny_sampler_config(init="fps", init_steps=1, batch_size=4)
    trainer = SamplerTrainer(shapes[:2], shapes[2:3], prior, tmp_path, cfg, log=lambda *a: None,
                             init_shapes=shapes[3:6])
    clouds, targets = fps_targets(trainer.shapes, trainer.init_shapes, cfg.n)
    assert clouds.shape == (5, 2048, 3) and targets.shape == (5, cfg.n, 3)
    assert targets.abs().max() <= 0.5 + 1e-6                # normalised cloud space, on the shape


def test_training_can_start_from_a_sampler_file_and_keeps_it_when_nothing_beats_it(shapes, prior, tmp_path):
    from tiny_prior import tiny_sampler_path
    from PatchSamplerLib.method.sampler import SamplerModel
    start = SamplerModel.load(tiny_sampler_path())
    cfg = tiny_sampler_config(n=start.n, init="file", init_from=str(tiny_sampler_path()), epochs=0)
    trainer = SamplerTrainer(shapes[:2], shapes[2:3], prior, tmp_path, cfg, log=lambda *a: None)
    model = _quiet(trainer.run)
    assert trainer.history[0]["init"] == "file" and "val_dice" in trainer.history[0]
    for key, value in start.sampler.state_dict().items():
        torch.testing.assert_close(model.sampler.state_dict()[key], value)
    start_t = start.sampler.projection.temperature.item()
    assert model.metadata["config"]["initial_temperature"] == pytest.approx(start_t)   # the file's, not 1.0
    with pytest.raises(ValueError, match="needs --init-from"):
        SamplerConfig(init="file").check()
    wrong = SamplerTrainer(shapes[:2], [], prior, tmp_path / "b", tiny_sampler_config(
        n=start.n + 1, init="file", init_from=str(tiny_sampler_path())), log=lambda *a: None)
    with pytest.raises(ValueError, match=f"places N={start.n} patches"):
        load_start(wrong.model, wrong.cfg)


def test_an_fps_anchored_start_is_validated_as_epoch_zero_and_scores_like_fps(shapes, prior, tmp_path):
    from PatchSamplerLib.training.scores import patch_dice
    from PatchSamplerLib.method.sampler import cloud_fps_anchor
    cfg = tiny_sampler_config(anchor="fps", initial_temperature=1e-3, epochs=0)
    trainer = SamplerTrainer(shapes[:2], shapes[2:4], prior, tmp_path, cfg, log=lambda *a: None)
    model = _quiet(trainer.run)
    assert trainer.history[0]["init"] == "fps anchor" and model.sampler.anchor == "fps"
    expected = np.mean([patch_dice(trainer.decoder, s.volume, s.centre_mm,
                                   s.norm.inverse(cloud_fps_anchor(s.cloud[None], cfg.n)[0].numpy()),
                                   cfg.k, cfg.t, cfg.fit_lr) for s in trainer.val_shapes])
    assert trainer.history[0]["val_dice"] == pytest.approx(expected, abs=1e-3)
    for anchor in ("fps", "central", "lead"):
        with pytest.raises(ValueError, match=f"--anchor {anchor} places FPS points itself.*drop --init fps"):
            SamplerConfig(anchor=anchor, init="fps").check()
    resumed = SamplerTrainer(shapes[:2], [], prior, tmp_path, tiny_sampler_config(epochs=0), log=lambda *a: None)
    with pytest.raises(ValueError, match="options differ"):
        resumed.resume()


def test_training_leaves_the_callers_prior_as_it_was(shapes, tmp_path):
    prior = ShapePrior.load(tiny_prior_path())
    before = {name: p.detach().clone() for name, p in prior.decoder.named_parameters()}
    trainer = SamplerTrainer(shapes[:2], [], prior, tmp_path, tiny_sampler_config(), log=lambda *a: None)
    trainer.batch_gradients([0, 1])
    assert trainer.decoder is not prior.decoder and not any(p.requires_grad for p in trainer.decoder.parameters())
    for name, p in prior.decoder.named_parameters():
        assert p.requires_grad and p.grad is None and torch.equal(p, before[name])
