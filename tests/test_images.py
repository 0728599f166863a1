"""Every odd file a user's folder may hold becomes 8-bit sRGB, or is refused with a one-line reason."""
import os
import struct
import subprocess
import sys
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import tifffile
from conftest import ROOT, color_image
from PIL import Image

from gan_colorizer.data.images import UnreadableImage, is_gray, list_files, list_images, load_rgb, open_image, to_rgb8


def make_odd_files(folder: Path) -> dict:
    """Every mode and failure case; returns {name: expected outcome} ('ok', 'gray' or a reason fragment)."""
    folder.mkdir(parents=True, exist_ok=True)
    base = color_image(7)
    arr = np.asarray(base)
    base.save(folder / "rgb.jpg", quality=90)
    base.save(folder / "rgb.webp")
    base.save(folder / "rgb.bmp")
    base.save(folder / "rgb.ppm")
    base.convert("L").save(folder / "gray.pgm")
    base.convert("L").save(folder / "gray.png")
    base.convert("LA").save(folder / "gray_alpha.png")
    rgba = base.convert("RGBA")
    rgba.putalpha(128)
    rgba.save(folder / "rgba.png")
    base.convert("P", palette=Image.Palette.ADAPTIVE, colors=16).save(folder / "palette.png")
    base.convert("CMYK").save(folder / "cmyk.jpg")
    base.convert("CMYK").save(folder / "cmyk.tif")
    Image.fromarray((arr[..., 0].astype(np.uint16) * 257)).save(folder / "gray16.png")
    tifffile.imwrite(folder / "rgb16.tif", arr.astype(np.uint16) * 257)
    Image.new("RGB", (1, 1), (200, 30, 40)).save(folder / "one_pixel.png")
    jpeg = (folder / "rgb.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (folder / "empty.png").write_bytes(b"")
    (folder / "notes.jpg").write_text("this is a text file, not a photo\n")
    (folder / "readme.txt").write_text("ignored: not an image extension")
    sub = folder / "nested" / "deeper"
    sub.mkdir(parents=True)
    base.save(sub / "RGB_UPPER.JPEG")
    return {"rgb.jpg": "ok", "rgb.webp": "ok", "rgb.bmp": "ok", "rgb.ppm": "ok", "gray.pgm": "gray",
            "gray.png": "gray", "gray_alpha.png": "gray", "rgba.png": "ok", "palette.png": "ok", "cmyk.jpg": "ok",
            "cmyk.tif": "ok", "gray16.png": "gray", "rgb16.tif": "ok", "one_pixel.png": "ok",
            "truncated.jpg": "truncated", "empty.png": "empty", "notes.jpg": "not an image",
            "RGB_UPPER.JPEG": "ok"}


@pytest.fixture
def odd_folder(tmp_path):
    folder = tmp_path / "odd"
    return folder, make_odd_files(folder)


def test_every_odd_file_is_converted_to_rgb8_or_refused_with_its_reason(odd_folder):
    folder, expected = odd_folder
    found = {p.name: p for p in list_images(folder)}
    assert set(found) == set(expected)  # readme.txt is not an image extension; nested folders are searched
    for name, outcome in expected.items():
        if outcome in ("ok", "gray"):
            img = load_rgb(found[name])
            assert img.mode == "RGB", name
            assert np.asarray(img).dtype == np.uint8
        else:
            with pytest.raises(UnreadableImage) as err:
                load_rgb(found[name])
            assert outcome in err.value.reason, (name, err.value.reason)
            assert str(found[name]) in str(err.value) and "\n" not in str(err.value)


def test_gray_files_are_detected_and_color_files_are_not(odd_folder):
    folder, expected = odd_folder
    from gan_colorizer.data.images import open_image
    for path in list_images(folder):
        if expected[path.name] in ("ok", "gray"):
            assert is_gray(open_image(path)) == (expected[path.name] == "gray"), path.name


def test_rgb_jpeg_of_a_gray_photo_counts_as_gray(tmp_path):
    gray_as_rgb = color_image(3).convert("L").convert("RGB")
    gray_as_rgb.save(tmp_path / "g.jpg", quality=80)
    assert is_gray(Image.open(tmp_path / "g.jpg"))


def test_transparent_pixels_are_composited_on_white():
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    rgba.putpixel((0, 0), (0, 0, 255, 255))
    out = np.asarray(to_rgb8(rgba))
    assert out[1, 1].tolist() == [255, 255, 255]
    assert out[0, 0].tolist() == [0, 0, 255]


def test_16_bit_values_are_scaled_not_clipped(odd_folder):
    folder, _ = odd_folder
    src = np.asarray(color_image(7))[..., 0]
    out = np.asarray(load_rgb(folder / "gray16.png"))[..., 0]
    assert np.abs(out.astype(int) - src.astype(int)).max() <= 1
    rgb16 = np.asarray(load_rgb(folder / "rgb16.tif")).astype(int)
    assert np.abs(rgb16 - np.asarray(color_image(7)).astype(int)).max() <= 1


def test_exif_orientation_is_applied(tmp_path):
    img = Image.new("RGB", (30, 10), (10, 200, 10))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    img.save(tmp_path / "rotated.jpg", exif=exif)
    assert load_rgb(tmp_path / "rotated.jpg").size == (10, 30)


def test_jpeg_draft_decoding_keeps_the_requested_short_side(tmp_path):
    color_image(1, size=(800, 600)).save(tmp_path / "big.jpg")
    img = load_rgb(tmp_path / "big.jpg", min_side=140)
    assert 140 <= min(img.size) < 600


def png_declaring(path: Path, width: int, height: int) -> Path:
    """A valid PNG header declaring width x height (8-bit gray) over a few bytes of pixel data: a big image's size
    in a tiny file (decoding it would need the whole raster)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 4096))
                     + chunk(b"IEND", b""))
    return path


def test_an_image_over_the_pixel_limit_is_refused_from_its_header_in_one_line(tmp_path):
    from gan_colorizer.data.images import header_pixels
    huge = png_declaring(tmp_path / "huge.png", 24000, 24000)  # 576 MP declared in a 100-byte file
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert header_pixels(huge) == 24000 * 24000
        with pytest.raises(UnreadableImage) as err:
            open_image(huge)  # never decoded: the raster would take 576 MB
    assert "too large: 24000x24000 is 576 MP" in err.value.reason and "\n" not in str(err.value)
    assert not caught  # Pillow's two-line DecompressionBombWarning is not printed
    Image.new("RGB", (40, 30)).save(tmp_path / "small.png")
    with pytest.raises(UnreadableImage, match=r"40x30 is 1,200 pixels, over the limit of 1,000 pixels \(--max-pix"):
        load_rgb(tmp_path / "small.png", max_pixels=1000)
    assert load_rgb(tmp_path / "small.png", max_pixels=1200).size == (40, 30)


def test_a_self_link_lists_each_photo_once_by_its_own_path(tmp_path):
    """A link to '.' used to list a photo once per level until the kernel's limit of 40 links (41 times)."""
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    for path in (folder / "a.png", folder / "sub" / "b.png", tmp_path / "elsewhere" / "e.png"):
        color_image(0, (8, 8)).save(path)
    (folder / "self").symlink_to(".")
    (folder / "0_alias.png").symlink_to("a.png")  # sorts first, yet the real name is kept
    os.link(folder / "a.png", folder / "hard.png")  # the same file: one input
    (folder / "0_ext").symlink_to(tmp_path / "elsewhere")  # only reached through a link: kept
    (folder / "dangling.png").symlink_to("gone.png")  # listed, so that reading it reports 'file not found'
    found = [str(p.relative_to(folder)) for p in list_images(folder)]
    assert found == ["0_ext/e.png", "a.png", "dangling.png", "sub/b.png"]


def test_list_files_sorts_as_paths_do_and_stamps_each_file_as_stat_does(tmp_path):
    """Plain string order differs from the Paths' order where a name sorts below '/' ('a-b.jpg' vs 'a/z.jpg'): the
    listing keeps the Paths' order (the seeded splits depend on it); each stamp is the file's own stat."""
    names = ["a/z.jpg", "a-b.jpg", "a.jpg", "a0.jpg", "A.jpg", "b/c/d.png", "b.c/e.png", "caf\u00e9.jpg"]
    for name in names:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        color_image(0, (8, 8)).save(tmp_path / name)
    found, stamps = list_files(tmp_path)
    assert found == [str(p) for p in sorted(tmp_path / n for n in names)] != sorted(found)
    assert stamps == [(st.st_size, st.st_mtime_ns, st.st_ctime_ns) for st in map(os.stat, found)]
    assert list_images(tmp_path) == [Path(p) for p in found]


@pytest.mark.slow
def test_a_link_loop_ends_the_listing_of_a_folder_and_of_a_recursive_glob(tmp_path):
    """s1 -> . and s2 -> . used to make 2^40 paths: the listing never ended (a subprocess, so a regression times
    out instead of hanging the test session)."""
    folder = tmp_path / "photos"
    folder.mkdir()
    color_image(0, (8, 8)).save(folder / "a.png")
    (folder / "s1").symlink_to(".")
    (folder / "s2").symlink_to(".")
    (folder / "sub").mkdir()
    (folder / "sub" / "up").symlink_to("..")
    code = ("import sys\nfrom pathlib import Path\nfrom gan_colorizer.data.images import list_images\n"
            "from gan_colorizer.colorize.files import plan_jobs\n"
            "print(len(list_images(sys.argv[1])), len(plan_jobs([sys.argv[1], sys.argv[1] + '/**/*.png'], "
            "Path(sys.argv[2]), 'png')))")
    result = subprocess.run([sys.executable, "-c", code, str(folder), str(tmp_path / "out")], capture_output=True,
                            text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1", "1"]


def test_a_photo_that_cannot_become_rgb_is_named_by_its_full_path(tmp_path, monkeypatch):
    """load_rgb's reason names the file as every other reason does, not by its base name alone."""
    from gan_colorizer.data import images
    path = tmp_path / "sub" / "photo.png"
    path.parent.mkdir()
    Image.new("RGB", (8, 8)).save(path)
    monkeypatch.setattr(images, "to_rgb8", lambda img: (_ for _ in ()).throw(OSError("broken palette")))
    with pytest.raises(images.UnreadableImage) as error:
        images.load_rgb(path)
    assert str(error.value).startswith(f"{path}: cannot convert mode RGB to RGB")
