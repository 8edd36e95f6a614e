"""The auto-decoder occupancy INR of Amiranashvili et al. [A §2, App. A].

f_theta(x, z) -> occupancy logit, x in millimetres relative to the shape's frame centre,
z in R^128. MLP of width 128 with 8 linear layers: 7 blocks Linear + ReLU and a final
Linear(128 -> 1). The coordinates are concatenated to the features at the input of block 0
(with z: 131 inputs) and of block 4 (131 inputs); blocks 1-3 and 5-6 are residual,
h + ReLU(W h + b). 116,481 weights (+128 per latent).

Block 0 is evaluated as W_z z + W_x x: the latent half is computed once per shape, not once
per point -- the same function, fewer multiply-adds.

Also here: latent fitting [T eq. 3.10] (plain and differentiable) and `ShapePrior`, a trained
decoder with its frame. Decoding a grid [T eq. 3.11] is `method.decoding`.
"""
from __future__ import annotations

import copy
import math

import torch
import torch.nn as nn

from PatchSamplerLib.method.fit_step import Frozen, fit_step_
from PatchSamplerLib.method.losses import latent_regulariser, occupancy_loss

LATENT_DIM = 128
WIDTH = 128
N_BLOCKS = 7
COORD_BLOCKS = (0, 4)
DEFAULT_FIT_LR = 1e-2
DEFAULT_LATENT_REG = 1e-4


