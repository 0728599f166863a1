"""Color distributions over a set of images: 2-D ab histograms and L histograms, accumulated batch by batch in
fixed-size arrays, and their plot on the ab plane (each bin in its own color at L = 50, as in Zhang et al. 2016).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from gan_colorizer.color import lab_to_rgb, rgb_to_lab
from gan_colorizer.inspect.drawing import figure, figure_rgb

AB_RANGE = 110.0  # the histogram covers a, b in [-110, 110]; the sRGB gamut lies inside it
AB_BIN = 2.0  # ab units per bin side: 110 x 110 bins
N_AB = int(2 * AB_RANGE / AB_BIN)
N_L = 100  # one bin per L unit over [0, 100]
N_CHROMA = 150  # one bin per chroma unit; sRGB reaches about 134
DECADES = 5.0  # the plot shows densities from the densest bin down to 1e-5 of it (log scale)
PLOT_L = 50.0  # the lightness at which every bin is drawn in its own color


def ab_histogram(lab: torch.Tensor) -> torch.Tensor:
    """(N_AB, N_AB) pixel counts of a Lab batch (B, 3, H, W), indexed [a bin, b bin]; values outside are clamped
    into the border bins. int64, on the batch's device."""
    index = ((lab[:, 1:].float() + AB_RANGE) / AB_BIN).floor().long().clamp_(0, N_AB - 1)
    flat = (index[:, 0] * N_AB + index[:, 1]).flatten()
    return torch.bincount(flat, minlength=N_AB * N_AB).view(N_AB, N_AB)


def l_histogram(lab: torch.Tensor) -> torch.Tensor:
    """(N_L,) pixel counts of L over [0, 100] (L = 100 goes into the top bin). int64, on the batch's device."""
    index = lab[:, 0].float().floor().long().clamp_(0, N_L - 1)
    return torch.bincount(index.flatten(), minlength=N_L)


def chroma_histogram(lab: torch.Tensor) -> torch.Tensor:
    """(N_CHROMA,) pixel counts of chroma sqrt(a^2 + b^2), one bin per unit (the last one open). int64."""
    chroma = torch.hypot(lab[:, 1].float(), lab[:, 2].float())
    return torch.bincount(chroma.floor().long().clamp_(0, N_CHROMA - 1).flatten(), minlength=N_CHROMA)


def bin_centers() -> np.ndarray:
    return -AB_RANGE + AB_BIN * (np.arange(N_AB) + 0.5)


@dataclass
class ColorDistribution:
    """Running ab and L histograms of one source (the truth, or one model's predictions)."""
    ab: np.ndarray = field(default_factory=lambda: np.zeros((N_AB, N_AB), np.int64))
    l: np.ndarray = field(default_factory=lambda: np.zeros(N_L, np.int64))
    c: np.ndarray = field(default_factory=lambda: np.zeros(N_CHROMA, np.int64))

    def update(self, lab: torch.Tensor) -> None:
        self.ab += ab_histogram(lab).cpu().numpy()
        self.l += l_histogram(lab).cpu().numpy()
        self.c += chroma_histogram(lab).cpu().numpy()

    def update_rgb8(self, images: torch.Tensor) -> None:
        """From (B, 3, H, W) 8-bit sRGB."""
        self.update(rgb_to_lab(images.float() / 255))

    @property
    def pixels(self) -> int:
        return int(self.ab.sum())

    def probability(self) -> np.ndarray:
        return self.ab / max(1, self.pixels)

    def mean_chroma(self) -> float:
        """Mean chroma, from the chroma histogram (bin centers): the saturation a model gives its colors."""
        return float((np.arange(N_CHROMA) + 0.5) @ self.c / max(1, self.c.sum()))


def intersection(p: ColorDistribution, q: ColorDistribution) -> float:
    """Histogram intersection of two ab distributions: 1 = identical, 0 = disjoint."""
    return float(np.minimum(p.probability(), q.probability()).sum())


