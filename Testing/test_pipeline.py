"""The end-to-end library call `reconstruct` with a tiny prior trained in the session."""

import numpy as np
import pytest
import torch

from PatchSamplerLib.method.frame import frame_box
from PatchSamplerLib.method.inr import ShapePrior
from PatchSamplerLib.method.metrics import all_metrics, dice
from PatchSamplerLib.pipeline import reconstruct
from PatchSamplerLib.volume import BinaryVolume, VolumeError
from tiny_prior import embedded_in_a_large_flipped_grid, held_out_vertebra, tiny_prior_path


@pytest.fixture(scope="module")
def prior():
    return ShapePrior.load(tiny_prior_path())


def test_unseen_shape_is_reconstructed_and_more_patch_voxels_help(prior):
    vol = held_out_vertebra(0)
    rich = reconstruct(vol, n=8, k=5, t=50, prior=prior, fit_lr=3e-2)
    poor = reconstruct(vol, n=1, k=1, t=50, prior=prior, fit_lr=3e-2)
    assert rich.metrics["dice"] > 0.7
    assert rich.metrics["dice"] > poor.metrics["dice"] + 0.1
    assert rich.metrics == pytest.approx(all_metrics(rich.reconstruction, vol.mask, vol.spacing))
    assert set(rich.timings) >= {"sampling", "extraction", "latent_fit", "decode", "metrics", "total"}


def test_result_arrays_are_consistent(prior):
    vol = held_out_vertebra(1)
    res = reconstruct(vol, n=4, k=3, t=10, prior=prior, sampler="random", seed=3)
    assert res.centres.shape == (4, 3) and res.patch_coords.shape == (4, 27, 3)
    assert all(vol.mask[tuple(c.astype(int))] for c in res.centres)      # voxel-aligned, occupied
    assert res.reconstruction.shape == vol.shape
    assert np.array_equal(res.errors == 1, res.reconstruction & vol.mask)
    assert np.array_equal(res.errors == 2, res.reconstruction & ~vol.mask)
    assert np.array_equal(res.errors == 3, ~res.reconstruction & vol.mask)
    again = reconstruct(vol, n=4, k=3, t=10, prior=prior, sampler="random", seed=3)
    assert np.array_equal(res.reconstruction, again.reconstruction)


def test_shape_inside_a_large_scan_gives_the_same_reconstruction(prior):
    """A vertebra embedded in a much larger labelmap: only the prior's frame is decoded and the
    result equals the cropped case voxel for voxel."""
    vol = held_out_vertebra(2)
    big = np.zeros((90, 80, 60), bool)
    at = (40, 30, 25)
    big[at[0]:at[0] + vol.shape[0], at[1]:at[1] + vol.shape[1], at[2]:at[2] + vol.shape[2]] = vol.mask
    large = BinaryVolume(big, vol.spacing)
    small_res = reconstruct(vol, n=6, k=5, t=20, prior=prior)
    large_res = reconstruct(large, n=6, k=5, t=20, prior=prior)
    lo, hi = large_res.settings["decoded_box_index"]
    assert np.all((np.array(hi) - np.array(lo)) * 4.0 <= np.array(prior.extent_mm))  # voxel centres in the frame
    assert not large_res.reconstruction[:lo[0]].any() and not large_res.reconstruction[hi[0] + 1:].any()
    embedded = np.zeros_like(big)
    embedded[at[0]:at[0] + vol.shape[0], at[1]:at[1] + vol.shape[1], at[2]:at[2] + vol.shape[2]] = \
        small_res.reconstruction
    # voxels the small grid could not hold differ at most at the crop border
    assert dice(large_res.reconstruction, embedded) > 0.99
    assert large_res.metrics["dice"] == pytest.approx(small_res.metrics["dice"], abs=0.01)


