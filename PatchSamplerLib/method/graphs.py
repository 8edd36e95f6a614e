"""The latent fit as one CUDA graph (issue #19, item 3: a fit that is not bound by kernel launches).

On the lent H200 (sixth session, `results/gpu/README.md`) a T = 100 fit took 0.33-0.42 s for every
(N, K), 6-54 times its FLOP floor: each of its ~100 steps launches some 60 small kernels
(forward, backward to the latent, Adam), and launching them, not running them, was the cost. A
CUDA graph records the kernels of all T steps once and replays them with one launch.

How (PyTorch's "whole-network capture", `torch.cuda.graph`): the fit's inputs live in static
buffers -- the patch coordinates (B, P, 3), labels (B, P), the T steps' point subsets drawn
beforehand (the same draws, in the same order, as the eager `inr.fit_latent`), the start latent
-- and the captured body resets the latent and the Adam moments from them, then runs the T steps
of `inr.fit_latent` unchanged. A fit copies its inputs into the buffers and replays. The graph is
captured on the first fit of a (decoder, shapes, T, learning rate, subset size) and kept
(`MAX_GRAPHS` per decoder, the oldest dropped; a decoder's graphs go with it), so the first fit
costs about an eager fit (a 2-step eager warm-up, then the capture) and the next ones the replay.
A decoder's graphs share one memory pool: every tensor a graph allocates is freed within it (its
results are the static buffers, allocated outside), graphs never run at the same time, so they
may use the same memory in any order -- the pool holds about one step's activations of the
largest (at 32,768 points about 0.6 GB), not one per graph.

Used by `inr.fit_latent` on CUDA when `graph_fit_applies`: fp32 / TF32 (not under autocast),
no early stop, at most `GRAPH_MAX_POINTS` points a step (the pool keeps its activations'
memory), the environment variable PATCHSAMPLER_CUDA_GRAPHS not "0". A capture that fails falls
back to the eager fit, with a warning, for the rest of the process. Progress: one callback,
after the replay (`callback(T)`). Nothing changes on the CPU.
"""
from __future__ import annotations

import os
import warnings
import weakref
from collections import OrderedDict

import torch

from PatchSamplerLib.method.fit_step import Frozen, fit_step_

GRAPH_MAX_POINTS = 32768        # points per step (times volumes) above which a fit is not captured
MAX_GRAPHS = 8                  # graphs kept per decoder
WARMUP_STEPS = 2                # eager steps on the capture stream before the capture
ENVIRONMENT_SWITCH = "PATCHSAMPLER_CUDA_GRAPHS"

_GRAPHS: "weakref.WeakKeyDictionary[torch.nn.Module, OrderedDict]" = weakref.WeakKeyDictionary()
_POOLS: "weakref.WeakKeyDictionary[torch.nn.Module, object]" = weakref.WeakKeyDictionary()   # decoder -> pool
_STATE = {"failed": None}       # the first capture error of this process (then: eager fits only)


def graph_fit_applies(coords: torch.Tensor, points_per_step: int | None, stop) -> bool:
    """Whether `inr.fit_latent` on coords (B, P, 3) runs as a CUDA graph (module docstring)."""
    if not coords.is_cuda or stop is not None or _STATE["failed"] is not None:
        return False
    if os.environ.get(ENVIRONMENT_SWITCH, "1") == "0" or torch.is_autocast_enabled("cuda"):
        return False
    points = coords.shape[1] if points_per_step is None else min(coords.shape[1], int(points_per_step))
    return coords.shape[0] * points <= GRAPH_MAX_POINTS and not torch.cuda.is_current_stream_capturing()


def stacked_draws(subsets, steps: int) -> tuple[str, tuple[torch.Tensor, ...]]:
    """The next `steps` draws of `inr.fit_latent`'s subset iterator as tensors: ("all", ()) for
    all points, ("shared", ((T, M) indices,)) for subsets shared by the volumes, ("weighted",
    ((T, B, M) indices, (T, B, M) weights)) for importance-weighted ones."""
    draws = [next(subsets) for _ in range(steps)]
    if not draws or draws[0] is None:
        return "all", ()
    if isinstance(draws[0], torch.Tensor):
        return "shared", (torch.stack(draws),)
    return "weighted", (torch.stack([d[0] for d in draws]), torch.stack([d[1] for d in draws]))


def step_draw(kind: str, draws: tuple[torch.Tensor, ...], step: int):
    """Step `step`'s draw in the form `fit_step.step_points` takes (None, (M,) or ((B, M), (B, M)))."""
    if kind == "all":
        return None
    if kind == "shared":
        return draws[0][step]
    return draws[0][step], draws[1][step]


