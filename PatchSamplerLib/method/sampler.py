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
  untrained sampler places FPS patches and training learns offsets from them. ``"central"``: the
  same from the point nearest the centroid (FPS's first patch then lies inside the shape's bulk,
  not on a process tip; issue #18: on held-out vertebrae at N = 4 the extreme-point start fell
  below random-start FPS, the central one did not). ``"lead"``: the first `lead_points`
  (default `LEAD_POINTS` = 4; 1-4, recorded in the model's metadata) centres come from the
  thesis's free generator; the later ones are FPS of the cloud continued
  from those (projected) centres, without learned offsets (issue #18: a free generator
  learns where the first few patches of a shape in its anatomical frame belong -- the per-(4, 9)
  sampler beat FPS after one epoch -- while FPS covers what they leave; learned offsets on all 64
  anchored centres lowered the validation Dice, results/learned_any_nk/README.md). Progressive
  by construction. ``"none"`` is the thesis's free generator.
- Where the lead's FPS continues (`continuation`, anchor "lead" only; recorded in the model's
  metadata, "cloud" for a model saved before the option): ``"cloud"``, over the 2,048-point Sobol
  cloud, each continued centre soft-projected like the lead (what the network computes);
  ``"voxels"``, over all occupied voxels in mm, as the FPS baseline does
  (`baselines.fps_continued_indices`), applied by `learned_centres` and by the sampler trainer
  after the network. Issue #18: with "cloud" the bundled samplers were below FPS at N = 12 over
  both held-out sets pooled; the same vertebra weights with "voxels" were above it
  (results/learned_any_nk/continuation/; whether the vertebra sampler lost to the cloud's coarser
  extremes or to its learned projection temperature, which averages each continued centre with
  its cloud neighbours, was not separated). ``"central-voxels"``: after the lead, the occupied
  voxel nearest the shape's centroid (mm), then FPS over the voxels from the lead and that voxel
  (fourteenth session, for the kidney sampler whose lead sits near a pole: FPS that starts near
  the centroid covers a kidney better, results/learned_any_nk/continuation/fps_start.md).
- Where the lead starts (`lead_start`, anchor "lead" only; metadata, "free" before the option):
  ``"free"``, the thesis's free generator; ``"central"``, the lead is the cloud's FPS points from
  the point nearest its centroid (`cloud_fps_anchor`) plus the generator's offsets, zero at the
  start (issue #18: on 20 held-out kidneys FPS from the voxel nearest the centroid beat
  random-start FPS at N = 8 and 12, while the free lead of the kidney samplers had moved to the
  poles, 0.79 of the largest centroid distance: results/learned_any_nk/continuation/).
