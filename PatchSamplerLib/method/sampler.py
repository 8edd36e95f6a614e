"""The learned point sampler [T §3.3, eq. 3.7; Lang et al. SampleNet].

- `PointGenerator` (f_gen, S-NET style): per-point 1x1 Conv1d 3 -> 64 -> 128 -> 128 -> 256 -> 128,
  each with BatchNorm + ReLU; global max-pool (order invariant); Linear 128 -> 256 + BN + ReLU;
  Linear 256 -> 256 + BN + ReLU; Linear 256 -> 3m (no normalisation / activation) -> (m, 3)
  unconstrained points G. (SampleNet's own code uses 3-64-64-64-128-128; we follow the thesis.)
- `SoftProjection` (f_proj, eq. 3.7): for every g its k = 32 nearest neighbours p_j in the
  input cloud P, weights w_j = softmax_j(-||g - p_j||^2 / t^2), r = sum_j w_j p_j. One learnable
  scalar t, initialised to 1.0; t^2 is floored at `min_sigma` = 1e-4 (as SampleNet's code does)
  for stability. Kept at inference (no hard nearest-neighbour matching), so r lies in the
  convex hull of its neighbours.
- `LearnedSampler`: both, on the normalised cloud in [-0.5, 0.5]^3 (`pointcloud.py`).
- Anchor (not in [T]; `anchor="fps"`): G = A + f_gen(P), where A are the deterministic FPS
  points of the cloud itself (`cloud_fps_anchor`: FPS from the point farthest from the cloud's
  centroid, in the normalised space) and the generator's last layer starts at zero, so an
  untrained sampler places FPS patches and training learns offsets from them. ``"none"`` is the
  thesis's free generator.
"""
from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn as nn

from PatchSamplerLib.method.pointcloud import simplified_cloud

CONV_WIDTHS = (64, 128, 128, 256, 128)
FC_WIDTHS = (256, 256)
DEFAULT_NEIGHBOURS = 32
MIN_SIGMA = 1e-4
ANCHORS = ("none", "fps")


class PointGenerator(nn.Module):
    """f_gen: (B, n, 3) normalised cloud -> (B, m, 3) generated points."""

    def __init__(self, n_points: int):
        super().__init__()
        self.n_points = n_points
        layers, fan_in = [], 3
        for width in CONV_WIDTHS:
            layers += [nn.Conv1d(fan_in, width, 1), nn.BatchNorm1d(width), nn.ReLU()]
            fan_in = width
        self.features = nn.Sequential(*layers)
        fc = []
        for width in FC_WIDTHS:
            fc += [nn.Linear(fan_in, width), nn.BatchNorm1d(width), nn.ReLU()]
            fan_in = width
        fc.append(nn.Linear(fan_in, 3 * n_points))
        self.head = nn.Sequential(*fc)

    def forward(self, cloud: torch.Tensor) -> torch.Tensor:
        feats = self.features(cloud.transpose(1, 2))          # (B, C, n)
        pooled = feats.max(dim=2).values                      # (B, C)
        return self.head(pooled).reshape(-1, self.n_points, 3)


class SoftProjection(nn.Module):
    """f_proj [T eq. 3.7]: generated (B, m, 3), cloud (B, n, 3) -> projected (B, m, 3)."""

    def __init__(self, neighbours: int = DEFAULT_NEIGHBOURS, initial_temperature: float = 1.0,
                 min_sigma: float = MIN_SIGMA):
        super().__init__()
        self.neighbours, self.min_sigma = neighbours, min_sigma
        self.temperature = nn.Parameter(torch.tensor(float(initial_temperature)))

    def sigma(self) -> torch.Tensor:
        """t^2, floored at `min_sigma`."""
        return torch.clamp(self.temperature ** 2, min=self.min_sigma)

    def forward(self, generated: torch.Tensor, cloud: torch.Tensor) -> torch.Tensor:
        k = min(self.neighbours, cloud.shape[1])
        d2 = torch.cdist(generated, cloud).pow(2)                                   # (B, m, n)
        near_d2, idx = d2.topk(k, dim=-1, largest=False)                             # (B, m, k)
        weights = torch.softmax(-near_d2 / self.sigma(), dim=-1)
        neighbours = torch.gather(cloud[:, None].expand(-1, generated.shape[1], -1, -1), 2,
                                  idx[..., None].expand(-1, -1, -1, 3))              # (B, m, k, 3)
        return (weights[..., None] * neighbours).sum(dim=2)


