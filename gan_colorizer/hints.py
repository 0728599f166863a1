"""Colour hints (Zhang et al. 2017, "Real-Time User-Guided Image Colorization"): points with a colour become the two
maps a hint model reads beside L, in SIGGRAPH17's layout: the hinted ab (2 channels, 0 where no hint) and a mask
(1 channel, 1 where a colour is given). Made here for every user: training simulates them from the photo, colorizing
reads them from a file or the app, evaluation samples oracle hints from the truth.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from gan_colorizer.color import AB_SCALE, lab_to_rgb, rgb_to_lab, to_uint8
from gan_colorizer.config_files import read_json
from gan_colorizer.errors import UserError

CHANNELS = 3  # hinted a, b and the mask
SPREAD_REACH = (0, 63, 15)  # how far Spread carries a hint, in pixels of the render (multiples of 3); 0: everywhere
FEATURES = CHANNELS + 3 * len(SPREAD_REACH)  # what a hint net reads beside L: the hints and their spread
RADIUS = 2  # a click's default patch: 5 x 5 pixels of the render, the middle of the 1-9 px patches training draws
MAX_RADIUS = 16
GEOMETRIC_P = 1 / 8  # Zhang et al.: points ~ geometric(1/8) from 0, so 1 sample in 8 has none (automatic mode)
PATCH_SIZES = tuple(range(1, 10))  # patch sides in pixels, drawn uniformly
MAX_FILE_BYTES = 1 << 20
MAX_HINTS = 1000


@dataclass(frozen=True)
class Hint:
    """A colour given at (x, y) in the photo's own pixels (column, row from the top left), as Lab a, b; radius in
    pixels of the network's render: the patch is a (2 radius + 1)-pixel square there."""
    x: float
    y: float
    ab: tuple[float, float]
    radius: int = RADIUS

    def to_dict(self) -> dict:
        return {"x": self.x, "y": self.y, "ab": [round(float(v), 3) for v in self.ab], "radius": self.radius}


def ab_of_rgb(rgb) -> tuple[float, float]:
    """Lab a, b of an 8-bit sRGB colour (its lightness is the photo's, so only a and b count)."""
    lab = rgb_to_lab(torch.tensor([float(v) / 255.0 for v in rgb], dtype=torch.float64).view(1, 3, 1, 1))
    return float(lab[0, 1]), float(lab[0, 2])


def ab_to_hex(ab, light: float = 60.0) -> str:
    """'#rrggbb' of Lab (light, a, b), clipped to the sRGB gamut: how a hint's colour is shown."""
    lab = torch.tensor([light, float(ab[0]), float(ab[1])]).view(1, 3, 1, 1)
    return "#" + "".join(f"{int(v):02x}" for v in to_uint8(lab_to_rgb(lab)).flatten())


def parse_color(value) -> tuple[float, float]:
    """'#rrggbb', '#rgb' or [r, g, b] (0-255) -> Lab a, b; ValueError saying what is wrong."""
    if isinstance(value, str):
        text = value.strip().lstrip("#")
        if len(text) == 3:
            text = "".join(c * 2 for c in text)
        if not re.fullmatch(r"[0-9a-fA-F]{6}", text):
            raise ValueError(f"color {value!r} is not '#rrggbb' or '#rgb'")
        return ab_of_rgb(int(text[i:i + 2], 16) for i in (0, 2, 4))
    if (isinstance(value, (list, tuple)) and len(value) == 3 and all(_number(v) for v in value)
            and all(0 <= v <= 255 for v in value)):
        return ab_of_rgb(value)
    raise ValueError(f"color {value!r} is not '#rrggbb', '#rgb' or [r, g, b] with levels 0-255")


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def from_dict(entry) -> Hint:
    """One hint as JSON gives it: x, y, a colour ('color': '#rrggbb' or [r, g, b]; or 'ab': [a, b]), radius."""
    if not isinstance(entry, dict):
        raise ValueError(f"{entry!r} is not an object with x, y and a color")
    if not _number(entry.get("x")) or not _number(entry.get("y")):
        raise ValueError("x and y must be numbers (the photo's pixels)")
    if ("color" in entry) == ("ab" in entry):
        raise ValueError("give one colour: 'color' ('#rrggbb' or [r, g, b]) or 'ab' ([a, b], Lab)")
    if "ab" in entry:
        ab = entry["ab"]
        if not (isinstance(ab, (list, tuple)) and len(ab) == 2 and all(_number(v) and abs(v) <= 128 for v in ab)):
            raise ValueError(f"ab {ab!r} is not [a, b] with Lab values within -128..128")
        ab = (float(ab[0]), float(ab[1]))
    else:
        ab = parse_color(entry["color"])
    radius = entry.get("radius", RADIUS)
    if not (isinstance(radius, int) and not isinstance(radius, bool) and 0 <= radius <= MAX_RADIUS):
        raise ValueError(f"radius {radius!r} is not a whole number of pixels from 0 to {MAX_RADIUS}")
    return Hint(float(entry["x"]), float(entry["y"]), ab, radius)


