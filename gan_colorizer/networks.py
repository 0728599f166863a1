"""Generators (the ResNet U-Net of resunet.py; the pix2pix U-Net) and the PatchGAN discriminator.

Every generator maps gray_l (B, 1, H, W) to ab (B, 2, H, W) in the model's units (see color.py). With
--head classification the net predicts Q logits per pixel over the ab bins instead, and ColorClassifier decodes them.
"""
from __future__ import annotations

import contextlib
import functools
import logging
from pathlib import Path
from urllib.parse import urlparse

import torch
import torchvision
from torch import nn

from gan_colorizer.ab_bins import ANNEALED_T, DECODES, bin_tensor, decode
from gan_colorizer.errors import UserError, weights_only_refusal
from gan_colorizer.resunet import ResUNet

log = logging.getLogger("gan_colorizer")


def hub_checkpoint(name: str) -> Path:
    """Where torch.hub (torchvision, pytorch-fid) caches a weight file: $TORCH_HOME/hub/checkpoints/NAME."""
    return Path(torch.hub.get_dir()) / "checkpoints" / name


def hub_file(url: str) -> Path:
    """The cache file torch.hub's load_state_dict_from_url keeps a URL's download in."""
    return hub_checkpoint(Path(urlparse(url).path).name)


def _reason(e: BaseException) -> str:
    text = " ".join(str(e).split())[:200]
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def fetch_state(url: str, what: str, fix: str, load=None, download: bool = True) -> tuple[dict, str]:
    """A published state dict through torch.hub's cache, downloaded on first use as torchvision and pytorch-fid do:
    (state, where it came from). load: the package's own loader (default torch.hub.load_state_dict_from_url);
    a UserError naming the file, where it goes and `fix` when it is neither cached nor downloadable."""
    path = hub_file(url)
    cached = path.is_file()
    if not cached and not download:
        raise UserError(f"{what}: {path.name} is not in {path.parent} (--no-download): put it there, {fix}")
    load = load or functools.partial(torch.hub.load_state_dict_from_url, url)
    try:
        state = load(progress=True, check_hash=True, map_location="cpu", weights_only=True)
    except Exception as e:  # offline, HTTP errors, a bad hash, a truncated file: all mean the same to the user
        if cached:
            raise UserError(f"{path}: not a readable {what} ({_reason(e)}); delete it to download it again, "
                            f"{fix}") from None
        raise UserError(f"{what}: {path.name} is not in {path.parent} and downloading {url} failed ({_reason(e)}): "
                        f"put the file there, {fix}") from None
    return state, f"{path} ({'cached' if cached else 'downloaded from ' + url})"


def resnet_weights(backbone: str) -> torchvision.models.WeightsEnum:
    """torchvision's ImageNet weights of a ResNet (IMAGENET1K_V1, the body of the fastai / DeOldify U-Nets)."""
    return torchvision.models.get_model_weights(backbone).IMAGENET1K_V1


def imagenet_body(backbone: str) -> tuple[dict, str]:
    """The body's ImageNet state dict through torchvision's weights API (cached, or downloaded on first use)."""
    weights = resnet_weights(backbone)
    state, source = fetch_state(weights.url, f"--pretrained: ImageNet weights for {backbone}",
                                "or pass --no-pretrained for a random body", load=weights.get_state_dict)
    return state, f"torchvision {weights}, {source}"


