"""Full-resolution colorization in numpy and Pillow, with no torch: what the ONNX engines run around the network.

The same steps as inference.py (the torch engine's maths): full-size L, an antialiased bilinear copy at the
network's shape, mood controls on ab, bicubic upsampling (torch's A = -0.75 kernel) and recombination with the
full-size L in row chunks, several at once on THREADS threads. The shapes and chunks are defined here once
and used by both.
"""
from __future__ import annotations

import collections
import contextlib
import math
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image

from gan_colorizer.color_numpy import AB_SCALE, model_to_rgb8, rgb8_to_gray_l

CHUNK_PIXELS = 1 << 18  # pixels per chunk of full-size colour maths: 3 MB per float32 3-channel temporary
MAX_ASPECT = 8  # the network input's long side is at most this many render sizes, whatever the photo's shape
CUBIC_A = -0.75  # torch's (and OpenCV's) bicubic kernel; Pillow's BICUBIC uses -0.5, hence our own weights
# threads for the row chunks (numpy's loops release the GIL; torch's engine uses its intra-op threads the same way)
THREADS = min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def render_shape(height: int, width: int, render_size: int, multiple: int = 32) -> tuple[int, int]:
    """The network's input shape: short side about render_size, aspect kept, both sides multiples of `multiple`.

    A photo longer than MAX_ASPECT:1 (a panorama, a 1 x 100000 strip) is seen with its long side at MAX_ASPECT
    render sizes and its short side below render_size (at least `multiple`), so the input stays bounded.
    """
    scale = min(render_size / min(height, width), MAX_ASPECT * render_size / max(height, width))
    snap = lambda v: max(multiple, int(round(v * scale / multiple)) * multiple)  # noqa: E731
    return snap(height), snap(width)


def row_chunks(height: int, width: int, chunk_pixels: int | None = None):
    """(first, end) row ranges of about chunk_pixels (default CHUNK_PIXELS) pixels each."""
    rows = max(1, (chunk_pixels or CHUNK_PIXELS) // max(1, width))
    for first in range(0, height, rows):
        yield first, min(height, first + rows)


def in_threads(fn, items):
    """fn(item) for each item, in order, on THREADS threads with a few chunks in flight (memory stays bounded)."""
    if THREADS < 2:
        yield from map(fn, items)
        return
    with ThreadPoolExecutor(THREADS) as pool:
        pending = collections.deque()
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) > THREADS:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def full_res_l(pixels: np.ndarray) -> np.ndarray:
    """(H, W, C) uint8 sRGB, C = 3 or 1 (gray) -> gray_l (H, W) float32 in model units, in row chunks."""
    h, w = pixels.shape[:2]
    gray_l = np.empty((h, w), dtype=np.float32)

    def rows(chunk):
        gray_l[chunk[0]:chunk[1]] = rgb8_to_gray_l(pixels[chunk[0]:chunk[1]])
    collections.deque(in_threads(rows, row_chunks(h, w)), maxlen=0)
    return gray_l


