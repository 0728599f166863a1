"""The Python API: full resolution kept, gray input's levels kept, controls, odd modes, EXIF orientation, batching."""
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import ROOT, color_image
from PIL import Image

from gan_colorizer.color import rgb_to_lab, to_uint8
from gan_colorizer.colorize.inference import colorize_l, full_res_l

RENDER = 64  # a small render size, in the ResNet U-Net's multiples of 32


@pytest.fixture(scope="module")
def colorizer():
    """The API around a 3x3 convolution: what it checks (sizes, L, controls, modes, batching) holds for any generator.
    A real checkpoint goes through Colorizer.from_checkpoint in test_colorize_cli and test_research_options."""
    from test_evaluate import TinyGenerator

    from gan_colorizer import Colorizer
    return Colorizer(TinyGenerator(), render_size=RENDER)


def lab_of(img: Image.Image) -> torch.Tensor:
    rgb = torch.from_numpy(np.asarray(img.convert("RGB"))).permute(2, 0, 1)[None].float() / 255.0
    return rgb_to_lab(rgb)[0]


def gray_with_same_l(img: Image.Image) -> Image.Image:
    """The gray photo whose levels have (up to 8-bit rounding) the L of img."""
    levels = torch.arange(256, dtype=torch.float32).view(1, 1, 1, 256).expand(1, 3, 1, 256) / 255.0
    table = rgb_to_lab(levels)[0, 0, 0]
    l_in = lab_of(img)[0]
    return Image.fromarray((l_in[..., None] - table).abs().argmin(-1).numpy().astype(np.uint8), "L")


