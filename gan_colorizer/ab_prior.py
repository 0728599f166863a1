"""The color prior of a training set for --head classification (Zhang et al. 2016): how often each ab bin occurs
among the training pixels, smoothed with a Gaussian (sigma 5 ab units).

Computed once per run (rank 0 under torchrun) from a seeded sample of --prior-images training images, center
crops at --image-size; cached in runs/NAME as prior.npy with prior.json (what it was made from) and prior.png; and
kept in every checkpoint as the generator's `prior` buffer, so resume, evaluation and the report need no run folder.
"""
from __future__ import annotations

import json
import logging
import random
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from gan_colorizer.ab_bins import SIGMA, ClassTargets, nearest_bins
from gan_colorizer.color import rgb_to_lab
from gan_colorizer.runtime import unwrap

log = logging.getLogger("gan_colorizer")
FINE_RANGE = 110  # pixels are counted in a 1-unit ab histogram over [-110, 110] before they go to their bins
BATCH = 16


def fine_histogram(images: torch.Tensor) -> torch.Tensor:
    """(2 * FINE_RANGE) ** 2 pixel counts of a uint8 sRGB batch (B, 3, H, W) in 1 x 1 ab cells, [a, b] flattened."""
    ab = rgb_to_lab(images.float() / 255.0)[:, 1:]
    n = 2 * FINE_RANGE
    cell = (ab + FINE_RANGE).floor().long().clamp_(0, n - 1)
    return torch.bincount((cell[:, 0] * n + cell[:, 1]).flatten(), minlength=n * n)


def bin_counts(fine: np.ndarray, bins: np.ndarray) -> np.ndarray:
    """(Q,) pixel counts per ab bin: every 1-unit cell's pixels go to the bin nearest its center."""
    n = 2 * FINE_RANGE
    centers = np.arange(n) - FINE_RANGE + 0.5
    cells = torch.from_numpy(np.stack(np.meshgrid(centers, centers, indexing="ij"), -1).reshape(-1, 2))
    nearest = nearest_bins(cells.float(), torch.from_numpy(bins), k=1)[0][:, 0].numpy()
    return np.bincount(nearest, weights=np.asarray(fine, np.float64).reshape(-1), minlength=len(bins))


def empirical_prior(files: list, image_size: int, n_images: int, seed: int, workers: int, device,
                    bins: np.ndarray, embedded: bool = False) -> tuple[np.ndarray, dict]:
    """(smoothed prior over the bins, what it was made from) from a seeded sample of n_images of the files."""
    from gan_colorizer.ab_bins import smooth_prior
    from gan_colorizer.data.dataset import PhotoDataset
    chosen = sorted(random.Random(seed).sample(range(len(files)), min(n_images, len(files))))
    dataset = PhotoDataset(files, image_size, train=False, cache=embedded)
    loader = DataLoader(dataset, batch_size=BATCH, sampler=chosen, num_workers=min(workers, len(chosen)))
    fine = torch.zeros((2 * FINE_RANGE) ** 2, dtype=torch.int64, device=device)
    for pixels, _ in loader:
        fine += fine_histogram(pixels.to(device))
    counts = bin_counts(fine.cpu().numpy(), bins)
    info = {"images": len(chosen), "of_images": len(files), "pixels": int(counts.sum()), "image_size": image_size,
            "seed": seed, "sigma": SIGMA, "q": len(bins)}
    return smooth_prior(counts / max(1.0, counts.sum()), bins), info


def _key(info: dict) -> dict:
    return {k: info.get(k) for k in ("data_digest", "images", "image_size", "seed", "sigma", "q")}


def cached_prior(run_dir: Path, info: dict) -> tuple[np.ndarray, dict] | None:
    """runs/NAME/prior.npy when prior.json says it was made from the same files and settings."""
    try:
        saved = json.loads((run_dir / "prior.json").read_text())
        prior = np.load(run_dir / "prior.npy")
    except (OSError, ValueError):
        return None
    if _key(saved) != _key(info) or prior.shape != (info["q"],):
        return None
    return prior, saved


def prior_title(info: dict | None) -> str:
    if not info:
        return "color prior of the training set"
    return (f"color prior of the training set\n{info['pixels']:,} pixels of {info['images']} images "
            f"({info['image_size']} px center crops)")


def attach(generator: torch.nn.Module, prior: np.ndarray | None, cfg, device) -> ClassTargets:
    """Put the prior into the generator (None: keep the one it holds, e.g. from the checkpoint of a resume) and return
    the loss's bins and rebalancing weights."""
    g = unwrap(generator)
    if prior is not None:
        g.prior.copy_(torch.as_tensor(prior, dtype=g.prior.dtype))
    targets = ClassTargets.from_prior(g.bins, g.prior, cfg.optim.rebalance_lambda, device)
    w = targets.weights
    log.info("classification head: Q = %d ab bins, class weights %.3g .. %.3g (--rebalance-lambda %g), annealed "
             "mean T = %g", len(w), float(w.min()), float(w.max()), cfg.optim.rebalance_lambda, cfg.model.annealed_t)
    if cfg.optim.recon_loss != "l1":
        log.info("note: --recon-loss is not used by --head classification (its loss is the cross-entropy)")
    return targets
