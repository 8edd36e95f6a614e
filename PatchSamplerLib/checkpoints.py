"""Models on disk: versioned checkpoints with metadata, atomic writes, `weights_only` loading.

A checkpoint is a dict {"format": "patchsampler", "kind": str, "version": int,
"state_dict": {name: tensor}, "metadata": JSON text}. Kinds: "prior" (the INR decoder and
its frame), "prior-training" (resumable training state). Loading always uses
``torch.load(..., weights_only=True)`` and refuses another format, kind or version.

Bundled resources (`resources_dir`): the priors, learned samplers, sample labelmaps and the
table of Sobol points of the repository's Resources/ folder, found next to this package (the source tree, a built Slicer
extension) or, after `pip install .`, inside it (PatchSamplerLib/_resources).
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path


FORMAT = "patchsampler"
FORMAT_VERSION = 1
ROOT = Path(__file__).resolve().parent.parent


def resources_dir() -> Path:
    """The folder of the bundled models (Models/) and sample data (SampleData/): Resources/ next
    to this package when it holds Models/ (the repository, a built Slicer extension), else the
    copy `pip install .` puts inside the package (`importlib.resources`: PatchSamplerLib/_resources);
    Resources/ next to the package when neither exists."""
    source = ROOT / "Resources"
    if (source / "Models").is_dir():
        return source
    from importlib.resources import files
    installed = Path(str(files("PatchSamplerLib") / "_resources"))
    return installed if installed.is_dir() else source


RESOURCES_DIR = resources_dir()
MODELS_DIR = Path(os.environ.get("PATCHSAMPLER_MODELS", RESOURCES_DIR / "Models"))
SAMPLE_DATA_DIR = RESOURCES_DIR / "SampleData"
SOBOL_DIR = RESOURCES_DIR / "Sobol"          # SciPy's Sobol points of the sampler's cloud (method.pointcloud)


class CheckpointError(ValueError):
    """A file that is not a usable checkpoint of the requested kind, with a user message."""


def atomic_torch_save(obj, path) -> None:
    """torch.save to a temporary file in the same folder, then rename over `path`."""
    import torch                      # imported here: listing models must work before torch is installed
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
    import torch
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


def bundled_sample_data() -> dict[str, Path]:
    """Bundled sample labelmaps by file name: Resources/SampleData/*.nii.gz -> {name: path}."""
    if not SAMPLE_DATA_DIR.is_dir():
        return {}
    return {p.name: p for p in sorted(SAMPLE_DATA_DIR.glob("*.nii.gz"))}


def sample_data_path(name: str) -> Path:
    """The path of a bundled sample labelmap by file name, e.g. "kidney_left_1.5mm.nii.gz" (a
    TotalSegmentator kidney resampled to 1.5 mm; Resources/SampleData/README.md). Raises
    FileNotFoundError naming the bundled ones."""
    bundled = bundled_sample_data()
    if name not in bundled:
        raise FileNotFoundError(f"no bundled sample labelmap {name!r}; bundled: {', '.join(bundled) or 'none installed'}")
    return bundled[name]


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
    if path.suffix == ".pt" or len(path.parts) > 1:          # meant as a file
        raise CheckpointError(f"prior file not found: {path} (bundled priors: {choices})")
    raise CheckpointError(f"prior {str(name_or_path)!r} is neither a bundled prior ({choices}) nor a file")


def sampler_file_name(prior: str | None, n: int, k: int, t: int) -> str:
    """A learned sampler's file name: sampler_<prior>_n<N>_k<K>_t<T>.pt (bundled), or with
    `prior` None sampler_n<N>_k<K>_t<T>.pt (a folder of one prior's samplers: --sampler-dir)."""
    return f"sampler_{prior}_n{n}_k{k}_t{t}.pt" if prior else f"sampler_n{n}_k{k}_t{t}.pt"


def bundled_samplers() -> dict[tuple[str, int, int, int], Path]:
    """Bundled samplers: {(prior name, N, K, T): path} from Resources/Models/sampler_*.pt."""
    import re
    found = {}
    for path in sorted(MODELS_DIR.glob("sampler_*.pt")) if MODELS_DIR.is_dir() else []:
        match = re.fullmatch(r"sampler_(.+)_n(\d+)_k(\d+)_t(\d+)\.pt", path.name)
        if match:
            found[(match[1], int(match[2]), int(match[3]), int(match[4]))] = path
    return found


ANY_N_MAX = 64                 # an any-(N, K) sampler places up to 64 patches (the module's N range)
ANY_K_RANGE = (3, 31)          # and takes odd K in this range (the module's K range)


def any_sampler_use(n: int, k: int) -> str:
    """How a run uses an any-(N, K) sampler, for status lines: which of its centres, for which K."""
    return f"one model for any N and K, here the first {n} of its centres for K={k}"


def in_any_range(n: int, k: int) -> bool:
    """Whether an any-(N, K) sampler covers (N, K): 1 <= N <= ANY_N_MAX, K odd in ANY_K_RANGE."""
    return 1 <= n <= ANY_N_MAX and ANY_K_RANGE[0] <= k <= ANY_K_RANGE[1] and k % 2 == 1


def bundled_any_samplers() -> dict[tuple[str, int], Path]:
    """Bundled any-(N, K) samplers: {(prior name, T): path} from Resources/Models/sampler_*_any_t*.pt."""
    import re
    found = {}
    for path in sorted(MODELS_DIR.glob("sampler_*_any_t*.pt")) if MODELS_DIR.is_dir() else []:
        match = re.fullmatch(r"sampler_(.+)_any_t(\d+)\.pt", path.name)
        if match:
            found[(match[1], int(match[2]))] = path
    return found


def prior_name(prior_path: str | os.PathLike | None) -> str | None:
    """The bundled name of a prior file (Resources/Models/prior_<name>.pt), else None."""
    if prior_path is None:
        return None
    for name, path in bundled_models().items():
        if Path(prior_path).resolve() == path.resolve():
            return name
    return None


def resolve_sampler_path(prior_path, n: int, k: int, t: int) -> tuple[Path, str | None]:
    """The bundled sampler for (prior, N, K) -> (path, note). The per-(N, K) sampler trained for
    exactly (N, K, T) when one is bundled (specialised: at vertebra-anatomical 4 x 9 it is 0.005
    Dice above the any-(N, K) one, results/learned_any_nk/lead/); else, of the prior's per-(N, K)
    samplers for this (N, K) and its any-(N, K) sampler (#18; when N <= 64, K odd in 3..31), the
    one trained for the T nearest `t`, the per-(N, K) one when both are as near; another T comes
    with a note. Raises CheckpointError naming the bundled ones."""
    name = prior_name(prior_path)
    bundled, any_nk = bundled_samplers(), bundled_any_samplers()
    listing = ", ".join([f"{p} N={bn} K={bk} T={bt}" for p, bn, bk, bt in sorted(bundled)]
                        + [f"{p} any N, K T={bt}" for p, bt in sorted(any_nk)]) or "none installed"
    if name is None:
        raise CheckpointError(f"no bundled learned sampler belongs to the prior {prior_path}. Bundled samplers: "
                              f"{listing}. {training_hint(str(prior_path), n, k)} and pass it with "
                              "--sampler-model FILE (Python: sampler_model=FILE).")
    if (name, n, k, t) in bundled:
        return bundled[(name, n, k, t)], None
    candidates = [(abs(bt - t), 0, bt, path)                         # 0: the per-(N, K) one first on a tie
                  for (p, bn, bk, bt), path in bundled.items() if (p, bn, bk) == (name, n, k)]
    if in_any_range(n, k):
        candidates += [(abs(bt - t), 1, bt, path) for (p, bt), path in any_nk.items() if p == name]
    if candidates:
        _, _, bt, path = min(candidates)
        return path, None if bt == t else f"no bundled sampler for T={t}; using the one trained for T={bt}"
    outside = "" if in_any_range(n, k) or not any(p == name for p, _ in any_nk) else (
        f" (its any-(N, K) sampler serves N <= {ANY_N_MAX} and odd K in {ANY_K_RANGE[0]}-{ANY_K_RANGE[1]} only)")
    raise CheckpointError(f"no bundled learned sampler for N={n}, K={k} with the {name!r} prior{outside}. Bundled "
                          f"samplers: {listing}. {training_hint(name, n, k)} and pass it with --sampler-model FILE "
                          "(Python: sampler_model=FILE).")


def training_hint(prior: str, n: int, k: int) -> str:
    """How to train a sampler for (N, K) with `prior` (a bundled prior's name or a prior file's path):
    one for every N <= 64 and odd K in 3-31 (`--any-nk`, #18) when (N, K) is in that range, else one
    for exactly (N, K)."""
    import shlex
    command = f"python -m PatchSamplerLib train-sampler --prior {shlex.quote(prior)}"
    if in_any_range(n, k):
        return (f"Train one for every N <= {ANY_N_MAX} and odd K (this one included) with `{command} "
                f"--any-nk --n {ANY_N_MAX} ...` (or for N={n}, K={k} only: --n {n} --k {k})")
    return f"Train one with `{command} --n {n} --k {k} ...`"


def weights_sha256(state_dict: dict) -> str:
    """SHA-256 (hex) of a model's weights: every tensor's name, shape, dtype and bytes, in name
    order. The same weights give the same value on any machine and after re-saving the file with
    other metadata; used to check that a learned sampler belongs to the prior it is run with."""
    import hashlib
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().cpu().contiguous()
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


def file_sha256(path) -> str:
    """SHA-256 (hex) of a file's bytes (recorded with a run: which model file it used)."""
    import hashlib
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
