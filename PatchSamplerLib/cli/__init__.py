"""The command line, the only argparse layer: ``python -m PatchSamplerLib <command>``
(`main`), one module per command group, and the headless training script (`train.py`)."""
from PatchSamplerLib.cli.main import build_parser, main  # noqa: F401