def compare(model: ColorDistribution, truth: ColorDistribution) -> dict:
    """The numbers a report shows beside the plots: overlap with the truth and the chroma (saturation) bias."""
    return {"ab_intersection": intersection(model, truth), "mean_chroma": model.mean_chroma(),
            "truth_mean_chroma": truth.mean_chroma()}


def _plane_colors() -> tuple[np.ndarray, np.ndarray]:
    """Each bin's sRGB color at L = PLOT_L, and whether that color is inside the sRGB gamut; rows = b (top +)."""
    a, b = np.meshgrid(bin_centers(), bin_centers()[::-1], indexing="xy")
    lab = torch.tensor(np.stack([np.full_like(a, PLOT_L), a, b]), dtype=torch.float64)[None]
    rgb = lab_to_rgb(lab)
    back = rgb_to_lab(rgb)
    in_gamut = ((back - lab).abs().amax(dim=1)[0] < 1.0).numpy()
    return rgb[0].permute(1, 2, 0).numpy(), in_gamut


def ab_plane_rgb(dist: ColorDistribution, background=(1.0, 1.0, 1.0), gamut_shade: float = 0.93) -> np.ndarray:
    """(N_AB, N_AB, 3) float image of the ab plane, a to the right and b up: each bin in its own color at L = 50,
    opacity = log density (DECADES below the densest bin = transparent). Empty bins show the background, a little
    darker where the color exists in sRGB at L = 50."""
    return density_plane_rgb(dist.probability(), background, gamut_shade)


def density_plane_rgb(density: np.ndarray, background=(1.0, 1.0, 1.0), gamut_shade: float = 0.93) -> np.ndarray:
    """ab_plane_rgb of any (N_AB, N_AB) [a bin, b bin] array of densities."""
    colors, in_gamut = _plane_colors()
    p = np.asarray(density, np.float64).T[::-1]  # [a, b] -> rows of b from the top, columns of a
    with np.errstate(divide="ignore"):
        level = np.log10(p / p.max()) if p.max() > 0 else np.full_like(p, -np.inf)
    alpha = np.clip(1 + level / DECADES, 0, 1)[..., None]
    base = np.where(in_gamut[..., None], np.array(background) * gamut_shade, np.array(background))
    return alpha * colors + (1 - alpha) * base


