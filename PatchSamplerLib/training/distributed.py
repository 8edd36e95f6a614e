"""Prior training on several processes: PyTorch DistributedDataParallel, launched by torchrun.

    torchrun --nproc-per-node G -m PatchSamplerLib train-prior ... --device cuda   # G GPUs, NCCL
    torchrun --nproc-per-node 2 -m PatchSamplerLib train-prior ... --threads 1     # 2 CPU processes, gloo

torchrun starts G processes and sets RANK, WORLD_SIZE and LOCAL_RANK; `from_environment` joins
them into one process group (NCCL on CUDA, each process on GPU LOCAL_RANK; gloo on the CPU) and
returns None for a plain single-process run.

How a step is split (`PriorTrainer` with `distributed`): every process draws the points of the
whole global batch (`batch_size` shapes) from the same generator, so the batch order and the
draws are exactly those of one process, and keeps a contiguous share of the batch's shapes
(`Distributed.share`; in a short last batch a process may have none). It backpropagates its
share in its memory-budget passes without synchronising (DDP's `no_sync`), scales the gradient
of its share's mean loss by its share of the batch, and then one zero-weight pass through the
DDP module makes DDP all-reduce (average) every accumulated gradient. The averaged gradient is
the one-process gradient of the batch up to float rounding (sums in another order), so with the
same global batch and seed the run follows the one-process run within float tolerance.

The latent table is replicated, not sharded: every process holds all S training latents (128
floats, 512 bytes, each) with their Adam state, and DDP all-reduces the whole table's gradient with
the decoder's (rows of shapes outside the batch are zero). Why: batches are drawn at random from
all shapes, so any process may need any latent in any step; Adam moves every row in every step
(its moments decay even where the gradient is zero), so the one-process result needs the whole
table's update on every process anyway; and the table is small (220 shapes: 0.11 MB, a quarter
of the decoder's 116,481 weights; the all-reduce of both per step costs milliseconds). Sharding
would pay off only for tables of hundreds of thousands of shapes.

Only rank 0 writes (checkpoints, logs, curves: `TrainingLoop.writes`), validates (and sends the
scores to the others) and decides when the time budget is spent; `--resume` reads last.pt on
every rank.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from datetime import timedelta

import torch

from PatchSamplerLib.devices import resolve_device

TIMEOUT = timedelta(minutes=60)    # a collective may wait this long (e.g. for rank 0's validation)


@dataclass(frozen=True)
class Distributed:
    """This process's place in the process group: `rank` of `world` processes, its `device`."""
    rank: int
    world: int
    device: torch.device

    @property
    def main(self) -> bool:
        """Whether this is rank 0 (the one that writes and validates)."""
        return self.rank == 0

    def share(self, count: int) -> range:
        """Positions of a batch of `count` shapes this process takes: contiguous, the sizes of
        all processes differing by at most one (empty when count < world for some ranks)."""
        return range(self.rank * count // self.world, (self.rank + 1) * count // self.world)

    def broadcast(self, value):
        """Rank 0's `value` (any picklable object) on every process."""
        import torch.distributed as dist
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def total(self, value: float) -> float:
        """The sum of `value` over the processes (float64)."""
        import torch.distributed as dist
        tensor = torch.tensor([float(value)], dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor)
        return float(tensor.item())

    def barrier(self) -> None:
        """Wait until every process has come here."""
        import torch.distributed as dist
        dist.barrier()

    def wrap(self, module: torch.nn.Module) -> torch.nn.Module:
        """`module` (on this process's device) in DistributedDataParallel (rank 0's weights
        broadcast to all)."""
        from torch.nn.parallel import DistributedDataParallel
        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=ids)

    def on_main(self, fn) -> None:
        """Run fn() on rank 0 only; a ValueError it raises is raised on every process (so none
        waits for the others forever)."""
        error = None
        if self.main:
            try:
                fn()
            except ValueError as exc:
                error = str(exc)
        error = self.broadcast(error)
        if error is not None:
            raise ValueError(error)


class LatentDecoder(torch.nn.Module):
    """The decoder and the training latent table (S, D) as one module, the one DDP wraps:
    forward(coords (B, P, 3) mm, ids (B,) rows of the table) -> logits (B, P)."""

    def __init__(self, decoder: torch.nn.Module, latents: torch.nn.Parameter):
        super().__init__()
        self.decoder, self.latents = decoder, latents

    def forward(self, coords: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        return self.decoder(coords, self.latents[ids])


def from_environment(device: str = "cpu") -> Distributed | None:
    """Join the process group torchrun described in the environment (WORLD_SIZE > 1) -> this
    process's Distributed; None without torchrun (or with one process). `device`: cpu (gloo)
    or cuda (NCCL, GPU LOCAL_RANK; ValueError without CUDA) or auto."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return None
    import torch.distributed as dist
    chosen = resolve_device(device)
    if chosen.type == "cuda":
        chosen = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(chosen)
    dist.init_process_group("nccl" if chosen.type == "cuda" else "gloo", timeout=TIMEOUT)
    return Distributed(dist.get_rank(), dist.get_world_size(), chosen)


def finish(distributed: Distributed | None) -> None:
    """Leave the process group (nothing for a single process)."""
    if distributed is not None:
        import torch.distributed as dist
        dist.destroy_process_group()


def without_sync(ddp: torch.nn.Module | None):
    """A context in which DDP module `ddp` does not all-reduce (gradients accumulate locally);
    a plain one when `ddp` is None (one process)."""
    return ddp.no_sync() if ddp is not None else contextlib.nullcontext()


def average_gradients(ddp: torch.nn.Module, params, scale: float, device: torch.device) -> None:
    """Multiply the gradients accumulated in `params` by `scale`, then average them over the
    processes: one pass of DDP `ddp` (a LatentDecoder) on one point with weight 0, whose
    backward makes DDP all-reduce every accumulated gradient (the parameters without one get
    zeros first)."""
    for param in params:
        if param.grad is not None:
            param.grad.mul_(scale)
    logits = ddp(torch.zeros(1, 1, 3, device=device), torch.zeros(1, dtype=torch.long, device=device))
    (logits.sum() * 0.0).backward()