def parse(entries, source: str) -> list[Hint]:
    """A list of hint objects (or {"hints": [...]}; Hints pass as they are) -> Hints, or one UserError naming the
    source and the hint."""
    if isinstance(entries, dict) and "hints" in entries:
        entries = entries["hints"]
    if not isinstance(entries, list):
        raise UserError(f"{source}: expected a list of hints or {{\"hints\": [...]}}")
    if len(entries) > MAX_HINTS:
        raise UserError(f"{source}: {len(entries)} hints; at most {MAX_HINTS}")
    hints = []
    for i, entry in enumerate(entries, 1):
        try:
            hints.append(entry if isinstance(entry, Hint) else from_dict(entry))
        except ValueError as e:
            raise UserError(f"{source}: hint {i}: {e}") from None
    return hints


def read_file(path) -> list[Hint]:
    """The hints of a JSON file (the app's download, or written by hand), or a UserError naming the file."""
    entries = read_json(path, "hints", MAX_FILE_BYTES)
    return parse(entries, str(path))


def to_json(hints: list[Hint]) -> str:
    """The file read_file reads back."""
    return json.dumps({"hints": [h.to_dict() for h in hints]}, indent=1) + "\n"


def check_inside(hints: list[Hint], width: int, height: int, source: str) -> None:
    """A UserError for the first hint outside a width x height photo."""
    for i, h in enumerate(hints, 1):
        if not (0 <= h.x < width and 0 <= h.y < height):
            raise UserError(f"{source}: hint {i} at x {h.x:g}, y {h.y:g} is outside the {width} x {height} photo")


def maps(hints: list[Hint], size: tuple[int, int], render: tuple[int, int] | None = None) -> tuple:
    """(hint_ab (1, 2, h, w) in Lab units, mask (1, 1, h, w)) at the render size (h, w) for hints placed on a photo of
    `size` (height, width); each hint fills its square, cut at the image's edges; a later hint covers an earlier."""
    height, width = size
    h, w = render or size
    hint_ab, mask = torch.zeros(1, 2, h, w), torch.zeros(1, 1, h, w)
    for hint in hints:
        row = min(int((hint.y + 0.5) * h / height), h - 1)  # the render pixel whose area holds the point
        col = min(int((hint.x + 0.5) * w / width), w - 1)
        rows = slice(max(row - hint.radius, 0), row + hint.radius + 1)
        cols = slice(max(col - hint.radius, 0), col + hint.radius + 1)
        hint_ab[0, 0, rows, cols], hint_ab[0, 1, rows, cols] = hint.ab
        mask[0, 0, rows, cols] = 1.0
    return hint_ab, mask


