"""Named stages of a generator (encoder, bottleneck, decoder, head), for hooks, feature maps and weight reports.

Every network names its own stages in a named_stages() method (ours in models/resunet.py and pix2pix.py, the
published colorizers in theirs), so tools that look inside need not know any layout; one that names none is an error.
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from gan_colorizer.models.classifier import core

GROUPS = ("encoder", "bottleneck", "decoder", "head")


@dataclass
class Stage:
    name: str  # e.g. "encoder.layer2", shown in plots and reports
    group: str  # one of GROUPS
    module: nn.Module


def stages(generator: nn.Module) -> list[Stage]:
    """Every encoder stage, the bottleneck, every decoder stage and the head, in forward order."""
    g = core(generator)  # a classification head's net: its stages are the same, its output Q logits
    named = getattr(g, "named_stages", None)
    if named is None:  # a network that does not name its stages gets no labels rather than wrong ones
        raise ValueError(f"{type(g).__name__} names no stages (a named_stages() method): its layers are unknown")
    return [Stage(*stage) for stage in named()]


def group_of(generator: nn.Module) -> dict[str, str]:
    """{qualified parameter-module name: group} for every module that holds parameters."""
    g = core(generator)
    containers = [(s.group, s.module) for s in stages(g)]
    containers += g.extra_groups() if hasattr(g, "extra_groups") else []  # parameters no stage's hook covers
    owner = {id(m): group for group, c in containers for m in c.modules()}
    groups = {}
    for name, module in g.named_modules():
        if any(True for _ in module.parameters(recurse=False)):
            groups[name] = owner.get(id(module), "bottleneck")  # resunet's BatchNorm after the body
    return groups
