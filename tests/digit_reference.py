"""The page's drawing -> model input steps (web/page/preprocess.js) again in numpy: the oracle the
page's function is held to. The same float64 arithmetic in the same order, sums included (a sum
in another order could move the centre of mass across a rounding tie and shift the digit a whole
pixel); Math.round is floor(x + 0.5), not Python's round-half-even."""

from __future__ import annotations

import math

import numpy as np


def js_round(x: float) -> int:
    return math.floor(x + 0.5)


def ink_segment(ink: np.ndarray, radius: float, a: tuple[float, float], b: tuple[float, float]) -> None:
    """preprocess.js inkSegment: the round brush's coverage of each pixel centre, kept by max."""
    height, width = ink.shape
    (ax, ay), (bx, by) = a, b
    dx, dy = bx - ax, by - ay
    len2 = dx * dx + dy * dy
    x0, x1 = max(0, math.floor(min(ax, bx) - radius - 1)), min(width - 1, math.ceil(max(ax, bx) + radius + 1))
    y0, y1 = max(0, math.floor(min(ay, by) - radius - 1)), min(height - 1, math.ceil(max(ay, by) + radius + 1))
    if x0 > x1 or y0 > y1:
        return
    cy, cx = np.mgrid[y0 : y1 + 1, x0 : x1 + 1].astype(np.float64) + 0.5
    t = ((cx - ax) * dx + (cy - ay) * dy) / len2 if len2 > 0 else np.zeros_like(cx)
    t = np.minimum(1.0, np.maximum(0.0, t))
    ex, ey = cx - (ax + t * dx), cy - (ay + t * dy)
    cover = np.minimum(1.0, np.maximum(0.0, radius + 0.5 - np.sqrt(ex * ex + ey * ey)))
    np.maximum(ink[y0 : y1 + 1, x0 : x1 + 1], cover, out=ink[y0 : y1 + 1, x0 : x1 + 1])


def render_strokes(strokes: list[list[tuple[float, float]]], width: int, height: int, radius: float) -> np.ndarray:
    ink = np.zeros((height, width))
    for stroke in strokes:
        for k in range(len(stroke)):
            ink_segment(ink, radius, stroke[max(0, k - 1)], stroke[k])
    return ink


def area_weights(n: int, m: int) -> np.ndarray:
    """m x n: output pixel i averages source pixels over [i n/m, (i+1) n/m)."""
    span, weights = n / m, np.zeros((m, n))
    for i in range(m):
        lo, hi = i * span, (i + 1) * span
        for k in range(math.floor(lo), min(n, math.ceil(hi))):
            weights[i, k] = (min(hi, k + 1) - max(lo, k)) / span
    return weights


def digit_input(ink: np.ndarray, height: int, width: int, box: int) -> np.ndarray | None:
    """float32 height x width: bounding box -> box x box keeping aspect -> centre of mass to the centre."""
    ys, xs = np.nonzero(ink > 0)
    if len(xs) == 0:
        return None
    crop = ink[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    h, w = crop.shape
    scale = box / max(w, h)
    ow, oh = max(1, js_round(w * scale)), max(1, js_round(h * scale))
    wx, wy = area_weights(w, ow), area_weights(h, oh)
    rows = np.zeros((h, ow))  # along x, summed over k in order (vectorised over the other axes)
    for k in range(w):
        rows += wx[:, k][None, :] * crop[:, k][:, None]
    small = np.zeros((oh, ow))  # then along y
    for k in range(h):
        small += wy[:, k][:, None] * rows[k][None, :]
    mass = mx = my = 0.0
    for j in range(oh):  # row-major, as the page sums
        for i in range(ow):
            value = float(small[j, i])
            mass += value
            mx += value * (i + 0.5)
            my += value * (j + 0.5)
    left, top = js_round(width / 2 - mx / mass), js_round(height / 2 - my / mass)
    out = np.zeros((height, width), dtype=np.float32)
    for j in range(oh):
        for i in range(ow):
            if 0 <= top + j < height and 0 <= left + i < width:
                out[top + j, left + i] = min(1.0, small[j, i])
    return out
