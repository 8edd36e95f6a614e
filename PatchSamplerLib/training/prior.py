"""Prior training [A §2, App. A]: the auto-decoder INR, jointly with one latent per training
shape.

Per step: a batch of shapes, points per shape sampled as voxel centres (uniformly, or a
share from a band around the surface), loss = BCE + (1 - soft Dice) per volume
+ latent_reg * mean ||z||^2 (ramped in linearly over `reg_ramp_epochs`). Adam with separate
learning rates for the network and the latents.

Validation (used for early stopping and to keep the best model): the task the prior is used
for -- on held-out shapes, fit a latent from FPS patches (val_n x val_k^3 voxels, val_t
steps) and score the decoded reconstruction's Dice (decoded every 2nd voxel per axis to
save time). The paper validates on held-out slices instead [A §3.2]; this is the patch
analogue. With `sparse_step` the training sees sparse slices only and validates the paper's
way (`sparse_prior`).

Outputs in `out_dir`: prior.pt (best), last.pt (resumable state, atomic), train_log.jsonl,
train.log (the command line's), curves.png; the epoch loop is `loop.TrainingLoop`.

Processes: with `distributed` (`training.distributed`, launched by torchrun) the global batch is
split over the processes and DistributedDataParallel averages the gradients; the latent table is
replicated (why: that module); rank 0 writes and validates.

Memory: a step is backpropagated in passes of at most `step_memory_gb` GB of autograd graph
(`budget`: the same gradient; the paper's batch in one pass peaked at 14.5 GB); the trainer logs
its expected peak when it is made (`expected_peak_gb`).
"""
from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass

import numpy as np
import torch

from PatchSamplerLib.method.baselines import fps_centres
from PatchSamplerLib.method.inr import LATENT_DIM, OccupancyDecoder, ShapePrior
from PatchSamplerLib.method.losses import latent_regulariser
from PatchSamplerLib.progress import Progress, tracked
from PatchSamplerLib.training.budget import (DEFAULT_STEP_MEMORY_GB, backward_in_passes, expected_peak_gb,
                                             largest_pass, points_per_pass, resident_bytes)
from PatchSamplerLib.training.distributed import Distributed, LatentDecoder, average_gradients, without_sync
from PatchSamplerLib.training.loop import LoopSettings, TrainingLoop, curves_figure
from PatchSamplerLib.training.points import prepare_shape, sample_points
from PatchSamplerLib.training.scores import dice_at_stride, patch_dice
from PatchSamplerLib.training.sparse_prior import held_out_dice, known_slice_dice, sparse_training_set
from PatchSamplerLib.volume import BinaryVolume, bbox_centre_mm


LR_SCHEDULES = ("constant", "cosine")


@dataclass
class PriorConfig:
    """Hyperparameters; defaults are the paper's [A App. A] unless noted."""
    epochs: int = 2000                  # upper bound; early stopping usually ends sooner
    batch_size: int = 8
    points_per_shape: int = 64 ** 3     # voxels per volume per step [A App. A]
    surface_fraction: float = 0.0       # share of points drawn near the surface (not in [A])
    surface_band_mm: float = 2.0
    lr_net: float = 8e-4
    lr_latent: float = 1e-3
    latent_init_std: float = 0.1
    latent_reg: float = 1e-4
    reg_ramp_epochs: int = 100
    lr_schedule: str = "constant"       # or "cosine" (decay to 10 % over `epochs`; not in [A])
    val_every: int = 10                 # epochs between validations
    patience: int = 10                  # validations without improvement before stopping
    val_n: int = 8
    val_k: int = 11
    val_t: int = 100
    val_fit_lr: float = 1e-2
    max_minutes: float | None = None    # wall-clock budget (stops after the epoch that exceeds it)
    seed: int = 0
    sparse_step: int = 0                # > 0: train from every sparse_step-th slice only [A §3.2]
    sparse_axis: int = 0                # slice axis, 0 1 2 = x y z (i j k)
    thick: bool = False                 # sparse: thick slices (window mean, threshold 0.5)
    sparse_val_share: float = 0.1       # sparse: share of training shapes with half their slices held out
    step_memory_gb: float = DEFAULT_STEP_MEMORY_GB   # GB of autograd graph per backward pass (not in [A]; `budget`)


