"""Full-resolution colorization: predict ab at render size, upsample it, recombine with the original L.

The network only ever sees render-size input. The full-size colour maths runs in row chunks, so memory
grows with the photo only by its L, ab and output planes, never by the Lab round trip's temporaries.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from gan_colorizer.color import (AB_SCALE, lab_to_model, lab_to_rgb, model_to_lab, rgb8_to_gray_l, rgb_to_lab,
                                  rotate_ab, to_uint8)
from gan_colorizer.colorize.inference_numpy import CHUNK_PIXELS, MAX_ASPECT, render_shape, row_chunks  # noqa: F401


def size_multiple(generator: torch.nn.Module) -> int:
    """Input sides the generator accepts, as it declares them (size_multiple): 32 for the ResNet U-Net, 256 for the
    pix2pix U-Net."""
    from gan_colorizer.models.classifier import core
    return getattr(core(generator), "size_multiple", 32)  # the network says; 32 for one that does not


def full_res_l(pixels: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) sRGB, uint8 or float in [0, 1], C = 3 or 1 (gray) -> gray_l (B, 1, H, W), model units."""
    b, c, h, w = pixels.shape
    gray_l = torch.empty(b, 1, h, w, device=pixels.device)
    for first, end in row_chunks(h, w * b):
        chunk = pixels[:, :, first:end]
        if chunk.dtype == torch.uint8:
            gray_l[:, :, first:end] = rgb8_to_gray_l(chunk)
        else:
            gray_l[:, :, first:end] = lab_to_model(rgb_to_lab(chunk.float().expand(-1, 3, -1, -1)))[0]
    return gray_l


