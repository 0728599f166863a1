"""gan-colorizer-app: a local web page (Gradio) where a person opens photos, clicks colours onto them, sees the
colorization follow, and downloads the result and the hints. A layer over Colorizer and hints.py: no colorizing of
its own. It serves 127.0.0.1 only, sends nothing anywhere (no analytics, no share link) and loads nothing from the
internet (system fonts, Gradio's own bundled scripts).
"""
import atexit
import functools
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # read when gradio is imported: no usage reports, no version check

from gan_colorizer.errors import UserError  # noqa: E402  (after the environment gradio reads)
from gan_colorizer.options import REQUIRED, amp_opt, device_opt, opt  # noqa: E402

LOOPBACK = "127.0.0.1"
PICKED = "#c83c28"  # the colour picker's first colour
MARK = (255, 255, 255)  # the ring drawn around each hint on the photo


@dataclass
class AppOptions:
    """What the app serves; the flags of gan-colorizer-app are these fields."""
    checkpoints: list[str] = opt(REQUIRED, "a checkpoint (best.pt, .onnx) or a published model's name to offer; "
                                           "repeat for several (the first is chosen at start); the published "
                                           "models whose weights are cached are offered after them",
                                 flag="--checkpoint", action="append", metavar="CKPT")
    port: int = opt(7860, "the port on 127.0.0.1 (0: a free one)", metavar="N")
    image_size: int = opt(256, "short side of the copy the network sees, as colorize.py's --image-size", metavar="N")
    device: str = device_opt()
    amp: str = amp_opt()


def model_loader(image_size: int, device: str, amp: str):
    """name -> Colorizer, each loaded once, when first chosen."""
    @functools.lru_cache(maxsize=None)
    def load(name: str):
        from gan_colorizer.colorize.api import Colorizer
        return Colorizer.from_checkpoint(name, device, image_size, amp)
    return load


def engine_line(colorizer) -> str:
    """What runs the network (the engine: torch on a device, or onnx / onnx-int8 in onnxruntime) and whether it
    reads hints, for the page."""
    why = "trained without --hints" if colorizer.engine == "torch" else "its export has no hints input"
    hints = "reads colour hints" if colorizer.takes_hints else f"takes no hints ({why}): automatic"
    return f"{colorizer.describe()}; {hints}"


def hint_rows(hints: list) -> list[list]:
    from gan_colorizer.hints import ab_to_hex
    return [[i, round(h.x), round(h.y), ab_to_hex(h.ab), h.radius] for i, h in enumerate(hints, 1)]


