"""Command line: ``python -m PatchSamplerLib <command> ...``."""
from __future__ import annotations

from PatchSamplerLib.cli.main import leave, main

if __name__ == "__main__":
    leave(main())
