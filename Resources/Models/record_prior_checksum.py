"""Record in each bundled learned sampler which prior it was trained through.

    python Resources/Models/record_prior_checksum.py

Samplers trained before `prior_weights_sha256` existed record only their prior's file path (on
the machine that trained them). A run refuses a sampler whose prior does not match its own
(`PatchSamplerLib.method.sampler.check_sampler_prior`), so the bundled ones get the SHA-256 of
the weights of the bundled prior named in their file name, after checking that their recorded
path names that file (and, where it still exists, that its weights are the same). The weights
are not changed; the checkpoint and <name>/metadata.json are rewritten with the new key.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))

from PatchSamplerLib.checkpoints import (bundled_models, bundled_samplers, load_checkpoint,  # noqa: E402
                                         save_checkpoint, weights_sha256)


def prior_checksum(prior: str, recorded: str) -> str:
    """The bundled prior's weights SHA-256, after checking the sampler's recorded prior path."""
    bundled = bundled_models()[prior]
    if Path(recorded).name != bundled.name:
        raise SystemExit(f"recorded prior {recorded} is not {bundled.name}")
    checksum = weights_sha256(load_checkpoint(bundled, "prior")[0])
    if os.path.isfile(recorded) and weights_sha256(load_checkpoint(recorded, "prior")[0]) != checksum:
        raise SystemExit(f"{recorded} holds other weights than {bundled}")
    return checksum


def record(prior: str, path: Path) -> None:
    state, meta = load_checkpoint(path, "sampler")
    if meta.get("prior_weights_sha256"):
        print(f"{path.name}: already recorded")
        return
    meta["prior_weights_sha256"] = prior_checksum(prior, meta["prior"])
    save_checkpoint(path, "sampler", state, meta)
    folder = path.with_suffix("")
    if (folder / "metadata.json").is_file():
        (folder / "metadata.json").write_text(json.dumps(meta, indent=2))
    print(f"{path.name}: prior {prior} {meta['prior_weights_sha256'][:12]}")


if __name__ == "__main__":
    for (prior, _, _, _), sampler_path in sorted(bundled_samplers().items()):
        record(prior, sampler_path)
