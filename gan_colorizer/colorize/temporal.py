"""Temporal consistency for video: the previous output's ab, warped along the optical flow of L into the current
frame, is blended with the current prediction where the warp is reliable, and forgotten at scene cuts.

It works at render size, on Lab units, before the mood controls and the upsampling; it holds one frame of state.
"""
from __future__ import annotations

import cv2
import numpy as np

from gan_colorizer import flow as F

FEATHER = 5  # px: the blend weight ramps down over this width towards unreliable pixels (no hard seams)


class TemporalFilter:
    """out = w * warp(previous out) + (1 - w) * prediction, w = strength where the flow is reliable, 0 elsewhere.
    A recursive average along the motion: strength 0 is per-frame, 1 would never update reliable pixels."""

    def __init__(self, strength: float, preset: str = F.DEFAULT_PRESET):
        if not 0.0 <= strength <= 1.0:
            raise ValueError(f"temporal strength {strength} is outside [0, 1]")
        self.strength, self.preset = float(strength), preset
        self.reset()

    def reset(self) -> None:
        """Forget the previous frame (a new clip, a seek)."""
        self._prev_l: np.ndarray | None = None
        self._prev_ab: np.ndarray | None = None  # the previous OUTPUT, HxWx2

    def weight(self, prev_l: np.ndarray, cur_l: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
        """(blend weight HxW of the warped previous output, or None at a cut; the flow prev -> cur)."""
        fwd = F.flow(prev_l, cur_l, self.preset)
        if F.is_cut(prev_l, cur_l, fwd):
            return None, fwd
        mask = F.reliable(prev_l, cur_l, fwd, F.flow(cur_l, prev_l, self.preset)).astype(np.float32)
        feathered = cv2.blur(mask, (FEATHER, FEATHER), borderType=cv2.BORDER_REPLICATE)
        return self.strength * mask * feathered, fwd

    def __call__(self, small_l: np.ndarray, small_ab: np.ndarray) -> np.ndarray:
        """small_l: float HxW in L units (0-100); small_ab: float 2xHxW in ab units -> the filtered ab, 2xHxW."""
        if self.strength == 0.0:
            return small_ab
        cur_l = F.as_uint8_l(small_l)
        out = np.moveaxis(np.asarray(small_ab, np.float32), 0, -1)
        if self._prev_l is not None and self._prev_l.shape == cur_l.shape:
            w, fwd = self.weight(self._prev_l, cur_l)
            if w is not None:
                out = out + w[..., None] * (F.warp(self._prev_ab, fwd) - out)
        self._prev_l, self._prev_ab = cur_l, np.ascontiguousarray(out)
        return np.moveaxis(out, -1, 0).astype(np.asarray(small_ab).dtype, copy=False)

