"""Headless training, the same code as ``python -m PatchSamplerLib train-prior``.

    python PatchSamplerLib/cli/train.py prior --family vertebra --out runs/prior_vertebra
    Slicer --no-main-window --python-script PatchSamplerLib/cli/train.py prior --family kidney --out runs/prior_kidney
    python PatchSamplerLib/cli/train.py sampler --family vertebra --prior vertebra --n 4 --k 9 --t 100 --out runs/s49

Runs as a plain script (no package context: it puts the repository root on sys.path itself),
reads its arguments from sys.argv as Slicer passes them (everything after the script path;
Slicer's own start-up flags are ignored if they appear), prints progress line by line when
not on a terminal, and exits with a status (under Slicer through ``slicer.util.exit`` so the
application quits). Subcommands: ``prior`` (= ``train-prior``) and ``sampler`` (= ``train-sampler``).
"""
from __future__ import annotations

import os
import sys

if __package__ in (None, ""):   # run as a file, not as part of the package: make it importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

SLICER_FLAGS = {"--no-main-window", "--no-splash", "--testing", "--disable-cli-modules",
                "--disable-loadable-modules", "--disable-scripted-loadable-modules", "--python-script"}
SUBCOMMANDS = {"prior": "train-prior", "sampler": "train-sampler"}
USAGE = (f"usage: train.py {{{','.join(SUBCOMMANDS)}}} [options]   (train.py prior --help, train.py sampler --help "
         "for the options)")


def script_arguments(argv: list[str]) -> list[str]:
    """The user's arguments: what follows this script's path in `argv` (sys.argv under plain
    Python and under Slicer), without Slicer's own start-up flags."""
    args = list(argv)
    for i, arg in enumerate(args):
        if os.path.basename(arg) == "train.py":
            args = args[i + 1:]
            break
    else:
        args = args[1:]
    return [a for a in args if a not in SLICER_FLAGS]


def running_in_slicer() -> bool:
    slicer = sys.modules.get("slicer")
    return slicer is not None and hasattr(slicer, "app") and hasattr(slicer, "util")


def run(argv: list[str]) -> int:
    """Dispatch `prior ...` / `sampler ...` to the package CLI; returns the exit status."""
    from PatchSamplerLib.cli.main import main
    if argv[:1] in (["--help"], ["-h"]):
        print(f"{USAGE}\n\n{__doc__.strip()}")
        return 0
    if not argv or argv[0] not in SUBCOMMANDS:
        print(USAGE, file=sys.stderr)
        return 2
    try:
        return main([SUBCOMMANDS[argv[0]]] + argv[1:])
    except SystemExit as exc:      # argparse: --help or a usage error
        return exc.code if isinstance(exc.code, int) else 2


def finish(status: int) -> None:
    """Exit with `status`; under Slicer quit the application with it."""
    if running_in_slicer():
        sys.modules["slicer"].util.exit(status)
    else:
        sys.exit(status)


if __name__ == "__main__":
    finish(run(script_arguments(sys.argv)))
