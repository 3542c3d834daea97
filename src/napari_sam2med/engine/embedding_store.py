"""Image embeddings on disk: one zarr group per slice, keyed by content, verified on every read.

An entry's key is a SHA-256 over

* the slice's content: the exact float32 ``(Y, X, 3)`` input of the encoder before resizing
  (:meth:`FrameStack.normalized <napari_sam2med.io.FrameStack.normalized>`, so the display window
  counts too), its shape and dtype (:func:`slice_digest`);
* the model: config name, a SHA-256 of the encoder's weights (the tensors the embedding depends
  on, as for the ONNX export cache), the image size and the features' dtype (bfloat16 under CUDA
  autocast, float32 elsewhere), and :data:`STORE_FORMAT`.

So changed data, other weights or another size simply miss. Each entry stores its key and a
SHA-256 of its arrays in its attributes; an entry whose attributes, arrays or checksum do not
match (a corrupt chunk, a truncated write from another program) is deleted and reported as a
miss, never used. Entries are written atomically (:func:`~napari_sam2med.io.writers.atomic_write`).

Layout: ``<folder>/<key[:2]>/<key>.zarr`` with arrays ``vision``, ``vision_pos``, ``high_res_s0``,
``high_res_s1`` (one chunk each, uncompressed: float features barely compress and reading must
be fast). The default folder is ``<checkpoint cache>/embeddings`` (``$SAM2MED_CACHE``).
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import weakref
from pathlib import Path

import numpy as np
import torch

from ..io.writers import atomic_write
from ..sam2.checkpoint import cache_dir
from ..sam2.model import FrameFeatures

__all__ = ["STORE_FORMAT", "EmbeddingStore", "default_store_dir", "slice_digest"]

log = logging.getLogger(__name__)

#: Bump when what is stored changes: older entries then miss.
STORE_FORMAT = 1
_NAMES = ("vision", "vision_pos", "high_res_s0", "high_res_s1")
_DIGESTS: "weakref.WeakKeyDictionary[torch.nn.Module, tuple]" = weakref.WeakKeyDictionary()


def default_store_dir() -> Path:
    """``<checkpoint cache>/embeddings`` (``$SAM2MED_CACHE`` moves it)."""
    return cache_dir() / "embeddings"


def slice_digest(frame01: np.ndarray) -> str:
    """SHA-256 of one encoder input slice (its bytes, shape and dtype)."""
    arr = np.ascontiguousarray(frame01)
    h = hashlib.sha256(f"{arr.shape}|{arr.dtype}|".encode())
    h.update(arr.tobytes())
    return h.hexdigest()


def _weights_digest(model) -> str:
    """The encoder weights' SHA-256, cached per model until a parameter is replaced or changed in place."""
    from .onnx_engine import encoder_digest

    stamp = tuple((p.data_ptr(), p._version) for p in model.image_encoder.parameters())
    old = _DIGESTS.get(model)
    if old is None or old[0] != stamp:
        _DIGESTS[model] = old = (stamp, encoder_digest(model))
    return old[1]


def _to_numpy(t: torch.Tensor) -> tuple[np.ndarray, str]:
    t = t.detach().to("cpu").contiguous()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy(), "bfloat16"
    return t.numpy(), str(t.dtype).removeprefix("torch.")


def _to_tensor(arr: np.ndarray, dtype: str, device) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(arr))
    if dtype == "bfloat16":
        t = t.view(torch.bfloat16)
    elif str(t.dtype).removeprefix("torch.") != dtype:
        raise ValueError(f"stored dtype {t.dtype} is not {dtype}")
    return t.to(device)


def _checksum(arrays: list[np.ndarray], dtypes: list[str]) -> str:
    h = hashlib.sha256()
    for name, arr, dtype in zip(_NAMES, arrays, dtypes):
        h.update(f"{name}|{arr.shape}|{dtype}|".encode())
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


class EmbeddingStore:
    """A folder of per-slice embeddings (see the module docstring).

    Parameters
    ----------
    folder : path, optional
        Where entries live (created if needed); default :func:`default_store_dir`.
    """

    def __init__(self, folder: str | Path | None = None):
        self.folder = Path(folder).expanduser() if folder is not None else default_store_dir()
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ValueError(f"cannot use {self.folder} as the embedding cache folder: {err}") from None
        self.rejected = 0  # entries found corrupt or stale and deleted
        self.written = 0

    def model_key(self, model) -> str:
        """What the embeddings of ``model`` depend on besides the slice (hashes the encoder weights once)."""
        dtype = "bfloat16" if model.device.type == "cuda" else "float32"  # see sam2.device.autocast_context
        return f"{model.config.name}|{_weights_digest(model)}|{int(model.image_size)}|{dtype}|f{STORE_FORMAT}"

    @staticmethod
    def entry_key(model_key: str, digest: str) -> str:
        """Key of one slice's entry: SHA-256 of the model key and the slice digest."""
        return hashlib.sha256(f"{model_key}||{digest}".encode()).hexdigest()

    def path(self, key: str) -> Path:
        """Folder of the entry ``key``."""
        return self.folder / key[:2] / f"{key}.zarr"

    def __contains__(self, key: str) -> bool:
        return self.path(key).is_dir()

    def load(self, key: str, device: torch.device | str = "cpu") -> FrameFeatures | None:
        """The entry's features on ``device``, or ``None`` if absent; a bad entry is deleted and ``None``."""
        path = self.path(key)
        if not path.is_dir():
            return None
        import zarr

        try:
            group = zarr.open_group(str(path), mode="r")
            attrs = dict(group.attrs)
            if attrs.get("key") != key or attrs.get("format") != STORE_FORMAT:
                raise ValueError("the entry was written for another key or format")
            dtypes = list(attrs["dtypes"])
            arrays = [np.asarray(group[name][...]) for name in _NAMES]
            if _checksum(arrays, dtypes) != attrs.get("checksum"):
                raise ValueError("checksum mismatch")
            t = [_to_tensor(a, d, device) for a, d in zip(arrays, dtypes)]
        except Exception as err:  # any unreadable entry is recomputed, never used
            log.warning("embedding cache: discarding %s (%s)", path.name, err)
            self.rejected += 1
            shutil.rmtree(path, ignore_errors=True)
            return None
        return FrameFeatures(t[0], t[1], (t[2], t[3]))

    def save(self, key: str, features: FrameFeatures) -> None:
        """Write one entry atomically (a failure is logged once per entry; the session goes on without it)."""
        import zarr

        pairs = [_to_numpy(x) for x in (features.vision, features.vision_pos, *features.high_res)]
        arrays, dtypes = [p[0] for p in pairs], [p[1] for p in pairs]
        attrs = {"key": key, "format": STORE_FORMAT, "dtypes": dtypes, "checksum": _checksum(arrays, dtypes)}

        def write(tmp: Path) -> None:
            group = zarr.open_group(str(tmp), mode="w", zarr_format=3)
            for name, arr in zip(_NAMES, arrays):
                group.create_array(name, data=arr, chunks=arr.shape, compressors=None)
            group.attrs.update(attrs)

        path = self.path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, write)
            self.written += 1
        except Exception as err:  # the disk tier is optional: a failed write never fails a click
            log.warning("embedding cache: could not write %s (%s)", path, err)
