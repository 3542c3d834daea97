"""What trains: the ``decoder`` / ``full`` / ``lora`` / ``custom`` presets, LoRA, parameter groups.

* ``decoder`` (Medical SAM2): image and prompt encoders frozen; the mask decoder and the memory
  modules (memory attention, memory encoder, pointer projections, memory embeddings) train.
* ``full`` (MedSAM2, SLM-SAM2): everything trains; the image encoder gets ``trunk_lr_scale`` x the
  learning rate and the trunk's blocks a layer-wise decay (block i of L: ``decay ** (L - i)``;
  patch and position embeddings ``decay ** (L + 1)``).
* ``lora`` (SAM-OCTA2): low-rank adapters of rank r on every trunk ``qkv`` projection, nothing else
  trains; :func:`merge_lora` folds them into plain weights before export.
* ``custom``: exactly the parameters whose names start with the given prefixes.

``extra_trainable`` prefixes are added to any preset: the hook for modules added later (e.g. the
SLM-SAM2 memory, ``--memory slm``), which name their parameters and get trained without a new preset.
"""

from __future__ import annotations

import math
from enum import Enum
from typing import Iterable, Sequence

import torch
from torch import nn

__all__ = ["Preset", "LoRALinear", "add_lora", "merge_lora", "select_trainable", "param_groups",
           "enable_activation_checkpointing", "DECODER_PREFIXES"]


class Preset(str, Enum):
    DECODER = "decoder"
    FULL = "full"
    LORA = "lora"
    CUSTOM = "custom"


#: Everything but the image encoder and the prompt encoder.
DECODER_PREFIXES = ("sam_mask_decoder.", "memory_attention.", "memory_encoder.", "obj_ptr_proj.",
                    "obj_ptr_tpos_proj.", "mask_downsample.", "maskmem_tpos_enc", "no_mem_embed",
                    "no_mem_pos_enc", "no_obj_ptr", "no_obj_embed_spatial")


class LoRALinear(nn.Module):
    """``base(x) + (alpha / r) * B(A(x))`` with ``A`` Kaiming-initialised and ``B`` zero."""

    def __init__(self, base: nn.Linear, rank: int = 4, alpha: float | None = None):
        super().__init__()
        if rank < 1:
            raise ValueError(f"LoRA rank must be at least 1, got {rank}")
        self.base = base
        self.rank = int(rank)
        self.scale = float(alpha if alpha is not None else rank) / rank
        self.lora_a = nn.Parameter(torch.empty(rank, base.in_features))
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, rank))
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + (x @ self.lora_a.t() @ self.lora_b.t()) * self.scale

    def merged(self) -> nn.Linear:
        """A plain ``nn.Linear`` with the adapter folded in."""
        out = nn.Linear(self.base.in_features, self.base.out_features, bias=self.base.bias is not None)
        with torch.no_grad():
            out.weight.copy_(self.base.weight + (self.lora_b @ self.lora_a) * self.scale)
            if self.base.bias is not None:
                out.bias.copy_(self.base.bias)
        return out.to(self.base.weight.device, self.base.weight.dtype)


def _qkv_owners(model: nn.Module):
    for blk in model.image_encoder.trunk.blocks:
        yield blk.attn


def add_lora(model: nn.Module, rank: int = 4, alpha: float | None = None) -> int:
    """Wrap every trunk ``qkv`` in a :class:`LoRALinear`; returns how many were wrapped."""
    n = 0
    for attn in _qkv_owners(model):
        if isinstance(attn.qkv, nn.Linear):
            attn.qkv = LoRALinear(attn.qkv, rank, alpha)
            n += 1
    return n


def merge_lora(model: nn.Module) -> int:
    """Fold every :class:`LoRALinear` back into a plain linear layer (official key names again)."""
    n = 0
    for attn in _qkv_owners(model):
        if isinstance(attn.qkv, LoRALinear):
            attn.qkv = attn.qkv.merged()
            n += 1
    return n


def select_trainable(model: nn.Module, preset: Preset | str, *, prefixes: Sequence[str] = (),
                     extra_trainable: Sequence[str] = ()) -> list[str]:
    """Set ``requires_grad`` by preset and return the trainable parameter names.

    Parameters
    ----------
    preset : Preset or str
        ``decoder``, ``full``, ``lora`` (call :func:`add_lora` first) or ``custom``.
    prefixes : sequence of str
        The parameter-name prefixes that train with ``custom``.
    extra_trainable : sequence of str
        Prefixes that train in addition to the preset's.
    """
    preset = Preset(preset)
    if preset is Preset.CUSTOM and not prefixes:
        raise ValueError("the custom preset needs parameter-name prefixes to train")
    allowed = {Preset.DECODER: DECODER_PREFIXES, Preset.CUSTOM: tuple(prefixes)}.get(preset)
    names = []
    for name, p in model.named_parameters():
        if preset is Preset.FULL:
            on = True
        elif preset is Preset.LORA:
            on = ".lora_a" in name or ".lora_b" in name
        else:
            on = name.startswith(allowed)
        on = on or (bool(extra_trainable) and name.startswith(tuple(extra_trainable)))
        p.requires_grad_(on)
        if on:
            names.append(name)
    if not names:
        raise ValueError(f"preset {preset.value!r} selects no parameter")
    return names


def _lr_scale(name: str, n_blocks: int, trunk_lr_scale: float, layer_decay: float) -> float:
    if not name.startswith("image_encoder."):
        return 1.0
    if not name.startswith("image_encoder.trunk."):
        return trunk_lr_scale
    if name.startswith("image_encoder.trunk.blocks."):
        i = int(name.split(".")[3])
        return trunk_lr_scale * layer_decay ** (n_blocks - i)
    return trunk_lr_scale * layer_decay ** (n_blocks + 1)  # patch / position embeddings


def param_groups(model: nn.Module, lr: float, weight_decay: float, *, trunk_lr_scale: float = 0.1,
                 layer_decay: float = 0.9) -> list[dict]:
    """AdamW parameter groups: per-parameter learning-rate scale, no decay on 1-D parameters."""
    n_blocks = len(model.image_encoder.trunk.blocks)
    groups: dict[tuple[float, bool], dict] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        scale = 1.0 if ".lora_" in name else _lr_scale(name, n_blocks, trunk_lr_scale, layer_decay)
        decay = p.ndim > 1 and "pos_embed" not in name and "tpos_enc" not in name
        key = (round(scale, 8), decay)
        g = groups.setdefault(key, {"params": [], "names": [], "lr_scale": scale,
                                    "weight_decay": weight_decay if decay else 0.0, "lr": lr * scale})
        g["params"].append(p)
        g["names"].append(name)
    return list(groups.values())


def enable_activation_checkpointing(model: nn.Module) -> int:
    """Recompute each trunk block's activations in the backward pass (saves memory, costs time)."""
    from torch.utils.checkpoint import checkpoint

    n = 0
    for blk in model.image_encoder.trunk.blocks:
        fwd = blk.forward

        def wrapped(*args, _fwd=fwd, **kwargs):
            if torch.is_grad_enabled():
                return checkpoint(_fwd, *args, use_reentrant=False, **kwargs)
            return _fwd(*args, **kwargs)

        blk.forward = wrapped
        n += 1
    return n


def count(params: Iterable[torch.Tensor]) -> int:
    return sum(p.numel() for p in params)
