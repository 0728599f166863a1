"""colorize.py as a user runs it: folders of odd files, output naming, existing outputs, bad arguments, exit codes."""
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, color_image, dated_lines
from PIL import Image
from test_images import make_odd_files

from gan_colorizer.colorize import cli as colorize_cli
from gan_colorizer.colorize.files import save_atomic

UNREADABLE = {"truncated.jpg", "empty.png", "notes.jpg"}


def files_under(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_a_folder_of_odd_files_is_mirrored_with_alpha_kept_and_unreadable_files_reported(cli, tmp_path):
    photos = tmp_path / "photos"
    expected = make_odd_files(photos)
    before = files_under(photos)
    code, out, err = cli(photos, "--out", tmp_path / "out")
    assert code == 1  # three files cannot be read
    lines = err.strip().splitlines()
    assert len(lines) == len(UNREADABLE) and all(line.startswith("error: ") for line in lines)
    assert {name for name in UNREADABLE if any(name in line for line in lines)} == UNREADABLE
    assert f"{len(expected) - 3} colorized, 3 failed" in out
    assert files_under(photos) == before  # nothing written into the input folder
    stems = Counter(Path(name).stem for name in expected)
    for src in photos.rglob("*"):
        if src.name in UNREADABLE or src.name not in expected:
            continue
        # photos that differ only by suffix (rgb.jpg, rgb.webp...) keep it: rgb.jpg.png, rgb.webp.png
        name = src.name + ".png" if stems[src.stem] > 1 else src.stem + ".png"
        result = tmp_path / "out" / src.relative_to(photos).with_name(name)
        with Image.open(src) as original, Image.open(result) as colorized:
            assert colorized.size == original.size, src.name
            wants_alpha = original.mode in ("RGBA", "LA")
            assert colorized.mode == ("RGBA" if wants_alpha else "RGB"), src.name
            if wants_alpha:
                assert np.array_equal(np.asarray(colorized.getchannel("A")), np.asarray(original.getchannel("A")))
    assert {"rgb.jpg.png", "rgb.webp.png", "cmyk.tif.png", "rgba.png"} <= set(files_under(tmp_path / "out"))
    assert (tmp_path / "out" / "nested" / "deeper" / "RGB_UPPER.png").is_file()
    assert not list((tmp_path / "out").rglob(".*"))  # no temporary files left


def test_off_a_terminal_progress_is_a_dated_line_among_the_info_lines(cli, tmp_path):
    for i in range(3):
        color_image(i).save(tmp_path / f"{i}.png")
    code, out, err = cli(tmp_path, "--out", tmp_path / "out")
    lines = dated_lines(out, "colorize")  # stdout is no terminal here: a bar would draw nothing
    assert code == 0 and len(lines) == 1 and " colorize 3/3 img, " in lines[0] and err == ""
    assert out.splitlines()[-1].startswith("done: 3 colorized")


def test_existing_outputs_are_kept_unless_overwrite(cli, tmp_path):
    photo = tmp_path / "old.jpg"
    color_image(1).convert("L").save(photo)
    assert cli(photo, "--out", tmp_path / "out")[0] == 0
    result = tmp_path / "out" / "old.png"
    first = result.stat().st_mtime_ns
    time.sleep(0.01)
    code, out, _ = cli(photo, "--out", tmp_path / "out", "--saturation", "0")
    assert code == 0 and "1 already there" in out and result.stat().st_mtime_ns == first
    code, out, _ = cli(photo, "--out", tmp_path / "out", "--saturation", "0", "--overwrite")
    assert code == 0 and "1 colorized" in out
    with Image.open(result) as img:
        assert np.ptp(np.asarray(img).astype(int), axis=-1).max() == 0  # replaced by the gray (saturation 0) result


def test_jpg_composites_alpha_on_white_and_same_keeps_each_suffix(cli, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    rgba = color_image(2).convert("RGBA")
    rgba.putalpha(0)
    rgba.save(photos / "clear.png")
    color_image(3).convert("L").save(photos / "scan.pgm")
    color_image(4).save(photos / "shot.JPG")
    assert cli(photos, "--out", tmp_path / "jpg", "--format", "jpg", "--saturation", "0")[0] == 0
    assert files_under(tmp_path / "jpg") == ["clear.jpg", "scan.jpg", "shot.jpg"]
    with Image.open(tmp_path / "jpg" / "clear.jpg") as img:
        assert img.mode == "RGB" and np.asarray(img).min() >= 250  # fully transparent -> white
    assert cli(photos, "--out", tmp_path / "same", "--format", "same")[0] == 0
    assert files_under(tmp_path / "same") == ["clear.png", "scan.ppm", "shot.JPG"]  # gray-only PGM -> PPM
    with Image.open(tmp_path / "same" / "shot.JPG") as img:
        assert img.format == "JPEG"


def test_glob_keeps_the_path_below_the_pattern_and_out_inside_the_input_is_not_reread(cli, tmp_path):
    for year in ("1950", "1960"):
        (tmp_path / "archive" / year).mkdir(parents=True)
        color_image(int(year)).save(tmp_path / "archive" / year / "photo.jpg")
    out = tmp_path / "archive" / "colorized"
    assert cli(str(tmp_path / "archive" / "19*" / "*.jpg"), "--out", out)[0] == 0
    assert files_under(out) == ["1950/photo.png", "1960/photo.png"]
    code, out_text, _ = cli(tmp_path / "archive", "--out", out)  # the folder holds --out: results are not inputs
    assert code == 0 and "2 already there" in out_text


def two_folders_with_one_name(tmp_path):
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        color_image(0).save(tmp_path / sub / "x.jpg")


@pytest.mark.parametrize("case", ["missing", "collision", "onto_itself", "saturation", "empty"])
def test_bad_arguments_exit_2_with_one_line_and_write_nothing(cli, tmp_path, case):
    two_folders_with_one_name(tmp_path)
    out = tmp_path / "out"
    args = {"missing": [tmp_path / "nope.jpg", "--out", out],
            "collision": [tmp_path / "a", tmp_path / "b", "--out", out],
            "onto_itself": [tmp_path / "a", "--out", tmp_path / "a", "--format", "same"],
            "saturation": [tmp_path / "a", "--out", out, "--saturation", "-1"],
            "empty": [tmp_path / "a" / "*.png", "--out", out]}[case]
    code, _, err = cli(*args)
    assert code == 2 and len(err.strip().splitlines()) == 1 and err.startswith("error: "), err
    assert not out.exists() and files_under(tmp_path / "a") == ["x.jpg"]


def test_an_unreadable_checkpoint_exits_2_before_anything_is_written(tmp_path, capsys):
    two_folders_with_one_name(tmp_path)
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    code = colorize_cli.main([str(tmp_path / "a"), "--out", str(tmp_path / "out"), "--checkpoint",
                              str(tmp_path / "bad.pt")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith(f"error: {tmp_path / 'bad.pt'}: not a readable checkpoint"), err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


def test_argparse_mistakes_exit_2():
    with pytest.raises(SystemExit) as exit_info:
        colorize_cli.main(["photo.jpg", "--out", "x"])  # no --checkpoint
    assert exit_info.value.code == 2


def test_an_interrupted_write_leaves_no_file_at_all(tmp_path, monkeypatch):
    def broken_save(self, fp, *args, **kwargs):
        fp.write(b"\xff\xd8 half a file")
        raise KeyboardInterrupt
    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(KeyboardInterrupt):
        save_atomic(Image.new("RGB", (4, 4)), tmp_path / "out" / "photo.png")
    assert os.listdir(tmp_path / "out") == []


@pytest.mark.system
def test_the_script_colorizes_and_ctrl_c_leaves_only_complete_files(cli, tiny_checkpoint, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    # 640x480: each photo takes tens of ms (full-size recombination, PNG encoding), so the 15 left cannot all be
    # written in the 20 ms between the first output and the interrupt
    color_image(0, size=(640, 480)).save(photos / "00.png")
    for i in range(1, 16):
        shutil.copyfile(photos / "00.png", photos / f"{i:02d}.png")
    out = tmp_path / "out"
    cmd = [sys.executable, str(ROOT / "colorize.py"), str(photos), "--out", str(out), "--checkpoint",
           str(tiny_checkpoint), "--image-size", "64", "--batch-size", "1", "--device", "cpu"]
    # SIGINT as at a terminal: a job started in the background by a non-interactive shell (CI runners, nohup ...
    # &) inherits SIGINT ignored, and Python then keeps ignoring it, as it should
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and not (out.is_dir() and any(out.glob("*.png"))):
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    stdout, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "interrupted after" in err and "Traceback" not in err, err
    assert stdout.startswith("colorizing 16 photos into")
    written = list(out.glob("*.png"))
    assert 0 < len(written) < 16 and not list(out.glob(".*"))
    for path in written:
        with Image.open(path) as img:
            img.load()  # a complete, decodable file
    code, text, _ = cli(photos, "--out", out)  # rerunning the command continues the job
    assert code == 0 and f"{len(written)} already there" in text and len(list(out.glob("*.png"))) == 16


def test_a_glob_with_dotdot_after_a_wildcard_never_writes_outside_out(cli, tmp_path):
    """'in/*/../../src/*.png' used to write OUT/a/../../src/y.png, that is beside --out, over an existing file."""
    (tmp_path / "in" / "a").mkdir(parents=True)
    (tmp_path / "src").mkdir()
    color_image(1).save(tmp_path / "in" / "a" / "k.png")
    color_image(2).save(tmp_path / "src" / "y.png")
    color_image(3).save(tmp_path / "in" / "top.png")
    victim = tmp_path / "o" / "src" / "y.png"
    victim.parent.mkdir(parents=True)
    victim.write_bytes(b"precious")
    code, _, err = cli(f"{tmp_path}/in/*/../../src/*.png", "--out", tmp_path / "o" / "p")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "outside --out" in err, err
    assert victim.read_bytes() == b"precious" and not (tmp_path / "o" / "p").exists()
    # a '..' that stays inside --out: "already there" is decided on the path the write would land on
    kept = tmp_path / "o" / "p" / "top.png"
    kept.parent.mkdir()
    kept.write_bytes(b"earlier result")
    code, out, _ = cli(f"{tmp_path}/in/*/../*.png", "--out", tmp_path / "o" / "p")
    assert code == 0 and "0 colorized, 0 failed, 1 already there" in out and kept.read_bytes() == b"earlier result"


def test_a_folder_linked_to_outside_out_is_refused(cli, tmp_path):
    photos, out = tmp_path / "photos", tmp_path / "out"
    (photos / "sub").mkdir(parents=True)
    color_image(1).save(photos / "sub" / "k.png")
    (tmp_path / "elsewhere").mkdir()
    out.mkdir()
    (out / "sub").symlink_to(tmp_path / "elsewhere")
    code, _, err = cli(photos, "--out", out)
    assert code == 2 and "outside --out" in err and not any((tmp_path / "elsewhere").iterdir())


def test_a_photo_over_max_pixels_is_one_line_from_its_header(cli, tmp_path):
    from test_images import png_declaring
    photos = tmp_path / "photos"
    photos.mkdir()
    png_declaring(photos / "huge.png", 24000, 24000)  # 576 MP in 100 bytes: refused before decoding
    color_image(1).save(photos / "small.png")  # 48 x 40 = 1,920 pixels
    color_image(2, (20, 20)).save(photos / "tiny.png")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code, out, err = cli(photos, "--out", tmp_path / "out")
    assert code == 1 and err.strip().splitlines() == [
        f"error: {photos / 'huge.png'}: too large: 24000x24000 is 576 MP, over the limit of 400 MP (--max-pixels)"]
    assert not [w for w in caught if "Decompression" in str(w.category)]  # Pillow's two-line warning
    code, out, err = cli(photos, "--out", tmp_path / "out2", "--max-pixels", "1000")
    assert code == 1 and "2 failed" in out and files_under(tmp_path / "out2") == ["tiny.png"]
    assert "small.png: too large: 48x40 is 1,920 pixels, over the limit of 1,000 pixels (--max-pixels)" in err
