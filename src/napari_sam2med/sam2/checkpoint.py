"""Checkpoint download cache with SHA-256 checks, and safe load/save.

The checkpoints come from the one model registry (:data:`.configs.MODEL_CONFIGS`, whose
URLs and pinned hashes live in :mod:`.weights`). Downloads go through pooch into a cache
folder (``$SAM2MED_CACHE`` or the OS cache) and are verified against the pinned SHA-256; a
file with another hash is refused. Only where no hash is known (a user-given URL, or a
registry entry whose publisher states none) is the SHA-256 of the first download recorded in
a ``<file>.sha256`` sidecar (trust on first use) and every later call verified against it.
A ``package:`` URL names a weights file shipped inside this package (``package:models/x.pt``).
"""

from __future__ import annotations

import hashlib
import importlib.resources
import os
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlparse

import torch

from ..io.writers import atomic_write
from .weights import CACHE_ENV, cache_dir  # noqa: F401  (re-exported: the cache is part of this API)

PACKAGE_SCHEME = "package:"
OFFLINE_ENV = "SAM2MED_OFFLINE"
_TRUE = ("1", "true", "yes", "on")


@dataclass(frozen=True)
class CheckpointSpec:
    """One downloadable checkpoint.

    Attributes
    ----------
    name : str
        Registry key, e.g. ``"sam2.1-tiny"``.
    url : str
        Download address.
    filename : str
        File name inside the cache folder.
    sha256 : str or None
        Known SHA-256 hex digest, or ``None`` when unknown (trust on first use).
    """

    name: str
    url: str
    filename: str
    sha256: str | None = None


def load_registry() -> dict[str, CheckpointSpec]:
    """The downloadable checkpoints of the model registry (:data:`.configs.MODEL_CONFIGS`).

    Returns
    -------
    dict
        ``{name: CheckpointSpec}`` in registry order (random-init-only configs left out).
    """
    from .configs import MODEL_CONFIGS

    return {
        name: CheckpointSpec(name=name, url=c.weights.url, filename=c.weights.filename, sha256=c.weights.sha256)
        for name, c in MODEL_CONFIGS.items() if c.weights is not None
    }


def get_spec(name: str) -> CheckpointSpec:
    """Registry entry for ``name``; unknown names raise ``ValueError`` listing the known ones."""
    registry = load_registry()
    if name not in registry:
        raise ValueError(f"unknown checkpoint {name!r}; known: {', '.join(registry)}")
    return registry[name]


def offline_requested(offline: bool | None = None) -> bool:
    """True when ``offline`` is set or ``$SAM2MED_OFFLINE`` is 1/true/yes/on."""
    return bool(offline) or os.environ.get(OFFLINE_ENV, "").strip().lower() in _TRUE


