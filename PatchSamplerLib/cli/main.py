"""`python -m PatchSamplerLib <command>`: the parser of every command group and the dispatch.

Each command group (`cli.run`, `cli.training`, `cli.evaluate`, `cli.sparse`, `cli.benchmark`,
`cli.priors`)
registers its commands with `add_commands(subparsers)`; each command's handler takes the parsed
arguments and returns the exit status. Library errors with a user-facing message (ValueError,
FileNotFoundError, RuntimeError) exit with status 2 and the message, no traceback; so do
numbers out of range (argparse types in `cli.arguments`), an --out that cannot be written
(`check_output_location`) and one whose files would replace the command's own input
(`check_inputs_kept`), all before any work. Every command runs with its --threads applied
(`arguments.threads_applied`) and shows the progress of its long stages on stderr
(`progress.console_progress`: tqdm bars on a terminal, plain lines with the time left otherwise).
`python -m PatchSamplerLib` and the `patchsampler` command run `entry`: the command, then `leave`
(no interpreter finalisation when nothing needs it).
"""
from __future__ import annotations

import argparse
import os
import sys
import threading

from PatchSamplerLib.cli import benchmark, evaluate, priors, run, sparse, training
from PatchSamplerLib.cli.arguments import check_inputs_kept, check_output_location, threads_applied
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
            check_inputs_kept(args)
        with threads_applied(args), console_progress(sys.stderr):
            return args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def finalisation_needed() -> bool:
    """Whether leaving must run the interpreter's finalisation: Ray was imported (its atexit
    shutdown stops the local cluster), a worker process or a non-daemon thread is still alive."""
    import multiprocessing
    others = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon]
    return "ray" in sys.modules or bool(multiprocessing.active_children()) or bool(others)


def leave(status) -> None:
    """Exit the process with `status` (an int, or None for 0). When `finalisation_needed` is
    False, flush stdout / stderr and end with os._exit: tearing down the modules of torch, SciPy
    and SimpleITK took about 0.5 s of every command on the 2-core CPU (the README's demo: issue
    #19); every output file is closed by then. Otherwise (or for a status that is not an int or
    None) sys.exit, so atexit handlers run; that raises SystemExit, as sys.exit does."""
    code = 0 if status is None else status
    if not isinstance(code, int) or finalisation_needed():
        sys.exit(status)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):          # a closed pipe or stream: nothing more can reach it
            pass
    os._exit(code)


def entry() -> None:
    """`python -m PatchSamplerLib` and the installed `patchsampler` command: `main`, then `leave`."""
    leave(main())
