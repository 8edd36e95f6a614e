"""`python -m PatchSamplerLib <command>`: the parser of every command group and the dispatch.

Each command group (`cli.run`, `cli.training`, `cli.evaluate`, `cli.sparse`, `cli.benchmark`,
`cli.priors`)
registers its commands with `add_commands(subparsers)`; each command's handler takes the parsed
arguments and returns the exit status. Library errors with a user-facing message (ValueError,
FileNotFoundError, RuntimeError) exit with status 2 and the message, no traceback; so do
numbers out of range (argparse types in `cli.arguments`) and an --out that cannot be written
(`check_output_location`), both before any work. Every command runs with its --threads applied
(`arguments.threads_applied`) and shows the progress of its long stages on stderr
(`progress.console_progress`: tqdm bars on a terminal, plain lines with the time left otherwise).
"""
from __future__ import annotations

import argparse
import sys

from PatchSamplerLib.cli import benchmark, evaluate, priors, run, sparse, training
from PatchSamplerLib.cli.arguments import check_output_location, threads_applied
from PatchSamplerLib.progress import console_progress

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
        if getattr(args, "out", None):
            check_output_location(args.out, getattr(args, "out_kind", "folder"))   # before any work
        with threads_applied(args), console_progress(sys.stderr):
            return args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