class OccupancyDecoder(nn.Module):
    """The INR MLP. forward(coords (B, P, 3) mm, latents (B, D)) -> logits (B, P)."""

    def __init__(self, latent_dim: int = LATENT_DIM, width: int = WIDTH):
        super().__init__()
        self.latent_dim, self.width = latent_dim, width
        blocks = []
        for b in range(N_BLOCKS):
            fan_in = (latent_dim if b == 0 else width) + (3 if b in COORD_BLOCKS else 0)
            blocks.append(nn.Linear(fan_in, width))
        self.blocks = nn.ModuleList(blocks)
        self.out = nn.Linear(width, 1)

    def latent_features(self, latents: torch.Tensor) -> torch.Tensor:
        """(B, D) -> (B, W): the latent's share of block 0's pre-activation, bias included."""
        w = self.blocks[0].weight
        return latents @ w[:, :self.latent_dim].T + self.blocks[0].bias

    def forward(self, coords: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        return self.forward_features(coords, self.latent_features(latents))

    def forward_features(self, coords: torch.Tensor, latent_feats: torch.Tensor) -> torch.Tensor:
        """coords (B, P, 3), latent_feats (B, W) from `latent_features` -> logits (B, P)."""
        w0 = self.blocks[0].weight[:, self.latent_dim:]
        h = torch.relu(coords @ w0.T + latent_feats[:, None, :])
        for b in range(1, N_BLOCKS):
            layer = self.blocks[b]
            if b in COORD_BLOCKS:
                h = torch.relu(layer(torch.cat([h, coords], dim=-1)))
            else:
                h = h + torch.relu(layer(h))
        return self.out(h).squeeze(-1)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def initial_latent(batch: int, latent_dim: int = LATENT_DIM, std: float = 1e-4, seed: int = 0,
                   device="cpu") -> torch.Tensor:
    """(B, D) latent initialisation z ~ N(0, std^2) [A §2], reproducible by seed."""
    g = torch.Generator().manual_seed(int(seed))
    return (torch.randn(batch, latent_dim, generator=g) * std).to(device)


def fit_latent(decoder: OccupancyDecoder, coords: torch.Tensor, labels: torch.Tensor, steps: int = 100,
               lr: float = DEFAULT_FIT_LR, reg: float = DEFAULT_LATENT_REG, seed: int = 0,
               init: torch.Tensor | None = None, callback=None, points_per_step: int | None = None,
               stop=None, sampling: torch.Tensor | None = None) -> torch.Tensor:
    """Fit latents to observed occupancies with the decoder frozen [T eq. 3.10].

    coords: (B, P, 3) mm in the INR frame; labels: (B, P) 0/1. Adam on z for `steps` steps,
    loss BCE + (1 - soft Dice) + reg * ||z||^2. With `points_per_step` < P each step uses that
    many of the P points, drawn uniformly with replacement (seeded by `seed`); else all of them.
    `sampling` (B, P) >= 0, with `points_per_step`: draw point i of volume b with probability
    proportional to sampling[b, i] instead, each drawn point's loss weighted by 1 / (P q_i),
    scaled to mean 1 per volume (importance sampling: the subset's loss and gradient estimate
    those of all P points, `method.fitting`'s boundary-weighted fast fit).
    `callback(step)` is called after every step (for progress; it may raise to cancel);
    `stop(step, z)` may end the fit early by returning True. Returns detached (B, D) latents.
    On CUDA (fp32 / TF32, no `stop`, subsets of at most 32,768 points) the T steps run as one
    CUDA graph, captured on the first fit of their shapes and replayed after (`method.graphs`;
    `callback(T)` once, at the end); the same steps and draws.

    The step is `fit_step.fit_step_`; its Adam update the same operations as torch.optim.Adam (same values):
    constructing a torch optimiser imports torch._dynamo, about 1.5 s of an interactive run on a
    2-core CPU."""
    if steps < 0:
        raise ValueError(f"the number of latent-fit steps T must be >= 0, got {steps}")
    coords, labels = coords.detach(), labels.detach().to(coords.dtype)
    z = init.clone() if init is not None else initial_latent(coords.shape[0], decoder.latent_dim, seed=seed,
                                                             device=coords.device)
    z = z.to(coords).requires_grad_(True)
    m, v = torch.zeros_like(z), torch.zeros_like(z)

    def subsets():
        return (_point_subsets(coords.shape[1], points_per_step, seed) if sampling is None
                else _weighted_subsets(sampling, points_per_step, steps, seed))

    from PatchSamplerLib.method.graphs import graph_fit_applies, graphed_fit
    if steps > 0 and graph_fit_applies(coords, points_per_step, stop):
        fitted = graphed_fit(decoder, coords, labels, subsets(), z.detach(), steps, lr, reg)
        if fitted is not None:
            if callback is not None:
                callback(steps)
            return fitted
    subset = subsets()
    with Frozen(decoder):
        for step in range(steps):
            fit_step_(decoder, coords, labels, next(subset), z, m, v, step + 1, lr, reg)
            if callback is not None:
                callback(step + 1)
            if stop is not None and stop(step + 1, z.detach()):
                break
    return z.detach()


def _weighted_subsets(sampling: torch.Tensor, size: int | None, steps: int, seed: int):
    """`steps` draws of `size` points per volume with probability proportional to `sampling`
    (B, P), with replacement, seeded: ((B, size) indices, (B, size) importance weights 1 / (P q),
    scaled to mean 1 per volume); all points (None) when size is None or >= P. Drawn at once
    (one cumulative sum over P, not one per step)."""
    total = sampling.shape[-1]
    if size is None or size >= total:
        yield from _point_subsets(total, None, seed)
        return
    q = sampling.detach().to("cpu", torch.float64)
    q = q / q.sum(-1, keepdim=True)
    g = torch.Generator().manual_seed(int(seed))
    idx = torch.multinomial(q, steps * int(size), replacement=True, generator=g).reshape(len(q), steps, -1)
    for step in range(steps):
        weights = 1.0 / (total * q.gather(1, idx[:, step]))
        yield idx[:, step], (weights / weights.mean(-1, keepdim=True)).float()


def _point_subsets(total: int, size: int | None, seed: int):
    """Endless (size,) index tensors into `total` points (with replacement); None = all points."""
    if size is None or size >= total:
        while True:
            yield None
    g = torch.Generator().manual_seed(int(seed))
    while True:
        yield torch.randint(total, (int(size),), generator=g)


def fit_latent_unrolled(decoder: OccupancyDecoder, coords: torch.Tensor, labels: torch.Tensor, steps: int = 100,
                        lr: float = DEFAULT_FIT_LR, reg: float = DEFAULT_LATENT_REG, seed: int = 0,
                        init: torch.Tensor | None = None, betas=(0.9, 0.999), eps: float = 1e-8,
                        per_step: bool = False) -> torch.Tensor:
    """Latent fit that stays on the autograd graph [T §3.6]: the returned (B, D) latents are a
    differentiable function of `coords` (B, P, 3) (and of the decoder's weights).

    The same T Adam steps as `fit_latent` and `torch.optim.Adam` (identical trajectory), written
    out so that every update is a tensor operation (create_graph=True): an exact unroll,
    equivalent to the `higher` library's differentiable optimiser. `labels` (B, P) may depend
    on the coordinates too (soft labels); their gradient is kept. With `per_step`, coords are
    (T, B, M, 3) and labels (T, B, M): step t sees its own points (the fast fit's subsets,
    `method.fitting`, unrolled)."""
    if steps < 0:
        raise ValueError(f"the number of latent-fit steps T must be >= 0, got {steps}")
    if per_step and len(coords) < steps:
        raise ValueError(f"per-step points for {len(coords)} steps, {steps} steps asked")
    labels = labels.to(coords.dtype)          # kept on the graph when they depend on the coordinates
    z = init.clone() if init is not None else initial_latent(coords.shape[-3], decoder.latent_dim, seed=seed,
                                                             device=coords.device)
    z = z.to(coords).requires_grad_(True)
    m, v = torch.zeros_like(z), torch.zeros_like(z)
    b1, b2 = betas
    for step in range(1, steps + 1):
        c, y = (coords[step - 1], labels[step - 1]) if per_step else (coords, labels)
        loss = occupancy_loss(decoder(c, z), y) + reg * latent_regulariser(z)
        (g,) = torch.autograd.grad(loss, z, create_graph=True)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        denom = torch.sqrt(torch.clamp(v, min=1e-30)) / math.sqrt(1 - b2 ** step) + eps
        z = z - (lr / (1 - b1 ** step)) * m / denom
    return z


class ShapePrior:
    """A trained INR with its training frame.

    decoder: the frozen OccupancyDecoder. extent_mm: (3,) size of the training volumes' box
    (x, y, z) in mm, centred on the shape's bounding-box centre; outside it the prior knows
    nothing and the pipeline predicts background. spacing_mm: (3,) training voxel spacing.
    metadata: provenance (data, hyperparameters, epochs, validation Dice, command line)."""

    KIND = "prior"

    def __init__(self, decoder: OccupancyDecoder, extent_mm, spacing_mm, metadata: dict | None = None):
        self.decoder = decoder.eval()
        self.extent_mm = tuple(float(e) for e in extent_mm)
        self.spacing_mm = tuple(float(s) for s in spacing_mm)
        self.metadata = dict(metadata or {})

    def on(self, device) -> "ShapePrior":
        """This prior on `device` (a torch.device or its name): itself when its decoder is there
        already, else a copy there -- the caller's prior is never moved."""
        device = torch.device(device)
        current = next(self.decoder.parameters()).device
        if current.type == device.type and (device.index is None or current.index == device.index):
            return self
        return ShapePrior(copy.deepcopy(self.decoder).to(device), self.extent_mm, self.spacing_mm, self.metadata)

    def fingerprint(self) -> str:
        """SHA-256 of the decoder's weights (`checkpoints.weights_sha256`): which prior this is,
        whatever its file name or path; a learned sampler records it at training."""
        from PatchSamplerLib.checkpoints import weights_sha256
        return weights_sha256(self.decoder.state_dict())

    def save(self, path) -> None:
        from PatchSamplerLib.checkpoints import save_checkpoint
        meta = dict(self.metadata, extent_mm=self.extent_mm, spacing_mm=self.spacing_mm,
                    latent_dim=self.decoder.latent_dim, width=self.decoder.width)
        save_checkpoint(path, self.KIND, self.decoder.state_dict(), meta)

    @classmethod
    def load(cls, name_or_path, device="cpu") -> "ShapePrior":
        """Load a bundled prior by name (`checkpoints.bundled_models`: kidney, kidney-anatomical, vertebra,
        vertebra-anatomical and their *_sparse8_x versions) or from a file. Raises CheckpointError."""
        from PatchSamplerLib.checkpoints import CheckpointError, load_checkpoint, resolve_prior_path
        path = resolve_prior_path(name_or_path)
        state, meta = load_checkpoint(path, cls.KIND)
        decoder = OccupancyDecoder(meta.get("latent_dim", LATENT_DIM), meta.get("width", WIDTH))
        try:
            decoder.load_state_dict(state)
        except RuntimeError as exc:
            raise CheckpointError(f"{path}: weights do not fit the INR architecture ({exc})") from None
        prior = cls(decoder.to(device), meta["extent_mm"], meta["spacing_mm"], meta)
        prior.metadata["path"] = str(path)
        return prior