def model_input(hint_ab: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The (N, 3, H, W) hint channels our generators read beside gray_l: ab in the model's units, then the mask."""
    return torch.cat([hint_ab / AB_SCALE, mask], dim=1)


class Spread(nn.Module):
    """The hint channels (N, 3, H, W) and the hints spread over the image (normalised convolution), which a hint
    network reads: per reach in SPREAD_REACH, how much of a smooth kernel around each pixel is hinted (c: 0 none,
    0.5 one hinted pixel at the centre, towards 1 many) and the mean hinted ab under it times c (the whole image for
    reach 0). c falls to 0 smoothly at the kernel's edge, so a network reading these draws no edge there. A network
    trained on few photos learns to follow them in a few hundred steps; from the points alone it has to learn the
    spreading itself (Zhang et al. train on 1.3M photos). Any H and W; no hint: all zero; no parameters."""

    def forward(self, gray_l: torch.Tensor, hints: torch.Tensor | None) -> torch.Tensor:
        if hints is None:
            return gray_l.new_zeros(gray_l.shape[0], FEATURES, *gray_l.shape[2:])
        hints = hints.float()
        mask = hints[:, 2:]
        sums = torch.cat([hints[:, :2] * mask, mask], dim=1)
        parts = [hints]
        for reach in SPREAD_REACH:
            if reach:  # three boxes of odd width k, rows then columns: a bell (near Gaussian) reaching 3 (k - 1) / 2
                k = 2 * reach // 3 + 1
                weighted, peak = sums, ((3 * k * k + 1) / (4 * k ** 3)) ** 2  # peak: a pixel's weight at the centre
                for _ in range(3):
                    weighted = box(box(weighted, k, 3), k, 2)
            else:
                weighted, peak = sums.mean((2, 3), keepdim=True), 1.0 / (hints.shape[2] * hints.shape[3])
            num, den = weighted[:, :2], weighted[:, 2:]  # the mean hinted ab, num / den, times c: num / (den + peak)
            parts += [(num / (den + peak)).expand_as(hints[:, :2]), (den / (den + peak)).expand_as(mask)]
        return torch.cat(parts, dim=1).to(gray_l.dtype)


def box(x: torch.Tensor, k: int, dim: int) -> torch.Tensor:
    """The mean of x over a centred window of odd width k along dim (2: rows, 3: columns), zeros outside: running
    sums in float64, so the cost does not grow with k (avg_pool2d's did: 45 ms of an app update's 220 ms at 256 px)
    and a pixel whose window holds only zeros gets exactly 0."""
    half = k // 2
    sums = F.pad(x.double(), (half + 1, half, 0, 0) if dim == 3 else (0, 0, half + 1, half)).cumsum(dim)
    ends, starts = (sums[..., k:], sums[..., :-k]) if dim == 3 else (sums[:, :, k:], sums[:, :, :-k])
    return ((ends - starts) / k).to(x.dtype)


def with_hints(gray_l: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """A hint network's input: gray_l and its hint features (Spread's output)."""
    return torch.cat([gray_l, features], dim=1)


def sample(real_ab: torch.Tensor, counts=None, generator: torch.Generator | None = None,
           p: float = GEOMETRIC_P) -> tuple[torch.Tensor, torch.Tensor]:
    """Zhang et al.'s simulated hints from the true ab (N, 2, H, W), any units: per image a number of points
    (geometric with p from 0, or counts[i] when given), each a square of side 1-9 px (uniform) placed around the
    centre (normal, sd a quarter of the side), filled with the patch's mean ab. Returns (hint_ab, mask) in real_ab's
    units; the draws come from `generator` (CPU), so a seed gives the same points on any device."""
    n, _, height, width = real_ab.shape
    hint_ab, mask = torch.zeros_like(real_ab), real_ab.new_zeros(n, 1, height, width)
    if counts is None:
        u = torch.rand(n, generator=generator, dtype=torch.float64)
        counts = torch.floor(torch.log1p(-u) / math.log1p(-p)).long().tolist()  # inverse CDF of geometric from 0
    for i, count in enumerate(counts):
        for _ in range(int(count)):
            side = PATCH_SIZES[int(torch.randint(len(PATCH_SIZES), (1,), generator=generator))]
            row, col = (_centred(extent - side + 1, generator) for extent in (height, width))
            patch = (i, slice(None), slice(row, row + side), slice(col, col + side))
            hint_ab[patch] = real_ab[patch].mean(dim=(1, 2), keepdim=True)
            mask[patch] = 1.0
    return hint_ab, mask


def _centred(span: int, generator) -> int:
    """A start in 0..span-1 drawn around the middle (normal, sd span / 4, clipped), as Zhang et al.'s sampler."""
    value = span / 2 + torch.randn(1, generator=generator, dtype=torch.float64).item() * span / 4
    return int(min(max(value, 0), span - 1))


def from_automatic(state: dict, hint_state: dict) -> dict:
    """An automatic generator's weights (state) laid into a hint net of the same architecture (hint_state: its own
    state dict, for names and shapes): what the hint net has beyond them (the first conv's hint input channels, the
    hint head) is zero, so it starts as that automatic net and learns to read hints from there."""
    out = {}
    for name, target in hint_state.items():
        weight = state.get(name)
        if weight is None or weight.shape == target.shape:
            out[name] = torch.zeros_like(target) if weight is None else weight
        elif weight.shape[:1] + weight.shape[2:] == target.shape[:1] + target.shape[2:]:  # more input channels
            out[name] = torch.cat([weight, weight.new_zeros(target.shape[0], target.shape[1] - weight.shape[1],
                                                            *target.shape[2:])], dim=1)
        else:
            out[name] = weight  # another shape: load_state_dict names it
    return out
