"""Every metric against an independent computation: scikit-image, published test data, hand-worked arrays, scipy."""
import math

import numpy as np
import pytest
import scipy.linalg
import torch
from skimage.color import deltaE_ciede2000, rgb2lab
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from gan_colorizer import metrics as M
from gan_colorizer.color import rgb_to_lab

# Sharma, Wu & Dalal (2005), Table 1: (Lab1, Lab2, CIEDE2000), covering the hue-wrap and zero-chroma branches
SHARMA = [((50, 2.6772, -79.7751), (50, 0, -82.7485), 2.0425), ((50, 0, 0), (50, -1, 2), 2.3669),
          ((50, 2.5, 0), (73, 25, -18), 27.1492), ((60.2574, -34.0099, 36.2677), (60.4626, -34.1751, 39.4387), 1.2644),
          ((50, 2.49, -0.001), (50, -2.49, 0.0011), 7.2195), ((2.0776, 0.0795, -1.135), (0.9033, -0.0636, -0.5514), 0.9082)]


def pair(seed=0, shape=(3, 37, 52), noise=40):
    """Two related uint8 RGB batches (B, H, W, 3) as numpy, and as (B, 3, H, W) tensors."""
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, shape + (3,), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-noise, noise + 1, a.shape), 0, 255).astype(np.uint8)
    return a, b, torch.from_numpy(a).permute(0, 3, 1, 2), torch.from_numpy(b).permute(0, 3, 1, 2)


def sk_ssim(x, y):
    return structural_similarity(x, y, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                 data_range=255, channel_axis=-1)


def test_psnr_matches_skimage_and_is_inf_for_identical_images():
    a, b, ta, tb = pair()
    ours = M.psnr(ta, tb)
    assert ours.dtype == torch.float64
    np.testing.assert_allclose(ours.numpy(), [peak_signal_noise_ratio(x, y, data_range=255) for x, y in zip(a, b)],
                               rtol=1e-12)
    assert torch.isinf(M.psnr(ta, ta)).all()


def test_ssim_matches_skimage_on_rgb_with_the_gaussian_window():
    for seed, shape in [(0, (3, 37, 52)), (1, (2, 64, 64)), (2, (1, 11, 300))]:
        a, b, ta, tb = pair(seed, shape)
        np.testing.assert_allclose(M.ssim(ta, tb).numpy(), [sk_ssim(x, y) for x, y in zip(a, b)], atol=1e-7)


def test_ssim_one_channel_at_a_time_for_large_batches_gives_the_same(monkeypatch):
    a, b, ta, tb = pair(3, (2, 30, 41))
    together = M.ssim(ta, tb)
    monkeypatch.setattr(M, "SSIM_PASS_ELEMENTS", 1)
    assert torch.allclose(M.ssim(ta, tb), together, atol=1e-12, rtol=0)
    np.testing.assert_allclose(together.numpy(), [sk_ssim(x, y) for x, y in zip(a, b)], atol=1e-7)


def test_ssim_of_identical_and_constant_images():
    a, _, ta, _ = pair(shape=(2, 20, 24))
    assert torch.allclose(M.ssim(ta, ta), torch.ones(2, dtype=torch.float64))
    flat_gray = np.full((1, 20, 24, 3), 128, np.uint8)
    flat_red = np.zeros((1, 20, 24, 3), np.uint8)
    flat_red[..., 0] = 200
    t = [torch.from_numpy(x).permute(0, 3, 1, 2) for x in (flat_gray, flat_red)]
    np.testing.assert_allclose(M.ssim(*t).numpy(), [sk_ssim(flat_gray[0], flat_red[0])], atol=1e-7)


def test_ssim_is_nan_for_images_smaller_than_the_window():
    x = torch.zeros(2, 3, 10, 40, dtype=torch.uint8)
    assert torch.isnan(M.ssim(x, x)).all()


