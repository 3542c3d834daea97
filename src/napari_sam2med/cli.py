"""The ``sam2med`` command line.

Each sub-command lives in its feature folder as ``<feature>/command.py`` with
``add_parser(subparsers)`` and ``run(args) -> int``, and is registered by one line in
:data:`COMMANDS`. A command module imports only light modules at the top (argparse, numpy,
``_cli_utils``); torch and the model are imported inside ``run``, so that e.g.
``sam2med flow --method tvl1`` never imports torch.

Errors go through one boundary (``_cli_utils.run_command``): bad input -> one line on stderr and
exit 2; a bug -> a traceback and exit 1; Ctrl-C -> exit 130, leaving no partial output.

argparse (standard library) rather than click/typer: the command list plus ``_cli_utils`` is all the
plumbing there is, so a CLI framework would add a dependency without removing code.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from ._cli_utils import run_command

__all__ = ["main", "build_parser", "COMMANDS"]

#: Sub-command modules, in the order ``sam2med --help`` lists them (one line per command).
COMMANDS: tuple[str, ...] = (
    "napari_sam2med.engine.command",  # propagate
    "napari_sam2med.octa.command",    # octa
    "napari_sam2med.flow.command",    # flow
    "napari_sam2med.flow.adapt_command",  # flow-adapt
    "napari_sam2med.sam2.command",    # models
    "napari_sam2med.batch.command",   # batch
    "napari_sam2med.train.command",   # train
    "napari_sam2med.eval.command",    # evaluate
    "napari_sam2med.auto.command",    # auto
)


def build_parser() -> argparse.ArgumentParser:
    """The ``sam2med`` argument parser with every sub-command of :data:`COMMANDS`."""
    parser = argparse.ArgumentParser(prog="sam2med", description="SAM2-family models for medical stacks.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(name).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``sam2med`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s: %(message)s")
    return run_command(args.command, args.func, args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
