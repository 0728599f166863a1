"""The ResNet U-Net generator: fastai's DynamicUnet (the reference tutorial's and DeOldify's net) as a plain module,
on any body of models/bodies.py (ResNets, ConvNeXts, EfficientNets).

DynamicUnet finds its layout by running dummy inputs through the body at build time (4 s of a 12 s colorizing run)
and needs fastai imported (another 3.7 s). Here the body carries its layout (bodies.layout: a run on the meta
device, shapes only). On a ResNet body, parameter names and shapes, the
initialisation (the same random draws in the same order) and the outputs are DynamicUnet's; tests/test_resunet.py
builds both and compares them, so checkpoints of either load into the other.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from gan_colorizer.hints import Spread, with_hints
from gan_colorizer.models.bodies import build_body

TRACE_SIZE = (256, 256)  # the dummy input DynamicUnet drew twice at build time: drawn here too, for the same weights


def conv_layer(cin: int, cout: int, ks: int = 3, relu: bool = True, bias_std: float = 0.01) -> nn.Sequential:
    """fastai's ConvLayer as DynamicUnet uses it (no normalisation): conv then ReLU, initialised as fastai does."""
    conv = nn.Conv2d(cin, cout, ks, padding=(ks - 1) // 2)
    with torch.no_grad():
        if bias_std:
            conv.bias.normal_(0, bias_std)
        else:
            conv.bias.zero_()
    if relu:  # fastai's default init for a conv before a ReLU; none before nothing (torch's own stays)
        nn.init.kaiming_uniform_(conv.weight)
    return nn.Sequential(conv, nn.ReLU()) if relu else nn.Sequential(conv)


def batch_norm(channels: int) -> nn.BatchNorm2d:
    """fastai's BatchNorm: weight 1, bias 1e-3."""
    bn = nn.BatchNorm2d(channels)
    with torch.no_grad():
        bn.bias.fill_(1e-3)
        bn.weight.fill_(1.0)
    return bn


def kaiming_init(*layers: nn.Module) -> None:
    """fastai's apply_init: every conv's weight kaiming-normal, its bias 0, in module order."""
    for layer in layers:
        for m in layer.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)
                with torch.no_grad():
                    m.bias.zero_()


def icnr(weight: torch.Tensor, scale: int = 2) -> torch.Tensor:
    """fastai's ICNR init of a conv before PixelShuffle(scale): each group of scale**2 sub-pixels starts equal
    (no checkerboard); the reshapes are fastai's, kept as written so the same draw gives the same weights."""
    ni, nf, h, w = weight.shape
    ni2 = ni // scale ** 2
    k = nn.init.kaiming_normal_(weight.new_zeros([ni2, nf, h, w])).transpose(0, 1)
    k = k.contiguous().view(ni2, nf, -1).repeat(1, 1, scale ** 2)
    return k.contiguous().view([nf, ni, h, w]).transpose(0, 1)


def pixel_shuffle_up(cin: int, cout: int) -> nn.Sequential:
    """fastai's PixelShuffle_ICNR: a 1x1 conv to 4 * cout channels (+ ReLU), then PixelShuffle(2)."""
    conv = conv_layer(cin, cout * 4, ks=1, bias_std=0)
    with torch.no_grad():
        conv[0].weight.copy_(icnr(conv[0].weight))
    return nn.Sequential(conv, nn.PixelShuffle(2))


