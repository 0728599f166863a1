"""Colorization metrics as pure functions on batched tensors (any device), and their per-set aggregation.

Images are (B, 3, H, W) sRGB holding 8-bit values (uint8, or floats in 0..255); Lab is color.py's.
Each function returns one value per image, except `frechet_distance` (per set).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from gan_colorizer.color import rgb_to_lab

GRAY = "gray"  # the label of the baseline that predicts ab = 0 (the ground truth's L only)
METRICS = ("psnr", "ssim", "delta_e2000", "colorfulness", "auc_ab", "lpips")  # per image: metrics.csv, the report
AUC_MAX_T, AUC_STEP = 150, 1  # Zhang et al. 2016: ab thresholds t in [0, 150]; the trapezoid over t = 0, 1, ..., 150
SSIM_SIGMA, SSIM_TRUNCATE = 1.5, 3.5  # Wang et al. 2004; scikit-image's truncate gives the 11-tap window
SSIM_K1, SSIM_K2 = 0.01, 0.03
SSIM_PASS_ELEMENTS = 2 ** 24  # above this many input values per batch, SSIM goes one channel at a time


def psnr(pred: torch.Tensor, true: torch.Tensor, peak: float = 255.0) -> torch.Tensor:
    """20 log10(peak / sqrt(MSE)) over all channels, float64; inf for identical images."""
    diff = pred.float() - true.float()
    mse = diff.pow(2).sum(dim=(1, 2, 3), dtype=torch.float64) / diff[0].numel()
    return 10.0 * torch.log10(peak ** 2 / mse)


def gaussian_kernel(sigma: float = SSIM_SIGMA, truncate: float = SSIM_TRUNCATE) -> torch.Tensor:
    """The normalized 1-D Gaussian of scipy.ndimage (radius int(truncate * sigma + 0.5)), float64."""
    radius = int(truncate * sigma + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def ssim(pred: torch.Tensor, true: torch.Tensor, data_range: float = 255.0, sigma: float = SSIM_SIGMA) -> torch.Tensor:
    """Mean SSIM over channels, Gaussian-weighted (Wang et al. 2004), as scikit-image's structural_similarity with
    gaussian_weights=True, use_sample_covariance=False, channel_axis.

    Windows touching the border are left out, as scikit-image crops them; images with a side shorter than the
    window (11 px) get NaN. float32 on values centered on each image's mean (variances and covariances do not
    change, the cancellation in E[x^2] - E[x]^2 shrinks) stays within a few 1e-6 of scikit-image's float64.
    """
    k = gaussian_kernel(sigma).float().to(pred.device)
    b, c, h, w = pred.shape
    if min(h, w) < k.numel():
        return torch.full((b,), math.nan, dtype=torch.float64, device=pred.device)
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    # all channels in one pass (fewer, larger ops); one at a time for full-resolution batches, to bound memory
    step = c if b * c * h * w <= SSIM_PASS_ELEMENTS else 1
    per_channel = []
    for ch in range(0, c, step):
        x, y = pred[:, ch:ch + step].float(), true[:, ch:ch + step].float()
        mx, my = x.mean(dim=(2, 3), keepdim=True), y.mean(dim=(2, 3), keepdim=True)
        x, y = x - mx, y - my
        ux, uy, uxx, uyy, uxy = _blur(torch.cat([x, y, x * x, y * y, x * y], dim=1), k).split(x.shape[1], dim=1)
        vx, vy, vxy = uxx - ux * ux, uyy - uy * uy, uxy - ux * uy
        ux, uy = ux + mx, uy + my
        s = (2 * ux * uy + c1) * (2 * vxy + c2) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
        per_channel.append(s.flatten(2).mean(dim=2, dtype=torch.float64))
    return torch.cat(per_channel, dim=1).mean(dim=1)


def _blur(maps: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian over each channel, 'valid' only (depthwise convolutions are the fast path on CPU)."""
    n = maps.shape[1]
    maps = F.conv2d(maps, k.view(1, 1, 1, -1).expand(n, 1, 1, -1), groups=n)
    return F.conv2d(maps, k.view(1, 1, -1, 1).expand(n, 1, -1, 1), groups=n)


