"""Pictures for people: color-difference maps with color bars, and comparison sheets of several models.

Everything returns or writes 8-bit RGB arrays (H, W, 3), so TensorBoard, HTML reports and PNG files share it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

from gan_colorizer.atomic import replacing
from gan_colorizer.metrics import delta_e2000_map

DELTA_E_MAX = 50.0  # top of the heat-map scale; a CIEDE2000 of 50 is already a different color
AB_ERROR_MAX = 50.0  # top of the |delta a|, |delta b| scale, in ab units (ab spans about -110..110)
ERROR_SCALES = {"dE00": DELTA_E_MAX, "|da|": AB_ERROR_MAX, "|db|": AB_ERROR_MAX}  # titles on the color bars
CMAP = "magma"
BACKGROUND = (255, 255, 255)
INK = (20, 20, 20)


def _numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def font(size: int) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def colormap_lut(name: str = CMAP) -> np.ndarray:
    """(256, 3) uint8 lookup table of a matplotlib colormap."""
    import matplotlib
    return (matplotlib.colormaps[name](np.linspace(0, 1, 256))[:, :3] * 255).round().astype(np.uint8)


def heat_colors(values, vmax: float = DELTA_E_MAX, cmap: str = CMAP) -> np.ndarray:
    """(H, W) values in [0, vmax] (clipped) -> (H, W, 3) uint8 colors."""
    v = np.nan_to_num(_numpy(values).astype(np.float64), nan=0.0)
    index = np.clip(np.rint(v / vmax * 255), 0, 255).astype(np.uint8)
    return colormap_lut(cmap)[index]


def color_bar(height: int, vmax: float = DELTA_E_MAX, cmap: str = CMAP, title: str = "dE00", ticks: int = 5) -> np.ndarray:
    """A vertical color bar with tick labels (top = vmax, shown as 'vmax+'), (height, width, 3) uint8."""
    size = max(9, min(14, height // 14))
    f = font(size)
    label_w = max(int(f.getlength(s)) for s in (f"{vmax:g}+", title)) + 4
    bar_w = max(8, height // 24)
    canvas = Image.new("RGB", (bar_w + label_w + 6, height), BACKGROUND)
    top, bottom = 2 * size + 4, height - size // 2 - 2
    ramp = np.linspace(255, 0, max(2, bottom - top)).round().astype(np.uint8)
    strip = np.repeat(colormap_lut(cmap)[ramp][:, None, :], bar_w, axis=1)
    canvas.paste(Image.fromarray(strip), (2, top))
    draw = ImageDraw.Draw(canvas)
    draw.text((2, 0), title, fill=INK, font=f)
    for i in range(ticks + 1):
        value = vmax * i / ticks
        y = bottom - (bottom - top) * i / ticks
        draw.line([(bar_w + 2, y), (bar_w + 5, y)], fill=INK)
        text = f"{value:g}+" if i == ticks else f"{value:g}"
        draw.text((bar_w + 7, y - size / 2 - 1), text, fill=INK, font=f)
    return np.asarray(canvas)


def difference_map(delta_e, vmax: float = DELTA_E_MAX, cmap: str = CMAP, bar: bool = True, title: str = "dE00") -> np.ndarray:
    """Per-pixel errors (H, W), CIEDE2000 by default, as a heat map on a fixed scale [0, vmax], with its color bar
    on the right. The fixed scale makes maps of different images and models comparable by eye.
    """
    colors = heat_colors(delta_e, vmax, cmap)
    if not bar:
        return colors
    return np.concatenate([colors, color_bar(colors.shape[0], vmax, cmap, title)], axis=1)


def error_maps(pred_lab: torch.Tensor, true_lab: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-pixel errors (B, H, W) between Lab batches (B, 3, H, W): CIEDE2000, |delta a| and |delta b| (ab units)."""
    diff = (pred_lab.float() - true_lab.float()).abs()
    return {"dE00": delta_e2000_map(pred_lab.float(), true_lab.float()), "|da|": diff[:, 1], "|db|": diff[:, 2]}


