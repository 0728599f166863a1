"""DeOldify (Jason Antic, jantic/DeOldify) as its authors run it: a U-Net on an ImageNet ResNet whose decoder is
spectrally normalised, with one self-attention layer, trained with NoGAN. Three generators are published: artistic
(ResNet34, the "deep" decoder: two convs per step, 1.5x wider), stable and video (ResNet101, the "wide" decoder:
one conv per step, 512 x nf_factor 2 channels). The network reads the photo as gray RGB at render_factor x 16
pixels square and returns ImageNet-normalised RGB there; its colour is taken, its brightness is not.

Attribute names and indices (layers.0 the body ... layers.11 the last conv) are fastai's DynamicUnet's as DeOldify's
generators.py and unet.py build it, so the authors' learner files load unchanged.
"""
from __future__ import annotations

import contextlib
from functools import partial

import numpy as np
import torch
import torchvision
from PIL import Image
from torch import nn

from gan_colorizer.color import rgb_to_lab
from gan_colorizer.models.ddcolor import PixelShuffleUp, spectral_conv
from gan_colorizer.models.published import PublishedModel, Weights
from gan_colorizer.models.bodies import layout
from gan_colorizer.models.resunet import CatInput, first_conv, unet_stages
from gan_colorizer.weights import load_state_dict_file

RENDER_BASE = 16  # the render size is render_factor x 16 px (ColorizerFilter.render_base)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # fastai's imagenet_stats, in and out
Y_RANGE = (-3.0, 3.0)  # the output's SigmoidRange, in normalised units
SOURCE = "https://github.com/jantic/DeOldify"
LICENCE = "MIT (jantic/DeOldify LICENSE; its README releases the weights under MIT too)"


def conv_block(c_in: int, c_out: int, kernel: int = 3, batch_norm: bool = True, relu: bool = True,
               attention: bool = False) -> nn.Sequential:
    """DeOldify's custom_conv_layer: a spectral conv (bias only without BatchNorm), ReLU, BatchNorm, and on one
    block self-attention, each where the files index it (0, 1, 2, 3)."""
    layers: list[nn.Module] = [spectral_conv(c_in, c_out, kernel, bias=not batch_norm)]
    layers += [nn.ReLU(inplace=True)] if relu else []
    layers += [nn.BatchNorm2d(c_out)] if batch_norm else []
    layers += [SelfAttention(c_out)] if attention else []
    return nn.Sequential(*layers)


