"""The web app (gan-colorizer-app): its pieces, its API through gradio_client against a loopback server, and the page
in a real headless Chromium: upload a photo, pick a colour, click, see the colour appear there."""
import importlib
import json
import re
import socket
import time

import numpy as np
import pytest
from PIL import Image
from skimage.color import rgb2lab
from test_hints_colorize import RED, HintEcho, ab_at, gray_photo

from gan_colorizer.colorize.api import Colorizer
from gan_colorizer.hints import ab_to_hex, parse_color, read_file

from gan_colorizer.app import photos

app = importlib.import_module("gan_colorizer.app.main")  # the module (the package's `main` is its command)
BLUE = "#2850dc"


def test_a_click_makes_a_hint_of_the_picked_colour_or_of_the_models_own():
    hint = app.picked_hint(12.7, 30.2, RED, 3)
    assert (hint.x, hint.y, hint.radius) == (12.7, 30.2, 3) and hint.ab == pytest.approx(parse_color(RED))
    result = Image.new("RGB", (40, 40), (40, 90, 200))
    proposed = app.picked_hint(5, 6, RED, 2, proposed=result)
    assert proposed.ab == pytest.approx(parse_color([40, 90, 200]), abs=1e-4)


def test_the_downloads_are_the_result_and_a_hints_file_colorize_py_reads_named_after_the_photo(tmp_path):
    hints = [app.picked_hint(10, 20, RED, 2), app.picked_hint(30, 5, BLUE, 0)]
    files = photos.downloads(photos.Photo("beach", gray_photo(), hints), Image.new("RGB", (64, 48)), tmp_path)
    assert [p.split("/")[-1] for p in files] == ["beach-colorized.png", "beach-hints.json"]
    assert Image.open(files[0]).size == (64, 48)
    back = read_file(files[1])
    assert [(h.x, h.y, h.radius) for h in back] == [(10, 20, 2), (30, 5, 0)]
    assert back[1].ab == pytest.approx(hints[1].ab, abs=1e-3)


def test_hints_are_shown_where_they_were_placed_in_their_colour():
    photo = gray_photo()
    shown = np.asarray(app.marked(photo, [app.picked_hint(40, 30, RED, 2)]))
    centre = shown[30, 40]
    assert tuple(centre) == tuple(int(ab_to_hex(parse_color(RED))[i:i + 2], 16) for i in (1, 3, 5))
    assert tuple(shown[100, 140]) == (128, 128, 128)  # the rest untouched
    assert app.hint_rows([app.picked_hint(40, 30, RED, 2)])[0][:3] == [1, 40, 30]


def test_photos_opened_together_get_names_of_their_own_and_the_newest_is_current():
    album = photos.Album()
    for name in ("beach", "beach", "my photo (1)", "..."):
        album.add(name, gray_photo())
    assert [p.name for p in album.photos] == ["beach", "beach-2", "my_photo_1", "photo"] and album.current == 3
    album.select(1)
    album.close_current()
    assert [p.name for p in album.photos] == ["beach", "my_photo_1", "photo"] and album.photo.name == "beach"
    album.close_current()
    assert album.photo.name == "my_photo_1"
    album.select(7)  # no such photo: the current one stays
    assert album.photo.name == "my_photo_1" and [t[1] for t in album.thumbnails()] == ["my_photo_1", "photo"]
    assert max(album.thumbnails()[0][0].size) == photos.THUMB


def test_a_16_bit_gray_photo_is_shown_at_its_own_levels_and_an_rgb_one_is_left_as_opened():
    photo = Image.fromarray(np.full((50, 80), 40000, np.uint16))  # 40000 / 65535 of white: 156 in 8 bits
    assert photos.Album().add("scan", photo).thumbnail.getpixel((0, 0)) == (156, 156, 156)
    assert app.marked(photo, []).getpixel((0, 0)) == (156, 156, 156)
    colour = Image.new("RGB", (400, 300), (90, 90, 90))
    opened = photos.Album().add("colour", colour)
    app.marked(opened.image, [app.picked_hint(40, 30, RED, 2)])
    assert opened.image.size == (400, 300) and opened.image.getpixel((40, 30)) == (90, 90, 90)  # no dot, no shrink


