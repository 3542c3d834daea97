"""AutoSAM2's learned prompt encoder: a small CNN that replaces SAM2's clicks.

:class:`PromptNet` looks at the image (at its own input size) and produces what SAM2's prompt
encoder would give the mask decoder: a dense prompt embedding ``(B, C, H/16, W/16)`` and a
few sparse tokens ``(B, K, C)``. SAM2 itself stays frozen; :func:`auto_decode` runs SAM2's own
mask decoder (``model.sam_mask_decoder``) on those embeddings.

A prompt encoder is only meaningful for the SAM2 weights it was trained against, so the file
(:func:`save_prompt_net`) records that model's name and a SHA-256 of its parameters
(:func:`sam2_fingerprint`), and :func:`load_prompt_net` refuses any other SAM2.

Crop mode (``PromptNetConfig.crop_context > 0``, for SAM2s trained on crops around the object such
as ``sam2med-small-ct``): an auxiliary head (:meth:`PromptNet.aux_logits`) gives the network's own
coarse mask; :mod:`.predict` uses it on the whole slice to place a window, and SAM2 is prompted
inside that window.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..sam2.model import NO_OBJ_SCORE, FrameFeatures, SAM2Model
from .channels import check_channels, n_inputs

__all__ = ["PromptNetConfig", "PromptNet", "PromptEnsemble", "members", "sam2_fingerprint", "auto_decode", "save_prompt_net",
           "load_prompt_net", "PromptNetMismatch"]

FORMAT = "napari-sam2med/autosam2-prompt-encoder/1"


class PromptNetMismatch(ValueError):
    """The prompt encoder was trained against other SAM2 weights than the ones in use."""


@dataclass(frozen=True)
class PromptNetConfig:
    """Architecture of a :class:`PromptNet`.

    Parameters
    ----------
    embed_dim : int
        SAM2's prompt width (``model.config.d_model``).
    feat_size : int
        Side of SAM2's stride-16 map (``model.config.feat_size``).
    input_size : int
        Side the image is resized to for this network (its own input size).
    width : int
        Channels of the first level (doubling per level, 4 levels down to stride 16).
    sparse_tokens : int
        Sparse prompt tokens produced (0 for a dense prompt only).
    aux : bool
        Add the auxiliary coarse-mask head (needed by crop mode).
    crop_context : float
        0: SAM2 sees the whole slice. Otherwise SAM2 is prompted in a square window this many
        times the located object's longer side (see :mod:`.predict`).
    locate_size : int
        Crop mode: side the whole slice is resized to for locating the object.
    refine : int
        Crop mode: times the window is re-centred on SAM2's own mask and SAM2 run again.
    tta : int
        Flips / 90-degree rotations averaged at inference (1-8).
    relocate : float
        Crop mode: 0 (default) places SAM2's window from the whole-slice look; otherwise the
        auxiliary head looks again in a window this many times the first box's side (at
        ``input_size``) and the window is placed from that second look.
    input_channels : tuple of str
        Empty (default): the network sees SAM2's own input. Otherwise the names of the images
        stacked as a slice's channels (e.g. ``("OCTA(ILM_OPL)", "OCTA(FULL)", "OCTA(OPL_BM)")``); the
        network sees them all and SAM2 the first one (see :mod:`.channels`).
    stretch : bool
        Named channels: map each channel after the first to [0, 1] from its percentiles on the
        slice (``channels.prepare``) before anything else.
    """

    embed_dim: int
    feat_size: int
    input_size: int = 128
    width: int = 16
    sparse_tokens: int = 2
    aux: bool = False
    crop_context: float = 0.0
    locate_size: int = 256
    refine: int = 1
    tta: int = 1
    relocate: float = 0.0
    input_channels: tuple[str, ...] = ()
    stretch: bool = False

    def __post_init__(self):
        object.__setattr__(self, "input_channels", tuple(str(c) for c in self.input_channels))

    @classmethod
    def for_model(cls, model: SAM2Model, **kw) -> "PromptNetConfig":
        """A configuration matching ``model``'s decoder input (``kw`` overrides the rest)."""
        return cls(embed_dim=model.config.d_model, feat_size=model.config.feat_size, **kw)


