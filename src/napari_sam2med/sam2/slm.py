"""SLM-SAM2 short-long memory: a second memory attention over the most recent slices, fused
with SAM2's own (long) memory before the mask decoder.

SLM-SAM2 (Chen et al., IEEE TMI 2025, arXiv 2505.01854) adapts SAM2 to propagating one annotated
slice through a volume. Its model adds to SAM2:

- a *short branch*: a memory attention of the same layout as SAM2's, attending only to the
  memories and object pointers of the ``recent_n`` slices just before the current one;
- a *fuser*: the short and long outputs are added, then passed through ConvNeXt blocks.

State-dict names. The official code (github.com/mazurowski-lab/SLM-SAM2, GPL-3.0; read, not
copied) was checked on 2026-11-30, files ``sam2/modeling/sam2_base.py``,
``sam2/modeling/feature_fuser.py``, ``sam2/configs/sam2.1/slm_sam2_hiera_t.yaml``,
``training/utils/checkpoint_utils.py``. Its ``SAM2Base`` holds, at the top level:

- ``recent_memory_attention``: a ``MemoryAttention`` with the long branch's layout (4 layers);
  keys ``recent_memory_attention.layers.{i}.*`` and ``recent_memory_attention.norm.*``;
- ``recent_memory_fuser``: a ``Fuser`` with ``proj`` an ``nn.Identity`` (no keys) and
  ``layers.{0,1}`` ConvNeXt blocks with ``dwconv`` (depthwise, kernel 7, padding 3), ``norm``
  (LayerNorm2d), ``pwconv1``, ``pwconv2`` and layer scale ``gamma`` (init 1e-6); its forward is
  ``layers(long + short)``;
- ``rec_maskmem_tpos_enc``: a (num_maskmem, 1, 1, mem_dim) tensor that it always creates but,
  with the released config (no ``rec_num_maskmem``), never uses: the short branch adds the shared
  ``maskmem_tpos_enc``. We keep it as a persistent *buffer* so their checkpoints load strictly
  without it counting as a trainable parameter.

Initialisation. Their fine-tuning copies the long memory attention's weights into the short one.
We do the same, and additionally scale the short branch's final LayerNorm by
``SLMConfig.short_init_scale`` (1e-3): with the fuser's layer scale at 1e-6 the fused features
are then ``long + O(1e-3)``, so a plain SAM2 checkpoint with untrained SLM modules predicts
SAM2's masks (checked by ``tests/sam2/test_slm.py``), while every new parameter still receives
a (small, non-zero) gradient and Adam-type optimisers move them from the first step.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import replace

import torch
from torch import nn

from .configs import SLMConfig
from .memory_encoder import CXBlock, Fuser

__all__ = [
    "SLMConfig", "ShortLongFuser", "SLM_KEY_PREFIXES", "attach_slm", "has_slm", "init_slm_from_long",
    "slm_parameters", "slm_state_keys", "freeze_all_but_slm",
]

log = logging.getLogger(__name__)

#: State-dict key prefixes of the SLM modules (names of the official SLM-SAM2 code).
SLM_KEY_PREFIXES = ("recent_memory_attention.", "recent_memory_fuser.", "rec_maskmem_tpos_enc")


class ShortLongFuser(Fuser):
    """Add the short-branch features to the long-branch ones, then apply the ConvNeXt blocks.

    Keys: ``layers.{i}.{dwconv,norm,pwconv1,pwconv2,gamma}`` (``proj`` is an identity).
    """

    def forward(self, short: torch.Tensor, long: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return super().forward(long + short)


def has_slm(model: nn.Module) -> bool:
    """Whether ``model`` carries the SLM modules."""
    return isinstance(getattr(model, "recent_memory_fuser", None), ShortLongFuser)


def _fuser(d_model: int, slm: SLMConfig) -> ShortLongFuser:
    k = int(slm.fuser_kernel)
    block = CXBlock(dim=d_model, kernel_size=k, padding=k // 2, layer_scale_init_value=slm.layer_scale_init,
                    use_dwconv=True)
    return ShortLongFuser(block, num_layers=slm.fuser_layers)


def init_slm_from_long(model: nn.Module) -> None:
    """Initialise the SLM modules from the long branch (plain SAM2 weights -> SAM2-like output).

    The short memory attention becomes a copy of ``memory_attention`` with its final LayerNorm
    scaled by ``short_init_scale``; the fuser's layer scales are reset to ``layer_scale_init``
    (other fuser weights keep their random initialisation, as in SLM-SAM2);
    ``rec_maskmem_tpos_enc`` becomes a copy of ``maskmem_tpos_enc``.
    """
    if not has_slm(model):
        raise ValueError("the model has no SLM modules; call attach_slm first")
    slm = model.config.slm or SLMConfig()
    with torch.no_grad():
        model.recent_memory_attention.load_state_dict(model.memory_attention.state_dict(), strict=True)
        model.recent_memory_attention.norm.weight.mul_(slm.short_init_scale)
        model.recent_memory_attention.norm.bias.mul_(slm.short_init_scale)
        for block in model.recent_memory_fuser.layers:
            if block.gamma is not None:
                block.gamma.fill_(slm.layer_scale_init)
        model.rec_maskmem_tpos_enc.copy_(model.maskmem_tpos_enc)


def attach_slm(model: nn.Module, slm: SLMConfig | None = None, *, init_from_long: bool = True) -> nn.Module:
    """Add the SLM modules to a SAM2 model in place (a no-op when it already has them).

    Parameters
    ----------
    model : SAM2Model
        The model; its ``config`` gets ``slm`` set.
    slm : SLMConfig, optional
        Options; default ``model.config.slm`` or ``SLMConfig()``.
    init_from_long : bool
        Initialise from the long branch (:func:`init_slm_from_long`), so the model keeps
        behaving like SAM2 until the new modules are trained.

    Returns
    -------
    SAM2Model
        ``model`` itself.
    """
    if has_slm(model):
        return model
    slm = slm or model.config.slm or SLMConfig()
    model.config = replace(model.config, slm=slm)
    ref = model.maskmem_tpos_enc
    # A deep copy has the long branch's exact layout (layers, RoPE sizes, kv_in_dim), device and mode.
    model.recent_memory_attention = copy.deepcopy(model.memory_attention)
    model.recent_memory_fuser = _fuser(model.config.d_model, slm).to(device=ref.device, dtype=ref.dtype)
    model.recent_memory_fuser.train(model.training)
    model.register_buffer("rec_maskmem_tpos_enc", ref.detach().clone(), persistent=True)
    if init_from_long:
        init_slm_from_long(model)
    return model


def slm_state_keys(keys) -> list[str]:
    """The keys among ``keys`` that belong to the SLM modules."""
    return [k for k in keys if k.startswith(SLM_KEY_PREFIXES)]


def slm_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The trainable parameters of the SLM modules (short memory attention and fuser).

    For an optimiser that trains the new modules alone, e.g.
    ``torch.optim.AdamW(slm_parameters(model), lr=1e-4)`` after :func:`freeze_all_but_slm`.
    """
    if not has_slm(model):
        raise ValueError("the model has no SLM modules; load it with memory 'slm' (attach_slm)")
    return [p for n, p in model.named_parameters() if n.startswith(SLM_KEY_PREFIXES)]


def freeze_all_but_slm(model: nn.Module) -> list[nn.Parameter]:
    """Set ``requires_grad`` on the SLM parameters only; return them.

    Note that the frozen modules still run in whatever train/eval mode the caller chose (dropout
    in the long memory attention stays active in train mode); call ``model.eval()`` and then
    ``model.recent_memory_attention.train(); model.recent_memory_fuser.train()`` for a frozen,
    deterministic base.
    """
    params = slm_parameters(model)
    keep = {id(p) for p in params}
    for p in model.parameters():
        p.requires_grad_(id(p) in keep)
    return params