def test_ciede2000_reproduces_sharma_test_data_and_skimage():
    lab1 = torch.tensor([p[0] for p in SHARMA], dtype=torch.float64).view(1, -1, 3).permute(0, 2, 1)[..., None]
    lab2 = torch.tensor([p[1] for p in SHARMA], dtype=torch.float64).view(1, -1, 3).permute(0, 2, 1)[..., None]
    ours = M.delta_e2000_map(lab1, lab2).flatten()
    np.testing.assert_allclose(ours.numpy(), [p[2] for p in SHARMA], atol=1e-4)
    rng = np.random.default_rng(0)
    l1, l2 = rng.uniform([0, -110, -110], [100, 110, 110], (2, 5000, 3))
    l2[:100, 1:] = 0  # zero chroma
    expected = deltaE_ciede2000(l1, l2)
    t1, t2 = (torch.from_numpy(x.T.copy()).view(1, 3, -1, 1) for x in (l1, l2))
    np.testing.assert_allclose(M.delta_e2000_map(t1, t2).flatten().numpy(), expected, atol=1e-9)
    np.testing.assert_allclose(M.delta_e2000_map(t1.float(), t2.float()).flatten().numpy(), expected, atol=2e-3)


def test_ciede2000_mean_per_image_from_rgb_matches_skimage():
    a, b, ta, tb = pair()
    ours = M.delta_e2000(rgb_to_lab(ta.float() / 255), rgb_to_lab(tb.float() / 255))
    expected = [deltaE_ciede2000(rgb2lab(x), rgb2lab(y)).mean() for x, y in zip(a, b)]
    np.testing.assert_allclose(ours.numpy(), expected, atol=1e-4)


def test_colorfulness_worked_by_hand_on_a_2x2_image():
    # red, green, blue, white: rg = |R-G| = 255, 255, 0, 0; yb = |(R+G)/2 - B| = 127.5, 127.5, 255, 0
    rgb = torch.tensor([[[255, 0], [0, 255]], [[0, 255], [0, 255]], [[0, 0], [255, 255]]], dtype=torch.uint8)[None]
    std_rg, mean_rg = 127.5, 127.5
    std_yb, mean_yb = math.sqrt((0 + 0 + 127.5 ** 2 + 127.5 ** 2) / 4), 127.5
    expected = math.sqrt(std_rg ** 2 + std_yb ** 2) + 0.3 * math.sqrt(mean_rg ** 2 + mean_yb ** 2)
    assert M.colorfulness(rgb).item() == pytest.approx(expected, rel=1e-12)
    assert M.colorfulness(torch.full((1, 3, 5, 5), 90, dtype=torch.uint8)).item() == 0.0


def test_colorfulness_uses_absolute_opponent_channels():
    # half the pixels R > G, half G > R by the same amount: signed rg has mean 0, |rg| has mean 100 and std 0
    rgb = torch.zeros(1, 3, 1, 2)
    rgb[0, 0, 0, 0], rgb[0, 1, 0, 1] = 100, 100
    yb = 50.0  # |(100 + 0) / 2 - 0| for both pixels
    assert M.colorfulness(rgb).item() == pytest.approx(0.3 * math.sqrt(100 ** 2 + yb ** 2))


def ab_with_errors(errors) -> tuple[torch.Tensor, torch.Tensor]:
    """(pred, true) ab batches of one image whose per-pixel ab errors are `errors`, along the a axis (exact)."""
    err = torch.as_tensor(errors, dtype=torch.float32).view(1, 1, 1, -1)
    true_ab = torch.zeros(1, 2, 1, err.shape[-1])
    return true_ab + torch.cat([err, torch.zeros_like(err)], dim=1), true_ab


def test_auc_worked_by_hand_is_the_normalised_area_under_the_cumulative_curve():
    # errors 0, 0.5, 149.5, 200: the cumulative share on t = 0, 1, ..., 150 is 1/4 at 0, 2/4 from 1 to 149, 3/4 at 150;
    # trapezoid: (1/4 + 2/4) / 2 + 148 * 2/4 + (2/4 + 3/4) / 2 = 75, over 150 -> 0.5
    # (the mean over t = 0, 10, ..., 150 of Zhang et al.'s 16 points gave (1/4 + 14 * 2/4 + 3/4) / 16 = 0.5)
    pred_ab, true_ab = ab_with_errors([0.0, 0.5, 149.5, 200.0])
    assert M.auc_ab(pred_ab, true_ab).item() == pytest.approx(0.5)
    # errors 0 and 5: share 1/2 on t = 0..4, 1 from t = 5: (4 * 1/2 + (1/2 + 1) / 2 + 145) / 150 = 0.985
    # (the 16-point mean read (1/2 + 15) / 16 = 0.969)
    assert M.auc_ab(*ab_with_errors([0.0, 5.0])).item() == pytest.approx(0.985)
    assert M.auc_ab(true_ab, true_ab).item() == 1.0
    assert M.auc_ab(*ab_with_errors([150.5, 300.0])).item() == 0.0


