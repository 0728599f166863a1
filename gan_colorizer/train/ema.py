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
        """One fused lerp over every parameter and one copy over every buffer (a kernel launch per tensor would be
        a few hundred per step on a GPU)."""
        current = unwrap(generator)
        torch._foreach_lerp_(list(self.model.parameters()), [p.detach() for p in current.parameters()],
                             1.0 - self.decay)
        buffers = list(self.model.buffers())
        if buffers:
            torch._foreach_copy_(buffers, list(current.buffers()))