def test_each_photo_keeps_its_hints_and_its_result_made_once_for_the_same_settings():
    echo = HintEcho()
    colorizer, album = Colorizer(echo, render_size=64), photos.Album()
    first, second = album.add("a", gray_photo()), album.add("b", gray_photo(80, 60))
    first.place(app.picked_hint(40, 30, RED, 2))
    second.place(app.picked_hint(10, 10, BLUE, 3))
    red = first.result(colorizer, "echo")
    assert np.abs(ab_at(red, 40, 30) - parse_color(RED)).max() < 2.0 and np.abs(ab_at(red, 10, 10)).max() < 0.5
    assert np.abs(ab_at(second.result(colorizer, "echo"), 10, 10) - parse_color(BLUE)).max() < 2.0
    assert first.result(colorizer, "echo") is red and len(echo.seen) == 2  # back to a photo: not run again
    grayer = first.result(colorizer, "echo", (0, 0.5, 0))
    assert first.result(colorizer, "echo") is red and len(echo.seen) == 3  # the two latest settings are kept
    assert np.abs(ab_at(grayer, 40, 30) - np.array(parse_color(RED)) / 2).max() < 2.0
    first.place(app.picked_hint(60, 50, BLUE, 2), move=1)  # moved: the hint's place taken by the new one
    assert [(h.x, h.y) for h in first.hints] == [(60, 50)]
    assert np.abs(ab_at(first.result(colorizer, "echo"), 40, 30)).max() < 0.5 and len(echo.seen) == 4
    first.place(app.picked_hint(5, 5, RED, 0), move=9)  # no hint 9: added
    first.remove(1)
    assert [(h.x, h.y) for h in first.hints] == [(5, 5)] and [(h.x, h.y) for h in second.hints] == [(10, 10)]
    first.remove()
    assert first.hints == []


def test_the_zip_holds_every_photos_result_and_hints_file(tmp_path):
    import zipfile
    colorizer, album = Colorizer(HintEcho(), render_size=64), photos.Album()
    album.add("a", gray_photo()).place(app.picked_hint(40, 30, RED, 2))
    album.add("b", gray_photo(80, 60))
    path = photos.zip_all(album, colorizer, "echo", (0, 1, 0), tmp_path)
    with zipfile.ZipFile(path) as archive:
        assert archive.namelist() == ["a-colorized.png", "a-hints.json", "b-colorized.png", "b-hints.json"]
        assert all(info.date_time[0] >= 2020 for info in archive.infolist())  # dated when made, not 1980
        archive.extractall(tmp_path / "out")
    assert Image.open(tmp_path / "out" / "b-colorized.png").size == (80, 60)
    assert np.abs(ab_at(Image.open(tmp_path / "out" / "a-colorized.png"), 40, 30) - parse_color(RED)).max() < 2.0
    assert [(h.x, h.y) for h in read_file(tmp_path / "out" / "a-hints.json")] == [(40, 30)]
    assert read_file(tmp_path / "out" / "b-hints.json") == []


def test_the_published_models_whose_weights_are_cached_are_offered_after_the_checkpoints(tmp_path, monkeypatch):
    from gan_colorizer.models import registry
    from gan_colorizer.weights import hub_file
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    assert app.offered(["own.pt", "zhang-eccv16"]) == ["own.pt", "zhang-eccv16"]  # nothing cached (Hugging Face's
    # cache is empty in tests too)
    path = hub_file(registry.find("zhang-siggraph17").weights.url)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"weights")
    assert app.offered(["own.pt", "zhang-eccv16"]) == ["own.pt", "zhang-eccv16", "zhang-siggraph17"]
    assert app.offered(["zhang-siggraph17"]) == ["zhang-siggraph17"]


