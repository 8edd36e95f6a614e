"""CUDA paths against the CPU: skipped without a GPU (CI has none; run on a GPU machine with
`python -m pytest -q Testing/test_cuda.py`). Results of such runs: results/gpu/."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from PatchSamplerLib.data.synthetic import make_shapes
from PatchSamplerLib.method.inr import ShapePrior
from PatchSamplerLib.pipeline import reconstruct
from PatchSamplerLib.training.sampler import SamplerTrainer
from tiny_prior import TINY_SCALE, tiny_prior_path, tiny_sampler_config

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


@pytest.fixture(scope="module")
def shapes():
    return make_shapes("vertebra", 5, seed=0, scale=TINY_SCALE)


def _sampler_gradients(shapes, device, mode, tmp_path):
    """Sampler parameter gradients of one batch of 3 shapes, the losses computed on `device`."""
    prior = ShapePrior.load(tiny_prior_path(), device=device)
    trainer = SamplerTrainer(shapes[:3], [], prior, tmp_path / device, tiny_sampler_config(mode=mode, batch_size=3))
    rec, l_s = trainer.batch_gradients([0, 1, 2])
    return rec, [p.grad.clone() for p in trainer.model.sampler.parameters()]


@pytest.mark.parametrize("mode", ["faithful", "fast"])
def test_sampler_training_gradients_on_cuda_equal_the_cpu_ones(shapes, mode, tmp_path):
    rec_cpu, cpu = _sampler_gradients(shapes, "cpu", mode, tmp_path)
    rec_gpu, gpu = _sampler_gradients(shapes, "cuda", mode, tmp_path)
    assert rec_gpu == pytest.approx(rec_cpu, rel=1e-4)
    assert all(g.device.type == "cpu" for g in gpu)           # the sampler stays on the CPU
    for a, b in zip(cpu, gpu):
        torch.testing.assert_close(b, a, rtol=2e-3, atol=1e-6)


def test_a_training_run_on_cuda_validates_like_the_cpu_and_records_the_device(shapes, tmp_path):
    scores = {}
    for device in ("cpu", "cuda"):
        prior = ShapePrior.load(tiny_prior_path(), device=device)
        cfg = tiny_sampler_config(epochs=1, anchor="fps")
        trainer = SamplerTrainer(shapes[:4], shapes[4:], prior, tmp_path / device, cfg, log=lambda *a: None)
        model = trainer.run()
        scores[device] = [row["val_dice"] for row in trainer.history]
        assert model.metadata["device"].startswith(device)
    assert scores["cuda"][0] == pytest.approx(scores["cpu"][0], abs=1e-3)   # the FPS-anchored start


def test_reconstruction_on_cuda_matches_the_cpu():
    prior_cpu, prior_gpu = ShapePrior.load("vertebra"), ShapePrior.load("vertebra", device="cuda")
    vol = make_shapes("vertebra", 1, seed=1, scale=0.5)[0]
    cpu = reconstruct(vol, n=4, k=9, t=100, prior=prior_cpu, device="cpu")
    gpu = reconstruct(vol, n=4, k=9, t=100, prior=prior_gpu, device="cuda")
    np.testing.assert_allclose(gpu.centres, cpu.centres)
    assert gpu.metrics["dice"] == pytest.approx(cpu.metrics["dice"], abs=2e-3)


@pytest.mark.parametrize("precision", ["tf32", "bf16"])
def test_reduced_precision_reconstructions_run_and_stay_close_to_fp32(precision):
    prior = ShapePrior.load("kidney", device="cuda")
    vol = make_shapes("kidney", 1, seed=1)[0]
    fp32 = reconstruct(vol, n=8, k=9, t=100, prior=prior, device="cuda")
    reduced = reconstruct(vol, n=8, k=9, t=100, prior=prior, device="cuda", precision=precision)
    assert reduced.reconstruction.shape == fp32.reconstruction.shape
    assert reduced.metrics["dice"] == pytest.approx(fp32.metrics["dice"], abs=0.01)


def _fit_on_cuda(decoder, seed, monkeypatch, graphs_on: bool, kind: str, points: int = 4 * 9 ** 3):
    """A fast-fit-like latent fit of one observation on CUDA, with or without CUDA graphs."""
    from PatchSamplerLib.method.inr import fit_latent
    monkeypatch.setenv("PATCHSAMPLER_CUDA_GRAPHS", "1" if graphs_on else "0")
    g = torch.Generator().manual_seed(seed)
    coords = (torch.rand(1, points, 3, generator=g) * 60 - 30).cuda()
    labels = (coords.norm(dim=-1) < 18 + seed).float()
    sampling = torch.where(labels > 0, 4.0, 1.0) if kind == "weighted" else None
    points = None if kind == "all" else 384
    return fit_latent(decoder, coords, labels, steps=100, seed=seed, points_per_step=points, sampling=sampling)


@pytest.mark.parametrize("kind", ["all", "shared", "weighted"])
def test_the_cuda_graph_fit_equals_the_eager_fit_and_is_captured_once(kind, monkeypatch):
    from PatchSamplerLib.method.graphs import captured_graphs
    decoder = ShapePrior.load("kidney", device="cuda").decoder
    for seed in (0, 1):                                    # the second fit replays the first one's graph
        graphed = _fit_on_cuda(decoder, seed, monkeypatch, True, kind)
        eager = _fit_on_cuda(decoder, seed, monkeypatch, False, kind)
        torch.testing.assert_close(graphed, eager, rtol=1e-4, atol=1e-5)
        assert captured_graphs(decoder) == 1


def test_reconstructions_with_cuda_graphs_equal_those_without(monkeypatch):
    from PatchSamplerLib.method.graphs import captured_graphs
    prior = ShapePrior.load("kidney", device="cuda")
    vols = make_shapes("kidney", 2, seed=1)
    for vol in vols:
        monkeypatch.setenv("PATCHSAMPLER_CUDA_GRAPHS", "1")
        graphed = reconstruct(vol, n=8, k=11, t=100, prior=prior, device="cuda")
        monkeypatch.setenv("PATCHSAMPLER_CUDA_GRAPHS", "0")
        eager = reconstruct(vol, n=8, k=11, t=100, prior=prior, device="cuda")
        assert graphed.metrics["dice"] == pytest.approx(eager.metrics["dice"], abs=1e-4)
    assert captured_graphs(prior.decoder) == 1            # same N, K, T: one graph for both shapes


def test_graphs_sharing_one_memory_pool_replay_correctly_in_any_order(monkeypatch):
    """Two fit shapes (two graphs in the decoder's one pool), replayed A, B, A, B: each equals the eager fit."""
    from PatchSamplerLib.method.graphs import captured_graphs
    decoder = ShapePrior.load("vertebra", device="cuda").decoder
    for seed, points in ((0, 8 * 11 ** 3), (1, 4 * 9 ** 3), (2, 8 * 11 ** 3), (3, 4 * 9 ** 3)):
        graphed = _fit_on_cuda(decoder, seed, monkeypatch, True, "all", points)
        eager = _fit_on_cuda(decoder, seed, monkeypatch, False, "all", points)
        torch.testing.assert_close(graphed, eager, rtol=1e-4, atol=1e-5)
    assert captured_graphs(decoder) == 2
