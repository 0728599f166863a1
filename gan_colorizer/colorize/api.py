"""The Python API: `Colorizer.from_checkpoint(path).colorize(image)` -> a colorized PIL image of the same size.

Any PIL mode goes in (gray, gray+alpha, RGBA, palette, CMYK, 16-bit...). A colour photo is taken to gray first:
only its L is used. Alpha is kept (RGBA out) unless keep_alpha=False, which composites on white as training does.
Output is 8-bit sRGB.
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from gan_colorizer.colorize import engines
from gan_colorizer.colorize.inference_numpy import NumpyPipeline, render_shape
from gan_colorizer.errors import UserError
from gan_colorizer.data.images import UnreadableImage, open_image, to_rgb8

ALPHA_MODES = ("LA", "La", "PA", "RGBA", "RGBa")


@dataclass
class Prepared:
    """One photo decoded for colorization: the pixels whose L the output keeps, and what else travels with them."""

    pixels: np.ndarray  # (H, W, C) uint8 sRGB; C = 1 for gray photos
    alpha: Image.Image | None = None  # kept alpha channel, re-attached to the output
    net_pixels: np.ndarray | None = None  # what the network sees when it differs (alpha composited on white)
    exif: bytes | None = None  # metadata carried to the output (dates, camera...)


def has_alpha(img: Image.Image) -> bool:
    return img.mode in ALPHA_MODES or (img.mode == "P" and "transparency" in img.info)


def _gray8(img: Image.Image) -> Image.Image:
    """Single-channel modes -> 8-bit gray, the levels unchanged for 8-bit (16-bit is scaled down to 8)."""
    return img if img.mode == "L" else img.convert("L") if img.mode == "1" else to_rgb8(img).getchannel("R")


def _pixels(img: Image.Image) -> np.ndarray:
    arr = np.asarray(img)
    return arr[..., None] if arr.ndim == 2 else arr


def prepare(img: Image.Image, keep_alpha: bool = True) -> Prepared:
    """Any PIL mode -> Prepared. Colour photos keep 3 channels (their L is computed in Lab), gray ones 1."""
    exif = img.info.get("exif")
    try:
        if keep_alpha and has_alpha(img):
            rgba = img.convert("RGBA")  # straight (not premultiplied) colour under the alpha
            rgb = rgba.convert("RGB")
            if img.info.get("icc_profile"):
                rgb.info["icc_profile"] = img.info["icc_profile"]
            return Prepared(_pixels(to_rgb8(rgb)), rgba.getchannel("A"), _pixels(to_rgb8(img)), exif)
        if img.mode in ("1", "L", "I", "F") or img.mode.startswith("I;16"):
            return Prepared(_pixels(_gray8(img)), exif=exif)
        return Prepared(_pixels(to_rgb8(img)), exif=exif)
    except (OSError, ValueError) as e:
        raise UnreadableImage(img.filename if hasattr(img, "filename") else "image",
                              f"cannot convert mode {img.mode} ({e})") from None


def check_controls(temperature: float, saturation: float, hue: float) -> None:
    for name, value in (("temperature", temperature), ("saturation", saturation), ("hue", hue)):
        if not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number, got {value}")
    if saturation < 0:
        raise ValueError(f"saturation must be >= 0 (1 = as predicted, 0 = gray), got {saturation}")


class Colorizer:
    """A generator with its runtime and render size; colorizes PIL images or files at their full resolution.

    generator: a torch module (engine torch: torch maths on its device) or an engines.OnnxNetwork (onnx, onnx-int8:
    numpy maths on the CPU, no torch imported). The steps around the network are the same code for both."""

    def __init__(self, generator, runtime=None, render_size: int = 256, decode: str | None = None,
                 annealed_t: float | None = None):
        """decode / annealed_t: how a classification generator turns its distribution into ab (see --decode)."""
        if render_size < 1:
            raise ValueError(f"render_size must be >= 1, got {render_size}")
        self.render_size, self.published = render_size, None
        # trained with --hints: models say so, and so does an ONNX export of one (its hints input)
        self.takes_hints = bool(getattr(generator, "takes_hints", False))
        if isinstance(generator, engines.OnnxNetwork):  # onnxruntime on the CPU, fp32 in and out
            self.runtime, self.generator, self.pipeline = None, generator, NumpyPipeline(generator)
            self.multiple, self.decoding, self.engine = generator.multiple, generator.decoding, \
                "onnx-int8" if generator.int8 else "onnx"
            return
        from gan_colorizer.colorize.inference import TorchPipeline, size_multiple
        from gan_colorizer.models.classifier import set_decoding
        from gan_colorizer.runtime import Runtime
        self.runtime = runtime or Runtime("cpu", "off", channels_last=False)
        registry = sys.modules.get("gan_colorizer.models.registry")  # a registry.Loaded exists only once it is imported
        if registry is not None and isinstance(generator, registry.Loaded):  # a published model (from_pretrained)
            from gan_colorizer.colorize.published import PublishedPipeline
            self.pipeline = PublishedPipeline(generator, self.runtime)
            self.published, self.generator, self.render_size = generator, self.pipeline.generator, \
                generator.model.render_size
            self.takes_hints = bool(getattr(generator.network, "takes_hints", False))  # SIGGRAPH17 does
            self.multiple, self.decoding, self.engine = None, None, "torch"
            return
        self.generator = self.runtime.place(generator).eval()
        self.pipeline = TorchPipeline(self.generator, self.runtime)
        self.multiple = size_multiple(generator)
        self.decoding = set_decoding(generator, decode, annealed_t)  # None for a regression generator
        self.engine = "torch"

    @classmethod
    def from_checkpoint(cls, path, device: str = "auto", render_size: int = 256, amp: str = "auto",
                        channels_last: bool = True, weights: str = "auto", decode: str | None = None,
                        annealed_t: float | None = None, engine: str | None = None,
                        download: bool = True) -> "Colorizer":
        """Rebuild the generator from any stage-1 or stage-2 checkpoint (its config travels inside), or load an
        exported .onnx model. engine: torch, onnx or onnx-int8 (engines.py); None = the file's own. A published
        model's name goes to from_pretrained (download: fetch its weights when not cached).

        weights: auto = the EMA copy when the run kept one (--ema-decay), else the trained weights; ema or raw to
        insist.
        """
        if Path(path).suffix.lower() != ".onnx" and not Path(path).exists():  # a published model's name, or an error
            return cls.from_pretrained(str(path), device, engine=engine, download=download)
        if Path(path).suffix.lower() == ".onnx":  # loaded once, with neither torch nor fastai
            _cpu_only(engine or "onnx", device)
            return cls(engines.load_onnx(path, decode, annealed_t, engine=engine), render_size=render_size)
        engine = engines.engine_for(path, engine)
        _cpu_only(engine, device)
        _needs_torch(path)
        from gan_colorizer.models import registry
        from gan_colorizer.models.classifier import set_decoding
        from gan_colorizer.runtime import Runtime
        loaded = registry.load_network(path, "cpu", weights)
        if isinstance(loaded, registry.Loaded):  # a published model's own file: its parameters said which
            _torch_only(engine, loaded.model.name)
            return cls(loaded, Runtime(device, "off", channels_last=False))
        generator, cfg, _ = loaded
        if engine == "onnx":
            decoding = set_decoding(generator, decode, annealed_t)
            from gan_colorizer.colorize.onnx import onnx_from_generator
            return cls(onnx_from_generator(generator, cfg, decoding), render_size=render_size)
        return cls(generator, Runtime(device, amp, channels_last), render_size, decode, annealed_t)

    @classmethod
    def from_pretrained(cls, name, device: str = "auto", engine: str | None = None,
                        download: bool = True) -> "Colorizer":
        """A published colorizer by name (zhang-eccv16, ddcolor-tiny, deoldify-artistic...: models/registry.py), its
        authors' weights fetched as their libraries fetch them (torch.hub's or huggingface_hub's cache); it runs at
        its own render size, in fp32. A path that exists is read as from_checkpoint reads it."""
        if Path(name).exists():
            return cls.from_checkpoint(name, device, engine=engine)
        _needs_torch(name)
        from gan_colorizer.models import registry
        from gan_colorizer.runtime import Runtime
        model = registry.find(str(name))
        _torch_only(engine, model.name)
        return cls(registry.load(model.name, download), Runtime(device, "off", channels_last=False))

    @property
    def device(self):
        """The torch engine's torch.device; "cpu" for the ONNX engines."""
        return self.runtime.device if self.runtime is not None else "cpu"

    def describe(self) -> str:
        """What runs the network, for the line a tool prints when it starts."""
        if self.published is not None:
            return f"{self.published.model.name} in fp32 on {self.device}, weights {self.published.source}"
        if self.engine != "torch":
            return f"engine {self.engine}, onnxruntime on the CPU"
        return f"device {self.device}, amp {self.runtime.amp_name}"

    def render_shape(self, height: int, width: int) -> tuple[int, int]:
        """The shape the network sees for a photo of height x width."""
        if self.published is not None:
            return self.pipeline.render_shape(height, width)
        return render_shape(height, width, self.render_size, self.multiple)

    def colorize(self, image, temperature: float = 0.0, saturation: float = 1.0, hue: float = 0.0,
                 keep_alpha: bool = True, hints=None) -> Image.Image:
        """A PIL image (taken as its pixels are) or a file path (EXIF orientation applied) -> colorized PIL image.

        hints: colours at points of the photo, for a model trained with --hints: hints.Hint objects or dicts as a
        hints file holds them ({"x": 120, "y": 80, "color": "#c83c28"}: docs/hints.md).
        temperature shifts b (ab units, > 0 warmer), saturation scales ab, hue rotates ab by degrees (after the
        hints). The result is RGB, or RGBA when the input has alpha and keep_alpha is set; same width and height.
        """
        if isinstance(image, (str, Path)):
            image = open_image(image)
        return self.colorize_prepared([prepare(image, keep_alpha)], temperature, saturation, hue, hints)[0]

    def colorize_prepared(self, batch: list[Prepared], temperature: float = 0.0, saturation: float = 1.0,
                          hue: float = 0.0, hints=None) -> list[Image.Image]:
        """Colorize prepared photos; those with the same render shape share one network forward. hints: the same
        points for every photo, in its own pixels; a UserError when the model takes none or one is outside."""
        check_controls(temperature, saturation, hue)
        given = self.checked_hints(hints, batch) if hints else None
        with self.pipeline.context():
            return self._colorize(batch, {"temperature": temperature, "saturation": saturation, "hue": hue}, given)

    def checked_hints(self, hints, batch: list[Prepared], source: str = "hints") -> list:
        """The hints as hints.Hint objects, inside every photo of the batch, for a model that reads them; else a
        UserError."""
        self.check_takes_hints(source)
        from gan_colorizer.hints import check_inside, parse  # torch: imported only for a (torch) hint model
        given = parse(list(hints), source)
        for item in batch:
            check_inside(given, item.pixels.shape[1], item.pixels.shape[0], source)
        return given

    def check_takes_hints(self, source: str = "hints") -> None:
        """A UserError, naming `source`, unless the network reads hints (and torch, which makes their maps, is
        installed: a colorizing-only install runs the ONNX engines without it)."""
        if not self.takes_hints:
            why = ("the model takes no hints: train one with --hints (docs/hints.md)" if self.engine == "torch" else
                   f"the {self.engine} model takes no hints (its export has no hints input): export a model "
                   f"trained with --hints (docs/hints.md)")
            raise UserError(f"{source}: {why}")
        try:
            import torch  # noqa: F401
        except ImportError:
            raise UserError(f"{source}: hints need torch (gan_colorizer/hints.py makes their maps with it), which "
                            f"this install lacks: install gan_colorizer with its dependencies") from None

    def hint_input(self, given: list, batch: list[Prepared], shape: tuple[int, int]):
        """The hint channels for these photos at the render shape (hints.model_input's layout): a torch tensor on the
        device, or a numpy array for the ONNX engines."""
        import torch

        from gan_colorizer.hints import maps, model_input
        inputs = torch.cat([model_input(*maps(given, item.pixels.shape[:2], shape)) for item in batch])
        return inputs.numpy() if self.runtime is None else inputs.to(self.device)

    def _colorize(self, batch: list[Prepared], controls: dict, hints: list | None = None) -> list[Image.Image]:
        pipeline = self.pipeline
        gray_l = [pipeline.full_res_l(item.pixels) for item in batch]
        groups: dict[tuple[int, int], list[int]] = {}
        for i, item in enumerate(batch):
            groups.setdefault(self.render_shape(*item.pixels.shape[:2]), []).append(i)
        small_ab = [None] * len(batch)
        for shape, members in groups.items():
            net_l = [gray_l[i] if batch[i].net_pixels is None else pipeline.full_res_l(batch[i].net_pixels)
                     for i in members]
            given = {} if hints is None else {"hints": self.hint_input(hints, [batch[i] for i in members], shape)}
            ab = pipeline.predict(pipeline.small_l(net_l, shape), **given, **controls)
            for j, i in enumerate(members):
                small_ab[i] = ab[j:j + 1]
        out = []
        for i, item in enumerate(batch):
            out.append(self._recombine(item, gray_l[i], small_ab[i]))
            gray_l[i] = None  # free each full-size L as soon as its output exists: lower peak memory
        return out

    def _recombine(self, item: Prepared, gray_l, small_ab) -> Image.Image:
        out = Image.new("RGB", (gray_l.shape[-1], gray_l.shape[-2]))
        for first, rows in self.pipeline.rgb8_rows(gray_l, small_ab):  # row by row: no full-size uint8 copy
            out.paste(Image.fromarray(rows, "RGB"), (0, first))
        if item.alpha is not None:
            out.putalpha(item.alpha)
        if item.exif:
            out.info["exif"] = item.exif
        return out


def _torch_only(engine: str | None, name: str) -> None:
    if engine not in (None, "torch"):
        raise UserError(f"--engine {engine}: {name} runs with torch only (ONNX export of the published models is not "
                        f"supported yet)")


def _cpu_only(engine: str, device: str) -> None:
    if engine != "torch" and device == "cuda":
        raise UserError(f"--engine {engine} runs on the CPU (onnxruntime): leave --device out, or --engine torch")


def _needs_torch(path) -> None:
    """A PyTorch checkpoint in a colorizing-only install (no torch): one line saying what to do instead."""
    try:
        import torch  # noqa: F401
    except ImportError:
        raise UserError(f"{path}: a PyTorch checkpoint needs torch, which this install lacks; colorize with a model "
                        f"exported to .onnx (docs/colorizing.md), or install gan_colorizer with its dependencies") \
            from None
