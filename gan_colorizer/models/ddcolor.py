"""DDColor (Kang et al., ICCV 2023) as its authors run it (piddnad/DDColor): a ConvNeXt encoder, a pixel decoder
that climbs back to full size, and a colour decoder (ddcolor_decoder.py) whose learned queries produce one map
each; a 1x1 layer mixes those maps and the input into Lab ab. Two sizes are published: the paper's tiny model
(ConvNeXt-T) and the large one (ConvNeXt-L: the ModelScope default, the paper's and the artistic weights).

The network reads the photo resized to 512 x 512 and reduced to gray (its Lab L with a = b = 0, back to sRGB), and
returns Lab ab at 512 x 512. Attribute names and registration order are the authors' (basicsr/archs/ddcolor_arch.py
and its convnext.py / unet.py), so their files load unchanged.
"""
from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from gan_colorizer.models.ddcolor_decoder import ColorDecoder
from gan_colorizer.models.published import PublishedModel, Weights

RENDER_SIZE = 512  # ColorizationPipeline's input_size: every photo is resized to 512 x 512 (aspect not kept)
QUERIES = 100  # colour queries in the published models (build_ddcolor_model's num_queries)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # the encoder's input normalisation
CONVNEXT = {"tiny": ((3, 3, 9, 3), (96, 192, 384, 768)), "large": ((3, 3, 27, 3), (192, 384, 768, 1536))}
SOURCE = "https://github.com/piddnad/DDColor"
LICENCE = "Apache-2.0 (piddnad/DDColor LICENSE; the Hugging Face model cards say apache-2.0 too)"


class ChannelNorm(nn.Module):
    """LayerNorm over the channels of an (N, C, H, W) map, written out as ConvNeXt's channels-first variant is
    (mean, biased variance, eps 1e-6 inside the root), so the floats follow the authors' to the last bit."""

    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        return self.weight[:, None, None] * ((x - mean) / torch.sqrt(var + 1e-6)) + self.bias[:, None, None]


class ConvNeXtBlock(nn.Module):
    """7x7 depthwise conv, LayerNorm, 4x pointwise MLP (GELU), scaled by the learned gamma, plus the input."""

    def __init__(self, dim: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), 1e-6))  # layer scale
        self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.pwconv2 = nn.Linear(4 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm(self.dwconv(x).permute(0, 2, 3, 1))  # channels last for the pointwise layers
        y = self.gamma * self.pwconv2(F.gelu(self.pwconv1(y)))
        return x + y.permute(0, 3, 1, 2)


class ConvNeXt(nn.Module):
    """Four stages at 1/4, 1/8, 1/16, 1/32 of the input. Each stage's output, channel-normalised (norm0 ... norm3),
    is a skip feature; the trunk itself goes on un-normalised. `norm`, the classifier's final LayerNorm, is in the
    published files but feeds nothing here (the authors compute it and discard it)."""

    def __init__(self, depths: tuple[int, ...], dims: tuple[int, ...]):
        super().__init__()
        stem = nn.Sequential(nn.Conv2d(3, dims[0], 4, stride=4), ChannelNorm(dims[0]))
        self.downsample_layers = nn.ModuleList(
            [stem] + [nn.Sequential(ChannelNorm(c_in), nn.Conv2d(c_in, c_out, 2, stride=2))
                      for c_in, c_out in zip(dims, dims[1:])])
        self.stages = nn.ModuleList(nn.Sequential(*(ConvNeXtBlock(dim) for _ in range(depth)))
                                    for depth, dim in zip(depths, dims))
        for i, dim in enumerate(dims):
            self.add_module(f"norm{i}", ChannelNorm(dim))
        self.norm = nn.LayerNorm(dims[-1], eps=1e-6)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        for i, (down, stage) in enumerate(zip(self.downsample_layers, self.stages)):
            x = stage(down(x))
            features.append(getattr(self, f"norm{i}")(x))
        return features


class Encoder(nn.Module):
    """The holder the published names go through (encoder.arch.*)."""

    def __init__(self, size: str):
        super().__init__()
        self.arch = ConvNeXt(*CONVNEXT[size])

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.arch(x)


def spectral_conv(c_in: int, c_out: int, kernel: int = 1, bias: bool = True) -> nn.Conv2d:
    """A conv with spectral normalisation (weight_orig, weight_u, weight_v in the files): in eval mode its weight is
    weight_orig divided by the largest singular value that the stored u and v estimate."""
    return nn.utils.spectral_norm(nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, bias=bias))


