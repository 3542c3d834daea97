"""Build :class:`SAM2Model` from a :class:`SAM2Config` and load official checkpoints."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import torch

from .checkpoint import load_state_dict, resolve_checkpoint
from .common import MLP
from .configs import SAM2Config, SLMConfig, get_config
from .device import pick_device
from .hiera import Hiera
from .image_encoder import FpnNeck, ImageEncoder
from .mask_decoder import MaskDecoder
from .memory_attention import MemoryAttention, MemoryAttentionLayer
from .memory_encoder import CXBlock, Fuser, MaskDownSampler, MemoryEncoder
from .model import SAM2Model
from .position_encoding import PositionEmbeddingSine
from .prompt_encoder import PromptEncoder
from .transformer import RoPEAttention, TwoWayTransformer

__all__ = ["build_model", "load_model", "load_weights"]

log = logging.getLogger(__name__)


def _image_encoder(cfg: SAM2Config) -> ImageEncoder:
    h = cfg.hiera
    trunk = Hiera(
        embed_dim=h.embed_dim, num_heads=h.num_heads, drop_path_rate=h.drop_path_rate, q_pool=h.q_pool,
        q_stride=h.q_stride, stages=h.stages, dim_mul=h.dim_mul, head_mul=h.head_mul,
        window_pos_embed_bkg_spatial_size=h.window_pos_embed_bkg_spatial_size,
        window_spec=h.window_spec, global_att_blocks=h.global_att_blocks,
    )
    neck = FpnNeck(
        d_model=cfg.d_model, backbone_channel_list=h.channel_list, fpn_top_down_levels=[2, 3],
        fpn_interp_model="nearest",
        position_encoding=PositionEmbeddingSine(num_pos_feats=cfg.d_model, normalize=True, temperature=10000),
    )
    return ImageEncoder(trunk=trunk, neck=neck, scalp=1)


def _memory_attention(cfg: SAM2Config) -> MemoryAttention:
    fs = (cfg.feat_size, cfg.feat_size)
    layer = MemoryAttentionLayer(
        activation="relu", d_model=cfg.d_model, dim_feedforward=cfg.memory_attention_ffn, dropout=0.1,
        pos_enc_at_attn=False, pos_enc_at_cross_attn_keys=True, pos_enc_at_cross_attn_queries=False,
        self_attention=RoPEAttention(embedding_dim=cfg.d_model, num_heads=1, downsample_rate=1, dropout=0.1,
                                     rope_theta=10000.0, feat_sizes=fs),
        cross_attention=RoPEAttention(embedding_dim=cfg.d_model, num_heads=1, downsample_rate=1, dropout=0.1,
                                      rope_theta=10000.0, feat_sizes=fs, rope_k_repeat=True,
                                      kv_in_dim=cfg.mem_dim),
    )
    return MemoryAttention(d_model=cfg.d_model, pos_enc_at_input=True, layer=layer,
                           num_layers=cfg.memory_attention_layers)


def _memory_encoder(cfg: SAM2Config) -> MemoryEncoder:
    return MemoryEncoder(
        out_dim=cfg.mem_dim,
        mask_downsampler=MaskDownSampler(embed_dim=cfg.d_model, kernel_size=3, stride=2, padding=1),
        fuser=Fuser(CXBlock(dim=cfg.d_model, kernel_size=7, padding=3, layer_scale_init_value=1e-6,
                            use_dwconv=True), num_layers=cfg.fuser_layers),
        position_encoding=PositionEmbeddingSine(num_pos_feats=cfg.mem_dim, normalize=True, temperature=10000),
        in_dim=cfg.d_model,
    )


def build_model(cfg: SAM2Config) -> SAM2Model:
    """Build a randomly initialised model (eval mode, CPU, fp32).

    Parameters
    ----------
    cfg : SAM2Config
        Architecture and inference settings, e.g. ``get_config("sam2.1-tiny", 512)``.
    """
    c, s = cfg.d_model, cfg.image_size
    prompt_encoder = PromptEncoder(embed_dim=c, image_embedding_size=(cfg.feat_size, cfg.feat_size),
                                   input_image_size=(s, s), mask_in_chans=16)
    mask_decoder = MaskDecoder(
        num_multimask_outputs=3,
        transformer=TwoWayTransformer(depth=2, embedding_dim=c, mlp_dim=cfg.decoder_mlp_dim,
                                      num_heads=cfg.decoder_heads),
        transformer_dim=c, iou_head_depth=3, iou_head_hidden_dim=256, use_high_res_features=True,
        iou_prediction_use_sigmoid=True, pred_obj_scores=True, pred_obj_scores_mlp=True,
        use_multimask_token_for_obj_ptr=True,
        dynamic_multimask_via_stability=cfg.dynamic_multimask_via_stability,
        dynamic_multimask_stability_delta=cfg.dynamic_multimask_stability_delta,
        dynamic_multimask_stability_thresh=cfg.dynamic_multimask_stability_thresh,
    )
    model = SAM2Model(
        cfg, image_encoder=_image_encoder(cfg), memory_attention=_memory_attention(cfg),
        memory_encoder=_memory_encoder(cfg), sam_prompt_encoder=prompt_encoder, sam_mask_decoder=mask_decoder,
        obj_ptr_proj=MLP(c, c, c, 3),
    )
    if cfg.slm is not None:
        from .slm import attach_slm

        attach_slm(model, cfg.slm)
    return model.eval()


def load_weights(model: SAM2Model, path: str | Path) -> SAM2Model:
    """Load a checkpoint into ``model`` with a strict state-dict match.

    SLM-SAM2 (see :mod:`.slm`): a checkpoint holding the SLM modules gives the model those
    modules if it lacks them; a plain SAM2 checkpoint loaded into a model with SLM modules
    fills everything else strictly and initialises the SLM modules from the long branch.

    Raises
    ------
    ValueError
        When the file is not a checkpoint of this architecture (the message names the
        first missing / unexpected keys).
    """
    from .slm import attach_slm, has_slm, init_slm_from_long, slm_state_keys

    sd = load_state_dict(path)
    plain_into_slm = False
    if slm_state_keys(sd) and not has_slm(model):
        attach_slm(model, init_from_long=False)
    elif has_slm(model) and not slm_state_keys(sd):
        plain_into_slm = True
        sd = {**sd, **{k: v for k, v in model.state_dict().items() if k in slm_state_keys(model.state_dict())}}
    try:
        model.load_state_dict(sd, strict=True)
        if plain_into_slm:
            init_slm_from_long(model)
            log.info("%s: plain SAM2 weights; SLM modules initialised from the long memory", Path(path).name)
    except RuntimeError as err:
        first = str(err).splitlines()[0:3]
        raise ValueError(f"{Path(path).name} does not match {model.config.name}: {' '.join(first)}") from None
    return model


def load_model(name: str = "sam2.1-tiny", *, image_size: int | None = None, checkpoint: str | Path | None = None,
               random_init: bool = False, device: str | torch.device = "auto", offline: bool | None = None,
               progress: bool = True, slm: SLMConfig | bool | None = None) -> SAM2Model:
    """Build a model and load its weights.

    Parameters
    ----------
    name : str
        Registered model name (see :data:`~napari_sam2med.sam2.MODEL_NAMES`).
    image_size : int, optional
        Input size (1024 default; 512 or 256 for speed).
    checkpoint : path, optional
        A user-given checkpoint file; otherwise the official file is taken from the cache or
        downloaded (with a progress bar and a recorded checksum).
    random_init : bool
        Skip weights entirely (tests and development only).
    device : str
        ``"auto"`` (cuda, then mps, then cpu) or an explicit device.
    slm : SLMConfig or bool, optional
        Add SLM-SAM2's short-long memory modules (``True``: default options). A checkpoint that
        holds them adds them anyway; one that lacks them initialises them from the long memory.
    """
    cfg = get_config(name, image_size)
    if slm:
        cfg = replace(cfg, slm=slm if isinstance(slm, SLMConfig) else SLMConfig())
    model = build_model(cfg)
    if not random_init:
        path = resolve_checkpoint(name, checkpoint=checkpoint, offline=offline, progress=progress)
        load_weights(model, path)
    else:
        log.warning("%s: random weights (no checkpoint loaded); masks are meaningless", name)
    return model.to(pick_device(device)).eval()


