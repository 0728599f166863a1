"""The quantized ab space of the classification head: bins, soft encoding, rebalancing, decoding, the loss."""
import numpy as np
import pytest
import torch
from matplotlib.path import Path as PolygonPath
from scipy.spatial import ConvexHull

from gan_colorizer import ab_bins as cc
from gan_colorizer.color import AB_SCALE, rgb_to_lab


def srgb_ab(colors: np.ndarray) -> np.ndarray:
    """(N, 3) uint8 colors -> (N, 2) ab."""
    rgb = torch.from_numpy(colors.T.astype(np.float64) / 255)[None, :, :, None]
    return rgb_to_lab(rgb)[0, 1:, :, 0].T.numpy()


def cube(levels: int) -> np.ndarray:
    v = np.round(np.linspace(0, 255, levels)).astype(np.uint8)
    return np.stack(np.meshgrid(v, v, v, indexing="ij"), -1).reshape(-1, 3)


def test_bins_are_313_grid_points_and_match_an_independent_brute_force():
    bins = cc.ab_bins()
    assert bins.shape == (313, 2)
    assert np.all(bins % 10 == 0)
    assert (bins[:, 0].min(), bins[:, 0].max(), bins[:, 1].min(), bins[:, 1].max()) == (-90, 100, -110, 100)
    # brute force: the corners of every 10 x 10 grid cell holding a point of the gamut's convex hull, found by
    # sampling the hull (of every 8-bit color with even levels, not the cube surface) every half ab unit inside and
    # every 0.01 unit along its edges
    ab = srgb_ab(cube(128))
    hull = ab[ConvexHull(ab).vertices]
    g = np.arange(-115, 115, 0.5)
    grid = np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    t = np.linspace(0, 1, 2000)[:, None, None]
    edges = (hull[None] * (1 - t) + np.roll(hull, -1, 0)[None] * t).reshape(-1, 2)
    inside = np.concatenate([grid[PolygonPath(hull).contains_points(grid)], edges])
    corners = {(int(x), int(y)) for fa in (np.floor, np.ceil) for fb in (np.floor, np.ceil)
               for x, y in zip(fa(inside[:, 0] / 10) * 10, fb(inside[:, 1] / 10) * 10)}
    assert {tuple(map(int, b)) for b in bins} == corners


def test_every_srgb_color_has_its_grid_cell_corners_and_a_bin_within_half_a_diagonal():
    rng = np.random.default_rng(0)
    colors = np.concatenate([rng.integers(0, 256, (100_000, 3), dtype=np.uint8), cube(2), cube(18)])
    ab = srgb_ab(colors)
    bins = {tuple(map(int, b)) for b in cc.ab_bins()}
    for fa in (np.floor, np.ceil):
        for fb in (np.floor, np.ceil):
            assert {(int(x), int(y)) for x, y in zip(fa(ab[:, 0] / 10) * 10, fb(ab[:, 1] / 10) * 10)} <= bins
    _, d2 = cc.nearest_bins(torch.from_numpy(ab), cc.bin_tensor(), k=1)
    assert d2.sqrt().max() <= 5 * np.sqrt(2) + 1e-4


def test_soft_encoding_sums_to_one_over_the_five_nearest_bins_with_gaussian_weights(monkeypatch):
    monkeypatch.setattr(cc, "ENCODE_CHUNK", 7)  # the chunked search must agree with one full search
    rng = np.random.default_rng(1)
    ab = srgb_ab(rng.integers(0, 256, (3 * 5, 3), dtype=np.uint8))
    real_ab = torch.from_numpy(ab).float().reshape(3, 1, 5, 2).permute(0, 3, 1, 2) / AB_SCALE
    index, weight = cc.soft_encode(real_ab, cc.bin_tensor())
    assert index.shape == weight.shape == (3, 5, 1, 5)
    assert torch.allclose(weight.sum(1), torch.ones(3, 1, 5))
    bins = cc.ab_bins().astype(np.float64)
    flat_ab = real_ab.permute(0, 2, 3, 1).reshape(-1, 2).double().numpy() * AB_SCALE
    flat_index, flat_weight = (t.permute(0, 2, 3, 1).reshape(-1, 5).numpy() for t in (index, weight))
    for x, found, w in zip(flat_ab, flat_index, flat_weight):
        d2 = ((bins - x) ** 2).sum(1)
        assert list(found) == list(np.argsort(d2, kind="stable")[:5])  # nearest first
        expected = np.exp(-d2[found] / (2 * 5.0 ** 2))
        assert np.allclose(w, expected / expected.sum(), atol=1e-5)