@pytest.mark.parametrize("sampler", ["fps", "random", "given", "learned"])
def test_a_run_on_its_work_box_equals_a_run_on_the_whole_grid(prior, sampler):
    """`reconstruct` runs on the part of the grid the prior's frame can reach (`work_box`) and
    puts the result back: voxel for voxel, index for index and record for record the run on the
    whole grid (the path before the work box), for a shape in a large grid stored permuted and
    flipped."""
    from PatchSamplerLib.orientation import to_anatomical
    from PatchSamplerLib.method.frame import work_box
    from PatchSamplerLib.pipeline import RunConfig, reconstruct_anatomical, result_on_input_grid
    from PatchSamplerLib.progress import Monitor
    big = embedded_in_a_large_flipped_grid(held_out_vertebra(2))
    lo, hi = work_box(big.mask, big.spacing, prior.extent_mm, 5)
    assert np.prod(hi - lo) < 0.5 * big.mask.size and lo.any()        # the box is a real crop here
    centres = reconstruct(big, n=6, k=5, t=10, prior=prior, seed=1).centres if sampler == "given" else None
    config = RunConfig(n=6, k=5, t=10, sampler="fps" if sampler == "given" else sampler, seed=1)
    if sampler == "learned":
        from tiny_prior import tiny_sampler_path
        config = RunConfig(n=2, k=3, t=5, sampler="learned", sampler_model=str(tiny_sampler_path()))
    boxed = reconstruct(big, config, prior, centres=centres)
    anatomical, orient = to_anatomical(big)
    given = None if centres is None else (orient.index_to_anatomical(centres), None)
    whole = reconstruct_anatomical(anatomical, config, prior, given, None, Monitor())
    whole.settings["anatomical_frame"] = orient.record()
    whole = result_on_input_grid(whole, orient)
    assert np.array_equal(boxed.reconstruction, whole.reconstruction) and boxed.reconstruction.any()
    assert np.array_equal(boxed.errors, whole.errors)
    # a learned sampler's soft projection averages cloud points in normalised coordinates, whose
    # float32 rounding depends on where the grid starts: its centres agree to 1e-4 voxel
    tol = 1e-4 if sampler == "learned" else 0.0
    if sampler == "learned":
        assert np.allclose(boxed.generated, whole.generated, rtol=0, atol=tol)
    assert np.allclose(boxed.centres, whole.centres, rtol=0, atol=tol)
    assert np.allclose(boxed.patch_coords, whole.patch_coords, rtol=0, atol=tol)
    assert np.allclose(boxed.latent, whole.latent, rtol=0, atol=tol)
    assert boxed.metrics == pytest.approx(whole.metrics, rel=0, abs=tol)
    for key in ("decoded_box_index", "anatomical_frame", "decoder_points"):
        assert boxed.settings[key] == whole.settings[key], key
    assert boxed.settings["frame_centre_mm"] == pytest.approx(whole.settings["frame_centre_mm"], abs=1e-9)


def test_frame_box_is_centred_on_the_shape():
    lo, hi = frame_box(np.array([100.0, 100.0, 100.0]), (40.0, 40.0, 40.0), (2.0, 2.0, 2.0), (100, 100, 100))
    assert lo.tolist() == [40, 40, 40] and hi.tolist() == [59, 59, 59]   # 20 voxels of 2 mm = 40 mm
    lo, hi = frame_box(np.array([10.0, 100.0, 190.0]), (40.0, 40.0, 40.0), (2.0, 2.0, 2.0), (100, 100, 100))
    assert lo.tolist() == [0, 40, 85] and hi.tolist() == [14, 59, 99]     # clipped to the grid
    lo, hi = frame_box(np.array([10.0, 100.0, 190.0]), (40.0, 40.0, 40.0), (2.0, 2.0, 2.0))
    assert lo.tolist() == [-5, 40, 85] and hi.tolist() == [14, 59, 104]   # unclipped: the box to pad a grid to


def test_shape_larger_than_the_frame_warns(prior):
    small_frame = ShapePrior(prior.decoder, (40.0, 40.0, 40.0), prior.spacing_mm)
    with pytest.warns(UserWarning, match="larger than the prior's frame"):
        res = reconstruct(held_out_vertebra(0), n=2, k=3, t=2, prior=small_frame)
    assert res.warnings and not res.reconstruction[:2].any()


def test_given_centres_are_used(prior):
    vol = held_out_vertebra(0)
    centres = np.argwhere(vol.mask)[:3].astype(np.float32)
    res = reconstruct(vol, n=3, k=3, t=2, prior=prior, centres=centres, sampler=None)
    assert np.array_equal(res.centres, centres) and res.settings["sampler"] == "given"
    assert reconstruct(vol, n=3, k=3, t=2, prior=prior, centres=centres, sampler="fps").settings["sampler"] == "fps"


@pytest.mark.parametrize("change, message", [
    (lambda c: c[:2], r"\(N, 3\) array of voxel indices with N=3, got shape \(2, 3\)"),
    (lambda c: c.ravel(), r"got shape \(9,\)"),
    (lambda c: np.where(np.arange(3)[:, None] == 1, np.nan, c), "NaN or infinite"),
    (lambda c: c + np.array([[0, 0, 0], [500, 0, 0], [0, 0, 0]]), r"centres \[1\] lie outside"),
    (lambda c: c - np.array([[0, 0, 0], [0, 0, 0], [0, 0, 99]]), r"centres \[2\] lie outside")])
