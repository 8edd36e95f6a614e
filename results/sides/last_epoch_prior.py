"""The prior at the last epoch of a train-prior run (its last.pt), saved as a prior file with the
metadata of the run's best prior updated (epochs, val_dice from train_log.jsonl, training
minutes, mean latent). train-prior keeps the best validation epoch; the one-sided kidney prior's
best (epoch 30 of 90, 0.9250 vs 0.9238 at 90 on 8 validation kidneys) was under-trained (training
Dice 0.930 vs 0.957) and lost to the prior of both sides -- trained to its epoch 90 -- on held-out
kidneys (results/sides/README.md), so both are compared at the end of the same schedule.

    python results/sides/last_epoch_prior.py runs/prior_kidney_anatomical_left Resources/Models/prior_kidney-anatomical-left.pt
"""
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from PatchSamplerLib.checkpoints import load_checkpoint  # noqa: E402
from PatchSamplerLib.method.inr import ShapePrior  # noqa: E402
from PatchSamplerLib.training.prior import PriorTrainer  # noqa: E402


def last_epoch_prior(run: Path) -> ShapePrior:
    prior = ShapePrior.load(run / "prior.pt")
    state, _ = load_checkpoint(run / "last.pt", "prior-training")
    prior.decoder.load_state_dict(state["decoder"])
    scalars = dict(zip(PriorTrainer.SCALARS, (float(v) for v in state["scalars"])))
    epoch, elapsed = scalars["epoch"], scalars["elapsed"]
    history = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    last = next(row for row in reversed(history) if row["epoch"] == int(epoch))
    prior.metadata.update(epochs=int(epoch), val_dice=last.get("val_dice"), training_minutes=round(elapsed / 60, 2),
                          mean_latent=[round(float(v), 6) for v in state["latents"].mean(0)],
                          checkpoint="the last epoch (last.pt), not the best validation epoch: "
                                     "results/sides/last_epoch_prior.py")
    return prior


if __name__ == "__main__":
    prior = last_epoch_prior(Path(sys.argv[1]))
    prior.save(sys.argv[2])
    print(f"{sys.argv[2]}: epoch {prior.metadata['epochs']}, validation Dice {prior.metadata['val_dice']}")
