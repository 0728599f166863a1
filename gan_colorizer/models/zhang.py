"""Zhang et al.'s two colorizers as their PyTorch release runs them (richzhang/colorization, colorizers/): ECCV 2016's
"Colorful Image Colorization" (colorization_release_v2) and SIGGRAPH 2017's "Real-Time User-Guided Image
Colorization with Learned Deep Priors", here in automatic mode (no user hints: the hint inputs are zeros).

Both read the photo's Lab L at 256 x 256 and return Lab ab there. The attribute names (model1 ... model10, model_out)
and every layer's index inside them are the release's, so its files load unchanged; comments name each stage as the
papers do (conv1 ... conv10).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from gan_colorizer.ab_bins import bin_tensor
from gan_colorizer.color import rgb_to_lab
from gan_colorizer.models.published import PublishedModel, Weights

RENDER_SIZE = 256  # the authors resize every photo to 256 x 256 (aspect not kept) before colorizing
L_CENTER, L_RANGE = 50.0, 100.0  # the network sees (L - 50) / 100
AB_RANGE = 110.0  # ab enters (hints) divided by 110 and leaves multiplied by 110
ECCV16_BINS = 313  # the quantized ab gamut (ab_bins.py computes the same 313 bins)
SIGGRAPH17_CLASSES = 529  # its classification head's 23 x 23 ab grid (trained, unused in the regression output)
SOURCE = "https://github.com/richzhang/colorization"
LICENCE = "BSD-2-Clause (richzhang/colorization LICENSE)"


def conv_stage(widths: list[int], *, last_stride: int = 1, dilation: int = 1, relu_first: bool = False,
               batch_norm: bool = True) -> nn.Sequential:
    """3x3 convolutions, each followed by a ReLU, closed by a BatchNorm: one of the authors' conv stages, laid out
    as they lay it out (conv, relu, conv, relu, ..., norm) so the parameter indices are theirs. A stage after a skip
    sum starts with the ReLU of that sum (SIGGRAPH17's decoder)."""
    layers: list[nn.Module] = [nn.ReLU(inplace=True)] if relu_first else []
    last = len(widths) - 2
    for i, (c_in, c_out) in enumerate(zip(widths, widths[1:])):
        stride = last_stride if i == last else 1
        layers += [nn.Conv2d(c_in, c_out, 3, stride=stride, padding=dilation, dilation=dilation),
                   nn.ReLU(inplace=True)]
    if batch_norm:
        layers.append(nn.BatchNorm2d(widths[-1]))
    return nn.Sequential(*layers)


def upsample_2x(c_in: int, c_out: int) -> nn.ConvTranspose2d:
    """The learned 2x upsampling that opens each decoder stage (4x4 kernel, stride 2)."""
    return nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1)


def encoder(first: int, stride: int) -> list[nn.Sequential]:
    """conv1 ... conv7, shared by both papers: three halvings (by `stride` in conv1-3, or by the caller's
    subsampling when stride is 1), conv4 at 1/8 size, conv5-6 dilated by 2 (a wider view at the same size), conv7."""
    return [conv_stage([first, 64, 64], last_stride=stride),
            conv_stage([64, 128, 128], last_stride=stride),
            conv_stage([128, 256, 256, 256], last_stride=stride),
            conv_stage([256, 512, 512, 512]),
            conv_stage([512, 512, 512, 512], dilation=2),
            conv_stage([512, 512, 512, 512], dilation=2),
            conv_stage([512, 512, 512, 512])]