def fit_long_side(image: torch.Tensor, long_side: int | None) -> torch.Tensor:
    """(..., H, W) resized so its long side is long_side (area when shrinking, nearest when growing); None: as is."""
    h, w = image.shape[-2:]
    if not long_side or max(h, w) == long_side:
        return image
    size = (max(1, round(h * long_side / max(h, w))), max(1, round(w * long_side / max(h, w))))
    batch = image.reshape(-1, 1, h, w).float()
    out = F.interpolate(batch, size=size, mode="area" if max(h, w) > long_side else "nearest")
    return out.reshape(*image.shape[:-2], *size)


def difference_maps(pred_lab: torch.Tensor, true_lab: torch.Tensor, long_side: int | None = None) -> np.ndarray:
    """One image's CIEDE2000, |delta a| and |delta b| heat maps side by side, each with its color bar; (H, W, 3) uint8.

    pred_lab, true_lab: (3, H, W) or (1, 3, H, W) Lab. Fixed scales (ERROR_SCALES), so maps are comparable by eye.
    Evaluation grids, TensorBoard, visualize.py and the HTML report all draw their difference maps with this.
    """
    maps = error_maps(pred_lab.reshape(1, 3, *pred_lab.shape[-2:]), true_lab.reshape(1, 3, *true_lab.shape[-2:]))
    panels = []
    for title, values in maps.items():
        panels.append(difference_map(fit_long_side(values[0], long_side), ERROR_SCALES[title], title=title))
        panels.append(np.full((panels[-1].shape[0], 6, 3), BACKGROUND, np.uint8))
    return np.concatenate(panels[:-1], axis=1)


@dataclass
class SheetRow:
    """One image of a comparison sheet: tiles (H, W, 3) uint8 by column title, and a caption under some of them."""
    name: str
    tiles: dict[str, np.ndarray]
    captions: dict[str, str] = field(default_factory=dict)


def comparison_sheet(rows: list[SheetRow], columns: list[str]) -> np.ndarray:
    """Rows of tiles under column titles, each row headed by the image's name; (H, W, 3) uint8."""
    f_title, f_small = font(15), font(12)
    pad, line = 6, 16
    widths = [max(r.tiles[c].shape[1] for r in rows if c in r.tiles) for c in columns]
    heights = [max(t.shape[0] for t in r.tiles.values()) for r in rows]
    sheet_w = sum(widths) + pad * (len(columns) + 1)
    sheet_h = line + pad + sum(h + 2 * line + pad for h in heights)
    sheet = Image.new("RGB", (sheet_w, sheet_h), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    x_of = np.cumsum([pad] + [w + pad for w in widths])[:-1]
    for x, c in zip(x_of, columns):
        draw.text((int(x), 2), c, fill=INK, font=f_title)
    y = line + pad
    for row, h in zip(rows, heights):
        draw.text((pad, y), row.name, fill=INK, font=f_small)
        y += line
        for x, c in zip(x_of, columns):
            if c in row.tiles:
                sheet.paste(Image.fromarray(row.tiles[c]), (int(x), y))
            if c in row.captions:
                draw.text((int(x), y + h + 2), row.captions[c], fill=INK, font=f_small)
        y += h + line + pad
    return np.asarray(sheet)


def figure(width: float, height: float, dpi: int = 100):
    """A matplotlib Figure drawn by Agg (no pyplot, no display, no global state), laid out by constrained layout."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(width, height), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def figure_rgb(fig, path=None) -> np.ndarray:
    """The figure rendered as (H, W, 3) uint8; also saved to path when one is given."""
    fig.canvas.draw()
    rgb = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    if path is not None:
        with replacing(path) as tmp:  # a reader never sees half a figure
            fig.savefig(tmp, format=Path(path).suffix[1:])
    return rgb


def save_png(rgb: np.ndarray, path) -> Path:
    path = Path(path)
    with replacing(path) as tmp:  # a kill leaves the old file or none, never half a PNG
        Image.fromarray(rgb).save(tmp, format="PNG")
    return path