def test_given_centres_must_be_n_finite_indices_on_the_grid(prior, change, message):
    """A newcomer's API trial: centres off the grid were fitted as empty patches, NaN ones scored
    Dice 0 without a word, 2 centres ran as N=4."""
    vol = held_out_vertebra(0)
    centres = np.argwhere(vol.mask)[:3].astype(np.float64)
    with pytest.raises(ValueError, match=message):
        reconstruct(vol, n=3, k=3, t=2, prior=prior, centres=change(centres), sampler=None)


def test_a_volume_that_is_not_a_binary_volume_is_a_type_error_that_says_how_to_make_one(prior):
    for given in (held_out_vertebra(0).mask, "kidney_left.nii.gz"):
        with pytest.raises(TypeError, match=r"BinaryVolume, got (ndarray|str): read a file with .*read_labelmap"):
            reconstruct(given, n=2, k=3, t=2, prior=prior)


@pytest.mark.parametrize("kwargs, message", [
    ({"n": 0}, "N must be"), ({"k": 0}, "K must be"), ({"t": -1}, "T must be"),
    ({"n": 64, "k": 41}, "exceeds the budget"), ({"sampler": "magic"}, "unknown sampler"),
])
def test_bad_requests_raise_clear_errors(prior, kwargs, message):
    args = dict(n=2, k=3, t=1, prior=prior)
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        reconstruct(held_out_vertebra(0), **args)


def test_empty_mask_and_missing_cuda_are_refused(prior):
    with pytest.raises(VolumeError, match="empty"):
        reconstruct(BinaryVolume(np.zeros((8, 8, 8), bool)), n=2, k=3, t=1, prior=prior)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA"):
            reconstruct(held_out_vertebra(0), n=2, k=3, t=1, prior=prior, device="cuda")


def test_tiny_mask_with_fewer_voxels_than_patches_works(prior):
    mask = np.zeros((32, 30, 22), bool)
    mask[15:17, 14, 10] = True                      # two voxels, four patches
    res = reconstruct(BinaryVolume(mask, (4.0, 4.0, 4.0)), n=4, k=3, t=5, prior=prior, sampler="random")
    assert res.centres.shape == (4, 3)