def test_rebalancing_weights_have_mean_one_under_the_prior_boost_rare_bins_and_lambda_one_is_uniform():
    rng = np.random.default_rng(2)
    prior = rng.random(313) ** 4
    prior[:20] = 0
    prior /= prior.sum()
    for lam in (0.1, 0.5, 0.9):
        w = cc.rebalance_weights(prior, lam)
        assert (prior * w).sum() == pytest.approx(1.0)
        assert np.all(np.diff(w[np.argsort(prior)]) <= 1e-12)  # rarer bins weigh more
    assert np.allclose(cc.rebalance_weights(prior, 1.0), 1.0)


def test_smoothing_keeps_the_mass_and_shares_it_with_neighbouring_bins():
    bins = cc.ab_bins()
    one = np.zeros(len(bins))
    center = int(np.flatnonzero((bins == [0, 0]).all(1))[0])
    one[center] = 1.0
    smoothed = cc.smooth_prior(one, bins)
    assert smoothed.sum() == pytest.approx(1.0)
    neighbor = int(np.flatnonzero((bins == [10, 0]).all(1))[0])
    assert smoothed[neighbor] / smoothed[center] == pytest.approx(np.exp(-100 / 50), rel=1e-6)


def test_annealed_mean_is_the_mean_at_t1_and_tends_to_the_mode_as_t_goes_to_0():
    torch.manual_seed(0)
    bins = cc.bin_tensor()
    logits = torch.randn(2, len(bins), 3, 4) * 3
    mean, mode = cc.decode(logits, bins, "mean"), cc.decode(logits, bins, "mode")
    assert torch.allclose(cc.decode(logits, bins, "annealed", 1.0), mean, atol=1e-6)
    assert torch.allclose(cc.decode(logits, bins, "annealed", 1e-3), mode, atol=1e-5)
    assert torch.allclose(mode * AB_SCALE, bins[logits.argmax(1)].permute(0, 3, 1, 2))
    chroma = [cc.decode(logits, bins, "annealed", t).norm(dim=1).mean() for t in (1.0, 0.38, 0.1)]
    assert chroma[0] < chroma[1] < chroma[2]  # annealing sharpens: further from the gray center
    with pytest.raises(ValueError, match="unknown decoding"):
        cc.decode(logits, bins, "median")


def test_cross_entropy_and_its_gradient_match_a_dense_reference():
    torch.manual_seed(1)
    bins = cc.bin_tensor()
    q = len(bins)
    logits = torch.randn(2, q, 3, 4, dtype=torch.float64, requires_grad=True)
    real_ab = (torch.rand(2, 2, 3, 4) - 0.5) * 0.8
    class_weights = torch.rand(q) + 0.5
    index, weight = cc.soft_encode(real_ab, bins)
    loss = cc.classification_loss(logits, index, weight, class_weights)
    (grad,) = torch.autograd.grad(loss, logits)
    dense = torch.zeros(2, q, 3, 4, dtype=torch.float64).scatter_(1, index, weight.double())
    ref_logits = logits.detach().clone().requires_grad_(True)
    per_pixel = -(dense * torch.log_softmax(ref_logits, 1)).sum(1) * class_weights.double()[index[:, 0]]
    reference = per_pixel.mean()
    reference.backward()
    assert loss.item() == pytest.approx(reference.item(), rel=1e-6)
    assert torch.allclose(grad, ref_logits.grad, atol=1e-7)
    assert torch.equal(dense.argmax(1), index[:, 0])  # the weight's bin is the nearest, the most weighted


def test_the_annealed_mean_passes_gradients_to_every_logit():
    logits = torch.randn(1, len(cc.bin_tensor()), 2, 2, requires_grad=True)
    cc.decode(logits, cc.bin_tensor()).sum().backward()
    assert logits.grad.abs().gt(0).float().mean() > 0.99
