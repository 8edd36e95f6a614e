"""Prior training [A §2, App. A; SPEC 2.5]: the auto-decoder INR, jointly with one latent per
training shape.

Per step: a batch of shapes, points per shape sampled as voxel centres (uniformly, or a
share from a band around the surface), loss = BCE + (1 - soft Dice) per volume
+ latent_reg * mean ||z||^2 (ramped in linearly over `reg_ramp_epochs`). Adam with separate
learning rates for the network and the latents.

Validation (used for early stopping and to keep the best model): the task the prior is used
for -- on held-out shapes, fit a latent from FPS patches (val_n x val_k^3 voxels, val_t
steps) and score the decoded reconstruction's Dice (decoded every 2nd voxel per axis to
save time). The paper validates on held-out slices instead; this is the patch analogue.

Outputs in `out_dir`: prior.pt (best), last.pt (resumable state, atomic), train_log.jsonl,
train.log, curves.png.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from .baselines import fps_centres
from .checkpoints import load_checkpoint, save_checkpoint
from .inr import LATENT_DIM, OccupancyDecoder, ShapePrior, decode_grid, fit_latent
from .losses import latent_regulariser, occupancy_loss
from .metrics import dice
from .patches import extract_patches
from .progress import Progress
from .volume import BinaryVolume, bbox_centre_mm, index_to_local_mm


@dataclass
class PriorConfig:
    """Hyperparameters (defaults = SPEC 2.5 unless noted)."""
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


@dataclass
class TrainingShape:
    """Precomputed sampling tables of one training volume."""
    mask: torch.Tensor          # (X*Y*Z,) bool, flat (i, j, k) order
    band: torch.Tensor          # (B,) long flat indices near the surface
    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    centre_mm: np.ndarray       # (3,) frame centre in local mm
    known: torch.Tensor | None = None   # (M,) long flat indices of the known voxels (sparse); None = all


def prepare_shape(volume: BinaryVolume, band_mm: float) -> TrainingShape:
    iters = max(1, int(math.ceil(band_mm / min(volume.spacing))))
    band = ndimage.binary_dilation(volume.mask, iterations=iters) & ~ndimage.binary_erosion(volume.mask, iterations=iters)
    return TrainingShape(torch.from_numpy(np.ascontiguousarray(volume.mask).reshape(-1)),
                         torch.from_numpy(np.flatnonzero(band)), volume.shape, volume.spacing,
                         bbox_centre_mm(volume.mask, volume.spacing))


def sample_points(shape: TrainingShape, count: int, surface_fraction: float,
                  gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """-> coords (count, 3) mm in the frame, labels (count,) 0/1 float32. Uniform points come
    from the whole grid, or from the known voxels only when `shape.known` is set (sparse)."""
    n_band = int(round(count * surface_fraction)) if len(shape.band) else 0
    band = shape.band[torch.randint(len(shape.band), (n_band,), generator=gen)]      # drawn first (reproducibility)
    uniform = torch.randint(shape.mask.numel() if shape.known is None else len(shape.known), (count - n_band,),
                            generator=gen)
    flat = torch.cat([band, uniform if shape.known is None else shape.known[uniform]])
    return flat_to_frame_mm(flat, shape), shape.mask[flat].float()


def flat_to_frame_mm(flat: torch.Tensor, shape: TrainingShape) -> torch.Tensor:
    """(M,) flat voxel indices of `shape`'s grid -> (M, 3) float32 mm in its INR frame."""
    ny, nz = shape.shape[1], shape.shape[2]
    ijk = torch.stack([flat // (ny * nz), (flat // nz) % ny, flat % nz], dim=-1).float()
    return index_to_local_mm(ijk, shape.spacing) - torch.as_tensor(shape.centre_mm, dtype=torch.float32)


def frame_of(volumes: list[BinaryVolume]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Training frame: (largest volume extent in mm per axis, spacing of the first volume)."""
    extent = np.max([np.array(v.shape) * np.array(v.spacing) for v in volumes], axis=0)
    return tuple(float(e) for e in extent), tuple(volumes[0].spacing)


def patch_dice(decoder: OccupancyDecoder, vol: BinaryVolume, centre_mm, centres: np.ndarray, k: int, t: int,
               fit_lr: float, seed: int = 0) -> float:
    """Dice (decoded at stride 2) of the reconstruction of `vol` from the K^3 patches at
    `centres` (N, 3) voxel index, with T latent-fit steps; centre_mm: the INR frame centre."""
    _, labels, coords = extract_patches(vol.mask, vol.spacing, centres, k, centre_mm)
    device = next(decoder.parameters()).device
    z = fit_latent(decoder, coords.reshape(1, -1, 3).to(device), labels.reshape(1, -1).to(device), t, lr=fit_lr,
                   seed=seed)
    return dice_at_stride(decoder, z, vol, centre_mm)


def validation_dice(decoder: OccupancyDecoder, volumes: list[BinaryVolume], cfg: PriorConfig) -> float:
    """Mean Dice of reconstructions of `volumes` from FPS patches (decoded at stride 2)."""
    return float(np.mean([patch_dice(decoder, vol, bbox_centre_mm(vol.mask, vol.spacing),
                                     fps_centres(vol.mask, cfg.val_n, seed=i), cfg.val_k, cfg.val_t, cfg.val_fit_lr,
                                     seed=i)
                          for i, vol in enumerate(volumes)]))


def dice_at_stride(decoder, latent, vol: BinaryVolume, centre_mm, stride: int = 2) -> float:
    prob = decode_grid(decoder, latent, vol.shape, vol.spacing, centre_mm, stride=stride)
    return dice(prob.cpu().numpy() >= 0.5, vol.mask[::stride, ::stride, ::stride])


class PriorTrainer:
    """Holds model, latents, optimiser and history; `run()` trains with checkpoints and logs."""

    def __init__(self, train: list[BinaryVolume], val: list[BinaryVolume], out_dir, cfg: PriorConfig,
                 provenance: dict | None = None, log=print):
        if not train:
            raise ValueError("no training shapes")
        self.cfg, self.out, self.log = cfg, Path(out_dir), log
        self.out.mkdir(parents=True, exist_ok=True)
        self.train_volumes, self.val_volumes = train, val
        self.shapes, self.held_out = self._training_set(train, val)
        self.extent_mm, self.spacing_mm = frame_of(train)
        self.provenance = provenance or {}
        torch.manual_seed(cfg.seed)
        self.decoder = OccupancyDecoder()
        self.latents = torch.nn.Parameter(torch.randn(len(train), LATENT_DIM) * cfg.latent_init_std)
        self.opt = torch.optim.Adam([{"params": self.decoder.parameters(), "lr": cfg.lr_net},
                                     {"params": [self.latents], "lr": cfg.lr_latent}])
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.epoch, self.best_val, self.bad_validations, self.history = 0, -1.0, 0, []
        self.elapsed = 0.0

    def _training_set(self, train: list[BinaryVolume], val: list[BinaryVolume]) -> tuple[list, list]:
        """Sampling tables of the training shapes; with sparse_step, of their kept slices only,
        and the held-out slices that validate (sparse_prior.py)."""
        if not self.cfg.sparse_step:
            return [prepare_shape(v, self.cfg.surface_band_mm) for v in train], []
        from .sparse_prior import sparse_training_set
        if val:
            self.log(f"sparse training validates on held-out slices; the {len(val)} validation shapes are not used")
            self.val_volumes = []
        shapes, held = sparse_training_set(train, self.cfg, self.cfg.surface_band_mm)
        self.log(f"sparse training: every {self.cfg.sparse_step}th {'thick ' if self.cfg.thick else ''}slice along "
                 f"axis {self.cfg.sparse_axis}; {len(held)} shapes hold out half their slices for validation")
        return shapes, held

    # ---------------------------------------------------------- state
    def state(self) -> dict:
        return {"decoder": self.decoder.state_dict(), "latents": self.latents.detach(),
                "optimizer": self.opt.state_dict(), "gen": self.gen.get_state(),
                "scalars": torch.tensor([self.epoch, self.best_val, self.bad_validations, self.elapsed],
                                        dtype=torch.float64)}

    def save_last(self) -> None:
        save_checkpoint(self.out / "last.pt", "prior-training", self.state(),
                        {"config": asdict(self.cfg), "history": self.history, "n_train": len(self.shapes)})

    def resume(self) -> None:
        state, meta = load_checkpoint(self.out / "last.pt", "prior-training")
        if meta["n_train"] != len(self.shapes):
            raise ValueError(f"resume: the checkpoint has {meta['n_train']} training shapes, the data {len(self.shapes)}")
        self.decoder.load_state_dict(state["decoder"])
        with torch.no_grad():
            self.latents.copy_(state["latents"])
        self.opt.load_state_dict(state["optimizer"])
        self.gen.set_state(state["gen"])
        epoch, self.best_val, bad, self.elapsed = state["scalars"].tolist()
        self.epoch, self.bad_validations, self.history = int(epoch), int(bad), meta["history"]
        self.log(f"resumed at epoch {self.epoch} (best validation Dice {self.best_val:.4f})")

    # ---------------------------------------------------------- training
    def _set_lr(self) -> None:
        factor = 1.0
        if self.cfg.lr_schedule == "cosine":
            factor = 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(self.epoch / self.cfg.epochs, 1.0)))
        for group, base in zip(self.opt.param_groups, (self.cfg.lr_net, self.cfg.lr_latent)):
            group["lr"] = base * factor

    def train_epoch(self, progress: Progress) -> float:
        cfg = self.cfg
        self._set_lr()
        reg_weight = cfg.latent_reg * min(1.0, (self.epoch + 1) / max(cfg.reg_ramp_epochs, 1))
        order = torch.randperm(len(self.shapes), generator=self.gen)
        losses = []
        for b in range(0, len(order), cfg.batch_size):
            ids = order[b:b + cfg.batch_size]
            pts = [sample_points(self.shapes[i], cfg.points_per_shape, cfg.surface_fraction, self.gen) for i in ids.tolist()]
            coords = torch.stack([p[0] for p in pts])
            labels = torch.stack([p[1] for p in pts])
            z = self.latents[ids]
            loss = occupancy_loss(self.decoder(coords, z), labels) + reg_weight * latent_regulariser(z)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            if not torch.isfinite(loss):
                raise FloatingPointError(f"non-finite training loss at epoch {self.epoch}")
            losses.append(float(loss.detach()))
            progress.update(b + len(ids), f"loss {losses[-1]:.4f}")
        return float(np.mean(losses))

    def train_dice(self, count: int = 8) -> float:
        """Mean Dice of the training latents' reconstructions (first `count` shapes, stride 2)."""
        return float(np.mean([dice_at_stride(self.decoder, self.latents[i].detach(), v, shape.centre_mm)
                              for i, (v, shape) in enumerate(zip(self.train_volumes[:count], self.shapes))]))

    def validate(self) -> dict:
        self.decoder.eval()
        if self.cfg.sparse_step:
            from .sparse_prior import held_out_dice, known_slice_dice
            row = {"train_dice": known_slice_dice(self.decoder, self.latents, self.shapes)}
            if self.held_out:
                row["val_dice"] = held_out_dice(self.decoder, self.latents, self.held_out)
        else:
            row = {"train_dice": self.train_dice()}
        if self.val_volumes:
            row["val_dice"] = validation_dice(self.decoder, self.val_volumes, self.cfg)
        self.decoder.train()
        return row

    def prior(self, val_dice: float | None) -> ShapePrior:
        meta = dict(self.provenance, config=asdict(self.cfg), epochs=self.epoch, val_dice=val_dice,
                    n_train=len(self.shapes), n_val=len(self.val_volumes),
                    training_minutes=round(self.elapsed / 60, 2))
        return ShapePrior(self.decoder, self.extent_mm, self.spacing_mm, meta)

    def run(self) -> ShapePrior:
        cfg, start = self.cfg, time.time() - self.elapsed
        jsonl = open(self.out / "train_log.jsonl", "a")
        try:
            while self.epoch < cfg.epochs:
                progress = Progress(len(self.shapes), f"epoch {self.epoch + 1}/{cfg.epochs}")
                t0 = time.time()
                loss = self.train_epoch(progress)
                self.epoch += 1
                row = {"epoch": self.epoch, "loss": loss, "seconds": round(time.time() - t0, 2),
                       "lr_net": self.opt.param_groups[0]["lr"]}
                stop = self._maybe_validate(row)
                self.elapsed = time.time() - start
                row["elapsed_min"] = round(self.elapsed / 60, 2)
                self.history.append(row)
                jsonl.write(json.dumps(row) + "\n"); jsonl.flush()
                progress.done(_describe(row))
                self.save_last()
                out_of_time = cfg.max_minutes and self.elapsed > cfg.max_minutes * 60
                if (stop or out_of_time) and self.epoch < cfg.epochs:
                    self.log("early stopping" if stop else f"time budget of {cfg.max_minutes} min reached")
                    break
        finally:
            jsonl.close()
        if not (self.out / "prior.pt").exists():
            self.prior(None).save(self.out / "prior.pt")
        plot_curves(self.history, self.out / "curves.png")
        return ShapePrior.load(self.out / "prior.pt")

    def _maybe_validate(self, row: dict) -> bool:
        """Validate every `val_every` epochs; save the best prior; True when patience ran out."""
        if self.epoch % self.cfg.val_every and self.epoch != self.cfg.epochs:
            return False
        row.update(self.validate())
        score = row.get("val_dice", row["train_dice"])
        if score > self.best_val:
            self.best_val, self.bad_validations = score, 0
            self.prior(row.get("val_dice")).save(self.out / "prior.pt")
            row["saved"] = True
        else:
            self.bad_validations += 1
        return self.bad_validations >= self.cfg.patience


def _describe(row: dict) -> str:
    parts = [f"loss {row['loss']:.4f}", f"{row['seconds']:.1f}s"]
    parts += [f"{k} {row[k]:.4f}" for k in ("train_dice", "val_dice") if k in row]
    return " ".join(parts) + (" (saved)" if row.get("saved") else "")


def plot_curves(history: list[dict], path) -> None:
    """PNG of the training loss and the train / validation Dice over epochs."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.plot([r["epoch"] for r in history], [r["loss"] for r in history])
    a.set(xlabel="epoch", ylabel="loss (BCE + 1 - soft Dice + reg)", yscale="log", title="training loss")
    for key, label in (("train_dice", "training latents"), ("val_dice", "validation (FPS patches)")):
        pts = [(r["epoch"], r[key]) for r in history if key in r]
        if pts:
            b.plot(*zip(*pts), marker="o", label=label)
    b.set(xlabel="epoch", ylabel="Dice", title="reconstruction Dice")
    b.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