def test_progress_is_reported_in_order_and_cancel_stops_the_run(prior):
    from PatchSamplerLib.pipeline import Cancelled
    seen = []
    reconstruct(held_out_vertebra(0), n=2, k=3, t=20, prior=prior, progress=lambda s, f: seen.append((s, f)))
    stages = [s for s, _ in seen]
    assert stages[0] == "sampling" and stages[-1] == "metrics" and "latent_fit" in stages and "decode" in stages
    fractions = [f for _, f in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    calls = []
    def cancel_during_fit():
        calls.append(1)
        return len(calls) > 4
    with pytest.raises(Cancelled, match="during latent fit"):
        reconstruct(held_out_vertebra(0), n=2, k=3, t=50, prior=prior, should_cancel=cancel_during_fit)


def test_reduced_precision_is_refused_off_cuda_and_tf32_setting_is_restored():
    import torch
    from PatchSamplerLib.devices import check_precision, precision_context
    with pytest.raises(ValueError, match="CUDA device only"):
        check_precision(torch.device("cpu"), "bf16")
    with pytest.raises(ValueError, match="unknown precision"):
        check_precision(torch.device("cpu"), "fp16")
    before = torch.backends.cuda.matmul.allow_tf32
    with precision_context(torch.device("cuda"), "tf32"):     # the flag exists without a GPU
        assert torch.backends.cuda.matmul.allow_tf32
    assert torch.backends.cuda.matmul.allow_tf32 == before


def test_the_run_configuration_is_the_recorded_settings_and_keywords_override_it(prior):
    from dataclasses import asdict
    from PatchSamplerLib.pipeline import RunConfig
    config = RunConfig(n=3, k=3, t=4, sampler="random", seed=2, fit_lr=3e-2)
    by_config = reconstruct(held_out_vertebra(0), config, prior)
    by_keywords = reconstruct(held_out_vertebra(0), n=3, k=3, t=4, sampler="random", seed=2, fit_lr=3e-2, prior=prior)
    overridden = reconstruct(held_out_vertebra(0), config, prior, seed=5)
    assert np.array_equal(by_config.reconstruction, by_keywords.reconstruction)
    assert np.array_equal(by_config.centres, by_keywords.centres)
    assert not np.array_equal(by_config.centres, overridden.centres) and overridden.settings["seed"] == 5
    recorded = {key: by_config.settings[key] for key in asdict(config)}
    assert recorded == dict(asdict(config), device="cpu")      # "auto" recorded as the device it chose


def test_a_bad_run_configuration_is_refused_before_any_work(prior):
    from PatchSamplerLib.pipeline import RunConfig
    with pytest.raises(ValueError, match="choose one of learned, fps, random"):
        RunConfig(sampler="grid").check()
    with pytest.raises(ValueError, match="T must be an integer >= 0"):
        RunConfig(t=-1).check()
    with pytest.raises(ValueError, match="the caller gives the centres"):
        reconstruct(held_out_vertebra(0), n=2, k=3, t=1, sampler=None, prior=prior)
    with pytest.raises(TypeError, match="learned=model"):
        reconstruct(held_out_vertebra(0), n=2, k=3, t=1, sampler="learned", sampler_model=object(), prior=prior)


def test_a_prior_on_another_device_is_copied_never_moved(prior):
    """`ShapePrior.on` (used by every run): the caller's prior stays where it is."""
    assert prior.on("cpu") is prior
    elsewhere = prior.on("meta")
    assert elsewhere is not prior and next(elsewhere.decoder.parameters()).device.type == "meta"
    assert next(prior.decoder.parameters()).device.type == "cpu"
    assert elsewhere.extent_mm == prior.extent_mm and elsewhere.metadata == prior.metadata


def test_a_run_without_a_prior_says_which_prior_it_used():
    import warnings

    from PatchSamplerLib.data.synthetic import make_shape
    from PatchSamplerLib.pipeline import NO_PRIOR_NOTE, reconstruct
    volume = make_shape("vertebra", 99, 0, 0.5)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = reconstruct(volume, n=2, k=3, t=1)
    assert NO_PRIOR_NOTE in result.warnings and any(NO_PRIOR_NOTE in str(w.message) for w in caught)
    assert result.settings["prior"].endswith("prior_vertebra.pt")
    given = reconstruct(volume, n=2, k=3, t=1, prior="vertebra")
    assert NO_PRIOR_NOTE not in given.warnings and given.metrics == result.metrics


def test_an_input_far_finer_or_coarser_than_the_prior_gets_a_note():
    from PatchSamplerLib.pipeline import spacing_note
    assert spacing_note((1.5, 1.5, 1.5), (1.5, 1.5, 1.5), 11) is None
    assert spacing_note((1.0, 1.0, 2.5), (1.5, 1.5, 1.5), 11) is None          # within a factor 2
    fine = spacing_note((0.2, 0.2, 0.2), (1.5, 1.5, 1.5), 11)
    assert "0.2 x 0.2 x 0.2 mm" in fine and "spans 2.2 x 2.2 x 2.2 mm" in fine and "decode" in fine
    coarse = spacing_note((3.0, 3.0, 3.0), (1.5, 1.5, 1.5), 11)
    assert "spans 33 x 33 x 33 mm" in coarse and "decode" not in coarse and "resample the input to 1.5 mm" in coarse
    assert spacing_note((0.7, 0.7, 5.0), (1.0, 1.0, 1.0), 9) is not None


def test_a_run_on_a_coarse_grid_carries_the_note():
    import warnings

    from PatchSamplerLib.data.synthetic import make_shape
    from PatchSamplerLib.pipeline import reconstruct
    from PatchSamplerLib.volume import BinaryVolume
    shape = make_shape("kidney", 99, 0)                                         # 1.5 mm voxels
    assert shape.spacing == (1.5, 1.5, 1.5)
    coarse = BinaryVolume(shape.mask[::2, ::2, ::2], (3.0, 3.0, 3.0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = reconstruct(coarse, n=2, k=3, t=1, prior="kidney")
    assert any("far from the prior's 1.5 mm" in note for note in result.warnings)
    assert not any("far from" in note for note in reconstruct(shape, n=2, k=3, t=1, prior="kidney").warnings)


def test_a_shape_smaller_than_one_patch_gets_a_note():
    import warnings

    from PatchSamplerLib.pipeline import reconstruct, size_note
    from PatchSamplerLib.volume import BinaryVolume
    assert size_note(1331, 11) is None and "only 4 foreground voxels" in size_note(4, 11)
    mask = np.zeros((30, 30, 30), bool)
    mask[14:16, 14:16, 15] = True
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = reconstruct(BinaryVolume(mask, (1.5,) * 3), n=2, k=3, t=1, prior="kidney")
    assert any("only 4 foreground voxels" in note for note in result.warnings)
