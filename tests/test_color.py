import numpy as np
import pytest
import torch
from skimage import color as skcolor

from gan_colorizer.color import (
    AB_SCALE,
    L_SCALE,
    lab_to_model,
    lab_to_rgb,
    model_to_lab,
    model_to_rgb,
    rgb_to_lab,
    rgb_to_model,
    to_uint8,
)

EDGE_COLORS = np.array([[0, 0, 0], [1, 1, 1], [1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [0, 1, 1], [1, 0, 1],
                        [0.5, 0.5, 0.5], [0.002, 0.001, 0.003], [0.04045, 0.0031308, 0.99]])


def _as_batch(rgb: np.ndarray) -> torch.Tensor:
    """(N, 3) colors -> (1, 3, N, 1) tensor."""
    return torch.from_numpy(rgb.T[None, :, :, None].astype(np.float32))


def _colors():
    rng = np.random.default_rng(0)
    return np.concatenate([EDGE_COLORS, rng.uniform(0, 1, (2000, 3))])


def test_rgb_to_lab_matches_skimage_on_random_and_edge_colors():
    rgb = _colors()
    ours = rgb_to_lab(_as_batch(rgb))[0, :, :, 0].T.double().numpy()
    theirs = skcolor.rgb2lab(rgb[:, None, :])[:, 0, :]
    assert np.abs(ours - theirs).max() < 1e-3


def test_lab_to_rgb_matches_skimage_including_out_of_gamut_lab():
    rng = np.random.default_rng(1)
    lab = np.stack([rng.uniform(0, 100, 3000), rng.uniform(-110, 110, 3000), rng.uniform(-110, 110, 3000)], 1)
    lab = np.concatenate([skcolor.rgb2lab(EDGE_COLORS[:, None, :])[:, 0, :], lab])
    ours = lab_to_rgb(_as_batch(lab))[0, :, :, 0].T.double().numpy()
    with pytest.warns(UserWarning):  # skimage warns about negative Z values it clips, as we do
        theirs = skcolor.lab2rgb(lab[:, None, :])[:, 0, :]
    assert np.abs(ours - theirs).max() < 1e-3


def test_round_trip_error_is_below_one_level_of_8_bit():
    rgb = _colors()
    back = lab_to_rgb(rgb_to_lab(_as_batch(rgb)))[0, :, :, 0].T.double().numpy()
    assert np.abs(back - rgb).max() < 1 / 255


def test_conversion_works_on_whole_batches_not_only_the_first_image():
    rgb = torch.rand(5, 3, 7, 9)
    lab = rgb_to_lab(rgb)
    for i in range(5):
        expected = skcolor.rgb2lab(rgb[i].permute(1, 2, 0).numpy())
        assert np.abs(lab[i].permute(1, 2, 0).numpy() - expected).max() < 1e-3


def test_model_scaling_maps_l_to_unit_range_and_ab_by_110():
    lab = torch.tensor([[0.0, 110.0, -55.0], [100.0, -110.0, 0.0]]).T.reshape(1, 3, 2, 1)
    gray_l, ab = lab_to_model(lab)
    assert gray_l.flatten().tolist() == [-1.0, 1.0]
    assert ab[0, :, 0, 0].tolist() == [1.0, -0.5]
    assert torch.allclose(model_to_lab(gray_l, ab), lab)
    assert L_SCALE == 50 and AB_SCALE == 110


def test_uint8_input_and_model_round_trip():
    pixels = torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8)
    gray_l, ab = rgb_to_model(pixels)
    assert gray_l.shape == (2, 1, 16, 16) and ab.shape == (2, 2, 16, 16)
    assert gray_l.min() >= -1 and gray_l.max() <= 1 and ab.abs().max() <= 1.1
    assert torch.equal(to_uint8(model_to_rgb(gray_l, ab)), pixels)


def test_conversion_stays_float32_under_bf16_autocast():
    rgb = torch.rand(2, 3, 8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        lab = rgb_to_lab(rgb)
        back = lab_to_rgb(lab)
    assert lab.dtype == torch.float32 and back.dtype == torch.float32
    assert (back - rgb).abs().max() < 1 / 255


def test_rgb8_to_gray_l_is_the_l_of_rgb_to_lab_for_colour_and_gray_levels():
    from gan_colorizer.color import rgb8_to_gray_l
    rgb = torch.randint(0, 256, (2, 3, 17, 23), dtype=torch.uint8)
    expected = lab_to_model(rgb_to_lab(rgb.float() / 255.0))[0]
    assert torch.allclose(rgb8_to_gray_l(rgb), expected, atol=1e-5)
    hwc = rgb.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)  # image arrays arrive channels last
    assert torch.allclose(rgb8_to_gray_l(hwc), expected, atol=1e-5)
    levels = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16)
    expected = lab_to_model(rgb_to_lab(levels.expand(-1, 3, -1, -1).float() / 255.0))[0]
    assert torch.allclose(rgb8_to_gray_l(levels), expected, atol=1e-5)


def test_gray_rgb_is_a_neutral_8_bit_image_with_the_input_lightness():
    from gan_colorizer.color import gray_rgb, rgb8_to_gray_l
    levels = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16)
    gray = gray_rgb(rgb8_to_gray_l(levels))
    assert gray.dtype == torch.uint8 and gray.shape == (1, 3, 16, 16)
    assert (gray[:, :1] == gray).all()  # R = G = B
    assert (gray[:, :1].int() - levels.int()).abs().max() <= 1  # the same gray levels back


def test_the_lab_constants_reach_the_device_once_not_at_every_call(monkeypatch):
    """On a GPU each copy of a constant to the device is a host-to-device transfer (four per generator step with
    --perceptual-weight): after the first call, converting makes no tensor from Python values and moves none."""
    from gan_colorizer.color import lab_to_rgb, rgb8_to_gray_l, rgb_to_lab
    rgb, pixels = torch.rand(2, 3, 4, 4), torch.randint(0, 256, (2, 3, 4, 4), dtype=torch.uint8)
    first = (rgb_to_lab(rgb), lab_to_rgb(rgb_to_lab(rgb)), rgb8_to_gray_l(pixels))
    made = []
    for module, name in ((torch, "tensor"), (torch, "arange"), (torch.Tensor, "to")):
        original = getattr(module, name)
        monkeypatch.setattr(module, name, lambda *a, _o=original, _n=name, **k: (made.append(_n), _o(*a, **k))[1])
    again = (rgb_to_lab(rgb), lab_to_rgb(rgb_to_lab(rgb)), rgb8_to_gray_l(pixels))
    monkeypatch.undo()
    assert made == []
    assert all(torch.equal(a, b) for a, b in zip(first, again))


def test_constants_first_made_in_inference_mode_still_serve_autograd():
    from gan_colorizer.color import model_to_rgb
    gray_l, ab = torch.rand(1, 1, 2, 2, dtype=torch.float64), torch.rand(1, 2, 2, 2, dtype=torch.float64)
    with torch.inference_mode():
        model_to_rgb(gray_l, ab)  # colorizing first, in this dtype
    ab.requires_grad_(True)
    model_to_rgb(gray_l, ab).sum().backward()  # then a loss through the same conversion
    assert ab.grad is not None
