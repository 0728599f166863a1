"""The two metrics that need pretrained networks, LPIPS and FID, on the published weights those packages use:
fetched once into torch.hub's cache ($TORCH_HOME/hub/checkpoints) where the machine is online, or read from it.

- FID: the TensorFlow Inception of the FID paper as ported by pytorch-fid (`pt_inception-2015-12-05-6726825d.pth`,
  its FID_WEIGHTS_URL), pool3 2048-d features of images resized to 299 bilinearly. Which Inception a published
  colorization table used is mostly unstated (released scripts use pytorch-fid or torchvision's own Inception, which
  give different numbers), so published FIDs compare with ours only roughly.
- LPIPS v0.1 with AlexNet (Zhang et al. 2018): the `lpips` package's network and the linear-layer weights that ship
  inside it, over torchvision's ImageNet AlexNet (`alexnet-owt-7be5be79.pth`, AlexNet_Weights.IMAGENET1K_V1); or
  one file holding both (lpips.LPIPS().state_dict()).

A loader returns (network, source) when it has weights, or (None, reason) when they are neither cached nor
downloadable (offline); a file named by a flag that cannot be used is a UserError.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from gan_colorizer.errors import UserError
from gan_colorizer.weights import fetch_state, load_state_dict_file

FID_FILE = "pt_inception-2015-12-05-6726825d.pth"  # the file name of pytorch_fid.inception.FID_WEIGHTS_URL
ALEXNET_FILE = "alexnet-owt-7be5be79.pth"  # of torchvision's AlexNet_Weights.IMAGENET1K_V1.url


class FidInception(nn.Module):
    """pytorch-fid's FID Inception up to pool3: (B, 3, H, W) sRGB in [0, 1] -> (B, 2048) features."""

    MIXED = ("Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e",
             "Mixed_7a", "Mixed_7b", "Mixed_7c")

    def __init__(self):
        super().__init__()
        # the blocks pytorch-fid patches into torchvision's Inception (TF pooling), built without its download call
        from pytorch_fid.inception import FIDInceptionA, FIDInceptionC, FIDInceptionE_1, FIDInceptionE_2
        net = torchvision.models.inception_v3(num_classes=1008, aux_logits=False, weights=None, init_weights=False)
        net.Mixed_5b, net.Mixed_5c = FIDInceptionA(192, pool_features=32), FIDInceptionA(256, pool_features=64)
        net.Mixed_5d = FIDInceptionA(288, pool_features=64)
        net.Mixed_6b = FIDInceptionC(768, channels_7x7=128)
        net.Mixed_6c, net.Mixed_6d = FIDInceptionC(768, channels_7x7=160), FIDInceptionC(768, channels_7x7=160)
        net.Mixed_6e = FIDInceptionC(768, channels_7x7=192)
        net.Mixed_7b, net.Mixed_7c = FIDInceptionE_1(1280), FIDInceptionE_2(2048)
        self.net = net

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        n = self.net
        x = F.interpolate(rgb, size=(299, 299), mode="bilinear", align_corners=False) * 2 - 1
        x = F.max_pool2d(n.Conv2d_2b_3x3(n.Conv2d_2a_3x3(n.Conv2d_1a_3x3(x))), kernel_size=3, stride=2)
        x = F.max_pool2d(n.Conv2d_4a_3x3(n.Conv2d_3b_1x1(x)), kernel_size=3, stride=2)
        for name in self.MIXED:
            x = getattr(n, name)(x)
        return x.mean(dim=(2, 3))


class Lpips(nn.Module):
    """LPIPS v0.1 on AlexNet, the `lpips` package's own network with the linear layers it ships, built without its
    download call (random trunk, then local weights): (B, 3, H, W) sRGB pairs in [0, 1] -> (B,) distances."""

    def __init__(self):
        super().__init__()
        import lpips
        with warnings.catch_warnings():  # lpips passes torchvision's deprecated pretrained= argument
            warnings.simplefilter("ignore", UserWarning)
            self.net = lpips.LPIPS(net="alex", pnet_rand=True, verbose=False)

    def forward(self, rgb1: torch.Tensor, rgb2: torch.Tensor) -> torch.Tensor:
        return self.net(rgb1, rgb2, normalize=True).flatten()

    def load_weights(self, state: dict, source) -> None:
        """From torchvision AlexNet keys (features.N.*), or from one whole lpips.LPIPS state dict."""
        trunk = self.net.net  # lpips' alexnet: slice1..slice5 holding torchvision's features.0..11
        if any(k.startswith("net.slice") for k in state):
            target = self.net
        else:
            target, slice_of = trunk, {n: s for s, block in trunk.named_children() for n in block._modules}
            state = {f"{slice_of.get(k.split('.')[1])}.{k.removeprefix('features.')}": v
                     for k, v in state.items() if k.startswith("features.")}
        try:
            target.load_state_dict(state)
        except RuntimeError as e:
            raise UserError(f"{source}: not AlexNet / LPIPS weights ({' '.join(str(e).split())[:200]})") from None


def _fetch_fid(download: bool) -> tuple[dict, str]:
    from pytorch_fid.inception import FID_WEIGHTS_URL
    return fetch_state(FID_WEIGHTS_URL, "FID Inception weights", "or pass --fid-weights FILE", download=download)


def _fetch_alexnet(download: bool) -> tuple[dict, str]:
    weights = torchvision.models.AlexNet_Weights.IMAGENET1K_V1
    return fetch_state(weights.url, "LPIPS AlexNet weights", "or pass --lpips-weights FILE",
                       load=weights.get_state_dict, download=download)


def _load(flag_path, flag: str, what: str, fetch, build, download: bool) -> tuple[nn.Module | None, str]:
    """(net, source) from the flag's file, or from the cache (downloaded on first use); (None, reason) when the
    cache has no usable file and none can be downloaded."""
    if flag_path:
        if not Path(flag_path).is_file():
            raise UserError(f"{flag} {flag_path}: file not found")
        try:
            return _ready(build(load_state_dict_file(flag_path, what), flag_path)), str(flag_path)
        except ImportError as e:
            raise UserError(f"{flag}: needs the {e.name} package ({e})") from None
    try:
        state, source = fetch(download)
        return _ready(build(state, source)), source
    except ImportError as e:  # pytorch-fid, lpips: dependencies, but a broken one should not stop the other metrics
        return None, f"{e.name} package not installed"
    except UserError as e:  # not cached and not downloadable, or a cached file that is not these weights
        return None, str(e)


def _ready(net: nn.Module) -> nn.Module:
    return net.eval().requires_grad_(False)


def _build_fid(state: dict, source) -> FidInception:
    net = FidInception()
    try:
        net.net.load_state_dict(state)
    except RuntimeError as e:
        raise UserError(f"{source}: not pytorch-fid's FID Inception weights ({' '.join(str(e).split())[:200]})") from None
    return net


def _build_lpips(state: dict, source) -> Lpips:
    net = Lpips()
    net.load_weights(state, source)
    return net


def load_fid(flag_path=None, download: bool = True) -> tuple[FidInception | None, str]:
    return _load(flag_path, "--fid-weights", "FID Inception weights", _fetch_fid, _build_fid, download)


def load_lpips(flag_path=None, download: bool = True) -> tuple[Lpips | None, str]:
    return _load(flag_path, "--lpips-weights", "LPIPS / AlexNet weights", _fetch_alexnet, _build_lpips, download)
