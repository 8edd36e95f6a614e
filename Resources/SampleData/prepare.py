"""Make the 1.5 mm sample kidneys from TotalSegmentator's 3 mm example segmentations.

Run from the repository root: python Resources/SampleData/prepare.py
Resampling: linear interpolation of the 0/1 mask to 1.5 mm isotropic, threshold 0.5
(PatchSamplerLib.volume.resample_isotropic), then a crop to the kidney's bounding box plus
10 voxels; the world geometry (origin, direction) is kept, so the files overlay the CT.
"""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from PatchSamplerLib.volume import (BinaryVolume, foreground_bbox, index_to_world,  # noqa: E402
                                    read_labelmap, resample_isotropic, write_volume)

HERE = Path(__file__).resolve().parent


def crop(volume: BinaryVolume, margin: int) -> BinaryVolume:
    lo, hi = foreground_bbox(volume.mask)
    lo, hi = np.maximum(lo - margin, 0), np.minimum(hi + margin, np.array(volume.shape) - 1)
    mask = volume.mask[lo[0]:hi[0] + 1, lo[1]:hi[1] + 1, lo[2]:hi[2] + 1]
    return BinaryVolume(mask, volume.spacing, index_to_world(lo, volume), volume.direction)


if __name__ == "__main__":
    for side in ("left", "right"):
        fine = crop(resample_isotropic(read_labelmap(HERE / f"kidney_{side}.nii.gz"), 1.5), 10)
        write_volume(HERE / f"kidney_{side}_1.5mm.nii.gz", fine)
        print(side, fine.shape, fine.voxel_count)
