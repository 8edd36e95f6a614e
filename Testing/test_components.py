"""A stray speck (a common artefact of automatic segmentation) must not move the INR frame, is
always reported, and with `largest_component` is dropped: the issue's kidney with a 3 x 3 x 3
speck about 10 cm away."""
import numpy as np
import pytest

from PatchSamplerLib.method.components import component_note, largest_component, main_components
from PatchSamplerLib.pipeline import reconstruct
from PatchSamplerLib.volume import BinaryVolume, read_labelmap

KIDNEY = "Resources/SampleData/kidney_left_1.5mm.nii.gz"


def specked(volume: BinaryVolume, distance_mm: float = 100.0) -> tuple[BinaryVolume, BinaryVolume]:
    """(the kidney on a grid padded along x, the same with a 3^3-voxel speck `distance_mm` from
    the kidney's bounding-box centre along x)."""
    pad = int(np.ceil(distance_mm / volume.spacing[0])) + 10
    mask = np.pad(volume.mask, ((0, pad), (0, 0), (0, 0)))
    centre = (np.argwhere(volume.mask).min(0) + np.argwhere(volume.mask).max(0)) // 2
    at = centre + np.array([int(round(distance_mm / volume.spacing[0])), 0, 0])
    speck = mask.copy()
    speck[at[0] - 1:at[0] + 2, at[1] - 1:at[1] + 2, at[2] - 1:at[2] + 2] = True
    clean = BinaryVolume(mask, volume.spacing, volume.origin, volume.direction)
    return clean, clean.with_mask(speck)


def test_component_helpers_find_keep_and_name_the_parts():
    mask = np.zeros((20, 10, 10), bool)
    mask[1:8, 1:8, 1:8] = True                  # 343 voxels
    mask[15:17, 5, 5] = True                    # 2
    mask[12, 1, 1] = True                       # 1, corner-touching nothing
    assert largest_component(mask).sum() == 343
    assert main_components(mask).sum() == 343 and main_components(mask[:10]).sum() == 343
    assert "3 connected components of 343, 2, 1 voxels" in component_note(mask, kept_largest=False)
    assert component_note(mask[:10, :, :], kept_largest=False) is None


@pytest.mark.parametrize("seed", [0, 1])
def test_a_speck_does_not_move_the_frame_and_the_largest_component_option_drops_it(seed):
    clean, with_speck = specked(read_labelmap(KIDNEY))
    base = reconstruct(clean, n=8, k=11, t=100, sampler="fps", seed=seed, prior="kidney", device="cpu")
    with pytest.warns(UserWarning, match="2 connected components of 29333, 27 voxels"):
        kept = reconstruct(with_speck, n=8, k=11, t=100, sampler="fps", seed=seed, prior="kidney", device="cpu",
                           largest_component=True)
    assert kept.metrics["dice"] == pytest.approx(base.metrics["dice"], abs=0.02)
    assert kept.settings["frame_centre_mm"] == base.settings["frame_centre_mm"]
    assert any("only the largest was kept" in note for note in kept.warnings)


def test_without_the_option_the_speck_is_reported_and_the_frame_stays():
    clean, with_speck = specked(read_labelmap(KIDNEY))
    with pytest.warns(UserWarning, match="connected components of 29333, 27 voxels"):
        plain = reconstruct(with_speck, n=2, k=3, t=1, sampler="fps", seed=0, prior="kidney", device="cpu")
    frame = reconstruct(clean, n=2, k=3, t=1, sampler="fps", seed=0, prior="kidney", device="cpu")
    assert plain.settings["frame_centre_mm"] == frame.settings["frame_centre_mm"]
    assert any("--largest-component" in note for note in plain.warnings)
