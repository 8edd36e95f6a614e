"""Give a trained lead sampler another continuation (`method.sampler`, "cloud" / "voxels") after
scoring both on the validation shapes it was trained with: the trainer's validation Dice
(`AnySamplerTrainer.validation_dice`: the mean over 4 x 9, 8 x 11, 12 x 13 and 32 x 15, T steps of
the fast fit on the validation shapes of its metadata's family, seed and val_indices). The copy
keeps the weights and records where it came from and both scores in its metadata.

    python results/learned_any_nk/continuation/switch_continuation.py SAMPLER.pt voxels OUT_DIR

writes OUT_DIR/sampler_any_t100.pt (the same file name) and OUT_DIR/metadata.json. (The trainer
does the same at the end of a run with --select-continuation; this is for files trained without it.)"""
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))
from PatchSamplerLib.checkpoints import resolve_prior_path  # noqa: E402
from PatchSamplerLib.data.synthetic import make_shapes  # noqa: E402
from PatchSamplerLib.method.inr import ShapePrior  # noqa: E402
from PatchSamplerLib.method.sampler import SamplerModel  # noqa: E402
from PatchSamplerLib.training.any_sampler import AnySamplerTrainer  # noqa: E402
from PatchSamplerLib.training.sampler import SamplerConfig  # noqa: E402


def validation_by_continuation(model: SamplerModel) -> dict:
    """{continuation: the trainer's validation Dice of `model` with it} on its validation shapes."""
    meta = model.metadata
    family, first, last = meta["data"].split()[-1], *meta["val_indices"]
    val = make_shapes(family, last - first + 1, seed=meta["data_seed"], start=first)
    prior = ShapePrior.load(resolve_prior_path(family))
    known = set(SamplerConfig.__dataclass_fields__)
    cfg = SamplerConfig(**{k: v for k, v in meta["config"].items() if k in known})
    with tempfile.TemporaryDirectory() as tmp:
        return AnySamplerTrainer(val[:2], val, prior, tmp, cfg, log=print).validation_by_continuation(model)


if __name__ == "__main__":
    source, continuation, out = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
    model = SamplerModel.load(source)
    scores = validation_by_continuation(model)
    model.sampler.continuation = continuation
    model.metadata = {k: v for k, v in model.metadata.items() if k != "path"}
    model.metadata.update(continuation_from={"path": str(source.resolve().relative_to(ROOT)), "sha256": model.file_sha256},
                          val_dice_by_continuation=scores, val_dice=scores[continuation])
    out.mkdir(parents=True, exist_ok=True)
    model.save(out / source.name)
    saved = SamplerModel.load(out / source.name).metadata
    (out / "metadata.json").write_text(json.dumps({k: v for k, v in saved.items() if k != "path"}, indent=2))
    print(f"{out / source.name}: continuation {continuation}")
