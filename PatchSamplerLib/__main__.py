"""Command line: ``python -m PatchSamplerLib <command> ...``."""
from __future__ import annotations

from PatchSamplerLib.cli.main import entry

if __name__ == "__main__":
    entry()