class SelfAttention(nn.Module):
    """SAGAN's self-attention (fastai's SelfAttention): every position mixes in every other by the softmax of
    query . key; gamma (0 at the start of training) sets how much."""

    def __init__(self, channels: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1))
        self.query = nn.utils.spectral_norm(nn.Conv1d(channels, channels // 8, 1, bias=False))
        self.key = nn.utils.spectral_norm(nn.Conv1d(channels, channels // 8, 1, bias=False))
        self.value = nn.utils.spectral_norm(nn.Conv1d(channels, channels, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(2)
        f, g, h = self.query(flat), self.key(flat), self.value(flat)
        beta = torch.softmax(torch.bmm(f.permute(0, 2, 1).contiguous(), g), dim=1)
        return (self.gamma * torch.bmm(h, beta) + flat).view(x.shape)


class WeightNormConv(nn.Conv2d):
    """A 1x1 conv with weight normalisation (torch's legacy weight_norm layout: bias, weight_g, weight_v): the
    weight is weight_v scaled to the norm weight_g, per output channel."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__(c_in, c_out, 1)
        del self._parameters["weight"]
        self.weight_g = nn.Parameter(torch.ones(c_out, 1, 1, 1))
        self.weight_v = nn.Parameter(torch.randn(c_out, c_in, 1, 1) / c_in ** 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight_v * (self.weight_g / torch.linalg.vector_norm(self.weight_v, dim=(1, 2, 3), keepdim=True))
        return self._conv_forward(x, weight, self.bias)


class FinalShuffleUp(PixelShuffleUp):
    """fastai's PixelShuffle_ICNR at its defaults, the last 2x to full size: the decoder blocks' upsampling, its
    1x1 conv weight-normalised with a bias instead of spectral + BatchNorm."""

    def __init__(self, channels: int):
        super().__init__(channels, channels, batch_norm=False)
        self.conv = nn.Sequential(WeightNormConv(channels, channels * self.scale ** 2))


class UpJoin(nn.Module):
    """A decoder step's start: upsample 2x, nearest-resize to the skip when a side was odd, join the skip
    (batch-normalised), ReLU."""

    def __init__(self, c_in: int, c_up: int, c_skip: int):
        super().__init__()
        self.shuf = PixelShuffleUp(c_in, c_up)
        self.bn = nn.BatchNorm2d(c_skip)

    def join(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        up = self.shuf(x)
        if up.shape[-2:] != skip.shape[-2:]:
            up = nn.functional.interpolate(up, skip.shape[-2:], mode="nearest")
        return torch.relu(torch.cat([up, self.bn(skip)], dim=1))


class DeepBlock(UpJoin):
    """Artistic's decoder step (UnetBlockDeep): the joined channels (halved on the last step) times nf_factor,
    through two convs."""

    def __init__(self, c_in: int, c_skip: int, last: bool, attention: bool, nf_factor: float = 1.5):
        super().__init__(c_in, c_in // 2, c_skip)
        joined = c_in // 2 + c_skip
        self.out_channels = int((joined // 2 if last else joined) * nf_factor)
        self.conv1 = conv_block(joined, self.out_channels)
        self.conv2 = conv_block(self.out_channels, self.out_channels, attention=attention)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.conv1(self.join(x, skip)))


class WideBlock(UpJoin):
    """Stable's and video's decoder step (UnetBlockWide): a fixed width (half of it on the last step), the
    upsampled path and the output each half of that, one conv."""

    def __init__(self, c_in: int, c_skip: int, last: bool, attention: bool, nf_factor: int = 2):
        width = 512 * nf_factor // (2 if last else 1)
        super().__init__(c_in, width // 2, c_skip)
        self.out_channels = width // 2
        self.conv = conv_block(width // 2 + c_skip, self.out_channels, attention=attention)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv(self.join(x, skip))


class ResidualConvs(nn.Module):
    """fastai's res_block as DeOldify norms it: two 3x3 spectral convs with bias and ReLU, plus the input."""

    def __init__(self, channels: int):
        super().__init__()
        self.layers = nn.ModuleList([conv_block(channels, channels, batch_norm=False),
                                     conv_block(channels, channels, batch_norm=False)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.layers[1](self.layers[0](x))


class DeOldify(nn.Module):
    """ImageNet-normalised gray RGB (N, 3, H, W), sides multiples of 16 -> ImageNet-normalised RGB (N, 3, H, W),
    each channel within Y_RANGE. backbone: torchvision's resnet34 or resnet101; block: DeepBlock or WideBlock."""

    def __init__(self, backbone: str = "resnet34", block=DeepBlock):
        super().__init__()
        body = nn.Sequential(*list(getattr(torchvision.models, backbone)(weights=None).children())[:-2])
        body.layout = layout(backbone)  # the same layers as our gray body's (models/bodies.py), RGB in
        channels, self.skips = body.layout.channels, body.layout.skips
        width = channels[-1]
        middle = nn.Sequential(conv_block(width, width * 2), conv_block(width * 2, width))
        layers = [body, nn.BatchNorm2d(width), nn.ReLU(), middle]
        for i, skip in enumerate(reversed(self.skips)):  # self-attention on the second step, at 1/8 size
            layers.append(block(width, channels[skip], last=i == len(self.skips) - 1, attention=i == 1))
            width = layers[-1].out_channels
        n_in = first_conv(body).in_channels
        layers += [FinalShuffleUp(width), CatInput(), ResidualConvs(width + n_in),
                   nn.Sequential(spectral_conv(width + n_in, 3))]
        self.layers = nn.ModuleList(layers)  # fastai's SequentialEx: the files' names are layers.N...

    def named_stages(self) -> list[tuple[str, str, nn.Module]]:
        """(name, group, module) in forward order (inspect/anatomy.py), named as our ResNet U-Net's are: the body's
        stem and four stages, the middle convs, the decoder steps and the last upsampling, the residual convs and the
        last conv (before the sigmoid)."""
        body, _, _, middle, *blocks, last_up, _, residual, head = self.layers
        return unet_stages(body, middle, blocks, last_up, residual, head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        body, norm, _, middle, *blocks, last_up, cat, residual, head = self.layers
        skips, y = {}, x
        for i, child in enumerate(body):
            y = child(y)
            if i in self.skips:  # the last output at each size: relu (1/2), layer1 (1/4), layer2, layer3 (1/16)
                skips[i] = y
        y = middle(torch.relu(norm(y)))
        for block, i in zip(blocks, reversed(self.skips)):
            y = block(y, skips[i])
        y = head(residual(cat(last_up(y), x)))
        low, high = Y_RANGE
        return torch.sigmoid(y) * (high - low) + low


def read_published(path, what: str) -> dict:
    """The network's state dict from a DeOldify weight file, read weights-only. Their learner saves
    {'model': state dict, 'opt': the optimizer's state dict}, whose learning rates fastai leaves as Python slices
    (its default lr, slice(3e-3)); slice builds a plain value and runs no code, so it joins the allowed types
    (torch >= 2.5; before, such a file is refused in one line)."""
    with learner_globals():
        return load_state_dict_file(path, what)


def learner_globals():
    """Where torch allows it (2.5+), a weights-only load that also accepts the slices of a learner file."""
    allow = getattr(torch.serialization, "safe_globals", None)
    return allow([slice]) if allow else contextlib.nullcontext()


def prepare(rgb: torch.Tensor, size: int) -> torch.Tensor:
    """The authors' input from sRGB (N, 3 or 1, H, W) in [0, 1]: the 8-bit photo stretched to size x size by PIL's
    bilinear, made gray by PIL (convert('LA'), ITU-R 601 luma, 8-bit) and back to RGB, / 255, ImageNet-normalised.
    PIL itself: its fixed-point resize and luma set the levels."""
    levels = (rgb.detach().float().clamp(0.0, 1.0) * 255.0).round().expand(-1, 3, -1, -1)
    gray = []
    for photo in levels.permute(0, 2, 3, 1).to("cpu", torch.uint8).numpy():
        small = Image.fromarray(photo).resize((size, size), Image.Resampling.BILINEAR)
        gray.append(np.asarray(small.convert("LA").convert("RGB"), dtype=np.float32))
    x = torch.from_numpy(np.stack(gray)).permute(0, 3, 1, 2).to(rgb.device) / 255.0
    mean, std = (torch.tensor(v, device=rgb.device).view(1, 3, 1, 1) for v in (IMAGENET_MEAN, IMAGENET_STD))
    return (x - mean) / std


def to_ab(output: torch.Tensor, rgb: torch.Tensor) -> torch.Tensor:
    """Lab ab at render size of the authors' 8-bit render: the output de-normalised, clamped to [0, 1] (fastai's
    reconstruct), times 255 and truncated (their astype(uint8)), as _model_process makes it."""
    mean, std = (torch.tensor(v, device=output.device).view(1, 3, 1, 1) for v in (IMAGENET_MEAN, IMAGENET_STD))
    levels = ((output.float() * std + mean).clamp(0.0, 1.0) * 255.0).floor()
    return rgb_to_lab(levels.double() / 255.0)[:, 1:].float()


def build_artistic() -> DeOldify:
    return DeOldify("resnet34", DeepBlock)


def build_wide() -> DeOldify:
    return DeOldify("resnet101", WideBlock)


PAPER = ("Jason Antic. DeOldify: a deep learning based project for colorizing and restoring old images (and "
         "video!). GitHub repository jantic/DeOldify, 2019 (NoGAN training; no paper)")


def _entry(name: str, build, render_factor: int, url: str) -> PublishedModel:
    size = render_factor * RENDER_BASE
    return PublishedModel(name=name, build=build, prepare=partial(prepare, size=size), to_ab=to_ab,
                          render_size=size, weights=Weights(url=url, container="model"),
                          paper=PAPER, source=SOURCE, licence=LICENCE)


# render factors: visualize.py's defaults (get_artistic/stable_image_colorizer 35, get_video_colorizer 21). The
# README links stable's file as a Dropbox page (?dl=0); ?dl=1 is the same link's file itself.
MODELS = (
    _entry("deoldify-artistic", build_artistic, 35, "https://data.deepai.org/deoldify/ColorizeArtistic_gen.pth"),
    _entry("deoldify-stable", build_wide, 35,
           "https://www.dropbox.com/s/axsd2g85uyixaho/ColorizeStable_gen.pth?dl=1"),
    _entry("deoldify-video", build_wide, 21, "https://data.deepai.org/deoldify/ColorizeVideo_gen.pth"),
)