def cloud_fps_anchor(cloud: torch.Tensor, m: int) -> torch.Tensor:
    """(B, n, 3) clouds -> (B, m, 3) points of each cloud chosen by greedy FPS from the point
    farthest from the cloud's centroid (deterministic, no gradient; same units as the cloud)."""
    with torch.no_grad():
        rows = torch.arange(cloud.shape[0])
        first = (cloud - cloud.mean(1, keepdim=True)).pow(2).sum(-1).argmax(1)          # (B,)
        chosen = [first]
        dist = (cloud - cloud[rows, first][:, None]).pow(2).sum(-1)                      # (B, n)
        for _ in range(1, m):
            chosen.append(dist.argmax(1))
            dist = torch.minimum(dist, (cloud - cloud[rows, chosen[-1]][:, None]).pow(2).sum(-1))
        return cloud[rows[:, None], torch.stack(chosen, 1)]


class LearnedSampler(nn.Module):
    """cloud (B, n, 3) in [-0.5, 0.5]^3 -> (generated G, projected R), each (B, m, 3).
    anchor "fps": G = FPS points of the cloud + generator offsets (zero at the start)."""

    def __init__(self, n_patches: int, neighbours: int = DEFAULT_NEIGHBOURS, initial_temperature: float = 1.0,
                 anchor: str = "none"):
        super().__init__()
        if anchor not in ANCHORS:
            raise ValueError(f"anchor must be one of {', '.join(ANCHORS)}, got {anchor!r}")
        self.n_patches, self.anchor = n_patches, anchor
        self.generator = PointGenerator(n_patches)
        self.projection = SoftProjection(neighbours, initial_temperature)
        if anchor == "fps":
            nn.init.zeros_(self.generator.head[-1].weight)
            nn.init.zeros_(self.generator.head[-1].bias)

    def forward(self, cloud: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        generated = self.generator(cloud)
        if self.anchor == "fps":
            generated = generated + cloud_fps_anchor(cloud, self.n_patches)
        return generated, self.projection(generated, cloud)


class SamplerModel:
    """A trained LearnedSampler with what it was trained for.

    n, k, t: patches, patch size and latent-fit steps it was trained with; metadata:
    provenance (prior, data, hyperparameters, validation Dice, command line)."""

    KIND = "sampler"

    def __init__(self, sampler: LearnedSampler, k: int, t: int, metadata: dict | None = None):
        self.sampler, self.k, self.t = sampler, int(k), int(t)
        self.metadata = dict(metadata or {})
        self.file_sha256: str | None = None       # SHA-256 of the file it was loaded from (recorded by runs)

    @property
    def n(self) -> int:
        return self.sampler.n_patches

    @classmethod
    def new(cls, n: int, k: int, t: int, neighbours: int = DEFAULT_NEIGHBOURS,
            initial_temperature: float = 1.0, anchor: str = "none") -> "SamplerModel":
        return cls(LearnedSampler(n, neighbours, initial_temperature, anchor), k, t)

    def save(self, path) -> None:
        from PatchSamplerLib.checkpoints import save_checkpoint
        meta = dict(self.metadata, n=self.n, k=self.k, t=self.t, neighbours=self.sampler.projection.neighbours,
                    anchor=self.sampler.anchor)
        save_checkpoint(path, self.KIND, self.sampler.state_dict(), meta)

    @classmethod
    def load(cls, path) -> "SamplerModel":
        from PatchSamplerLib.checkpoints import CheckpointError, file_sha256, load_checkpoint
        state, meta = load_checkpoint(path, cls.KIND)
        model = cls.new(meta["n"], meta["k"], meta["t"], meta.get("neighbours", DEFAULT_NEIGHBOURS),
                        anchor=meta.get("anchor", "none"))
        try:
            model.sampler.load_state_dict(state)
        except RuntimeError as exc:
            raise CheckpointError(f"{path}: weights do not fit the sampler architecture ({exc})") from None
        model.sampler.eval()
        model.metadata = dict(meta, path=str(path))
        model.file_sha256 = file_sha256(path)
        return model

    def record(self) -> dict:
        """Which sampler a run used: {"path", "sha256", "n", "k", "t"} (path None: in memory)."""
        return {"path": self.metadata.get("path"), "sha256": self.file_sha256, "n": self.n, "k": self.k, "t": self.t}


def learned_centres(model: SamplerModel, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inference: (X, Y, Z) mask -> (generated, projected), each (N, 3) float32 voxel index.
    The projected points are the patch centres (the soft projection is kept at inference, T §3.6, §5.4)."""
    cloud, norm = simplified_cloud(mask)
    model.sampler.eval()
    with torch.no_grad():
        generated, projected = model.sampler(torch.from_numpy(cloud)[None])
    return (norm.inverse(generated[0].numpy()).astype(np.float32),
            norm.inverse(projected[0].numpy()).astype(np.float32))


def load_learned_sampler(prior, n: int, k: int, t: int, sampler_model=None) -> tuple[SamplerModel, list[str]]:
    """The sampler for a run with `prior` (a ShapePrior) -> (model, notes). `sampler_model`: a
    SamplerModel, a file, or None for the bundled one of (prior, N, K)
    (`checkpoints.resolve_sampler_path`). Raises ValueError (CheckpointError) with a user message
    when there is none, N does not match, or the sampler was trained with another prior
    (`check_sampler_prior`)."""
    from PatchSamplerLib.checkpoints import resolve_sampler_path
    t_note = None                      # the bundled lookup words its own note for another T
    if isinstance(sampler_model, SamplerModel):
        model = sampler_model
    else:
        path = sampler_model
        if path is None:
            path, t_note = resolve_sampler_path(prior.metadata.get("path"), n, k, t)
        model = SamplerModel.load(path)
    if model.n != n:
        raise ValueError(f"the learned sampler {model.metadata.get('path', '')} places N={model.n} patches; "
                         f"N={n} was requested")
    notes = check_sampler_prior(model, prior)
    if model.t != t and t_note is None:
        t_note = f"the learned sampler was trained for T={model.t}, used here with T={t}"
    notes += [t_note] if t_note else []
    if model.k != k:
        notes.append(f"the learned sampler was trained for K={model.k}, used here with K={k}")
    return model, notes


def trained_prior_sha256(model: SamplerModel) -> str | None:
    """The weights SHA-256 of the prior `model` was trained through: recorded in its metadata
    (samplers from this version on), else computed from its recorded prior file when that file
    still exists, else None."""
    from PatchSamplerLib.checkpoints import CheckpointError, load_checkpoint, weights_sha256
    if model.metadata.get("prior_weights_sha256"):
        return model.metadata["prior_weights_sha256"]
    recorded = model.metadata.get("prior")
    if not recorded or not os.path.isfile(recorded):
        return None
    try:
        return weights_sha256(load_checkpoint(recorded, "prior")[0])
    except CheckpointError:
        return None


def check_sampler_prior(model: SamplerModel, prior) -> list[str]:
    """Refuse a learned sampler trained through another prior than `prior` (a ShapePrior): its
    centres were learned for what that prior needs. -> notes ([] when it matches; one note when
    the sampler does not say which prior it had). Raises ValueError naming both priors."""
    trained = trained_prior_sha256(model)
    name = model.metadata.get("path", "in memory")
    if trained is None:
        return [f"the learned sampler {name} does not record its prior; make sure it was trained with "
                f"{prior.metadata.get('path', 'this prior')}"]
    if trained != prior.fingerprint():
        raise ValueError(f"the learned sampler {name} was trained with the prior {model.metadata.get('prior', '?')}, "
                         f"not with the prior of this run ({prior.metadata.get('path', 'in memory')}); use a sampler "
                         "trained with this prior (train-sampler --prior ...) or run with the sampler's prior")
    return []
