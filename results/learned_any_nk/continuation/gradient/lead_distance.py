"""Where a kidney sampler's lead lies: its distance from the shape's centroid as a share of the
largest voxel-centroid distance (mm), mean over the 12 validation kidneys the samplers were
trained with (family kidney-anatomical, seed 0, shapes 64-75; K = 9).

    python results/learned_any_nk/continuation/gradient/lead_distance.py SAMPLER_OR_LAST.pt [...]

A training checkpoint (last.pt) is loaded into its run's sampler.pt network."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from PatchSamplerLib.data.synthetic import make_shapes
from PatchSamplerLib.method.sampler import SamplerModel, learned_centres


def load(path: Path) -> SamplerModel:
    """A sampler file, or a trainer's last.pt loaded into the sampler.pt beside it."""
    if path.name != "last.pt":
        return SamplerModel.load(path)
    model = SamplerModel.load(path.parent / "sampler.pt")
    state = torch.load(path, map_location="cpu", weights_only=False)["state_dict"]["sampler"]
    model.sampler.load_state_dict(state)
    return model


def lead_share(model: SamplerModel, volumes) -> float:
    """Mean over `volumes` of |lead - centroid| / max |voxel - centroid| (mm)."""
    shares = []
    for vol in volumes:
        spacing = np.asarray(vol.spacing)
        lead = learned_centres(model, vol.mask, 1, 9, vol.spacing)[1][0] * spacing
        voxels = np.argwhere(vol.mask) * spacing
        centroid = voxels.mean(0)
        shares.append(np.linalg.norm(lead - centroid) / np.linalg.norm(voxels - centroid, axis=1).max())
    return float(np.mean(shares))


if __name__ == "__main__":
    validation = make_shapes("kidney-anatomical", 76, seed=0)[64:76]
    for arg in sys.argv[1:]:
        print(f"{arg}: {lead_share(load(Path(arg)), validation):.3f}")