- Any (N, K) (`conditioned`, not in [T]; issue #18, after ProgressiveNet in
  Dovrat et al., Learning to Sample, CVPR 2019):
  one sampler places an ordered set of `ANY_N_MAX` = 64 centres and takes the patch size K as an
  input; the first N are the N patches, for any N <= 64 and odd K in 3..31 (`ANY_K_RANGE`). Nested
  by construction: the FPS anchor is progressive (FPS's first N points are FPS of N) and the
  soft projection acts on each point alone. K enters as the scalar (K - 17) / 14 in [-1, 1]
  concatenated to the pooled features before the first fully connected layer (each shape of a
  training batch draws its own K, so BatchNorm's batch statistics keep its effect).
"""
from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn as nn

from PatchSamplerLib.checkpoints import ANY_K_RANGE, ANY_N_MAX, in_any_range
from PatchSamplerLib.method.baselines import fps_continued_indices
from PatchSamplerLib.method.pointcloud import dense_cloud, simplified_cloud

CONV_WIDTHS = (64, 128, 128, 256, 128)
FC_WIDTHS = (256, 256)
DEFAULT_NEIGHBOURS = 32
MIN_SIGMA = 1e-4
ANCHORS = ("none", "fps", "central", "lead")
CONTINUATIONS = ("cloud", "voxels", "central-voxels")
VOXEL_CONTINUATIONS = ("voxels", "central-voxels")     # applied after the network, over the occupied voxels
LEAD_STARTS = ("free", "central")
FPS_ANCHORS = ("fps", "central")
LEAD_POINTS = 4
LEAD_RANGE = (1, 4)


def check_lead_points(lead_points: int) -> None:
    """ValueError unless the lead anchor's generated centres are within LEAD_RANGE."""
    if not LEAD_RANGE[0] <= int(lead_points) <= LEAD_RANGE[1]:
        raise ValueError(f"lead points must be {LEAD_RANGE[0]}-{LEAD_RANGE[1]}, got {lead_points}")


def check_continuation(continuation: str) -> None:
    """ValueError unless `continuation` is one of CONTINUATIONS."""
    if continuation not in CONTINUATIONS:
        raise ValueError(f"continuation must be one of {', '.join(CONTINUATIONS)}, got {continuation!r}")


def check_lead_start(lead_start: str) -> None:
    """ValueError unless `lead_start` is one of LEAD_STARTS."""
    if lead_start not in LEAD_STARTS:
        raise ValueError(f"lead start must be one of {', '.join(LEAD_STARTS)}, got {lead_start!r}")


def k_feature(k, batch: int) -> torch.Tensor:
    """The K input of a conditioned generator: (B, 1) float32 (K - 17) / 14, so K = 3..31 maps
    to [-1, 1]. k: an int (the same for the batch) or B ints."""
    ks = torch.as_tensor(k, dtype=torch.float32).reshape(-1, 1).expand(batch, 1)
    return (ks - sum(ANY_K_RANGE) / 2) / ((ANY_K_RANGE[1] - ANY_K_RANGE[0]) / 2)


def check_any_setting(n: int, k: int, n_max: int = ANY_N_MAX) -> None:
    """ValueError unless 1 <= N <= n_max and K is odd within ANY_K_RANGE (an any-(N, K) sampler's range)."""
    if not 1 <= int(n) <= n_max:
        raise ValueError(f"the any-(N, K) learned sampler places 1 to {n_max} patches; N={n} was requested")
    if not in_any_range(1, int(k)):
        low, high = ANY_K_RANGE
        raise ValueError(f"the any-(N, K) learned sampler takes odd K from {low} to {high}; "
                         f"K={k} was requested")


class PointGenerator(nn.Module):
    """f_gen: (B, n, 3) normalised cloud [, K] -> (B, m, 3) generated points. `conditioned`: K
    is an input (`k_feature`) of the first fully connected layer."""

    def __init__(self, n_points: int, conditioned: bool = False):
        super().__init__()
        self.n_points, self.conditioned = n_points, conditioned
        layers, fan_in = [], 3
        for width in CONV_WIDTHS:
            layers += [nn.Conv1d(fan_in, width, 1), nn.BatchNorm1d(width), nn.ReLU()]
            fan_in = width
        self.features = nn.Sequential(*layers)
        fc, fan_in = [], fan_in + int(conditioned)
        for width in FC_WIDTHS:
            fc += [nn.Linear(fan_in, width), nn.BatchNorm1d(width), nn.ReLU()]
            fan_in = width
        fc.append(nn.Linear(fan_in, 3 * n_points))
        self.head = nn.Sequential(*fc)

    def forward(self, cloud: torch.Tensor, k=None) -> torch.Tensor:
        feats = self.features(cloud.transpose(1, 2))          # (B, C, n)
        pooled = feats.max(dim=2).values                      # (B, C)
        if self.conditioned:
            if k is None:
                raise ValueError("this sampler is conditioned on the patch size: pass K")
            pooled = torch.cat([pooled, k_feature(k, len(pooled)).to(pooled)], dim=1)
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


def cloud_fps_anchor(cloud: torch.Tensor, m: int, start: str = "fps") -> torch.Tensor:
    """(B, n, 3) clouds -> (B, m, 3) points of each cloud chosen by greedy FPS from the point
    farthest from (`start` "fps") or nearest to ("central") the cloud's centroid
    (deterministic, no gradient; same units as the cloud)."""
    with torch.no_grad():
        from_centroid = (cloud - cloud.mean(1, keepdim=True)).pow(2).sum(-1)             # (B, n)
        first = from_centroid.argmin(1) if start == "central" else from_centroid.argmax(1)
        first_point = cloud[torch.arange(cloud.shape[0]), first][:, None]                # (B, 1, 3)
        return torch.cat([first_point, fps_continued(cloud, first_point, m - 1)], dim=1)


def fps_continued(cloud: torch.Tensor, chosen: torch.Tensor, m: int) -> torch.Tensor:
    """(B, n, 3) clouds, (B, j >= 1, 3) points already chosen -> (B, m, 3) the next m points of
    greedy FPS over each cloud: each the cloud point farthest from all chosen so far
    (deterministic, no gradient; same units as the cloud)."""
    with torch.no_grad():
        rows = torch.arange(cloud.shape[0])
        dist = torch.cdist(cloud, chosen).pow(2).min(-1).values                          # (B, n)
        picked = []
        for _ in range(max(m, 0)):
            picked.append(dist.argmax(1))
            dist = torch.minimum(dist, (cloud - cloud[rows, picked[-1]][:, None]).pow(2).sum(-1))
        if not picked:
            return cloud[:, :0]
        return cloud[rows[:, None], torch.stack(picked, 1)]


SOFT_FPS_TEMPERATURE = 0.05   # continuation gradient: softmax over the min distances / (this x their max)


def straight_through_fps(points: torch.Tensor, lead: torch.Tensor, continued: torch.Tensor,
                         temperature: float = SOFT_FPS_TEMPERATURE) -> torch.Tensor:
    """The FPS centres `continued` (m, 3) (constants: hard FPS over `points` after the lead) with
    a gradient to the `lead` (L, 3) (not in [T]; training only): step j's value is continued[j],
    its gradient that of a soft FPS step over the (n, 3) `points` (the shape's occupied voxels,
    where the hard FPS picks) -- the softmax-weighted mean of the points by their squared
    distance from the centres chosen so far (lead, then continued[:j]), divided by
    `temperature` x the largest such distance. FPS itself has no gradient; this straight-through
    surrogate lets the loss of the continued centres move the lead that starts them
    (`SamplerConfig.continuation_gradient`). All in one space (the normalised cloud's)."""
    dist = torch.cdist(points, lead).pow(2).min(-1).values                                # (n,)
    out = []
    for j in range(continued.shape[0]):
        top = dist.detach().max()
        weights = torch.softmax((dist - top) / (top.clamp_min(1e-12) * temperature), 0)
        soft = (weights[:, None] * points).sum(0)
        out.append(continued[j] + (soft - soft.detach()))
        dist = torch.minimum(dist, (points - out[-1]).pow(2).sum(-1))
    return torch.stack(out) if out else continued


class LearnedSampler(nn.Module):
    """cloud (B, n, 3) in [-0.5, 0.5]^3 [, K: int or (B,) ints, when `conditioned`] ->
    (generated G, projected R), each (B, m, 3). anchor "fps" / "central": G = FPS points of the
    cloud (`cloud_fps_anchor`) + generator offsets (zero at the start); "lead": the generator
    places the first min(m, lead_points), the rest are FPS continued from their projections
    over the cloud (with `continuation` "voxels" the callers replace those by FPS over the
    occupied voxels: `voxel_continuation`). Raises ValueError for an unknown anchor or
    continuation, or lead_points outside LEAD_RANGE."""

    def __init__(self, n_patches: int, neighbours: int = DEFAULT_NEIGHBOURS, initial_temperature: float = 1.0,
                 anchor: str = "none", conditioned: bool = False, lead_points: int = LEAD_POINTS,
                 continuation: str = "cloud", lead_start: str = "free"):
        super().__init__()
        if anchor not in ANCHORS:
            raise ValueError(f"anchor must be one of {', '.join(ANCHORS)}, got {anchor!r}")
        check_lead_points(lead_points)
        check_continuation(continuation)
        check_lead_start(lead_start)
        self.n_patches, self.anchor, self.conditioned = n_patches, anchor, conditioned
        self.lead_points, self.continuation, self.lead_start = int(lead_points), continuation, lead_start
        generated = min(n_patches, self.lead_points) if anchor == "lead" else n_patches
        self.generator = PointGenerator(generated, conditioned)
        self.projection = SoftProjection(neighbours, initial_temperature)
        if anchor in FPS_ANCHORS or self.central_lead:
            nn.init.zeros_(self.generator.head[-1].weight)
            nn.init.zeros_(self.generator.head[-1].bias)

    def forward(self, cloud: torch.Tensor, k=None) -> tuple[torch.Tensor, torch.Tensor]:
        generated = self.generator(cloud, k)
        if self.anchor == "lead":
            return self._lead_and_fps(generated, cloud)
        if self.anchor in FPS_ANCHORS:
            generated = generated + cloud_fps_anchor(cloud, self.n_patches, self.anchor)
        return generated, self.projection(generated, cloud)

    @property
    def central_lead(self) -> bool:
        """Whether the lead is offsets from the cloud's FPS points from its central point."""
        return self.anchor == "lead" and self.lead_start == "central"

    def _lead_and_fps(self, lead: torch.Tensor, cloud: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Anchor "lead": the generated lead points (B, L, 3) (+ the central FPS anchor with
        `lead_start` "central"), projected, then FPS continued from them."""
        if self.central_lead:
            lead = lead + cloud_fps_anchor(cloud, lead.shape[1], "central")
        projected = self.projection(lead, cloud)
        rest = fps_continued(cloud, projected.detach(), self.n_patches - lead.shape[1])
        return torch.cat([lead, rest], 1), torch.cat([projected, self.projection(rest, cloud)], 1)

    @property
    def voxel_lead(self) -> int:
        """How many leading centres are the network's when the rest are FPS over the occupied
        voxels (anchor "lead" with a continuation of VOXEL_CONTINUATIONS); 0: every centre is the
        network's."""
        return self.lead_points if self.anchor == "lead" and self.continuation in VOXEL_CONTINUATIONS else 0


def voxel_continuation(lead: np.ndarray, m: int, mask: np.ndarray, spacing=(1.0, 1.0, 1.0),
                       central: bool = False) -> np.ndarray:
    """(L, 3) voxel-index lead centres -> (m, 3) float32 voxel indices: the next m centres of
    greedy FPS over the occupied voxels of the (X, Y, Z) bool `mask` (mm with `spacing`) continued
    from the lead -- the FPS baseline's points after a learned start (continuation "voxels").
    `central` (continuation "central-voxels"): the first of them is the voxel nearest the
    voxels' centroid (mm), the rest FPS continued from the lead and it."""
    voxels = dense_cloud(mask)
    if not central or m < 1:
        return voxels[fps_continued_indices(voxels, lead, m, spacing)]
    scaled = voxels * np.asarray(spacing, np.float32)
    centre = voxels[int(np.argmin(((scaled - scaled.mean(0)) ** 2).sum(1)))][None]
    rest = voxels[fps_continued_indices(voxels, np.concatenate([lead, centre]), m - 1, spacing)]
    return np.concatenate([centre, rest])


class SamplerModel:
    """A trained LearnedSampler with what it was trained for.

    n, k, t: patches, patch size and latent-fit steps it was trained with; an any-(N, K) sampler
    (`any_nk`: its network is conditioned on K) has n = the most patches it places (ANY_N_MAX) and
    k = 0 (any odd K in ANY_K_RANGE). metadata: provenance (prior, data, hyperparameters, validation
    Dice, command line)."""

    KIND = "sampler"

    def __init__(self, sampler: LearnedSampler, k: int, t: int, metadata: dict | None = None):
        self.sampler, self.k, self.t = sampler, int(k), int(t)
        self.metadata = dict(metadata or {})
        self.file_sha256: str | None = None       # SHA-256 of the file it was loaded from (recorded by runs)

    @property
    def n(self) -> int:
        return self.sampler.n_patches

    @property
    def any_nk(self) -> bool:
        """Whether this sampler places any N <= n patches of any odd K (#18)."""
        return self.sampler.conditioned

    @classmethod
    def new(cls, n: int, k: int, t: int, neighbours: int = DEFAULT_NEIGHBOURS,
            initial_temperature: float = 1.0, anchor: str = "none", conditioned: bool = False,
            lead_points: int = LEAD_POINTS, continuation: str = "cloud",
            lead_start: str = "free") -> "SamplerModel":
        return cls(LearnedSampler(n, neighbours, initial_temperature, anchor, conditioned, lead_points,
                                  continuation, lead_start), k, t)

    def save(self, path) -> None:
        from PatchSamplerLib.checkpoints import save_checkpoint
        meta = dict(self.metadata, n=self.n, k=self.k, t=self.t, neighbours=self.sampler.projection.neighbours,
                    anchor=self.sampler.anchor, any_nk=self.any_nk)
        if self.sampler.anchor == "lead":
            meta["lead_points"] = self.sampler.lead_points
            meta["continuation"] = self.sampler.continuation
            meta["lead_start"] = self.sampler.lead_start
        save_checkpoint(path, self.KIND, self.sampler.state_dict(), meta)

    @classmethod
    def load(cls, path) -> "SamplerModel":
        from PatchSamplerLib.checkpoints import CheckpointError, file_sha256, load_checkpoint
        state, meta = load_checkpoint(path, cls.KIND)
        model = cls.new(meta["n"], meta["k"], meta["t"], meta.get("neighbours", DEFAULT_NEIGHBOURS),
                        anchor=meta.get("anchor", "none"), conditioned=meta.get("any_nk", False),
                        lead_points=meta.get("lead_points", LEAD_POINTS),
                        continuation=meta.get("continuation", "cloud"), lead_start=meta.get("lead_start", "free"))
        try:
            model.sampler.load_state_dict(state)
        except RuntimeError as exc:
            raise CheckpointError(f"{path}: weights do not fit the sampler architecture ({exc})") from None
        model.sampler.eval()
        model.metadata = dict(meta, path=str(path))
        model.file_sha256 = file_sha256(path)
        return model

    def record(self) -> dict:
        """Which sampler a run used: {"path", "sha256", "n", "k", "t", "any_nk"} (path None: in
        memory; n, k: what it was trained for, ANY_N_MAX and 0 for an any-(N, K) sampler)."""
        return {"path": self.metadata.get("path"), "sha256": self.file_sha256, "n": self.n, "k": self.k, "t": self.t,
                "any_nk": self.any_nk}


def learned_centres(model: SamplerModel, mask: np.ndarray, n: int | None = None,
                    k: int | None = None, spacing=(1.0, 1.0, 1.0)) -> tuple[np.ndarray, np.ndarray]:
    """Inference: (X, Y, Z) mask -> (generated, projected), each (N, 3) float32 voxel index.
    The projected points are the patch centres (the soft projection is kept at inference, T §3.6, §5.4).
    An any-(N, K) sampler needs `n` and `k` (the first N of its ordered centres for patch size K;
    ValueError outside its range, `check_any_setting`); a per-(N, K) sampler ignores them.
    `spacing` (3,) mm: the distances of a "voxels" continuation (`voxel_continuation`; both arrays
    then hold its FPS voxels after the lead)."""
    cloud, norm = simplified_cloud(mask)
    model.sampler.eval()
    if model.any_nk:
        if n is None or k is None:
            raise ValueError("the any-(N, K) learned sampler needs N and K")
        check_any_setting(n, k, model.n)
    with torch.no_grad():
        generated, projected = model.sampler(torch.from_numpy(cloud)[None], k)
    take = slice(0, n if model.any_nk else model.n)
    generated, projected = (norm.inverse(x[0, take].numpy()).astype(np.float32) for x in (generated, projected))
    lead = model.sampler.voxel_lead
    if lead and len(projected) > lead:
        head = distinct_centres(projected[:lead], mask)            # FPS continues from the centres placed
        rest = voxel_continuation(head, len(projected) - lead, mask, spacing,
                                  model.sampler.continuation == "central-voxels")
        generated, projected = np.concatenate([generated[:lead], rest]), np.concatenate([head, rest])
    return generated, distinct_centres(projected, mask)


def distinct_centres(centres: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(N, 3) float32 voxel-index centres, with each centre that rounds to the voxel of an
    earlier one replaced by the mask voxel farthest (in voxels) from all earlier centres -- one
    FPS step, so no two patches share a centre voxel. In order: a prefix's centres never depend
    on later ones (an any-(N, K) sampler's prefixes stay nested). Unchanged without duplicates
    (measured: 2 of 64 kidney centres at K = 3 round to a voxel already taken)."""
    out, taken, voxels = centres.copy(), set(), None
    for i in range(len(out)):
        key = tuple(np.floor(out[i] + 0.5).astype(int))
        if key in taken:
            voxels = dense_cloud(mask) if voxels is None else voxels
            gaps = ((voxels[:, None, :] - out[None, :i]) ** 2).sum(-1).min(1)
            out[i] = voxels[int(np.argmax(gaps))]
            key = tuple(np.floor(out[i] + 0.5).astype(int))
        taken.add(key)
    return out


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
    if model.any_nk:
        check_any_setting(n, k, model.n)
    elif model.n != n:
        raise ValueError(f"the learned sampler {model.metadata.get('path', '')} places N={model.n} patches; "
                         f"N={n} was requested")
    notes = check_sampler_prior(model, prior)
    if model.t != t and t_note is None:
        t_note = f"the learned sampler was trained for T={model.t}, used here with T={t}"
    notes += [t_note] if t_note else []
    if model.k != k and not model.any_nk:
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
