"""Where each registered model's weights come from: URL, pinned SHA-256, normalisation, card.

This table is read by :mod:`.configs` (which attaches one :class:`WeightsSpec` to each
:class:`~.configs.SAM2Config`) and by :mod:`.checkpoint` (download + verification). It is the
only place a checkpoint URL or hash is written down. No torch import.

Hash sources (a hash is recorded only when a public source states it):

* SAM2 / SAM2.1 (all 8 official files): ``HASHES`` in
  ``computational-cell-analytics/micro-sam``, ``micro_sam/v2/util.py`` (passed to
  ``pooch.retrieve(known_hash=...)``); the SAM2.1 ones also appear in the weights list of
  InterDigitalInc's CompressAI-Vision install script, and sam2.1-tiny / sam2-tiny in several
  other public projects.
* MedSAM2 (``wanglab/MedSAM2`` on Hugging Face): no published SHA-256 was found, so these
  entries are verified by trust on first use (the first download's hash is kept in a
  ``.sha256`` sidecar) until a hash is pinned here.

MedSAM2 layout (bowang-lab/MedSAM2): ``sam2/modeling/sam2_base.py`` defines the same modules as
the official ``SAM2Base`` and ``sam2.1_hiera_t512.yaml`` is SAM2.1-tiny at 512 px; its trainer
saves ``{"model": state_dict, "optimizer": ..., "epoch": ..., ...}`` and its inference loads
``["model"]`` strictly. So the official key names apply and :func:`.checkpoint.load_state_dict`
reads it like an official file (tests/sam2/test_medsam2.py serves a synthetic one).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "Normalization", "WeightsSpec", "IMAGENET", "OFFICIAL", "MEDSAM2", "SAM2_CARD", "MEDSAM2_CARD", "CACHE_ENV",
    "cache_dir",
]

CACHE_ENV = "SAM2MED_CACHE"


def cache_dir() -> Path:
    """Folder for downloaded checkpoints: ``$SAM2MED_CACHE`` or pooch's OS cache."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    import pooch

    return Path(pooch.os_cache("napari-sam2med"))


@dataclass(frozen=True)
class Normalization:
    """How a slice becomes the network input.

    The slice is brought to ``[0, 1]`` (uint8: ``x / 255``; other dtypes: the contrast window),
    replicated to RGB, resized to the model's image size and standardised per channel with
    ``(x - mean) / std``.

    Attributes
    ----------
    mean, std : tuple of float
        Per-channel (RGB) statistics applied to ``[0, 1]`` values.
    intensity : str
        How raw intensities are brought to ``[0, 1]`` for this model (e.g. a CT window).
    """

    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    intensity: str = "uint8: x/255; other dtypes: contrast window (default 0.5-99.5 percentiles) to [0, 1]"


#: SAM2's preprocessing (ImageNet statistics), used by every registered model today.
IMAGENET = Normalization()

#: MedSAM2: CT windowed to [0, 255] (lesion window), other modalities min-max scaled, then x/255 and ImageNet
#: statistics at 512 px (bowang-lab/MedSAM2, medsam2_infer_3D_CT.py).
MEDSAM2_NORM = Normalization(
    intensity="CT: clip to a window (e.g. soft tissue W400/L40 or the lesion's) and scale to [0, 1]; "
              "MRI / ultrasound: contrast window (0.5-99.5 percentiles) to [0, 1]",
)


@dataclass(frozen=True)
class WeightsSpec:
    """One downloadable checkpoint file.

    Attributes
    ----------
    url : str
        Download address.
    filename : str
        File name in the cache folder.
    sha256 : str or None
        Pinned SHA-256 hex digest; ``None`` only where no public source states one (trust on
        first use, see the module docstring).
    size_bytes : int or None
        File size where a public source states it.
    """

    url: str
    filename: str
    sha256: str | None = None
    size_bytes: int | None = None


SAM2_CARD = "https://github.com/facebookresearch/sam2#model-description (SAM 2 paper: arXiv:2408.00714)"
MEDSAM2_CARD = ("https://huggingface.co/wanglab/MedSAM2 (code: github.com/bowang-lab/MedSAM2; "
                "paper: arXiv:2504.03600)")