def test_auc_matches_a_direct_numerical_integration_of_the_cumulative_curve():
    _, _, ta, pa = pair(shape=(3, 37, 52), noise=60)
    true_lab, pred_lab = (M.rgb_to_lab(x.float() / 255) for x in (ta, pa))
    err = (pred_lab[:, 1:] - true_lab[:, 1:]).pow(2).sum(dim=1).sqrt().flatten(1).double()
    t = torch.arange(0, 151, dtype=torch.float64)
    cumulative = (err[:, :, None] <= t).double().mean(dim=1)  # (B, thresholds)
    direct = torch.trapezoid(cumulative, t, dim=1) / 150
    got = M.auc_ab(pred_lab[:, 1:], true_lab[:, 1:])
    assert torch.allclose(got, direct, atol=1e-12)
    assert (got > 0.05).all() and (got < 0.999).all()  # errors spread over the range, not a degenerate case
    exact = (1 - err / 150).clamp(0, 1).mean(dim=1)  # the integral of the step curve itself
    assert torch.allclose(got, exact, atol=1 / 150)


def test_image_metrics_of_identical_images():
    _, _, ta, _ = pair(shape=(2, 16, 16))
    m = M.image_metrics(ta, ta)
    assert torch.isinf(m["psnr"]).all() and torch.allclose(m["ssim"], torch.ones(2, dtype=torch.float64))
    assert m["delta_e2000"].abs().max() == 0 and (m["auc_ab"] == 1).all()


def test_summarize_leaves_out_inf_and_counts_it():
    s = M.summarize([1.0, 3.0, math.inf, 2.0, math.nan])
    assert s == {"mean": 2.0, "std": pytest.approx(math.sqrt(2 / 3)), "median": 2.0, "n": 3, "inf": 1, "nan": 1}
    assert M.summarize([5.0]) == {"mean": 5.0, "std": 0.0, "median": 5.0, "n": 1, "inf": 0, "nan": 0}
    assert M.summarize([math.inf])["mean"] is None


def test_feature_moments_match_numpy_over_uneven_batches():
    feats = torch.randn(103, 7, dtype=torch.float64) * 3 + 10
    moments = M.FeatureMoments()
    for chunk in feats.split([1, 50, 2, 50]):
        moments.update(chunk.float() if chunk.shape[0] == 2 else chunk)
    mean, cov = moments.stats()
    np.testing.assert_allclose(mean, feats.numpy().mean(0), atol=1e-6)
    np.testing.assert_allclose(cov, np.cov(feats.numpy(), rowvar=False), atol=1e-5)
    one = M.FeatureMoments()
    one.update(feats[:1])
    with pytest.raises(ValueError):
        one.stats()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_frechet_distance_matches_the_scipy_sqrtm_formula_and_pytorch_fid():
    from pytorch_fid.fid_score import calculate_frechet_distance
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(400, 32)), rng.normal(size=(300, 32)) * 1.3 + 0.2
    mu1, s1, mu2, s2 = x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False)
    by_hand = ((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * scipy.linalg.sqrtm(s1 @ s2).real)
    ours = M.frechet_distance(mu1, s1, mu2, s2)
    assert ours == pytest.approx(by_hand, rel=1e-8)
    assert ours == pytest.approx(calculate_frechet_distance(mu1, s1, mu2, s2), rel=1e-8)
    assert abs(M.frechet_distance(mu1, s1, mu1, s1)) < 1e-8


def test_frechet_distance_is_finite_with_singular_covariances():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(3, 64)), rng.normal(size=(3, 64)) + 1  # 3 samples in 64-d: rank 2
    d = M.frechet_distance(x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False))
    assert math.isfinite(d) and d > 0
