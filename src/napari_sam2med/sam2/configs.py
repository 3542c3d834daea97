"""Model configurations as dataclasses (no Hydra).

This is the one model registry: each official SAM2 / SAM2.1 checkpoint and each MedSAM2
checkpoint has one :class:`SAM2Config` in :data:`MODEL_CONFIGS`, carrying its architecture, its
weights (URL, pinned SHA-256; :mod:`.weights`), its input normalisation and its model card;
:func:`list_models` lists them (timm's ``list_models`` pattern). The values reproduce the official YAML files together with the
overrides that ``build_sam2_video_predictor`` applies for inference (dynamic multimask via
stability, binarised point masks for the memory encoder). ``sam2.1-test`` is a small
random-init-only configuration for fast tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from .weights import IMAGENET, MEDSAM2, MEDSAM2_CARD, MEDSAM2_NORM, OFFICIAL, SAM2_CARD, Normalization, WeightsSpec

__all__ = [
    "HieraConfig", "SLMConfig", "SAM2Config", "MODEL_CONFIGS", "MODEL_NAMES", "get_config", "list_models",
    "Normalization", "WeightsSpec",
]


@dataclass(frozen=True)
class HieraConfig:
    """Hiera trunk hyper-parameters (same names as the official ``Hiera``)."""

    embed_dim: int = 96
    num_heads: int = 1
    stages: tuple[int, ...] = (1, 2, 7, 2)
    global_att_blocks: tuple[int, ...] = (5, 7, 9)
    window_pos_embed_bkg_spatial_size: tuple[int, int] = (7, 7)
    window_spec: tuple[int, ...] = (8, 4, 14, 7)
    q_pool: int = 3
    q_stride: tuple[int, int] = (2, 2)
    dim_mul: float = 2.0
    head_mul: float = 2.0
    drop_path_rate: float = 0.0

    @property
    def channel_list(self) -> list[int]:
        """Output channels of the four stages, deepest first (the FPN's ``backbone_channel_list``)."""
        dims = [self.embed_dim]
        for _ in range(len(self.stages) - 1):
            dims.append(int(dims[-1] * self.dim_mul))
        return dims[::-1]


@dataclass(frozen=True)
class SLMConfig:
    """SLM-SAM2's short-long memory option (see :mod:`napari_sam2med.sam2.slm`).

    Parameters
    ----------
    recent_n : int
        Slices the short branch attends to (the most recent ones; SLM-SAM2 uses 1).
    fuser_layers, fuser_kernel : int
        ConvNeXt blocks after adding the short and long branches, and their kernel.
    layer_scale_init : float
        Initial layer scale of those blocks (1e-6: each block starts close to the identity).
    short_init_scale : float
        When the short branch is initialised from the long branch, its final LayerNorm is
        multiplied by this, so the untrained model's output stays close to SAM2's.
    """

    recent_n: int = 1
    fuser_layers: int = 2
    fuser_kernel: int = 7
    layer_scale_init: float = 1e-6
    short_init_scale: float = 1e-3

    def __post_init__(self):
        if self.recent_n < 1:
            raise ValueError(f"recent_n must be at least 1, got {self.recent_n}")


@dataclass(frozen=True)
class SAM2Config:
    """Everything needed to build a :class:`~napari_sam2med.sam2.model.SAM2Model`.

    Parameters
    ----------
    name : str
        Registry name, e.g. ``"sam2.1-tiny"``.
    version : str
        ``"2.0"`` or ``"2.1"``; SAM2.1 adds the spatial no-object embedding and signed,
        projected temporal encodings for object pointers.
    hiera : HieraConfig
        Image trunk.
    image_size : int
        Square input size; 1024 for the official models (512 for MedSAM2), 512 / 256 for speed.
        Must be a multiple of 32 (position embeddings are resized to it).
    weights : WeightsSpec or None
        Registered checkpoint (URL, pinned SHA-256); ``None`` for random-init-only configs.
    normalization : Normalization
        How slices are scaled and standardised for this model.
    card : str
        Where the model card is (data, recipe, limits).
    crop_context : float or None
        Crop-around-the-prompt inference (``engine.crop``): each object is segmented in a square
        window this many times its prompt box's longer side; None: whole slices. Models trained on
        crops (``sam2med-small-ct``: 3.0) need it.
    """

    name: str
    version: str
    hiera: HieraConfig
    image_size: int = 1024
    d_model: int = 256
    mem_dim: int = 64
    num_maskmem: int = 7
    memory_attention_layers: int = 4
    memory_attention_ffn: int = 2048
    decoder_mlp_dim: int = 2048
    decoder_heads: int = 8
    fuser_layers: int = 2
    backbone_stride: int = 16
    sigmoid_scale_for_mem_enc: float = 20.0
    sigmoid_bias_for_mem_enc: float = -10.0
    binarize_mask_from_pts_for_mem_enc: bool = True
    max_cond_frames_in_attn: int = -1
    max_obj_ptrs_in_encoder: int = 16
    only_obj_ptrs_in_the_past: bool = True
    multimask_min_pt_num: int = 0
    multimask_max_pt_num: int = 1
    dynamic_multimask_via_stability: bool = True
    dynamic_multimask_stability_delta: float = 0.05
    dynamic_multimask_stability_thresh: float = 0.98
    weights: WeightsSpec | None = None  # None: random-init only (test configs)
    normalization: Normalization = IMAGENET
    card: str = ""  # model card: data, recipe, limits (URL or packaged file)
    params_m: float | None = None  # parameters in millions, as published
    summary: str = ""
    slm: SLMConfig | None = None  # short-long memory modules (SLM-SAM2); None: plain SAM2
    crop_context: float | None = None  # inference crop window / prompt box side (engine.crop); None: whole slices
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def checkpoint_name(self) -> str | None:
        """File name of the registered checkpoint (``None`` for random-init-only configs)."""
        return None if self.weights is None else self.weights.filename

    @property
    def is_v21(self) -> bool:
        return self.version == "2.1"

    @property
    def no_obj_embed_spatial(self) -> bool:
        return self.is_v21

    @property
    def add_tpos_enc_to_obj_ptrs(self) -> bool:
        return self.is_v21

    @property
    def proj_tpos_enc_in_obj_ptrs(self) -> bool:
        return self.is_v21

    @property
    def use_signed_tpos_enc_to_obj_ptrs(self) -> bool:
        return self.is_v21

    @property
    def feat_size(self) -> int:
        """Side of the lowest-resolution (stride-16) feature map."""
        return self.image_size // self.backbone_stride

    def with_image_size(self, image_size: int) -> "SAM2Config":
        """Return a copy at another input size (checked to be a multiple of 32)."""
        if image_size <= 0 or image_size % 32:
            raise ValueError(f"image size must be a positive multiple of 32, got {image_size}")
        return replace(self, image_size=int(image_size))


_TINY = HieraConfig(embed_dim=96, num_heads=1, stages=(1, 2, 7, 2), global_att_blocks=(5, 7, 9))
_SMALL = HieraConfig(embed_dim=96, num_heads=1, stages=(1, 2, 11, 2), global_att_blocks=(7, 10, 13))
_BASE_PLUS = HieraConfig(
    embed_dim=112, num_heads=2, stages=(2, 3, 16, 3), global_att_blocks=(12, 16, 20),
    window_pos_embed_bkg_spatial_size=(14, 14),
)
_LARGE = HieraConfig(
    embed_dim=144, num_heads=2, stages=(2, 6, 36, 4), global_att_blocks=(23, 33, 43),
    window_spec=(8, 4, 16, 8),
)
_TEST = HieraConfig(
    embed_dim=16, num_heads=1, stages=(1, 1, 2, 1), global_att_blocks=(2, 3, 4),
    window_spec=(8, 4, 4, 2), window_pos_embed_bkg_spatial_size=(4, 4),
)

_SIZES = {"tiny": _TINY, "small": _SMALL, "base-plus": _BASE_PLUS, "large": _LARGE}
_FILE_SIZES = {"tiny": "tiny", "small": "small", "base-plus": "base_plus", "large": "large"}


def _registry() -> dict[str, SAM2Config]:
    out: dict[str, SAM2Config] = {}
    for version, prefix, file_prefix in (("2.1", "sam2.1", "sam2.1_hiera_"), ("2.0", "sam2", "sam2_hiera_")):
        for size, hiera in _SIZES.items():
            name = f"{prefix}-{size}"
            weights, params_m = OFFICIAL[name]
            assert weights.filename == f"{file_prefix}{_FILE_SIZES[size]}.pt"
            out[name] = SAM2Config(
                name=name, version=version, hiera=hiera, weights=weights, card=SAM2_CARD, params_m=params_m,
                summary=f"SAM {version} Hiera-{size} (Meta; trained on natural images and videos)",
            )
    for name, (weights, summary) in MEDSAM2.items():
        # MedSAM2 is SAM2.1-tiny fully fine-tuned at 512 px (its sam2.1_hiera_t512.yaml); same state-dict keys.
        out[name] = SAM2Config(
            name=name, version="2.1", hiera=_TINY, image_size=512, weights=weights,
            normalization=MEDSAM2_NORM, card=MEDSAM2_CARD, params_m=38.9, summary=summary,
        )
    out["sam2.1-test"] = SAM2Config(
        name="sam2.1-test", version="2.1", hiera=_TEST, image_size=128, d_model=64, mem_dim=32,
        memory_attention_layers=2, memory_attention_ffn=128, decoder_mlp_dim=128,
        fuser_layers=1,
    )
    # Our own small SAM2.1 (issue 18), trained from random init by train/ on CT lesions + synthetic volumes,
    # 128 px crops around the prompt; see models/SAM2MED_SMALL_CT_MODEL_CARD.md.
    out["sam2med-small-ct"] = SAM2Config(
        name="sam2med-small-ct", version="2.1", image_size=128, d_model=128, mem_dim=64,
        hiera=HieraConfig(embed_dim=32, num_heads=1, stages=(1, 2, 4, 1), global_att_blocks=(4, 6),
                          window_spec=(8, 4, 8, 4), window_pos_embed_bkg_spatial_size=(7, 7)),
        memory_attention_layers=2, memory_attention_ffn=512, decoder_mlp_dim=512, fuser_layers=2,
        weights=WeightsSpec("package:models/sam2med_small_ct_v1.pt", "sam2med_small_ct_v1.pt",
                            "6398994e36d2fe000180110784be38dada7bae2347d9a38a28097ca178acb603", 7_313_257),
        card="models/SAM2MED_SMALL_CT_MODEL_CARD.md", params_m=3.6,
        crop_context=3.0,  # trained on crops: segment in the same window at inference (engine.crop)
        summary="sam2med small CT (ours, offline): 128 px crops around the prompt; lesion- and blob-like objects",
    )
    return out


MODEL_CONFIGS: dict[str, SAM2Config] = _registry()
#: Names a user may pick (the random-init-only test configs are left out).
MODEL_NAMES: tuple[str, ...] = tuple(n for n, c in MODEL_CONFIGS.items() if c.weights is not None)


def list_models(include_test: bool = False) -> list[SAM2Config]:
    """Every registered model, in registry order (timm's ``list_models`` pattern).

    Parameters
    ----------
    include_test : bool
        Also list the random-init-only test configurations.

    Returns
    -------
    list of SAM2Config
        Each carries its architecture, ``weights`` (URL, SHA-256), ``image_size``,
        ``normalization`` and ``card``.
    """
    return [c for n, c in MODEL_CONFIGS.items() if include_test or n in MODEL_NAMES]


def get_config(name: str, image_size: int | None = None) -> SAM2Config:
    """Look up a registered configuration, optionally at another image size.

    Parameters
    ----------
    name : str
        One of :data:`MODEL_CONFIGS` (``sam2.1-tiny`` ... ``sam2-large``, ``sam2.1-test``).
    image_size : int, optional
        Input size override (multiple of 32).
    """
    try:
        cfg = MODEL_CONFIGS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODEL_CONFIGS)}") from None
    return cfg.with_image_size(image_size) if image_size else cfg
