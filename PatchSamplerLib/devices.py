"""Device choice, made once and passed down: "auto" is CUDA when present, else the CPU."""
from __future__ import annotations

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
                             "(this torch build or machine has none); use --device cpu or auto")
        return torch.device(name)
    raise ValueError(f"unknown device {name!r}; choose one of {', '.join(DEVICE_CHOICES)}")
