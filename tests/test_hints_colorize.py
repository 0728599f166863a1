"""Colorizing with hints: Colorizer.colorize(image, hints=[...]) and colorize.py --hints FILE, good and bad."""
import json

import numpy as np
import pytest
import torch
from PIL import Image
from skimage.color import rgb2lab

from gan_colorizer import Colorizer
from gan_colorizer.colorize import cli as colorize_cli
from gan_colorizer.errors import UserError
from gan_colorizer.hints import Hint, parse_color

RED = "#c83c28"


class HintEcho(torch.nn.Module):
    """A stand-in hint network with a known answer: the hinted ab where a hint is, gray elsewhere; it keeps the hints
    it was given (tests/test_hints_evaluate.py and test_app.py use it too)."""
    takes_hints = True
    size_multiple = 1

    def __init__(self):
        super().__init__()
        self.seen = []
        self.scale = torch.nn.Parameter(torch.ones(()))

    def forward(self, gray_l, hints=None):
        self.seen.append(None if hints is None else hints.clone())
        return torch.zeros(gray_l.shape[0], 2, *gray_l.shape[2:]) if hints is None else hints[:, :2] * self.scale


@pytest.fixture
def echo():
    return Colorizer(HintEcho(), render_size=64)


def gray_photo(width=160, height=120) -> Image.Image:
    return Image.fromarray(np.full((height, width), 128, np.uint8), "L")


def ab_at(img: Image.Image, x: int, y: int) -> np.ndarray:
    return rgb2lab(np.asarray(img.convert("RGB"))[y:y + 1, x:x + 1])[0, 0, 1:]


def test_a_hint_colours_its_place_and_the_rest_stays_gray(echo):
    out = echo.colorize(gray_photo(), hints=[{"x": 40, "y": 30, "color": RED, "radius": 2}])
    assert out.size == (160, 120)
    assert np.abs(ab_at(out, 40, 30) - parse_color(RED)).max() < 2.0  # the hint's a, b at the photo's L
    assert np.abs(ab_at(out, 130, 100)).max() < 0.5
    hints = echo.generator.seen[-1]
    assert hints.shape == (1, 3, 64, 85)  # the render of a 160 x 120 photo: its short side 64 px
    rows, cols = torch.nonzero(hints[0, 2], as_tuple=True)
    assert (rows.float().mean().item(), cols.float().mean().item()) == (16.0, 21.0)  # the centres 30.5, 40.5 x 0.53


def test_hint_objects_and_dicts_give_the_same_result_and_mood_controls_apply_after(echo):
    a, b = parse_color(RED)
    as_object = echo.colorize(gray_photo(), hints=[Hint(40.0, 30.0, (a, b), 2)])
    as_dict = echo.colorize(gray_photo(), hints=[{"x": 40, "y": 30, "ab": [a, b]}])
    assert np.array_equal(np.asarray(as_object), np.asarray(as_dict))
    gray = echo.colorize(gray_photo(), hints=[Hint(40.0, 30.0, (a, b), 2)], saturation=0.0)
    assert np.abs(ab_at(gray, 40, 30)).max() < 0.5
    warm = echo.colorize(gray_photo(), hints=[Hint(40.0, 30.0, (a, b), 2)], temperature=10.0)
    assert ab_at(warm, 40, 30)[1] - ab_at(as_object, 40, 30)[1] == pytest.approx(10.0, abs=1.5)


def test_no_hints_is_the_automatic_mode(echo):
    out = echo.colorize(gray_photo(), hints=[])
    assert echo.generator.seen[-1] is None and np.abs(ab_at(out, 40, 30)).max() < 0.5


@pytest.mark.parametrize("hints, why", [
    ([{"x": 160, "y": 30, "color": RED}], "hints: hint 1 at x 160, y 30 is outside the 160 x 120 photo"),
    ([{"x": 10, "y": 10, "color": "crimson"}], "hints: hint 1: color 'crimson' is not"),
    ([{"x": 10, "y": 10}], "hints: hint 1: give one colour"),
])
def test_bad_hints_are_one_line_errors(echo, hints, why):
    with pytest.raises(UserError) as e:
        echo.colorize(gray_photo(), hints=hints)
    assert str(e.value).startswith(why) and "\n" not in str(e.value)


