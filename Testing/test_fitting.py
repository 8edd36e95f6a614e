"""The latent fits (`method.fitting`): the fast default against the thesis's reference fit."""
import numpy as np
import pytest
import torch

from PatchSamplerLib.method.fitting import (FAST_BOUNDARY_WEIGHT, FAST_MAX_POINTS, FAST_MIN_POINTS, fast_points,
                                            fit_patches, fit_settings)
from PatchSamplerLib.method.inr import OccupancyDecoder, ShapePrior, _weighted_subsets, fit_latent, initial_latent
from PatchSamplerLib.method.losses import latent_regulariser, occupancy_loss
from PatchSamplerLib.method.patches import boundary_voxels, extract_patches
from PatchSamplerLib.pipeline import RunConfig, reconstruct
from tiny_prior import held_out_vertebra, tiny_prior_path


def ball(points: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    coords = torch.randn(1, points, 3, generator=g) * 20
    return coords, (coords.norm(dim=-1) < 20).float()


def test_the_fit_takes_the_same_steps_as_torch_adam():
    torch.manual_seed(0)
    dec, (coords, labels), z0 = OccupancyDecoder(), ball(500), initial_latent(1)
    ours = fit_latent(dec, coords, labels, 20, init=z0)
    z = z0.clone().requires_grad_(True)
    opt = torch.optim.Adam([z], lr=0.01)
    dec.requires_grad_(False)
    for _ in range(20):
        opt.zero_grad()
        (occupancy_loss(dec(coords, z), labels) + 1e-4 * latent_regulariser(z)).backward()
        opt.step()
    assert torch.equal(ours, z.detach())


def test_the_fast_fit_is_the_thesis_fit_when_the_patches_fit_in_its_budget():
    torch.manual_seed(0)
    dec, (coords, labels) = OccupancyDecoder(), ball(FAST_MIN_POINTS)
    fast = fit_patches(dec, coords, labels, fit_settings("fast", FAST_MIN_POINTS, 10))
    assert torch.equal(fast, fit_patches(dec, coords, labels, fit_settings("adam", FAST_MIN_POINTS, 10)))
    more = ball(FAST_MIN_POINTS + 1)
    assert not torch.equal(fit_patches(dec, *more, fit_settings("fast", FAST_MIN_POINTS + 1, 10)),
                           fit_patches(dec, *more, fit_settings("adam", FAST_MIN_POINTS + 1, 10)))


@pytest.mark.parametrize("n, k, points", [(1, 7, 343), (4, 9, 384), (8, 11, 1331), (12, 13, 2048),
                                          (64, 31, 2048)])
def test_the_fast_fit_takes_an_eighth_of_the_patch_voxels_within_its_bounds(n, k, points):
    assert fast_points(n * k ** 3) == points
    assert fit_settings("fast", n * k ** 3).points == points and fit_settings("adam", n * k ** 3).points is None


class PointCounter(torch.nn.Module):
    """A decoder that records how many points each call evaluates."""

    def __init__(self):
        super().__init__()
        self.decoder, self.calls = OccupancyDecoder(), []
        self.latent_dim = self.decoder.latent_dim

    def forward(self, coords, latents):
        self.calls.append(coords.shape[1])
        return self.decoder(coords, latents)


@pytest.mark.parametrize("points", [FAST_MAX_POINTS * 8, 64 * 31 ** 3 // 16])
def test_a_fast_step_costs_the_same_whatever_the_number_of_patch_voxels(points):
    counter, (coords, labels) = PointCounter(), ball(points)
    fit_patches(counter, coords, labels, fit_settings("fast", points, 7))
    assert counter.calls == [FAST_MAX_POINTS] * 7
    counter.calls.clear()
    fit_patches(counter, coords, labels, fit_settings("adam", points, 2))
    assert counter.calls == [points] * 2


def test_an_unknown_fit_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="unknown latent fit 'lbfgs'; choose one of fast, adam"):
        RunConfig(fit="lbfgs").check()


@pytest.fixture(scope="module")
def prior():
    return ShapePrior.load(tiny_prior_path())


def test_the_fast_fit_reaches_the_thesis_fit_dice_on_held_out_shapes(prior):
    """8 patches of 5^3 (1,000 voxels; the fast fit takes 512 a step), T = 50, 4 unseen shapes."""
    runs = {fit: [reconstruct(held_out_vertebra(i), n=8, k=5, t=50, prior=prior, fit_lr=3e-2, fit=fit, device="cpu")
                  for i in range(4)] for fit in ("fast", "adam")}
    dice = {fit: np.array([r.metrics["dice"] for r in results]) for fit, results in runs.items()}
    assert dice["adam"].mean() > 0.7
    assert abs(dice["fast"].mean() - dice["adam"].mean()) < 0.02
    assert np.abs(dice["fast"] - dice["adam"]).max() < 0.05
    record = runs["fast"][0].settings
    assert record["fit"] == "fast" and record["fit_points_per_step"] == FAST_MIN_POINTS
    assert record["fit_boundary_weight"] == FAST_BOUNDARY_WEIGHT
    assert runs["adam"][0].settings["fit_points_per_step"] is None
    assert runs["adam"][0].settings["fit_boundary_weight"] == 1


def test_boundary_voxels_are_those_with_a_neighbour_of_the_other_label_in_their_patch():
    """Two 4^3 patches in extract_patches' order (x slowest): the first cut by the plane x = 1.5
    (voxels x <= 1 inside), the second wholly inside."""
    k = 4
    mask = np.zeros((20, 20, 20), bool)
    mask[:10] = True                                                   # inside: x < 10
    centres = np.array([[8.5, 5.5, 5.5], [4.5, 12.5, 12.5]], np.float32)   # patch x 7..10; all inside
    _, labels, _ = extract_patches(mask, (1.0, 1.0, 1.0), centres, k, np.zeros(3))
    edge = boundary_voxels(labels.reshape(1, -1), k).reshape(2, k, k, k)
    assert labels.reshape(2, k, k, k)[0, :, 0, 0].tolist() == [1, 1, 1, 0]         # x = 7, 8, 9 in; 10 out
    assert edge[0, 2:].all() and not edge[0, :2].any()                  # x = 9 and 10: the two sides
    assert not edge[1].any()
    with pytest.raises(ValueError, match="whole number of 4\\^3 patches"):
        boundary_voxels(torch.zeros(1, 65), k)


def test_boundary_weighted_subsets_estimate_the_loss_over_all_points():
    """Points drawn 4x as often on the boundary, weighted by 1 / (P q): over many draws the
    weighted loss is the loss over all points (the unweighted one of the same draws is not), and
    boundary points are drawn at the rate asked."""
    g = torch.Generator().manual_seed(1)
    total, boundary = 4000, torch.zeros(1, 4000, dtype=torch.bool)
    boundary[0, :800] = True                                           # a fifth, as in real patches
    labels = (torch.rand(1, total, generator=g) > 0.5).float()
    sign = labels * 2 - 1
    logits = torch.where(boundary, 0.2 * sign * torch.randn(1, total, generator=g),   # unsure near the boundary
                         4 * sign + torch.randn(1, total, generator=g))
    full = float(occupancy_loss(logits, labels))
    sampling = torch.where(boundary, FAST_BOUNDARY_WEIGHT, 1.0)
    draws = list(_weighted_subsets(sampling, 500, 200, seed=0))
    weighted = np.mean([float(occupancy_loss(logits.gather(1, i), labels.gather(1, i), w)) for i, w in draws])
    plain = np.mean([float(occupancy_loss(logits.gather(1, i), labels.gather(1, i))) for i, _ in draws])
    share = np.mean([float(boundary.gather(1, i).float().mean()) for i, _ in draws])
    assert abs(weighted - full) < 0.01 * full
    assert plain > 1.5 * full
    assert abs(share - 0.5) < 0.01                                     # 4 * 800 / (4 * 800 + 3200)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(draws, _weighted_subsets(sampling, 500, 200, seed=0)))


def test_the_fast_fit_draws_boundary_voxels_only_when_it_knows_the_patch_size():
    """fit_patches with k: importance-weighted subsets (another latent than uniform subsets,
    the same one again with the same seed); without k, or for the thesis's fit, as before."""
    torch.manual_seed(0)
    dec, k = OccupancyDecoder(), 8
    coords, labels = ball(4 * k ** 3)
    settings = fit_settings("fast", 4 * k ** 3, 5)
    weighted = fit_patches(dec, coords, labels, settings, k=k)
    assert torch.equal(weighted, fit_patches(dec, coords, labels, settings, k=k))
    uniform = fit_patches(dec, coords, labels, settings)
    assert not torch.equal(weighted, uniform)
    assert torch.equal(uniform, fit_latent(dec, coords, labels, 5, points_per_step=settings.points))
    adam = fit_settings("adam", 4 * k ** 3, 5)
    assert torch.equal(fit_patches(dec, coords, labels, adam, k=k), fit_latent(dec, coords, labels, 5))
