"""The representation ceiling (`ceiling`) and the mean shape (`mean-shape`) of a prior (issue 17,
items 4 and 5): the ceiling bounds every patch reconstruction from above, the mean shape is the
decoded mean training latent, and both commands fail cleanly on bad input."""
import subprocess
import sys

import numpy as np
import pytest
import torch

from PatchSamplerLib.data.synthetic import make_shape
from PatchSamplerLib.method.inr import ShapePrior
from PatchSamplerLib.pipeline import RunConfig, reconstruct
from PatchSamplerLib.sparse.ceiling import mean_latent, mean_shape, representation_ceiling
from PatchSamplerLib.volume import BinaryVolume, read_labelmap, write_volume
from tiny_prior import tiny_prior_path


@pytest.fixture(scope="module")
def kidney():
    return make_shape("kidney", 5, 300, 0.5)            # a held-out family shape at 3 mm


@pytest.fixture(scope="module")
def prior():
    return ShapePrior.load("kidney", device="cpu")


def test_the_ceiling_is_above_every_patch_reconstruction(kidney, prior):
    ceiling = representation_ceiling(kidney, prior, steps=100, points_per_step=4096, device="cpu")
    patches = [reconstruct(kidney, RunConfig(n=4, k=5, t=100, seed=s, device="cpu"), prior).metrics["dice"]
               for s in (0, 1)]
    assert ceiling.metrics["dice"] > 0.9                 # the prior's own family
    assert ceiling.metrics["dice"] >= max(patches)
    assert ceiling.metrics["hd95_mm"] <= 2 * 3.0         # within two voxels


def test_the_ceiling_is_scored_on_the_input_grid_in_any_storage_order(kidney, prior):
    corner = np.array([kidney.shape[0] - 1, 0, kidney.shape[2] - 1]) * kidney.spacing   # voxel 0 after the flips
    flipped = BinaryVolume(kidney.mask[::-1, :, ::-1].copy(), kidney.spacing, kidney.origin + corner,
                           np.diag([-1.0, 1.0, -1.0]))
    a = representation_ceiling(kidney, prior, steps=40, points_per_step=4096, device="cpu")
    b = representation_ceiling(flipped, prior, steps=40, points_per_step=4096, device="cpu")
    assert b.reconstruction.shape == flipped.shape
    assert abs(a.metrics["dice"] - b.metrics["dice"]) < 1e-6
    assert np.array_equal(a.reconstruction[::-1, :, ::-1], b.reconstruction)


def test_mean_latent_falls_back_to_zero_with_a_note(prior):
    latent, what = mean_latent(prior)
    if "mean_latent" in prior.metadata:
        pytest.skip("the bundled prior records its mean latent")
    assert torch.count_nonzero(latent) == 0 and "zero latent" in what


def test_mean_shape_decodes_the_recorded_latent_at_any_spacing(prior, kidney):
    fitted = representation_ceiling(kidney, prior, steps=40, points_per_step=4096, device="cpu")
    recorded = ShapePrior(prior.decoder, prior.extent_mm, prior.spacing_mm,
                          dict(prior.metadata, mean_latent=fitted.latent.tolist()))
    assert mean_latent(recorded)[1] == "the mean training latent"
    coarse, _ = mean_shape(recorded, 3.0)
    fine, _ = mean_shape(recorded, 1.5)
    assert coarse.shape == tuple(int(round(e / 3.0)) for e in prior.extent_mm)
    assert fine.shape == tuple(int(round(e / 1.5)) for e in prior.extent_mm)
    # the same shape at both spacings: volumes agree within 5 %, and it is the fitted kidney's size
    ml = [v.voxel_count * np.prod(v.spacing) / 1000 for v in (coarse, fine)]
    assert abs(ml[0] - ml[1]) / ml[1] < 0.05
    kidney_ml = kidney.voxel_count * np.prod(kidney.spacing) / 1000
    assert abs(ml[1] - kidney_ml) / kidney_ml < 0.15


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "PatchSamplerLib", *args], capture_output=True, text=True)


def test_mean_shape_command_writes_a_labelmap(tmp_path):
    out = tmp_path / "mean.nii.gz"
    proc = _cli("mean-shape", "--prior", "kidney", "--spacing", "3", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    volume = read_labelmap(str(out))
    assert volume.voxel_count > 0 and volume.spacing == (3.0, 3.0, 3.0)
    assert proc.stdout.startswith("mean shape of kidney (") and f"{volume.voxel_count:,} foreground" in proc.stdout
    assert " x ".join(map(str, volume.shape)) + " voxels at 3 mm" in proc.stdout and str(out.resolve()) in proc.stdout
    default = _cli("mean-shape", "--prior", str(tiny_prior_path()), "--out", str(tmp_path / "tiny.nii.gz"))
    assert default.returncode == 0, default.stderr                  # no --spacing: the prior's own spacing
    spacing = min(ShapePrior.load(tiny_prior_path()).spacing_mm)
    assert read_labelmap(str(tmp_path / "tiny.nii.gz")).spacing == (spacing,) * 3 and f"at {spacing:g} mm" in default.stdout


def test_ceiling_command_reports_dice_and_refuses_bad_input(tmp_path, kidney):
    path = tmp_path / "kidney.nii.gz"
    write_volume(str(path), kidney)
    ok = _cli("ceiling", "--prior", "kidney", "--input", str(path), "--steps", "20", "--points-per-step", "2048", "--device", "cpu",
              "--out", str(tmp_path / "out"))
    assert ok.returncode == 0, ok.stderr
    assert "Dice" in ok.stdout and (tmp_path / "out" / "metrics.json").exists()
    assert ok.stdout.startswith("ceiling fit: 20 steps on 2,048 of ")          # the estimate comes first
    missing = _cli("ceiling", "--prior", "kidney", "--input", str(tmp_path / "nope.nii.gz"))
    assert missing.returncode == 2 and "nope.nii.gz" in missing.stderr
    bad = _cli("mean-shape", "--prior", "kidney", "--spacing", "0", "--out", str(tmp_path / "m.nii.gz"))
    assert bad.returncode == 2 and "spacing" in bad.stderr and not (tmp_path / "m.nii.gz").exists()
