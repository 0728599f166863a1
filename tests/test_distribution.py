"""ab / L / chroma histograms: right bins, batch accumulation equals one pass, and the ab-plane picture."""
import numpy as np
import pytest
import torch
from PIL import Image

from gan_colorizer.color import lab_to_rgb
from gan_colorizer.inspect.ab_histograms import (
    AB_BIN,
    AB_RANGE,
    N_AB,
    N_CHROMA,
    N_L,
    PLOT_L,
    ColorDistribution,
    ab_histogram,
    ab_plane_rgb,
    compare,
    distribution_figure,
    intersection,
    l_histogram,
)


def lab_batch(values, shape=(1, 1)) -> torch.Tensor:
    """A (len(values), 3, *shape) Lab batch, each image filled with one (L, a, b)."""
    return torch.tensor(values, dtype=torch.float32).view(-1, 3, 1, 1).expand(-1, -1, *shape).contiguous()


def test_histograms_count_each_pixel_in_its_bin():
    lab = lab_batch([(50, 0.5, -0.5), (99.9, 30.0, 41.0), (100, -200, 200)], shape=(2, 3))
    ab = ab_histogram(lab)
    assert ab.shape == (N_AB, N_AB) and int(ab.sum()) == 18
    zero = int(AB_RANGE / AB_BIN)
    assert ab[zero, zero - 1] == 6  # a in [0, 2), b in [-2, 0)
    assert ab[zero + 15, zero + 20] == 6  # a 30 -> bin 70, b 41 -> bin 75
    assert ab[0, N_AB - 1] == 6  # beyond the range: clamped into the border bins
    l = l_histogram(lab)
    assert l.shape == (N_L,) and l[50] == 6 and l[99] == 12


def test_accumulating_batches_equals_one_pass_over_all_images():
    rng = torch.Generator().manual_seed(0)
    lab = torch.cat([torch.rand(6, 1, 8, 8, generator=rng) * 100, (torch.rand(6, 2, 8, 8, generator=rng) - 0.5) * 200], 1)
    whole, parts = ColorDistribution(), ColorDistribution()
    whole.update(lab)
    for chunk in lab.split(2):
        parts.update(chunk)
    assert np.array_equal(whole.ab, parts.ab) and np.array_equal(whole.l, parts.l) and np.array_equal(whole.c, parts.c)
    assert whole.pixels == 6 * 64 and whole.c.shape == (N_CHROMA,)
    chroma = torch.hypot(lab[:, 1], lab[:, 2])
    assert whole.mean_chroma() == pytest.approx(float((chroma.floor().clamp(max=N_CHROMA - 1) + 0.5).mean()), rel=1e-6)


def test_intersection_is_one_for_the_same_colors_and_zero_for_disjoint_ones():
    warm, cold, warm2 = ColorDistribution(), ColorDistribution(), ColorDistribution()
    warm.update(lab_batch([(50, 40, 40)], (4, 4)))
    warm2.update(lab_batch([(70, 40, 40)], (8, 8)))  # other L and count, same ab
    cold.update(lab_batch([(50, -20, -30)], (4, 4)))
    assert intersection(warm, warm2) == pytest.approx(1.0) and intersection(warm, cold) == 0.0
    numbers = compare(cold, warm)
    assert numbers["mean_chroma"] < numbers["truth_mean_chroma"]


def test_ab_plane_draws_each_bin_in_its_own_color_at_l50_with_log_density_as_opacity():
    dist = ColorDistribution()
    dist.update(lab_batch([(80, 41, 21)], (10, 10)))  # 100 pixels in one bin
    dist.update(lab_batch([(20, -31, 21)], (1, 1)))  # 1 pixel: 2 decades below the densest bin
    plane = ab_plane_rgb(dist, background=(1.0, 1.0, 1.0))
    assert plane.shape == (N_AB, N_AB, 3)

    def at(a, b):  # row 0 is the top of the b axis, column 0 the left of the a axis
        return plane[N_AB - 1 - int((b + AB_RANGE) // AB_BIN), int((a + AB_RANGE) // AB_BIN)]

    def color(a, b):  # the bin center's color at L = 50
        return lab_to_rgb(torch.tensor([PLOT_L, a, b], dtype=torch.float64).view(1, 3, 1, 1))[0, :, 0, 0].numpy()
    assert np.allclose(at(41, 21), color(41, 21))  # densest: opaque
    faint = 1 - 2 / 5  # 2 of the 5 decades shown below the top
    assert np.allclose(at(-31, 21), faint * color(-31, 21) + (1 - faint) * 0.93)  # over the in-gamut shade
    assert np.allclose(at(-105, 105), 1.0)  # empty and outside the sRGB gamut at L = 50: the background


def test_distribution_figure_is_written_and_returned(tmp_path):
    truth, pred = ColorDistribution(), ColorDistribution()
    truth.update(lab_batch([(50, 40, 40), (60, -20, 10)], (8, 8)))
    pred.update(lab_batch([(50, 10, 10)], (8, 8)))
    rgb = distribution_figure(truth, {"model": pred}, tmp_path / "d.png")
    saved = np.asarray(Image.open(tmp_path / "d.png").convert("RGB"))
    assert rgb.dtype == np.uint8 and rgb.shape == saved.shape and rgb.shape[0] > 300
