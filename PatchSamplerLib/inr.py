"""Stage 2.5 of SPEC.md: the auto-decoder occupancy INR of Amiranashvili et al. [A §2, App. A].

f_theta(x, z) -> occupancy logit, x in millimetres relative to the shape's frame centre,
z in R^128. MLP of width 128 with 8 linear layers: 7 blocks Linear + ReLU and a final
Linear(128 -> 1). The coordinates are concatenated to the features at the input of block 0
(with z: 131 inputs) and of block 4 (131 inputs); blocks 1-3 and 5-6 are residual,
h + ReLU(W h + b). 116,481 weights (+128 per latent).

Block 0 is evaluated as W_z z + W_x x: the latent half is computed once per shape, not once
per point -- the same function, fewer multiply-adds.

Also here: latent fitting [T eq. 3.10] and dense decoding in chunks [T eq. 3.11].
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from .losses import latent_regulariser, occupancy_loss

LATENT_DIM = 128
WIDTH = 128
N_BLOCKS = 7
COORD_BLOCKS = (0, 4)
DEFAULT_FIT_LR = 1e-2
DEFAULT_LATENT_REG = 1e-4
DEFAULT_CHUNK = 65536


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


class _Frozen:
    """Context: parameters of `module` do not require grad inside (restored after)."""

    def __init__(self, module: nn.Module):
        self.module = module

    def __enter__(self):
        self.flags = [p.requires_grad for p in self.module.parameters()]
        self.module.requires_grad_(False)

    def __exit__(self, *exc):
        for p, f in zip(self.module.parameters(), self.flags):
            p.requires_grad_(f)


def initial_latent(batch: int, latent_dim: int = LATENT_DIM, std: float = 1e-4, seed: int = 0,
                   device="cpu") -> torch.Tensor:
    """(B, D) latent initialisation z ~ N(0, std^2) [A §2], reproducible by seed."""
    g = torch.Generator().manual_seed(int(seed))
    return (torch.randn(batch, latent_dim, generator=g) * std).to(device)


def fit_latent(decoder: OccupancyDecoder, coords: torch.Tensor, labels: torch.Tensor, steps: int = 100,
               lr: float = DEFAULT_FIT_LR, reg: float = DEFAULT_LATENT_REG, seed: int = 0,
               init: torch.Tensor | None = None, callback=None, points_per_step: int | None = None,
               stop=None) -> torch.Tensor:
    """Fit latents to observed occupancies with the decoder frozen [T eq. 3.10].

    coords: (B, P, 3) mm in the INR frame; labels: (B, P) 0/1. Adam on z for `steps` steps,
    loss BCE + (1 - soft Dice) + reg * ||z||^2. With `points_per_step` < P each step uses that
    many of the P points, drawn uniformly with replacement (seeded by `seed`); else all of them.
    `callback(step)` is called after every step (for progress; it may raise to cancel);
    `stop(step, z)` may end the fit early by returning True. Returns detached (B, D) latents."""
    if steps < 0:
        raise ValueError(f"the number of latent-fit steps T must be >= 0, got {steps}")
    coords, labels = coords.detach(), labels.detach().to(coords.dtype)
    z = init.clone() if init is not None else initial_latent(coords.shape[0], decoder.latent_dim, seed=seed,
                                                             device=coords.device)
    z = z.to(coords).requires_grad_(True)
    opt = torch.optim.Adam([z], lr=lr)
    subset = _point_subsets(coords.shape[1], points_per_step, seed)
    with _Frozen(decoder):
        for step in range(steps):
            opt.zero_grad(set_to_none=True)
            idx = next(subset)
            c, y = (coords, labels) if idx is None else (coords[:, idx.to(coords.device)], labels[:, idx.to(coords.device)])
            loss = occupancy_loss(decoder(c, z), y) + reg * latent_regulariser(z)
            loss.backward()
            opt.step()
            if callback is not None:
                callback(step + 1)
            if stop is not None and stop(step + 1, z.detach()):
                break
    return z.detach()


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
                        init: torch.Tensor | None = None, betas=(0.9, 0.999), eps: float = 1e-8) -> torch.Tensor:
    """Latent fit that stays on the autograd graph [T §3.6]: the returned (B, D) latents are a
    differentiable function of `coords` (B, P, 3) (and of the decoder's weights).

    The same T Adam steps as `fit_latent` and `torch.optim.Adam` (identical trajectory), written
    out so that every update is a tensor operation (create_graph=True): an exact unroll,
    equivalent to the `higher` library's differentiable optimiser. `labels` (B, P) may depend
    on the coordinates too (soft labels); their gradient is kept."""
    if steps < 0:
        raise ValueError(f"the number of latent-fit steps T must be >= 0, got {steps}")
    labels = labels.to(coords.dtype)          # kept on the graph when they depend on the coordinates
    z = init.clone() if init is not None else initial_latent(coords.shape[0], decoder.latent_dim, seed=seed,
                                                             device=coords.device)
    z = z.to(coords).requires_grad_(True)
    m, v = torch.zeros_like(z), torch.zeros_like(z)
    b1, b2 = betas
    for step in range(1, steps + 1):
        loss = occupancy_loss(decoder(coords, z), labels) + reg * latent_regulariser(z)
        (g,) = torch.autograd.grad(loss, z, create_graph=True)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        denom = torch.sqrt(torch.clamp(v, min=1e-30)) / math.sqrt(1 - b2 ** step) + eps
        z = z - (lr / (1 - b1 ** step)) * m / denom
    return z


def _grid_axes(shape, offset, spacing, centre_mm, device, stride: int = 1) -> list[torch.Tensor]:
    """Per axis, the mm coordinates of every `stride`-th voxel centre offset, offset + stride, ..
    below offset + n (coordinates (offset + idx + 0.5) * spacing - centre_mm)."""
    return [(torch.arange(0, n, stride, device=device, dtype=torch.float32) + o + 0.5) * s - c
            for n, o, s, c in zip(shape, offset, spacing, centre_mm)]


@torch.no_grad()
def decode_grid(decoder: OccupancyDecoder, latent: torch.Tensor, shape, spacing, centre_mm,
                offset=(0, 0, 0), stride: int = 1, chunk: int = DEFAULT_CHUNK) -> torch.Tensor:
    """Occupancy probabilities at voxel centres of a grid [T eq. 3.11], in chunks.

    latent: (D,) or (1, D). shape: (X, Y, Z) voxels of the (sub)grid to decode, whose voxel
    (0, 0, 0) is voxel `offset` of the image; every `stride`-th voxel along each axis.
    Coordinates: (offset + stride * idx + 0.5) * spacing - centre_mm. Returns (x, y, z) float32
    with x = ceil(X / stride) etc."""
    device = latent.device
    latent = latent.reshape(1, -1)
    axes = _grid_axes(shape, offset, spacing, centre_mm, device, stride)
    sizes = [len(a) for a in axes]
    total = sizes[0] * sizes[1] * sizes[2]
    feats = decoder.latent_features(latent)
    out = torch.empty(total, device=device)
    yz = sizes[1] * sizes[2]
    for start in range(0, total, chunk):
        flat = torch.arange(start, min(start + chunk, total), device=device)
        i, rem = flat // yz, flat % yz
        coords = torch.stack([axes[0][i], axes[1][rem // sizes[2]], axes[2][rem % sizes[2]]], dim=-1)
        out[start:start + len(flat)] = torch.sigmoid(decoder.forward_features(coords[None], feats)[0].float())
    return out.reshape(sizes)


COARSE_STRIDE = 4
COARSE_MARGIN = 4.0   # |logit| below this at a coarse corner: refine the block
COARSE_GROW = 0       # blocks added around the refined ones (results/decode: not needed at margin 4)


def _logits_at(decoder, feats, coords: torch.Tensor, chunk: int) -> torch.Tensor:
    """(M, 3) mm -> (M,) float32 logits, in chunks (float32 also under a bf16 autocast)."""
    return torch.cat([decoder.forward_features(coords[None, s:s + chunk], feats)[0].float()
                      for s in range(0, len(coords), chunk)]) if len(coords) else coords.new_zeros(0)


def _block_corners(corner_values: torch.Tensor, blocks) -> torch.Tensor:
    """(B0 + 1, B1 + 1, B2 + 1) values at block corners -> (8, B0, B1, B2): each block's 8 corners."""
    b0, b1, b2 = blocks
    return torch.stack([corner_values[i:i + b0, j:j + b1, k:k + b2].to(torch.int64)
                        for i in (0, 1) for j in (0, 1) for k in (0, 1)])


def _to_voxels(per_block: torch.Tensor, stride: int, shape) -> torch.Tensor:
    """(B0, B1, B2) per-block values -> (X, Y, Z) per-voxel values (blocks of stride^3, cropped)."""
    out = per_block
    for axis in range(3):
        out = out.repeat_interleave(stride, axis)
    return out[:shape[0], :shape[1], :shape[2]]


@torch.no_grad()
def decode_grid_coarse_to_fine(decoder: OccupancyDecoder, latent: torch.Tensor, shape, spacing, centre_mm,
                               offset=(0, 0, 0), stride: int = COARSE_STRIDE, margin: float = COARSE_MARGIN,
                               chunk: int = DEFAULT_CHUNK, grow: int = COARSE_GROW) -> tuple[torch.Tensor, int]:
    """The `decode_grid` result (stride 1) with far fewer MLP evaluations.

    The grid is cut into blocks of `stride`^3 voxels. The INR is evaluated at the block corners
    (the voxel centres at multiples of `stride`, continuing past the grid's end). A block is
    filled with its corners' class when all 8 agree and each |logit| >= `margin`; the others,
    grown by `grow` blocks on every side (safety band), are evaluated voxel by voxel. Returns
    ((X, Y, Z) float32 probabilities, exact where evaluated and 0 / 1 where filled; number of
    points evaluated)."""
    device = latent.device
    feats = decoder.latent_features(latent.reshape(1, -1))
    blocks = [-(-n // stride) for n in shape]                                    # ceil
    corner_axes = _grid_axes([(b + 1) * stride for b in blocks], offset, spacing, centre_mm, device, stride)
    corners = torch.stack(torch.meshgrid(*corner_axes, indexing="ij"), dim=-1).reshape(-1, 3)
    logit = _logits_at(decoder, feats, corners, chunk).reshape([b + 1 for b in blocks])
    vote = _block_corners(logit >= 0, blocks).sum(0)                            # corners inside, 0..8
    refine = (vote > 0) & (vote < 8) | _block_corners(logit.abs() < margin, blocks).any(0)
    if grow > 0:
        refine = torch.nn.functional.max_pool3d(refine[None, None].float(), 2 * grow + 1, stride=1,
                                                padding=grow)[0, 0] > 0
    out = _to_voxels((vote == 8).float(), stride, shape).contiguous()
    idx = torch.nonzero(_to_voxels(refine, stride, shape))
    axes = _grid_axes(shape, offset, spacing, centre_mm, device)
    coords = torch.stack([axes[0][idx[:, 0]], axes[1][idx[:, 1]], axes[2][idx[:, 2]]], dim=-1)
    out[idx[:, 0], idx[:, 1], idx[:, 2]] = torch.sigmoid(_logits_at(decoder, feats, coords, chunk))
    return out, len(corners) + len(idx)


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

    def save(self, path) -> None:
        from .checkpoints import save_checkpoint
        meta = dict(self.metadata, extent_mm=self.extent_mm, spacing_mm=self.spacing_mm,
                    latent_dim=self.decoder.latent_dim, width=self.decoder.width)
        save_checkpoint(path, self.KIND, self.decoder.state_dict(), meta)

    @classmethod
    def load(cls, name_or_path, device="cpu") -> "ShapePrior":
        """Load a bundled prior by name (`vertebra`, `kidney`) or from a file."""
        from .checkpoints import CheckpointError, load_checkpoint, resolve_prior_path
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
