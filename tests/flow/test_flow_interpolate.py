"""Weight-space interpolation between two SAM2Flow checkpoints (train.flow_interpolate)."""

from __future__ import annotations

import pytest
import torch

from napari_sam2med.flow.estimators.sam2flow import load_flow_model, save_flow_weights
from napari_sam2med.flow.net.model import SAM2Flow, SAM2FlowConfig
from napari_sam2med.train import flow_interpolate as fi

SMALL = dict(match_dim=16, context_dim=16, hidden_dim=16, memory_dim=16, roi_dim=16, hiera_embed_dim=8, iters=1)


def _saved(tmp_path, name, seed, **cfg):
    torch.manual_seed(seed)
    return save_flow_weights(SAM2Flow(SAM2FlowConfig(**{**SMALL, **cfg})), tmp_path / name)


def test_interpolation_is_the_straight_line_between_the_checkpoints(tmp_path):
    a, b = _saved(tmp_path, "a.pt", 0), _saved(tmp_path, "b.pt", 1)
    wa, wb = load_flow_model(a).state_dict(), load_flow_model(b).state_dict()
    fi.main([str(a), str(b), "0.25", str(tmp_path / "m.pt")])
    mixed = load_flow_model(tmp_path / "m.pt").state_dict()  # strict load of the written file
    key = "update.flow_head.conv2.weight" if "update.flow_head.conv2.weight" in wa else next(
        k for k, v in wa.items() if v.is_floating_point() and v.numel() > 10)
    assert not torch.equal(wa[key], wb[key])
    torch.testing.assert_close(mixed[key], (0.75 * wa[key] + 0.25 * wb[key]).half().float(), atol=2e-3, rtol=0)
    ends = [fi.interpolate_flow_weights(a, b, t).state_dict()[key] for t in (0.0, 1.0)]
    assert torch.equal(ends[0], wa[key]) and torch.equal(ends[1], wb[key])


def test_interpolation_refuses_bad_alpha_and_other_architectures(tmp_path):
    a, c = _saved(tmp_path, "a.pt", 0), _saved(tmp_path, "c.pt", 0, feedback="legacy")
    with pytest.raises(ValueError, match="alpha"):
        fi.interpolate_flow_weights(a, a, 1.5)
    with pytest.raises(ValueError, match="config"):
        fi.interpolate_flow_weights(a, c, 0.5)
