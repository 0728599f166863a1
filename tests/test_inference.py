import torch

from gan_colorizer.color import rgb_to_lab
from gan_colorizer.colorize.inference import apply_controls, colorize_l, full_res_l, render_shape


class ConstantAB(torch.nn.Module):
    """A stand-in generator that predicts the same ab everywhere and records its input shape."""

    def __init__(self, a=0.2, b=-0.1):
        super().__init__()
        self.ab, self.seen = (a, b), []

    def forward(self, gray_l):
        self.seen.append(tuple(gray_l.shape))
        out = torch.empty(gray_l.shape[0], 2, *gray_l.shape[-2:])
        out[:, 0], out[:, 1] = self.ab
        return out


def test_render_shape_keeps_aspect_and_multiples_of_32():
    assert render_shape(4000, 6000, 256) == (256, 384)
    assert render_shape(1, 1, 256) == (256, 256)
    h, w = render_shape(333, 1000, 256)
    assert h % 32 == 0 and w % 32 == 0 and abs(w / h - 1000 / 333) < 0.15


def test_output_keeps_full_resolution_l_and_the_network_sees_render_size():
    rgb = torch.rand(1, 3, 301, 517)
    g = ConstantAB()
    out = colorize_l(g, full_res_l(rgb), render_size=64)
    assert out.shape == rgb.shape and g.seen == [(1, 1, 64, 96)]
    l_in, l_out = rgb_to_lab(rgb)[:, 0], rgb_to_lab(out)[:, 0]
    in_gamut = (out > 0.01).all(1) & (out < 0.99).all(1)
    assert (l_in - l_out)[in_gamut].abs().max() < 0.5


def test_controls_neutral_saturation_temperature_hue():
    ab = torch.randn(2, 2, 8, 8) * 0.3
    assert torch.equal(apply_controls(ab), ab)
    assert apply_controls(ab, saturation=0.0).abs().max() == 0
    assert apply_controls(ab, temperature=20.0)[:, 1].mean() > ab[:, 1].mean()
    rotated = apply_controls(ab, hue=90.0)
    assert torch.allclose(rotated[:, 0], -ab[:, 1], atol=1e-6) and torch.allclose(rotated[:, 1], ab[:, 0], atol=1e-6)


def test_row_chunked_upsampling_equals_one_bicubic_interpolate():
    import torch.nn.functional as F

    from gan_colorizer.colorize.inference import upsampled_ab_rows
    ab = torch.randn(2, 2, 32, 64)
    for height, width in [(301, 517), (32, 64), (1000, 37), (5, 3)]:
        rows = list(upsampled_ab_rows(ab, height, width))
        assert [r[0] for r in rows] == sorted({r[0] for r in rows}) and rows[-1][1] == height
        expected = F.interpolate(ab, size=(height, width), mode="bicubic", align_corners=False)
        assert torch.allclose(torch.cat([r[2] for r in rows], 2), expected, atol=1e-5)


def test_full_res_l_is_the_same_for_uint8_and_float_inputs_across_chunks(monkeypatch):
    import gan_colorizer.colorize.inference as inference
    import gan_colorizer.colorize.inference_numpy as inference_numpy
    monkeypatch.setattr(inference_numpy, "CHUNK_PIXELS", 500)  # many chunks (row_chunks lives there), ragged last one
    assert len(list(inference.row_chunks(45, 31))) == 3
    rgb = torch.randint(0, 256, (1, 3, 45, 31), dtype=torch.uint8)
    expected = rgb_to_lab(rgb.float() / 255.0)[:, :1] / 50.0 - 1.0
    assert torch.allclose(full_res_l(rgb), expected, atol=1e-5)
    assert torch.allclose(full_res_l(rgb.float() / 255.0), expected, atol=1e-5)


def test_colorize_l_uses_256_px_multiples_for_the_pix2pix_unet():
    from gan_colorizer.models.pix2pix import UNetGenerator
    g = UNetGenerator(filters=4).eval()
    out = colorize_l(g, full_res_l(torch.rand(1, 3, 100, 170)), render_size=256)
    assert out.shape == (1, 3, 100, 170)


def test_extreme_aspect_ratios_bound_the_network_input_to_8_render_sizes_on_the_long_side():
    """A 1 x 100000 strip used to become a 256 x 25,600,000 network input (26 GB of float32)."""
    assert render_shape(1, 100_000, 256) == (32, 2048) and render_shape(100_000, 1, 256) == (2048, 32)
    assert render_shape(1, 100_000, 256, multiple=256) == (256, 2048)
    assert render_shape(1000, 8000, 256) == (256, 2048)  # 8:1 is still seen at the full render size
    assert render_shape(1000, 16000, 256) == (128, 2048)  # beyond, the short side shrinks, the aspect kept
    g = ConstantAB()
    out = colorize_l(g, full_res_l(torch.rand(1, 1, 3, 20_000)), render_size=64)
    assert g.seen == [(1, 1, 32, 512)] and out.shape == (1, 3, 3, 20_000)
