"""The classification head (Zhang et al. 2016): a generator that predicts a distribution over the ab bins per pixel,
decoded to ab by ColorClassifier so that everything downstream sees a plain generator."""
from __future__ import annotations

import torch
from torch import nn

from gan_colorizer.ab_bins import ANNEALED_T, DECODES, decode
from gan_colorizer.runtime import unwrap


class ColorClassifier(nn.Module):
    """A generator whose net predicts Q logits per pixel over the ab bins (ab_bins.py, Zhang et al. 2016).

    forward(gray_l) returns the decoded ab like any generator, so validation, evaluation, inference, export and EMA
    need not know; forward(gray_l, return_logits=True) returns (logits, ab) for the training loss (through forward,
    so DDP syncs its gradients). The bins and the training set's color prior are buffers: checkpoints carry them.
    """

    def __init__(self, net: nn.Module, bins: torch.Tensor, temperature: float = ANNEALED_T):
        super().__init__()
        self.net = net
        self.register_buffer("bins", bins.float().clone())  # (Q, 2) ab units
        self.register_buffer("prior", torch.full((len(bins),), 1.0 / len(bins)))  # set by training
        self.decoding, self.temperature = "annealed", temperature

    @property
    def takes_hints(self) -> bool:
        return getattr(self.net, "takes_hints", False)

    def forward(self, gray_l: torch.Tensor, hints: torch.Tensor | None = None, return_logits: bool = False):
        logits = self.net(gray_l, hints) if hints is not None else self.net(gray_l)
        ab = decode(logits, self.bins, self.decoding, self.temperature)
        return (logits, ab) if return_logits else ab


def set_decoding(generator: nn.Module, how: str | None = None, temperature: float | None = None) -> str | None:
    """Choose how a classification generator turns its distribution into ab (annealed mean, mode, mean); returns a
    description, or None for a regression generator (which has nothing to decode)."""
    g = unwrap(generator)
    if not isinstance(g, ColorClassifier):
        return None
    if how is not None:
        if how not in DECODES:
            raise ValueError(f"unknown decoding {how!r}; choose from {DECODES}")
        g.decoding = how
    if temperature is not None:
        g.temperature = temperature
    return f"annealed mean, T = {g.temperature:g}" if g.decoding == "annealed" else g.decoding


def core(net: nn.Module) -> nn.Module:
    """The convolutional net itself: without DDP / compile wrappers and without a ColorClassifier around it."""
    net = unwrap(net)
    return unwrap(net.net) if isinstance(net, ColorClassifier) else net
