"""Device choice, made once and passed down: "auto" is CUDA when present, else the CPU; and the
matmul precision of the latent fit and decode (fp32; TF32 or bf16 on CUDA only)."""
from __future__ import annotations

import contextlib

import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(name: str = "auto") -> torch.device:
    """"auto" | "cpu" | "cuda" | "cuda:N" -> torch.device; ValueError if CUDA is asked for but absent."""
    name = str(name).lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError("--device cuda was requested but no CUDA device is available "
                             "(this torch build or machine has none); use --device cpu or auto "
                             "(Python: device=\"cpu\")")
        return torch.device(name)
    raise ValueError(f"unknown device {name!r}; choose one of {', '.join(DEVICE_CHOICES)}")


PRECISIONS = ("fp32", "tf32", "bf16")


def check_precision(device: torch.device, precision: str) -> None:
    """ValueError unless `precision` is known, and fp32 on a non-CUDA device (TF32 and bf16 are
    GPU-only options: on a CPU they would change the numbers for no gain here)."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if precision != "fp32" and device.type != "cuda":
        raise ValueError(f"--precision {precision} applies on a CUDA device only; this run is on {device}")


@contextlib.contextmanager
def precision_context(device: torch.device, precision: str = "fp32"):
    """Run the block's matmuls at `precision` on `device`: fp32 (unchanged), tf32 (CUDA matmuls
    and convolutions on TF32 tensor cores; the setting is restored afterwards) or bf16 (CUDA
    autocast to bfloat16). Checked by `check_precision`."""
    check_precision(device, precision)
    if precision == "fp32":
        yield
        return
    if precision == "bf16":
        with bf16_autocast(device.type):
            yield
        return
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def bf16_autocast(device_type: str = "cuda"):
    """Autocast to bfloat16 without autocast's cast cache: the cache keeps the first bf16 copy
    of every leaf tensor that requires grad for the whole block, so a latent updated in place by
    Adam inside the block would be seen unchanged by every forward (the fit would not move)."""
    return torch.autocast(device_type=device_type, dtype=torch.bfloat16, cache_enabled=False)


def sync_device(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA), so a stage's wall time is its own."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
