"""Command line: ``python -m PatchSamplerLib <command> ...``."""
from __future__ import annotations

import sys

from PatchSamplerLib.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
