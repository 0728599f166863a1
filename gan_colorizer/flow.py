"""Optical flow between consecutive gray frames (OpenCV's DIS: classical, no learned weights), warping, where a warp
can be trusted, scene cuts, and the warp error of Lai et al. (ECCV 2018) on ab. numpy + cv2 only.

Convention: a flow field belongs to the frame it is computed on. `flow(prev_l, cur_l)[y, x] = (dx, dy)` says that
cur's pixel (x, y) was at (x + dx, y + dy) in prev, so `warp(prev_thing, flow(prev_l, cur_l))` lands on cur's grid.
"""
from __future__ import annotations

import functools
import threading

import cv2
import numpy as np

PRESETS = {"ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST, "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
           "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM}
DEFAULT_PRESET = "medium"  # consistent flow on flat areas (sky) where fast is not, ~9 ms at 256x352: docs/colorizing.md
CONSISTENCY = (0.01, 0.5)  # |fwd + bwd(warped)|^2 <= a (|fwd|^2 + |bwd|^2) + b px^2 (Sundaram 2010, Ruder 2016)
MAX_L_CHANGE = 8.0  # L units (0-100): a pixel whose lightness changed more than this along the flow is not trusted
CUT_RESIDUAL = 6.0  # L units: median lightness residual after the best warp above which frames are a different scene
_local = threading.local()  # a DIS object holds per-call buffers: one per thread and preset


def as_uint8_l(gray_l: np.ndarray) -> np.ndarray:
    """uint8 L (0-255) as DIS wants it: uint8 passes through, floats are read as L units 0-100."""
    if gray_l.dtype == np.uint8:
        return gray_l
    return np.clip(np.asarray(gray_l, np.float32) * 2.55 + 0.5, 0, 255).astype(np.uint8)


MIN_SIDE = 12  # px: smaller frames have no flow (DIS raises)
SMALL_SIDE = 64  # px: below it the pyramid is chosen from the short side (DIS's own choice crashes the process on
#                  thin frames such as 12x64 or 20x320: a segfault in OpenCV 5.0, found by a sweep of sizes)


def _dis(preset: str, shape: tuple[int, int]):
    side = min(shape)
    if side < MIN_SIDE:
        raise ValueError(f"frames of {shape[1]}x{shape[0]} are too small for optical flow (at least {MIN_SIDE} px a "
                         f"side)")
    coarsest = None
    if side < SMALL_SIDE:  # the coarsest level keeps two patches (8 px) across the short side
        coarsest = max(0, int(np.log2(side / 16)))
    cache = _local.__dict__.setdefault("dis", {})
    if (preset, coarsest) not in cache:
        dis = cache[preset, coarsest] = cv2.DISOpticalFlow_create(PRESETS[preset])
        if coarsest is not None:
            dis.setFinestScale(min(dis.getFinestScale(), coarsest))
            dis.setCoarsestScale(coarsest)
    return cache[preset, coarsest]


def flow(prev_l: np.ndarray, cur_l: np.ndarray, preset: str = DEFAULT_PRESET) -> np.ndarray:
    """DIS flow on cur's grid, float32 HxWx2 (dx, dy) in pixels: for each pixel of cur, the offset to where it was in
    prev. L as uint8 0-255 or float L units 0-100. Frames under MIN_SIDE pixels a side raise ValueError."""
    return _dis(preset, cur_l.shape[:2]).calc(as_uint8_l(cur_l), as_uint8_l(prev_l), None)


@functools.lru_cache(maxsize=4)  # a video has one frame size; the filter and the scoring warp several times a frame
def pixel_grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """(xs, ys): every pixel's x and y, float32 HxW, read-only (one pair shared by every caller of this size)."""
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    xs.flags.writeable = ys.flags.writeable = False
    return xs, ys


def _coords(field: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = pixel_grid(*field.shape[:2])
    return xs + field[..., 0], ys + field[..., 1]


def warp(x: np.ndarray, field: np.ndarray) -> np.ndarray:
    """x (HxW or HxWxC, prev's grid) sampled bilinearly at cur's pixels moved by `field` (cur's grid); samples that
    fall outside prev take the nearest edge value (`reliable` marks them)."""
    map_x, map_y = _coords(field)
    x = np.asarray(x)
    if x.ndim == 3 and x.shape[2] > 4:  # cv2.remap takes at most 4 channels
        return np.stack([warp(x[..., c], field) for c in range(x.shape[2])], axis=-1)
    return cv2.remap(x, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _l_units(gray_l: np.ndarray) -> np.ndarray:
    return gray_l.astype(np.float32) / 2.55 if gray_l.dtype == np.uint8 else np.asarray(gray_l, np.float32)


def reliable(prev_l: np.ndarray, cur_l: np.ndarray, fwd: np.ndarray, bwd: np.ndarray,
             consistency: tuple[float, float] = CONSISTENCY, max_l_change: float = MAX_L_CHANGE) -> np.ndarray:
    """Bool HxW on cur's grid: where prev warped by `fwd` = flow(prev_l, cur_l) can stand for cur. False where the
    pixel comes from outside prev (it entered the frame), where `bwd` = flow(cur_l, prev_l) does not lead back
    (occlusion, bad match: forward-backward check) and where its lightness changed by more than max_l_change."""
    h, w = fwd.shape[:2]
    map_x, map_y = _coords(fwd)
    inside = (map_x >= -0.5) & (map_x <= w - 0.5) & (map_y >= -0.5) & (map_y <= h - 0.5)  # half a pixel: the edge's own
    back = warp(bwd, fwd)
    a, b = consistency
    loop = np.sum((fwd + back) ** 2, axis=-1)
    consistent = loop <= a * (np.sum(fwd ** 2, axis=-1) + np.sum(back ** 2, axis=-1)) + b
    same_light = np.abs(_l_units(cur_l) - warp(_l_units(prev_l), fwd)) <= max_l_change
    return inside & consistent & same_light


def is_cut(prev_l: np.ndarray, cur_l: np.ndarray, fwd: np.ndarray | None = None,
           threshold: float = CUT_RESIDUAL) -> bool:
    """True when cur is another shot than prev: even along the best flow, the median lightness difference (blurred,
    in L units) exceeds `threshold`. A pan, a zoom or sensor noise leaves most pixels explained; a cut does not."""
    fwd = flow(prev_l, cur_l) if fwd is None else fwd
    prev, cur = (cv2.GaussianBlur(_l_units(x), (0, 0), 1.5) for x in (prev_l, cur_l))
    return float(np.median(np.abs(cur - warp(prev, fwd)))) > threshold


def _channels_last(ab: np.ndarray) -> np.ndarray:
    ab = np.asarray(ab, np.float32)
    return ab if ab.shape[-1] == 2 else np.moveaxis(ab, 0, -1)


def warp_error(prev_ab: np.ndarray, cur_ab: np.ndarray, field: np.ndarray, mask: np.ndarray) -> float:
    """Lai et al. (ECCV 2018) on ab: sum(M * ||cur_ab - warp(prev_ab, field)||^2) / sum(M), the squared Euclidean
    distance over (a, b) in Lab units (ab^2), averaged over the pixels where mask M is true; `field` =
    flow(prev_l, cur_l) from the true frames, M from `reliable`. ab as HxWx2 or 2xHxW; 0.0 for an empty mask."""
    mask = np.asarray(mask, bool)
    if not mask.any():
        return 0.0
    diff = _channels_last(cur_ab) - warp(_channels_last(prev_ab), field)
    return float(np.sum(diff ** 2, axis=-1)[mask].mean())
