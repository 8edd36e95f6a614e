"""End-to-end sampler training [T §3.6, §4.4], through a frozen INR prior.

Per shape: mask -> 2048-point cloud P -> generated G -> projected R -> voxel-index centres ->
K^3 patch coordinates (labels V[round(x)], constants) -> T Adam steps of the latent fit that
stay on the autograd graph (`method.inr.fit_latent_unrolled`) -> decode -> loss.

Loss = L_proximity(G, P) + 0.001 L_repulsion(R) + L_r, L_r = BCE + (1 - soft Dice) of the
decoded occupancies against the mask. Ablation switches: SampleNet's max proximity term,
SampleNet's coverage term instead of repulsion, a projection loss t^2, k = 16 neighbours.

Memory: the generator runs on the whole batch (BatchNorm needs it); each shape's
reconstruction loss is then backpropagated on its own into the batch's projected points and
accumulated, which gives the gradient of the batch's summed loss at one shape's memory; the
decode is done in chunks with the exact gradient of the global soft Dice
(`reconstruction_loss_and_grad`), so the full-grid loss never holds the graph of more than one
chunk.

Fidelity modes (`SamplerConfig.mode`):
- ``faithful`` (the thesis): the latent fit sees every voxel of every patch; L_r is over every
  voxel of the shape's full-resolution grid.
- ``fast`` (practical on a CPU): the latent fit during training sees every `patch_stride`-th
  voxel of each patch along each axis (the centre voxel always included; with K = 9 and stride
  2, 125 of 729 voxels); L_r is over `loss_voxels` voxels per shape and step, a
  `surface_fraction` share drawn within `surface_band_mm` of the surface and the rest uniformly
  over the grid. Validation is always the real task (all patch voxels, T steps, decoded Dice).

Starts other than the thesis's random one (`init` fps / file, `anchor` fps, not in [T]):
`sampler_init`; each is validated as epoch 0.

Where it runs: the latent fits, decodes and losses where the prior's decoder is (a frozen copy;
the caller's prior is not changed); the sampler network and its optimiser on the CPU.

Outputs in `out_dir`: sampler.pt (best validation Dice), last.pt (resumable, atomic, written
after every epoch), train_log.jsonl, train.log (the command line's), curves.png; the epoch
loop is `loop.TrainingLoop`.
"""
from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass

import numpy as np
import torch

from PatchSamplerLib.method.baselines import fps_centres
from PatchSamplerLib.method.decoding import logits_in_chunks
from PatchSamplerLib.method.inr import ShapePrior, fit_latent_unrolled
from PatchSamplerLib.method.losses import (coverage_loss, occupancy_loss_and_logit_gradient, proximity_loss,
                                           repulsion_loss)
from PatchSamplerLib.method.patches import patch_labels, patch_offsets, soft_patch_labels
from PatchSamplerLib.method.pointcloud import dense_cloud
from PatchSamplerLib.method.sampler import (ANCHORS, CONTINUATIONS, LEAD_POINTS, LEAD_STARTS, SamplerModel,
                                            check_continuation, check_lead_points, check_lead_start,
                                            learned_centres, straight_through_fps, voxel_continuation)
from PatchSamplerLib.progress import Progress, tracked
from PatchSamplerLib.training.loop import LoopSettings, TrainingLoop, curves_figure
from PatchSamplerLib.training.points import SamplerShape, full_grid_points, prepare_sampler_shape, sample_points
from PatchSamplerLib.training.sampler_init import initialise
from PatchSamplerLib.training.scores import patch_dice
from PatchSamplerLib.volume import BinaryVolume, index_to_local_mm

MODES = ("faithful", "fast")
INITS = ("random", "fps", "file")


