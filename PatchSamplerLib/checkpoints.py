"""Models on disk: versioned checkpoints with metadata, atomic writes, `weights_only` loading.

A checkpoint is a dict {"format": "patchsampler", "kind": str, "version": int,
"state_dict": {name: tensor}, "metadata": JSON text}. Kinds: "prior" (the INR decoder and
its frame), "prior-training" (resumable training state). Loading always uses
``torch.load(..., weights_only=True)`` and refuses another format, kind or version.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch

FORMAT = "patchsampler"
FORMAT_VERSION = 1
ROOT = Path(__file__).resolve().parent.parent
MODELS_DIR = Path(os.environ.get("PATCHSAMPLER_MODELS", ROOT / "Resources" / "Models"))


class CheckpointError(ValueError):
    """A file that is not a usable checkpoint of the requested kind, with a user message."""


def atomic_torch_save(obj, path) -> None:
    """torch.save to a temporary file in the same folder, then rename over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.chmod(tmp, 0o644)          # mkstemp creates 0600; a model file is meant to be shared
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def save_checkpoint(path, kind: str, state_dict: dict, metadata: dict) -> None:
    """Write a versioned checkpoint atomically. `metadata` must be JSON serialisable."""
    atomic_torch_save({"format": FORMAT, "kind": kind, "version": FORMAT_VERSION,
                       "state_dict": state_dict, "metadata": json.dumps(metadata)}, path)


def load_checkpoint(path, kind: str) -> tuple[dict, dict]:
    """Read a checkpoint of `kind` -> (state_dict, metadata). Raises CheckpointError."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle / zip errors of every kind
        raise CheckpointError(f"{path} is not a readable PatchSampler checkpoint ({type(exc).__name__})") from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a PatchSampler checkpoint")
    if obj.get("kind") != kind:
        raise CheckpointError(f"{path} is a {obj.get('kind')!r} checkpoint, but a {kind!r} checkpoint is needed")
    if obj.get("version") != FORMAT_VERSION:
        raise CheckpointError(f"{path} has checkpoint format version {obj.get('version')}; this PatchSampler "
                              f"reads version {FORMAT_VERSION}")
    return obj["state_dict"], json.loads(obj["metadata"])


def bundled_models() -> dict[str, Path]:
    """Bundled priors by name: Resources/Models/prior_<name>.pt -> {name: path}."""
    if not MODELS_DIR.is_dir():
        return {}
    return {p.stem[len("prior_"):]: p for p in sorted(MODELS_DIR.glob("prior_*.pt"))}


def resolve_prior_path(name_or_path: str | os.PathLike | None) -> Path:
    """A bundled prior's name or a file path -> path. Raises CheckpointError naming the choices."""
    bundled = bundled_models()
    choices = ", ".join(bundled) or "none installed"
    if name_or_path is None:
        raise CheckpointError(f"no prior given; use --prior NAME or --prior FILE (bundled priors: {choices})")
    if str(name_or_path) in bundled:
        return bundled[str(name_or_path)]
    path = Path(name_or_path)
    if path.is_file():
        return path
    raise CheckpointError(f"prior {str(name_or_path)!r} is neither a bundled prior ({choices}) nor a file")
