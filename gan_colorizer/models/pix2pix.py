"""pix2pix's generators (Isola et al. 2017; Zhu et al. 2017's CycleGAN code): the U-Net (unet_256) and the ResNet
generator with 9 residual blocks (resnet_9blocks), and their N(0, 0.02) initialisation."""
from __future__ import annotations

import torch
from torch import nn

from gan_colorizer.hints import Spread, with_hints


def _down(cin: int, cout: int, act: bool = True, norm: bool = True) -> nn.Sequential:
    layers = [nn.LeakyReLU(0.2)] if act else []
    layers.append(nn.Conv2d(cin, cout, 4, stride=2, padding=1, bias=False))
    if norm:
        layers.append(nn.BatchNorm2d(cout))
    return nn.Sequential(*layers)


def _up(cin: int, cout: int, dropout: float = 0.0) -> nn.Sequential:
    layers = [nn.ReLU(), nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1, bias=False), nn.BatchNorm2d(cout)]
    if dropout:
        layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


class UNetGenerator(nn.Module):
    """The pix2pix U-Net (unet_256): 8 stride-2 downsamplings, skips by concatenation, dropout in 3 decoder blocks.
    logits=True leaves out the final tanh (class logits are unbounded)."""

    def __init__(self, in_channels: int = 1, out_channels: int = 2, filters: int = 64, dropout: float = 0.5,
                 logits: bool = False):
        super().__init__()
        f = filters
        self.down1 = _down(in_channels, f, act=False, norm=False)
        self.down2, self.down3, self.down4 = _down(f, 2 * f), _down(2 * f, 4 * f), _down(4 * f, 8 * f)
        self.down5, self.down6, self.down7 = _down(8 * f, 8 * f), _down(8 * f, 8 * f), _down(8 * f, 8 * f)
        self.down8 = _down(8 * f, 8 * f, norm=False)  # bottleneck: 1x1 at 256 px
        self.up8 = _up(8 * f, 8 * f)
        self.up7, self.up6, self.up5 = (_up(16 * f, 8 * f, dropout) for _ in range(3))
        self.up4, self.up3, self.up2 = _up(16 * f, 4 * f), _up(8 * f, 2 * f), _up(4 * f, f)
        self.up1 = nn.Sequential(nn.ReLU(), nn.ConvTranspose2d(2 * f, out_channels, 4, stride=2, padding=1),
                                 *([] if logits else [nn.Tanh()]))
        self.takes_hints = in_channels > 1  # L, then the hint features (hints.Spread of hints.model_input)
        self.hint_spread = Spread() if self.takes_hints else None

    size_multiple = 256  # input sides it takes: eight stride-2 downsamplings

    def named_stages(self) -> list[tuple[str, str, nn.Module]]:
        """(name, group, module) in forward order (inspect/anatomy.py): down1-7, the bottleneck, up8-up2, the head."""
        stages = [(f"encoder.down{i}", "encoder", getattr(self, f"down{i}")) for i in range(1, 8)]
        stages.append(("bottleneck", "bottleneck", self.down8))
        stages += [(f"decoder.up{i}", "decoder", getattr(self, f"up{i}")) for i in range(8, 1, -1)]
        return stages + [("head.out", "head", self.up1)]

    def forward(self, gray_l: torch.Tensor, hints: torch.Tensor | None = None) -> torch.Tensor:
        d1 = self.down1(with_hints(gray_l, self.hint_spread(gray_l, hints)) if self.takes_hints else gray_l)
        d2 = self.down2(d1)
        d3 = self.down3(d2)
        d4 = self.down4(d3)
        d5 = self.down5(d4)
        d6 = self.down6(d5)
        d7 = self.down7(d6)
        u = self.up8(self.down8(d7))
        u = self.up7(torch.cat([d7, u], 1))
        u = self.up6(torch.cat([d6, u], 1))
        u = self.up5(torch.cat([d5, u], 1))
        u = self.up4(torch.cat([d4, u], 1))
        u = self.up3(torch.cat([d3, u], 1))
        u = self.up2(torch.cat([d2, u], 1))
        return self.up1(torch.cat([d1, u], 1))