class PixelShuffleUp(nn.Module):
    """fastai's ICNR upsampling: a 1x1 conv to scale^2 times the channels, ReLU, pixel shuffle, then a 2x2 average
    over a one-pixel replicated border (top, left) against the shuffle's checkerboard. With a BatchNorm after the
    conv (`batch_norm`) the conv has no bias, as in the authors' skip blocks."""

    def __init__(self, c_in: int, c_out: int, scale: int = 2, batch_norm: bool = True):
        super().__init__()
        width = c_out * scale ** 2
        conv = spectral_conv(c_in, width, bias=not batch_norm)
        self.conv = nn.Sequential(conv, nn.BatchNorm2d(width)) if batch_norm else nn.Sequential(conv)
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pixel_shuffle(F.relu(self.conv(x)), self.scale)
        return F.avg_pool2d(F.pad(x, (1, 0, 1, 0), mode="replicate"), 2, stride=1)


class UpBlock(nn.Module):
    """One pixel-decoder step: upsample 2x, join the encoder's skip feature (batch-normalised), ReLU, then a 3x3
    spectral conv, ReLU and BatchNorm (Sequential indices 0, 1, 2 as the files number them)."""

    def __init__(self, c_in: int, c_skip: int, c_out: int):
        super().__init__()
        self.shuf = PixelShuffleUp(c_in, c_out)
        self.bn = nn.BatchNorm2d(c_skip)
        self.conv = nn.Sequential(spectral_conv(c_out + c_skip, c_out, 3, bias=False), nn.ReLU(),
                                  nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv(F.relu(torch.cat([self.shuf(x), self.bn(skip)], dim=1)))


class DualDecoder(nn.Module):
    """The paper's two decoders: the pixel decoder (three UpBlocks from 1/32 to 1/4, then a 4x ICNR upsampling to
    full size) and the colour decoder, which reads the three UpBlocks' outputs and the full-size features."""

    def __init__(self, dims: tuple[int, ...], width: int = 512, queries: int = QUERIES):
        super().__init__()
        self.layers = nn.Sequential(UpBlock(dims[3], dims[2], width), UpBlock(width, dims[1], width),
                                    UpBlock(width, dims[0], width // 2))
        self.last_shuf = PixelShuffleUp(width // 2, width // 2, scale=4, batch_norm=False)
        self.color_decoder = ColorDecoder((width, width, width // 2), queries)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        scales, x = [], features[3]
        for block, skip in zip(self.layers, features[2::-1]):
            x = block(x, skip)
            scales.append(x)
        return self.color_decoder(scales, self.last_shuf(x))


class DDColor(nn.Module):
    """Gray sRGB (N, 3, H, W) in [0, 1], H and W multiples of 32 -> Lab ab (N, 2, H, W) in Lab units.
    size: "tiny" (ConvNeXt-T) or "large" (ConvNeXt-L)."""

    def __init__(self, size: str = "tiny", queries: int = QUERIES):
        super().__init__()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        self.encoder = Encoder(size)
        self.decoder = DualDecoder(CONVNEXT[size][1], queries=queries)
        self.refine_net = nn.Sequential(nn.Sequential(spectral_conv(queries + 3, 2)))

    def named_stages(self) -> list[tuple[str, str, nn.Module]]:
        """(name, group, module) in forward order (inspect/anatomy.py): the ConvNeXt's four stages (1/4 to 1/32), the
        pixel decoder's three UpBlocks and its 4x upsampling to full size, the colour decoder's query maps, and the
        refine layer's ab."""
        encoder = [(f"encoder.stage{i}", "encoder", stage) for i, stage in enumerate(self.encoder.arch.stages, 1)]
        decoder = [(f"decoder.up{i}", "decoder", block) for i, block in enumerate(self.decoder.layers, 1)]
        decoder += [("decoder.upsample", "decoder", self.decoder.last_shuf),
                    ("decoder.color_queries", "decoder", self.decoder.color_decoder)]
        return encoder + decoder + [("head.out", "head", self.refine_net)]

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        x = (rgb - self.mean) / self.std
        colors = self.decoder(self.encoder(x))
        return self.refine_net(torch.cat([colors, x], dim=1))  # the query maps and the (normalised) input


def published_state_dict(contents: dict) -> dict:
    """The network's state dict from a DDColor weight file's contents. The Hugging Face files (what MODELS names)
    are the bare state dict; the authors' training files (ModelScope's pytorch_model.pt, the .pth files of
    piddnad/DDColor-models) hold it under 'params'. encoder.arch.head_cls, a classifier head the authors' ConvNeXt
    dropped in 2023-08 (their loader is not strict), is left out wherever a file still carries it."""
    state = contents.get("params", contents)
    return {k: v for k, v in state.items() if not k.startswith("encoder.arch.head_cls.")}


def prepare(rgb: torch.Tensor) -> torch.Tensor:
    """The authors' input from sRGB (N, 3 or 1, H, W) in [0, 1]: the 8-bit photo as float, resized to 512 x 512 by
    OpenCV's INTER_LINEAR (no antialiasing; aspect not kept), its Lab L, and that L with a = b = 0 back in sRGB
    (gray), each step by OpenCV itself as their ColorizationPipeline does: its float Lab runs on tabulated gamma and
    cube-root curves, up to 0.2 L from the exact formulas of gan_colorizer.color, which would move the ab."""
    levels = (rgb.detach().float().clamp(0.0, 1.0) * 255.0).round().expand(-1, 3, -1, -1)
    photos = (levels.permute(0, 2, 3, 1).cpu().numpy().astype(np.float64) / 255.0).astype(np.float32)
    gray = []
    for photo in photos:
        small = cv2.resize(photo, (RENDER_SIZE, RENDER_SIZE), interpolation=cv2.INTER_LINEAR)
        lab = cv2.cvtColor(small, cv2.COLOR_RGB2Lab)
        lab[:, :, 1:] = 0.0
        gray.append(cv2.cvtColor(lab, cv2.COLOR_Lab2RGB))
    return torch.from_numpy(np.stack(gray)).permute(0, 3, 1, 2).contiguous().to(rgb.device)


def to_ab(output: torch.Tensor, rgb: torch.Tensor) -> torch.Tensor:
    """The network already gives Lab ab at render size."""
    return output.float()


def build_tiny() -> DDColor:
    return DDColor("tiny")


def build_large() -> DDColor:
    return DDColor("large")


PAPER = ("Xiaoyang Kang, Tao Yang, Wenqi Ouyang, Peiran Ren, Lingzhi Li, Xuansong Xie. DDColor: Towards "
         "Photo-Realistic Image Colorization via Dual Decoders. ICCV 2023")


def _entry(name: str, build, hf_repo: str) -> PublishedModel:
    # The Hugging Face repositories hold what PyTorchModelHubMixin saved: config.json and a bare state dict
    return PublishedModel(name=name, build=build, prepare=prepare, to_ab=to_ab, render_size=RENDER_SIZE,
                          weights=Weights(hf_repo=hf_repo, hf_file="pytorch_model.bin"),
                          paper=PAPER, source=SOURCE, licence=LICENCE)


MODELS = (
    _entry("ddcolor-tiny", build_tiny, "piddnad/ddcolor_paper_tiny"),
    _entry("ddcolor-large", build_large, "piddnad/ddcolor_modelscope"),  # the authors' default
    _entry("ddcolor-paper", build_large, "piddnad/ddcolor_paper"),
    _entry("ddcolor-artistic", build_large, "piddnad/ddcolor_artistic"),
)
