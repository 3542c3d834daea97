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
    "UserError", "MEMORY_KINDS", "ENGINE_KINDS", "MODEL_NOT_GIVEN", "apply_model_default",
    "EXIT_BAD_INPUT", "EXIT_BUG", "EXIT_INTERRUPTED",
]

EXIT_BUG = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


class UserError(ValueError):
    """An input problem reported as one line (exit status 2)."""


#: Lines for stderr held until a command's inputs are checked, so that bad input stays one line.
_NOTICES: list[str] = []


def _flush_notices() -> None:
    for line in _NOTICES:
        print(line, file=sys.stderr)
    _NOTICES.clear()


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
    _flush_notices()  # the inputs are good: now say which model runs (see apply_model_default)


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
    _NOTICES.clear()
    try:
        apply_model_default(name, args)
        status = int(func(args) or 0)
        _flush_notices()  # (a command that checked its inputs without bad_input)
        return status
    except UserError as err:
        _NOTICES.clear()
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
ENGINE_KINDS = ("torch", "onnx", "openvino", "auto")


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
                       help="CPU inference engine: torch (default); onnx: image encoder and memory attention on "
                            "ONNX Runtime (exported once per model and image size, cached next to the "
                            "checkpoints; falls back to torch if onnxruntime is missing or the export fails); "
                            "openvino: the same on OpenVINO (optional extra); auto: the fastest measured on the "
                            "first slice")
    g.add_argument("--memory", default="sam2", choices=MEMORY_KINDS,
                   help="sam2 (default): SAM2's memory. slm: SLM-SAM2's short-long memory, for one annotated "
                        "slice propagated through a volume; use it with SLM-trained weights (a plain SAM2 "
                        "checkpoint gets untrained SLM modules and then predicts like sam2)")


#: ``--model``'s default: replaced by :func:`apply_model_default` before the command runs.
MODEL_NOT_GIVEN = "<default>"
#: The architecture used when ``--checkpoint`` or ``--random-init`` is given without ``--model``.
ARCHITECTURE_DEFAULT = "sam2.1-tiny"


def apply_model_default(name: str, args: argparse.Namespace) -> None:
    """Fill in ``args.model`` when ``--model`` was not given, and say which model and why.

    The line goes to stderr once the command's inputs are checked (the end of its ``bad_input``
    block), so bad input is still reported in one line.

    With ``--checkpoint`` or ``--random-init`` the architecture defaults to :data:`ARCHITECTURE_DEFAULT`;
    otherwise :func:`napari_sam2med.sam2.defaults.default_model` picks a cached official checkpoint or
    the model shipped with the plugin (random weights are never picked). Commands without the model
    arguments are left alone.
    """
    if getattr(args, "model", None) != MODEL_NOT_GIVEN:
        return
    if getattr(args, "checkpoint", None) or getattr(args, "random_init", False):
        args.model = ARCHITECTURE_DEFAULT
        return
    from .sam2.checkpoint import offline_requested
    from .sam2.defaults import default_model

    try:
        pick = default_model(offline=offline_requested(getattr(args, "offline", False)))
    except RuntimeError as err:  # nothing cached and nothing shipped: never fall back to random weights
        raise UserError(f"{err}; pass --model NAME (official weights download once) or --checkpoint FILE") from None
    args.model = pick.name
    advice = "; --model sam2.1-tiny downloads Meta's official weights" if pick.shipped and not args.offline else ""
    _NOTICES.append(f"sam2med {name}: using model {pick.name}: {pick.reason}; card: {pick.card}{advice}")


def add_model_args(p: argparse.ArgumentParser) -> None:
    """Add the shared SAM2 model arguments (model, checkpoint, image size, device, offline).

    Every sub-command that loads a SAM2 model uses this one group, so the flags never diverge.
    Reading the registry does not import torch.
    """
    from .sam2.configs import MODEL_CONFIGS

    g = p.add_argument_group("model")
    g.add_argument("--model", default=MODEL_NOT_GIVEN, choices=sorted(MODEL_CONFIGS), metavar="NAME",
                   help="model; `sam2med models` lists them. Default: the first official model whose checkpoint "
                        "is cached, else sam2med-small-ct (shipped with the plugin, no download; the command "
                        f"says which); with --checkpoint or --random-init: {ARCHITECTURE_DEFAULT}")
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
