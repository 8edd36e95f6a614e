"""One learned sampler for every N <= 64 and odd K in 3..31 (issue #18; not in [T]).

The thesis trains one sampler per (N, K, T) and names the coupling a limitation [T §6]. After
ProgressiveNet (Dovrat et al., Learning to Sample, CVPR 2019), this trainer trains one network
whose 64 ordered output centres are good for every prefix: the first N are the N patches
(`method.sampler`, `conditioned`: K is an input). It is `training.sampler`'s end-to-end
training [T §3.6] with three changes:

- **Schedule**: every shape of a batch draws its own (N, K) (`draw_setting`): N from the
  thesis's grid {4, 8, 12} with probability 1/2, else uniformly from the prefix sizes
  `PREFIXES` (1 to 64); K from the grid {9, 11, 13} with probability 1/2, else uniformly from
  the odd 3..31. The thesis's grid is where the product is compared with FPS and with the
  per-(N, K) samplers, so it gets half the draws; the rest keeps every prefix and patch size
  trained. Drawing per shape is the stochastic form of ProgressiveNet's sum over prefix sizes
  (its expectation, up to a constant), at the cost of one fit per shape; drawing K per shape
  (not per batch) keeps K visible through the generator's BatchNorm. `--min-prefix M`
  (cfg.min_prefix) leaves out the prefix sizes below M (the bundled kidney-anatomical sampler:
  a lead of 1 centre trained on N >= 8, so the first centre is placed as a start for the FPS
  continuation rather than as a patch of its own).
- **Unrolled fast fit** (issue #19, item 2): in `fast` mode each of the T unrolled Adam steps
  sees `fit_points` (512) patch voxels drawn uniformly with replacement from all N K^3 (the
  fast fit of `method.fitting` as it was when the bundled samplers were trained, unrolled; all
  of them when there are fewer), so a training step costs the same for N = 64, K = 31 as for
  4 x 9. What is learned does not change in kind: the reconstruction loss still reaches the
  centres through T fit steps on the patches' voxels; the gradient is noisier (the product's
  fast fit uses 384-2,048 boundary-weighted voxels per step, `evaluate` all of them). `faithful`
  mode fits on every patch voxel (costly at large N K^3).
- **Validation**: the mean Dice over `VALIDATION_CELLS` (the thesis grid's corners and 32 x 15),
  each with T fit steps on the fast fit's number of voxels, drawn uniformly (`scores.patch_dice`;
  the product's fast fit also weights the boundary), decoded at stride 2; the FPS baseline is
  the same mean for FPS (seed 0). The epoch with the best mean is kept.

Where FPS continues after a lead (`--continuation`, `method.sampler`): "cloud" (the network's
own FPS over the 2,048-point cloud) or "voxels" (FPS over each shape's occupied voxels, as the
FPS baseline; `SamplerTrainer.placed_centres` replaces the continued centres up to each shape's
drawn N before the fit, as constants: FPS has no gradient either way, the lead is what learns).
`--continuation-gradient` gives those constants a straight-through gradient to the lead (a soft
FPS over the same voxels, `method.sampler.straight_through_fps`); on kidneys it validated below
its start and below FPS (results/learned_any_nk/continuation/README.md) and is not used by a
bundled sampler. `--select-continuation` (cfg.select_continuation): after training, the kept
epoch's sampler is validated with every continuation (CONTINUATIONS) and saved with the best one
(the same weights; its metadata keeps `trained_continuation` and `val_dice_by_continuation`). Why:
the continuation trained with was not the one that validated best for the vertebra-anatomical
(cloud -> voxels) nor the synthetic kidney sampler (central-voxels -> voxels, 0.9500 -> 0.9652),
results/learned_any_nk/continuation/ and synthetic/; it costs three more validations (one per continuation).

Which generator: `--anchor` (`method.sampler`). The bundled vertebra-anatomical sampler uses
`lead` (4 generated centres, then FPS continued from them; trained over the cloud, bundled with
"voxels", results/learned_any_nk/continuation/), the kidney-anatomical one `lead` with 1 (trained over
the cloud, bundled with "central-voxels", results/learned_any_nk/central/); `fps` / `central` (learned offsets on
64 FPS-anchored centres) and `none` (64 free centres) validated below FPS on the CPU budget tried
(results/learned_any_nk/README.md).
"""
from __future__ import annotations

