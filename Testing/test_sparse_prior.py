"""Prior training from sparse slices only: what the trainer may see, the held-out validation
slices, and the `train-prior --sparse-step` command."""
import contextlib
import io
import json

import numpy as np
import pytest
import torch

from PatchSamplerLib.cli.main import main
from PatchSamplerLib.data.synthetic import make_shapes
from PatchSamplerLib.method.inr import ShapePrior
from PatchSamplerLib.training.points import sample_points
from PatchSamplerLib.training.prior import PriorConfig
from PatchSamplerLib.training.sparse_prior import in_plane_band, sparse_training_set, training_slices


@pytest.fixture(scope="module")
def shapes():
    return make_shapes("kidney", 6, seed=5, scale=0.25)


def _frame_index(coords: torch.Tensor, shape) -> np.ndarray:
    """(M, 3) mm in the shape's frame -> (M, 3) int voxel index."""
    return np.rint((coords.numpy() + shape.centre_mm) / np.array(shape.spacing) - 0.5).astype(int)


def test_training_points_come_from_the_kept_slices_only(shapes):
    cfg = PriorConfig(sparse_step=4, sparse_axis=1, sparse_val_share=0.34, seed=2)
    train, held = sparse_training_set(shapes, cfg, band_mm=2.0)
    assert len(held) == 2 and len(train) == len(shapes)
    val_ids = {h.index for h in held}
    for i, (vol, shape) in enumerate(zip(shapes, train)):
        kept = training_slices(vol, cfg, i).positions
        assert np.array_equal(kept, training_slices(vol, cfg, i).positions)     # fixed for the whole training
        allowed = kept[::2] if i in val_ids else kept
        coords, labels = sample_points(shape, 4000, 0.5, torch.Generator().manual_seed(i))
        idx = _frame_index(coords, shape)
        assert set(np.unique(idx[:, 1])) <= set(allowed.tolist())
        assert np.array_equal(labels.numpy() > 0.5, vol.mask[tuple(idx.T)])   # labels are the true ones there
    for h in held:
        idx = _frame_index(h.coords, train[h.index])
        kept = training_slices(shapes[h.index], cfg, h.index).positions
        assert set(np.unique(idx[:, 1])) == set(kept[1::2].tolist())            # the other half, never trained on
        assert np.array_equal(h.labels.numpy() > 0.5, shapes[h.index].mask[tuple(idx.T)])
    starts = {int(training_slices(v, cfg, i).positions[0]) for i, v in enumerate(shapes)}
    assert len(starts) > 1                                                       # random start per case


def test_in_plane_band_stays_in_the_slice():
    labels = np.zeros((9, 20, 20), bool)
    labels[4, 5:15, 5:15] = True
    band = in_plane_band(labels, 0, 2.0, (1.0, 1.0, 1.0))
    assert band[4].any() and not band[:4].any() and not band[5:].any()
    assert band[4, 5, 5] and band[4, 3, 10] and not band[4, 10, 10]             # contour yes, deep inside no


def test_train_prior_sparse_cli_records_settings_and_validates_on_held_out_slices(tmp_path):
    out = tmp_path / "run"
    args = ["train-prior", "--family", "kidney", "--count", "6", "--val-count", "0", "--scale", "0.2",
            "--epochs", "2", "--batch-size", "3", "--points-per-shape", "128", "--val-every", "1",
            "--sparse-step", "4", "--sparse-axis", "2", "--thick", "--sparse-val-share", "0.3", "--out", str(out)]
    with contextlib.redirect_stdout(io.StringIO()) as log:
        assert main(args) == 0
    assert "hold out half their slices" in log.getvalue()
    meta = ShapePrior.load(out / "prior.pt").metadata
    assert (meta["config"]["sparse_step"], meta["config"]["sparse_axis"], meta["config"]["thick"]) == (4, 2, True)
    rows = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert all(0.0 <= r["val_dice"] <= 1.0 and 0.0 <= r["train_dice"] <= 1.0 for r in rows)


@pytest.mark.parametrize("family", ["vertebra", "kidney"])
def test_bundled_sparse_priors_saw_every_8th_x_slice_only_and_share_the_full_priors_frame(family):
    sparse, full = ShapePrior.load(f"{family}_sparse8_x"), ShapePrior.load(family)
    cfg = sparse.metadata["config"]
    assert (cfg["sparse_step"], cfg["sparse_axis"], cfg["thick"]) == (8, 0, False)
    assert sparse.metadata["spacing_mm"] == full.metadata["spacing_mm"]
    assert sparse.metadata["extent_mm"] == full.metadata["extent_mm"]


def test_bundled_sparse_kidney_prior_fills_the_gaps_better_than_trilinear_interpolation():
    from PatchSamplerLib.data.synthetic import make_shape
    from PatchSamplerLib.method.metrics import dice
    from PatchSamplerLib.sparse.slice_baselines import interpolate_slices
    from PatchSamplerLib.sparse.inputs import every_nth_slice
    from PatchSamplerLib.sparse.reconstruction import reconstruct_sparse
    torch.manual_seed(0)
    vol = make_shape("kidney", 1, 0, 1.0)
    sparse = every_nth_slice(vol.mask, 8, 0, seed=0)
    recon = reconstruct_sparse(vol, sparse, ShapePrior.load("kidney_sparse8_x"), steps=100).reconstruction
    assert dice(recon[sparse.known], sparse.labels[sparse.known]) > 0.95      # it fits the given slices
    assert dice(recon, vol.mask) > max(0.95, dice(interpolate_slices(sparse, "linear"), vol.mask) + 0.02)