def sha256_of(path: str | Path, chunk_bytes: int = 2**20) -> str:
    """SHA-256 hex digest of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk_bytes), b""):
            digest.update(block)
    return digest.hexdigest()


def sidecar_path(path: str | Path) -> Path:
    """``<file>.sha256`` next to a checkpoint."""
    path = Path(path)
    return path.with_name(path.name + ".sha256")


def _read_sidecar(path: Path) -> str | None:
    sidecar = sidecar_path(path)
    if not sidecar.exists():
        return None
    fields = sidecar.read_text(encoding="utf-8").split()
    return fields[0].lower() if fields else None


def _write_sidecar(path: Path, digest: str) -> None:
    atomic_write(sidecar_path(path), lambda tmp: tmp.write_text(f"{digest}  {path.name}\n", encoding="utf-8"))


def _verify(path: Path, expected: str | None) -> None:
    """Check ``path`` against ``expected`` (registry) or its sidecar; record one if neither."""
    expected = (expected or _read_sidecar(path) or "").lower() or None
    actual = sha256_of(path)
    if expected is None:
        _write_sidecar(path, actual)
    elif actual != expected:
        raise ValueError(
            f"checksum mismatch for {path}: expected sha256 {expected}, got {actual}; "
            "delete the file or re-download it"
        )
    elif _read_sidecar(path) != actual:
        _write_sidecar(path, actual)


def fetch_checkpoint(
    name: str,
    *,
    url: str | None = None,
    cache: str | Path | None = None,
    progress: bool = True,
    offline: bool | None = False,
) -> Path:
    """Return the local path of a checkpoint, downloading it once if needed.

    Parameters
    ----------
    name : str
        Registry name (``"sam2.1-tiny"``, ...) or any label when ``url`` is given.
    url : str, optional
        Download from this address instead of the registry's; the cached file
        takes the URL's file name.
    cache : path, optional
        Cache folder; default :func:`cache_dir`.
    progress : bool
        Show a tqdm progress bar while downloading.
    offline : bool, optional
        Never touch the network (also enabled by ``$SAM2MED_OFFLINE=1``).

    Returns
    -------
    Path
        Verified checkpoint file.

    Raises
    ------
    FileNotFoundError
        Offline and the file is not cached.
    ValueError
        Unknown name without ``url``, or checksum mismatch.
    ConnectionError
        The download failed.
    """
    if url is None:
        spec = get_spec(name)
        if spec.url.startswith(PACKAGE_SCHEME):
            return _packaged(spec)
    else:
        registry = load_registry()
        known = registry.get(name)
        filename = Path(urlparse(url).path).name
        if not filename:
            raise ValueError(f"cannot derive a file name from url {url!r}")
        same_file = known is not None and known.url == url
        spec = CheckpointSpec(name, url, filename, known.sha256 if same_file else None)
    folder = Path(cache).expanduser() if cache is not None else cache_dir()
    target = folder / spec.filename

    if target.is_file():
        _verify(target, spec.sha256)
        return target
    if offline_requested(offline):
        raise FileNotFoundError(
            f"checkpoint {name!r} is not cached at {target} and offline mode is on; "
            f"download {spec.url} there or pass a checkpoint path"
        )
    folder.mkdir(parents=True, exist_ok=True)
    import pooch

    known_hash = f"sha256:{spec.sha256}" if spec.sha256 else None
    try:
        # pooch downloads to a temporary file and moves it into place when complete.
        downloaded = pooch.retrieve(
            spec.url, known_hash=known_hash, fname=spec.filename, path=folder,
            progressbar=bool(progress),
        )
    except ValueError:
        raise  # pooch's hash mismatch on a fresh download
    except Exception as exc:
        raise ConnectionError(f"could not download {name!r} from {spec.url}: {exc}") from exc
    path = Path(downloaded)
    _write_sidecar(path, spec.sha256.lower() if spec.sha256 else sha256_of(path))
    return path


def _packaged(spec: CheckpointSpec) -> Path:
    """A weights file shipped in the package, verified against its pinned hash."""
    rel = spec.url[len(PACKAGE_SCHEME):]
    path = Path(str(importlib.resources.files("napari_sam2med").joinpath(rel)))
    if not path.is_file():
        raise FileNotFoundError(f"packaged weights of {spec.name!r} missing: {path}")
    if spec.sha256 is None:
        raise ValueError(f"packaged weights of {spec.name!r} have no pinned sha256")
    actual = sha256_of(path)
    if actual != spec.sha256.lower():
        raise ValueError(f"checksum mismatch for {path}: expected sha256 {spec.sha256}, got {actual}")
    return path


def _looks_like_torch_file(path: Path) -> bool:
    """Cheap format check: torch zip archive or legacy pickle (protocol >= 2)."""
    if zipfile.is_zipfile(path):
        return True
    with open(path, "rb") as handle:
        head = handle.read(2)
    return len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5


def resolve_checkpoint(
    name: str | None,
    checkpoint: str | Path | None = None,
    **fetch_kwargs: Any,
) -> Path:
    """Pick the checkpoint file: a user path if given, else the cached/downloaded one.

    Parameters
    ----------
    name : str or None
        Registry name used when ``checkpoint`` is ``None``.
    checkpoint : path, optional
        User-supplied file; it must exist and look like a PyTorch checkpoint.
    **fetch_kwargs
        Passed to :func:`fetch_checkpoint` (``url``, ``cache``, ``progress``, ``offline``).

    Returns
    -------
    Path
        Existing checkpoint file.
    """
    if checkpoint is not None:
        path = Path(checkpoint).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"checkpoint file not found: {path}")
        if not path.is_file():
            raise ValueError(f"checkpoint path is not a file: {path}")
        if not _looks_like_torch_file(path):
            raise ValueError(f"{path} is not a PyTorch checkpoint (neither zip nor pickle)")
        return path
    if name is None:
        raise ValueError("give a checkpoint name or a checkpoint path")
    return fetch_checkpoint(name, **fetch_kwargs)


def _check_state_dict(state: Any, path: Path) -> dict[str, torch.Tensor]:
    if not isinstance(state, Mapping) or not state:
        raise ValueError(f"{path} holds no state dict (got {type(state).__name__})")
    bad = [k for k, v in state.items() if not isinstance(k, str) or not torch.is_tensor(v)]
    if bad:
        raise ValueError(f"{path} is not a state dict: entry {bad[0]!r} is not a named tensor")
    return dict(state)


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Load a model state dict safely (``weights_only=True``) on CPU.

    Accepts the official ``{"model": state_dict}`` layout, ``{"state_dict": ...}``
    or a bare state dict.

    Raises
    ------
    FileNotFoundError
        Missing file.
    ValueError
        Corrupt / truncated file or content that is not a state dict.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError, zipfile.BadZipFile,
            OSError, ValueError, TypeError, AttributeError) as exc:
        raise ValueError(f"cannot read checkpoint {path} (corrupt or truncated?): {exc}") from exc
    if isinstance(content, Mapping):
        for key in ("model", "state_dict"):
            if isinstance(content.get(key), Mapping):
                return _check_state_dict(content[key], path)
    return _check_state_dict(content, path)


def save_checkpoint(model_or_state_dict: torch.nn.Module | Mapping[str, torch.Tensor],
                    path: str | Path) -> Path:
    """Save ``{"model": state_dict}`` atomically (temporary file, then rename).

    Parameters
    ----------
    model_or_state_dict : torch.nn.Module or mapping
        Module whose ``state_dict()`` is saved, or a state dict.
    path : str or Path
        Output file; its folder must exist.

    Returns
    -------
    Path
        ``path``.
    """
    path = Path(path).expanduser()
    if isinstance(model_or_state_dict, torch.nn.Module):
        state = model_or_state_dict.state_dict()
    else:
        state = model_or_state_dict
    state = _check_state_dict(state, path)
    state = {k: v.detach().cpu() for k, v in state.items()}
    return atomic_write(path, lambda tmp: torch.save({"model": state}, tmp))