def test_a_model_without_hints_refuses_them_in_one_line(cached_colorizer):
    with pytest.raises(UserError, match=r"^hints: the model takes no hints: train one with --hints"):
        cached_colorizer.colorize(gray_photo(64, 64), hints=[{"x": 1, "y": 1, "color": RED}])


@pytest.fixture
def hint_cli(monkeypatch, capsys, tmp_path):
    """colorize.py's main in-process around the HintEcho network (or a given colorizer)."""
    def run(*args, colorizer=None):
        monkeypatch.setattr(colorize_cli, "load_colorizer", lambda a: colorizer or Colorizer(HintEcho(), None, 64))
        code = colorize_cli.main([*map(str, args), "--checkpoint", "hint.pt", "--out", str(tmp_path / "out")])
        out, err = capsys.readouterr()
        return code, out, err
    return run


def hints_file(tmp_path, entries) -> str:
    path = tmp_path / "hints.json"
    path.write_text(json.dumps({"hints": entries}))
    return str(path)


def test_colorize_py_takes_a_hints_file(hint_cli, tmp_path):
    gray_photo().save(tmp_path / "photo.png")
    code, out, err = hint_cli(tmp_path / "photo.png", "--hints", hints_file(tmp_path, [
        {"x": 40, "y": 30, "color": RED}, {"x": 120, "y": 90, "color": [40, 90, 200], "radius": 3}]))
    assert code == 0, err
    assert "2 hints from" in out
    result = Image.open(tmp_path / "out" / "photo.png")
    assert np.abs(ab_at(result, 40, 30) - parse_color(RED)).max() < 2.0
    assert np.abs(ab_at(result, 120, 90) - parse_color([40, 90, 200])).max() < 2.0


def test_colorize_py_hint_errors_are_one_line(hint_cli, tmp_path, cached_colorizer):
    gray_photo().save(tmp_path / "photo.png")
    bad = tmp_path / "bad.json"
    bad.write_text('[{"x": 1, "y": 2, "color": "#12"}]')
    code, _, err = hint_cli(tmp_path / "photo.png", "--hints", bad)
    assert code == 2 and err.strip() == f"error: {bad}: hint 1: color '#12' is not '#rrggbb' or '#rgb'"
    outside = hints_file(tmp_path, [{"x": 400, "y": 2, "color": RED}])
    code, _, err = hint_cli(tmp_path / "photo.png", "--hints", outside)
    assert code == 1 and f"photo.png: --hints {outside}: hint 1 at x 400, y 2 is outside the 160 x 120 photo" in err
    assert not (tmp_path / "out" / "photo.png").exists()
    code, _, err = hint_cli(tmp_path / "photo.png", "--hints", outside, colorizer=cached_colorizer)
    assert code == 2 and err.strip() == (f"error: --hints {outside}: hint.pt: the model takes no hints: train one "
                                         f"with --hints (docs/hints.md)")
    (tmp_path / "film.mp4").write_bytes(b"")
    code, _, err = hint_cli(tmp_path / "film.mp4", "--hints", outside)
    assert code == 2 and "hints are for photos" in err and "Traceback" not in err


def test_zhang_siggraph17_gets_the_same_hints_in_lab_units_at_its_render(monkeypatch, tmp_path):
    from gan_colorizer.models import registry, zhang
    network, seen = zhang.SIGGRAPH17(), []

    def forward(l, hint_ab=None, hint_mask=None):
        seen.append((hint_ab, hint_mask))
        return torch.zeros(l.shape[0], 2, *l.shape[2:])
    monkeypatch.setattr(network, "forward", forward)
    loaded = registry.Loaded(registry.find("zhang-siggraph17"), network, tmp_path / "w.pth", "test")
    colorizer = Colorizer(loaded)
    assert colorizer.takes_hints
    colorizer.colorize(gray_photo(), hints=[{"x": 80, "y": 60, "ab": [30.0, -20.0], "radius": 0}])
    hint_ab, mask = seen[-1]
    assert hint_ab.shape == (1, 2, 256, 256) and mask.shape == (1, 1, 256, 256)  # stretched to its square
    assert torch.nonzero(mask[0, 0]).tolist() == [[129, 128]]  # 60.5 / 120 x 256 = 129.1, 80.5 / 160 x 256 = 128.8
    assert hint_ab[0, :, 129, 128].tolist() == pytest.approx([30.0, -20.0])  # Lab units, as its release takes them
    colorizer.colorize(gray_photo())
    assert seen[-1] == (None, None)  # automatic: its own zeros
