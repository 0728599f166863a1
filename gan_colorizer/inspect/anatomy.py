"""Named stages of a generator (encoder, bottleneck, decoder, head), for hooks, feature maps and weight reports.

Both generator types are described here, so tools that look inside the network need not know their layouts; any
other network (the published colorizers) names its own stages in a named_stages() method.
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from gan_colorizer.models.classifier import core
from gan_colorizer.models.pix2pix import UNetGenerator
from gan_colorizer.models.resunet import ResUNet

GROUPS = ("encoder", "bottleneck", "decoder", "head")


@dataclass
class Stage:
    name: str  # e.g. "encoder.layer2", shown in plots and reports
    group: str  # one of GROUPS
    module: nn.Module


def _resunet_stages(g: ResUNet) -> list[Stage]:
    """The ResNet body's stem and 4 stages, the middle convs, the UnetBlocks, the last upsampling and the head
    (ResBlock, 1x1 conv to ab)."""
    body = g.body
    stages = [Stage("encoder.stem", "encoder", body[2])]  # conv1 -> bn -> relu, at 1/2 resolution
    stages += [Stage(f"encoder.layer{i}", "encoder", body[3 + i]) for i in range(1, 5)]
    stages.append(Stage("bottleneck", "bottleneck", g.middle))
    stages += [Stage(f"decoder.block{i}", "decoder", m) for i, m in enumerate(g.blocks, 1)]
    stages.append(Stage("decoder.upsample", "decoder", g.upsample))
    stages += [Stage("head.resblock", "head", g.layers[-2]), Stage("head.out", "head", g.layers[-1])]
    return stages


def _unet_stages(g: UNetGenerator) -> list[Stage]:
    stages = [Stage(f"encoder.down{i}", "encoder", getattr(g, f"down{i}")) for i in range(1, 8)]
    stages.append(Stage("bottleneck", "bottleneck", g.down8))
    stages += [Stage(f"decoder.up{i}", "decoder", getattr(g, f"up{i}")) for i in range(8, 1, -1)]
    stages.append(Stage("head.out", "head", g.up1))
    return stages


def stages(generator: nn.Module) -> list[Stage]:
    """Every encoder stage, the bottleneck, every decoder stage and the head, in forward order."""
    g = core(generator)  # a classification head's net: its stages are the same, its output Q logits
    if hasattr(g, "named_stages"):
        return [Stage(*stage) for stage in g.named_stages()]
    if isinstance(g, UNetGenerator):
        return _unet_stages(g)
    if not isinstance(g, ResUNet):
        raise ValueError(f"{type(g).__name__} is neither generator type (resunet, unet): its stages are unknown")
    return _resunet_stages(g)


def group_of(generator: nn.Module) -> dict[str, str]:
    """{qualified parameter-module name: group} for every module that holds parameters."""
    g = core(generator)
    containers = [(s.group, s.module) for s in stages(g)]
    if isinstance(g, ResUNet):
        containers.append(("encoder", g.body))  # the stem's conv and BatchNorm, before the hooked ReLU
    owner = {id(m): group for group, c in containers for m in c.modules()}
    groups = {}
    for name, module in g.named_modules():
        if any(True for _ in module.parameters(recurse=False)):
            groups[name] = owner.get(id(module), "bottleneck")  # resunet's BatchNorm after the body
    return groups
