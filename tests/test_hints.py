"""Colour hints: maps from points, the hints file, and the simulated-hint sampler's statistics (hints.py)."""
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage.color import rgb2lab

from gan_colorizer import hints
from gan_colorizer.color import AB_SCALE
from gan_colorizer.errors import UserError


def test_a_hex_colour_becomes_the_lab_ab_scikit_image_gives():
    expected = rgb2lab(np.array([[[200, 60, 40]]], dtype=np.uint8))[0, 0, 1:]
    assert hints.parse_color("#c83c28") == pytest.approx(tuple(expected), abs=1e-3)
    assert hints.parse_color([200, 60, 40]) == pytest.approx(tuple(expected), abs=1e-3)
    assert hints.parse_color("#fff") == pytest.approx((0.0, 0.0), abs=0.01)


@pytest.mark.parametrize("bad", ["red", "#12345", "#gg0000", [255, 0], [256, 0, 0], [1, 2, float("nan")], None, True])
def test_a_bad_colour_is_refused(bad):
    with pytest.raises(ValueError, match="color"):
        hints.parse_color(bad)


def test_a_hint_fills_its_square_at_the_render_pixel_of_its_point():
    hint = hints.Hint(x=300.0, y=100.0, ab=(40.0, -20.0), radius=1)
    ab, mask = hints.maps([hint], size=(400, 800), render=(128, 256))  # the render is 1/3.125 of the photo
    rows, cols = torch.nonzero(mask[0, 0], as_tuple=True)
    assert (rows.min().item(), rows.max().item()) == (31, 33)  # y 100.5 / 3.125 = 32.16 -> row 32, +-1
    assert (cols.min().item(), cols.max().item()) == (95, 97)  # x 300.5 / 3.125 = 96.16 -> col 96
    assert mask.sum().item() == 9
    assert torch.equal(ab[0, 0][mask[0, 0] > 0], torch.full((9,), 40.0))
    assert torch.equal(ab[0, 1][mask[0, 0] > 0], torch.full((9,), -20.0))
    assert ab[:, :, mask[0, 0] == 0].abs().sum() == 0


def test_hint_squares_are_cut_at_the_image_edges_and_a_later_hint_covers_an_earlier():
    corner = hints.Hint(0.0, 0.0, (10.0, 10.0), radius=2)
    far = hints.Hint(63.0, 63.0, (5.0, 5.0), radius=3)
    over = hints.Hint(1.0, 1.0, (-30.0, 7.0), radius=0)
    ab, mask = hints.maps([corner, far, over], size=(64, 64))
    assert mask[0, 0, :8, :8].sum().item() == 9  # 3 x 3 left of the 5 x 5 square at the corner
    assert mask[0, 0, 56:, 56:].sum().item() == 16  # 4 x 4 of the 7 x 7 square
    assert ab[0, :, 1, 1].tolist() == [-30.0, 7.0] and ab[0, :, 0, 0].tolist() == [10.0, 10.0]


def test_the_model_input_puts_ab_in_the_models_units_then_the_mask():
    ab, mask = hints.maps([hints.Hint(2.0, 2.0, (55.0, -11.0), radius=0)], size=(4, 4))
    x = hints.model_input(ab, mask)
    assert x.shape == (1, 3, 4, 4)
    assert x[0, :, 2, 2].tolist() == pytest.approx([0.5, -0.1, 1.0])
    gray_l = torch.ones(1, 1, 4, 4)
    spread = hints.Spread()
    assert torch.equal(spread(gray_l, None), torch.zeros(1, hints.FEATURES, 4, 4))
    assert torch.equal(hints.with_hints(gray_l, spread(gray_l, x))[:, 1:4], x)


