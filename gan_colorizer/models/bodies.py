"""The bodies the ResNet U-Net can stand on: torchvision's ResNets, ConvNeXts and EfficientNets, one entry each.

An entry says which of torchvision's layers the U-Net runs (its classifier left out) and what to call the stages the
inspection tools show; everything else is read from the body itself. The skips are found by running a tensor
through a copy on the meta device (no memory, no arithmetic): the last layer at each size crosses to the decoder, the
deepest output feeds the middle. Adding a body is one entry here and its line in tests/test_bodies.py.

Every body takes the L channel alone: its first convolution's ImageNet RGB weights are summed into one input channel
(gray = R = G = B gives that conv the same response as the RGB one), so the pretrained features see what they know.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, NamedTuple

from gan_colorizer.errors import UserError

if TYPE_CHECKING:  # torch is imported where a body is built: config.py reads the names here, and --help stays fast
    from torch import nn


def _resnet_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(name, m) for name, m in model.named_children() if name not in ("avgpool", "fc")]


def _features(count: int | None = None) -> Callable[[nn.Module], list[tuple[str, nn.Module]]]:
    """ConvNeXt and EfficientNet keep their stages in `features`; EfficientNet's last one (a 1x1 conv to 1280-2560
    channels for the classifier) is left out: the middle convs at that width would cost 59 M parameters (b0)."""
    return lambda model: [(f"features.{name}", m) for name, m in list(model.features.named_children())[:count]]


@dataclass(frozen=True)
class Body:
    name: str  # torchvision's builder and weights name (torchvision.models.get_model)
    layers: Callable[[nn.Module], list[tuple[str, nn.Module]]]  # the layers the U-Net runs, with torchvision's names
    labels: dict = field(default_factory=dict)  # the inspection tools' name for a stage, where not torchvision's
    build_args: dict = field(default_factory=dict)
    weights: str = "IMAGENET1K_V1"


# Stochastic depth off: it regularises training from scratch (torchvision's recipes); fine-tuned under a decoder
# with L1 it only adds noise, and fastai's timm bodies build without it too.
_NO_DROP = {"stochastic_depth_prob": 0.0}
BODIES = {body.name: body for body in [
    *(Body(f"resnet{depth}", _resnet_layers, {"relu": "stem"}) for depth in (18, 34, 50, 101)),
    *(Body(f"convnext_{size}", _features(), build_args=_NO_DROP) for size in ("tiny", "small", "base")),
    *(Body(f"efficientnet_b{i}", _features(-1), build_args=_NO_DROP) for i in (0, 1, 2, 3)),
]}


def find(name: str) -> Body:
    if name not in BODIES:
        raise UserError(f"--backbone {name}: not a known body ({', '.join(BODIES)})")
    return BODIES[name]


def imagenet_weights(name: str):
    """torchvision's ImageNet weights of the body (IMAGENET1K_V1: the fastai / DeOldify ResNets' weights)."""
    import torchvision
    return torchvision.models.get_model_weights(name)[find(name).weights]


def imagenet_body(name: str) -> tuple[dict, str]:
    """The body's ImageNet state dict through torchvision's weights API (cached, or downloaded on first use)."""
    from gan_colorizer.weights import fetch_state
    weights = imagenet_weights(name)
    state, source = fetch_state(weights.url, f"--pretrained: ImageNet weights for {name}",
                                "or pass --no-pretrained for a random body", load=weights.get_state_dict)
    return state, f"torchvision {weights}, {source}"


def _gray_first_conv(model: nn.Module, summed: bool, in_channels: int = 1) -> None:
    """Replace the first (RGB) convolution by one taking L (and a hint net's channels after it); `summed`: its L
    weights are the RGB ones summed. Hint weights start at zero: an untrained hint net is the automatic one."""
    import torch
    from torch import nn
    name, conv = next((n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d))
    gray = nn.Conv2d(in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                     bias=conv.bias is not None)
    with torch.no_grad():
        gray.weight[:, 1:].zero_()
        if summed:
            gray.weight[:, :1].copy_(conv.weight.sum(dim=1, keepdim=True))
            if conv.bias is not None:
                gray.bias.copy_(conv.bias)
    parent, _, leaf = name.rpartition(".")
    setattr(model.get_submodule(parent), leaf, gray)


def _torchvision_model(spec: Body) -> nn.Module:
    import torchvision
    return torchvision.models.get_model(spec.name, weights=None, **spec.build_args)


def build_body(name: str, weights: dict | None = None, source: str = "", in_channels: int = 1) -> nn.Sequential:
    """The body's layers as one Sequential taking 1 channel (a hint net: 4), carrying its layout (body.layout); with
    weights (a torchvision state dict of that model, its classifier may be missing) the first conv is summed over
    RGB."""
    from torch import nn
    spec = find(name)
    model = _torchvision_model(spec)
    if weights is not None:
        kept = tuple(f"{layer}." for layer, _ in spec.layers(model))
        try:
            result = model.load_state_dict(weights, strict=False)
        except RuntimeError as e:  # the same names at other shapes: another model of the family (resnet50's file)
            first = next((line.strip() for line in str(e).splitlines() if "size mismatch" in line), type(e).__name__)
            raise UserError(f"{source}: not a torchvision {name} state dict ({first[:160]})") from None
        missing = [k for k in result.missing_keys if k.startswith(kept)]
        if missing or result.unexpected_keys:
            raise UserError(f"{source}: not a torchvision {name} state dict "
                            f"(missing {missing[:3]}, unexpected {result.unexpected_keys[:3]})")
    _gray_first_conv(model, summed=weights is not None, in_channels=in_channels)
    body = nn.Sequential(*(m for _, m in spec.layers(model)))
    body.layout = layout(name)
    return body


class Layout(NamedTuple):
    """Each of a body's layers: torchvision's name, the inspection tools' label, output channels, downsampling."""
    names: tuple[str, ...]
    labels: tuple[str, ...]
    channels: tuple[int, ...]
    factors: tuple[int, ...]

    @property
    def skips(self) -> tuple[int, ...]:
        """Layers whose outputs cross to the decoder: the last at each size, above the deepest."""
        f = self.factors
        return tuple(i for i in range(len(f) - 1) if f[i + 1] != f[i] and f[i] != f[-1])

    @property
    def stages(self) -> tuple[int, ...]:
        """The layers the inspection tools show: the skips and the deepest."""
        return self.skips + (len(self.names) - 1,)


@functools.lru_cache(maxsize=None)
def layout(name: str) -> Layout:
    """The body's layout, from a run of a copy built on the meta device: shapes only, no memory, no arithmetic,
    no draw from the random generator."""
    import torch
    spec = find(name)
    with torch.device("meta"):
        model = _torchvision_model(spec)
        _gray_first_conv(model, summed=False)
        x = torch.empty(1, 1, 256, 256)
    names, channels, factors = [], [], []
    with torch.no_grad():
        for layer_name, layer in spec.layers(model.eval()):
            x = layer(x)
            names.append(layer_name)
            channels.append(x.shape[1])
            factors.append(256 // x.shape[-1])
    return Layout(tuple(names), tuple(spec.labels.get(n, n) for n in names), tuple(channels), tuple(factors))


def body_weights(model_cfg) -> tuple[dict | None, str]:
    from gan_colorizer.weights import load_state_dict_file
    if model_cfg.backbone_weights:
        return load_state_dict_file(model_cfg.backbone_weights, "weight file"), model_cfg.backbone_weights
    if model_cfg.pretrained:
        return imagenet_body(model_cfg.backbone)
    return None, ""


def check_body_weights(model_cfg) -> None:
    """Before a run writes anything: the body's weight file is there (the ImageNet one downloaded now if missing),
    or a UserError says which and where."""
    from gan_colorizer.weights import hub_file
    if model_cfg.generator != "resunet":
        return
    if model_cfg.backbone_weights:
        if not Path(model_cfg.backbone_weights).is_file():
            what = "a folder, not a file" if Path(model_cfg.backbone_weights).is_dir() else "file not found"
            raise UserError(f"--backbone-weights {model_cfg.backbone_weights}: {what}")
    elif model_cfg.pretrained and not hub_file(imagenet_weights(model_cfg.backbone).url).is_file():
        imagenet_body(model_cfg.backbone)
