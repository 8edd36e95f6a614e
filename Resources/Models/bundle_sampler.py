"""Copy a trained sampler run into the bundle: the model as Resources/Models/<name>.pt and its
logs, curves and metadata under Resources/Models/<name>/.

    python Resources/Models/bundle_sampler.py runs/sampler_vertebra_n4_k9_t100 [...]

<name> is the run folder's name, which must be the bundled naming sampler_<prior>_n<N>_k<K>_t<T>
(one (N, K)) or sampler_<prior>_any_t<T> (one sampler for any N and K, train-sampler --any-nk).
The curves are redrawn from train_log.jsonl (a run stopped by a kill has none of its own).
"""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))

from PatchSamplerLib.checkpoints import bundled_any_samplers, bundled_samplers, load_checkpoint  # noqa: E402
from PatchSamplerLib.training.sampler import plot_sampler_curves  # noqa: E402


def bundle(run: Path) -> None:
    name = run.name
    target = HERE / name
    target.mkdir(exist_ok=True)
    shutil.copy(run / "sampler.pt", HERE / f"{name}.pt")
    if HERE / f"{name}.pt" not in [*bundled_samplers().values(), *bundled_any_samplers().values()]:
        (HERE / f"{name}.pt").unlink()
        raise SystemExit(f"{name} does not follow the naming sampler_<prior>_n<N>_k<K>_t<T> "
                         "or sampler_<prior>_any_t<T>")
    for log in ("train.log", "train_log.jsonl"):
        shutil.copy(run / log, target / log)
    history = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    _, meta = load_checkpoint(run / "sampler.pt", "sampler")
    _, last = load_checkpoint(run / "last.pt", "sampler-training")
    plot_sampler_curves(history, last.get("fps_val_dice"), target / "curves.png")
    (target / "metadata.json").write_text(json.dumps(meta, indent=2))
    print(f"{name}: epoch {meta['epochs']} of {len(history)}, validation Dice {meta['val_dice']:.4f} "
          f"(FPS {meta['fps_val_dice']:.4f}), {meta['training_minutes']} min")


if __name__ == "__main__":
    for folder in sys.argv[1:]:
        bundle(Path(folder))