def downsample_l(gray_l: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """gray_l at the network's input shape (antialiased, so large photos do not alias)."""
    return F.interpolate(gray_l, size=shape, mode="bilinear", align_corners=False, antialias=True)


@torch.no_grad()
def forward_ab(generator: torch.nn.Module, small_l: torch.Tensor, runtime=None, hints=None) -> torch.Tensor:
    """The generator's ab (float32, model units) for render-size gray_l (and a hint model's hint channels), under
    the runtime's autocast and layout. An ONNX engine's network (engines.OnnxNetwork, numpy in and out) is called on
    the CPU and its ab brought back."""
    if not isinstance(generator, torch.nn.Module):
        hints = None if hints is None else hints.detach().float().cpu().numpy()
        return torch.from_numpy(generator(small_l.detach().float().cpu().numpy(), hints)).to(small_l.device)
    inputs = (small_l,) if hints is None else (small_l, hints)
    if runtime is None:
        return generator(*inputs).float()
    with runtime.autocast():
        return generator(*map(runtime.layout, inputs)).float()


def apply_controls(ab: torch.Tensor, temperature: float = 0.0, saturation: float = 1.0, hue: float = 0.0) -> torch.Tensor:
    """Mood controls on ab in model units: scale (saturation), rotate by `hue` degrees, shift b by `temperature` ab units.

    All three are affine in ab, so they commute with the (weights sum to 1) bicubic upsampling:
    applying them at render size gives the same result for less work.
    """
    if hue:
        ab = rotate_ab(ab, hue)
    if saturation != 1.0:
        ab = ab * saturation
    if temperature:
        ab = torch.cat([ab[:, 0:1], ab[:, 1:2] + temperature / AB_SCALE], 1)
    return ab


def _bicubic_weights(n_in: int, n_out: int, device) -> torch.Tensor:
    """(n_out, n_in) matrix of F.interpolate's 1-D bicubic weights (borders clamped as it clamps them)."""
    eye = torch.eye(n_in, device=device).view(1, 1, n_in, n_in)
    return F.interpolate(eye, size=(n_out, n_in), mode="bicubic", align_corners=False)[0, 0]


def upsampled_ab_rows(small_ab: torch.Tensor, height: int, width: int):
    """Yield (first, end, ab rows): small_ab bicubic-upsampled to height x width, never all rows at once.

    Bicubic is separable: the width pass runs once on the small rows; each chunk of output rows then mixes
    only the few source rows its weights touch. Same values as F.interpolate to float precision.
    """
    if tuple(small_ab.shape[-2:]) == (height, width):
        for first, end in row_chunks(height, width * small_ab.shape[0]):
            yield first, end, small_ab[:, :, first:end]
        return
    wide = F.interpolate(small_ab, size=(small_ab.shape[-2], width), mode="bicubic", align_corners=False)
    weights = _bicubic_weights(small_ab.shape[-2], height, small_ab.device)
    for first, end in row_chunks(height, width * small_ab.shape[0]):
        rows = weights[first:end]
        used = rows.abs().sum(0).nonzero()
        lo, hi = int(used[0]), int(used[-1]) + 1
        yield first, end, torch.matmul(rows[:, lo:hi], wide[:, :, lo:hi])


def recombined_chunks(gray_l: torch.Tensor, small_ab: torch.Tensor):
    """Yield (first, end, sRGB rows in [0, 1]): full-size L with the ab upsampled (bicubic), clipped to the gamut."""
    for first, end, ab in upsampled_ab_rows(small_ab, *gray_l.shape[-2:]):
        yield first, end, lab_to_rgb(model_to_lab(gray_l[:, :, first:end], ab))


@torch.no_grad()
def colorize_l(generator: torch.nn.Module, gray_l: torch.Tensor, render_size: int = 256, runtime=None,
               multiple: int | None = None, hints=None, **controls) -> torch.Tensor:
    """gray_l (B, 1, H, W) in model units at full size -> colorized sRGB in [0, 1] with exactly that L; hints: a
    hint model's channels at the render shape."""
    shape = render_shape(*gray_l.shape[-2:], render_size, multiple or size_multiple(generator))
    small_ab = forward_ab(generator, downsample_l(gray_l, shape), runtime, hints)
    return recombined(gray_l, apply_controls(small_ab, **controls))


def recombined(gray_l: torch.Tensor, small_ab: torch.Tensor) -> torch.Tensor:
    """Full-size sRGB in [0, 1] (B, 3, H, W): gray_l with small_ab upsampled, assembled from recombined_chunks."""
    out = torch.empty(gray_l.shape[0], 3, *gray_l.shape[-2:], device=gray_l.device)
    for first, end, chunk in recombined_chunks(gray_l, small_ab):
        out[:, :, first:end] = chunk
    return out



class TorchPipeline:
    """The torch engine's maths around the generator (its device, autocast and layout), as the Colorizer calls it;
    inference_numpy.NumpyPipeline is its numpy twin for the ONNX engines."""

    def __init__(self, generator: torch.nn.Module, runtime):
        self.generator, self.runtime = generator, runtime

    def context(self):
        return torch.inference_mode()

    def full_res_l(self, pixels) -> torch.Tensor:
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # PIL's arrays are read-only; nothing here writes to them
            tensor = torch.from_numpy(pixels).to(self.runtime.device).permute(2, 0, 1).unsqueeze(0)
        return full_res_l(tensor)

    def small_l(self, gray_l: list, shape: tuple[int, int]) -> torch.Tensor:
        return torch.cat([downsample_l(one, shape) for one in gray_l])

    def predict(self, small_l: torch.Tensor, hints: torch.Tensor | None = None, **controls) -> torch.Tensor:
        """ab at render size, then the mood controls; hints: a hint model's channels (hints.model_input)."""
        return apply_controls(forward_ab(self.generator, small_l, self.runtime, hints), **controls)

    def rgb8_rows(self, gray_l: torch.Tensor, small_ab: torch.Tensor):
        for first, _, rgb in recombined_chunks(gray_l, small_ab):
            yield first, to_uint8(rgb[0]).permute(1, 2, 0).cpu().numpy()
