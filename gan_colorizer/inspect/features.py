"""Inside the generator: forward hooks on its named stages (anatomy.py), feature-map grids of the most active
channels, bar charts of every filter's mean activation, the predicted a and b maps, and what TensorBoard shows.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image, ImageDraw

from gan_colorizer.color import AB_SCALE, model_to_lab, model_to_rgb, to_uint8
from gan_colorizer.colorize.inference import forward_ab
from gan_colorizer.errors import UserError
from gan_colorizer.inspect.ab_histograms import ColorDistribution, distribution_figure
from gan_colorizer.inspect.anatomy import Stage, stages
from gan_colorizer.inspect.drawing import (
    BACKGROUND,
    INK,
    SheetRow,
    colormap_lut,
    comparison_sheet,
    difference_maps,
    figure,
    figure_rgb,
    font,
)
from gan_colorizer.inspect.options import TOP_CHANNELS
from gan_colorizer.runtime import unwrap

FEATURE_CMAP = "viridis"
AB_SHOWN = 80.0  # the a and b maps span -80..80 ab units (clipped): fixed, so maps compare across images


def select_stages(generator: torch.nn.Module, names=None) -> list[Stage]:
    """The generator's stages, or those named (exact names, or a group: 'encoder', 'decoder'...), in forward order."""
    found = stages(generator)
    if not names:
        return found
    chosen = [s for s in found if s.name in names or s.group in names]
    unknown = [n for n in names if not any(n in (s.name, s.group) for s in found)]
    if unknown:
        raise UserError(f"--layers {','.join(unknown)}: no such layer; this generator has "
                        f"{', '.join(s.name for s in found)}")
    return chosen


@contextmanager
def feature_hooks(generator: torch.nn.Module, chosen: list[Stage]):
    """Yields {stage name: output (detached)}, filled by every forward while inside; the hooks go on exit."""
    outputs: dict[str, torch.Tensor] = {}

    def recorder(name):
        def hook(module, inputs, output):
            outputs[name] = output.detach()
        return hook
    handles = [s.module.register_forward_hook(recorder(s.name)) for s in chosen]
    try:
        yield outputs
    finally:
        for handle in handles:
            handle.remove()


@torch.no_grad()
def capture(generator: torch.nn.Module, gray_l: torch.Tensor, chosen: list[Stage], runtime=None):
    """(fake_ab float32, {stage name: float32 output}) of one forward in eval mode; the mode is restored."""
    net = unwrap(generator)  # a DDP wrapper would sync with ranks that are not running this forward
    was_training = net.training
    net.eval()
    try:
        with feature_hooks(net, chosen) as outputs:
            fake_ab = forward_ab(net, gray_l, runtime)
    finally:
        net.train(was_training)
    return fake_ab, {name: out.float() for name, out in outputs.items()}


def channel_means(fmap: torch.Tensor) -> torch.Tensor:
    """(C, H, W) -> (C,) mean activation of each channel."""
    return fmap.float().mean(dim=(1, 2))


def top_channels(means: torch.Tensor, k: int = TOP_CHANNELS) -> list[int]:
    """Indices of the k channels with the highest mean activation, highest first."""
    return torch.argsort(means, descending=True, stable=True)[:k].tolist()


def _channel_tile(channel: torch.Tensor, side: int) -> np.ndarray:
    """One channel, min-max normalized on its own, colored and scaled (nearest) so its long side is `side`."""
    c = channel.float()
    lo, hi = c.min(), c.max()
    norm = (c - lo) / (hi - lo) if hi > lo else torch.zeros_like(c)
    colors = colormap_lut(FEATURE_CMAP)[(norm * 255).round().byte().cpu().numpy()]
    h, w = colors.shape[:2]
    scale = side / max(h, w)
    return np.asarray(Image.fromarray(colors).resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.NEAREST))


