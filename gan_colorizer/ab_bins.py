"""Colorization as classification (Zhang et al. 2016): the quantized ab bins of the sRGB gamut, soft-encoded
targets, class-rebalancing weights from a color prior, and decoding a per-pixel distribution back to ab.

Everything is computed here, nothing is downloaded. The bins are the points of the 10-unit ab grid within one grid
step (L-infinity distance < 10) of the convex hull of the sRGB gamut's ab projection: the corners of every grid
cell that the gamut touches. That gives Q = 313, the bins of Zhang et al.'s pts_in_hull.npy.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from gan_colorizer.color import AB_SCALE, rgb_to_lab
from gan_colorizer.config import DECODES

GRID = 10.0  # ab units between bin centers (the paper's grid size)
SIGMA = 5.0  # ab units: the Gaussian of the soft encoding and of the prior smoothing (the paper's sigma)
NEIGHBORS = 5  # bins each true ab is spread over
ANNEALED_T = 0.38  # the paper's temperature of the annealed mean
REBALANCE_LAMBDA = 0.5  # the paper's mix of the prior with the uniform distribution
ENCODE_CHUNK = 1 << 16  # pixels per distance block of the nearest-bin search (20 MB of float32 at Q = 313)


def _cube_surface_ab(levels: int = 256) -> np.ndarray:
    """ab of every color on the surface of the sRGB cube at 8-bit steps (the gamut's boundary holds its hull)."""
    v = torch.linspace(0.0, 1.0, levels, dtype=torch.float64)
    u, w = (t.reshape(-1) for t in torch.meshgrid(v, v, indexing="ij"))
    faces = []
    for axis in range(3):
        for value in (0.0, 1.0):
            channels = [u, w]
            channels.insert(axis, torch.full_like(u, value))
            faces.append(torch.stack(channels))
    rgb = torch.cat(faces, dim=1)[None, :, :, None]
    return rgb_to_lab(rgb)[0, 1:, :, 0].T.numpy()


def _hull(points: np.ndarray) -> np.ndarray:
    """Vertices of the convex hull, counter-clockwise."""
    from scipy.spatial import ConvexHull
    return points[ConvexHull(points).vertices]


@functools.lru_cache(maxsize=1)
def gamut_hull() -> np.ndarray:
    """(V, 2) counter-clockwise vertices of the convex hull of the ab values of all sRGB colors."""
    return _hull(_cube_surface_ab())


def _strictly_inside(polygon: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Which points lie strictly inside a counter-clockwise convex polygon."""
    edges = np.roll(polygon, -1, axis=0) - polygon
    rel = points[:, None, :] - polygon[None]
    cross = edges[None, :, 0] * rel[..., 1] - edges[None, :, 1] * rel[..., 0]
    return (cross > 0).all(axis=1)


@functools.lru_cache(maxsize=1)
def _bins() -> np.ndarray:
    square = np.array([[1, 1], [1, -1], [-1, 1], [-1, -1]]) * GRID
    dilated = _hull((gamut_hull()[:, None, :] + square[None]).reshape(-1, 2))  # the hull (+) the grid-step square
    axis = np.arange(-12, 13) * GRID
    grid = np.stack(np.meshgrid(axis, axis, indexing="ij"), -1).reshape(-1, 2)
    return grid[_strictly_inside(dilated, grid)].astype(np.float32)  # sorted by a, then b


def ab_bins() -> np.ndarray:
    """(Q, 2) bin centers in ab units, sorted by a then b; Q = 313 for the sRGB gamut. Computed once per process."""
    return _bins().copy()


def bin_tensor(device=None) -> torch.Tensor:
    return torch.from_numpy(_bins()).to(device)


def nearest_bins(ab: torch.Tensor, bins: torch.Tensor, k: int = NEIGHBORS) -> tuple[torch.Tensor, torch.Tensor]:
    """The k nearest bins of each ab (N, 2), nearest first: (indices (N, k), squared distances (N, k)).

    Exact search over all Q bins, in chunks of ENCODE_CHUNK pixels so memory stays bounded.
    """
    ab, bins = ab.float(), bins.float().to(ab.device)
    index, dist = [], []
    for start in range(0, ab.shape[0], ENCODE_CHUNK):
        d2 = torch.cdist(ab[start:start + ENCODE_CHUNK], bins).square_()
        values, found = d2.topk(k, dim=1, largest=False)
        index.append(found)
        dist.append(values)
    return torch.cat(index), torch.cat(dist)


@torch.no_grad()
def soft_encode(real_ab: torch.Tensor, bins: torch.Tensor, k: int = NEIGHBORS,
                sigma: float = SIGMA) -> tuple[torch.Tensor, torch.Tensor]:
    """Zhang et al.'s targets: each true ab (B, 2, H, W, model units) spread over its k nearest bins with Gaussian
    weights. Returns (bin indices (B, k, H, W) int64, nearest first; weights (B, k, H, W) float32, summing to 1)."""
    with torch.autocast(real_ab.device.type, enabled=False):
        b, _, h, w = real_ab.shape
        ab = real_ab.float().permute(0, 2, 3, 1).reshape(-1, 2) * AB_SCALE
        index, d2 = nearest_bins(ab, bins, k)
        weight = torch.softmax(-d2 / (2 * sigma ** 2), dim=1)  # exp(-d^2 / 2 sigma^2), normalized
        to_map = lambda t: t.view(b, h, w, k).permute(0, 3, 1, 2)  # noqa: E731
        return to_map(index), to_map(weight)


def classification_loss(logits: torch.Tensor, index: torch.Tensor, weight: torch.Tensor,
                        class_weights: torch.Tensor | None = None) -> torch.Tensor:
    """Soft-encoded cross-entropy, rebalanced per pixel by the class weight of the true ab's nearest bin (index[:, 0]);
    the mean over pixels. Gathers the k target bins from log_softmax: no dense (B, Q, H, W) target is built."""
    log_p = F.log_softmax(logits.float(), dim=1)
    ce = -(log_p.gather(1, index) * weight).sum(dim=1)
    if class_weights is not None:
        ce = ce * class_weights.to(ce.device)[index[:, 0]]
    return ce.mean()


def smooth_prior(prior: np.ndarray, bins: np.ndarray, sigma: float = SIGMA) -> np.ndarray:
    """A distribution over the bins blurred with a Gaussian over their ab distances: each bin's mass is shared with
    its neighbors (the kernel normalized per source bin, so no mass leaves the bin set). Sums to 1."""
    d2 = ((bins[:, None, :] - bins[None, :, :]) ** 2).sum(-1).astype(np.float64)
    kernel = np.exp(-d2 / (2 * sigma ** 2))
    kernel /= kernel.sum(axis=0, keepdims=True)
    smoothed = kernel @ np.asarray(prior, np.float64)
    return smoothed / smoothed.sum()


def rebalance_weights(prior: np.ndarray, lam: float = REBALANCE_LAMBDA) -> np.ndarray:
    """Zhang et al.'s class weights w ~ 1 / ((1 - lambda) p + lambda / Q), scaled so that E_p[w] = sum p w = 1.
    lambda = 1 gives w = 1 everywhere (no rebalancing); smaller lambda boosts rare colors more."""
    p = np.asarray(prior, np.float64)
    p = p / p.sum()
    w = 1.0 / ((1.0 - lam) * p + lam / p.size)
    return w / (p * w).sum()


def annealed_probs(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """softmax(log p / T) = softmax(logits / T): T = 1 is the predicted distribution, T -> 0 its mode."""
    return torch.softmax(logits.float() / temperature, dim=1)


def decode(logits: torch.Tensor, bins: torch.Tensor, how: str = "annealed",
           temperature: float = ANNEALED_T) -> torch.Tensor:
    """ab (B, 2, H, W, model units, float32) from per-pixel logits (B, Q, H, W): the annealed mean at temperature T
    (Zhang et al.: vivid like the mode, spatially consistent like the mean), the mode, or the plain mean (T = 1).
    annealed and mean are differentiable, so a discriminator's gradient reaches the logits through them."""
    with torch.autocast(logits.device.type, enabled=False):
        bins = bins.float().to(logits.device) / AB_SCALE
        if how == "mode":
            return bins[logits.argmax(dim=1)].permute(0, 3, 1, 2).contiguous()
        if how not in ("annealed", "mean"):
            raise ValueError(f"unknown decoding {how!r}; choose from {DECODES}")
        probs = annealed_probs(logits, temperature if how == "annealed" else 1.0)
        return torch.einsum("bqhw,qc->bchw", probs, bins)


@dataclass
class ClassTargets:
    """What the classification loss needs on the training device: the bins and the rebalancing weights."""
    bins: torch.Tensor  # (Q, 2) ab units
    weights: torch.Tensor  # (Q,) mean 1 under the training prior

    @classmethod
    def from_prior(cls, bins: torch.Tensor, prior: torch.Tensor, lam: float, device) -> "ClassTargets":
        weights = rebalance_weights(prior.detach().cpu().double().numpy(), lam)
        return cls(bins.detach().float().to(device), torch.from_numpy(weights).float().to(device))
