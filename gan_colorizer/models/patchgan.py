"""The pix2pix PatchGAN discriminator: real or fake per 70 x 70 patch of concat(L, ab)."""
from __future__ import annotations

import torch
from torch import nn

from gan_colorizer.models.pix2pix import init_normal


NORMS = ("batch", "instance", "spectral", "none")  # --disc-norm


class PatchDiscriminator(nn.Module):
    """pix2pix PatchGAN over concat(L, ab): 70x70 receptive field with 3 layers, a 30x30 logit map at 256 px.

    norm: batch (pix2pix), instance (pix2pix's other choice: no affine, no running statistics, so the convolutions
    keep their bias), spectral (every convolution spectrally normalised, Miyato et al. 2018, no norm layer) or none.
    The layers keep their positions whatever the norm (an Identity stands in), so parameter names stay the same."""

    def __init__(self, in_channels: int = 3, filters: int = 64, n_layers: int = 3, norm: str = "batch"):
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"unknown discriminator norm {norm!r}; choose from {NORMS}")
        conv = nn.utils.parametrizations.spectral_norm if norm == "spectral" else (lambda layer: layer)
        layers = [conv(nn.Conv2d(in_channels, filters, 4, stride=2, padding=1)), nn.LeakyReLU(0.2)]
        width = filters
        for n in range(1, n_layers + 1):
            stride = 2 if n < n_layers else 1
            out = filters * min(2 ** n, 8)
            layers += [conv(nn.Conv2d(width, out, 4, stride=stride, padding=1, bias=norm != "batch")),
                       _norm(norm, out), nn.LeakyReLU(0.2)]
            width = out
        layers.append(conv(nn.Conv2d(width, 1, 4, stride=1, padding=1)))
        self.model = nn.Sequential(*layers)

    def forward(self, gray_l: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
        return self.model(torch.cat([gray_l, ab], dim=1))


def _norm(norm: str, channels: int) -> nn.Module:
    if norm == "batch":
        return nn.BatchNorm2d(channels)
    if norm == "instance":
        return nn.InstanceNorm2d(channels)  # pix2pix's: affine=False, track_running_stats=False
    return nn.Identity()


def build_discriminator(model_cfg) -> PatchDiscriminator:
    return init_normal(PatchDiscriminator(3, model_cfg.disc_filters, model_cfg.disc_layers, model_cfg.disc_norm))