def load_state_dict_file(path, what: str) -> dict:
    """A state dict from a local file, loaded weights-only; unwraps {'state_dict': ...} and DDP's 'module.'."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: {what} file not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a bad file; all mean the same to the user
        reason = weights_only_refusal(e) or f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:200]}"
        raise UserError(f"{path}: not a readable {what} ({reason})") from None
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise UserError(f"{path}: not a {what} (expected a state dict)")
    return {k.removeprefix("module."): v for k, v in state.items()}


def resnet_body(backbone: str, weights: dict | None = None, source: str = "") -> nn.Sequential:
    """A torchvision ResNet without pool and fc, taking 1 channel: with weights, conv1 is summed over RGB."""
    model = getattr(torchvision.models, backbone)(weights=None)
    if weights is not None:
        result = model.load_state_dict(weights, strict=False)
        missing = [k for k in result.missing_keys if not k.startswith("fc.")]
        if missing or result.unexpected_keys:
            raise UserError(f"{source}: not a torchvision {backbone} state dict "
                            f"(missing {missing[:3]}, unexpected {result.unexpected_keys[:3]})")
    conv = model.conv1
    gray_conv = nn.Conv2d(1, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, bias=False)
    if weights is not None:
        gray_conv.weight.data.copy_(conv.weight.data.sum(dim=1, keepdim=True))
    model.conv1 = gray_conv
    return nn.Sequential(*list(model.children())[:-2])


def resunet(backbone: str = "resnet18", weights: dict | None = None, source: str = "", n_out: int = 2) -> ResUNet:
    """The U-Net on a ResNet body (fastai's DynamicUnet layout); 31,099,672 parameters with resnet18 (the reference
    tutorial's net)."""
    return ResUNet(resnet_body(backbone, weights, source), n_out)


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

    def forward(self, gray_l: torch.Tensor) -> torch.Tensor:
        d1 = self.down1(gray_l)
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


class ColorClassifier(nn.Module):
    """A generator whose net predicts Q logits per pixel over the ab bins (ab_bins.py, Zhang et al. 2016).

    forward(gray_l) returns the decoded ab like any generator, so validation, evaluation, inference, export and EMA
    need not know; forward(gray_l, return_logits=True) returns (logits, ab) for the training loss (through forward,
    so DDP syncs its gradients). The bins and the training set's color prior are buffers: checkpoints carry them.
    """

    def __init__(self, net: nn.Module, bins: torch.Tensor, temperature: float = ANNEALED_T):
        super().__init__()
        self.net = net
        self.register_buffer("bins", bins.float().clone())  # (Q, 2) ab units
        self.register_buffer("prior", torch.full((len(bins),), 1.0 / len(bins)))  # set by training
        self.decoding, self.temperature = "annealed", temperature

    def forward(self, gray_l: torch.Tensor, return_logits: bool = False):
        logits = self.net(gray_l)
        ab = decode(logits, self.bins, self.decoding, self.temperature)
        return (logits, ab) if return_logits else ab


def set_decoding(generator: nn.Module, how: str | None = None, temperature: float | None = None) -> str | None:
    """Choose how a classification generator turns its distribution into ab (annealed mean, mode, mean); returns a
    description, or None for a regression generator (which has nothing to decode)."""
    g = unwrap(generator)
    if not isinstance(g, ColorClassifier):
        return None
    if how is not None:
        if how not in DECODES:
            raise ValueError(f"unknown decoding {how!r}; choose from {DECODES}")
        g.decoding = how
    if temperature is not None:
        g.temperature = temperature
    return f"annealed mean, T = {g.temperature:g}" if g.decoding == "annealed" else g.decoding


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


def _backbone_weights(model_cfg) -> tuple[dict | None, str]:
    if model_cfg.backbone_weights:
        return load_state_dict_file(model_cfg.backbone_weights, "backbone weights"), model_cfg.backbone_weights
    if model_cfg.pretrained:
        return imagenet_body(model_cfg.backbone)
    return None, ""


def check_body_weights(model_cfg) -> None:
    """Before a run writes anything: the body's weight file is there (the ImageNet one downloaded now if missing),
    or a UserError says which and where."""
    if model_cfg.generator != "resunet":
        return
    if model_cfg.backbone_weights:
        if not Path(model_cfg.backbone_weights).is_file():
            raise UserError(f"--backbone-weights {model_cfg.backbone_weights}: file not found")
    elif model_cfg.pretrained and not hub_file(resnet_weights(model_cfg.backbone).url).is_file():
        imagenet_body(model_cfg.backbone)


def build_generator(model_cfg, load_pretrained: bool = True, device=None) -> nn.Module:
    """The generator the config names; load_pretrained=False when a checkpoint will supply every weight (then no
    ImageNet file is read or downloaded). device="meta" builds the layout alone, without storage or initialisation:
    to_empty() then load_state_dict() fill it from a checkpoint (checkpoint.load_generator)."""
    classes = model_cfg.head == "classification"
    bins = bin_tensor() if classes else None  # computed where tensors have data (the ColorClassifier keeps a copy)
    n_out = len(bins) if classes else 2
    with torch.device(device) if device is not None else contextlib.nullcontext():
        net = _generator_net(model_cfg, n_out, classes, load_pretrained)
    return ColorClassifier(net, bins, model_cfg.annealed_t) if classes else net


def _generator_net(model_cfg, n_out: int, logits: bool, load_pretrained: bool) -> nn.Module:
    if model_cfg.generator == "unet":
        net = init_normal(UNetGenerator(1, n_out, model_cfg.unet_filters, model_cfg.unet_dropout, logits=logits))
        if load_pretrained:
            log.info("generator: pix2pix U-Net, random init N(0, 0.02) (it has no pretrained body)")
        return net
    weights, source = _backbone_weights(model_cfg) if load_pretrained else (None, "")
    if load_pretrained:
        log.info("generator: resunet on %s, %s", model_cfg.backbone, f"body weights from {source}"
                 if weights is not None else "random init (--no-pretrained)")
    return resunet(model_cfg.backbone, weights, source, n_out)


def build_discriminator(model_cfg) -> PatchDiscriminator:
    return init_normal(PatchDiscriminator(3, model_cfg.disc_filters, model_cfg.disc_layers))


def unwrap(net: nn.Module) -> nn.Module:
    """The plain module under DistributedDataParallel (.module) and torch.compile (._orig_mod) wrappers."""
    while True:
        inner = getattr(net, "_orig_mod", None) or (net.module if type(net).__name__ == "DistributedDataParallel" else None)
        if inner is None:
            return net
        net = inner


def core(net: nn.Module) -> nn.Module:
    """The convolutional net itself: without DDP / compile wrappers and without a ColorClassifier around it."""
    net = unwrap(net)
    return unwrap(net.net) if isinstance(net, ColorClassifier) else net


def count_parameters(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())