class ResidualBlock(nn.Module):
    """Two reflection-padded 3x3 convs with batch norm, ReLU between, added to the input."""

    def __init__(self, width: int):
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(width, width, 3, bias=False), nn.BatchNorm2d(width), nn.ReLU(True),
            nn.ReflectionPad2d(1), nn.Conv2d(width, width, 3, bias=False), nn.BatchNorm2d(width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class ResnetGenerator(nn.Module):
    """pix2pix / CycleGAN's resnet_9blocks with batch norm and without dropout (CycleGAN's default): a 7x7 stem, two
    stride-2 convs to 1/4 size, `blocks` residual blocks there, two transposed convs back, a 7x7 conv and tanh (left
    out for class logits)."""

    size_multiple = 4  # two stride-2 steps

    def __init__(self, in_channels: int = 1, out_channels: int = 2, filters: int = 64, blocks: int = 9,
                 logits: bool = False):
        super().__init__()
        f = filters
        layers = [nn.ReflectionPad2d(3), nn.Conv2d(in_channels, f, 7, bias=False), nn.BatchNorm2d(f), nn.ReLU(True)]
        for k in (1, 2):  # down to 1/4 size
            layers += [nn.Conv2d(f * k, f * 2 * k, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(f * 2 * k),
                       nn.ReLU(True)]
        layers += [ResidualBlock(4 * f) for _ in range(blocks)]
        for k in (4, 2):  # back to full size
            layers += [nn.ConvTranspose2d(f * k, f * k // 2, 3, stride=2, padding=1, output_padding=1, bias=False),
                       nn.BatchNorm2d(f * k // 2), nn.ReLU(True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(f, out_channels, 7), *([] if logits else [nn.Tanh()])]
        self.model = nn.Sequential(*layers)  # pix2pix's attribute: its files name these model.N...
        self.blocks, self.tail = blocks, 2 if logits else 3  # the output conv's layers: pad, conv (, tanh)
        self.takes_hints = in_channels > 1
        if self.takes_hints:  # the hints also join at full size before the output conv (the body sees them at 1/4)
            self.hint_spread = Spread()
            self.hint_head = nn.Conv2d(in_channels - 1, f, 3, padding=1, bias=False)

    def named_stages(self) -> list[tuple[str, str, nn.Module]]:
        """(name, group, module) in forward order (inspect/anatomy.py): the stem, the two downsamplings, the residual
        blocks, the two upsamplings, the output conv."""
        m, n = self.model, self.blocks
        stages = [("encoder.stem", "encoder", m[3]), ("encoder.down1", "encoder", m[6]),
                  ("encoder.down2", "encoder", m[9])]
        stages += [(f"bottleneck.block{i}", "bottleneck", m[9 + i]) for i in range(1, n + 1)]
        stages += [("decoder.up1", "decoder", m[12 + n]), ("decoder.up2", "decoder", m[15 + n])]
        return stages + [("head.out", "head", m[-1])]

    def extra_groups(self) -> list[tuple[str, nn.Module]]:
        """Parameters outside every stage's hook (inspect/anatomy.py): a hint net's hint_head."""
        return [("head", self.hint_head)] if self.takes_hints else []

    def forward(self, gray_l: torch.Tensor, hints: torch.Tensor | None = None) -> torch.Tensor:
        if not self.takes_hints:
            return self.model(gray_l)
        features = self.hint_spread(gray_l, hints)
        x = self.model[:-self.tail](with_hints(gray_l, features))
        return self.model[-self.tail:](x + self.hint_head(features.to(x.dtype)))


def init_normal(net: nn.Module, std: float = 0.02) -> nn.Module:
    """pix2pix init: conv weights N(0, std), BatchNorm weights N(1, std), biases 0."""
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, std)
            nn.init.zeros_(m.bias)
    return net