def downsample_l(gray_l: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """gray_l (H, W) at the network's input shape (1, h, w), antialiased bilinear: Pillow's filter, which torch's
    antialias=True reproduces."""
    small = Image.fromarray(np.ascontiguousarray(gray_l, dtype=np.float32), "F").resize(shape[::-1], Image.BILINEAR)
    return np.asarray(small, dtype=np.float32)[None]


def apply_controls(ab: np.ndarray, temperature: float = 0.0, saturation: float = 1.0, hue: float = 0.0) -> np.ndarray:
    """Mood controls on ab (N, 2, h, w) in model units, as inference.apply_controls: rotate, scale, shift b."""
    if hue:
        angle = math.radians(hue)
        a, b = ab[:, 0:1], ab[:, 1:2]
        ab = np.concatenate([a * math.cos(angle) - b * math.sin(angle), a * math.sin(angle) + b * math.cos(angle)], 1)
    if saturation != 1.0:
        ab = ab * np.float32(saturation)
    if temperature:
        ab = np.concatenate([ab[:, 0:1], ab[:, 1:2] + np.float32(temperature / AB_SCALE)], 1)
    return ab.astype(np.float32, copy=False)


def cubic_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """(source indices, weights), each (n_out, 4): F.interpolate's 1-D bicubic (align_corners=False, borders
    clamped) as 4 taps per output sample."""
    src = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5
    first = np.floor(src)
    t = (src - first)[:, None] + np.array([1.0, 0.0, -1.0, -2.0])  # distance to each of the 4 taps
    d = np.abs(t)
    near = ((CUBIC_A + 2) * d - (CUBIC_A + 3)) * d * d + 1
    far = ((CUBIC_A * d - 5 * CUBIC_A) * d + 8 * CUBIC_A) * d - 4 * CUBIC_A
    weights = np.where(d <= 1, near, far).astype(np.float32)
    return np.clip(first.astype(np.int64)[:, None] + np.arange(-1, 3), 0, n_in - 1), weights


def _taps_sum(x: np.ndarray, taps: tuple[np.ndarray, np.ndarray], axis: int) -> np.ndarray:
    """x resampled along axis (-1 or -2) by 4-tap weights: one gather and multiply-add per tap."""
    index, weights = taps
    shape = (-1,) if axis == -1 else (-1, 1)
    out = np.take(x, index[:, 0], axis=axis) * weights[:, 0].reshape(shape)
    for k in range(1, 4):
        out += np.take(x, index[:, k], axis=axis) * weights[:, k].reshape(shape)
    return out


def upsampled_ab_rows(small_ab: np.ndarray, height: int, width: int, then=None):
    """Yield (first, end, ab rows (N, 2, rows, width)): small_ab bicubic-upsampled to height x width in row chunks
    computed in threads (with `then`: then(first, end, ab rows), also computed there).

    The width pass runs once on the small rows; each chunk of output rows then mixes 4 of them per row.
    """
    same = tuple(small_ab.shape[-2:]) == (height, width)
    if not same:
        wide = _taps_sum(small_ab, cubic_taps(small_ab.shape[-1], width), -1)
        index, weights = cubic_taps(small_ab.shape[-2], height)

    def rows(chunk):
        first, end = chunk
        ab = small_ab[:, :, first:end] if same else _taps_sum(wide, (index[first:end], weights[first:end]), -2)
        return (first, end, ab) if then is None else then(first, end, ab)
    return in_threads(rows, row_chunks(height, width * small_ab.shape[0]))


def recombined_rows(gray_l: np.ndarray, small_ab: np.ndarray):
    """Yield (first row, uint8 sRGB rows (rows, W, 3)): gray_l (H, W) with small_ab (1, 2, h, w) upsampled."""
    return upsampled_ab_rows(small_ab, *gray_l.shape, lambda first, end, ab: (first, model_to_rgb8(gray_l[first:end],
                                                                                                   ab[0])))


class NumpyPipeline:
    """The ONNX engines' maths around `network` (numpy gray_l (N, 1, h, w) -> ab (N, 2, h, w)), as the Colorizer
    calls it; inference.TorchPipeline is its torch twin."""

    def __init__(self, network):
        self.network = network

    def context(self):
        return contextlib.nullcontext()

    def full_res_l(self, pixels: np.ndarray) -> np.ndarray:
        return full_res_l(pixels)

    def small_l(self, gray_l: list, shape: tuple[int, int]) -> np.ndarray:
        return np.stack([downsample_l(one, shape) for one in gray_l])

    def predict(self, small_l: np.ndarray, hints: np.ndarray | None = None, **controls) -> np.ndarray:
        """ab at render size, then the mood controls; hints: a hint model's channels (hints.model_input), numpy."""
        return apply_controls(self.network(small_l, hints), **controls)

    def rgb8_rows(self, gray_l: np.ndarray, small_ab: np.ndarray):
        return recombined_rows(gray_l, small_ab)