def frame_of(volumes: list[BinaryVolume]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Training frame: (largest volume extent in mm per axis (3,), spacing of the first volume (3,) mm)."""
    extent = np.max([np.array(v.shape) * np.array(v.spacing) for v in volumes], axis=0)
    return tuple(float(e) for e in extent), tuple(volumes[0].spacing)


def validation_dice(decoder: OccupancyDecoder, volumes: list[BinaryVolume], cfg: PriorConfig) -> float:
    """Mean Dice of reconstructions of `volumes` from cfg.val_n FPS patches of cfg.val_k^3
    voxels, cfg.val_t latent-fit steps (decoded at stride 2). Progress: the task "validation"."""
    return float(np.mean([patch_dice(decoder, vol, bbox_centre_mm(vol.mask, vol.spacing),
                                     fps_centres(vol.mask, cfg.val_n, seed=i), cfg.val_k, cfg.val_t, cfg.val_fit_lr,
                                     seed=i)
                          for i, vol in enumerate(tracked(volumes, "validation", unit="shapes"))]))


class PriorTrainer(TrainingLoop):
    """Holds model, latents, optimiser and history; `run()` trains with checkpoints and logs
    (`resume()` first to continue from out_dir/last.pt). The decoder, the latents and each
    step's points are on `device` (the shapes' tables and the random draws stay on the CPU;
    sparse training: CPU only, ValueError otherwise). `distributed`: this process's place in a
    torchrun process group (`training.distributed`; None: one process)."""

    CHECKPOINT_KIND, MODEL_FILE = "prior-training", "prior.pt"
    SCALARS = ("epoch", "best_val", "bad_validations", "elapsed")
    SUMMARY = ("loss", "train_dice", "val_dice")

    def __init__(self, train: list[BinaryVolume], val: list[BinaryVolume], out_dir, cfg: PriorConfig,
                 provenance: dict | None = None, log=print, device="cpu", distributed: Distributed | None = None):
        if not train:
            raise ValueError("no training shapes")
        self.device, self.dist = torch.device(device), distributed
        if cfg.sparse_step and self.device.type != "cpu":
            raise ValueError("sparse prior training (--sparse-step) runs on the CPU only")
        super().__init__(out_dir, LoopSettings(cfg.epochs, cfg.val_every, cfg.max_minutes, cfg.patience), log)
        self.cfg = cfg
        self.train_volumes, self.val_volumes = train, val
        self.shapes, self.held_out = self._training_set(train, val)
        self.extent_mm, self.spacing_mm = frame_of(train)
        self.provenance = provenance or {}
        torch.manual_seed(cfg.seed)
        self.decoder = OccupancyDecoder().to(self.device)
        self.latents = torch.nn.Parameter((torch.randn(len(train), LATENT_DIM) * cfg.latent_init_std).to(self.device))
        self.ddp = distributed.wrap(LatentDecoder(self.decoder, self.latents)) if distributed else None
        self.writes = distributed is None or distributed.main
        self.opt = torch.optim.Adam([{"params": self.decoder.parameters(), "lr": cfg.lr_net},
                                     {"params": [self.latents], "lr": cfg.lr_latent}])
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.pass_points = points_per_pass(cfg.step_memory_gb)
        self.log(self.memory_line())

    def expected_peak_gb(self) -> float:
        """The expected peak resident memory of this training, GB (`budget.expected_peak_gb`): the
        process, the shapes' tables, the largest backward pass (training or validation fit)."""
        cfg = self.cfg
        graph = max(largest_pass(cfg.batch_size, cfg.points_per_shape, self.pass_points),
                    cfg.val_n * cfg.val_k ** 3 if self.val_volumes else 0)
        return expected_peak_gb(graph, self.table_bytes(), cfg.batch_size * cfg.points_per_shape)

    def table_bytes(self) -> int:
        """Bytes held by the training and validation shapes: masks, sampling tables, held-out slices."""
        tensors = [t for s in self.shapes for t in (s.mask, s.band, s.known)]
        tensors += [t for h in self.held_out for t in (h.coords, h.labels)]
        return resident_bytes(tensors + [v.mask for v in self.train_volumes + self.val_volumes])

    def memory_line(self) -> str:
        """The log line of the expected peak memory and the setting that bounds it."""
        return (f"expected peak memory ~{self.expected_peak_gb():.1f} GB (at most {self.pass_points:,} points per "
                f"backward pass: --step-memory-gb {self.cfg.step_memory_gb:g}; {len(self.shapes)} training shapes "
                f"hold {self.table_bytes() / 1e9:.2f} GB)")

    def _training_set(self, train: list[BinaryVolume], val: list[BinaryVolume]) -> tuple[list, list]:
        """Sampling tables of the training shapes; with sparse_step, of their kept slices only,
        and the held-out slices that validate (`sparse_prior`)."""
        if not self.cfg.sparse_step:
            return [prepare_shape(v, self.cfg.surface_band_mm) for v in train], []
        if val:
            self.log(f"sparse training validates on held-out slices; the {len(val)} validation shapes are not used")
            self.val_volumes = []
        shapes, held = sparse_training_set(train, self.cfg, self.cfg.surface_band_mm)
        self.log(f"sparse training: every {self.cfg.sparse_step}th {'thick ' if self.cfg.thick else ''}slice along "
                 f"axis {self.cfg.sparse_axis}; {len(held)} shapes hold out half their slices for validation")
        return shapes, held

    # ---------------------------------------------------------- last.pt (loop hooks)
    def training_state(self) -> dict:
        return {"decoder": self.decoder.state_dict(), "latents": self.latents.detach(),
                "optimizer": self.opt.state_dict(), "gen": self.gen.get_state()}

    def load_training_state(self, state: dict, meta: dict) -> None:
        self.decoder.load_state_dict(state["decoder"])
        with torch.no_grad():
            self.latents.copy_(state["latents"])
        self.opt.load_state_dict(state["optimizer"])
        self.gen.set_state(state["gen"])

    def checkpoint_meta(self) -> dict:
        return {"config": asdict(self.cfg), "n_train": len(self.shapes)}

    # ---------------------------------------------------------- training
    def _set_lr(self) -> None:
        factor = 1.0
        if self.cfg.lr_schedule == "cosine":
            factor = 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(self.epoch / self.cfg.epochs, 1.0)))
        for group, base in zip(self.opt.param_groups, (self.cfg.lr_net, self.cfg.lr_latent)):
            group["lr"] = base * factor

    def train_epoch(self, progress: Progress) -> dict:
        """One pass over the training shapes in batches -> {"loss": mean loss, "lr_net": its lr}."""
        self._set_lr()
        order = torch.randperm(len(self.shapes), generator=self.gen)
        losses = []
        for b in range(0, len(order), self.cfg.batch_size):
            ids = order[b:b + self.cfg.batch_size]
            losses.append(self.train_step(ids))
            progress.update(b + len(ids), f"loss {losses[-1]:.4f}")
        return {"loss": float(np.mean(losses)), "lr_net": self.opt.param_groups[0]["lr"]}

    def train_step(self, ids: torch.Tensor) -> float:
        """One Adam step on the shapes `ids` (B,) -> the batch loss. With several processes each
        backpropagates its share of the batch and DDP averages the gradients (`distributed`)."""
        share = self.dist.share(len(ids)) if self.dist else range(len(ids))
        coords, labels = self._draw(ids, share)
        self.opt.zero_grad(set_to_none=True)
        loss = self._backward(ids[share.start:share.stop], coords, labels)
        if self.dist:
            average_gradients(self.ddp, [*self.decoder.parameters(), self.latents],
                              len(share) * self.dist.world / len(ids), self.device)
            loss = self.dist.total(loss * len(share) / len(ids))
        self.opt.step()
        if not math.isfinite(loss):
            raise FloatingPointError(f"non-finite training loss at epoch {self.epoch}")
        return loss

    def _draw(self, ids: torch.Tensor, share: range) -> tuple[torch.Tensor, torch.Tensor]:
        """The points of every shape of `ids` drawn in order (the generator advances as in one
        process) -> those of the batch positions `share`: coords (S, P, 3) mm, labels (S, P), on
        the trainer's device (None, None for an empty share)."""
        cfg, kept = self.cfg, []
        for position, i in enumerate(ids.tolist()):
            points = sample_points(self.shapes[i], cfg.points_per_shape, cfg.surface_fraction, self.gen)
            if position in share:
                kept.append(points)
        if not kept:
            return None, None
        return (torch.stack([p[0] for p in kept]).to(self.device), torch.stack([p[1] for p in kept]).to(self.device))

    def _backward(self, ids: torch.Tensor, coords, labels) -> float:
        """Accumulate the gradient of the mean loss over the shapes `ids` (+ the latent penalty)
        in budget passes, without DDP's all-reduce -> the loss (0 for no shapes)."""
        if not len(ids):
            return 0.0
        reg_weight = self.cfg.latent_reg * min(1.0, (self.epoch + 1) / max(self.cfg.reg_ramp_epochs, 1))
        with without_sync(self.ddp):
            return backward_in_passes(self.decoder, self.latents, ids, coords, labels, self.pass_points,
                                      extra=reg_weight * latent_regulariser(self.latents[ids]))

    # ---------------------------------------------------------- validation (loop hooks)
    def train_dice(self, count: int = 8) -> float:
        """Mean Dice of the training latents' reconstructions (first `count` shapes, stride 2)."""
        pairs = list(zip(self.train_volumes[:count], self.shapes))
        return float(np.mean([dice_at_stride(self.decoder, self.latents[i].detach(), v, shape.centre_mm)
                              for i, (v, shape) in enumerate(tracked(pairs, "training Dice", unit="shapes"))]))

    def validate(self) -> dict:
        """{"train_dice": .., "val_dice": .. (when there is something to validate on)}."""
        self.decoder.eval()
        if self.cfg.sparse_step:
            row = {"train_dice": known_slice_dice(self.decoder, self.latents, self.shapes)}
            if self.held_out:
                row["val_dice"] = held_out_dice(self.decoder, self.latents, self.held_out)
        else:
            row = {"train_dice": self.train_dice()}
        if self.val_volumes:
            row["val_dice"] = validation_dice(self.decoder, self.val_volumes, self.cfg)
        self.decoder.train()
        return row

    def validation(self, row: dict) -> float:
        """Validate (rank 0 of several; the others get its scores) -> the score to maximise."""
        scores = self.validate() if self.writes else None
        row.update(self.agreed(scores))
        return row.get("val_dice", row["train_dice"])

    def agreed(self, value):
        return self.dist.broadcast(value) if self.dist else value

    def prior(self, val_dice: float | None) -> ShapePrior:
        """A copy of the current decoder as a ShapePrior, with its training metadata."""
        meta = dict(self.provenance, config=asdict(self.cfg), epochs=self.epoch, val_dice=val_dice,
                    n_train=len(self.shapes), n_val=len(self.val_volumes),
                    training_minutes=round(self.elapsed / 60, 2),
                    mean_latent=[round(float(v), 6) for v in self.latents.detach().mean(0)])
        return ShapePrior(copy.deepcopy(self.decoder), self.extent_mm, self.spacing_mm, meta)

    def best_model(self, row: dict) -> ShapePrior:
        return self.prior(row.get("val_dice"))

    def plot(self, path) -> None:
        plot_curves(self.history, path)

    def run(self) -> ShapePrior:
        """Train (from `self.epoch`) -> the best prior, loaded from out_dir/prior.pt (on every
        process, once rank 0 has written it)."""
        path = self.run_epochs()
        if self.dist:
            self.dist.barrier()
        return ShapePrior.load(path)


def plot_curves(history: list[dict], path) -> None:
    """PNG of the training loss and the train / validation Dice over epochs."""
    with curves_figure(path) as (a, b):
        a.plot([r["epoch"] for r in history], [r["loss"] for r in history])
        a.set(xlabel="epoch", ylabel="loss (BCE + 1 - soft Dice + reg)", yscale="log", title="training loss")
        for key, label in (("train_dice", "training latents"), ("val_dice", "validation (FPS patches)")):
            pts = [(r["epoch"], r[key]) for r in history if key in r]
            if pts:
                b.plot(*zip(*pts), marker="o", label=label)
        b.set(xlabel="epoch", ylabel="Dice", title="reconstruction Dice")