def marked(photo, hints: list):
    """The photo with a ring in each hint's colour where it was placed (what the person clicked)."""
    from PIL import ImageDraw

    from gan_colorizer.data.images import to_rgb8
    from gan_colorizer.hints import ab_to_hex
    shown = to_rgb8(photo)  # any mode (16-bit gray, CMYK...) as the page shows it
    shown = photo.copy() if shown is photo else shown  # an RGB photo comes back as it is: the dots go on a copy
    draw = ImageDraw.Draw(shown)
    r = max(4, round(min(shown.size) / 80))
    for h in hints:
        box = (h.x - r, h.y - r, h.x + r, h.y + r)
        draw.ellipse(box, fill=ab_to_hex(h.ab, light=60.0), outline=MARK, width=max(1, r // 3))
    return shown


def picked_hint(x: float, y: float, colour: str, radius: int, proposed=None):
    """A Hint at the click: the picker's colour, or the result's own colour there (`proposed`, an RGB image)."""
    from gan_colorizer.hints import Hint, ab_of_rgb, parse_color
    ab = ab_of_rgb(proposed.convert("RGB").getpixel((int(x), int(y)))) if proposed is not None else parse_color(colour)
    return Hint(float(x), float(y), ab, int(radius))


def build(models: dict, first: str | None = None):
    """The page: `models` maps each offered name to a Colorizer, or is a loader (name -> Colorizer) with its names
    in `first`'s list. Returns the gradio Blocks (not launched)."""
    import gradio as gr

    from gan_colorizer.app.photos import Album, downloads, render, zip_all
    from gan_colorizer.data.images import UnreadableImage, open_image, to_rgb8
    from gan_colorizer.hints import RADIUS, ab_to_hex, parse
    load = models.__getitem__ if isinstance(models, dict) else models
    names = list(models) if isinstance(models, dict) else list(first)
    root = Path(tempfile.mkdtemp(prefix="gan-colorizer-app-"))
    atexit.register(shutil.rmtree, root, True)  # the downloads live as long as the server
    theme = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],  # no Google fonts: offline
                              font_mono=["ui-monospace", "monospace"])

    def colorizer(name: str):
        """The chosen model; one that fails to load (weights not cached, a bad file) is its one line on the page."""
        try:
            return load(name)
        except UserError as e:
            raise gr.Error(str(e), print_exception=False) from None

    with gr.Blocks(title="gan_colorizer", analytics_enabled=False) as page:
        album = gr.State(Album())  # this session's open photos (gradio copies the value for each session)
        gr.Markdown("### gan_colorizer: open photos, click on one to give a colour there")
        with gr.Row():
            model = gr.Dropdown(names, value=names[0], label="model")
            engine = gr.Markdown(engine_line(load(names[0])), elem_id="engine")
        with gr.Row(equal_height=True):
            opener = gr.UploadButton("open photos", file_count="multiple", file_types=["image"], elem_id="open",
                                     scale=0, min_width=140)
            strip = gr.Gallery(label="open photos: click one to work on it", columns=8, fit_columns=False, height=170,
                               elem_id="photos", allow_preview=False, interactive=False, object_fit="contain",
                               format="png", buttons=[])
        with gr.Row():
            photo = gr.Image(type="filepath", label="photo (click to place a hint)", elem_id="photo",
                             sources=["upload"])
            result = gr.Image(type="pil", label="colorized", elem_id="result", interactive=False, format="png")
        with gr.Row():
            colour = gr.ColorPicker(PICKED, label="hint colour", elem_id="colour")
            proposed = gr.Checkbox(False, label="take the colour the model proposes at the click")
            radius = gr.Slider(0, 16, RADIUS, step=1, label="hint radius (render pixels)")
            mode = gr.Radio(["add", "move selected"], value="add", label="a click")
        with gr.Row():
            table = gr.Dataframe(headers=["#", "x", "y", "colour", "radius"], label="hints (click a row to select it)",
                                 interactive=False, elem_id="hints")
            with gr.Column():
                selected = gr.Number(0, precision=0, label="selected hint (#)", elem_id="selected")
                remove = gr.Button("remove selected")
                clear = gr.Button("remove all")
        with gr.Row():
            temperature = gr.Slider(-30, 30, 0, step=1, label="temperature (b shift)")
            saturation = gr.Slider(0, 2, 1, step=0.05, label="saturation")
            hue = gr.Slider(-180, 180, 0, step=1, label="hue (degrees)")
        before_after = gr.ImageSlider(label="before / after", type="pil", interactive=False)
        with gr.Row():
            files = gr.File(label="downloads: this photo's full-resolution result and hints (colorize.py --hints)",
                            file_count="multiple", elem_id="downloads", scale=2)
            with gr.Column():
                zip_button = gr.Button("every open photo in one zip", elem_id="zip-all")
                zipped = gr.File(label="all results and hints", elem_id="zip")
        hints_json = gr.Textbox(visible=False)  # the API's way in: a hints file's text (see `colorize` below)
        controls = [temperature, saturation, hue]

        def show(state, name, t, s, h):
            """The current photo with its hints drawn on, its result (made once per model, hints and controls),
            before / after, its downloads and its hints table."""
            p = state.photo
            if p is None:
                return None, None, None, None, []
            out = p.result(colorizer(name), name, (t, s, h))
            return marked(p.image, p.hints), out, (to_rgb8(p.image), out), \
                downloads(p, out, state.downloads_folder(root)), hint_rows(p.hints)

        refresh = dict(fn=show, inputs=[album, model, *controls], outputs=[photo, result, before_after, files, table])

        def listed(state):
            return state, gr.Gallery(state.thumbnails(), selected_index=state.current if state.photos else None), 0

        def opened(state, paths):
            first = len(state.photos)  # the first of those opened now becomes current
            for path in [paths] if isinstance(paths, str) else paths or []:
                try:
                    state.add(Path(path).stem, open_image(path))
                except UnreadableImage as e:  # the others open; this one says why it did not
                    gr.Warning(f"{Path(path).name}: {e.reason}")
            state.select(first)
            return listed(state)

        def closed(state):
            state.close_current()
            return listed(state)

        def switched(state, evt: gr.SelectData):
            state.select(evt.index)
            return state, 0  # no hint of this photo selected

        def clicked(state, evt: gr.SelectData, picked, take, r, how, which, name):
            """A hint at the click on the current photo: added, or moved there (the selected one). The proposed colour
            is read from the result without the mood controls, which apply after the hints."""
            p = state.photo
            if p is None:
                return state, gr.skip()
            x, y = evt.index
            new = picked_hint(x, y, picked, r, p.result(colorizer(name), name) if take else None)
            p.place(new, int(which or 0) if how == "move selected" else 0)
            return state, ab_to_hex(new.ab) if take else gr.skip()

        def row_number(evt: gr.SelectData) -> int:
            return evt.index[0] + 1  # the hint's number, to remove it or move it

        def edited(state, number=None):
            if state.photo is not None:
                state.photo.remove(number)
            return state

        listing = [album, strip, selected]
        opener.upload(opened, [album, opener], listing).then(**refresh)
        photo.upload(opened, [album, photo], listing).then(**refresh)
        photo.clear(closed, album, listing).then(**refresh)
        strip.select(switched, album, [album, selected]).then(**refresh)
        photo.select(clicked, [album, colour, proposed, radius, mode, selected, model], [album, colour]) \
            .then(**refresh)
        table.select(row_number, None, selected)
        remove.click(lambda state, i: edited(state, int(i or 0)), [album, selected], album).then(**refresh)
        clear.click(edited, album, album).then(**refresh)
        for control in controls:
            control.release(**refresh)
        model.change(lambda name: engine_line(colorizer(name)), model, engine).success(**refresh)
        zip_button.click(lambda state, name, *c: zip_all(state, colorizer(name), name, c, state.downloads_folder(root))
                         if state.photos else None, [album, model, *controls], zipped)

        def colorize(image, text, t, s, h, name):
            """The API: a photo, a hints file's JSON text ('' for none), the mood controls and a model -> the
            colorized photo. A mistake is the one line colorize.py gives, as the caller's error (gr.Error reaches
            a client whatever show_error says)."""
            try:
                try:
                    given = parse(json.loads(text), "hints") if text.strip() else []
                except json.JSONDecodeError as e:
                    raise UserError(f"hints: not JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
                return render(load(name), image, given, t, s, h)
            except UserError as e:
                raise gr.Error(str(e), print_exception=False) from None
        gr.Button(visible=False).click(colorize, [photo, hints_json, *controls, model], result, api_name="colorize")
    page.theme_for_launch = theme
    return page


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def serve(page, port: int = 7860, block: bool = True, announce=None):
    """Launch on 127.0.0.1 only, no share link (port 0: a free one); announce(url) once it listens, then (block)
    serve until stopped; returns the page's local URL."""
    try:
        page.launch(server_name=LOOPBACK, server_port=port or free_port(), share=False, prevent_thread_lock=True,
                    inbrowser=False, quiet=True, theme=page.theme_for_launch)
    except OSError as e:
        raise UserError(f"--port {port}: cannot serve on {LOOPBACK} ({e.strerror or e})") from None
    if announce is not None:
        announce(page.local_url)
    if block:
        page.block_thread()
    return page.local_url


def check_names(names: list[str]) -> None:
    """Each offered model is a file or a published model's name: a typo is one line at start, not when chosen."""
    for name in names:
        if not Path(name).exists():
            if Path(name).suffix.lower() in (".onnx", ".pt", ".pth"):
                raise UserError(f"--checkpoint {name}: no such file")
            from gan_colorizer.models import registry
            try:
                registry.find(name)
            except UserError as e:
                raise UserError(f"--checkpoint {e}") from None


def offered(checkpoints: list[str]) -> list[str]:
    """The --checkpoint models, then every published model whose weights are cached (they load offline)."""
    try:
        from gan_colorizer.models import registry
    except ImportError:  # a colorizing-only install, without torch: its .onnx models alone
        return list(checkpoints)
    return list(checkpoints) + [n for n in registry.PUBLISHED if n not in checkpoints and registry.cached(n)]


def build_parser():
    from gan_colorizer.options import tool_parser
    return tool_parser(AppOptions, __doc__, prog="gan-colorizer-app")


def main(argv=None) -> int:
    from gan_colorizer.console import run_command, setup_logging
    from gan_colorizer.options import parse_options
    args = parse_options(build_parser(), AppOptions, argv)
    setup_logging()

    def action():
        try:
            import gradio  # noqa: F401
        except ImportError:
            raise UserError("the app needs gradio: pip install 'gan_colorizer[app]'") from None
        check_names(args.checkpoints)
        load = model_loader(args.image_size, args.device, args.amp)
        page = build(load, offered(args.checkpoints))
        serve(page, args.port, announce=lambda url: print(f"serving on {url} (Ctrl-C stops)", flush=True))
    return run_command(action)