def _block(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
    )


class PromptNet(nn.Module):
    """A compact U-Net-style encoder-decoder giving SAM2 prompt embeddings.

    Four stride-2 levels down to stride 16 of its input, a decoder back up to stride 4 with skip
    connections (fine detail for the dense prompt), then a resize to SAM2's embedding grid and a
    1x1 adapter to SAM2's channel width. Sparse tokens come from the pooled bottleneck.
    """

    def __init__(self, config: PromptNetConfig):
        super().__init__()
        self.config = config
        w = config.width
        chans = [w, 2 * w, 4 * w, 8 * w]
        self.down = nn.ModuleList([_block(n_inputs(config.input_channels), chans[0], 2)] + [_block(chans[i], chans[i + 1], 2) for i in range(3)])
        self.up = nn.ModuleList([_block(chans[i + 1] + chans[i], chans[i], 1) for i in (2, 1)])
        self.adapter = nn.Conv2d(chans[1], config.embed_dim, 1)  # 1x1: match SAM2's channels
        self.sparse = nn.Linear(chans[3], config.sparse_tokens * config.embed_dim) if config.sparse_tokens else None
        self.aux_head = nn.Conv2d(chans[1], 1, 1) if config.aux else None

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompt embeddings of the network's inputs ``(B, C, S, S)`` (:func:`.channels.net_tensor`;
        by default SAM2's normalised input).

        Returns
        -------
        (sparse, dense) : tuple of Tensor
            ``(B, K, C)`` and ``(B, C, feat_size, feat_size)``.
        """
        sparse, dense, _ = self.forward_all(images)
        return sparse, dense

    def _trunk(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Stride-4 decoder features and the stride-16 bottleneck of an input at any size."""
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
        for block, skip in zip(self.up, (skips[2], skips[1])):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], dim=1))
        return x, skips[-1]

    def forward_all(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """``(sparse, dense, aux)``: the prompts and the auxiliary coarse-mask logits
        ``(B, 1, S/4, S/4)`` at the network's input size (None without an aux head)."""
        x = _resize(images, self.config.input_size)
        x, bottleneck = self._trunk(x)
        aux = self.aux_head(x) if self.aux_head is not None else None
        f = self.config.feat_size
        if tuple(x.shape[-2:]) != (f, f):
            x = F.interpolate(x, size=(f, f), mode="bilinear", align_corners=False, antialias=True)
        dense = self.adapter(x)
        b, c = images.shape[0], self.config.embed_dim
        if self.sparse is None:
            return dense.new_zeros(b, 0, c), dense, aux
        return self.sparse(bottleneck.mean(dim=(2, 3))).view(b, self.config.sparse_tokens, c), dense, aux

    def aux_logits(self, images: torch.Tensor, size: int) -> torch.Tensor:
        """Auxiliary coarse-mask logits ``(B, 1, size/4, size/4)`` of images resized to ``size``
        (crop mode locates the object on the whole slice with this)."""
        if self.aux_head is None:
            raise ValueError("this prompt encoder has no auxiliary (locating) head")
        x, _ = self._trunk(_resize(images, size))
        return self.aux_head(x)


class PromptEnsemble(nn.Module):
    """Several prompt encoders of one architecture trained against the same SAM2 (e.g. other seeds).

    :mod:`.predict` runs SAM2's decoder once per member and averages the mask logits (and the
    auxiliary heads' probabilities when locating); ``config`` (crop / locate / TTA settings) is the
    first member's.
    """

    def __init__(self, nets: list[PromptNet]):
        super().__init__()
        if not nets or len({n.config for n in nets}) != 1:
            raise ValueError("an ensemble needs one or more prompt encoders of the same configuration")
        self.members = nn.ModuleList(nets)
        self.config = nets[0].config

    @property
    def aux_head(self):
        """The first member's auxiliary head (None without one)."""
        return self.members[0].aux_head

    def forward(self, images: torch.Tensor):
        raise TypeError("a PromptEnsemble is decoded member by member (see auto.predict)")


def members(net: "PromptNet | PromptEnsemble") -> list[PromptNet]:
    """The prompt encoders of ``net`` (itself, or an ensemble's members), each with ``net.config``'s
    inference settings."""
    if isinstance(net, PromptEnsemble):
        for m in net.members:
            m.config = net.config
        return list(net.members)
    return [net]


def _resize(images: torch.Tensor, s: int) -> torch.Tensor:
    if tuple(images.shape[-2:]) == (s, s):
        return images
    return F.interpolate(images, size=(s, s), mode="bilinear", align_corners=False, antialias=True)


def auto_decode(model: SAM2Model, feats: FrameFeatures, sparse: torch.Tensor, dense: torch.Tensor,
                gate: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Run SAM2's own mask decoder on an initial frame with learned prompt embeddings.

    The frame is treated as SAM2 treats a prompted frame without memory (``condition_on_memory``
    with ``None``); one mask token is used (``multimask_output=False``), the output SAM2 gives
    for an unambiguous prompt.

    Parameters
    ----------
    model : SAM2Model
        Frozen SAM2 (gradients still flow through its decoder to the prompt embeddings).
    feats : FrameFeatures
        Image features from ``model.encode_image``.
    sparse, dense : Tensor
        From :class:`PromptNet`.
    gate : bool
        Write ``NO_OBJ_SCORE`` where the object-score head says the object is absent (as SAM2
        does at inference); off during training.

    Returns
    -------
    (low_res_logits, object_score_logits) : tuple of Tensor
        ``(B, 1, S/4, S/4)`` and ``(B, 1)``.
    """
    pix = model.condition_on_memory(feats, None)
    masks, _ious, _tokens, score = model.sam_mask_decoder(
        image_embeddings=pix, image_pe=model.sam_prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse.to(pix.dtype), dense_prompt_embeddings=dense.to(pix.dtype),
        multimask_output=False, repeat_image=False, high_res_features=list(feats.high_res),
    )
    masks = masks.float()
    if gate:
        masks = torch.where((score > 0)[:, None, None], masks, NO_OBJ_SCORE)
    return masks, score.float()


def sam2_fingerprint(model: SAM2Model) -> str:
    """SHA-256 of a SAM2 model's parameters and buffers (names, dtypes, shapes and bytes).

    It identifies the weights actually in use, whatever file (or seed) they came from; SLM
    modules are left out, since AutoSAM2 decodes initial frames only.
    """
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        if name.startswith(("recent_memory_attention", "recent_memory_fuser")):
            continue
        t = t.detach().to("cpu", torch.float32).contiguous()
        h.update(f"{name}:{tuple(t.shape)};".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def save_prompt_net(path: str | Path, net: PromptNet | PromptEnsemble, sam2: SAM2Model, *, fp16: bool = True,
                    extra: dict | None = None, checkpoint_sha256: str | None = None) -> Path:
    """Save a prompt encoder on its own, with the SAM2 weights it was trained against.

    Parameters
    ----------
    path : path
        Output ``.pt`` file (written atomically).
    net : PromptNet or PromptEnsemble
        The trained network (an ensemble is stored as its members' weights, ``"members": K``).
    sam2 : SAM2Model
        The frozen SAM2 it was trained against (its name and :func:`sam2_fingerprint` are stored).
    fp16 : bool
        Store floating-point tensors in half precision (shipped weights are small).
    extra : dict, optional
        Plain data (numbers, strings) recorded with it, e.g. training steps and metrics.
    checkpoint_sha256 : str, optional
        SHA-256 of the SAM2 checkpoint file the weights came from (recorded for people; the
        check on loading uses the parameter fingerprint, which does not depend on the file).
    """
    from ..io.writers import atomic_write

    sd = {k: (v.half() if fp16 and v.is_floating_point() else v).detach().cpu() for k, v in net.state_dict().items()}
    blob = {"format": FORMAT, "prompt_encoder": sd,
            "sam2": {"name": sam2.config.name, "image_size": sam2.config.image_size,
                     "sha256": sam2_fingerprint(sam2), "checkpoint_sha256": checkpoint_sha256 or ""},
            "config": asdict(net.config), "extra": dict(extra or {})}
    if isinstance(net, PromptEnsemble):
        blob["members"] = len(net.members)
    return atomic_write(Path(path), lambda tmp: torch.save(blob, tmp))


def load_prompt_net(path: str | Path, sam2: SAM2Model | None = None, *, check: bool = True,
                    input_channels: tuple[str, ...] | None = None) -> tuple[PromptNet | PromptEnsemble, dict]:
    """Load a prompt encoder saved by :func:`save_prompt_net` (``weights_only=True``, strict).

    Parameters
    ----------
    path : path
        The file.
    sam2 : SAM2Model, optional
        The SAM2 in use; with ``check`` its name, image size and weights must match the file's.
    input_channels : tuple of str, optional
        The input channels the caller will feed (``()``: SAM2's own input); must match the file's.

    Returns
    -------
    (PromptNet or PromptEnsemble, dict)
        The network (eval mode, fp32, on ``sam2``'s device if given; a :class:`PromptEnsemble` when
        the file holds several members) and the file's ``sam2`` record.

    Raises
    ------
    PromptNetMismatch
        The file was trained against other SAM2 weights.
    ValueError
        The file is not an AutoSAM2 prompt encoder, its channel spec does not match its weights, or
        it takes other input channels than ``input_channels``.
    """
    path = Path(path)
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise FileNotFoundError(f"prompt-encoder file not found: {path}") from None
    except Exception as err:  # unpickling errors of a foreign file
        raise ValueError(f"{path.name} is not a readable prompt-encoder file ({type(err).__name__})") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise ValueError(f"{path.name} is not an AutoSAM2 prompt-encoder file")
    rec = blob["sam2"]
    if sam2 is not None and check:
        if rec["name"] != sam2.config.name or int(rec["image_size"]) != sam2.config.image_size:
            raise PromptNetMismatch(
                f"{path.name} was trained against SAM2 {rec['name']!r} at {rec['image_size']} px, "
                f"but {sam2.config.name!r} at {sam2.config.image_size} px is in use")
        if rec["sha256"] != sam2_fingerprint(sam2):
            raise PromptNetMismatch(
                f"{path.name} was trained against other {rec['name']!r} weights (sha256 {rec['sha256'][:12]}...); "
                "load the SAM2 checkpoint it was trained with")
    cfg = PromptNetConfig(**blob["config"])
    check_channels(cfg.input_channels, input_channels, path.name)
    first = next((v for k, v in blob["prompt_encoder"].items() if k.endswith("down.0.0.weight")), None)
    if first is None or first.shape[1] != n_inputs(cfg.input_channels):
        raise ValueError(f"{path.name}: its first layer does not take the {n_inputs(cfg.input_channels)} "
                         f"input channels its configuration names ({', '.join(cfg.input_channels) or 'SAM2 input'})")
    k = int(blob.get("members", 0))
    net = PromptEnsemble([PromptNet(cfg) for _ in range(k)]) if k > 0 else PromptNet(cfg)
    net.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in blob["prompt_encoder"].items()},
                        strict=True)
    if sam2 is not None:
        net = net.to(sam2.device)
    return net.eval(), rec
