"""The two metrics that need pretrained networks, LPIPS and FID, loaded only from local files (never downloaded).

- FID: the TensorFlow Inception of the FID paper as ported by pytorch-fid (`pt_inception-2015-12-05-6726825d.pth`),
  pool3 2048-d features of images resized to 299 bilinearly: what DDColor, ColorFormer and BigColor report.
- LPIPS v0.1 with AlexNet (Zhang et al. 2018): the `lpips` package's network and the linear-layer weights that ship
  inside it, over torchvision's ImageNet AlexNet (`alexnet-owt-7be5be79.pth`); or one file holding both
  (lpips.LPIPS().state_dict()).

A loader returns (network, source) when it finds weights, or (None, reason) when it does not; a file named by a
flag that cannot be used is a UserError.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from gan_colorizer.errors import UserError
from gan_colorizer.networks import hub_checkpoint, load_state_dict_file

FID_FILE = "pt_inception-2015-12-05-6726825d.pth"
ALEXNET_FILE = "alexnet-owt-7be5be79.pth"
FID_SOURCE = "github.com/mseitzer/pytorch-fid/releases (fid_weights)"
ALEXNET_SOURCE = "download.pytorch.org/models/"


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


def _find(flag_path, cached: Path, flag: str, source: str) -> tuple[Path | None, str]:
    if flag_path:
        if not Path(flag_path).is_file():
            raise UserError(f"{flag} {flag_path}: file not found")
        return Path(flag_path), ""
    if cached.is_file():
        return cached, ""
    return None, f"no weights: pass {flag} FILE or put {cached.name} (from {source}) in {cached.parent}"


def _load(flag_path, cached: Path, flag: str, source: str, build) -> tuple[nn.Module | None, str]:
    """(net, path) from the flag's file or the cache; (None, reason) when absent or when a cached file is unusable."""
    path, reason = _find(flag_path, cached, flag, source)
    if path is None:
        return None, reason
    try:
        return build(path).eval().requires_grad_(False), str(path)
    except ImportError as e:  # pytorch-fid, lpips: dependencies, but a broken one should not stop the other metrics
        if flag_path:
            raise UserError(f"{flag}: needs the {e.name} package ({e})") from None
        return None, f"{e.name} package not installed"
    except UserError as e:
        if flag_path:
            raise
        return None, f"unusable cached weights: {e}"


def _build_fid(path: Path) -> FidInception:
    net = FidInception()
    state = load_state_dict_file(path, "FID Inception weights")
    try:
        net.net.load_state_dict(state)
    except RuntimeError as e:
        raise UserError(f"{path}: not pytorch-fid's FID Inception weights ({' '.join(str(e).split())[:200]})") from None
    return net


def _build_lpips(path: Path) -> Lpips:
    net = Lpips()
    net.load_weights(load_state_dict_file(path, "LPIPS / AlexNet weights"), path)
    return net


def load_fid(flag_path=None) -> tuple[FidInception | None, str]:
    return _load(flag_path, hub_checkpoint(FID_FILE), "--fid-weights", FID_SOURCE, _build_fid)


def load_lpips(flag_path=None) -> tuple[Lpips | None, str]:
    return _load(flag_path, hub_checkpoint(ALEXNET_FILE), "--lpips-weights", ALEXNET_SOURCE, _build_lpips)
