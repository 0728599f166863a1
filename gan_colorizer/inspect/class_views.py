"""What a classification head predicts, for people: one pixel's distribution over the ab bins (visualize.py --pixel),
top-k distributions on a coarse grid for the report's pixel inspector, the training prior, and how a checkpoint
decodes (evaluate.py and colorize.py --decode).
"""
from __future__ import annotations

import base64

import numpy as np
import torch

from gan_colorizer.ab_bins import annealed_probs
from gan_colorizer.color import lab_to_rgb
from gan_colorizer.inspect.ab_histograms import PLOT_L, bin_distribution_figure
from gan_colorizer.models.classifier import ColorClassifier, set_decoding
from gan_colorizer.runtime import unwrap

GRID_SIDE = 48  # the inspector keeps the distributions of at most 48 x 48 pixels per image and model
TOP_K = 16  # bins kept per pixel (the rest of the probability is shown as such)


def classifier(generator: torch.nn.Module | None) -> ColorClassifier | None:
    g = unwrap(generator) if generator is not None else None
    return g if isinstance(g, ColorClassifier) else None


def head_info(generator: torch.nn.Module, ckpt: dict, decode: str | None = None,
              temperature: float | None = None) -> dict:
    """Apply --decode / --annealed-t to a classification generator and say what it does (for summary.json); a
    regression generator ignores them, and the summary says so."""
    described = set_decoding(generator, decode, temperature)
    if described is not None:
        return {"head": "classification", "decode": described, "color_prior": ckpt.get("color_prior")}
    given = decode is not None or temperature is not None
    return {"head": "regression", **({"decode": "ignored: a regression head predicts ab directly"} if given else {})}


@torch.no_grad()
def logits_of(generator: torch.nn.Module, gray_l: torch.Tensor, runtime=None) -> torch.Tensor:
    """(B, Q, H, W) float32 logits of a classification generator for gray_l at the network's input size."""
    g = classifier(generator)
    if runtime is None:
        return g(gray_l, return_logits=True)[0].float()
    with runtime.autocast():
        return g(runtime.layout(gray_l), return_logits=True)[0].float()


def bin_colors(bins: torch.Tensor | np.ndarray) -> np.ndarray:
    """(Q, 3) uint8: each bin's color at L = 50, as the ab-plane plots draw it (clipped to sRGB)."""
    ab = torch.as_tensor(np.asarray(bins), dtype=torch.float64)
    lab = torch.cat([torch.full((len(ab), 1), PLOT_L, dtype=torch.float64), ab], 1).T[None, :, :, None]
    return (lab_to_rgb(lab)[0, :, :, 0].T * 255).round().to(torch.uint8).numpy()


def pixel_figure(logits: torch.Tensor, bins: torch.Tensor, temperature: float, marks: dict, title: str, path=None):
    """One pixel's logits (Q,) drawn on the ab plane: the predicted distribution (T = 1) and the annealed one."""
    p = annealed_probs(logits[None, :, None, None], 1.0).flatten().cpu().numpy()
    annealed = annealed_probs(logits[None, :, None, None], temperature).flatten().cpu().numpy()
    panels = {"predicted distribution (T = 1)": p, f"annealed (T = {temperature:g})": annealed}
    return bin_distribution_figure(panels, bins.cpu().numpy(), marks, path, title)


def pixel_marks(logits: torch.Tensor, bins: torch.Tensor, decoded_ab, true_ab=None) -> dict:
    """{name: (a, b)} in ab units: the truth (when known), the decoded ab in use, the mode and the plain mean."""
    p = torch.softmax(logits.float(), 0)
    bins = bins.float().cpu()
    marks = {} if true_ab is None else {"truth": tuple(float(v) for v in true_ab)}
    marks["decoded"] = tuple(float(v) for v in decoded_ab)
    marks["mode"] = tuple(bins[int(p.argmax())].tolist())
    marks["mean"] = tuple((p.cpu()[:, None] * bins).sum(0).tolist())
    return marks


def top_bins(logits: torch.Tensor, bins: torch.Tensor, k: int = 5) -> list[dict]:
    p = torch.softmax(logits.float(), 0).cpu()
    top = p.topk(min(k, len(p)))
    return [{"a": float(bins[i, 0]), "b": float(bins[i, 1]), "p": round(float(v), 6)}
            for v, i in zip(top.values, top.indices)]


def grid_positions(n: int, side: int = GRID_SIDE) -> torch.Tensor:
    """The network pixels sampled along one axis of n pixels: cell centers of min(n, side) equal cells."""
    cells = min(n, side)
    return ((torch.arange(cells, dtype=torch.float64) + 0.5) * n / cells).floor().long()  # as report.js computes it


def inspector_grid(logits: torch.Tensor, k: int = TOP_K, side: int = GRID_SIDE) -> dict:
    """The top-k bins and probabilities of the pixels at grid_positions of one image's logits (Q, H, W), packed
    for the page: indices uint16 and probabilities uint16 (/ 65535), little-endian base64, cell-major."""
    q, h, w = logits.shape
    rows, cols = grid_positions(h, side), grid_positions(w, side)
    sampled = logits[:, rows][:, :, cols].float()
    p = torch.softmax(sampled, dim=0).permute(1, 2, 0).reshape(-1, q)
    top = p.topk(min(k, q), dim=1)
    index = top.indices.cpu().numpy().astype("<u2")
    prob = (top.values.cpu().numpy() * 65535).round().astype("<u2")
    pack = lambda a: base64.b64encode(a.tobytes()).decode("ascii")  # noqa: E731
    return {"net": [w, h], "grid": [len(cols), len(rows)], "k": index.shape[1], "index": pack(index),
            "prob": pack(prob)}


def page_bins(generator: torch.nn.Module) -> dict:
    """The bins of a classification generator as the page draws them: ab and their colors at L = 50."""
    bins = classifier(generator).bins.cpu()
    return {"ab": bins.round().int().tolist(), "rgb": bin_colors(bins).tolist()}


def prior_figure(generator: torch.nn.Module, path, info: dict | None = None) -> np.ndarray:
    """The training prior a classification checkpoint holds, drawn on the ab plane."""
    from gan_colorizer.ab_prior import prior_title
    g = classifier(generator)
    return bin_distribution_figure({"training prior, smoothed (sigma 5)": g.prior.cpu().numpy()},
                                   g.bins.cpu().numpy(), path=path, title=prior_title(info))
