"""A published colorizer (models/registry.py) in the Colorizer's pipeline: its authors' preprocessing at its own render
size, its network and its to_ab, then our full-resolution recombination with the photo's own L, as for our
checkpoints, so that every model is judged the same way.

The network sees the photo's gray rendition (its L with a = b = 0, in sRGB), prepared as its authors prepare a
photo; it runs in fp32, as they run it.
"""
from __future__ import annotations

import torch

from gan_colorizer.color import AB_SCALE, lab_to_rgb, model_to_lab
from gan_colorizer.colorize.inference import TorchPipeline, apply_controls, downsample_l, recombined, row_chunks


def gray_rendition(gray_l: torch.Tensor) -> torch.Tensor:
    """Full-size gray_l (1, 1, H, W), model units -> the photo's gray sRGB (1, 1, H, W) in [0, 1], in row chunks
    (one channel: R = G = B when a = b = 0)."""
    out = torch.empty_like(gray_l, dtype=torch.float32)
    for first, end in row_chunks(*gray_l.shape[-2:]):
        rows = gray_l[:, :, first:end]
        out[:, :, first:end] = lab_to_rgb(model_to_lab(rows, rows.new_zeros(rows.shape[0], 2, *rows.shape[2:])))[:, :1]
    return out


def ignored_flags(args, default_size: int) -> list[str]:
    """The flags of colorize.py given that a published model does not take: it runs as its authors run it (their
    render size, fp32, their output as ab)."""
    given = (("--image-size", args.image_size != default_size), ("--amp", args.amp not in ("auto", "off")),
             ("--weights", args.weights != "auto"), ("--decode", args.decode is not None),
             ("--annealed-t", args.annealed_t is not None))
    return [flag for flag, on in given if on]


def model_ab(model, output: torch.Tensor, gray: list, shape) -> torch.Tensor:
    """The network's output for the gray renditions `gray` -> ab (B, 2, *shape) in the model units of color.py."""
    output = output.float()
    ab = torch.cat([model.to_ab(output[i:i + 1], rgb) for i, rgb in enumerate(gray)])
    ab = ab / AB_SCALE  # Lab units -> the model units the recombination takes
    if ab.shape[-2:] != tuple(shape):
        ab = torch.nn.functional.interpolate(ab, size=tuple(shape), mode="bilinear", align_corners=False)
    return ab


class AsGenerator(torch.nn.Module):
    """A published model called as our generators are: gray_l (B, 1, h, w) in model units -> ab (B, 2, h, w), the
    authors' preparation inside, for the tools that look inside a generator (visualize.py: hooks on its stages)."""

    def __init__(self, loaded):
        super().__init__()
        self.network, self.model = loaded.network, loaded.model

    def named_stages(self) -> list:
        return self.network.named_stages()

    def forward(self, gray_l: torch.Tensor) -> torch.Tensor:
        gray = [gray_rendition(one) for one in gray_l.split(1)]
        output = self.network(torch.cat([self.model.prepare(one) for one in gray]))
        return model_ab(self.model, output, gray, gray_l.shape[-2:])


class PublishedPipeline(TorchPipeline):
    """TorchPipeline's interface (full_res_l, small_l, predict, rgb8_rows) around a published model.

    small_l gives the render-size L the temporal filter reads, with the network's input (the authors' preparation
    of each photo's gray rendition) and those renditions carried on it as `net_input`; predict runs the network on
    that."""

    def __init__(self, loaded, runtime):
        super().__init__(runtime.place(loaded.network).eval(), runtime)
        self.model = loaded.model

    def render_shape(self, height: int, width: int) -> tuple[int, int]:
        side = self.model.render_size  # the authors stretch every photo to a square, aspect not kept
        return side, side

    def small_l(self, gray_l: list, shape: tuple[int, int]) -> torch.Tensor:
        small = torch.cat([downsample_l(one, shape) for one in gray_l])
        gray = [gray_rendition(one) for one in gray_l]
        small.net_input = (torch.cat([self.model.prepare(one) for one in gray]), gray)
        return small

    def predict(self, small_l: torch.Tensor, hints: torch.Tensor | None = None, **controls) -> torch.Tensor:
        """hints: the channels of hints.model_input at the render size, for SIGGRAPH17 (its ab in Lab units)."""
        net_input, gray = small_l.net_input
        given = () if hints is None else (hints[:, :2] * AB_SCALE, hints[:, 2:])
        return apply_controls(model_ab(self.model, self.generator(net_input, *given), gray, small_l.shape[-2:]),
                              **controls)

    def colorize_l(self, gray_l: torch.Tensor, hints: torch.Tensor | None = None) -> torch.Tensor:
        """inference.colorize_l for this model: gray_l (B, 1, H, W), model units -> sRGB in [0, 1] with that L;
        hints as predict takes them, at render_shape."""
        small = self.small_l(list(gray_l.split(1)), self.render_shape(*gray_l.shape[-2:]))
        return recombined(gray_l, self.predict(small, hints))
