"""Batched sRGB <-> CIE Lab on tensors (any device), and the model's L / ab scaling.

The Lab scales and constants come from color_numpy (the same maths in numpy, for the torch-free ONNX engines);
data, losses, metrics and inference import them from here. The maths follows scikit-image (D65, 2 degree observer)
so the numbers agree with `skimage.color`.
"""
from __future__ import annotations

import functools

import torch

from gan_colorizer.color_numpy import AB_SCALE, D65 as _D65, L_SCALE, XYZ_FROM_RGB  # noqa: F401 (re-exported)

_XYZ_FROM_RGB = torch.from_numpy(XYZ_FROM_RGB)
_RGB_FROM_XYZ = torch.linalg.inv(_XYZ_FROM_RGB)


@functools.lru_cache(maxsize=None)
def _constants(device: torch.device, dtype: torch.dtype) -> dict:
    """The Lab constants on a device in a dtype, made once: a copy per call is a host-to-device transfer each time
    (four per generator step with --perceptual-weight). Made outside inference mode whoever asks first, so that
    colorizing first and training after still gives tensors autograd may save."""
    with torch.inference_mode(False):
        return {"xyz_from_rgb": _XYZ_FROM_RGB.to(device=device, dtype=dtype),
                "rgb_from_xyz": _RGB_FROM_XYZ.to(device=device, dtype=dtype),
                "d65": torch.tensor(_D65, dtype=dtype).view(1, 3, 1, 1).to(device),
                "y_from_rgb": _XYZ_FROM_RGB[1].float().view(3, 1).to(device),
                "linear": _linear_table(device)}


def _mix(matrix: str, x: torch.Tensor) -> torch.Tensor:
    """Apply a 3x3 matrix of _constants to the channel dimension of a (B, 3, H, W) tensor."""
    return torch.einsum("ij,bjhw->bihw", _constants(x.device, x.dtype)[matrix], x)


def _float32(x: torch.Tensor) -> torch.Tensor:
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) sRGB in [0, 1] -> Lab (L in [0, 100], ab in about [-110, 110])."""
    with torch.autocast(rgb.device.type, enabled=False):
        rgb = _float32(rgb).clamp(0.0, 1.0)
        linear = torch.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
        xyz = _mix("xyz_from_rgb", linear) / _constants(rgb.device, rgb.dtype)["d65"]
        f = torch.where(xyz > 0.008856, xyz.clamp_min(0.008856) ** (1.0 / 3.0), 7.787 * xyz + 16.0 / 116.0)
        fx, fy, fz = f[:, 0:1], f[:, 1:2], f[:, 2:3]
        return torch.cat([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], dim=1)


def lab_to_rgb(lab: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) Lab -> sRGB in [0, 1], out-of-gamut colors clipped as scikit-image does."""
    with torch.autocast(lab.device.type, enabled=False):
        lab = _float32(lab)
        fy = (lab[:, 0:1] + 16.0) / 116.0
        fx = lab[:, 1:2] / 500.0 + fy
        fz = (fy - lab[:, 2:3] / 200.0).clamp_min(0.0)
        f = torch.cat([fx, fy, fz], dim=1)
        xyz = torch.where(f > 0.2068966, f ** 3, (f - 16.0 / 116.0) / 7.787)
        linear = _mix("rgb_from_xyz", xyz * _constants(lab.device, lab.dtype)["d65"])
        rgb = torch.where(linear > 0.0031308,
                          1.055 * linear.clamp_min(0.0031308) ** (1.0 / 2.4) - 0.055, 12.92 * linear)
        return rgb.clamp(0.0, 1.0)


def lab_to_model(lab: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Lab -> (gray_l, ab) in the model's units."""
    return lab[:, :1] / L_SCALE - 1.0, lab[:, 1:] / AB_SCALE


def model_to_lab(gray_l: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
    """(gray_l, ab) in the model's units -> Lab."""
    return torch.cat([(_float32(gray_l) + 1.0) * L_SCALE, _float32(ab) * AB_SCALE], dim=1)


def rgb_to_model(rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """sRGB batch (uint8 0..255 or float 0..1) -> (gray_l, real_ab) in the model's units."""
    if rgb.dtype == torch.uint8:
        rgb = rgb.float() / 255.0
    return lab_to_model(rgb_to_lab(rgb))


def model_to_rgb(gray_l: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
    """(gray_l, ab) in the model's units -> sRGB in [0, 1]."""
    return lab_to_rgb(model_to_lab(gray_l, ab))


def to_uint8(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB in [0, 1] -> uint8, rounded."""
    return (rgb.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)


def gray_rgb(gray_l: torch.Tensor) -> torch.Tensor:
    """The L channel alone (ab = 0) as 8-bit sRGB: the gray baseline's image."""
    return to_uint8(model_to_rgb(gray_l, torch.zeros_like(gray_l).expand(-1, 2, -1, -1)))


def _linear_table(device) -> torch.Tensor:
    """sRGB level 0..255 -> linear light, float32 (computed in float64)."""
    v = torch.arange(256, dtype=torch.float64) / 255.0
    return torch.where(v > 0.04045, ((v + 0.055) / 1.055) ** 2.4, v / 12.92).float().to(device)


def rgb8_to_gray_l(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 sRGB (B, 3, H, W), or gray levels (B, 1, H, W) -> gray_l (B, 1, H, W) in the model's units.

    The L of rgb_to_lab to float32 precision, through a 256-entry table: several times cheaper on
    full-size photos, whose only L is needed. Fastest for channels-last (H, W, C) image arrays.
    """
    last, constants = pixels.permute(0, 2, 3, 1), _constants(pixels.device, torch.float32)
    linear = constants["linear"].index_select(0, last.reshape(-1).int()).view(last.shape)
    y = linear if last.shape[-1] == 1 else linear @ constants["y_from_rgb"]
    f = torch.where(y > 0.008856, y.clamp_min(0.008856) ** (1.0 / 3.0), 7.787 * y + 16.0 / 116.0)
    return ((116.0 / L_SCALE) * f - (16.0 / L_SCALE + 1.0)).permute(0, 3, 1, 2)


def rotate_ab(ab: torch.Tensor, degrees) -> torch.Tensor:
    """ab (N, 2, H, W) turned about the gray axis by `degrees` (a number, or one per image): the hue turns, chroma
    and L stay."""
    angle = torch.as_tensor(degrees, dtype=torch.float64).deg2rad().reshape(-1, 1, 1, 1)
    cos, sin = angle.cos().to(ab), angle.sin().to(ab)
    a, b = ab[:, 0:1], ab[:, 1:2]
    return torch.cat([a * cos - b * sin, a * sin + b * cos], 1)
