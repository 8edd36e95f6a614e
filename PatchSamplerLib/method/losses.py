"""Reconstruction losses [A §2; T §3.5]: soft Dice and BCE on occupancy logits.

Later stages add the sampler losses (proximity, repulsion) here.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

SOFT_DICE_EPS = 1e-3


def soft_dice(prob: torch.Tensor, target: torch.Tensor, eps: float = SOFT_DICE_EPS,
              weights: torch.Tensor | None = None) -> torch.Tensor:
    """(2 sum p t + eps) / (sum p + sum t + eps) over the last dim; (..., P) -> (...). With
    `weights` (..., P) every sum is the weighted sum (an importance-sampled subset's estimate)."""
    if weights is None:
        return (2.0 * (prob * target).sum(-1) + eps) / (prob.sum(-1) + target.sum(-1) + eps)
    inter = (weights * prob * target).sum(-1)
    return (2.0 * inter + eps) / ((weights * prob).sum(-1) + (weights * target).sum(-1) + eps)


def occupancy_loss(logits: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """BCE (mean over points) + (1 - soft Dice), each per volume, averaged over volumes.

    logits, target: (..., P) with one volume per leading index. Returns a scalar. Half-precision
    logits (a bf16 autocast) are taken to float32 first, so the soft Dice's sums over thousands
    of points are not rounded to an 8-bit mantissa; float32 / float64 stay as they are.
    weights: None, or (..., P) importance weights of points drawn non-uniformly (mean 1 per
    volume): the BCE mean and the soft Dice's sums are weighted by them (`inr.fit_latent`)."""
    if logits.dtype in (torch.bfloat16, torch.float16):
        logits = logits.float()
    target = target.to(logits.dtype)
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    bce = (bce if weights is None else bce * weights).mean(-1)
    dice = soft_dice(torch.sigmoid(logits), target, weights=weights)
    return (bce + 1.0 - dice).mean()


def occupancy_loss_and_logit_gradient(logits: torch.Tensor, target: torch.Tensor) -> tuple[float, torch.Tensor]:
    """One volume's `occupancy_loss` (BCE + 1 - soft Dice) and its gradient dL/dlogit, in closed
    form and without a graph: the soft Dice couples every point through its sums, so a loss over
    more points than fit in one graph is backpropagated chunk by chunk as sum(dL/dlogit . logit)
    once these are known.

    logits, target: (P,). Returns (loss value, (P,) dL/dlogit in float32 or wider)."""
    logits = logits.detach()
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))       # half precision summed in fp32
    target = target.to(logits.dtype)
    p = torch.sigmoid(logits)
    inter, total = (p * target).sum(), p.sum() + target.sum() + SOFT_DICE_EPS
    d_dice_dp = (2 * target * total - (2 * inter + SOFT_DICE_EPS)) / total ** 2
    d_logit = (p - target) / len(target) - d_dice_dp * p * (1 - p)
    return float(occupancy_loss(logits, target)), d_logit


def latent_regulariser(latents: torch.Tensor) -> torch.Tensor:
    """mean over latents of ||z||^2; latents (..., D) -> scalar."""
    return latents.pow(2).sum(-1).mean()


# ---------------------------------------------------------------- sampler losses [T §3.6]
def _squared_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(B, m, 3), (B, n, 3) -> (B, m, n) squared Euclidean distances."""
    return (a[:, :, None, :] - b[:, None, :, :]).pow(2).sum(-1)


def proximity_loss(generated: torch.Tensor, cloud: torch.Tensor, with_max: bool = False) -> torch.Tensor:
    """mean over g of min_p ||g - p||^2 (averaged over the batch); `with_max` adds SampleNet's
    max_g min_p ||g - p||^2 (ablation)."""
    nearest = _squared_distances(generated, cloud).min(dim=2).values          # (B, m)
    loss = nearest.mean(dim=1)
    if with_max:
        loss = loss + nearest.max(dim=1).values
    return loss.mean()


def repulsion_loss(points: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """sum over pairs i < j of 1 / ||r_i - r_j||^2 (averaged over the batch). (B, m, 3) -> scalar."""
    d2 = _squared_distances(points, points)
    upper = torch.triu(torch.ones_like(d2[0], dtype=torch.bool), diagonal=1)
    return (1.0 / (d2[:, upper] + eps)).sum(dim=1).mean()


def coverage_loss(points: torch.Tensor, cloud: torch.Tensor) -> torch.Tensor:
    """SampleNet's coverage term (ablation for repulsion): mean over p of min_g ||p - g||^2."""
    return _squared_distances(cloud, points).min(dim=2).values.mean()