def distribution_figure(truth: ColorDistribution, models: dict[str, ColorDistribution], path=None) -> np.ndarray:
    """The ab distributions of the truth and each model side by side (log density on the ab plane), then the
    chroma distributions and the L histogram of the inputs. Returns (H, W, 3) uint8; also saved when path is given."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    sources = {"ground truth": truth, **models}
    n = len(sources)
    fig = figure(3.2 * max(n, 2) + 0.8, 6.6)
    grid = fig.add_gridspec(2, max(n, 2))
    extent = (-AB_RANGE, AB_RANGE, -AB_RANGE, AB_RANGE)
    for i, (name, dist) in enumerate(sources.items()):
        ax = fig.add_subplot(grid[0, i])
        ax.imshow(ab_plane_rgb(dist), extent=extent, interpolation="nearest")
        title = name if dist is truth else f"{name}\n\u2229 truth {intersection(dist, truth):.2f}"
        ax.set_title(f"{title}\nmean chroma {dist.mean_chroma():.1f}", fontsize=9)
        ax.set_xlabel("a"), ax.set_ylabel("b")
        ax.axhline(0, color="0.6", lw=0.5), ax.axvline(0, color="0.6", lw=0.5)
    bar = ScalarMappable(Normalize(-DECADES, 0), "Greys")
    fig.colorbar(bar, ax=fig.axes, shrink=0.8, label="log10 density / densest bin (opacity)")
    _chroma_axes(fig.add_subplot(grid[1, : max(n, 2) // 2 + max(n, 2) % 2]), sources)
    _l_axes(fig.add_subplot(grid[1, max(n, 2) // 2 + max(n, 2) % 2:]), truth)
    return figure_rgb(fig, path)


def _chroma_axes(ax, sources: dict) -> None:
    for name, dist in sources.items():
        share = dist.c / max(1, dist.c.sum())
        ax.plot(np.arange(N_CHROMA) + 0.5, share * 100, lw=2 if name == "ground truth" else 1.2,
                color="black" if name == "ground truth" else None, label=name)
    ax.set_xlabel("chroma sqrt(a\u00b2 + b\u00b2)"), ax.set_ylabel("% of pixels per unit (log)")
    ax.set_title("chroma (low = grayish; L1 training pulls it down)", fontsize=9)
    ax.set_yscale("log"), ax.set_ylim(bottom=1e-3)  # log: a gray spike at 0 and the rare saturated tail both show
    ax.set_xlim(0, 110), ax.legend(fontsize=8)


def _l_axes(ax, truth: ColorDistribution) -> None:
    share = truth.l / max(1, truth.l.sum()) * 100
    ax.bar(np.arange(N_L) + 0.5, share, width=1.0, color="0.45")
    ax.set_xlabel("L"), ax.set_ylabel("% of pixels per unit")
    ax.set_title("L of the inputs", fontsize=9)
    ax.set_xlim(0, 100)


def bins_on_plane(values: np.ndarray, bins: np.ndarray, grid: float = 10.0) -> np.ndarray:
    """(N_AB, N_AB) [a, b] array in which every histogram cell takes the value of the ab bin (color_classes) whose
    grid cell [center - grid/2, center + grid/2) holds it, 0 where no bin does: a distribution over bins, drawable."""
    offset = int(round(AB_RANGE / grid)) + 1
    index = np.full((2 * offset + 1,) * 2, -1)
    cells = np.round(np.asarray(bins) / grid).astype(int) + offset
    index[cells[:, 0], cells[:, 1]] = np.arange(len(bins))
    fine = np.clip(np.floor(bin_centers() / grid + 0.5).astype(int) + offset, 0, 2 * offset)
    found = index[fine[:, None], fine[None, :]]
    return np.where(found >= 0, np.asarray(values, np.float64)[found], 0.0)


MARKS = {"truth": dict(marker="x", color="black", s=70, linewidths=2),  # how bin_distribution_figure draws points
         "decoded": dict(marker="o", facecolors="none", edgecolors="black", s=70, linewidths=1.5),
         "mode": dict(marker="+", color="black", s=90, linewidths=1.5),
         "mean": dict(marker="^", facecolors="none", edgecolors="0.3", s=55, linewidths=1.2)}


def bin_distribution_figure(panels: dict[str, np.ndarray], bins: np.ndarray, marks: dict | None = None,
                            path=None, title: str | None = None) -> np.ndarray:
    """Distributions over the ab bins side by side on the ab plane, drawn as the ab histograms are (each bin in its
    own color at L = 50, opacity = log density); marks {name: (a, b)} are drawn on every panel (MARKS gives the
    marker of truth, decoded, mode, mean). Returns (H, W, 3) uint8; also saved when path is given."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    fig = figure(3.4 * len(panels) + 1.0, 4.0 if title else 3.7)
    extent = (-AB_RANGE, AB_RANGE, -AB_RANGE, AB_RANGE)
    for i, (name, values) in enumerate(panels.items(), 1):
        ax = fig.add_subplot(1, len(panels), i)
        ax.imshow(density_plane_rgb(bins_on_plane(values, bins)), extent=extent, interpolation="nearest")
        for label, (a, b) in (marks or {}).items():
            ax.scatter([a], [b], label=label, **MARKS.get(label, MARKS["decoded"]))
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("a"), ax.set_ylabel("b")
        ax.axhline(0, color="0.6", lw=0.5), ax.axvline(0, color="0.6", lw=0.5)
    if marks:
        fig.axes[0].legend(fontsize=7, loc="lower left")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.colorbar(ScalarMappable(Normalize(-DECADES, 0), "Greys"), ax=fig.axes, shrink=0.8,
                 label="log10 probability / top bin (opacity)")
    return figure_rgb(fig, path)
