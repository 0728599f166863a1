"""Exponential moving average of the generator's weights (as DDColor keeps), updated every optimizer step."""
from __future__ import annotations

import copy

import torch
from torch import nn

from gan_colorizer.runtime import unwrap


class EMA:
    """A frozen copy whose parameters follow the generator: ema = decay * ema + (1 - decay) * current.

    BatchNorm statistics and other buffers are copied, not averaged: they are statistics already.
    """

    def __init__(self, generator: nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.model = copy.deepcopy(unwrap(generator)).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, generator: nn.Module) -> None:
        current = unwrap(generator)
        for ema_p, p in zip(self.model.parameters(), current.parameters()):
            ema_p.lerp_(p.detach(), 1.0 - self.decay)
        for ema_b, b in zip(self.model.buffers(), current.buffers()):
            ema_b.copy_(b)