@dataclass
class SamplerConfig:
    """Hyperparameters; defaults are the thesis's [T §3.6, §4.4] unless noted."""
    n: int = 4
    k: int = 9
    t: int = 100
    mode: str = "faithful"
    init: str = "random"               # "fps": first fit the generator to FPS points; "file": start from
    init_from: str = ""                # this sampler file's weights (e.g. to fine-tune one); not in [T]
    anchor: str = "none"               # "fps" / "central": generator offsets from the cloud's FPS points;
    #                                    "lead": generated centres, then FPS continued from them (not in [T])
    lead_points: int = LEAD_POINTS     # anchor "lead": how many centres the generator places (1-4)
    continuation: str = "cloud"        # anchor "lead": FPS after the lead over the "cloud", the occupied "voxels",
    #                                    or "central-voxels" (the voxel nearest the centroid first)
    lead_start: str = "free"           # anchor "lead": "free" generator or offsets from the "central" FPS points
    continuation_gradient: bool = False  # continuation "voxels": the continued centres' loss reaches the lead
    #                                      (method.sampler.straight_through_fps; not in [T])
    select_continuation: bool = False  # any_nk, anchor "lead": keep the continuation that validates best after
    #                                    training (training.any_sampler; not in [T])
    init_steps: int = 3000             # init "fps": generator steps of that fit
    init_lr: float = 3e-3              # init "fps": its Adam lr (cosine decay to 0)
    init_count: int = 0                # init "fps", synthetic data: extra shapes for that fit only
    epochs: int = 400
    batch_size: int = 8
    lr: float = 0.01
    lr_step_epoch: int = 200           # StepLR: x lr_gamma after this many epochs
    lr_gamma: float = 0.1
    neighbours: int = 32               # soft projection k (ablation: 16)
    initial_temperature: float = 1.0   # soft projection t at the start (the learned t is saved)
    repulsion_weight: float = 1e-3
    proximity_max: bool = False        # ablation: + SampleNet's max_g min_p ||g - p||^2
    coverage: bool = False             # ablation: SampleNet's coverage term instead of repulsion
    projection_loss: bool = False      # ablation: + t^2
    fit_lr: float = 1e-2               # latent-fit Adam lr (as in inference)
    soft_labels: bool = False          # trilinear patch labels, differentiable in the centres (not in [T])
    patch_stride: int = 2              # fast mode only: fit on every s-th patch voxel per axis
    loss_voxels: int = 8192            # fast mode only: voxels of L_r per shape and step
    surface_fraction: float = 0.5      # fast mode only: share of them near the surface
    surface_band_mm: float = 2.0
    any_nk: bool = False               # one sampler for every N <= n and odd K in 3..31 (#18; training.any_sampler)
    fit_points: int = 512              # any_nk, fast mode: patch voxels per step of the unrolled fit
    min_prefix: int = 1                # any_nk: the smallest N the training schedule draws (1: every prefix)
    chunk: int = 65536                 # voxels per decode chunk
    val_every: int = 1
    max_minutes: float | None = None   # wall-clock budget (stops after the epoch that exceeds it)
    seed: int = 0

    def check(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.init not in INITS:
            raise ValueError(f"init must be one of {', '.join(INITS)}, got {self.init!r}")
        if self.n < 1 or self.k < 1 or self.t < 1:
            raise ValueError(f"N, K and T must be >= 1 to train a sampler, got {self.n}, {self.k}, {self.t}")
        if self.batch_size < 2:
            raise ValueError("batch size must be >= 2 (the generator's BatchNorm needs a batch)")
        if self.anchor not in ANCHORS:
            raise ValueError(f"anchor must be one of {', '.join(ANCHORS)}, got {self.anchor!r}")
        check_lead_points(self.lead_points)
        check_continuation(self.continuation)
        check_lead_start(self.lead_start)
        if self.anchor != "lead" and (self.continuation != "cloud" or self.lead_start != "free"):
            raise ValueError("--continuation and --lead-start shape the lead's centres: they need --anchor lead")
        if self.continuation_gradient and not (self.anchor == "lead" and self.continuation == "voxels"):
            raise ValueError("--continuation-gradient passes the continued centres' loss to the lead: it needs "
                             "--anchor lead --continuation voxels")
        if self.select_continuation and not (self.any_nk and self.anchor == "lead"):
            raise ValueError("--select-continuation picks where FPS continues after the lead of an any-(N, K) "
                             "sampler: it needs --any-nk --anchor lead")
        if self.anchor != "none" and self.init == "fps":
            raise ValueError(f"--anchor {self.anchor} places FPS points itself (from the start or after the lead "
                             "centres); drop --init fps")
        if (self.init == "file") != bool(self.init_from):
            raise ValueError("--init file needs --init-from SAMPLER.pt (and --init-from needs --init file)")
        if self.init_count < 0 or self.init_steps < 0:
            raise ValueError(f"init count and steps must be >= 0, got {self.init_count}, {self.init_steps}")
        if self.patch_stride < 1:
            raise ValueError(f"patch stride must be >= 1, got {self.patch_stride}")
        if self.any_nk and not 1 <= self.n <= 64:
            raise ValueError(f"an any-(N, K) sampler places at most 64 patches (--n), got {self.n}")
        if self.fit_points < 1:
            raise ValueError(f"fit points must be >= 1, got {self.fit_points}")
        if not 1 <= self.min_prefix <= self.n:
            raise ValueError(f"the smallest prefix N trained must be in 1..{self.n} (--n), got {self.min_prefix}")


# Settings a resumed run must share with its last.pt (with the value of a last.pt from before the option).
RESUME_KEYS = {"n": None, "k": None, "t": None, "mode": None, "neighbours": None, "init": "random", "anchor": "none",
               "any_nk": False, "lead_points": LEAD_POINTS, "min_prefix": 1,
               "continuation": "cloud", "lead_start": "free", "continuation_gradient": False}


def patch_subset(k: int, stride: int) -> torch.Tensor:
    """Indices into `patch_offsets(k)` (K^3 rows, i-major) of every `stride`-th voxel per axis,
    counted from the middle voxel (index (K - 1) // 2, the centre for odd K), which is kept;
    stride 1 keeps all K^3."""
    along = torch.remainder(torch.arange(k) - (k - 1) // 2, stride) == 0
    keep = along[:, None, None] & along[None, :, None] & along[None, None, :]
    return torch.nonzero(keep.reshape(-1)).squeeze(1)


def reconstruction_loss_and_grad(decoder, latent: torch.Tensor, coords: torch.Tensor, labels: torch.Tensor,
                                 chunk: int) -> tuple[float, torch.Tensor]:
    """L_r = mean BCE + (1 - soft Dice) of f(coords, latent) against labels, and dL_r/dlatent.

    latent (1, D); coords (M, 3) mm; labels (M,) 0/1. Exact for any M: pass 1 computes the
    logits in chunks of `chunk` points without a graph (for the global sums of the soft Dice),
    pass 2 backpropagates each chunk's share dL/dlogit . logit (dL/dlogit is known once the
    sums are). Returns (loss value, (1, D) gradient)."""
    z = latent.detach().requires_grad_(True)
    with torch.no_grad():
        logits = logits_in_chunks(decoder, decoder.latent_features(z), coords, chunk)
    loss, d_logit = occupancy_loss_and_logit_gradient(logits, labels)
    for s in range(0, len(coords), chunk):
        part = decoder.forward_features(coords[None, s:s + chunk], decoder.latent_features(z))[0]
        (part * d_logit[s:s + chunk]).sum().backward()
    return loss, z.grad


def unrolled_latent(decoder, shape: SamplerShape, projected: torch.Tensor, k: int, subset: torch.Tensor, t: int,
                    fit_lr: float, soft_labels: bool = False) -> torch.Tensor:
    """Projected points (m, 3) in the normalised cloud space -> (1, D) latent after T
    differentiable fit steps at Adam lr `fit_lr` on the patch voxels `subset` (rows of
    `patch_offsets(k)`); any float dtype. Labels V[round(x)] (constants: no gradient through
    the labels) or, with `soft_labels`, trilinear and differentiable."""
    vol = shape.volume
    centres = shape.norm.inverse(projected)                                        # (m, 3) voxel index
    coords_idx = centres[:, None, :] + patch_offsets(k)[subset].to(projected)[None]  # (m, S, 3)
    label_fn = soft_patch_labels if soft_labels else patch_labels
    labels = label_fn(shape.mask, coords_idx).to(projected).reshape(1, -1)
    coords = index_to_local_mm(coords_idx, vol.spacing) - torch.as_tensor(shape.centre_mm).to(projected)
    return fit_latent_unrolled(decoder, coords.reshape(1, -1, 3), labels, t, lr=fit_lr)


class SamplerTrainer(TrainingLoop):
    """One sampler for (N, K, T, prior); `run()` trains with checkpoints, logs and validation
    (`resume()` first to continue from out_dir/last.pt). The fits, decodes and losses run on the
    device of the prior's decoder (`ShapePrior.load(device=)`, `ShapePrior.on`), with a frozen
    copy of it; the sampler network and its optimiser stay on the CPU."""

    CHECKPOINT_KIND, MODEL_FILE = "sampler-training", "sampler.pt"
    SUMMARY = ("loss_rec", "val_dice")

    def __init__(self, train: list[BinaryVolume], val: list[BinaryVolume], prior: ShapePrior, out_dir,
                 cfg: SamplerConfig, provenance: dict | None = None, log=print,
                 init_shapes: list[BinaryVolume] = ()):
        cfg.check()
        if len(train) < 2:
            raise ValueError("at least 2 training shapes are needed")
        if cfg.any_nk and type(self) is SamplerTrainer:
            raise ValueError("an any-(N, K) sampler trains with training.any_sampler.AnySamplerTrainer")
        super().__init__(out_dir, LoopSettings(cfg.epochs, cfg.val_every, cfg.max_minutes), log)
        self.cfg, self.prior = cfg, prior
        self.device = next(prior.decoder.parameters()).device
        self.decoder = copy.deepcopy(prior.decoder).eval().requires_grad_(False)
        self.prior_fingerprint = prior.fingerprint()
        self.shapes = [prepare_sampler_shape(v, cfg.surface_band_mm, self.device) for v in train]
        self.val_shapes = [prepare_sampler_shape(v, cfg.surface_band_mm, self.device) for v in val]
        self.provenance = dict(provenance or {}, device=str(self.device))
        torch.manual_seed(cfg.seed)
        self.model = SamplerModel.new(cfg.n, 0 if cfg.any_nk else cfg.k, cfg.t, cfg.neighbours,
                                      cfg.initial_temperature, cfg.anchor, conditioned=cfg.any_nk,
                                      lead_points=cfg.lead_points, continuation=cfg.continuation,
                                      lead_start=cfg.lead_start)
        self.opt = torch.optim.Adam(self.model.sampler.parameters(), lr=cfg.lr)
        self.sched = torch.optim.lr_scheduler.StepLR(self.opt, step_size=cfg.lr_step_epoch, gamma=cfg.lr_gamma)
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.subset = patch_subset(cfg.k, cfg.patch_stride if cfg.mode == "fast" else 1)
        self.baseline = None                         # FPS validation Dice
        self.init_shapes = list(init_shapes)         # init "fps": extra shapes for the FPS fit only

    # ---------------------------------------------------------- last.pt (loop hooks)
    def training_state(self) -> dict:
        return {"sampler": self.model.sampler.state_dict(), "optimizer": self.opt.state_dict(),
                "scheduler": self.sched.state_dict(), "gen": self.gen.get_state()}

    def load_training_state(self, state: dict, meta: dict) -> None:
        saved = {key: meta["config"].get(key, default) for key, default in RESUME_KEYS.items()}
        if saved != {key: getattr(self.cfg, key) for key in saved}:
            raise ValueError(f"resume: the checkpoint was trained with {saved}; the options differ")
        self.model.sampler.load_state_dict(state["sampler"])
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        self.gen.set_state(state["gen"])
        self.baseline = meta.get("fps_val_dice")

    def checkpoint_meta(self) -> dict:
        return {"config": asdict(self.cfg), "n_train": len(self.shapes), "fps_val_dice": self.baseline}

    # ---------------------------------------------------------- one step
    def sampler_losses(self, generated: torch.Tensor, projected: torch.Tensor, clouds: torch.Tensor) -> torch.Tensor:
        """L_s: proximity (+ max term) + 0.001 repulsion (or coverage) (+ t^2); (B, m, 3) inputs."""
        cfg = self.cfg
        loss = proximity_loss(generated, clouds, with_max=cfg.proximity_max)
        spread = coverage_loss(projected, clouds) if cfg.coverage else repulsion_loss(projected)
        loss = loss + cfg.repulsion_weight * spread
        if cfg.projection_loss:
            loss = loss + self.model.sampler.projection.sigma()
        return loss

    def loss_points(self, shape: SamplerShape) -> tuple[torch.Tensor, torch.Tensor]:
        """Where L_r is evaluated: every voxel (faithful) or a boundary-weighted subset (fast);
        coords (M, 3) mm, labels (M,), on `self.device`."""
        if self.cfg.mode == "faithful":
            return full_grid_points(shape)
        coords, labels = sample_points(shape.table, self.cfg.loss_voxels, self.cfg.surface_fraction, self.gen)
        return coords.to(self.device), labels.to(self.device)

    def draw_settings(self, batch: int) -> list[tuple[int, int]]:
        """(N, K) of each shape of a batch: the sampler's own (an any-(N, K) trainer draws them)."""
        return [(self.cfg.n, self.cfg.k)] * batch

    def fitted_latent(self, shape: SamplerShape, projected: torch.Tensor, k: int) -> torch.Tensor:
        """(1, D) latent after the differentiable fit to the patches at `projected` (m, 3)."""
        return unrolled_latent(self.decoder, shape, projected, k, self.subset, self.cfg.t, self.cfg.fit_lr,
                               self.cfg.soft_labels)

    def shape_loss(self, shape: SamplerShape, projected: torch.Tensor, batch_len: int, k: int) -> float:
        """Backpropagate one shape's L_r / batch_len into `projected` (m, 3), a leaf; returns L_r."""
        z = self.fitted_latent(shape, projected, k)
        loss, grad = reconstruction_loss_and_grad(self.decoder, z, *self.loss_points(shape), self.cfg.chunk)
        z.backward(grad / batch_len)
        return loss

    def batch_gradients(self, ids: list[int]) -> tuple[float, float]:
        """Gradients of L_s + mean over the batch of L_r in the sampler's .grad -> (L_r mean, L_s).

        The generator runs once on the whole batch; each shape's L_r is backpropagated on its own
        into a detached copy of the projected points and the sum is pushed through the sampler
        once (the same gradient as one backward of the summed loss, at one shape's memory).
        The sampler runs on the CPU; the fits and L_r on `self.device`."""
        clouds = torch.stack([self.shapes[i].cloud for i in ids])
        settings = self.draw_settings(len(ids))
        ks = [k for _, k in settings] if self.cfg.any_nk else None
        generated, projected = self.placed_centres(clouds, ks, ids, settings)
        leaf = projected.detach().to(self.device).requires_grad_(True)
        rec = [self.shape_loss(self.shapes[i], leaf[b, :n], len(ids), k)
               for b, (i, (n, k)) in enumerate(zip(ids, settings))]
        l_s = self.sampler_losses(generated, projected, clouds)
        self.opt.zero_grad(set_to_none=True)
        (l_s + (projected * leaf.grad.to(projected.device)).sum()).backward()
        return float(np.mean(rec)), l_s.item()

    def placed_centres(self, clouds: torch.Tensor, ks, ids: list[int], settings) -> tuple[torch.Tensor, torch.Tensor]:
        """The sampler on a batch -> (generated, projected), each (B, m, 3) in the normalised
        cloud space; with continuation "voxels" / "central-voxels" each shape's centres after the
        lead, up to its N of `settings`, are FPS over its occupied voxels (`method.sampler.voxel_continuation`; constants,
        as the cloud's FPS is)."""
        generated, projected = self.model.sampler(clouds, ks)
        lead = self.model.sampler.voxel_lead
        if not lead:
            return generated, projected
        rows = [self.voxel_continued_row(projected[b], self.shapes[i], n, lead, self.cfg.continuation_gradient,
                                         self.cfg.continuation == "central-voxels")
                for b, (i, (n, _)) in enumerate(zip(ids, settings))]
        continued = torch.stack(rows)
        return torch.cat([generated[:, :lead], continued[:, lead:]], 1), continued

    @staticmethod
    def voxel_continued_row(projected: torch.Tensor, shape: SamplerShape, n: int, lead: int,
                            gradient: bool = False, central: bool = False) -> torch.Tensor:
        """One shape's (m, 3) projected centres with centres lead..n-1 replaced by FPS over its
        occupied voxels continued from the first `lead` (normalised cloud space): constants, or
        with `gradient` (cfg.continuation_gradient) the same values with a gradient to the lead
        (`straight_through_fps` over the same voxels); `central`: continuation "central-voxels"
        (`voxel_continuation`)."""
        if n <= lead:
            return projected
        lead_index = shape.norm.inverse(projected[:lead].detach().cpu().numpy())
        voxels = voxel_continuation(lead_index, n - lead, shape.volume.mask, shape.volume.spacing, central)
        rest = torch.from_numpy(shape.norm.forward(voxels).astype(np.float32)).to(projected)
        if gradient:
            occupied = shape.norm.forward(dense_cloud(shape.volume.mask)).astype(np.float32)
            rest = straight_through_fps(torch.from_numpy(occupied).to(projected), projected[:lead], rest)
        return torch.cat([projected[:lead], rest, projected[n:]])

    def train_step(self, ids: list[int]) -> tuple[float, float]:
        """One batch -> (L_r, L_s) means; one optimiser step."""
        rec, l_s = self.batch_gradients(ids)
        if not np.isfinite(l_s) or not np.isfinite(rec):
            raise FloatingPointError(f"non-finite sampler training loss at epoch {self.epoch + 1}")
        self.opt.step()
        return rec, l_s

    def train_epoch(self, progress: Progress) -> dict:
        """One pass over the training shapes in batches of >= 2 -> the mean losses, the
        temperature, the next epoch's lr and the peak memory so far."""
        self.model.sampler.train()
        order = torch.randperm(len(self.shapes), generator=self.gen).tolist()
        batches = [order[b:b + self.cfg.batch_size] for b in range(0, len(order), self.cfg.batch_size)]
        batches = [ids for ids in batches if len(ids) >= 2]              # BatchNorm needs two
        rec, sam = [], []
        for ids in batches:
            r, s = self.train_step(ids)
            rec.append(r), sam.append(s)
            progress.update(len(rec) * self.cfg.batch_size, f"L_r {r:.4f}")
        self.sched.step()
        return {"loss_rec": float(np.mean(rec)), "loss_sampler": float(np.mean(sam)),
                "temperature": self.model.sampler.projection.temperature.item(), "lr": self.opt.param_groups[0]["lr"],
                "peak_rss_gb": round(peak_rss_gb(), 3), **peak_cuda_gb(self.device)}

    # ---------------------------------------------------------- start and validation (loop hooks)
    def before_epochs(self) -> None:
        """The FPS baseline (once) and, for a start other than random, its validation as epoch 0."""
        if self.val_shapes and self.baseline is None:
            self.baseline = self.fps_validation_dice()
            self.log(f"FPS validation Dice (baseline): {self.baseline:.4f}")
        if (self.cfg.init != "random" or self.cfg.anchor != "none") and not self.history:
            row = {"epoch": 0, **initialise(self.model, self.cfg, self.shapes, self.init_shapes, self.gen)}
            self.validate_if_due(row, force=True)
            self.log(f"start ({row['init']}): validation Dice {row.get('val_dice')}")
            self.record(row)

    def validation_dice(self) -> float:
        """Mean Dice over the validation shapes of the real task (all patch voxels, T steps)."""
        return self._mean_patch_dice(lambda s: learned_centres(self.model, s.volume.mask)[1], "validation")

    def fps_validation_dice(self) -> float:
        """The same score for FPS centres (seed 0): the baseline to beat, logged once."""
        return self._mean_patch_dice(lambda s: fps_centres(s.volume.mask, self.cfg.n, seed=0), "FPS validation")

    def _mean_patch_dice(self, centres_of, name: str, k: int | None = None, points: int | None = None) -> float:
        """Mean `patch_dice` of the validation shapes at `centres_of(shape)` with patch size `k`
        (default the sampler's) and `points` voxels per fit step (None: all); progress: task `name`."""
        cfg = self.cfg
        k = cfg.k if k is None else k
        return float(np.mean([patch_dice(self.decoder, s.volume, s.centre_mm, centres_of(s), k, cfg.t, cfg.fit_lr,
                                         points=points)
                              for s in tracked(self.val_shapes, name, unit="shapes")]))

    def validation(self, row: dict) -> float:
        """The validation Dice; without validation shapes, -L_r (the lowest training loss is kept)."""
        row["val_dice"] = self.validation_dice() if self.val_shapes else -row.get("loss_rec", math.inf)
        return row["val_dice"]

    def finished_model(self, val_dice: float | None) -> SamplerModel:
        """The sampler with its training metadata (the same object, updated)."""
        meta = dict(self.provenance, config=asdict(self.cfg), epochs=self.epoch, val_dice=val_dice,
                    fps_val_dice=self.baseline, n_train=len(self.shapes), n_val=len(self.val_shapes),
                    prior=self.prior.metadata.get("path", "in memory"), prior_weights_sha256=self.prior_fingerprint,
                    training_minutes=round(self.elapsed / 60, 2))
        self.model.metadata.update(meta)
        return self.model

    def best_model(self, row: dict) -> SamplerModel:
        return self.finished_model(row.get("val_dice") if self.val_shapes else None)

    def plot(self, path) -> None:
        plot_sampler_curves(self.history, self.baseline, path)

    def run(self) -> SamplerModel:
        """Train (from `self.epoch`) -> the best sampler, loaded from out_dir/sampler.pt."""
        return SamplerModel.load(self.run_epochs())


def peak_rss_gb() -> float:
    """Peak resident memory of this process so far, GB (ru_maxrss: KiB on Linux, bytes on macOS;
    NaN on Windows, which has no `resource` module)."""
    import sys
    try:
        import resource
    except ImportError:
        return float("nan")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1e9 if sys.platform == "darwin" else peak * 1024 / 1e9


def peak_cuda_gb(device: torch.device) -> dict:
    """{"peak_cuda_gb": torch's peak allocated GPU memory so far, GB} on CUDA, {} elsewhere."""
    if device.type != "cuda":
        return {}
    return {"peak_cuda_gb": round(torch.cuda.max_memory_allocated(device) / 1e9, 3)}


def plot_sampler_curves(history: list[dict], fps_val: float | None, path) -> None:
    """PNG: training L_r per epoch and validation Dice (with the FPS baseline as a line)."""
    with curves_figure(path) as (a, b):
        trained = [r for r in history if "loss_rec" in r]
        a.plot([r["epoch"] for r in trained], [r["loss_rec"] for r in trained], marker=".")
        a.set(xlabel="epoch", ylabel="L_r = BCE + 1 - soft Dice", title="training reconstruction loss")
        pts = [(r["epoch"], r["val_dice"]) for r in history if "val_dice" in r]
        if pts:
            b.plot(*zip(*pts), marker="o", label="learned sampler")
        if fps_val is not None:
            b.axhline(fps_val, color="grey", linestyle="--", label="FPS (seed 0)")
        b.set(xlabel="epoch", ylabel="Dice", title="validation Dice (all patch voxels, T steps)")
