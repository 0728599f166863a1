"""The pix2pix PatchGAN discriminator: real or fake per 70 x 70 patch of concat(L, ab); and pix2pixHD's multi-scale
one, a PatchGAN per scale of the input (full, 1/2, 1/4...), whose intermediate features also feed the generator's
feature-matching loss."""
from __future__ import annotations

import torch
from torch import nn

from gan_colorizer.errors import UserError
from gan_colorizer.models.pix2pix import init_normal


NORMS = ("batch", "instance", "spectral", "none")  # --d-norm


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

    def features(self, gray_l: torch.Tensor, ab: torch.Tensor) -> list[torch.Tensor]:
        """Every block's output, the logits last: pix2pixHD's intermediate features (a block ends at an activation)."""
        x, out = torch.cat([gray_l, ab], dim=1), []
        for layer in self.model:
            x = layer(x)
            if isinstance(layer, nn.LeakyReLU):
                out.append(x)
        return out + [x]


class MultiScaleDiscriminator(nn.Module):
    """pix2pixHD's discriminator: `scales` PatchGANs, the k-th judging the input average-pooled k times (3x3, stride
    2, padding not counted). Its output is the list of their logit maps, coarsest last."""

    def __init__(self, scales: int, **patchgan):
        super().__init__()
        self.scales = nn.ModuleList(PatchDiscriminator(**patchgan) for _ in range(scales))
        self.pool = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)

    def _each(self, gray_l: torch.Tensor, ab: torch.Tensor):
        for i, D in enumerate(self.scales):
            yield D, gray_l, ab
            if i + 1 < len(self.scales):
                gray_l, ab = self.pool(gray_l), self.pool(ab)

    def forward(self, gray_l: torch.Tensor, ab: torch.Tensor) -> list[torch.Tensor]:
        return [D(g, a) for D, g, a in self._each(gray_l, ab)]

    def features(self, gray_l: torch.Tensor, ab: torch.Tensor) -> list[list[torch.Tensor]]:
        return [D.features(g, a) for D, g, a in self._each(gray_l, ab)]


def _norm(norm: str, channels: int) -> nn.Module:
    if norm == "batch":
        return nn.BatchNorm2d(channels)
    if norm == "instance":
        return nn.InstanceNorm2d(channels)  # pix2pix's: affine=False, track_running_stats=False
    return nn.Identity()


def build_discriminator(model_cfg) -> nn.Module:
    """One PatchGAN (--d-scales 1, pix2pix) or pix2pixHD's several, N(0, 0.02) initialised."""
    m = model_cfg
    patchgan = {"in_channels": 3, "filters": m.d_filters, "n_layers": m.d_layers, "norm": m.d_norm}
    net = PatchDiscriminator(**patchgan) if m.d_scales == 1 else MultiScaleDiscriminator(m.d_scales, **patchgan)
    return init_normal(net)


def _fits(model_cfg, size: int) -> bool:
    """Whether the discriminator trains on size x size inputs: a run on the meta device (shapes only), in training
    mode on two images (batch norm needs two values per channel, instance norm two per image)."""
    with torch.device("meta"):
        try:
            build_discriminator(model_cfg)(torch.empty(2, 1, size, size), torch.empty(2, 2, size, size))
        except (RuntimeError, ValueError):  # a 4x4 kernel larger than what is left of the input at some scale
            return False
    return True


def check_input_size(model_cfg, size: int) -> None:
    """Before a run writes anything: a UserError naming the flags when --d-layers / --d-scales shrink an
    --image-size input below the PatchGAN's 4x4 kernels, with the smallest size that fits."""
    if _fits(model_cfg, size):
        return
    fits = next((s for s in range(size + 32 - size % 32, 4097, 32) if _fits(model_cfg, s)), None)
    need = f"--image-size {fits} or more" if fits else "more than --image-size 4096"
    raise UserError(f"--d-layers {model_cfg.d_layers} with --d-scales {model_cfg.d_scales}: the discriminator's 4x4 "
                    f"convolutions run out of input at --image-size {size}; they need {need}, or fewer layers or "
                    f"scales")