def feature_grid(fmap: torch.Tensor, title: str = "", k: int = TOP_CHANNELS, side: int = 96) -> np.ndarray:
    """(C, H, W) -> the k most active channels in a square grid, each normalized on its own (viridis, min to max),
    captioned with its index and mean; (H, W, 3) uint8."""
    means = channel_means(fmap)
    top = top_channels(means, k)
    tiles = [_channel_tile(fmap[c], side) for c in top]
    cols = math.ceil(math.sqrt(len(tiles)))
    rows = math.ceil(len(tiles) / cols)
    th, tw = tiles[0].shape[:2]
    pad, caption, head = 4, 14, 20 if title else 0
    width = max(cols * (tw + pad) + pad, int(font(13).getlength(title)) + 2 * pad)
    sheet = Image.new("RGB", (width, head + rows * (th + caption + pad) + pad), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    if title:
        draw.text((pad, 3), title, fill=INK, font=font(13))
    for i, (c, tile) in enumerate(zip(top, tiles)):
        x, y = pad + (i % cols) * (tw + pad), head + pad + (i // cols) * (th + caption + pad)
        sheet.paste(Image.fromarray(tile), (x, y))
        draw.text((x, y + th + 1), f"#{c}  {float(means[c]):.3g}", fill=INK, font=font(10))
    return np.asarray(sheet)


def activation_chart(fmap: torch.Tensor, title: str, k: int = TOP_CHANNELS) -> np.ndarray:
    """Bar chart of every filter's mean activation, the k shown in the grid highlighted; (H, W, 3) uint8."""
    means = channel_means(fmap).cpu().numpy()
    silent = int((fmap.flatten(1).amax(dim=1) <= 0).sum())  # never positive on this input: dead after a ReLU
    top = top_channels(torch.from_numpy(means), k)
    fig = figure(max(6.0, min(14.0, len(means) / 40)), 2.8)
    ax = fig.add_subplot()
    # one filled step artist for all bars (a Rectangle per bar is ten times slower), then the shown ones on top
    ax.stairs(means, np.arange(len(means) + 1) - 0.5, fill=True, color="#4c72b0", baseline=0)
    ax.bar(top, means[top], width=1.0, color="#dd8452")
    ax.axhline(0, color="0.3", lw=0.6)
    ax.set_xlim(-0.5, len(means) - 0.5)
    ax.set_xlabel(f"filter (of {len(means)}; orange: the {min(k, len(means))} in the grid)")
    ax.set_ylabel("mean activation")
    ax.set_title(f"{title}   mean {means.mean():.3g}, max {means.max():.3g}; "
                 f"{silent} never > 0 on this image", fontsize=9)
    return figure_rgb(fig)


def ab_maps(fake_ab: torch.Tensor, title: str = "prediction") -> np.ndarray:
    """(2, H, W) ab in model units -> the a map (green - / red +) and the b map (blue - / yellow +) in ab units,
    on a fixed +-AB_SHOWN scale with color bars; (H, W, 3) uint8."""
    from matplotlib.colors import LinearSegmentedColormap
    ab = (fake_ab.float() * AB_SCALE).cpu().numpy()
    h, w = ab.shape[-2:]
    fig = figure(2 * (2.2 + 3.2 * w / max(h, w)), 0.8 + 3.2 * h / max(h, w))
    ramps = {"a": ("#1a9850", "#d62790"), "b": ("#3465d9", "#e6c619")}
    for i, (name, (low, high)) in enumerate(ramps.items()):
        ax = fig.add_subplot(1, 2, i + 1)
        cmap = LinearSegmentedColormap.from_list(name, [low, "#f2f2f2", high])
        shown = ax.imshow(ab[i], cmap=cmap, vmin=-AB_SHOWN, vmax=AB_SHOWN, interpolation="nearest")
        ax.set_title(f"{title}: {name} (ab units; mean {ab[i].mean():.1f})", fontsize=9)
        ax.set_xticks([]), ax.set_yticks([])
        fig.colorbar(shown, ax=ax, shrink=0.85)
    return figure_rgb(fig)


def default_layers(generator: torch.nn.Module) -> list[Stage]:
    """A few stages from shallow to deep for TensorBoard: the first and a middle encoder stage, the bottleneck,
    the last decoder stage."""
    found = stages(generator)
    encoder = [s for s in found if s.group == "encoder"]
    decoder = [s for s in found if s.group == "decoder"]
    picked = [encoder[0], encoder[len(encoder) // 2]] + [s for s in found if s.group == "bottleneck"] + decoder[-1:]
    return list({s.name: s for s in picked}.values())


@dataclass
class Visuals:
    """What TensorBoard gets every --viz-every steps: images (H, W, 3) uint8 and histograms, by tag."""
    images: dict[str, np.ndarray] = field(default_factory=dict)
    histograms: dict[str, torch.Tensor] = field(default_factory=dict)


def training_visuals(runtime, generator: torch.nn.Module, pixels: torch.Tensor) -> Visuals:
    """Feature maps of a few layers (first sample), predicted and real a / b values, difference maps and the ab
    distribution of the fixed validation samples (uint8 pixels, (B, 3, H, W))."""
    gray_l, real_ab = runtime.batch(pixels)
    fake_ab, outputs = capture(generator, gray_l, default_layers(generator), runtime)
    out = Visuals()
    for name, fmap in outputs.items():
        out.images[f"features/{name}"] = feature_grid(fmap[0], f"{name} {tuple(fmap.shape[1:])}", side=64)
    for i, channel in enumerate("ab"):
        out.histograms[f"ab/pred_{channel}"] = (fake_ab[:, i] * AB_SCALE).flatten().cpu()
        out.histograms[f"ab/real_{channel}"] = (real_ab[:, i].float() * AB_SCALE).flatten().cpu()
    fake_lab, real_lab = model_to_lab(gray_l, fake_ab), model_to_lab(gray_l, real_ab)
    fake_rgb = to_uint8(model_to_rgb(gray_l, fake_ab))
    rows = [SheetRow(f"sample {i}", {"prediction": _hwc(fake_rgb[i]), "truth": _hwc(pixels[i]),
                                     "errors": difference_maps(fake_lab[i], real_lab[i])}) for i in range(len(pixels))]
    out.images["errors/val_samples"] = comparison_sheet(rows, ["prediction", "truth", "errors"])
    truth, pred = ColorDistribution(), ColorDistribution()
    truth.update(real_lab)
    pred.update_rgb8(fake_rgb)
    out.images["ab/distribution"] = distribution_figure(truth, {"prediction": pred})
    return out


def _hwc(image: torch.Tensor) -> np.ndarray:
    return image.permute(1, 2, 0).cpu().numpy()
