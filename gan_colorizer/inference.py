"""Full-resolution colorization: predict ab at render size, upsample it, recombine with the original L.

The network only ever sees render-size input, so memory does not grow with the photo's resolution
beyond the full-size L / ab / RGB planes themselves.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .color import AB_SCALE, lab_to_model, lab_to_rgb, model_to_lab, rgb_to_lab


def render_shape(height: int, width: int, render_size: int, multiple: int = 32) -> tuple[int, int]:
    """The network's input shape: short side about render_size, aspect kept, both sides multiples of 32."""
    scale = render_size / min(height, width)
    snap = lambda v: max(multiple, int(round(v * scale / multiple)) * multiple)  # noqa: E731
    return snap(height), snap(width)


@torch.no_grad()
def predict_ab(generator: torch.nn.Module, gray_l: torch.Tensor, shape: tuple[int, int], runtime=None) -> torch.Tensor:
    """ab (model units, float32) for gray_l (B, 1, H, W) in model units, predicted at `shape` then resized back."""
    small = gray_l
    if tuple(gray_l.shape[-2:]) != tuple(shape):
        small = F.interpolate(gray_l, size=shape, mode="bilinear", align_corners=False, antialias=True)
    if runtime is not None:
        small = runtime.layout(small)
        with runtime.autocast():
            ab = generator(small)
    else:
        ab = generator(small)
    ab = ab.as_subclass(torch.Tensor).float()  # fastai's DynamicUnet returns its TensorBase: slow dispatch per op
    if tuple(ab.shape[-2:]) != tuple(gray_l.shape[-2:]):
        ab = F.interpolate(ab, size=gray_l.shape[-2:], mode="bicubic", align_corners=False)
    return ab


def apply_controls(ab: torch.Tensor, temperature: float = 0.0, saturation: float = 1.0, hue: float = 0.0) -> torch.Tensor:
    """Mood controls on ab in model units: scale (saturation), rotate by `hue` degrees, shift b by `temperature` ab units."""
    if hue:
        angle = math.radians(hue)
        a, b = ab[:, 0:1], ab[:, 1:2]
        ab = torch.cat([a * math.cos(angle) - b * math.sin(angle), a * math.sin(angle) + b * math.cos(angle)], 1)
    if saturation != 1.0:
        ab = ab * saturation
    if temperature:
        ab = torch.cat([ab[:, 0:1], ab[:, 1:2] + temperature / AB_SCALE], 1)
    return ab


def size_multiple(model_cfg) -> int:
    """The side multiple a generator needs: 256 for the pix2pix U-Net (8 downsamplings), else 32."""
    return 256 if model_cfg.generator == "unet" else 32


@torch.no_grad()
def colorize_l(generator: torch.nn.Module, gray_l: torch.Tensor, render_size: int = 256, runtime=None,
               multiple: int = 32, **controls) -> torch.Tensor:
    """gray_l (B, 1, H, W) in model units at full size -> colorized sRGB in [0, 1] with exactly that L."""
    ab = predict_ab(generator, gray_l, render_shape(*gray_l.shape[-2:], render_size, multiple), runtime)
    return lab_to_rgb(model_to_lab(gray_l, apply_controls(ab, **controls)))


@torch.no_grad()
def colorize_rgb(generator: torch.nn.Module, rgb: torch.Tensor, render_size: int = 256, runtime=None,
                 multiple: int = 32, **controls) -> torch.Tensor:
    """(B, 3, H, W) sRGB in [0, 1] (or uint8) at full size -> colorized sRGB in [0, 1], same size.

    L comes from the input at full resolution; the network predicts ab from a render-size copy.
    """
    if rgb.dtype == torch.uint8:
        rgb = rgb.float() / 255.0
    gray_l, _ = lab_to_model(rgb_to_lab(rgb))
    return colorize_l(generator, gray_l, render_size, runtime, multiple, **controls)
