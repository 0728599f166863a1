"""The pix2pix PatchGAN discriminator: real or fake per 70 x 70 patch of concat(L, ab)."""
from __future__ import annotations

import torch
from torch import nn

from gan_colorizer.models.pix2pix import init_normal


class PatchDiscriminator(nn.Module):
    """pix2pix PatchGAN over concat(L, ab): 70x70 receptive field with 3 layers, a 30x30 logit map at 256 px."""

    def __init__(self, in_channels: int = 3, filters: int = 64, n_layers: int = 3):
        super().__init__()
        layers = [nn.Conv2d(in_channels, filters, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        width = filters
        for n in range(1, n_layers + 1):
            stride = 2 if n < n_layers else 1
            out = filters * min(2 ** n, 8)
            layers += [nn.Conv2d(width, out, 4, stride=stride, padding=1, bias=False), nn.BatchNorm2d(out),
                       nn.LeakyReLU(0.2)]
            width = out
        layers.append(nn.Conv2d(width, 1, 4, stride=1, padding=1))
        self.model = nn.Sequential(*layers)

    def forward(self, gray_l: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
        return self.model(torch.cat([gray_l, ab], dim=1))


def build_discriminator(model_cfg) -> PatchDiscriminator:
    return init_normal(PatchDiscriminator(3, model_cfg.disc_filters, model_cfg.disc_layers))