@pytest.mark.slow
def test_a_published_hint_model_by_name_runs_in_the_app_offline_from_the_torch_hub_cache(tmp_path, monkeypatch,
                                                                                        capsys):
    """gan-colorizer-app --checkpoint zhang-siggraph17: its file (random weights here) read from torch.hub's cache,
    nothing downloaded; its hints reach it; a name that is neither a file nor a published model is one line at start."""
    import torch
    from conftest import DOWNLOADS

    from gan_colorizer.models import registry, zhang
    from gan_colorizer.weights import hub_file
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    path = hub_file(registry.find("zhang-siggraph17").weights.url)
    path.parent.mkdir(parents=True)
    torch.manual_seed(17)
    torch.save(zhang.SIGGRAPH17().state_dict(), path)
    before = len(DOWNLOADS)
    load = app.model_loader(256, "cpu", "off")
    app.build(load, ["zhang-siggraph17"])
    colorizer = load("zhang-siggraph17")
    assert colorizer.published.source.endswith("(cached)") and len(DOWNLOADS) == before
    assert app.engine_line(colorizer).startswith("zhang-siggraph17 in fp32") and "reads colour hints" in \
        app.engine_line(colorizer)
    photo = photos.Album().add("p", gray_photo())
    plain = photo.result(colorizer, "zhang-siggraph17")
    photo.place(app.picked_hint(80, 60, RED, 3))
    hinted = photo.result(colorizer, "zhang-siggraph17")
    assert hinted.size == (160, 120) and not np.array_equal(np.asarray(hinted), np.asarray(plain))  # the hint went
    # in (random weights: where it moves the colour is not known; without hints the two runs are the same pixels)
    monkeypatch.setattr(app, "serve", lambda *args, **kwargs: pytest.fail("served with a name that is no model"))
    assert app.main(["--checkpoint", "zhang-siggraph17", "--checkpoint", "zhang-sigraph17", "--port", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --checkpoint zhang-sigraph17: ") and "zhang-siggraph17" in err and "\n" not in err


def test_the_page_says_which_engine_runs_and_that_an_onnx_hint_model_reads_hints(tmp_path):
    from test_onnx_files import good, hint_echo

    from gan_colorizer.colorize.engines import load_onnx
    hinted, automatic = Colorizer(load_onnx(hint_echo(tmp_path))), Colorizer(load_onnx(good(tmp_path)))
    assert app.engine_line(hinted) == "engine onnx, onnxruntime on the CPU; reads colour hints"
    assert app.engine_line(automatic) == ("engine onnx, onnxruntime on the CPU; takes no hints (its export has no "
                                          "hints input): automatic")
    assert app.engine_line(Colorizer(HintEcho())) == "device cpu, amp off; reads colour hints"


@pytest.fixture(scope="module")
def server():
    """The page over the HintEcho network (its answer is known: the hint's colour where a hint is), served on a free
    loopback port for the module."""
    page = app.build({"echo": Colorizer(HintEcho(), render_size=64), "automatic": Colorizer(Automatic())})
    url = app.serve(page, 0, block=False)
    assert url.startswith("http://127.0.0.1:")
    yield url
    page.close()


class Automatic(HintEcho):
    takes_hints = False

    def forward(self, gray_l, hints=None):
        return super().forward(gray_l)


@pytest.mark.slow
def test_the_app_serves_on_loopback_only(server):
    port = int(server.rstrip("/").rsplit(":", 1)[1])
    outside = [a for a in {i[4][0] for i in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)}
               if not a.startswith("127.")]
    for address in outside:  # the machine's other addresses refuse the connection
        with pytest.raises(OSError), socket.create_connection((address, port), timeout=2):
            pass
    with socket.create_connection(("127.0.0.1", port), timeout=5):
        pass


@pytest.mark.slow
def test_gradio_client_colorizes_a_photo_with_hints_and_without(server, tmp_path):
    from gradio_client import Client, handle_file
    gray_photo().save(tmp_path / "photo.png")
    client = Client(server, verbose=False)
    hints = json.dumps([{"x": 40, "y": 30, "color": RED}, {"x": 120, "y": 90, "color": BLUE, "radius": 3}])
    out = Image.open(client.predict(handle_file(str(tmp_path / "photo.png")), hints, 0, 1, 0, "echo",
                                    api_name="/colorize"))
    assert out.size == (160, 120)
    assert np.abs(ab_at(out, 40, 30) - parse_color(RED)).max() < 2.0
    assert np.abs(ab_at(out, 120, 90) - parse_color(BLUE)).max() < 2.0
    grayer = Image.open(client.predict(handle_file(str(tmp_path / "photo.png")), hints, 0, 0.5, 0, "echo",
                                       api_name="/colorize"))
    assert np.abs(ab_at(grayer, 40, 30) - np.array(parse_color(RED)) / 2).max() < 2.0  # the sliders apply after
    plain = Image.open(client.predict(handle_file(str(tmp_path / "photo.png")), "", 0, 1, 0, "automatic",
                                      api_name="/colorize"))
    assert np.abs(ab_at(plain, 40, 30)).max() < 0.5


@pytest.mark.slow
@pytest.mark.parametrize("text, line", [("{bad json", "hints: not JSON (Expecting property name"),
                                        ('[{"x": 400, "y": 30, "color": "#ff0000"}]', "outside"),
                                        ('[{"x": 4, "y": 3, "color": "pink"}]', "pink")])
def test_an_api_mistake_reaches_the_caller_as_colorize_pys_line(server, tmp_path, text, line):
    from gradio_client import Client, handle_file
    gray_photo().save(tmp_path / "photo.png")
    with pytest.raises(Exception, match=re.escape(line)):
        Client(server, verbose=False).predict(handle_file(str(tmp_path / "photo.png")), text, 0, 1, 0, "echo",
                                              api_name="/colorize")


@pytest.mark.slow
def test_port_0_announces_the_port_it_listens_on():
    page = app.build({"echo": Colorizer(HintEcho(), render_size=64)})
    said = []
    url = app.serve(page, 0, block=False, announce=said.append)
    try:
        port = int(url.rstrip("/").rsplit(":", 1)[1])
        assert said == [url] and port > 0
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
    finally:
        page.close()


@pytest.mark.slow
def test_in_chromium_a_click_with_a_picked_colour_colours_the_result_there(server, tmp_path):
    from browser import Chromium, find_chromium
    gray_photo(320, 240).save(tmp_path / "photo.png")
    browser = Chromium(find_chromium(), timeout=60)
    try:
        browser.send("Network.enable")
        browser.open(server)
        upload(browser, "#photo input[type=file]", tmp_path / "photo.png")
        wait_until(browser, "document.querySelector('#result img') !== null")
        set_colour(browser, BLUE)
        x, y = image_point(browser, "#photo img", 80, 60)  # photo pixel (80, 60) on the page
        browser.click(x, y)
        wait_until(browser, r"document.querySelector('#hints').innerText.includes('\n80\n60\n')")  # its table row
        assert result_turns(browser, tmp_path, (80, 60), parse_color(BLUE), timeout=60)
        set_colour(browser, RED)
        browser.click(*image_point(browser, "#photo img", 240, 180))  # a second hint, on the photo as now shown
        wait_until(browser, r"document.querySelector('#hints').innerText.includes('\n240\n180\n')")
        time.sleep(2)
        result = result_image(browser, tmp_path)
        browser.screenshot(tmp_path / "app.png")
        assert result.size == (320, 240)
        assert np.abs(ab_at(result, 80, 60) - parse_color(BLUE)).max() < 3.0  # the picked colour, where clicked
        assert np.abs(ab_at(result, 240, 180) - parse_color(RED)).max() < 3.0
        assert np.abs(ab_at(result, 250, 100)).max() < 0.5  # and nowhere else
        lightness = rgb2lab(np.asarray(result)[[60, 180], [80, 240]])[:, 0]
        assert np.abs(lightness - rgb2lab(np.full((1, 1, 3), 128, np.uint8))[0, 0, 0]).max() < 1.0  # the photo's L,
        # not the dots the page draws on it
        hosts = {e["params"]["request"]["url"].split("/")[2] for e in browser.events
                 if e["method"] == "Network.requestWillBeSent" and e["params"]["request"]["url"].startswith("http")}
        assert hosts == {server.split("/")[2]}  # offline: nothing fetched from anywhere but the app
    finally:
        browser.close()


@pytest.mark.slow
def test_in_chromium_the_proposed_colour_is_the_models_own_before_the_mood_controls(server, tmp_path):
    """Saturation 0.5 shows a red hint at half its chroma; taking the colour the model proposes there gives the red
    itself (not the halved red shown, which the saturation would then halve again)."""
    from browser import Chromium, find_chromium
    gray_photo(320, 240).save(tmp_path / "photo.png")
    browser = Chromium(find_chromium(), timeout=60)
    try:
        browser.open(server)
        upload(browser, "#photo input[type=file]", tmp_path / "photo.png")
        wait_until(browser, "document.querySelector('#result img') !== null")
        set_colour(browser, RED)
        browser.click(*image_point(browser, "#photo img", 100, 100))
        wait_until(browser, r"document.querySelector('#hints').innerText.includes('\n100\n100\n')")
        browser.evaluate("""(() => { const box = [...document.querySelectorAll('input[type=number]')].find(
            i => i.closest('.block')?.innerText.includes('saturation')); box.focus(); box.select(); })()""")
        browser.send("Input.insertText", text="0.5")
        for kind in ("keyDown", "keyUp"):
            browser.send("Input.dispatchKeyEvent", type=kind, key="Enter", code="Enter", windowsVirtualKeyCode=13)
        browser.evaluate("document.activeElement.blur()")
        half = np.array(parse_color(RED)) / 2
        assert result_turns(browser, tmp_path, (100, 100), half)
        set_colour(browser, BLUE)  # the picker's colour is not the one taken
        browser.evaluate("[...document.querySelectorAll('label')].find(l => l.innerText.includes('proposes')).click()")
        wait_until(browser, "[...document.querySelectorAll('label')].find(l => l.innerText.includes('proposes'))"
                            ".querySelector('input').checked", timeout=10)
        browser.click(*image_point(browser, "#photo img", 102, 102))
        wait_until(browser, r"document.querySelector('#hints').innerText.includes('\n102\n102\n')")
        rows = browser.evaluate("document.querySelector('#hints').innerText").split("\n")
        first, taken = [parse_color(r) for r in rows if re.fullmatch("#[0-9a-f]{6}", r)]
        assert np.abs(np.subtract(taken, first)).max() < 3.0  # the red itself, at full chroma (not half: 27 off)
        assert result_turns(browser, tmp_path, (102, 102), half)  # halved once, as it is shown
        time.sleep(1)
        assert np.abs(ab_at(result_image(browser, tmp_path), 102, 102) - half).max() < 2.0
    finally:
        browser.close()


def upload(browser, selector: str, *paths) -> None:
    """Give files to the page's file input `selector`, as a person choosing them in the file dialog."""
    wait_until(browser, f"document.querySelector('{selector}') !== null")
    node = browser.send("DOM.querySelector", nodeId=browser.send("DOM.getDocument")["root"]["nodeId"],
                        selector=selector)["nodeId"]
    browser.send("DOM.setFileInputFiles", nodeId=node, files=[str(p) for p in paths])


def wait_until(browser, condition: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not browser.evaluate(f"Boolean({condition})"):
        if time.monotonic() > deadline:
            raise TimeoutError(condition)
        time.sleep(0.25)


def set_colour(browser, colour: str) -> None:
    """Choose a colour as a person does: open the picker, type the hex code into its field, press Enter, close it."""
    browser.evaluate("document.querySelector('#colour button.dialog-button').click()")
    wait_until(browser, "document.querySelector('#colour .input-wrap input') !== null")
    browser.evaluate("(() => { const i = document.querySelector('#colour .input-wrap input'); i.focus(); i.select(); "
                     "})()")
    browser.send("Input.insertText", text=colour)
    for kind in ("keyDown", "keyUp"):
        browser.send("Input.dispatchKeyEvent", type=kind, key="Enter", code="Enter", windowsVirtualKeyCode=13)
    browser.evaluate("document.querySelector('#colour .input-wrap input').blur()")
    browser.click(5, 5)  # outside: the dialog closes (a click on the photo while it is open would only close it)
    wait_until(browser, "document.querySelector('#colour .input-wrap input') === null", timeout=10)
    rgb = tuple(int(colour[i:i + 2], 16) for i in (1, 3, 5))
    wait_until(browser, f"document.querySelector('#colour button.dialog-button').style.background === "
                        f"'rgb({rgb[0]}, {rgb[1]}, {rgb[2]})'", timeout=10)


def image_point(browser, selector: str, px: float, py: float) -> tuple[float, float]:
    """Where on the page the photo's pixel (px, py) is shown (the image is scaled to fit its box)."""
    box = browser.evaluate(f"""(() => {{ const i = document.querySelector('{selector}');
        i.scrollIntoView({{block: 'nearest'}}); const r =
        i.getBoundingClientRect(); return [r.left, r.top, r.width, r.height, i.naturalWidth, i.naturalHeight]; }})()""")
    left, top, width, height, natural_w, natural_h = box
    scale = min(width / natural_w, height / natural_h)  # object-fit: contain
    x0, y0 = left + (width - natural_w * scale) / 2, top + (height - natural_h * scale) / 2
    return x0 + (px + 0.5) * scale, y0 + (py + 0.5) * scale


def result_image(browser, tmp_path) -> Image.Image:
    (tmp_path / "result.png").write_bytes(fetched(browser, "#result img"))
    return Image.open(tmp_path / "result.png")


@pytest.mark.slow
def test_in_chromium_several_photos_each_keep_their_own_hints_and_result(server, tmp_path):
    """Open two photos at once, give each its own hint, switch back and forth: each shows its own hints and result,
    its downloads are its own, and the zip holds both."""
    import zipfile

    from browser import Chromium, find_chromium
    gray_photo(320, 240).save(tmp_path / "left.png")
    gray_photo(240, 180).save(tmp_path / "right.png")
    browser = Chromium(find_chromium(), timeout=60)
    try:
        browser.open(server)
        upload(browser, "input[type=file][multiple]", tmp_path / "left.png", tmp_path / "right.png")  # open photos
        wait_until(browser, "document.querySelectorAll('#photos button.thumbnail-item').length === 2")
        showing(browser, 320)  # the first opened is current
        set_colour(browser, BLUE)
        browser.click(*image_point(browser, "#photo img", 80, 60))
        wait_until(browser, r"document.querySelector('#hints').innerText.includes('\n80\n60\n')")
        wait_until(browser, "document.querySelector('#downloads').innerText.includes('left-colorized')")
        switch_to(browser, 1)
        showing(browser, 240)
        assert "\n80\n60\n" not in browser.evaluate("document.querySelector('#hints').innerText")  # not left's
        assert np.abs(ab_at(settled_result(browser, tmp_path, 240), 80, 60)).max() < 0.5
        set_colour(browser, RED)
        browser.click(*image_point(browser, "#photo img", 200, 40))
        wait_until(browser, r"document.querySelector('#hints').innerText.includes('\n200\n40\n')")
        right = settled_result(browser, tmp_path, 240, (200, 40))
        browser.screenshot(tmp_path / "shown-right.png")
        assert np.abs(ab_at(right, 200, 40) - parse_color(RED)).max() < 3.0
        assert "right-colorized" in browser.evaluate("document.querySelector('#downloads').innerText")
        switch_to(browser, 0)
        showing(browser, 320)
        wait_until(browser, r"document.querySelector('#hints').innerText.includes('\n80\n60\n')")
        assert "\n200\n40\n" not in browser.evaluate("document.querySelector('#hints').innerText")
        left = settled_result(browser, tmp_path, 320, (80, 60))
        browser.screenshot(tmp_path / "shown-left.png")
        assert np.abs(ab_at(left, 80, 60) - parse_color(BLUE)).max() < 3.0
        assert np.abs(ab_at(left, 200, 40)).max() < 0.5  # the other photo's hint is not here
        switch_to(browser, 1)
        showing(browser, 240)
        assert np.abs(ab_at(settled_result(browser, tmp_path, 240, (200, 40)), 200, 40)
                      - parse_color(RED)).max() < 3.0  # its result kept
        browser.evaluate("document.querySelector('#zip-all').click()")
        wait_until(browser, "document.querySelector('#zip a[href]') !== null")
        (tmp_path / "all.zip").write_bytes(fetched(browser, "#zip a[href]", "href"))
        with zipfile.ZipFile(tmp_path / "all.zip") as archive:
            assert sorted(archive.namelist()) == ["left-colorized.png", "left-hints.json", "right-colorized.png",
                                                  "right-hints.json"]
            archive.extractall(tmp_path / "all")
        assert [(h.x, h.y) for h in read_file(tmp_path / "all" / "left-hints.json")] == [(80, 60)]
        assert [(h.x, h.y) for h in read_file(tmp_path / "all" / "right-hints.json")] == [(200, 40)]
        zipped = Image.open(tmp_path / "all" / "left-colorized.png")
        assert zipped.size == (320, 240) and np.abs(ab_at(zipped, 80, 60) - parse_color(BLUE)).max() < 3.0
        assert browser.errors() == []
    finally:
        browser.close()


def switch_to(browser, index: int) -> None:
    browser.evaluate(f"document.querySelectorAll('#photos button.thumbnail-item')[{index}].click()")


def showing(browser, width: int) -> None:
    """Wait until the photo box shows the photo that is `width` pixels wide (and the result too)."""
    wait_until(browser, f"document.querySelector('#photo img')?.naturalWidth === {width}")
    wait_until(browser, f"document.querySelector('#result img')?.naturalWidth === {width}")


def settled_result(browser, tmp_path, width: int, coloured=None, timeout: float = 30.0) -> Image.Image:
    """The result image once it is `width` wide and, if given, coloured at the point `coloured` (it follows the
    page's last click a moment later)."""
    deadline = time.monotonic() + timeout
    while True:
        out = result_image(browser, tmp_path)
        if out.size[0] == width and (coloured is None or np.abs(ab_at(out, *coloured)).max() > 5):
            return out
        if time.monotonic() > deadline:
            return out
        time.sleep(0.25)


def result_turns(browser, tmp_path, point, ab, timeout: float = 30.0) -> bool:
    """Whether the result's colour at `point` comes within 2 ab units of `ab` before `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while np.abs(ab_at(result_image(browser, tmp_path), *point) - ab).max() > 2.0:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.25)
    return True


def fetched(browser, selector: str, attribute: str = "src") -> bytes:
    """The bytes of the file an element of the page points to, fetched by the page itself."""
    import base64
    data = browser.evaluate(f"""(async () => {{ const i = document.querySelector('{selector}');
        const b = await (await fetch(i.{attribute})).blob(); const r = new FileReader();
        return await new Promise(ok => {{ r.onload = () => ok(r.result); r.readAsDataURL(b); }}); }})()""")
    return base64.b64decode(data.split(",", 1)[1])
