"""Shared pieces of the ``sam2med`` sub-commands (no Qt, no napari, no torch at import).

Exit status rules, applied by :func:`run_command` (the one error boundary, called by ``cli.main``):

* bad input -> one line ``sam2med CMD: error: ...`` on stderr, exit 2 (:data:`EXIT_BAD_INPUT`).
  A command reports bad input by raising :class:`UserError`, or by checking its inputs inside
  ``with bad_input():``, which turns the documented input errors (``ValueError``, ``OSError``
  such as a missing file or a failed download) into :class:`UserError`;
* any other exception is a bug -> its traceback and exit 1 (:data:`EXIT_BUG`), never shown as
  bad input;
* Ctrl-C -> exit 130 (:data:`EXIT_INTERRUPTED`); outputs are written with
  ``io.writers.atomic_write``, so no partial file is left.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import traceback
from pathlib import Path
from typing import Callable, Iterator, Sequence

__all__ = [
    "check_output_path", "add_model_args", "add_engine_args", "add_device_arg", "bad_input", "run_command",
    "UserError", "MEMORY_KINDS", "ENGINE_KINDS",
    "EXIT_BAD_INPUT", "EXIT_BUG", "EXIT_INTERRUPTED",
]

EXIT_BUG = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


class UserError(ValueError):
    """An input problem reported as one line (exit status 2)."""


@contextlib.contextmanager
def bad_input(*errors: type[BaseException]) -> Iterator[None]:
    """Report the documented input errors raised inside the block as :class:`UserError`.

    Use it around the part of a command that reads and checks its inputs (files, prompts,
    model and checkpoint), not around the computation: an error there is a bug.

    Parameters
    ----------
    *errors : exception types
        What counts as bad input here; default ``ValueError`` and ``OSError`` (missing or
        unreadable files, failed downloads).
    """
    caught = errors or (ValueError, OSError)
    try:
        yield
    except UserError:
        raise
    except caught as err:
        raise UserError(str(err).splitlines()[0] if str(err) else type(err).__name__) from err


def run_command(name: str, func: Callable[[argparse.Namespace], int | None], args: argparse.Namespace) -> int:
    """Run one sub-command inside the error boundary and return its exit status.

    Parameters
    ----------
    name : str
        Sub-command name, used as the message prefix (``sam2med NAME: error: ...``).
    func : callable
        The sub-command's ``run(args)``.
    args : argparse.Namespace
        Parsed arguments.
    """
    try:
        return int(func(args) or 0)
    except UserError as err:
        print(f"sam2med {name}: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"sam2med {name}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # stdout closed early (``sam2med models | head``): not an error; silence the flush at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception:
        traceback.print_exc()
        print(f"sam2med {name}: internal error (a bug; please report it with the traceback above)",
              file=sys.stderr)
        return EXIT_BUG


def add_device_arg(p: argparse.ArgumentParser | argparse._ArgumentGroup, what: str = "model") -> None:
    """Add ``--device`` (resolved later by ``sam2.device.pick_device``)."""
    p.add_argument("--device", default="auto",
                   help=f"device for the {what}: auto (cuda, mps, cpu), cpu, cuda, cuda:N or mps")


#: ``engine.memory.MemoryKind`` values (kept here so the parser needs no torch import; a test checks they agree).
MEMORY_KINDS = ("sam2", "slm")
#: ``engine.encoders.EngineKind`` values (no torch import here; a test checks they agree).
ENGINE_KINDS = ("torch", "onnx", "auto")


def add_engine_args(p: argparse.ArgumentParser, encoder_engine: bool = False, crop: bool = False) -> None:
    """Add the shared propagation-engine arguments (``--memory``) for commands that propagate with a Session.

    ``encoder_engine=True`` also adds ``--engine torch|onnx|auto`` (the image-encoder engine,
    ``Session(engine=...)``); only commands that pass it on to their Session ask for it.
    ``crop=True`` adds ``--crop-context F`` (``engine.crop``; passed to ``segment_to_file``).
    """
    g = p.add_argument_group("engine")
    if crop:
        g.add_argument("--crop-context", type=float, default=None, metavar="F",
                       help="segment each object in a square window F times its prompt box (0: whole slices; "
                            "default: the model's, e.g. 3 for sam2med-small-ct, none for the official models)")
    if encoder_engine:
        g.add_argument("--engine", default="torch", choices=ENGINE_KINDS,
                       help="image encoder: torch (default); onnx: ONNX Runtime on the CPU (exported once per "
                            "model and image size, cached next to the checkpoints; falls back to torch if "
                            "onnxruntime is missing or the export fails); auto: the faster of the two on the "
                            "first slice")
    g.add_argument("--memory", default="sam2", choices=MEMORY_KINDS,
                   help="sam2 (default): SAM2's memory. slm: SLM-SAM2's short-long memory, for one annotated "
                        "slice propagated through a volume; use it with SLM-trained weights (a plain SAM2 "
                        "checkpoint gets untrained SLM modules and then predicts like sam2)")


def add_model_args(p: argparse.ArgumentParser) -> None:
    """Add the shared SAM2 model arguments (model, checkpoint, image size, device, offline).

    Every sub-command that loads a SAM2 model uses this one group, so the flags never diverge.
    Reading the registry does not import torch.
    """
    from .sam2.configs import MODEL_CONFIGS

    g = p.add_argument_group("model")
    g.add_argument("--model", default="sam2.1-tiny", choices=sorted(MODEL_CONFIGS), metavar="NAME",
                   help="model (default sam2.1-tiny); `sam2med models` lists them")
    w = g.add_mutually_exclusive_group()
    w.add_argument("--checkpoint", default=None, help="a checkpoint file (default: the cached registry one)")
    w.add_argument("--random-init", action="store_true", help="random weights (development only)")
    g.add_argument("--image-size", type=int, default=None,
                   help="model input size, a multiple of 32 (default: the model's, e.g. 1024; 512 or 256 are faster)")
    add_device_arg(g)
    g.add_argument("--offline", action="store_true", help="never download; use the cache only")


def check_output_path(path: str, overwrite: bool, suffixes: Sequence[str] | None = None) -> Path:
    """Check an output path before any work starts.

    Parameters
    ----------
    path : str
        The output path given on the command line.
    overwrite : bool
        Whether an existing output may be replaced (``--overwrite``).
    suffixes : sequence of str, optional
        Allowed (lower-case) suffixes; any suffix when None.

    Returns
    -------
    Path
        ``path`` as a Path.

    Raises
    ------
    UserError
        Wrong suffix, the output exists and ``overwrite`` is False, or its folder does not exist.
    """
    out = Path(path)
    if suffixes is not None and not out.name.lower().endswith(tuple(suffixes)):  # endswith: ".nii.gz" works too
        raise UserError(f"output {out.name!r} must end in one of {', '.join(suffixes)}")
    if out.exists() and not overwrite:
        raise UserError(f"output already exists: {out} (use --overwrite)")
    if not out.parent.is_dir():
        raise UserError(f"output folder does not exist: {out.parent}")
    return out
