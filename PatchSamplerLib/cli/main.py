"""`python -m PatchSamplerLib <command>`: the parser of every command group and the dispatch.

Each command group (`cli.run`, `cli.training`, `cli.evaluate`, `cli.sparse`, `cli.benchmark`,
`cli.priors`)
registers its commands with `add_commands(subparsers)`; each command's handler takes the parsed
arguments and returns the exit status. Library errors with a user-facing message (ValueError,
FileNotFoundError, RuntimeError) exit with status 2 and the message, no traceback.
"""
from __future__ import annotations

import argparse
import sys

from PatchSamplerLib.cli import benchmark, evaluate, priors, run, sparse, training

COMMAND_GROUPS = (run, evaluate, sparse, benchmark, training, priors)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m PatchSamplerLib",
                                     description="Learned patch sampling for implicit shape reconstruction.")
    sub = parser.add_subparsers(dest="command", required=True)
    for group in COMMAND_GROUPS:
        group.add_commands(sub)
    return parser


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.command_line = " ".join(["python -m PatchSamplerLib"] + argv)   # recorded in models and results
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
