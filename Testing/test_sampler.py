"""Learned sampler building blocks [T §3.3-3.4, §3.6]: generator, soft projection, sampler
losses, and the differentiable latent-fit unroll checked against torch.optim.Adam, `higher`
and finite differences."""

import numpy as np
import pytest
import torch

from PatchSamplerLib.method.inr import OccupancyDecoder, fit_latent, fit_latent_unrolled, initial_latent
from PatchSamplerLib.method.losses import (coverage_loss, latent_regulariser, occupancy_loss, proximity_loss,
                                          repulsion_loss)
from PatchSamplerLib.method.patches import patch_coordinates
from PatchSamplerLib.method.sampler import LearnedSampler, PointGenerator, SoftProjection


def test_generator_shapes_and_order_invariance():
    torch.manual_seed(0)
    gen = PointGenerator(5).eval()
    cloud = torch.rand(2, 64, 3) - 0.5
    out = gen(cloud)
    assert out.shape == (2, 5, 3)
    assert torch.allclose(gen(cloud[:, torch.randperm(64)]), out, atol=1e-5)
    widths = [m.out_channels for m in gen.features if isinstance(m, torch.nn.Conv1d)]
    assert widths == [64, 128, 128, 256, 128]


def test_soft_projection_matches_the_formula_and_stays_in_the_hull():
    torch.manual_seed(1)
    cloud = torch.rand(1, 50, 3)
    g = torch.rand(1, 4, 3) * 2 - 0.5
    proj = SoftProjection(neighbours=8)
    r = proj(g, cloud)
    d2 = ((g[0, :, None] - cloud[0, None]) ** 2).sum(-1)
    near, idx = d2.topk(8, largest=False)
    w = torch.softmax(-near / 1.0, dim=-1)
    expected = (w[..., None] * cloud[0][idx]).sum(1)
    assert torch.allclose(r[0], expected, atol=1e-6)
    assert (r >= cloud.min(1).values).all() and (r <= cloud.max(1).values).all()
    assert proj.temperature.item() == 1.0
    proj.temperature.data.fill_(1e-4)                    # t^2 floored at 1e-4
    assert proj.sigma().item() == pytest.approx(1e-4)


def test_soft_projection_tends_to_the_nearest_neighbour_as_t_shrinks():
    cloud = torch.tensor([[[0.0, 0, 0], [1.0, 0, 0], [0, 1.0, 0]]])
    g = torch.tensor([[[0.8, 0.1, 0.0]]])
    proj = SoftProjection(neighbours=3, initial_temperature=0.05)
    assert torch.allclose(proj(g, cloud), cloud[:, 1:2], atol=1e-3)


def test_sampler_gradients_reach_generator_and_temperature():
    torch.manual_seed(2)
    sampler = LearnedSampler(3, neighbours=4)
    cloud = torch.rand(2, 40, 3) - 0.5
    g, r = sampler(cloud)
    (r.sum() + g.pow(2).sum()).backward()
    assert sampler.projection.temperature.grad is not None and sampler.projection.temperature.grad != 0
    assert all(p.grad is not None for p in sampler.generator.parameters())


def test_sampler_losses_known_values():
    cloud = torch.tensor([[[0.0, 0, 0], [2.0, 0, 0]]])
    g = torch.tensor([[[1.0, 0, 0], [2.0, 0, 0]]])
    assert proximity_loss(g, cloud).item() == pytest.approx(0.5)          # (1 + 0) / 2
    assert proximity_loss(g, cloud, with_max=True).item() == pytest.approx(1.5)
    assert repulsion_loss(g).item() == pytest.approx(1.0)                  # one pair at distance 1
    three = torch.tensor([[[0.0, 0, 0], [1.0, 0, 0], [0, 2.0, 0]]])
    assert repulsion_loss(three).item() == pytest.approx(1 + 1 / 4 + 1 / 5)
    assert coverage_loss(g, cloud).item() == pytest.approx(0.5)            # p=0 -> 1, p=2 -> 0


def _tiny_problem(seed=0, dtype=torch.float64):
    torch.manual_seed(seed)
    dec = OccupancyDecoder(latent_dim=8, width=16).to(dtype)
    centres = (torch.rand(2, 3, dtype=dtype) * 6).requires_grad_(True)
    coords = patch_coordinates(centres, 2).reshape(1, -1, 3)
    labels = (coords.detach().norm(dim=-1) < 4).to(dtype)
    return dec, centres, labels


def test_unrolled_fit_follows_torch_adam_exactly():
    dec, centres, labels = _tiny_problem(dtype=torch.float32)
    coords = patch_coordinates(centres, 2).reshape(1, -1, 3)
    z0 = initial_latent(1, 8, std=0.1, seed=3)
    ref = fit_latent(dec, coords, labels, steps=15, lr=0.05, init=z0)
    unrolled = fit_latent_unrolled(dec, coords, labels, steps=15, lr=0.05, init=z0)
    assert torch.allclose(unrolled.detach(), ref, atol=1e-6)


class LatentHolder(torch.nn.Module):
    """`higher` patches modules; the latent must live in one."""

    def __init__(self, z0):
        super().__init__()
        self.z = torch.nn.Parameter(z0.clone())


