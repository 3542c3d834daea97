"""A click or box on one slice (``Session.segment_slice``) uses the crop-around-the-prompt window of
models trained on crops (``config.crop_context``), as propagation does; whole slices otherwise."""

from __future__ import annotations

from dataclasses import replace

import crop_oracle  # tests/crop_oracle.py
import numpy as np
import pytest

from napari_sam2med.engine import Session
from napari_sam2med.engine.crop import window_from_box
from napari_sam2med.io import FrameStack

oracle = pytest.importorskip("oracle")

SIZE = 96
BOX = [20, 20, 47, 47]  # window 3 x 28 = 84 px leaves the slice at the top and left: padding is exercised
CLICKS = [[62, 57], [70, 66]]


@pytest.fixture(scope="module")
def model():
    m = oracle.perturbed_test_model(seed=3)
    m.config = replace(m.config, crop_context=3.0)  # a crop-trained model, as sam2med-small-ct
    return m


@pytest.fixture(scope="module")
def data():
    return oracle.blob_stack(6, SIZE).astype(np.int16) * 10 - 500


def _by_hand(model, data, win, prompt):
    """The crop by hand: a whole-slice Session on the cut stack, the prompt shifted, pasted back."""
    stack = FrameStack(data)
    lo = stack.window[0]
    sub = Session(model, FrameStack(crop_oracle.cut(data, win, np.floor(lo)), window=stack.window), crop_context=0)
    prompt(sub, np.array(win[:2], np.float32))
    return crop_oracle.paste(sub.segment_slice(2, [1]).masks[1], win, SIZE)


def test_box_on_one_slice_is_segmented_in_its_crop(model, data):
    s = Session(model, FrameStack(data))
    s.set_box(1, 2, BOX)
    got = s.segment_slice(2).masks[1]
    win = window_from_box(BOX, 3.0, 32, (SIZE, SIZE))
    want = _by_hand(model, data, win, lambda sub, off: sub.set_box(1, 2, np.array(BOX, np.float32) - np.r_[off, off]))
    assert want.any() and not want.all()
    np.testing.assert_array_equal(got, want)
    outside = np.ones((SIZE, SIZE), bool)
    outside[max(win[0], 0):win[0] + win[2], max(win[1], 0):win[1] + win[2]] = False
    assert not got[outside].any()
    # the same box on the whole slice (crop_context=0, what every official model does) differs
    whole = Session(model, FrameStack(data), crop_context=0)
    whole.set_box(1, 2, BOX)
    assert not np.array_equal(whole.segment_slice(2).masks[1], got)


def test_clicks_use_their_window_and_reuse_its_embedding(model, data):
    s = Session(model, FrameStack(data))
    calls = []
    enc = s.encoder
    s._encoder = lambda x: calls.append(tuple(x.shape)) or enc(x)  # every sub-session shares this encoder
    s.add_points(1, 2, CLICKS, [1, 1])
    first = s.segment_slice(2).masks[1]
    win = window_from_box([62, 57, 70, 66], 3.0, 32, (SIZE, SIZE))
    assert list(s._crop_sessions) == [win] and win[2] == 32  # the points' box x 3, at least 32 px
    want = _by_hand(model, data, win, lambda sub, off: sub.add_points(1, 2, np.array(CLICKS, np.float32) - off, [1, 1]))
    np.testing.assert_array_equal(first, want)
    assert calls == [(1, 3, 64, 64)]  # the encoder saw the 32 px window resized to the model size
    s.set_box(1, 2, [60, 55, 72, 68])  # a new window: encoded once more
    s.segment_slice(2)
    assert len(s._crop_sessions) == 2 and len(calls) == 2
    s.clear_prompts(1, 2)
    s.add_points(1, 2, CLICKS, [1, 1])  # back to the first window: its embedding is cached
    np.testing.assert_array_equal(s.segment_slice(2).masks[1], first)
    assert len(calls) == 2


def test_models_without_crop_context_keep_whole_slices(data):
    m = oracle.perturbed_test_model(seed=3)
    assert m.config.crop_context is None
    s = Session(m, FrameStack(data))
    s.set_box(1, 2, BOX)
    s.segment_slice(2)
    assert s._crop_sessions == {}