import numpy as np
import torch

from PatchSamplerLib.method.baselines import fps_centres
from PatchSamplerLib.method.fitting import fast_points
from PatchSamplerLib.method.inr import fit_latent_unrolled
from PatchSamplerLib.method.patches import patch_labels, patch_offsets
from PatchSamplerLib.method.sampler import CONTINUATIONS, SamplerModel, learned_centres
from PatchSamplerLib.training.points import SamplerShape
from PatchSamplerLib.training.sampler import SamplerTrainer, unrolled_latent
from PatchSamplerLib.volume import index_to_local_mm

PREFIXES = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)
GRID_N, GRID_K = (4, 8, 12), (9, 11, 13)
ODD_K = tuple(range(3, 32, 2))
VALIDATION_CELLS = ((4, 9), (8, 11), (12, 13), (32, 15))


def schedule_prefixes(n_min: int, n_max: int) -> list[int]:
    """The prefix sizes of `PREFIXES` in n_min..n_max (what the schedule draws N from besides the
    grid). ValueError when there is none (e.g. --min-prefix 9 with --n 10)."""
    prefixes = [n for n in PREFIXES if n_min <= n <= n_max]
    if not prefixes:
        raise ValueError(f"no prefix size of the schedule ({', '.join(map(str, PREFIXES))}) lies in "
                         f"{n_min}..{n_max} (--min-prefix..--n)")
    return prefixes


def draw_setting(gen: torch.Generator, n_max: int = 64, n_min: int = 1) -> tuple[int, int]:
    """One (N, K) of the training schedule (module docstring), n_min <= N <= n_max, drawn with
    `gen` (n_min > 1: `--min-prefix`, a schedule without the smallest prefixes). ValueError when
    no prefix size lies in that range."""
    grid_n, grid_k, pick_n, pick_k = torch.rand(4, generator=gen).tolist()
    prefixes = schedule_prefixes(n_min, n_max)
    grid = [n for n in GRID_N if n_min <= n <= n_max]
    ns = grid if grid_n < 0.5 and grid else prefixes
    ks = GRID_K if grid_k < 0.5 else ODD_K
    return ns[int(pick_n * len(ns))], ks[int(pick_k * len(ks))]