def test_unrolled_fit_gradient_matches_higher():
    higher = pytest.importorskip("higher")
    dec, centres, labels = _tiny_problem()
    z0 = initial_latent(1, 8, std=0.1, seed=4).double()
    steps, lr = 6, 0.05

    def outer(z):
        return torch.sigmoid(dec(torch.zeros(1, 1, 3, dtype=torch.float64) + 1.0, z)).sum()

    coords = patch_coordinates(centres, 2).reshape(1, -1, 3)
    ours = torch.autograd.grad(outer(fit_latent_unrolled(dec, coords, labels, steps, lr, init=z0)), centres)[0]

    holder = LatentHolder(z0)
    opt = torch.optim.Adam(holder.parameters(), lr=lr)
    with higher.innerloop_ctx(holder, opt, copy_initial_weights=False) as (fmodel, diffopt):
        for _ in range(steps):
            coords_h = patch_coordinates(centres, 2).reshape(1, -1, 3)
            loss = occupancy_loss(dec(coords_h, fmodel.z), labels) + 1e-4 * latent_regulariser(fmodel.z)
            diffopt.step(loss)
        theirs = torch.autograd.grad(outer(fmodel.z), centres)[0]
    assert torch.allclose(ours, theirs, atol=1e-5, rtol=1e-4)
    assert ours.abs().max() > 1e-6


def test_unrolled_fit_gradient_matches_finite_differences():
    dec, centres, labels = _tiny_problem(seed=5)
    z0 = initial_latent(1, 8, std=0.1, seed=6).double()
    probe = torch.tensor([[[0.5, 1.0, 1.5], [3.0, 2.0, 1.0]]], dtype=torch.float64)

    def chain(c):
        coords = patch_coordinates(c, 2).reshape(1, -1, 3)
        z = fit_latent_unrolled(dec, coords, labels, steps=4, lr=0.05, init=z0)
        return torch.sigmoid(dec(probe, z)).sum()

    assert torch.autograd.gradcheck(chain, (centres,), eps=1e-6, atol=1e-6, rtol=1e-4)


def test_the_projection_passes_the_gradient_on_only_when_t_is_near_the_point_spacing():
    """With the thesis's t = 1 on a [-0.5, 0.5] cloud the 32 neighbours get equal weights and
    dR/dG is ~0 (the reconstruction loss barely reaches the generator); near the point spacing
    (t ~ 0.05) it is of order 1."""
    from PatchSamplerLib.data.synthetic import make_shape
    from PatchSamplerLib.method.pointcloud import simplified_cloud
    from PatchSamplerLib.method.sampler import SoftProjection
    cloud = torch.from_numpy(simplified_cloud(make_shape("kidney", 1, 0, 0.5).mask)[0])[None]
    g = cloud[:, :4].clone() + 0.01

    def jacobian_norm(t: float) -> float:
        proj = SoftProjection(initial_temperature=t)
        jac = torch.autograd.functional.jacobian(lambda x: proj(x, cloud), g)
        return float(np.mean([jac[0, i, :, 0, i, :].norm().item() for i in range(4)]))
    assert jacobian_norm(1.0) < 0.05 < 0.3 < jacobian_norm(0.05)


@pytest.mark.parametrize("start, pick", [("fps", np.argmax), ("central", np.argmin)])
def test_cloud_fps_anchor_is_greedy_fps_from_the_point_farthest_from_or_nearest_to_the_centroid(start, pick):
    from PatchSamplerLib.method.baselines import farthest_point_indices
    from PatchSamplerLib.method.sampler import cloud_fps_anchor
    rng = np.random.default_rng(3)
    clouds = torch.from_numpy(rng.uniform(-0.5, 0.5, (2, 300, 3)).astype(np.float32))
    anchor = cloud_fps_anchor(clouds, 5, start)
    for cloud, got in zip(clouds.numpy(), anchor.numpy()):
        first = int(pick(((cloud - cloud.mean(0)) ** 2).sum(1)))
        np.testing.assert_array_equal(got, cloud[farthest_point_indices(cloud, 5, first)])
        assert (np.linalg.norm(got[0] - cloud.mean(0)) < 0.3) == (start == "central")


@pytest.mark.parametrize("anchor_kind", ["fps", "central"])
def test_an_fps_anchored_sampler_starts_at_fps_and_learns_offsets(tmp_path, anchor_kind):
    from PatchSamplerLib.method.sampler import SamplerModel, cloud_fps_anchor
    model = SamplerModel.new(4, 9, 10, initial_temperature=1e-3, anchor=anchor_kind)
    clouds = torch.rand(3, 256, 3) - 0.5
    model.sampler.train()
    generated, projected = model.sampler(clouds)
    anchor = cloud_fps_anchor(clouds, 4, anchor_kind)
    torch.testing.assert_close(generated, anchor)                   # zero offsets at the start
    torch.testing.assert_close(projected, anchor, atol=1e-4, rtol=0)  # t small: the point itself
    generated.sum().backward()
    assert model.sampler.generator.head[-1].bias.grad.abs().sum() > 0   # the offsets can move
    model.save(tmp_path / "s.pt")
    loaded = SamplerModel.load(tmp_path / "s.pt")
    assert loaded.sampler.anchor == anchor_kind
    torch.testing.assert_close(loaded.sampler(clouds)[0], anchor)
    with pytest.raises(ValueError, match="anchor must be"):
        SamplerModel.new(4, 9, 10, anchor="random")
