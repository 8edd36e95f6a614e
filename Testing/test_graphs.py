"""The latent fit as a CUDA graph (`method.graphs`). The captured body runs here eagerly on the
CPU and must give the eager `fit_latent`'s latent exactly, for every kind of point subsets and
after its buffers are reloaded with another fit's inputs; the capture itself is tested on CUDA
(Testing/test_cuda.py)."""
from __future__ import annotations

import pytest
import torch

from PatchSamplerLib.method import graphs
from PatchSamplerLib.method.graphs import FitProgram, graph_fit_applies, graph_key, stacked_draws
from PatchSamplerLib.method.inr import (DEFAULT_LATENT_REG, OccupancyDecoder, _point_subsets, _weighted_subsets,
                                        fit_latent, initial_latent)

STEPS, LR = 12, 0.01


def _observation(seed: int, volumes: int = 2, points: int = 600):
    g = torch.Generator().manual_seed(seed)
    coords = torch.rand(volumes, points, 3, generator=g) * 40 - 20
    labels = (coords.norm(dim=-1) < 12 + seed).float()
    sampling = torch.where(labels > 0, 4.0, 1.0)
    return coords, labels, sampling


def _subsets(kind, points, sampling, seed):
    size = {"all": None, "shared": 128, "weighted": 128}[kind]
    return (_weighted_subsets(sampling, size, STEPS, seed) if kind == "weighted"
            else _point_subsets(points, size, seed))


def _eager(decoder, coords, labels, sampling, kind, seed):
    size = {"all": None, "shared": 128, "weighted": 128}[kind]
    return fit_latent(decoder, coords, labels, steps=STEPS, lr=LR, seed=seed, points_per_step=size,
                      sampling=sampling if kind == "weighted" else None)


@pytest.mark.parametrize("kind", ["all", "shared", "weighted"])
def test_the_graph_body_fits_exactly_as_the_eager_fit_and_restarts_on_reload(kind):
    torch.manual_seed(0)
    decoder = OccupancyDecoder()
    first, second = _observation(0), _observation(1)
    program = None
    for seed, (coords, labels, sampling) in ((0, first), (3, second)):
        found, draws = stacked_draws(_subsets(kind, coords.shape[1], sampling, seed), STEPS)
        assert found == kind
        z0 = initial_latent(coords.shape[0], seed=seed)
        if program is None:
            program = FitProgram(decoder, coords, labels, kind, draws, z0, LR, DEFAULT_LATENT_REG)
        else:
            program.load(coords, labels, draws, z0)      # the second fit reuses the buffers: z, m, v reset
        program.body(STEPS)
        torch.testing.assert_close(program.result(), _eager(decoder, coords, labels, sampling, kind, seed),
                                   rtol=0, atol=0)
    assert all(p.requires_grad and p.grad is None for p in decoder.parameters())   # unfrozen after, no gradient


def test_stacked_draws_are_the_eager_draws_in_order():
    coords, labels, sampling = _observation(0)
    kind, (idx,) = stacked_draws(_point_subsets(600, 128, 5), STEPS)
    eager = _point_subsets(600, 128, 5)
    assert kind == "shared" and idx.shape == (STEPS, 128)
    for step in range(STEPS):
        assert torch.equal(idx[step], next(eager))
    kind, (idx, weights) = stacked_draws(_weighted_subsets(sampling, 128, STEPS, 5), STEPS)
    assert kind == "weighted" and idx.shape == weights.shape == (STEPS, 2, 128)
    assert torch.allclose(weights.mean(-1), torch.ones(STEPS, 2))


def test_no_graph_on_the_cpu_with_an_early_stop_or_too_many_points(monkeypatch):
    coords = torch.zeros(1, 1000, 3)
    assert not graph_fit_applies(coords, None, None)                   # the CPU: eager
    monkeypatch.setattr(torch.Tensor, "is_cuda", property(lambda self: True))
    monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: False)
    assert graph_fit_applies(coords, None, None)
    assert not graph_fit_applies(coords, None, lambda step, z: False)   # an early stop needs every step
    assert not graph_fit_applies(torch.zeros(2, 40_000, 3), None, None)   # 80,000 points a step
    assert graph_fit_applies(torch.zeros(2, 40_000, 3), 2048, None)
    assert graph_fit_applies(torch.zeros(1, 32_768, 3), None, None)      # 12 x 13 by the thesis's fit: 26,364
    assert not graph_fit_applies(torch.zeros(1, 32_769, 3), None, None)
    monkeypatch.setenv(graphs.ENVIRONMENT_SWITCH, "0")
    assert not graph_fit_applies(coords, None, None)


def test_the_graph_key_changes_with_shapes_steps_and_replaced_weights():
    decoder = OccupancyDecoder()
    coords, labels, _ = _observation(0)
    kind, draws = stacked_draws(_point_subsets(600, 128, 0), STEPS)
    key = graph_key(decoder, coords, labels, kind, draws, STEPS, LR, DEFAULT_LATENT_REG)
    assert key == graph_key(decoder, coords.clone(), labels, kind, draws, STEPS, LR, DEFAULT_LATENT_REG)
    assert key != graph_key(decoder, coords[:, :500], labels, kind, draws, STEPS, LR, DEFAULT_LATENT_REG)
    assert key != graph_key(decoder, coords, labels, kind, draws, STEPS + 1, LR, DEFAULT_LATENT_REG)
    decoder.out.weight = torch.nn.Parameter(decoder.out.weight.detach().clone())
    assert key != graph_key(decoder, coords, labels, kind, draws, STEPS, LR, DEFAULT_LATENT_REG)