class ECCV16(nn.Module):
    """ECCV 2016: a VGG-like stack predicts, at 1/4 of the input size, a distribution over 313 quantized ab bins;
    the network decodes it to ab itself (softmax, then model_out: a 1x1 conv whose weights are the bins' ab / 110,
    no bias: the distribution's mean), then upsamples 4x (bilinear) and multiplies by 110.

    The paper decodes by the annealed mean, softmax(z / T) with T = 0.38; the Caffe release scales conv8's logits by
    2.606 (= 1 / T) before its softmax. The PyTorch release has no such layer: its forward is a plain softmax, so the
    annealing survives only if its conversion folded 1 / T into model8's last conv. We run its forward as it is."""

    def __init__(self):
        super().__init__()
        (self.model1, self.model2, self.model3, self.model4,
         self.model5, self.model6, self.model7) = encoder(1, stride=2)
        self.model8 = nn.Sequential(upsample_2x(512, 256), nn.ReLU(inplace=True),  # conv8 at 1/4, then its bins
                                    nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(inplace=True),
                                    nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(inplace=True),
                                    nn.Conv2d(256, ECCV16_BINS, 1))
        self.model_out = nn.Conv2d(ECCV16_BINS, 2, 1, bias=False)
        with torch.no_grad():  # a decoding layer that decodes, for random weights too (a published file brings its own)
            self.model_out.weight.copy_(bin_tensor().T.reshape(2, ECCV16_BINS, 1, 1) / AB_RANGE)

    def named_stages(self) -> list[tuple[str, str, nn.Module]]:
        """(name, group, module) in forward order, for the tools that look inside (inspect/anatomy.py): conv1-5,
        the dilated conv6-7, conv8 with its 313 bins' logits at 1/4 size, and the decoding layer's ab (before the
        upsampling)."""
        encoder = [(f"encoder.conv{i}", "encoder", getattr(self, f"model{i}")) for i in range(1, 6)]
        bottleneck = [(f"bottleneck.conv{i}", "bottleneck", getattr(self, f"model{i}")) for i in (6, 7)]
        return encoder + bottleneck + [("decoder.conv8", "decoder", self.model8), ("head.out", "head", self.model_out)]

    def bin_logits(self, l: torch.Tensor) -> torch.Tensor:
        """Lab L (N, 1, H, W), 0..100 -> the 313 bins' logits at 1/4 size (as the release feeds its softmax)."""
        x = (l - L_CENTER) / L_RANGE
        for stage in (self.model1, self.model2, self.model3, self.model4, self.model5, self.model6, self.model7,
                      self.model8):
            x = stage(x)
        return x

    def forward(self, l: torch.Tensor) -> torch.Tensor:
        """Lab L (N, 1, H, W), 0..100, H and W multiples of 8 -> Lab ab (N, 2, H, W)."""
        ab = self.model_out(torch.softmax(self.bin_logits(l), dim=1))
        return F.interpolate(ab, scale_factor=4, mode="bilinear", align_corners=False) * AB_RANGE