class UnetBlock(nn.Module):
    """Upsample the path (pixel shuffle), concatenate the normalised skip, two 3x3 convs."""

    def __init__(self, up_channels: int, skip_channels: int, final_div: bool = True):
        super().__init__()
        self.shuf = pixel_shuffle_up(up_channels, up_channels // 2)
        self.bn = batch_norm(skip_channels)
        ni = up_channels // 2 + skip_channels
        self.out_channels = ni if final_div else ni // 2
        self.conv1 = conv_layer(ni, self.out_channels)
        self.conv2 = conv_layer(self.out_channels, self.out_channels)
        self.relu = nn.ReLU()
        kaiming_init(self.conv1, self.conv2)

    def forward(self, up_in: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        up_out = self.shuf(up_in)
        if skip.shape[-2:] != up_out.shape[-2:]:  # sides that are not multiples of 32
            up_out = F.interpolate(up_out, skip.shape[-2:], mode="nearest")
        return self.conv2(self.conv1(self.relu(torch.cat([up_out, self.bn(skip)], dim=1))))


class ResizeTo(nn.Module):
    """fastai's ResizeToOrig: nearest-resize x to the input's size when they differ."""

    def forward(self, x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, like.shape[-2:], mode="nearest") if x.shape[-2:] != like.shape[-2:] else x


class CatInput(nn.Module):
    """fastai's MergeLayer(dense=True): the decoder's output with the network's input (the last cross)."""

    def forward(self, x: torch.Tensor, gray_l: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, gray_l], dim=1)


class ResBlock(nn.Module):
    """fastai's ResBlock(1, n, n) without normalisation: two 3x3 convs plus the identity, then ReLU."""

    def __init__(self, channels: int):
        super().__init__()
        self.convpath = nn.Sequential(conv_layer(channels, channels), conv_layer(channels, channels, relu=False))
        self.idpath = nn.Sequential()  # the identity (fastai's place for a 1x1 conv when the widths differ)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.convpath(x) + self.idpath(x))


def first_conv(net: nn.Module) -> nn.Conv2d:
    return next(m for m in net.modules() if isinstance(m, nn.Conv2d))


def unet_stages(body, middle, blocks, upsample, res_block, out) -> list[tuple[str, str, nn.Module]]:
    """The stages of a U-Net on a body of models/bodies.py (ours, and DeOldify's), named by where they are: the
    body's layers that cross to the decoder and its deepest (encoder.stem, encoder.layer1..4 on a ResNet; torchvision's
    own names, encoder.features.N, on the others), the middle convs, the decoder blocks, the last upsampling, the
    head's residual block and its last conv."""
    layout = body.layout
    stages = [(f"encoder.{layout.labels[i]}", "encoder", body[i]) for i in layout.stages]
    stages += [("bottleneck", "bottleneck", middle)]
    stages += [(f"decoder.block{i}", "decoder", block) for i, block in enumerate(blocks, 1)]
    return stages + [("decoder.upsample", "decoder", upsample), ("head.resblock", "head", res_block),
                     ("head.out", "head", out)]


class ResUNet(nn.Module):
    """A U-Net on a body: layers are DynamicUnet's [body, BatchNorm, ReLU, middle convs, a UnetBlock per skip,
    pixel shuffle to full size, resize to the input, concat the input, ResBlock, 1x1 conv to n_out]; a hint net's
    body reads L and the hint features (hints.Spread), and a 3x3 conv of them (hint_head) adds to the concat.

    A body whose shallowest skip is below half size (ConvNeXt's stem is 1/4) gets one pixel shuffle per halving
    there (DynamicUnet takes one and resizes the last 2x by nearest neighbour)."""

    def __init__(self, body: nn.Sequential, n_out: int):
        super().__init__()
        layout, n_in = body.layout, first_conv(body).in_channels
        self.takes_hints = n_in > 1  # a body that reads hint channels beside L (hints.py)
        self.skips = layout.skips
        for _ in range(2):  # DynamicUnet's two dummy inputs: the same random stream, so a seed gives its weights
            next(body.parameters()).new_empty(1, n_in, *TRACE_SIZE).uniform_(-1.0, 1.0)
        width = layout.channels[-1]
        middle = nn.Sequential(conv_layer(width, width * 2), conv_layer(width * 2, width))
        layers = [body, batch_norm(width), nn.ReLU(), middle]
        for i, skip in enumerate(reversed(self.skips)):
            layers.append(UnetBlock(width, layout.channels[skip], final_div=i != len(self.skips) - 1))
            width = layers[-1].out_channels
        halvings = round(math.log2(layout.factors[self.skips[0]]))  # back to full size from the shallowest skip
        ups = [pixel_shuffle_up(width, width) for _ in range(halvings)]
        layers += [ups[0] if halvings == 1 else nn.Sequential(*ups), ResizeTo(), CatInput()]
        width += 1  # L crosses to the head
        layers += [ResBlock(width), conv_layer(width, n_out, ks=1, relu=False)]
        kaiming_init(middle, layers[-2])
        self.layers = nn.ModuleList(layers)  # DynamicUnet's attribute: the parameter names are layers.N...
        if self.takes_hints:  # hints also join at full size where L crosses (the body sees them from 1/2 size on)
            self.hint_spread = Spread()
            self.hint_head = nn.Conv2d(n_in - 1, width, 3, padding=1, bias=False)
            nn.init.zeros_(self.hint_head.weight)  # no draw: an untrained hint net is the automatic one

    @property
    def body(self) -> nn.Sequential:
        return self.layers[0]

    @property
    def middle(self) -> nn.Sequential:
        return self.layers[3]

    @property
    def blocks(self) -> list[UnetBlock]:
        return list(self.layers[4:4 + len(self.skips)])

    @property
    def upsample(self) -> nn.Sequential:
        return self.layers[4 + len(self.skips)]

    size_multiple = 32  # input sides it takes: every body halves five times

    def named_stages(self) -> list[tuple[str, str, nn.Module]]:
        """(name, group, module) in forward order, for the tools that look inside (inspect/anatomy.py)."""
        *_, res_block, out = self.layers
        return unet_stages(self.body, self.middle, self.blocks, self.upsample, res_block, out)

    def extra_groups(self) -> list[tuple[str, nn.Module]]:
        """Parameters outside every stage's hook: the layers between the body's named stages (a ResNet's stem conv
        and BatchNorm before the hooked ReLU)."""
        return [("encoder", self.body)] + ([("head", self.hint_head)] if self.takes_hints else [])

    def forward(self, gray_l: torch.Tensor, hints: torch.Tensor | None = None) -> torch.Tensor:
        """gray_l (N, 1, H, W); a hint net also reads hints (N, 3, H, W) from hints.model_input (none: automatic)."""
        body, bn, relu, middle = self.layers[:4]
        features = self.hint_spread(gray_l, hints) if self.takes_hints else None
        skips, x = [], gray_l if features is None else with_hints(gray_l, features)
        for i, child in enumerate(body):
            x = child(x)
            if i in self.skips:
                skips.append(x)
        x = middle(relu(bn(x)))
        for block, skip in zip(self.blocks, reversed(skips)):
            x = block(x, skip)
        upsample, resize, cat, res_block, out = self.layers[4 + len(self.skips):]
        x = cat(resize(upsample(x), gray_l), gray_l)
        if self.takes_hints and hints is not None:
            x = x + self.hint_head(features.to(x.dtype))
        return out(res_block(x))


def resunet(backbone: str = "resnet18", weights: dict | None = None, source: str = "", n_out: int = 2,
            in_channels: int = 1) -> ResUNet:
    """The U-Net on a body of models/bodies.py (fastai's DynamicUnet layout); 31,099,672 parameters with resnet18
    (the reference tutorial's net); in_channels 1 + hints.FEATURES for a hint net (L, the hints, their spread)."""
    return ResUNet(build_body(backbone, weights, source, in_channels), n_out)
