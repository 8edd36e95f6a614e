"""Issue #21 item 7: prior training holds at most `step_memory_gb` of autograd graph per backward
pass (the paper's batch in one pass peaked at 14.5 GB, `results/memory/`), with the same
gradient, and says what it expects to peak at."""
from __future__ import annotations

import contextlib
import io

import pytest
import torch

from PatchSamplerLib.data.synthetic import make_shapes
from PatchSamplerLib.method.inr import OccupancyDecoder
from PatchSamplerLib.method.losses import latent_regulariser, occupancy_loss
from PatchSamplerLib.training import budget
from PatchSamplerLib.training.prior import PriorConfig, PriorTrainer


def test_points_per_pass_follows_the_budget():
    assert budget.points_per_pass(3.0) == int(3e9 // budget.BYTES_PER_POINT)
    assert budget.points_per_pass(6.0) == 2 * budget.points_per_pass(3.0)
    assert budget.points_per_pass(1e-9) == budget.MIN_PASS_POINTS
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="> 0 GB"):
            budget.points_per_pass(bad)


@pytest.mark.parametrize("batch, points, limit, groups, largest", [
    (8, 64 ** 3, 428_571, [1] * 8, 64 ** 3),            # the default: one paper-sized shape per pass
    (8, 64 ** 3, 10 ** 9, [8], 8 * 64 ** 3),             # a budget above the batch: one pass, as before
    (8, 1000, 3000, [3, 3, 2], 3000),                    # whole shapes grouped
    (3, 5000, 2048, [1, 1, 1], 2048),                    # shapes over the limit: chunked, 2048 points at most
])
def test_passes_hold_at_most_the_limit(batch, points, limit, groups, largest):
    found = budget.shape_groups(batch, points, limit)
    assert [len(g) for g in found] == groups and [i for g in found for i in g] == list(range(batch))
    assert budget.largest_pass(batch, points, limit) == largest <= max(limit, points if points <= limit else 0)


def test_expected_peak_arithmetic():
    peak = budget.expected_peak_gb(pass_points=100_000, table_bytes=2 * 10 ** 9, batch_points=1_000_000)
    assert peak == pytest.approx(budget.PROCESS_GB + 2 + 100_000 * budget.BYTES_PER_POINT / 1e9
                                 + 1_000_000 * budget.BATCH_BYTES_PER_POINT / 1e9)


def test_the_default_fits_a_16_gb_laptop_and_the_old_default_did_not():
    cfg = PriorConfig()
    step = cfg.batch_size * cfg.points_per_shape
    tables = 440 * 1.7e6                                 # 220 vertebrae + 220 augmented copies (results/memory)
    new = budget.expected_peak_gb(budget.largest_pass(cfg.batch_size, cfg.points_per_shape,
                                                      budget.points_per_pass(cfg.step_memory_gb)), tables, step)
    old = budget.expected_peak_gb(step, tables, step)    # the whole batch in one pass: measured 14.5 GB
    assert new < 4.0 and old > 14.0


def _problem(dtype=torch.float64):
    torch.manual_seed(0)
    decoder = OccupancyDecoder().to(dtype)
    latents = torch.nn.Parameter(torch.randn(5, decoder.latent_dim, dtype=dtype) * 0.1)
    ids = torch.tensor([3, 0, 4])
    coords = torch.randn(3, 1500, 3, dtype=dtype) * 20
    labels = (torch.rand(3, 1500) > 0.6).to(dtype)
    return decoder, latents, ids, coords, labels


def _gradients(decoder, latents):
    grads = [p.grad.clone() for p in decoder.parameters()] + [latents.grad.clone()]
    decoder.zero_grad(set_to_none=True)
    latents.grad = None
    return grads


@pytest.mark.parametrize("limit", [4500, 3000, 1500, 1024, 700])      # one pass, groups, one shape, chunks
def test_the_gradient_in_passes_is_the_whole_batch_gradient(limit):
    decoder, latents, ids, coords, labels = _problem()
    loss = occupancy_loss(decoder(coords, latents[ids]), labels) + 0.01 * latent_regulariser(latents[ids])
    loss.backward()
    expected = _gradients(decoder, latents)
    value = budget.backward_in_passes(decoder, latents, ids, coords, labels, limit,
                                      extra=0.01 * latent_regulariser(latents[ids]))
    assert value == pytest.approx(float(loss.detach()), rel=1e-12)
    for got, want in zip(_gradients(decoder, latents), expected):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


def _trainer(tmp_path, name, **changes):
    shapes = make_shapes("kidney", 6, seed=3, scale=0.2)
    cfg = PriorConfig(epochs=2, batch_size=4, points_per_shape=1500, surface_fraction=0.5, val_every=2, val_t=2,
                      val_n=2, val_k=3, **changes)
    lines = []
    return PriorTrainer(shapes[:4], shapes[4:], tmp_path / name, cfg, log=lines.append), lines


def test_no_backward_pass_holds_more_than_the_budget(tmp_path):
    trainer, lines = _trainer(tmp_path, "small", step_memory_gb=1e-9)     # 1024 points per pass
    assert trainer.pass_points == budget.MIN_PASS_POINTS
    seen, forward = [], trainer.decoder.forward_features

    def recording(coords, feats):
        if torch.is_grad_enabled():
            seen.append(coords.shape[0] * coords.shape[1])
        return forward(coords, feats)
    trainer.decoder.forward_features = recording
    trainer.train_step(torch.arange(4))
    assert seen and max(seen) <= budget.MIN_PASS_POINTS and sum(seen) == 4 * 1500
    assert lines[0].startswith("expected peak memory ~") and "--step-memory-gb 1e-09" in lines[0]


def test_the_tables_count_every_stored_array_once(tmp_path):
    trainer, _ = _trainer(tmp_path, "tables")
    masks = sum(v.mask.nbytes for v in trainer.train_volumes + trainer.val_volumes)
    bands = sum(s.band.numel() * s.band.element_size() for s in trainer.shapes)
    assert trainer.table_bytes() == masks + bands                  # the flat masks are views of the volumes'
    assert trainer.expected_peak_gb() == pytest.approx(budget.expected_peak_gb(
        4 * 1500, masks + bands, 4 * 1500))


def test_training_in_passes_trains_like_one_pass(tmp_path):
    runs = {}
    for name, gb in (("one", 10.0), ("chunked", 1e-9)):
        trainer, _ = _trainer(tmp_path, name, step_memory_gb=gb)
        with contextlib.redirect_stdout(io.StringIO()):
            trainer.run()
        runs[name] = trainer
    one, chunked = runs["one"], runs["chunked"]
    assert [r["loss"] for r in chunked.history] == pytest.approx([r["loss"] for r in one.history], rel=1e-4)
    for a, b in zip(one.decoder.parameters(), chunked.decoder.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4)