def hint_maps(l: torch.Tensor, points: Sequence[tuple[int, int, float, float]] = (),
              patch: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """SIGGRAPH17's hint inputs for Lab L (N, 1, H, W) at render size: (hint_ab (N, 2, H, W) in Lab units,
    hint_mask (N, 1, H, W), 1 where a color is given, 0 elsewhere), as its release's forward takes them.
    points: (row, col, a, b) at render size, each filling a patch x patch square there in every image; none (the
    automatic mode) gives zeros for both."""
    hint_ab = l.new_zeros(l.shape[0], 2, *l.shape[2:])
    hint_mask = l.new_zeros(l.shape)
    half = patch // 2
    for row, col, a, b in points:
        rows, cols = slice(max(row - half, 0), row - half + patch), slice(max(col - half, 0), col - half + patch)
        hint_ab[:, 0, rows, cols], hint_ab[:, 1, rows, cols] = a, b
        hint_mask[:, :, rows, cols] = 1.0
    return hint_ab, hint_mask


class SIGGRAPH17(nn.Module):
    """SIGGRAPH 2017: a U-Net on the same trunk, L plus user hints (an ab map and a mask) in, ab regressed at full
    input size (tanh, times 110). conv1-3 keep their size; the image is halved between them by taking every second
    pixel. The decoder (conv8-10) adds a 3x3 conv of the matching encoder stage to each 2x upsampling.
    model_class, a 529-class head on conv8, is in the release's files but not in its output."""

    takes_hints = True  # forward(l, hint_ab, hint_mask), both made by hint_maps; automatic mode leaves both out

    def __init__(self):
        super().__init__()
        (self.model1, self.model2, self.model3, self.model4,
         self.model5, self.model6, self.model7) = encoder(4, stride=1)  # L, hint a, hint b, hint mask
        # the decoder, registered in the release's order (its files list the skips after conv10)
        self.model8up = nn.Sequential(upsample_2x(512, 256))  # conv8 at 1/4 size
        self.model8 = conv_stage([256, 256, 256], relu_first=True)
        self.model9up = nn.Sequential(upsample_2x(256, 128))  # conv9 at 1/2
        self.model9 = conv_stage([128, 128], relu_first=True)
        self.model10up = nn.Sequential(upsample_2x(128, 128))  # conv10 at full size
        self.model10 = nn.Sequential(nn.ReLU(inplace=True), nn.Conv2d(128, 128, 3, padding=1), nn.LeakyReLU(0.2))
        self.model3short8 = nn.Sequential(nn.Conv2d(256, 256, 3, padding=1))  # the skips from conv3, conv2, conv1
        self.model2short9 = nn.Sequential(nn.Conv2d(128, 128, 3, padding=1))
        self.model1short10 = nn.Sequential(nn.Conv2d(64, 128, 3, padding=1))
        self.model_class = nn.Sequential(nn.Conv2d(256, SIGGRAPH17_CLASSES, 1))
        self.model_out = nn.Sequential(nn.Conv2d(128, 2, 1), nn.Tanh())

    def named_stages(self) -> list[tuple[str, str, nn.Module]]:
        """(name, group, module) in forward order (inspect/anatomy.py): conv1-4, the dilated conv5-7, conv8-10 (each
        after its skip is added), and the tanh head's output."""
        encoder = [(f"encoder.conv{i}", "encoder", getattr(self, f"model{i}")) for i in range(1, 5)]
        bottleneck = [(f"bottleneck.conv{i}", "bottleneck", getattr(self, f"model{i}")) for i in range(5, 8)]
        decoder = [(f"decoder.conv{i}", "decoder", getattr(self, f"model{i}")) for i in range(8, 11)]
        return encoder + bottleneck + decoder + [("head.out", "head", self.model_out)]

    def forward(self, l: torch.Tensor, hint_ab: torch.Tensor | None = None,
                hint_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Lab L (N, 1, H, W), 0..100, H and W multiples of 8, and the hints of hint_maps (zeros when left out)
        -> Lab ab (N, 2, H, W)."""
        if (hint_ab is None) != (hint_mask is None):
            raise ValueError("SIGGRAPH17 takes hint_ab and hint_mask together (hint_maps makes both)")
        if hint_ab is None:
            hint_ab, hint_mask = hint_maps(l)
        conv1 = self.model1(torch.cat([(l - L_CENTER) / L_RANGE, hint_ab / AB_RANGE, hint_mask], dim=1))
        conv2 = self.model2(conv1[:, :, ::2, ::2])
        conv3 = self.model3(conv2[:, :, ::2, ::2])
        x = conv3[:, :, ::2, ::2]
        for stage in (self.model4, self.model5, self.model6, self.model7):
            x = stage(x)
        x = self.model8(self.model8up(x) + self.model3short8(conv3))
        x = self.model9(self.model9up(x) + self.model2short9(conv2))
        x = self.model10(self.model10up(x) + self.model1short10(conv1))
        return self.model_out(x) * AB_RANGE


def _pil_bicubic(levels: torch.Tensor) -> torch.Tensor:
    """8-bit sRGB (3, H, W) -> (3, 256, 256) by PIL's Image.resize(BICUBIC), as the authors' resize_img calls it.
    PIL itself: its two fixed-point passes (their order and rounding) set the levels, which torch's antialiased
    bicubic, the same filter, matches only to a level here and there."""
    image = Image.fromarray(levels.to("cpu", torch.uint8).permute(1, 2, 0).numpy())
    small = np.asarray(image.resize((RENDER_SIZE, RENDER_SIZE), Image.Resampling.BICUBIC))
    return torch.from_numpy(small.copy()).permute(2, 0, 1)


def prepare(rgb: torch.Tensor) -> torch.Tensor:
    """The authors' input from sRGB (N, 3 or 1, H, W) in [0, 1]: each 8-bit photo resized to 256 x 256 by PIL's
    bicubic (aspect not kept), and its Lab L (0..100), computed in float64 as scikit-image computes it."""
    levels = (rgb.float().clamp(0.0, 1.0) * 255.0).round().expand(-1, 3, -1, -1)
    small = torch.stack([_pil_bicubic(one) for one in levels]).to(rgb.device)
    return rgb_to_lab(small.double() / 255.0)[:, :1].float()


def to_ab(output: torch.Tensor, rgb: torch.Tensor) -> torch.Tensor:
    """Both networks already give Lab ab at render size."""
    return output.float()


PAPER_ECCV16 = "Richard Zhang, Phillip Isola, Alexei A. Efros. Colorful Image Colorization. ECCV 2016"
PAPER_SIGGRAPH17 = ("Richard Zhang, Jun-Yan Zhu, Phillip Isola, Xinyang Geng, Angela S. Lin, Tianhe Yu, "
                    "Alexei A. Efros. Real-Time User-Guided Image Colorization with Learned Deep Priors. "
                    "ACM Transactions on Graphics (SIGGRAPH) 2017")
WEIGHTS_HOST = "https://colorizers.s3.us-east-2.amazonaws.com/"  # bare state dicts; the name carries a sha256 prefix
MODELS = (
    PublishedModel(name="zhang-eccv16", build=ECCV16, prepare=prepare, to_ab=to_ab, render_size=RENDER_SIZE,
                   weights=Weights(url=WEIGHTS_HOST + "colorization_release_v2-9b330a0b.pth"),
                   paper=PAPER_ECCV16, source=SOURCE, licence=LICENCE),
    PublishedModel(name="zhang-siggraph17", build=SIGGRAPH17, prepare=prepare, to_ab=to_ab, render_size=RENDER_SIZE,
                   weights=Weights(url=WEIGHTS_HOST + "siggraph17-df00044c.pth"),
                   paper=PAPER_SIGGRAPH17, source=SOURCE, licence=LICENCE),
)
