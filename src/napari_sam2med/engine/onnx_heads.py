"""The rest of a tracked frame as one ONNX graph: prompt encoder, mask decoder and memory encoder.

On a frame that propagation tracks (no click, no mask prompt) :meth:`SAM2Model.track_step` runs,
after the memory attention, the SAM heads with an empty prompt and then encodes the prediction into
memory. That is a fixed computation of the memory-conditioned features and the frame's features, so
it is exported as it stands (the model's own ``forward_sam_heads`` and ``encode_memory``, traced),
with the object batch dynamic.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..sam2.model import FrameFeatures, SAM2Model, TrackOutput

__all__ = ["HeadsGraph", "OnnxTrackHeads", "heads_export_args", "heads_tensors", "HEADS_INPUTS", "HEADS_OUTPUTS"]

HEADS_INPUTS = ("pix", "high_res_s0", "high_res_s1", "vision")
HEADS_OUTPUTS = ("multimask", "ious", "low_res", "high_res", "obj_ptr", "score", "maskmem")


class HeadsGraph(nn.Module):
    """``forward_sam_heads`` (no prompt) then ``encode_memory`` of a tracked frame, as plain tensors."""

    def __init__(self, model: SAM2Model):
        super().__init__()
        self.model = model

    def forward(self, pix, s0, s1, vision):
        m = self.model
        multi, ious, low, high, ptr, score = m.forward_sam_heads(pix, (s0, s1), None, None, m.use_multimask(None))
        mem = m.encode_memory(FrameFeatures(vision, vision, (s0, s1)), high, score, from_points=False)
        return multi, ious, low, high, ptr, score, mem


def heads_tensors(model: SAM2Model):
    """Every tensor the heads graph embeds (for its cache key)."""
    for name in ("sam_prompt_encoder", "sam_mask_decoder", "memory_encoder", "obj_ptr_proj"):
        for k, v in getattr(model, name).state_dict().items():
            yield f"{name}.{k}", v
    yield "no_obj_ptr", model.no_obj_ptr
    if model.no_obj_embed_spatial is not None:
        yield "no_obj_embed_spatial", model.no_obj_embed_spatial


def heads_export_args(model: SAM2Model):
    """``(graph, example inputs, input names, dynamic shapes)`` for exporting the heads of ``model``."""
    from torch.export import Dim

    h = int(model.image_size) // 16
    c = model.config.d_model
    dec = model.sam_mask_decoder
    dev, b = model.device, 2  # not 1: the exporter specialises size-1 dimensions
    args = (torch.zeros(b, c, h, h, device=dev), torch.zeros(b, dec.conv_s0.out_channels, 4 * h, 4 * h, device=dev),
            torch.zeros(b, dec.conv_s1.out_channels, 2 * h, 2 * h, device=dev), torch.zeros(b, c, h, h, device=dev))
    batch = Dim("objects", min=1, max=1024)
    dynamic = {name: {0: batch} for name in ("pix", "s0", "s1", "vision")}
    return HeadsGraph(model).eval(), args, list(HEADS_INPUTS), dynamic


class OnnxTrackHeads:
    """The heads of a tracked frame on ONNX Runtime / OpenVINO: ``heads(pix, feats) -> TrackOutput``.

    Parameters
    ----------
    model : SAM2Model
        A CPU model; the heads are exported (or taken from the cache) on construction.
    folder : path, optional
        Export cache folder (default ``onnx_engine.onnx_cache_dir()``).
    threads : int, optional
        Intra-op threads (default ``torch.get_num_threads()``).
    runtime : {"onnx", "openvino"}
        The runtime.
    """

    def __init__(self, model: SAM2Model, *, folder: str | Path | None = None, threads: int | None = None,
                 runtime: str = "onnx"):
        from .onnx_engine import OnnxExportError, ensure_exported

        if model.device.type != "cpu":
            raise OnnxExportError(f"the ONNX engine runs on the CPU, the model is on {model.device}")
        self.name = runtime
        self.path, self.session = ensure_exported(model, folder=folder, threads=threads, part="heads",
                                                  runtime=runtime)

    def __call__(self, pix: torch.Tensor, feats: FrameFeatures) -> TrackOutput:
        """Predict from memory-conditioned features ``pix`` (B, C, H, W) and the frame's features."""
        arr = lambda t: np.ascontiguousarray(t.detach().float().numpy())  # noqa: E731
        out = self.session.run({"pix": arr(pix), "high_res_s0": arr(feats.high_res[0]),
                                "high_res_s1": arr(feats.high_res[1]), "vision": arr(feats.vision)})
        multi, ious, low, high, ptr, score, mem = (torch.from_numpy(o) for o in out)
        return TrackOutput(low_res_masks=low, high_res_masks=high, ious=ious, obj_ptr=ptr, object_score_logits=score,
                           multimask_logits=multi, maskmem_features=mem)
