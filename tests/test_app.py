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

app = importlib.import_module("gan_colorizer.app.main")  # the module (the package's `main` is its command)
BLUE = "#2850dc"


def test_a_click_makes_a_hint_of_the_picked_colour_or_of_the_models_own():
    hint = app.picked_hint(12.7, 30.2, RED, 3)
    assert (hint.x, hint.y, hint.radius) == (12.7, 30.2, 3) and hint.ab == pytest.approx(parse_color(RED))
    result = Image.new("RGB", (40, 40), (40, 90, 200))
    proposed = app.picked_hint(5, 6, RED, 2, proposed=result)
    assert proposed.ab == pytest.approx(parse_color([40, 90, 200]), abs=1e-4)


def test_the_downloads_are_the_result_and_a_hints_file_colorize_py_reads(tmp_path):
    hints = [app.picked_hint(10, 20, RED, 2), app.picked_hint(30, 5, BLUE, 0)]
    files = app.downloads(Image.new("RGB", (64, 48)), hints, tmp_path)
    assert [p.split("/")[-1] for p in files] == ["colorized.png", "hints.json"]
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
        wait_until(browser, "document.querySelector('#photo input[type=file]') !== null")
        node = browser.send("DOM.querySelector", nodeId=browser.send("DOM.getDocument")["root"]["nodeId"],
                            selector="#photo input[type=file]")["nodeId"]
        browser.send("DOM.setFileInputFiles", nodeId=node, files=[str(tmp_path / "photo.png")])
        wait_until(browser, "document.querySelector('#result img') !== null")
        set_colour(browser, BLUE)
        x, y = image_point(browser, "#photo img", 80, 60)  # photo pixel (80, 60) on the page
        browser.click(x, y)
        wait_until(browser, r"document.querySelector('#hints').innerText.includes('\n80\n60\n')")  # its table row
        time.sleep(2)
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
    browser.click(5, 5)  # outside: the dialog closes
    rgb = tuple(int(colour[i:i + 2], 16) for i in (1, 3, 5))
    wait_until(browser, f"document.querySelector('#colour button.dialog-button').style.background === "
                        f"'rgb({rgb[0]}, {rgb[1]}, {rgb[2]})'", timeout=10)


def image_point(browser, selector: str, px: float, py: float) -> tuple[float, float]:
    """Where on the page the photo's pixel (px, py) is shown (the image is scaled to fit its box)."""
    box = browser.evaluate(f"""(() => {{ const i = document.querySelector('{selector}'); const r =
        i.getBoundingClientRect(); return [r.left, r.top, r.width, r.height, i.naturalWidth, i.naturalHeight]; }})()""")
    left, top, width, height, natural_w, natural_h = box
    scale = min(width / natural_w, height / natural_h)  # object-fit: contain
    x0, y0 = left + (width - natural_w * scale) / 2, top + (height - natural_h * scale) / 2
    return x0 + (px + 0.5) * scale, y0 + (py + 0.5) * scale


def result_image(browser, tmp_path) -> Image.Image:
    import base64
    data = browser.evaluate("""(async () => { const i = document.querySelector('#result img');
        const b = await (await fetch(i.src)).blob(); const r = new FileReader();
        return await new Promise(ok => { r.onload = () => ok(r.result); r.readAsDataURL(b); }); })()""")
    (tmp_path / "result.png").write_bytes(base64.b64decode(data.split(",", 1)[1]))
    return Image.open(tmp_path / "result.png")
