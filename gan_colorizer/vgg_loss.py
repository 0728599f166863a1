"""VGG16 perceptual loss on the RGB image rebuilt from L and predicted ab; weights from a local file only."""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from .color import model_to_rgb
from .errors import UserError
from .networks import hub_checkpoint, load_state_dict_file

VGG16_FILE = "vgg16-397923af.pth"  # torchvision's ImageNet VGG16, as named in $TORCH_HOME/hub/checkpoints
LAYERS = {"relu1_2": 3, "relu2_2": 8, "relu3_3": 15, "relu4_3": 22, "relu5_3": 29}  # index in vgg16.features
DEFAULT_LAYERS = "relu1_2,relu2_2,relu3_3,relu4_3"
_MEAN, _STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def parse_layers(spec: str) -> list[str]:
    names = [n.strip() for n in spec.split(",") if n.strip()]
    unknown = [n for n in names if n not in LAYERS]
    if not names or unknown:
        raise UserError(f"--perceptual-layers {spec!r}: choose from {', '.join(LAYERS)}")
    return sorted(names, key=LAYERS.get)


class VGGPerceptual(nn.Module):
    """Mean L1 distance between VGG16 features of two sRGB batches, averaged over the chosen layers; frozen."""

    def __init__(self, state_dict: dict, layers: list[str]):
        super().__init__()
        vgg = torchvision.models.vgg16(weights=None)
        vgg.load_state_dict(state_dict)
        self.ends = [LAYERS[n] for n in layers]
        self.features = vgg.features[: max(self.ends) + 1].eval().requires_grad_(False)
        self.register_buffer("mean", torch.tensor(_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(_STD).view(1, 3, 1, 1))

    def train(self, mode: bool = True):
        return super().train(False)  # always eval: the loss must not change with the generator's mode

    def _features(self, rgb: torch.Tensor) -> list[torch.Tensor]:
        x, out = (rgb - self.mean) / self.std, []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self.ends:
                out.append(x)
        return out

    def forward(self, fake_rgb: torch.Tensor, real_rgb: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            real = self._features(real_rgb)
        fake = self._features(fake_rgb)
        return sum(F.l1_loss(f.float(), r.float()) for f, r in zip(fake, real)) / len(fake)


def vgg_weights_path(path: str | None) -> Path:
    return Path(path) if path else hub_checkpoint(VGG16_FILE)


def load_perceptual(path: str | None, layers: str) -> VGGPerceptual:
    """The perceptual loss with VGG16 weights from `path` or torchvision's cache; missing weights are an error."""
    names = parse_layers(layers)
    file = vgg_weights_path(path)
    if not file.is_file():
        raise UserError(f"--perceptual-weight needs VGG16 ImageNet weights: {file} not found; put {VGG16_FILE} "
                        f"(from download.pytorch.org/models/) there or pass --vgg-weights FILE")
    state = load_state_dict_file(file, "VGG16 weights")
    try:
        return VGGPerceptual(state, names)
    except RuntimeError as e:
        raise UserError(f"{file}: not a torchvision VGG16 state dict ({str(e).splitlines()[0][:200]})") from None


def perceptual_loss(net: VGGPerceptual, gray_l: torch.Tensor, fake_ab: torch.Tensor,
                    real_ab: torch.Tensor) -> torch.Tensor:
    """The loss on RGB rebuilt from the shared L with predicted vs true ab (gradients flow into fake_ab)."""
    gray_l = gray_l.float()
    return net(model_to_rgb(gray_l, fake_ab.float()), model_to_rgb(gray_l, real_ab.float()))
