"""The estimate of a run's cost, shown before it starts, and the refusal above the limits."""
import pytest
import torch

from PatchSamplerLib.cli.main import main
from PatchSamplerLib.method import cost
from PatchSamplerLib.method.cost import check_affordable, estimate_fit, estimate_run

CPU = torch.device("cpu")


@pytest.fixture
def known_throughput(monkeypatch):
    """50 GFLOP/s and 16 GB of RAM, whatever this machine measures."""
    monkeypatch.setattr(cost, "matmul_gflops", lambda device: 50.0)
    monkeypatch.setattr(cost, "device_memory_mb", lambda device: 16 * 1024.0)


def test_the_estimate_grows_with_n_k_cubed_and_t(known_throughput):
    small, large = estimate_run(8, 11, 100, CPU), estimate_run(64, 31, 100, CPU)
    assert large.fit_seconds / small.fit_seconds == pytest.approx(64 * 31 ** 3 / (8 * 11 ** 3))
    assert estimate_run(8, 11, 200, CPU).fit_seconds == pytest.approx(2 * small.fit_seconds)
    # the fit's floor: 4 x (multiply-adds per point) x N K^3 x T at 50 GFLOP/s, times 1.6
    macs = cost.decoder_macs_per_point(cost.OccupancyDecoder())
    assert large.fit_seconds == pytest.approx(1.6 * 4 * macs * 64 * 31 ** 3 * 100 / 50e9)
    assert large.peak_mb == pytest.approx(512 + 64 * 31 ** 3 * (4800 + 40) / 2 ** 20)   # 9.3 GB: measured 7-9 GB
    assert small.excess() is None and "fit limit is 10 min" in large.excess()


def test_a_run_over_the_limits_is_refused_unless_forced(known_throughput):
    with pytest.raises(ValueError, match="--force"):
        check_affordable(estimate_run(64, 31, 100, CPU))
    check_affordable(estimate_run(64, 31, 100, CPU), force=True)
    memory_bound = estimate_run(64, 31, 1, CPU)           # one step: fast, but 9 GB of a 16 GB machine
    assert "memory limit is 8.0 GB" in memory_bound.excess()


def test_the_run_command_shows_the_estimate_and_refuses_before_writing(known_throughput, tmp_path, capsys):
    from PatchSamplerLib.data.synthetic import make_shape
    from PatchSamplerLib.volume import write_volume
    path = tmp_path / "v.nii.gz"
    write_volume(path, make_shape("vertebra", 1, 0, 0.5))
    out = tmp_path / "out"
    assert main(["run", "--input", str(path), "--n", "64", "--k", "31", "--prior", "vertebra", "--device", "cpu",
                 "--fit", "adam", "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert "N=64 K=31 T=100: about" in captured.out and "--force" in captured.err
    assert not out.exists()


def test_the_fast_fit_costs_the_same_for_any_patches_over_its_budget(known_throughput):
    """Each step of the fast fit takes at most 2,048 patch voxels: 64 x 31^3 is estimated as 12 x 13^3
    (time) and far under the limits; only the patch table grows (40 bytes a voxel)."""
    from PatchSamplerLib.method.fitting import FAST_MAX_POINTS
    small, large = (estimate_run(n, k, 100, CPU, points_per_step=FAST_MAX_POINTS) for n, k in ((12, 13), (64, 31)))
    assert large.fit_seconds == small.fit_seconds
    assert large.peak_mb - small.peak_mb == pytest.approx((64 * 31 ** 3 - 12 * 13 ** 3) * 40 / 2 ** 20)
    assert large.excess() is None
    check_affordable(large)


def test_the_ceiling_fit_is_estimated_from_the_voxels_drawn_per_step(known_throughput):
    """The representation ceiling fits to every voxel of the grid: its time follows the voxels
    drawn per step (T x 16,384), its memory holds the whole grid; as a run of as many patch voxels."""
    from PatchSamplerLib.cli.priors import ceiling_estimate_line
    from PatchSamplerLib.volume import BinaryVolume
    grid = BinaryVolume(torch.zeros(64, 66, 56, dtype=torch.bool).numpy())
    voxels = 64 * 66 * 56
    drawn, every = estimate_fit(voxels, 300, CPU, points_per_step=16384), estimate_fit(voxels, 300, CPU)
    assert every.fit_seconds / drawn.fit_seconds == pytest.approx(voxels / 16384)
    assert drawn.peak_mb < every.peak_mb
    assert estimate_fit(8 * 11 ** 3, 100, CPU) == estimate_run(8, 11, 100, CPU)
    line = ceiling_estimate_line(grid, 300, 16384, CPU)
    assert line == f"ceiling fit: 300 steps on 16,384 of 236,544 voxels a step: {drawn.describe()} (estimated)"
    assert "on all of 236,544" in ceiling_estimate_line(grid, 300, None, CPU)
