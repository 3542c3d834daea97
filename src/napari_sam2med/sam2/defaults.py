"""Which model to offer when the user names none (the CLI without ``--model``, the model panel).

The rule (:func:`default_model`), read from the one registry (:func:`.configs.list_models`):

1. the first registered model whose downloadable checkpoint is already in the cache
   (registry order: SAM2.1 tiny first), or
2. the model shipped inside this package (its weights URL is ``package:...``; today
   ``sam2med-small-ct``), which needs no download.

Nothing is downloaded here and random weights are never chosen: they stay an explicit
developer option (``--random-init``, the panel's "Developer" box). No torch import.
"""

from __future__ import annotations

import importlib.resources
from dataclasses import dataclass
from pathlib import Path

from .configs import SAM2Config, get_config, list_models
from .weights import cache_dir

__all__ = ["DefaultModel", "default_model", "shipped_models", "local_weights", "card_location", "PACKAGE_SCHEME"]

PACKAGE_SCHEME = "package:"


@dataclass(frozen=True)
class DefaultModel:
    """The model picked by :func:`default_model` and why.

    Attributes
    ----------
    name : str
        Registry name.
    reason : str
        One sentence for the user: why this model (and, for the shipped one, what it is).
    card : str
        Its model card: a local file path or a URL.
    shipped : bool
        True for a model shipped in the package (no official checkpoint was cached).
    """

    name: str
    reason: str
    card: str
    shipped: bool


def _is_packaged(cfg: SAM2Config) -> bool:
    return cfg.weights is not None and cfg.weights.url.startswith(PACKAGE_SCHEME)


def shipped_models() -> list[str]:
    """Registry names of the models whose weights ship inside this package."""
    return [c.name for c in list_models() if _is_packaged(c)]


def _package_file(rel: str) -> Path:
    return Path(str(importlib.resources.files("napari_sam2med").joinpath(rel)))


def local_weights(name: str, cache: str | Path | None = None) -> Path | None:
    """The weights of ``name`` already on this machine (cache or package), or None.

    Only looks for the file; the SHA-256 is checked when the model is loaded.
    """
    cfg = get_config(name)
    if cfg.weights is None:
        return None
    if _is_packaged(cfg):
        path = _package_file(cfg.weights.url[len(PACKAGE_SCHEME):])
    else:
        path = (Path(cache).expanduser() if cache is not None else cache_dir()) / cfg.weights.filename
    return path if path.is_file() else None


def card_location(name: str) -> str:
    """Where the model card of ``name`` is: an absolute file path for a packaged card, else the URL."""
    card = get_config(name).card.strip()
    if not card or card.startswith(("http://", "https://")):
        return card.split()[0] if card else card  # the address, without the note after it
    path = _package_file(card)
    return str(path) if path.is_file() else card


def default_model(offline: bool = False, cache: str | Path | None = None) -> DefaultModel:
    """The model to use when none is named (see the module docstring).

    Parameters
    ----------
    offline : bool
        Whether downloads are off (only said in ``reason``; nothing is downloaded either way).
    cache : path, optional
        Checkpoint cache folder; default :func:`.weights.cache_dir` (``$SAM2MED_CACHE``).

    Returns
    -------
    DefaultModel
        Name, reason, card and whether it is the shipped model.

    Raises
    ------
    RuntimeError
        No official checkpoint is cached and no model ships with the package (a broken install).
    """
    folder = Path(cache).expanduser() if cache is not None else cache_dir()
    for cfg in list_models():
        if not _is_packaged(cfg) and local_weights(cfg.name, folder) is not None:
            return DefaultModel(cfg.name, f"its official checkpoint is cached in {folder}",
                                card_location(cfg.name), shipped=False)
    shipped = shipped_models()
    if not shipped:
        raise RuntimeError(f"no checkpoint is cached in {folder} and no model ships with this install")
    name = shipped[0]
    reason = (f"no official SAM2 checkpoint is cached in {folder}{' and offline mode is on' if offline else ''}; "
              f"{name} is the small model shipped with the plugin (no download; much weaker than SAM2.1: see its "
              "card)")
    return DefaultModel(name, reason, card_location(name), shipped=True)