_FB = "https://dl.fbaipublicfiles.com/segment_anything_2"

#: Official files: registry name -> (weights, parameters in millions from the SAM2 README).
OFFICIAL: dict[str, tuple[WeightsSpec, float]] = {
    "sam2.1-tiny": (WeightsSpec(f"{_FB}/092824/sam2.1_hiera_tiny.pt", "sam2.1_hiera_tiny.pt",
                                "7402e0d864fa82708a20fbd15bc84245c2f26dff0eb43a4b5b93452deb34be69",
                                156_008_466), 38.9),
    "sam2.1-small": (WeightsSpec(f"{_FB}/092824/sam2.1_hiera_small.pt", "sam2.1_hiera_small.pt",
                                 "6d1aa6f30de5c92224f8172114de081d104bbd23dd9dc5c58996f0cad5dc4d38"), 46.0),
    "sam2.1-base-plus": (WeightsSpec(f"{_FB}/092824/sam2.1_hiera_base_plus.pt", "sam2.1_hiera_base_plus.pt",
                                     "a2345aede8715ab1d5d31b4a509fb160c5a4af1970f199d9054ccfb746c004c5"), 80.8),
    "sam2.1-large": (WeightsSpec(f"{_FB}/092824/sam2.1_hiera_large.pt", "sam2.1_hiera_large.pt",
                                 "2647878d5dfa5098f2f8649825738a9345572bae2d4350a2468587ece47dd318"), 224.4),
    "sam2-tiny": (WeightsSpec(f"{_FB}/072824/sam2_hiera_tiny.pt", "sam2_hiera_tiny.pt",
                              "65b50056e05bcb13694174f51bb6da89c894b57b75ccdf0ba6352c597c5d1125",
                              155_906_050), 38.9),
    "sam2-small": (WeightsSpec(f"{_FB}/072824/sam2_hiera_small.pt", "sam2_hiera_small.pt",
                               "95949964d4e548409021d47b22712d5f1abf2564cc0c3c765ba599a24ac7dce3"), 46.0),
    "sam2-base-plus": (WeightsSpec(f"{_FB}/072824/sam2_hiera_base_plus.pt", "sam2_hiera_base_plus.pt",
                                   "d0bb7f236400a49669ffdd1be617959a8b1d1065081789d7bbff88eded3a8071"), 80.8),
    "sam2-large": (WeightsSpec(f"{_FB}/072824/sam2_hiera_large.pt", "sam2_hiera_large.pt",
                               "7442e4e9b732a508f80e141e7c2913437a3610ee0c77381a66658c3a445df87b"), 224.4),
}

_HF = "https://huggingface.co/wanglab/MedSAM2/resolve/main"

#: MedSAM2 family: SAM2.1-tiny fine-tuned on medical data, 512 px. name -> (weights, one-line summary).
MEDSAM2: dict[str, tuple[WeightsSpec, str]] = {
    "medsam2-latest": (WeightsSpec(f"{_HF}/MedSAM2_latest.pt", "MedSAM2_latest.pt"),
                       "MedSAM2, latest general model (CT, MRI, PET, ultrasound, endoscopy)"),
    "medsam2-ct-lesion": (WeightsSpec(f"{_HF}/MedSAM2_CTLesion.pt", "MedSAM2_CTLesion.pt"),
                          "MedSAM2 fine-tuned for CT lesions"),
    "medsam2-mri-liver-lesion": (WeightsSpec(f"{_HF}/MedSAM2_MRI_LiverLesion.pt", "MedSAM2_MRI_LiverLesion.pt"),
                                 "MedSAM2 fine-tuned for liver lesions in MRI"),
    "medsam2-us-heart": (WeightsSpec(f"{_HF}/MedSAM2_US_Heart.pt", "MedSAM2_US_Heart.pt"),
                         "MedSAM2 fine-tuned for heart ultrasound (echocardiography) video"),
}