def per_step_patch_points(shape: SamplerShape, projected: torch.Tensor, k: int, steps: int, points: int,
                          gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The unrolled fast fit's points: for each of `steps` steps, `points` voxels drawn uniformly
    with replacement from the N K^3 voxels of the patches at `projected` (N, 3) (normalised cloud
    space) -> coords (T, 1, M, 3) mm in the INR frame (differentiable in `projected`) and labels
    (T, 1, M) V[round(x)] (constants)."""
    vol, k3 = shape.volume, k ** 3
    centres = shape.norm.inverse(projected)                                               # (N, 3) voxel index
    idx = torch.randint(len(projected) * k3, (steps, points), generator=gen).to(projected.device)
    coords_idx = centres[idx // k3] + patch_offsets(k).to(projected)[idx % k3]           # (T, M, 3)
    labels = patch_labels(shape.mask, coords_idx).to(projected)
    coords = index_to_local_mm(coords_idx, vol.spacing) - torch.as_tensor(shape.centre_mm).to(projected)
    return coords[:, None], labels[:, None]


class AnySamplerTrainer(SamplerTrainer):
    """`SamplerTrainer` for one any-(N, K) sampler (cfg.any_nk; cfg.n: the most patches, 64).
    ValueError before anything is written when no prefix size of the schedule lies in
    cfg.min_prefix..cfg.n (`schedule_prefixes`)."""

    def __init__(self, train, val, prior, out_dir, cfg, *args, **kwargs):
        cfg.check()
        schedule_prefixes(cfg.min_prefix, cfg.n)
        super().__init__(train, val, prior, out_dir, cfg, *args, **kwargs)

    def draw_settings(self, batch: int) -> list[tuple[int, int]]:
        return [draw_setting(self.gen, self.cfg.n, self.cfg.min_prefix) for _ in range(batch)]

    def fitted_latent(self, shape: SamplerShape, projected: torch.Tensor, k: int) -> torch.Tensor:
        cfg = self.cfg
        if cfg.mode == "faithful" or len(projected) * k ** 3 <= cfg.fit_points:
            return unrolled_latent(self.decoder, shape, projected, k, torch.arange(k ** 3), cfg.t, cfg.fit_lr)
        coords, labels = per_step_patch_points(shape, projected, k, cfg.t, cfg.fit_points, self.gen)
        return fit_latent_unrolled(self.decoder, coords, labels, cfg.t, lr=cfg.fit_lr, per_step=True)

    def validation_dice(self) -> float:
        """Mean over VALIDATION_CELLS of the mean validation Dice (fast fit, T steps)."""
        return self._cells_dice(lambda s, n, k: learned_centres(self.model, s.volume.mask, n, k, s.volume.spacing)[1], "validation")

    def fps_validation_dice(self) -> float:
        return self._cells_dice(lambda s, n, k: fps_centres(s.volume.mask, n, seed=0), "FPS validation")

    def validation_by_continuation(self, model: SamplerModel) -> dict[str, float]:
        """{continuation: `validation_dice()` of `model` with it} for every one of CONTINUATIONS
        (each a full validation); `model` and the trainer's own model are left as they were."""
        own_model, own = self.model, model.sampler.continuation
        scores = {}
        try:
            self.model = model
            for continuation in CONTINUATIONS:
                model.sampler.continuation = continuation
                scores[continuation] = self.validation_dice()
                self.log(f"continuation {continuation}: validation Dice {scores[continuation]:.4f}")
        finally:
            self.model, model.sampler.continuation = own_model, own
        return scores

    def keep_best_continuation(self, path) -> None:
        """Rewrite the sampler file `path` with the continuation of the best validation Dice
        (`validation_by_continuation`; the trained one on a tie), recorded in its metadata."""
        model = SamplerModel.load(path)
        scores = self.validation_by_continuation(model)
        trained = model.sampler.continuation
        best = max(CONTINUATIONS, key=lambda c: (scores[c], c == trained))
        model.metadata = {k: v for k, v in model.metadata.items() if k != "path"}
        model.metadata.update(trained_continuation=trained, val_dice_by_continuation=scores,
                              val_dice=scores[best])
        model.sampler.continuation = best
        model.save(path)
        self.log(f"continuation kept: {best} (validation Dice {scores[best]:.4f}; trained with {trained})")

    def run(self) -> SamplerModel:
        """`SamplerTrainer.run`, then (cfg.select_continuation, with validation shapes) the kept
        sampler's best continuation (`keep_best_continuation`)."""
        path = self.run_epochs()
        if self.cfg.select_continuation and self.writes:
            if self.val_shapes:
                self.keep_best_continuation(path)
            else:
                self.log("no validation shapes: the continuation trained with is kept")
        return SamplerModel.load(path)

    def _cells_dice(self, centres_of, name: str) -> float:
        cells = [(n, k) for n, k in VALIDATION_CELLS if n <= self.cfg.n]
        scores = [self._mean_patch_dice(lambda s, n=n, k=k: centres_of(s, n, k), f"{name} {n} x {k}", k,
                                        fast_points(n * k ** 3)) for n, k in cells]
        return float(np.mean(scores))