class FitProgram:
    """Static buffers of one fit shape and the body that fits from them: coords (B, P, 3),
    labels (B, P), the T steps' draws, the start latent z0 (B, D); z, m, v the latent and its
    Adam moments. `body(steps)` runs `steps` steps of `inr.fit_latent` from z0 on the buffers
    (the body a graph captures); `load(...)` copies a fit's inputs into the buffers."""

    def __init__(self, decoder, coords, labels, kind, draws, z0, lr: float, reg: float):
        self.decoder, self.kind, self.lr, self.reg = decoder, kind, float(lr), float(reg)
        self.coords, self.labels = torch.empty_like(coords), torch.empty_like(labels)
        self.draws = tuple(torch.empty_like(d, device=coords.device) for d in draws)
        self.z0 = torch.empty_like(z0)
        self.z = torch.zeros_like(z0).requires_grad_(True)
        self.m, self.v = torch.zeros_like(z0), torch.zeros_like(z0)
        self.load(coords, labels, draws, z0)

    def load(self, coords, labels, draws, z0) -> None:
        for static, value in zip((self.coords, self.labels, self.z0) + self.draws, (coords, labels, z0) + draws):
            static.copy_(value)

    def body(self, steps: int) -> None:
        with torch.no_grad():
            self.z.copy_(self.z0)
            self.m.zero_()
            self.v.zero_()
        with Frozen(self.decoder):
            for step in range(steps):
                fit_step_(self.decoder, self.coords, self.labels, step_draw(self.kind, self.draws, step), self.z,
                          self.m, self.v, step + 1, self.lr, self.reg)

    def result(self) -> torch.Tensor:
        return self.z.detach().clone()


class FitGraph:
    """A FitProgram of T steps captured as one CUDA graph."""

    def __init__(self, program: FitProgram, steps: int, pool=None):
        self.program = program
        device = program.coords.device
        stream = torch.cuda.Stream(device)
        stream.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(stream):                      # warm-up on the capture stream: cuBLAS, autograd
            program.body(min(steps, WARMUP_STEPS))
        torch.cuda.current_stream(device).wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph, pool=pool, stream=stream):
            program.body(steps)
        program.decoder = None                               # the graph keeps no reference to its decoder

    def fit(self, coords, labels, draws, z0) -> torch.Tensor:
        self.program.load(coords, labels, draws, z0)
        self.graph.replay()
        return self.program.result()


def graph_key(decoder, coords, labels, kind, draws, steps, lr, reg) -> tuple:
    """What a captured graph depends on: shapes, dtypes, device, T, learning rate, regulariser,
    the draws' kind and shapes and the decoder's parameter storage (replaced weights: a new graph)."""
    return (tuple(coords.shape), coords.dtype, labels.dtype, str(coords.device), int(steps), float(lr), float(reg),
            kind, tuple(tuple(d.shape) for d in draws), tuple(p.data_ptr() for p in decoder.parameters()))


def graphed_fit(decoder, coords, labels, subsets, z0, steps: int, lr: float, reg: float) -> torch.Tensor | None:
    """`inr.fit_latent`'s result (B, D) by a CUDA graph of its T steps: captured on the first fit of
    this key, replayed after. None when the capture failed (a warning; the caller fits eagerly)."""
    kind, draws = stacked_draws(subsets, steps)
    draws = tuple(d.to(coords.device) for d in draws)
    graphs = _GRAPHS.setdefault(decoder, OrderedDict())
    key = graph_key(decoder, coords, labels, kind, draws, steps, lr, reg)
    graph = graphs.get(key)
    if graph is None:
        try:
            pool = _POOLS.setdefault(decoder, torch.cuda.graph_pool_handle())
            graph = FitGraph(FitProgram(decoder, coords, labels, kind, draws, z0, lr, reg), steps, pool)
        except RuntimeError as exc:
            _STATE["failed"] = str(exc)
            warnings.warn(f"the latent fit could not be captured as a CUDA graph ({exc}); fitting without graphs "
                          f"from now on (set {ENVIRONMENT_SWITCH}=0 to skip the attempt)")
            return None
        graphs[key] = graph
        while len(graphs) > MAX_GRAPHS:
            graphs.popitem(last=False)
    graphs.move_to_end(key)
    return graph.fit(coords, labels, draws, z0)


def captured_graphs(decoder) -> int:
    """How many fit graphs are kept for `decoder` (tests, benchmarks)."""
    return len(_GRAPHS.get(decoder, ()))