def test_import_stays_light_and_the_api_is_exported_lazily():
    code = ("import sys, gan_colorizer; assert 'torch' not in sys.modules, 'import pulled in torch'; "
            "from gan_colorizer import Colorizer; print(Colorizer.__name__)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0 and result.stdout.strip() == "Colorizer", result.stderr


def test_output_has_the_input_size_and_its_full_resolution_lightness(colorizer):
    img = color_image(3, size=(517, 301))
    out = colorizer.colorize(img)
    assert out.size == img.size and out.mode == "RGB"
    l_in, l_out = lab_of(img)[0], lab_of(out)[0]
    rgb = np.asarray(out)
    in_gamut = torch.from_numpy(((rgb > 3) & (rgb < 252)).all(-1))
    assert in_gamut.float().mean() > 0.5 and (l_in - l_out)[in_gamut].abs().max() < 1.0


def test_the_api_agrees_with_colorize_l_on_tensors(colorizer):
    img = color_image(4, size=(200, 130))
    rgb = torch.from_numpy(np.asarray(img)).permute(2, 0, 1)[None]
    expected = to_uint8(colorize_l(colorizer.generator, full_res_l(rgb), RENDER, hue=30.0))[0].permute(1, 2, 0).numpy()
    got = np.asarray(colorizer.colorize(img, hue=30.0))
    assert np.abs(got.astype(int) - expected).max() <= 1


def test_gray_input_keeps_its_levels_exactly_and_saturation_zero_gives_it_back(colorizer):
    gray = color_image(5, size=(90, 70)).convert("L")
    out = colorizer.colorize(gray, saturation=0.0)
    assert np.array_equal(np.asarray(out), np.repeat(np.asarray(gray)[..., None], 3, axis=-1))
    colorful = colorizer.colorize(gray)
    assert np.ptp(np.asarray(colorful).astype(int), axis=-1).mean() > 2  # it did add colour


def test_a_colour_photo_is_taken_to_gray_first(colorizer):
    img = color_image(6, size=(96, 80))
    from_colour = np.asarray(colorizer.colorize(img)).astype(int)
    from_gray = np.asarray(colorizer.colorize(gray_with_same_l(img))).astype(int)
    assert np.abs(from_colour - from_gray).mean() < 1.0  # only the 8-bit rounding of L differs


def test_temperature_warms_saturation_zero_is_gray_and_neutral_changes_nothing(colorizer):
    img = color_image(8, size=(80, 64)).convert("L")
    base = colorizer.colorize(img)
    warm, cool = colorizer.colorize(img, temperature=15.0), colorizer.colorize(img, temperature=-15.0)
    assert lab_of(warm)[2].mean() > lab_of(base)[2].mean() + 5 > lab_of(cool)[2].mean() + 10
    gray = np.asarray(colorizer.colorize(img, saturation=0.0)).astype(int)
    assert np.ptp(gray, axis=-1).max() == 0
    neutral = colorizer.colorize(img, temperature=0.0, saturation=1.0, hue=0.0)
    assert np.array_equal(np.asarray(neutral), np.asarray(base))
    assert not np.array_equal(np.asarray(colorizer.colorize(img, hue=90.0)), np.asarray(base))


def test_bad_control_values_are_refused(colorizer):
    img = Image.new("L", (8, 8))
    for bad in ({"saturation": -1.0}, {"temperature": float("nan")}, {"hue": float("inf")}):
        with pytest.raises(ValueError):
            colorizer.colorize(img, **bad)


@pytest.mark.parametrize("mode", ["RGBA", "LA", "PA"])
def test_alpha_is_kept_or_composited_on_white(colorizer, mode):
    img = color_image(9, size=(60, 50)).convert("RGBA")
    alpha = np.zeros((50, 60), np.uint8)
    alpha[:, 30:] = 255
    img.putalpha(Image.fromarray(alpha))
    if mode == "LA":
        img = img.convert("LA")
    elif mode == "PA":
        img = img.convert("P", palette=Image.Palette.ADAPTIVE, colors=32)
        img.info["transparency"] = 0
    kept = colorizer.colorize(img)
    assert kept.mode == "RGBA" and kept.size == img.size
    if mode != "PA":
        assert np.array_equal(np.asarray(kept.getchannel("A")), alpha)
    flat = colorizer.colorize(img, keep_alpha=False, saturation=0.0)
    assert flat.mode == "RGB" and flat.size == img.size
    if mode == "RGBA":
        assert (np.asarray(flat)[:, :30] == 255).all()  # fully transparent: white L, whatever the colour under it


@pytest.mark.parametrize("mode", ["CMYK", "P", "I;16", "1"])
def test_other_modes_give_a_colour_image_of_the_same_size(colorizer, mode):
    img = color_image(10, size=(45, 33))
    if mode == "I;16":
        img = Image.fromarray(np.asarray(img.convert("L")).astype(np.uint16) * 257)
    else:
        img = img.convert(mode)
    out = colorizer.colorize(img)
    assert out.mode == "RGB" and out.size == img.size


def test_one_pixel_photo(colorizer):
    assert colorizer.colorize(Image.new("RGB", (1, 1), (120, 30, 30))).size == (1, 1)


def test_a_path_is_opened_with_its_exif_orientation(colorizer, tmp_path):
    img = color_image(11, size=(60, 40))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to display"
    exif[0x0132] = "2001:02:03 04:05:06"  # DateTime: metadata a photo archive wants kept
    img.save(tmp_path / "rotated.jpg", exif=exif.tobytes(), quality=95)
    out = colorizer.colorize(tmp_path / "rotated.jpg", saturation=0.0)
    assert out.size == (40, 60)
    upright = np.asarray(gray_with_same_l(img.transpose(Image.Transpose.ROTATE_270))).astype(int)
    assert np.abs(np.asarray(out)[..., 0] - upright).mean() < 4  # JPEG noise only
    kept = Image.Exif()
    kept.load(out.info["exif"])
    assert kept.get(0x0132) == "2001:02:03 04:05:06" and kept.get(0x0112, 1) == 1


def test_a_batch_of_mixed_shapes_gives_what_one_by_one_gives(colorizer):
    from gan_colorizer.colorize.api import prepare
    images = [color_image(i, size=size) for i, size in enumerate([(64, 48), (48, 64), (64, 48), (100, 75)])]
    seen = []
    hook = colorizer.generator.register_forward_hook(lambda m, args, out: seen.append(tuple(args[0].shape)))
    try:
        together = colorizer.colorize_prepared([prepare(img) for img in images], temperature=5.0)
    finally:
        hook.remove()
    assert sorted(seen) == [(1, 1, 96, 64), (3, 1, 64, 96)]  # the three landscape photos share one forward
    for img, out in zip(images, together):
        alone = np.asarray(colorizer.colorize(img, temperature=5.0)).astype(int)
        assert np.abs(np.asarray(out).astype(int) - alone).max() <= 1


def test_row_chunks_are_stitched_back_without_seams(colorizer, monkeypatch):
    import gan_colorizer.colorize.inference as inference
    img = color_image(12, size=(97, 61))
    whole = np.asarray(colorizer.colorize(img, temperature=3.0)).astype(int)
    monkeypatch.setattr(inference, "CHUNK_PIXELS", 97 * 7)  # 7-row chunks, a ragged last one
    diff = np.abs(np.asarray(colorizer.colorize(img, temperature=3.0)).astype(int) - whole)
    assert diff.max() <= 1 and (diff > 0).mean() < 0.01  # float summation order only: no misplaced rows
