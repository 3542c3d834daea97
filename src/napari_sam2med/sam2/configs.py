"""Model configurations as dataclasses (no Hydra).

Each official SAM2 / SAM2.1 checkpoint has one :class:`SAM2Config` in
:data:`MODEL_CONFIGS`. The values reproduce the official YAML files together with the
overrides that ``build_sam2_video_predictor`` applies for inference (dynamic multimask via
stability, binarised point masks for the memory encoder). ``sam2.1-test`` is a small
random-init-only configuration for fast tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

__all__ = ["HieraConfig", "SAM2Config", "MODEL_CONFIGS", "MODEL_NAMES", "get_config"]


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
        Square input size; 1024 for the official models, 512 / 256 for speed. Must be a
        multiple of 32 (position embeddings are resized to it).
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
    checkpoint_name: str | None = None
    extra: dict = field(default_factory=dict, compare=False, hash=False)

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
            out[name] = SAM2Config(
                name=name, version=version, hiera=hiera,
                checkpoint_name=f"{file_prefix}{_FILE_SIZES[size]}.pt",
            )
    out["sam2.1-test"] = SAM2Config(
        name="sam2.1-test", version="2.1", hiera=_TEST, image_size=128, d_model=64, mem_dim=32,
        memory_attention_layers=2, memory_attention_ffn=128, decoder_mlp_dim=128,
        fuser_layers=1,
    )
    return out


MODEL_CONFIGS: dict[str, SAM2Config] = _registry()
#: Names a user may pick (the random-init-only test config is left out).
MODEL_NAMES: tuple[str, ...] = tuple(n for n in MODEL_CONFIGS if not n.endswith("-test"))


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
