"""The memory of prior training, bounded by a budget, and its expected peak.

Where it goes (measured, `results/memory/`): a training step runs the INR forward and backward
on batch_size x points_per_shape points; the autograd graph keeps 6.3 KB per point (the
activations of the 8 layers) and a pass peaks at 6.8 KB per point with the backward's
temporaries (`BYTES_PER_POINT` rounds up). The paper's batch, 8 x 64^3 = 2.1 M points, in one
backward pass therefore peaked at 14.5 GB, whatever the number of training shapes; the shapes'
sampling tables (mask and surface band) take 1.7 MB per full-resolution vertebra.

The step is backpropagated in passes of at most `points_per_pass(step_memory_gb)` points and
the gradients accumulated (`backward_in_passes`): whole shapes are grouped while they fit (the
loss is a mean of per-shape terms, so this is exact); a shape larger than a pass is done in
point chunks, with the exact gradient of its soft Dice from a first pass without a graph (one
forward more). The gradient is that of the whole batch up to float rounding; when the batch
fits in one pass, the computation is the unbounded one.

GB here are 10^9 bytes.
"""
from __future__ import annotations

import numpy as np
import torch

from PatchSamplerLib.method.losses import occupancy_loss, occupancy_loss_and_logit_gradient

BYTES_PER_POINT = 7000         # peak of one pass per point: the graph's 6.3 KB + the backward's (measured 6.8 KB)
BATCH_BYTES_PER_POINT = 48     # a step's drawn points: flat indices, coordinates, labels and their stacks
PROCESS_GB = 0.30              # Python, torch, numpy, scipy, matplotlib and the decoder, before any shape
DEFAULT_STEP_MEMORY_GB = 3.0   # one default shape (64^3 points, 1.8 GB) per pass
MIN_PASS_POINTS = 1024


def points_per_pass(step_memory_gb: float) -> int:
    """The most training points one backward pass may hold within `step_memory_gb` GB of graph
    (at least MIN_PASS_POINTS). Raises ValueError for a budget that is not > 0."""
    if not step_memory_gb > 0:
        raise ValueError(f"the step memory budget must be > 0 GB, got {step_memory_gb}")
    return max(MIN_PASS_POINTS, int(step_memory_gb * 1e9 // BYTES_PER_POINT))


def shape_groups(batch: int, points: int, limit: int) -> list[range]:
    """Positions 0..batch-1 of a batch of `points` points per shape in groups of whole shapes of
    at most `limit` points; a shape over the limit is a group of its own (then chunked)."""
    size = max(1, limit // points)
    return [range(s, min(s + size, batch)) for s in range(0, batch, size)]


def largest_pass(batch: int, points: int, limit: int) -> int:
    """Points held by the largest backward pass of a step (batch shapes x points each)."""
    return limit if points > limit else len(shape_groups(batch, points, limit)[0]) * points


def expected_peak_gb(pass_points: int, table_bytes: int, batch_points: int) -> float:
    """PROCESS_GB + the shapes' tables (bytes) + the largest pass's graph + the step's drawn
    points (`batch_points` = batch_size x points_per_shape), in GB."""
    return PROCESS_GB + (table_bytes + pass_points * BYTES_PER_POINT + batch_points * BATCH_BYTES_PER_POINT) / 1e9


def resident_bytes(items) -> int:
    """Bytes of the distinct buffers among numpy arrays and torch tensors `items` (a buffer
    shared by several, e.g. a mask and its flat tensor view, counts once; None is skipped)."""
    seen = {}
    for item in items:
        if item is None:
            continue
        if isinstance(item, torch.Tensor):
            storage = item.untyped_storage()
            seen[storage.data_ptr()] = max(seen.get(storage.data_ptr(), 0), storage.nbytes())
        else:
            base = np.asarray(item)
            seen[base.ctypes.data] = max(seen.get(base.ctypes.data, 0), base.nbytes)
    return sum(seen.values())


def backward_in_passes(decoder, latents: torch.Tensor, ids: torch.Tensor, coords: torch.Tensor,
                       labels: torch.Tensor, limit: int, extra: torch.Tensor | None = None) -> float:
    """Accumulate into .grad the gradient of occupancy_loss(decoder(coords, latents[ids]), labels)
    (+ `extra`, a scalar on the graph, e.g. the latent regulariser), with no backward pass
    holding more than `limit` points. ids (B,) rows of latents (S, D); coords (B, P, 3) mm;
    labels (B, P) 0/1. Returns the loss value (the mean over the B shapes, + extra)."""
    batch, points = labels.shape
    total = 0.0
    for group in shape_groups(batch, points, limit):
        rows = slice(group.start, group.stop)
        if points > limit:
            total += _chunked_backward(decoder, latents, int(ids[group.start]), coords[group.start],
                                       labels[group.start], limit, 1.0 / batch)
            continue
        loss = occupancy_loss(decoder(coords[rows], latents[ids[rows]]), labels[rows]) * (len(group) / batch)
        if extra is not None:
            loss, extra = loss + extra, None
        loss.backward()
        total += float(loss.detach())
    if extra is not None:
        extra.backward()
        total += float(extra.detach())
    return total


def _chunked_backward(decoder, latents: torch.Tensor, row: int, coords: torch.Tensor, labels: torch.Tensor,
                      chunk: int, weight: float) -> float:
    """`weight` x (BCE + 1 - soft Dice) of one shape, coords (P, 3), labels (P,), backpropagated
    `chunk` points at a time: pass 1 (no graph) gives the soft Dice's sums and so dL/dlogit;
    pass 2 backpropagates each chunk's dL/dlogit . logit. Returns the weighted loss value."""
    with torch.no_grad():
        feats = decoder.latent_features(latents[row:row + 1])
        logits = torch.cat([decoder.forward_features(coords[None, s:s + chunk], feats)[0]
                            for s in range(0, len(coords), chunk)])
    loss, d_logit = occupancy_loss_and_logit_gradient(logits, labels)
    for s in range(0, len(coords), chunk):
        part = decoder.forward_features(coords[None, s:s + chunk], decoder.latent_features(latents[row:row + 1]))[0]
        (part * (weight * d_logit[s:s + chunk])).sum().backward()
    return weight * loss