def test_the_spread_carries_each_hints_colour_to_its_own_neighbourhood_and_none_to_far_places():
    """Two 3 x 3 hints in opposite corners of a 128 x 128 render: the whole-image channels hold their mean; the
    16-px reach holds each hint's own colour near it, and nothing (colour 0, confidence 0) 40 px away from both; the
    64-px reach, each colour on its own side and nothing 100 px away. Counted here by hand, not by pooling."""
    ab, mask = hints.maps([hints.Hint(8, 8, (40.0, -20.0), 1), hints.Hint(119, 119, (-60.0, 30.0), 1)], (128, 128))
    x = hints.model_input(ab, mask)
    out = hints.Spread()(torch.zeros(1, 1, 128, 128), x)[0]
    assert out.shape == (hints.FEATURES, 128, 128) and torch.equal(out[:3], x[0])
    whole, cell64, cell16 = out[3:6], out[6:9], out[9:12]
    c = 18 / (18 + 1.0)  # 18 hinted pixels of 128 * 128, against one pixel's share
    assert torch.allclose(whole[2], torch.tensor(c), atol=1e-6)
    assert torch.allclose(whole[:2], torch.tensor([-10.0, 5.0]).view(2, 1, 1) / AB_SCALE * c, atol=1e-6)
    for at, ab in ((8, (40, -20)), (119, (-60, 30))):  # the hinted colour there: ab x c over c
        assert (cell16[:2, at, at] / cell16[2, at, at]).tolist() == pytest.approx([v / AB_SCALE for v in ab], abs=1e-5)
    assert cell16[:, 64, 64].abs().max() == 0 and cell16[2, 8, 8] > 0.5
    assert cell64[0, 20, 20] > 0 > cell64[0, 100, 100]  # each side leans to its own hint
    assert cell64[2, 10, 10] > cell64[2, 64, 64] > 0 and cell64[:, 10, 118].abs().max() == 0


