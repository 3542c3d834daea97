"""Crop windows computed independently of ``engine.crop`` (the tests' reference for cut and paste)."""

from __future__ import annotations

import numpy as np


def cut(data, win, fill):
    """Independent of ``engine.crop.cut``: pad by the window side, then slice."""
    r0, c0, side = win
    big = np.pad(data, ((0, 0), (side, side), (side, side)), constant_values=fill)
    return big[:, r0 + side:r0 + 2 * side, c0 + side:c0 + 2 * side]


def paste(m, win, size):
    """Independent of ``engine.crop.paste``: ``m`` back into a ``size`` × ``size`` slice."""
    r0, c0, side = win
    big = np.zeros((size + 2 * side, size + 2 * side), bool)
    big[r0 + side:r0 + 2 * side, c0 + side:c0 + 2 * side] = m
    return big[side:side + size, side:side + size]
