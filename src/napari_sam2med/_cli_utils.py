"""Small helpers shared by the ``sam2med`` sub-commands (no Qt, no napari)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

__all__ = ["check_output_path"]


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
    ValueError
        Wrong suffix, or the output exists and ``overwrite`` is False.
    FileNotFoundError
        The output's folder does not exist.
    """
    out = Path(path)
    if suffixes is not None and out.suffix.lower() not in suffixes:
        raise ValueError(f"output {out.name!r} must end in one of {', '.join(suffixes)}")
    if out.exists() and not overwrite:
        raise ValueError(f"output already exists: {out} (use --overwrite)")
    if not out.parent.exists():
        raise FileNotFoundError(f"output folder does not exist: {out.parent}")
    return out
