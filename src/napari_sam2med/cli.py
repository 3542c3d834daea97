"""The ``sam2med`` command line: ``propagate``, ``octa`` and ``flow``.

Bad input prints one line on stderr and exits with status 2; no partial output is left.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from ._cli_utils import check_output_path

__all__ = ["main", "build_parser"]

EXIT_BAD_INPUT = 2
LABEL_SUFFIXES = (".tif", ".tiff", ".zarr")


class UserError(ValueError):
    """An input problem reported as one line."""


def _add_model_args(p: argparse.ArgumentParser) -> None:
    from .sam2.configs import MODEL_CONFIGS

    p.add_argument("--model", default="sam2.1-tiny", choices=sorted(MODEL_CONFIGS), help="model (default sam2.1-tiny)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--checkpoint", default=None, help="a checkpoint file (default: the cached official one)")
    g.add_argument("--random-init", action="store_true", help="random weights (development only)")
    p.add_argument("--image-size", type=int, default=None, help="model input size: 1024 (default), 512, 256")
    p.add_argument("--device", default="auto", help="auto (cuda, mps, cpu), cpu, cuda, cuda:N or mps")
    p.add_argument("--offline", action="store_true", help="never download; use the cache only")


def _add_propagate(sub) -> None:
    p = sub.add_parser("propagate", help="propagate point/box prompts through a stack",
                       description="Segment prompted objects on their slices and propagate them through the stack.")
    p.add_argument("stack", help="(Z,Y,X), (T,Y,X) or (T,Y,X,C) stack: .tif/.tiff, .zarr or .npy")
    p.add_argument("--prompts", required=True, help="prompts JSON (see README)")
    p.add_argument("--out", required=True, help="label stack to write: .tif/.tiff or .zarr")
    p.add_argument("--direction", default="both", choices=("forward", "backward", "both"))
    p.add_argument("--window", type=float, nargs=2, metavar=("LO", "HI"), default=None,
                   help="contrast window for non-uint8 data (default: 0.5/99.5 percentiles)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_model_args(p)
    p.set_defaults(func=run_propagate)


def run_propagate(args: argparse.Namespace) -> int:
    """Run ``sam2med propagate``."""
    import numpy as np
    import zarr
    from tqdm import tqdm

    from .engine import Session
    from .engine.prompts import PromptSet
    from .io import FrameStack, read_array, write_labels
    from .io.writers import atomic_write
    from .sam2 import load_model

    out_path = check_output_path(args.out, args.overwrite, LABEL_SUFFIXES)
    try:
        stack = FrameStack(read_array(args.stack), window=args.window)
    except (ValueError, TypeError) as err:
        raise UserError(f"{args.stack}: {err}") from None
    try:
        data = json.loads(Path(args.prompts).read_text())
    except FileNotFoundError:
        raise UserError(f"prompts file not found: {args.prompts}") from None
    except json.JSONDecodeError as err:
        raise UserError(f"{args.prompts} is not valid JSON: {err.msg} (line {err.lineno})") from None
    prompts = PromptSet.from_json(data, len(stack), stack.frame_shape)
    model = load_model(args.model, image_size=args.image_size, checkpoint=args.checkpoint,
                       random_init=args.random_init, device=args.device, offline=args.offline or None,
                       progress=not args.no_progress)
    session = Session(model, stack)
    session.prompts = prompts
    n_ids = max(prompts.object_ids)
    dtype = np.uint8 if n_ids < 256 else np.uint16 if n_ids < 65536 else np.int32
    shape = (len(stack), *stack.frame_shape)

    def track(labels) -> None:
        with tqdm(desc="propagate", unit="slice", disable=args.no_progress, file=sys.stderr) as bar:
            for step in session.propagate(direction=args.direction, out=labels):
                bar.total = step.total
                bar.update(1)

    if out_path.suffix.lower() == ".zarr":
        # Stream slice by slice into a temporary store, renamed only when complete.
        def write(tmp: Path) -> None:
            track(zarr.create_array(store=str(tmp), shape=shape, dtype=dtype, chunks=(1, *shape[1:])))

        atomic_write(out_path, write)
    else:
        labels = np.zeros(shape, dtype=dtype)
        track(labels)
        write_labels(out_path, labels)
    print(f"wrote {out_path} ({len(prompts.object_ids)} objects, {len(stack)} slices)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``sam2med`` argument parser with every sub-command."""
    from .flow import command as flow_command
    from .octa import command as octa_command

    parser = argparse.ArgumentParser(prog="sam2med", description="SAM2-family models for medical stacks.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_propagate(sub)
    octa_command.add_parser(sub)
    flow_command.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``sam2med`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except (UserError, ValueError, FileNotFoundError, ConnectionError) as err:
        print(f"sam2med {args.command}: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"sam2med {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
