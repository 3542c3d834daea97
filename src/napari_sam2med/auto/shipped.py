"""Prompt encoders shipped with the package (AutoSAM2, issue 13), with pinned SHA-256s.

Each entry names a file under ``models/`` (inside the package), its SHA-256 and size, the SAM2
registry model it was trained against and its model card. :func:`load_shipped_prompt_encoder`
checks the file's hash, then loads it with :func:`.prompt_net.load_prompt_net` (``weights_only``,
strict), which refuses a SAM2 whose weights are not the ones it was trained against.

This module imports no torch at import time (the widget lists the names cheaply).
"""

from __future__ import annotations

import importlib.resources
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ShippedPromptEncoder", "SHIPPED", "list_shipped_prompt_encoders", "shipped_prompt_encoder_info",
           "shipped_prompt_encoder_path", "load_shipped_prompt_encoder", "resolve_prompt_encoder"]


@dataclass(frozen=True)
class ShippedPromptEncoder:
    """One shipped prompt encoder.

    Attributes
    ----------
    name : str
        What users type (``sam2med auto --prompt-encoder NAME``).
    filename : str
        File under the package's ``models/`` folder.
    sha256, size_bytes : the pinned file hash and size.
    sam2 : str
        SAM2 registry name it was trained against (its weights are checked on loading).
    card : str
        Model card, relative to the package.
    summary : str
        One line for menus.
    """

    name: str
    filename: str
    sha256: str
    size_bytes: int
    sam2: str
    card: str
    summary: str


SHIPPED: dict[str, ShippedPromptEncoder] = {
    e.name: e for e in (
        ShippedPromptEncoder(
            name="autosam2-faz", filename="autosam2_faz_v1.pt",
            sha256="be940afb80376dd48f9f357c3c9aba06e83b3a63cbf360d2fd562bc57793787c", size_bytes=1_125_673,
            sam2="sam2med-small-ct", card="models/AUTOSAM2_FAZ_MODEL_CARD.md",
            summary="OCTA foveal avascular zone, no clicks (en-face ILM_OPL projection; sam2med-small-ct)"),
    )
}


def list_shipped_prompt_encoders() -> list[str]:
    """Names of the shipped prompt encoders whose file is present, in registry order."""
    return [n for n, e in SHIPPED.items() if _file(e).is_file()]


def shipped_prompt_encoder_info(name: str) -> ShippedPromptEncoder:
    """The registry entry of a shipped prompt encoder; unknown names raise ``ValueError``."""
    if name not in SHIPPED:
        raise ValueError(f"unknown prompt encoder {name!r}; shipped: {', '.join(SHIPPED) or 'none'}")
    return SHIPPED[name]


def _file(entry: ShippedPromptEncoder) -> Path:
    return Path(str(importlib.resources.files("napari_sam2med").joinpath("models", entry.filename)))


def shipped_prompt_encoder_path(name: str) -> Path:
    """The file of a shipped prompt encoder, checked against its pinned SHA-256.

    Raises
    ------
    ValueError
        Unknown name, or the file's hash is not the pinned one (corrupt or replaced).
    FileNotFoundError
        The file is missing from this installation.
    """
    from ..sam2.checkpoint import sha256_of

    entry = shipped_prompt_encoder_info(name)
    path = _file(entry)
    if not path.is_file():
        raise FileNotFoundError(f"shipped prompt encoder {name!r} is missing: {path}")
    actual = sha256_of(path)
    if actual != entry.sha256:
        raise ValueError(f"{path.name} does not match the pinned SHA-256 of {name!r} (corrupt or replaced): "
                         f"expected {entry.sha256[:12]}..., got {actual[:12]}...")
    return path


def load_shipped_prompt_encoder(name: str, sam2=None):
    """Load a shipped prompt encoder (hash-checked file, ``weights_only``, strict).

    Parameters
    ----------
    name : str
        E.g. ``"autosam2-faz"``.
    sam2 : SAM2Model, optional
        The SAM2 in use; it must be the one the encoder was trained against.

    Returns
    -------
    (PromptNet, dict)
        As :func:`.prompt_net.load_prompt_net`.

    Raises
    ------
    PromptNetMismatch
        ``sam2`` is another model or has other weights.
    """
    from .prompt_net import load_prompt_net

    return load_prompt_net(shipped_prompt_encoder_path(name), sam2)


def resolve_prompt_encoder(name_or_path: str | Path) -> Path:
    """A shipped name -> its checked file; an existing file -> that path; else ``ValueError``."""
    if str(name_or_path) in SHIPPED:
        return shipped_prompt_encoder_path(str(name_or_path))
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    raise ValueError(f"unknown prompt encoder {str(name_or_path)!r}: neither a file nor a shipped name "
                     f"({', '.join(SHIPPED) or 'none'})")
