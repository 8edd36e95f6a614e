"""One step of the latent fit [T eq. 3.10], shared by `inr.fit_latent` and its CUDA graph
(`graphs`): the step's points, the loss, its gradient in the latent, the Adam update."""
from __future__ import annotations

import math

import torch

from PatchSamplerLib.method.losses import latent_regulariser, occupancy_loss


class Frozen:
    """Context: parameters of `module` do not require grad inside (restored after)."""

    def __init__(self, module: torch.nn.Module):
        self.module = module

    def __enter__(self):
        self.flags = [p.requires_grad for p in self.module.parameters()]
        self.module.requires_grad_(False)

    def __exit__(self, *exc):
        for p, f in zip(self.module.parameters(), self.flags):
            p.requires_grad_(f)


def fit_step_(decoder, coords: torch.Tensor, labels: torch.Tensor, drawn, z: torch.Tensor, m: torch.Tensor,
              v: torch.Tensor, step: int, lr: float, reg: float) -> None:
    """Step `step` (from 1) of the latent fit, in place on z (B, D) and its Adam moments m, v: the
    points `drawn` of coords (B, P, 3) mm / labels (B, P) (`step_points`), loss BCE + (1 - soft
    Dice) + reg ||z||^2 through `decoder` (frozen by the caller), its gradient in z, `adam_update_`."""
    c, y, w = step_points(coords, labels, drawn)
    loss = occupancy_loss(decoder(c, z), y, w) + reg * latent_regulariser(z)
    (g,) = torch.autograd.grad(loss, z)
    with torch.no_grad():
        adam_update_(z, g, m, v, step, lr)


def adam_update_(z: torch.Tensor, g: torch.Tensor, m: torch.Tensor, v: torch.Tensor, step: int, lr: float,
                 betas=(0.9, 0.999), eps: float = 1e-8) -> None:
    """One Adam step in place on z with moments m, v (step counts from 1), written as
    torch.optim.Adam's single-tensor path (Kingma & Ba 2015, Alg. 1): the same values."""
    b1, b2 = betas
    m.lerp_(g, 1 - b1)
    v.mul_(b2).addcmul_(g, g, value=1 - b2)
    denom = (v.sqrt() / math.sqrt(1 - b2 ** step)).add_(eps)
    z.addcdiv_(m, denom, value=-lr / (1 - b1 ** step))


def step_points(coords: torch.Tensor, labels: torch.Tensor, drawn):
    """The points of one step: coords (B, M, 3), labels (B, M) and their weights (B, M) or None,
    from `drawn`: None (all points), (M,) indices shared by the volumes, or ((B, M) indices,
    (B, M) weights)."""
    if drawn is None:
        return coords, labels, None
    if isinstance(drawn, torch.Tensor):
        idx = drawn.to(coords.device)
        return coords[:, idx], labels[:, idx], None
    idx, weights = (t.to(coords.device) for t in drawn)
    return (coords.gather(1, idx[..., None].expand(-1, -1, coords.shape[-1])), labels.gather(1, idx),
            weights.to(coords.dtype))
