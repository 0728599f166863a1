"""The model's L / ab scales and the sRGB <-> CIE Lab maths in numpy (float32), with no torch.

This module owns the Lab scales and constants; color.py (the batched torch side, any device) takes them from here.
The ONNX engines colorize with these functions alone, so a colorizing install needs neither torch nor fastai;
tests/test_torch_free.py holds them to color.py's results.
"""
from __future__ import annotations

import numpy as np

L_SCALE = 50.0  # model L = L / 50 - 1, in [-1, 1]
AB_SCALE = 110.0  # model ab = ab / 110, about [-1, 1]
XYZ_FROM_RGB = np.array([[0.412453, 0.357580, 0.180423],
                         [0.212671, 0.715160, 0.072169],
                         [0.019334, 0.119193, 0.950227]], dtype=np.float64)  # scikit-image's (D65, 2 degrees)
RGB_FROM_XYZ = np.linalg.inv(XYZ_FROM_RGB)
D65 = (0.95047, 1.0, 1.08883)


def _srgb_to_linear(v: np.ndarray) -> np.ndarray:
    return np.where(v > 0.04045, ((v + 0.055) / 1.055) ** 2.4, v / 12.92)


_LEVELS = np.arange(256, dtype=np.float64) / 255.0
# sRGB level -> linear light times each row-2 (Y) coefficient, float32 as color.rgb8_to_gray_l computes it
_Y_PARTS = (_srgb_to_linear(_LEVELS).astype(np.float32)[:, None] * XYZ_FROM_RGB[1].astype(np.float32)).T


def _l_from_y(y: np.ndarray) -> np.ndarray:
    """Relative luminance Y -> gray_l in model units (L / 50 - 1)."""
    f = np.where(y > 0.008856, np.cbrt(np.maximum(y, np.float32(0.008856))), 7.787 * y + 16.0 / 116.0)
    return ((116.0 / L_SCALE) * f - (16.0 / L_SCALE + 1.0)).astype(np.float32)


_GRAY_L = _l_from_y(_srgb_to_linear(_LEVELS).astype(np.float32))  # a gray level's L: one lookup per pixel


def rgb8_to_gray_l(pixels: np.ndarray) -> np.ndarray:
    """uint8 sRGB (..., 3) or gray levels (..., 1) -> gray_l (...) float32 in the model's units (L of Lab)."""
    if pixels.shape[-1] == 1:
        return _GRAY_L[pixels[..., 0]]
    y = _Y_PARTS[0][pixels[..., 0]] + _Y_PARTS[1][pixels[..., 1]] + _Y_PARTS[2][pixels[..., 2]]
    return _l_from_y(y)


def _f_inverse(f: np.ndarray) -> np.ndarray:
    return np.where(f > 0.2068966, f * f * f, (f - 16.0 / 116.0) / 7.787)


def _lab_planes_to_linear(l: np.ndarray, a: np.ndarray, b: np.ndarray) -> list[np.ndarray]:
    """L, a, b planes -> linear-light R, G, B planes (one plane at a time: contiguous, no (..., 3) temporaries)."""
    fy = (l + 16.0) / 116.0
    xyz = (_f_inverse(a / 500.0 + fy) * np.float32(D65[0]), _f_inverse(fy),
           _f_inverse(np.maximum(fy - b / 200.0, 0.0)) * np.float32(D65[2]))
    m = RGB_FROM_XYZ.astype(np.float32)
    return [m[c, 0] * xyz[0] + m[c, 1] * xyz[1] + m[c, 2] * xyz[2] for c in range(3)]


def _encode(linear: np.ndarray) -> np.ndarray:
    """Linear light -> sRGB in [0, 1], clipped."""
    rgb = np.where(linear > 0.0031308, 1.055 * np.maximum(linear, 0.0031308) ** (1.0 / 2.4) - 0.055, 12.92 * linear)
    return np.clip(rgb, 0.0, 1.0, out=rgb)


def model_to_rgb8(gray_l: np.ndarray, ab: np.ndarray) -> np.ndarray:
    """gray_l (...) and ab (2, ...) planes in the model's units -> uint8 sRGB (..., 3), out-of-gamut colours clipped
    and rounded half to even (color.lab_to_rgb then color.to_uint8, plane by plane)."""
    linear = _lab_planes_to_linear((gray_l + 1.0) * L_SCALE, ab[0] * AB_SCALE, ab[1] * AB_SCALE)
    out = np.empty(gray_l.shape + (3,), dtype=np.uint8)
    for c in range(3):
        out[..., c] = np.round(_encode(linear[c]) * 255.0)  # _encode clips to [0, 1] already
    return out
