"""Reconstruction losses [A §2, SPEC 2.5]: soft Dice and BCE on occupancy logits.

Later stages add the sampler losses (proximity, repulsion) here.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

SOFT_DICE_EPS = 1e-3


def soft_dice(prob: torch.Tensor, target: torch.Tensor, eps: float = SOFT_DICE_EPS) -> torch.Tensor:
    """(2 sum p t + eps) / (sum p + sum t + eps) over the last dim; (..., P) -> (...)."""
    inter = (prob * target).sum(-1)
    return (2.0 * inter + eps) / (prob.sum(-1) + target.sum(-1) + eps)


def occupancy_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """BCE (mean over points) + (1 - soft Dice), each per volume, averaged over volumes.

    logits, target: (..., P) with one volume per leading index. Returns a scalar."""
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none").mean(-1)
    dice = soft_dice(torch.sigmoid(logits), target)
    return (bce + 1.0 - dice).mean()


def latent_regulariser(latents: torch.Tensor) -> torch.Tensor:
    """mean over latents of ||z||^2; latents (..., D) -> scalar."""
    return latents.pow(2).sum(-1).mean()