def _hue(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """atan2 mapped to [0, 2 pi), as scikit-image's _cart2polar_2pi."""
    h = torch.atan2(b, a)
    return torch.where(h < 0, h + 2 * math.pi, h)


def delta_e2000_map(lab1: torch.Tensor, lab2: torch.Tensor) -> torch.Tensor:
    """Per-pixel CIEDE2000 (kL = kC = kH = 1) between (B, 3, H, W) Lab batches -> (B, H, W).

    A port of scikit-image's deltaE_ciede2000 (Sharma et al. 2005), in the dtype of the inputs.
    """
    l1, a1, b1 = lab1.unbind(1)
    l2, a2, b2 = lab2.unbind(1)
    c_bar = 0.5 * (torch.hypot(a1, b1) + torch.hypot(a2, b2))
    g = 0.5 * (1 - torch.sqrt(c_bar ** 7 / (c_bar ** 7 + 25.0 ** 7)))
    c1, h1 = torch.hypot(a1 * (1 + g), b1), _hue(a1 * (1 + g), b1)
    c2, h2 = torch.hypot(a2 * (1 + g), b2), _hue(a2 * (1 + g), b2)
    l_bar = 0.5 * (l1 + l2)
    sl = 1 + 0.015 * (l_bar - 50) ** 2 / torch.sqrt(20 + (l_bar - 50) ** 2)
    l_term = (l2 - l1) / sl
    c_bar = 0.5 * (c1 + c2)
    c_term = (c2 - c1) / (1 + 0.045 * c_bar)
    h_diff, h_sum, cc = h2 - h1, h1 + h2, c1 * c2
    two_pi = 2 * math.pi
    dh = torch.where(h_diff > math.pi, h_diff - two_pi, torch.where(h_diff < -math.pi, h_diff + two_pi, h_diff))
    dh = torch.where(cc == 0, torch.zeros_like(dh), dh)
    dh_term = 2 * torch.sqrt(cc) * torch.sin(dh / 2)
    wrap = (cc != 0) & (h_diff.abs() > math.pi)
    h_bar = torch.where(wrap, torch.where(h_sum < two_pi, h_sum + two_pi, h_sum - two_pi), h_sum)
    h_bar = torch.where(cc == 0, h_bar * 2, h_bar) * 0.5
    t = (1 - 0.17 * torch.cos(h_bar - math.radians(30)) + 0.24 * torch.cos(2 * h_bar)
         + 0.32 * torch.cos(3 * h_bar + math.radians(6)) - 0.20 * torch.cos(4 * h_bar - math.radians(63)))
    h_term = dh_term / (1 + 0.015 * c_bar * t)
    rc = 2 * torch.sqrt(c_bar ** 7 / (c_bar ** 7 + 25.0 ** 7))
    dtheta = math.radians(30) * torch.exp(-(((torch.rad2deg(h_bar) - 275) / 25) ** 2))
    r_term = -torch.sin(2 * dtheta) * rc * c_term * h_term
    return torch.sqrt((l_term ** 2 + c_term ** 2 + h_term ** 2 + r_term).clamp_min(0))


def delta_e2000(lab_pred: torch.Tensor, lab_true: torch.Tensor) -> torch.Tensor:
    """Mean CIEDE2000 per image."""
    return delta_e2000_map(lab_pred, lab_true).flatten(1).mean(dim=1, dtype=torch.float64)


def colorfulness(rgb: torch.Tensor) -> torch.Tensor:
    """Hasler & Suesstrunk (2003) on 8-bit RGB, with rg = |R - G| and yb = |(R + G) / 2 - B|: the variant
    (pyimagesearch's) behind the colorization tables. sqrt(std_rg^2 + std_yb^2) + 0.3 sqrt(mean_rg^2 + mean_yb^2),
    population std over the pixels."""
    r, g, b = rgb.double().flatten(2).unbind(1)
    rg, yb = (r - g).abs(), (0.5 * (r + g) - b).abs()
    std_rg, mean_rg = torch.std_mean(rg, dim=1, correction=0)
    std_yb, mean_yb = torch.std_mean(yb, dim=1, correction=0)
    return torch.sqrt(std_rg ** 2 + std_yb ** 2) + 0.3 * torch.sqrt(mean_rg ** 2 + mean_yb ** 2)


def auc_ab(ab_pred: torch.Tensor, ab_true: torch.Tensor, max_t: float = AUC_MAX_T, step: float = AUC_STEP) -> torch.Tensor:
    """Zhang et al. 2016: the share of pixels whose ab L2 error is <= t, integrated over t in [0, max_t] (trapezoid on
    t = 0, step, ..., max_t) and divided by max_t; 1 for a perfect prediction.

    Exactly the trapezoid of that cumulative curve, in closed form per pixel: an error e first counts at grid point
    c = ceil(e / step), which adds n - c intervals and half of the one before (n = max_t / step), 0 when c > n.
    """
    err = (ab_pred.float() - ab_true.float()).pow(2).sum(dim=1).sqrt().flatten(1).double()  # (B, pixels)
    n = round(max_t / step)
    c = torch.ceil(err / step)
    area = torch.where(c > n, 0.0, n - c + 0.5 * (c > 0))
    return area.mean(dim=1) / n


def summarize(values) -> dict:
    """mean, std (population) and median over the finite values, with counts of inf and NaN ones left out."""
    v = np.asarray(values, dtype=np.float64)
    finite = v[np.isfinite(v)]
    stats = {"mean": None, "std": None, "median": None}
    if finite.size:
        stats = {"mean": float(finite.mean()), "std": float(finite.std()), "median": float(np.median(finite))}
    return stats | {"n": int(finite.size), "inf": int(np.isinf(v).sum()), "nan": int(np.isnan(v).sum())}


class FeatureMoments:
    """Running mean and covariance of feature vectors (Chan et al.'s batch merge, float64), so FID needs
    O(dim^2) memory however many images there are."""

    def __init__(self):
        self.n, self.mean, self.m2 = 0, None, None

    def update(self, feats: torch.Tensor) -> None:
        x = feats.detach().double()
        nb = x.shape[0]
        if nb == 0:
            return
        mean_b = x.mean(dim=0)
        centered = x - mean_b
        m2_b = centered.T @ centered
        if self.n == 0:
            self.n, self.mean, self.m2 = nb, mean_b, m2_b
            return
        total = self.n + nb
        delta = mean_b - self.mean
        self.m2 = self.m2 + m2_b + torch.outer(delta, delta) * (self.n * nb / total)
        self.mean = self.mean + delta * (nb / total)
        self.n = total

    def stats(self) -> tuple[np.ndarray, np.ndarray]:
        """(mean, covariance with ddof = 1, as numpy.cov) as float64 numpy arrays."""
        if self.n < 2:
            raise ValueError(f"a covariance needs at least 2 images, got {self.n}")
        return self.mean.cpu().numpy(), (self.m2 / (self.n - 1)).cpu().numpy()


def sqrtm_psd(sigma) -> np.ndarray:
    """The symmetric square root of a positive semi-definite matrix (negative round-off eigenvalues clipped)."""
    w, v = np.linalg.eigh(np.asarray(sigma, np.float64))
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(mu1, sigma1, mu2, sigma2, root1=None) -> float:
    """||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1 S2)^1/2) (Heusel et al. 2017), float64.

    tr((S1 S2)^1/2) is the sum of the square roots of the eigenvalues of S1^1/2 S2 S1^1/2, which is symmetric
    positive semi-definite: no complex parts and no failure on the singular covariances of small sets.
    root1 = sqrtm_psd(sigma1), when several sets are compared with the same reference.
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    root1 = sqrtm_psd(sigma1) if root1 is None else root1
    inner = root1 @ sigma2 @ root1
    eig = np.linalg.eigvalsh((inner + inner.T) / 2)
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.sqrt(np.clip(eig, 0, None)).sum())


def image_lab(rgb: torch.Tensor) -> torch.Tensor:
    """Lab (fp32) of 8-bit sRGB images: what every Lab metric is computed on, in evaluation and in validation."""
    return rgb_to_lab(rgb.float() / 255.0)


def image_metrics(pred: torch.Tensor, true: torch.Tensor, true_lab: torch.Tensor | None = None,
                  pred_lab: torch.Tensor | None = None) -> dict:
    """Every per-image metric of a predicted batch against the truth, both 8-bit sRGB (B, 3, H, W).

    Lab comes from the 8-bit images (image_lab; pass it when already made), so the numbers are those of the saved PNGs.
    """
    true_lab = image_lab(true) if true_lab is None else true_lab
    pred_lab = image_lab(pred) if pred_lab is None else pred_lab
    return {"psnr": psnr(pred, true), "ssim": ssim(pred, true), "delta_e2000": delta_e2000(pred_lab, true_lab),
            "colorfulness": colorfulness(pred), "auc_ab": auc_ab(pred_lab[:, 1:], true_lab[:, 1:])}
