"""The Python packages the module needs inside Slicer besides what Slicer ships (numpy, vtk):
which are missing, and installing them on demand (never at import).

Imports slicer and the standard library only, so it works before torch is installed.
"""
from __future__ import annotations

import importlib.util
import logging
import re
from pathlib import Path

import slicer

# pip requirements, one per line (the module's Resources, next to this package)
REQUIREMENTS_FILE = Path(__file__).resolve().parent.parent / "Resources" / "requirements.txt"


def requirements(path=REQUIREMENTS_FILE) -> list[str]:
    """The pip requirement strings of Resources/requirements.txt, in file order (comments and
    blank lines dropped)."""
    lines = (line.split("#", 1)[0].strip() for line in Path(path).read_text().splitlines())
    return [line for line in lines if line]


def requirement_name(requirement: str) -> str:
    """"scipy>=1.10" -> "scipy": the distribution name, which is also the import name here."""
    return re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0]


def missing_packages() -> list[str]:
    """The requirements whose package cannot be imported in this Python, in file order."""
    return [r for r in requirements() if importlib.util.find_spec(requirement_name(r)) is None]


def install_packages(requirements: list[str], log=logging.info) -> None:
    """Install pip requirements into Slicer's Python, torch first.

    torch comes from the PyTorch extension's PyTorchUtils when it is installed (it picks the
    build that matches the GPU and driver); everything else, and torch without PyTorchUtils,
    through `slicer.packaging.pip_ensure` (Slicer >= 5.12) or `slicer.util.pip_install`, one
    requirement at a time in the given order."""
    torch = [r for r in requirements if requirement_name(r) == "torch"]
    others = [r for r in requirements if requirement_name(r) != "torch"]
    if torch and not _install_torch_with_pytorch_utils(torch[0], log):
        others = torch + others
    for requirement in others:
        log(f"Installing {requirement} ...")
        _pip_install(requirement)


def _install_torch_with_pytorch_utils(requirement: str, log) -> bool:
    """True when PyTorchUtils (the PyTorch extension) is there and installed torch."""
    try:
        import PyTorchUtils  # module of the PyTorch extension
    except ImportError:
        return False
    log("Installing PyTorch with the PyTorch extension ...")
    torch_logic = PyTorchUtils.PyTorchUtilsLogic()
    if not torch_logic.torchInstalled():
        version = requirement[len("torch"):].strip() or None          # "torch>=2.0" -> ">=2.0"
        if torch_logic.installTorch(askConfirmation=False, torchVersionRequirement=version) is None:
            raise RuntimeError("PyTorch could not be installed; see the PyTorch Utils module")
    return True


def _pip_install(requirement: str) -> None:
    """One requirement through Slicer's pip helper (pip_ensure where it exists)."""
    packaging = getattr(slicer, "packaging", None)
    if packaging is not None and hasattr(packaging, "pip_ensure"):
        packaging.pip_ensure([requirement])
    else:
        slicer.util.pip_install(requirement)
