"""Where the sampler's end-to-end training starts (`SamplerConfig.init`, `.anchor`; only
``random`` with anchor ``none`` is in [T]). Every other start is validated as "epoch 0", so the
kept best sampler is never worse than it on the validation shapes.

- ``fps``: before the end-to-end training the generator is fitted for `init_steps` steps to
  reproduce each shape's deterministic FPS centres (`method.baselines.extreme_fps_centres`: FPS from
  the voxel farthest from the centroid, so the targets are consistent across shapes; FPS from a
  random first voxel is not, and was fitted poorly). Loss: the mean squared distance in the
  normalised cloud space after the optimal one-to-one matching (Hungarian); Adam `init_lr` with
  cosine decay, batches of `batch_size`, on the training shapes plus `init_shapes` (extra
  shapes that only this fit sees; they need no INR).
- ``file``: the weights of a sampler file (`init_from`, e.g. an FPS-fitted or a bundled sampler
  to fine-tune).
- anchor ``fps`` (with init ``random``): the generator outputs offsets from the cloud's FPS
  points (`method.sampler.cloud_fps_anchor`), zero at the start: the start *is* FPS.
"""
from __future__ import annotations

import numpy as np
import torch

from PatchSamplerLib.method.baselines import extreme_fps_centres
from PatchSamplerLib.method.pointcloud import simplified_cloud
from PatchSamplerLib.method.sampler import LearnedSampler, SamplerModel
from PatchSamplerLib.progress import tracked
from PatchSamplerLib.training.points import SamplerShape
from PatchSamplerLib.volume import BinaryVolume


def initialise(model: SamplerModel, cfg, shapes: list[SamplerShape], extra: list[BinaryVolume],
               gen: torch.Generator) -> dict:
    """Set `model`'s start as cfg.init / cfg.anchor ask (`cfg`: a `sampler.SamplerConfig`) ->
    the fields of the epoch-0 log row: {"init": .., and "from" (file) or "fit_loss" (fps)}."""
    if cfg.init == "file":
        load_start(model, cfg)
        return {"init": "file", "from": cfg.init_from}
    if cfg.init == "fps":
        clouds, targets = fps_targets(shapes, extra, cfg.n)
        return {"init": "fps", "fit_loss": imitate_fps(model.sampler, clouds, targets, cfg, gen)}
    return {"init": f"{cfg.anchor} anchor"}


def fps_targets(shapes: list[SamplerShape], extra: list[BinaryVolume], n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """-> clouds (S, 2048, 3) and deterministic FPS centres (S, n, 3) (first: the voxel farthest
    from the centroid) of `shapes` and then the `extra` volumes, in the normalised cloud space."""
    clouds = [s.cloud for s in shapes]
    targets = [s.norm.forward(extreme_fps_centres(s.volume.mask, n, s.volume.spacing)) for s in shapes]
    for vol in extra:
        cloud, norm = simplified_cloud(vol.mask)
        clouds.append(torch.from_numpy(cloud))
        targets.append(norm.forward(extreme_fps_centres(vol.mask, n, vol.spacing)))
    return torch.stack(clouds), torch.as_tensor(np.stack(targets)).float()


def imitate_fps(sampler: LearnedSampler, clouds: torch.Tensor, targets: torch.Tensor, cfg,
                gen: torch.Generator) -> float:
    """Fit `sampler`'s generator to `targets` (S, n, 3) from `clouds` (S, 2048, 3) (matched
    squared distance; cfg.init_steps Adam steps at cfg.init_lr with cosine decay, random batches
    of cfg.batch_size drawn with `gen`) -> the last step's loss."""
    opt = torch.optim.Adam(sampler.generator.parameters(), lr=cfg.init_lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.init_steps)
    sampler.train()
    loss = torch.zeros(())
    for _ in tracked(range(cfg.init_steps), "FPS imitation", unit="steps"):
        ids = torch.randperm(len(clouds), generator=gen)[:cfg.batch_size]
        loss = matched_squared_distance(sampler.generator(clouds[ids]), targets[ids])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return loss.item()


def matched_squared_distance(points: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean squared distance between (B, m, 3) points and (B, m, 3) targets after the optimal
    one-to-one matching per item (Hungarian, scipy): an order-free loss that, unlike Chamfer,
    cannot send two points to one target."""
    from scipy.optimize import linear_sum_assignment   # about 0.1 s: imported by training only
    d2 = (points[:, :, None] - targets[:, None]).pow(2).sum(-1)                  # (B, m, m)
    cols = [torch.as_tensor(linear_sum_assignment(d.detach().cpu().numpy())[1]) for d in d2]
    rows = torch.arange(points.shape[1])
    return torch.stack([d2[b, rows, c] for b, c in enumerate(cols)]).mean()


def load_start(model: SamplerModel, cfg) -> None:
    """Init "file": the weights (generator, temperature) of the sampler file cfg.init_from, which
    must place cfg.n patches with anchor cfg.anchor; its temperature is recorded in
    cfg.initial_temperature (the one used)."""
    start = SamplerModel.load(cfg.init_from)
    if start.n != cfg.n:
        raise ValueError(f"--init-from {cfg.init_from} places N={start.n} patches, not N={cfg.n}")
    if start.sampler.anchor != cfg.anchor:
        raise ValueError(f"--init-from {cfg.init_from} has anchor {start.sampler.anchor!r}, "
                         f"not {cfg.anchor!r} (--anchor)")
    model.sampler.load_state_dict(start.sampler.state_dict())
    cfg.initial_temperature = start.sampler.projection.temperature.item()
