"""The ``vlm-micro`` command.

Each subcommand is registered by the ``cli`` module of the part it belongs to, which
adds an argparse sub-parser and sets ``func`` to a handler taking the parsed arguments
and returning an exit status. Those modules import torch and other heavy packages
inside their handlers only, so ``vlm-micro --help`` stays fast.

Exit status: 0 success, 1 an error with a one-line message, 2 invalid command line,
3 the run finished but at least one image failed (see ``images.tsv``), 130 after
Ctrl-C, and 143 or 129 when SIGTERM or SIGHUP stopped a workflow run (128 plus the
signal number).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import logging
import os
import signal
import sys

from vlm_micro import __version__
from vlm_micro.errors import VlmMicroError

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_IMAGES_FAILED = 3

# Modules whose ``register(subparsers)`` adds subcommands, in the order of --help.
_COMMAND_MODULES = (
    "vlm_micro.pipeline.cli",  # run, demo, process-shard
    "vlm_micro.io.cli",  # inspect
    "vlm_micro.synth.cli",  # synth
    "vlm_micro.labeling.cli",  # label, search
    "vlm_micro.training.cli",  # finetune, train-demo
    "vlm_micro.evaluation.cli",  # evaluate
    "vlm_micro.reporting.cli",  # report, summarize
)

log = logging.getLogger("vlm_micro")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vlm-micro",
        description="Label microscopy images tile by tile or cell by cell with an open_clip model.",
    )
    parser.add_argument("--version", action="version", version=f"vlm-micro {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if not exc.name or not name.startswith(exc.name):
                raise
            continue
        module.register(subparsers)
    return parser


def _configure_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("vlm_micro").setLevel(level)


def misplaced_snakemake_args(args: argparse.Namespace, argv: list[str]) -> str:
    """Return an error for words that argparse took as snakemake arguments without a ``--`` before them, else ''.

    ``run`` and ``demo`` pass the words after ``--`` to snakemake. argparse also
    assigns a stray word before ``--`` to them, so ``vlm-micro run images/ --out x``
    would hand ``images/`` to snakemake as a target to build.
    """
    extra = list(getattr(args, "snakemake_args", None) or [])
    after = argv[argv.index("--") + 1:] if "--" in argv else []
    if extra == after:
        return ""
    return (f"unexpected argument {extra[0]!r}: give images with --images PATH "
            "(or a config), and put snakemake arguments after --")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    misplaced = misplaced_snakemake_args(args, argv)
    if misplaced:
        print(f"vlm-micro {args.command}: error: {misplaced}", file=sys.stderr)
        return EXIT_USAGE
    _configure_logging(args.verbose)
    try:
        status = int(args.func(args) or EXIT_OK)
        # Output still buffered here would otherwise meet a closed pipe only at exit,
        # outside this try block.
        sys.stdout.flush()
        return status
    except VlmMicroError as exc:
        print(f"vlm-micro {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt as exc:
        # A workflow run stopped by SIGTERM or SIGHUP raises StoppedBySignal, a
        # KeyboardInterrupt that carries the signal number.
        return _report_stop(args.command, getattr(exc, "signum", signal.SIGINT))
    except BrokenPipeError:
        # The reader of the output (head, less) closed it. As the "Note on SIGPIPE" of
        # Python's signal module documentation recommends, stdout now points at
        # /dev/null, so flushing it at exit does not raise again, and the status is 1.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_ERROR


def _report_stop(command: str, signum: int) -> int:
    """Print the one-line notice of a command stopped by a signal and return 128 + its number."""
    reason = "interrupted" if signum == signal.SIGINT else f"stopped by {signal.Signals(signum).name}"
    # After SIGHUP the terminal may be gone, and writing to it fails with EIO.
    with contextlib.suppress(OSError):
        print(f"vlm-micro {command}: {reason}", file=sys.stderr)
    return 128 + signum


def entry() -> None:
    """Run :func:`main` as a program (``vlm-micro``, ``python -m vlm_micro``) and exit with its status.

    The objects still alive are moved to the garbage collector's permanent generation
    before the interpreter shuts down, so the shutdown does not walk every object of
    torch, open_clip and their imports again. That walk took 0.9 s in each labelling
    job on 2 cores. Open files and logging handlers are closed at exit as usual.
    """
    status = main()
    gc.freeze()
    sys.exit(status)


if __name__ == "__main__":
    entry()
