"""The latent fits (`method.fitting`): the fast default against the thesis's reference fit."""
import numpy as np
import pytest
import torch

from PatchSamplerLib.method.fitting import FAST_MAX_POINTS, FAST_MIN_POINTS, fast_points, fit_patches, fit_settings
from PatchSamplerLib.method.inr import OccupancyDecoder, ShapePrior, fit_latent, initial_latent
from PatchSamplerLib.method.losses import latent_regulariser, occupancy_loss
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


@pytest.mark.parametrize("n, k, points", [(1, 7, 343), (4, 9, 512), (8, 11, 1331), (12, 13, 2048),
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
    assert runs["adam"][0].settings["fit_points_per_step"] is None