def test_the_running_sum_box_is_the_zero_padded_window_mean_and_exactly_zero_where_it_sees_nothing():
    x = torch.zeros(2, 3, 37, 53)
    x[:, :, 5:9, 40:44] = torch.rand(2, 3, 4, 4)
    for dim, pool in ((3, lambda t, k: F.avg_pool2d(t, (1, k), 1, (0, k // 2))),
                      (2, lambda t, k: F.avg_pool2d(t, (k, 1), 1, (k // 2, 0)))):
        for k in (1, 11, 43, 75):  # 75: wider than the image
            out = hints.box(x, k, dim)
            assert out.shape == x.shape and torch.allclose(out, pool(x, k), atol=1e-7)
    wide = hints.box(x, 11, 3)
    assert wide[:, :, :, :34].abs().max() == 0 and wide[:, :, 10:].abs().max() == 0  # beyond the reach: exactly 0


def test_the_spread_fades_out_with_no_edge_where_its_reach_ends():
    """Along the row through one hint, every spread channel moves by little from pixel to pixel, also where the
    reach ends (a colour held at full strength up to there drew a square's edge in the output)."""
    ab, mask = hints.maps([hints.Hint(64, 64, (40.0, -20.0), 1)], (128, 128))
    out = hints.Spread()(torch.zeros(1, 1, 128, 128), hints.model_input(ab, mask))[0]
    row = out[6:, 64, :]  # the reaches of 64 and 16 px
    assert row[:, 64].abs().min() > 0.15 and row[3:, 0].abs().max() == 0  # at the hint; 16 px: nothing 64 px off
    assert (row.diff(dim=1).abs().max(dim=1).values < 0.2 * row.abs().max(dim=1).values).all()  # steps < 20%


def test_the_spread_of_a_side_that_is_not_a_multiple_of_its_cells_still_covers_every_pixel():
    ab, mask = hints.maps([hints.Hint(95, 70, (25.0, 25.0), 0)], (72, 100))
    out = hints.Spread()(torch.zeros(1, 1, 72, 100), hints.model_input(ab, mask))[0]
    assert out.shape == (hints.FEATURES, 72, 100) and torch.isfinite(out).all()
    assert (out[9:11, 70, 95] / out[11, 70, 95]).tolist() == pytest.approx([25 / AB_SCALE] * 2, abs=1e-5)


def test_points_outside_the_photo_are_one_line_errors():
    hints.check_inside([hints.Hint(99.9, 0.0, (0.0, 0.0))], 100, 50, "h.json")
    for x, y in ((100.0, 10.0), (-1.0, 10.0), (10.0, 50.0)):
        with pytest.raises(UserError, match=r"h.json: hint 1 at .* outside the 100 x 50 photo"):
            hints.check_inside([hints.Hint(x, y, (0.0, 0.0))], 100, 50, "h.json")


def test_a_hints_file_reads_back_what_was_written(tmp_path):
    written = [hints.Hint(10.0, 20.5, (12.25, -40.0), 3), hints.Hint(0.0, 1.0, hints.parse_color("#00ff00"), 0)]
    path = tmp_path / "h.json"
    path.write_text(hints.to_json(written))
    back = hints.read_file(path)
    assert [(h.x, h.y, h.radius) for h in back] == [(10.0, 20.5, 3), (0.0, 1.0, 0)]
    assert back[0].ab == (12.25, -40.0) and back[1].ab == pytest.approx(written[1].ab, abs=1e-3)
    path.write_text(json.dumps([{"x": 1, "y": 2, "color": "#ff0000"}]))  # a bare list, colour as hex, radius default
    assert hints.read_file(path)[0].radius == hints.RADIUS


@pytest.mark.parametrize("content, why", [
    ("{", "not a JSON hints file"),
    ("[1]", "hint 1: 1 is not an object"),
    ('{"points": []}', "expected a list of hints"),
    ('[{"x": 1, "color": "#ff0000"}]', "hint 1: x and y must be numbers"),
    ('[{"x": 1, "y": 1, "color": "#ff0000"}, {"x": 1, "y": 1, "color": "pink"}]', "hint 2: color 'pink'"),
    ('[{"x": 1, "y": 1}]', "hint 1: give one colour"),
    ('[{"x": 1, "y": 1, "ab": [200, 0]}]', "hint 1: ab"),
    ('[{"x": 1, "y": 1, "ab": [2, 0], "radius": 2.5}]', "hint 1: radius"),
    ("[" * 100000 + "]" * 100000, "not a JSON hints file"),
])
def test_a_bad_hints_file_is_one_line_naming_the_file(tmp_path, content, why):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(UserError) as e:
        hints.read_file(path)
    assert str(e.value).startswith(f"{path}: ") and why in str(e.value) and "\n" not in str(e.value)


def test_a_missing_or_huge_hints_file_is_one_line(tmp_path):
    with pytest.raises(UserError, match="cannot read the hints file"):
        hints.read_file(tmp_path / "none.json")
    big = tmp_path / "big.json"
    big.write_bytes(b" " * (hints.MAX_FILE_BYTES + 1))
    with pytest.raises(UserError, match="larger than"):
        hints.read_file(big)


def test_the_sampler_draws_a_geometric_number_of_points_one_in_eight_with_none(monkeypatch):
    placed = []
    centred = hints._centred
    monkeypatch.setattr(hints, "_centred", lambda span, g: placed.append(1) or centred(span, g))  # 2 per point
    n, g = 3000, torch.Generator().manual_seed(0)
    counts, empty = [], []
    for _ in range(n):
        before = len(placed)
        ab, mask = hints.sample(torch.zeros(1, 2, 16, 16), generator=g)
        counts.append((len(placed) - before) // 2)
        empty.append(mask.sum().item() == 0)
    counts = np.array(counts)
    assert np.array_equal(counts == 0, np.array(empty))  # an image without points has an empty mask, and only it
    p, sd = 1 / 8, lambda q: 4 * (q * (1 - q) / n) ** 0.5
    for k in range(4):  # geometric from 0: P(k) = p (1 - p)^k
        assert (counts == k).mean() == pytest.approx(p * (1 - p) ** k, abs=sd(p * (1 - p) ** k))
    assert counts.mean() == pytest.approx((1 - p) / p, rel=0.1)


def test_patches_are_1_to_9_pixels_uniform_filled_with_their_mean_ab_near_the_centre():
    n, size = 1800, 64
    real_ab = torch.randn(n, 2, size, size)
    ab, mask = hints.sample(real_ab, counts=[1] * n, generator=torch.Generator().manual_seed(1))
    sides = mask.flatten(1).sum(1).sqrt()
    assert torch.equal(sides, sides.round()) and sides.min() == 1 and sides.max() == 9
    shares = torch.bincount(sides.long(), minlength=10)[1:].float() / n
    assert shares.sub(1 / 9).abs().max() < 4 * (1 / 9 * 8 / 9 / n) ** 0.5
    for i in range(0, n, 97):  # the patch's mean, measured on the patch the mask shows
        inside = mask[i, 0] > 0
        assert torch.allclose(ab[i][:, inside], real_ab[i][:, inside].mean(1, keepdim=True), atol=1e-5)
        assert ab[i][:, ~inside].abs().sum() == 0
    rows = torch.nonzero(mask[:, 0].amax(2))[:, 1].float()
    assert rows.mean().item() == pytest.approx(size / 2, abs=1.5)  # centred (normal around the middle)


def test_the_same_seed_gives_the_same_hints_and_counts_are_honoured():
    real_ab = torch.randn(4, 2, 32, 32)
    one = hints.sample(real_ab, counts=[0, 1, 5, 10], generator=torch.Generator().manual_seed(7))
    two = hints.sample(real_ab, counts=[0, 1, 5, 10], generator=torch.Generator().manual_seed(7))
    assert all(torch.equal(a, b) for a, b in zip(one, two))
    assert one[1][0].sum() == 0 and one[1][1].sum() > 0
