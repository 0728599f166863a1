"""The onnx-int8 engine's models: static int8 quantization of an fp32 export, calibrated on photos like those to be
colorized, and the check that refuses a model whose colours moved too far from fp32 on those photos (a calibration
set of one flat photo moved them by 22-41 Lab units on others, with no sign of it)."""
from __future__ import annotations

import contextlib
import itertools
import logging
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gan_colorizer.color_numpy import AB_SCALE
from gan_colorizer.console import Progress
from gan_colorizer.cpu import has_vnni
from gan_colorizer.errors import UserError, reason

log = logging.getLogger(__name__)
METHODS = {"minmax": lambda m: m.MinMax, "entropy": lambda m: m.Entropy, "percentile": lambda m: m.Percentile}
KEEP_FLOAT = ()  # node-name prefixes left in fp32 by default: see docs/colorizing.md (int8) for the measurement
WEIGHT_BITS = ("auto", "7", "8")
SPREAD_NODES = "/hint_spread/"  # hints.Spread in an export: the names torch gives its nodes (module path)
# How far int8 may move ab from fp32 (Lab units, export_int8): on average over the photos, and on the worst photo at
# WORST_FACTOR times that. Calibrated on 1 to 64 ordinary photos, a trained model moved them by 1.2-1.3 (worst 1.6),
# random weights by 4.8-5.2 (worst 5.8); calibrated on one flat, tiny or dark image, ordinary photos moved by 15-31
# (trained) and 29-69 (random). 8 sits between the two (bench/int8_calibration.py).
MAX_CHANGE = 8.0
WORST_FACTOR = 3.0


def calibration_inputs(folder, render_size: int, multiple: int, count: int, hints: bool = False):
    """(photos expected, iterator of (path, feeds)) for up to `count` readable photos of the folder, feeds being the
    network's inputs as colorize.py makes them: {"gray_l": render-size (1, 1, h, w) numpy array} and for a hint model
    (`hints`) "hints": (1, 3, h, w) simulated from the photo's colours as training simulates them (hint_feed). The
    first one is read now: a folder without photos, or with none readable, is refused before any export; each
    unreadable photo is one warning line naming it and the reason."""
    from gan_colorizer.data.images import list_images
    paths = list_images(folder) if Path(folder).is_dir() else []
    if not paths:
        raise UserError(f"--calibration {folder}: no photos there (a folder of the photos you will colorize)")
    readable = ((p, x) for p, x in ((p, _calibration_input(p, render_size, multiple, hints)) for p in paths)
                if x is not None)
    first = next(readable, None)
    if first is None:
        raise UserError(f"--calibration {folder}: none of its {len(paths)} photos is readable (each one's reason is "
                        f"above)")
    return min(count, len(paths)), itertools.islice(itertools.chain([first], readable), count)


def _calibration_input(path, render_size: int, multiple: int, hints: bool = False):
    """One photo's feeds (render-size gray_l, and with `hints` its hint channels), or None (and a warning line) when
    it cannot be read."""
    import torch

    from gan_colorizer.colorize.inference import downsample_l, full_res_l, render_shape
    from gan_colorizer.data.images import UnreadableImage, open_image, to_rgb8
    try:
        pixels = np.array(to_rgb8(open_image(path)))  # alpha on white: what the network sees (api.prepare)
    except UnreadableImage as e:
        log.warning("warning: skipped calibration photo %s", e)  # 'PATH: reason'
        return None
    except (OSError, ValueError) as e:
        log.warning("warning: skipped calibration photo %s: %s", path, reason(e))
        return None
    pixels = torch.from_numpy(pixels).permute(2, 0, 1)[None]
    gray_l = full_res_l(pixels)
    shape = render_shape(*gray_l.shape[-2:], render_size, multiple)
    feeds = {"gray_l": downsample_l(gray_l, shape).numpy()}
    if hints:
        feeds["hints"] = hint_feed(pixels, shape, zlib.crc32(Path(path).name.encode()))
    return feeds


def hint_feed(pixels, shape: tuple[int, int], seed: int) -> np.ndarray:
    """Hint channels (1, 3, h, w) for a calibration photo (uint8 (1, 3, H, W) tensor) at the render shape: points
    simulated from its own ab as training simulates them (hints.sample: geometric count, 1-9 px squares), seeded, so
    int8's ranges cover the hint channels a person's clicks give (a gray photo's hints are gray, its mask is not)."""
    import torch
    import torch.nn.functional as F

    from gan_colorizer.color import rgb_to_lab
    from gan_colorizer.hints import model_input, sample
    small = F.interpolate(pixels.float() / 255, size=shape, mode="bilinear", align_corners=False, antialias=True)
    real_ab = rgb_to_lab(small)[:, 1:]
    return model_input(*sample(real_ab, generator=torch.Generator().manual_seed(seed))).numpy()


def probe_inputs(render_size: int, multiple: int, hints: bool = False) -> list:
    """(path, feeds) of the embedded sample photos (ordinary photos; [] when the packages that ship them are
    missing): a calibration set that does not represent photos (one flat photo) passes a check on itself alone."""
    from gan_colorizer.data.dataset import sample_photos
    try:
        train, val = sample_photos()
    except UserError:
        return []
    return [(p, x) for p in train + val if (x := _calibration_input(p, render_size, multiple, hints)) is not None]


@dataclass
class Change:
    """How far int8 moved ab from fp32 on some photos, in Lab units: per pixel the distance in the ab plane,
    averaged per photo; `mean` over the photos, `worst` the largest photo's, `worst_path` which photo that was."""
    what: str  # 'calibration photos'
    photos: int
    mean: float
    worst: float
    worst_path: Path

    def text(self) -> str:
        return f"{self.photos} {self.what}: mean {self.mean:.2f}, worst {self.worst:.2f} ({self.worst_path.name})"


def int8_change(fp32_path, int8_path, inputs, what: str) -> Change:
    """Change of the int8 model against the fp32 one on (path, feeds) inputs, both run as the engines run them;
    a model that fails or gives NaN on one of them is refused (UserError naming the photo)."""
    from gan_colorizer.colorize.engines import OnnxNetwork, OnnxRunError
    fp32, int8 = OnnxNetwork(fp32_path), OnnxNetwork(int8_path, note_bits=False)  # its bits were chosen just now
    per_photo = []
    with Progress(len(inputs), f"int8 check ({what})", "img") as progress:
        for path, feeds in inputs:
            try:
                difference = (int8(**feeds) - fp32(**feeds)) * AB_SCALE
            except OnnxRunError as e:
                raise UserError(f"{path}: the int8 model fails on it ({e}); nothing written") from None
            per_photo.append(float(np.sqrt((difference ** 2).sum(axis=1)).mean()))
            progress.update()
    worst = int(np.argmax(per_photo))
    return Change(what, len(per_photo), float(np.mean(per_photo)), per_photo[worst], Path(inputs[worst][0]))


def check_change(change: Change, max_change: float, folder) -> None:
    """Refuse (UserError, one line with the figures and the limits) an int8 model past max_change (0: no check)."""
    worst_limit = WORST_FACTOR * max_change
    if max_change and (change.mean > max_change or change.worst > worst_limit):
        raise UserError(f"--calibration {folder}: int8 moved ab from fp32 by {change.mean:.2f} Lab units on average "
                        f"over {change.photos} {change.what} (limit {max_change:g}) and by {change.worst:.2f} on the "
                        f"worst, {change.worst_path.name} (limit {worst_limit:g}): calibrate on more photos like those "
                        f"you will colorize (--max-change sets the limit); nothing written")


def export_int8(fp32_path, out, inputs, total: int | None, args, multiple: int) -> tuple[Path, list[Change]]:
    """--int8: quantize the fp32 export (beside it), calibrated on `inputs` (calibration_inputs), check it against
    fp32 on the calibration photos and on the embedded sample photos, and only then write it to `out` (atomically),
    its metadata saying how far it moved. args: the export's options (calibration_method, keep_float, max_change,
    calibration, image_size, weight_bits)."""
    import shutil

    from gan_colorizer.atomic import replacing
    from gan_colorizer.colorize.onnx_graph import add_metadata
    int8_path, calibrated = quantize_int8(fp32_path, Path(fp32_path).with_name("int8.onnx"), inputs, total,
                                          args.calibration_method, args.keep_float, weight_bits(args.weight_bits))
    changes = [int8_change(fp32_path, int8_path, calibrated, "calibration photos")]
    probe = probe_inputs(args.image_size, multiple, "hints" in calibrated[0][1])
    if probe:
        changes.append(int8_change(fp32_path, int8_path, probe, "embedded sample photos"))
    for change in changes:
        check_change(change, args.max_change, args.calibration)
    add_metadata(int8_path, {"int8_change": f"ab moved from fp32, Lab units: {'; '.join(c.text() for c in changes)}"})
    with replacing(out) as tmp:
        shutil.copyfile(int8_path, tmp)
    return Path(out), changes


def weight_bits(choice: str = "auto") -> int:
    """--weight-bits: 7 or 8 as given; auto: 8 on a CPU with VNNI, 7 without (or where unknown). Without VNNI
    onnxruntime sums uint8 x int8 pairs in int16, which saturates with 8-bit weights: there int8 moved ab 8.25 Lab
    units on tests/test_engines.py's model (limit 8); with VNNI, 8-bit weights moved bench/hint_update.py's hint
    U-Net 0.71 (CIEDE2000 mean against torch fp32) where 7-bit ones moved it 1.11, past the limit of 1.0."""
    return int(choice) if choice != "auto" else 8 if has_vnni() else 7  # unknown (no /proc/cpuinfo): 7


def quantize_int8(fp32_path, out_path, inputs, total: int | None = None, method: str = "minmax",
                  keep_float=(), bits: int = 7) -> tuple[Path, list]:
    """Static int8 (QDQ, per-channel int8 weights of `bits` bits: 7 or 8, uint8 activations) of an fp32 export,
    calibrated on `inputs` ((path, feeds) pairs, `total` of them expected), written atomically to out_path.
    keep_float: node names (or name prefixes) left in fp32. The metadata says how the model was quantized. Returns
    the path and the pairs used."""
    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from gan_colorizer.colorize.onnx_graph import add_metadata, widen_last_cross
    seen = []

    class Reader(CalibrationDataReader):
        def __init__(self, progress: Progress):
            self.it, self.progress = iter(inputs), progress

        def get_next(self):
            item = next(self.it, None)
            if item is None:
                return None
            seen.append(item)
            self.progress.update()  # photos handed to the calibrator
            return item[1]

    out_path = Path(out_path)
    tmp = out_path.with_name(f".{out_path.name}.{os.getpid()}.part")
    try:
        metadata = {p.key: p.value for p in onnx.load(str(fp32_path)).metadata_props}  # the tools may drop it
        # folds constants (the decoder's biases are computed at run time otherwise) and fuses BatchNorm into Conv
        quant_pre_process(str(fp32_path), str(tmp), skip_symbolic_shape=True)  # symbolic: incomplete on this graph
        model = onnx.load(str(tmp))
        widened = widen_last_cross(model)
        onnx.save(model, str(tmp))
        names = [n.name for n in model.graph.node]
        excluded = [n for n in names if any(n == k or n.startswith(k) for k in keep_float)]
        spread = [n for n in names if n.startswith(SPREAD_NODES) and n not in excluded]  # ratios of sums: in int8
        # a hinted ab divided by a small hinted share moved ab 12 Lab units on tests/test_engines.py's hint model
        with Progress(total, "calibrate", "img") as progress, _root_logger_quiet():
            # uint8 activations: with int8 ones (the tools' default) onnxruntime ran 13 of 38 convolutions in fp32.
            # 7-bit weights (reduce_range) for a CPU without VNNI: see weight_bits
            quantize_static(str(tmp), str(tmp), Reader(progress), quant_format=QuantFormat.QDQ, per_channel=True,
                            reduce_range=bits == 7,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            calibrate_method=METHODS[method](CalibrationMethod), nodes_to_exclude=excluded + spread,
                            extra_options={"TensorQuantOverrides": hint_ranges(model)})
        kept = (f", fp32 kept: {' '.join(excluded)}" if excluded else "") + (", hint spread in fp32" if spread else "")
        wide = f", last cross widened by {widened} zero-weight channels" if widened else ""
        add_metadata(tmp, {**metadata, "quantization": f"int8 static QDQ, per-channel {bits}-bit int8 weights, uint8 "
                                                       f"activations, {method} calibration{wide}{kept}"})
        os.replace(tmp, out_path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return out_path, seen


def hint_ranges(model) -> dict:
    """A hint model's input ranges as quantize_static's overrides: the hints input, and each Concat of graph inputs
    and the hints' spread alone (hints.with_hints, hints.Spread), span every hint a person may give (ab within
    -128..128), not only the calibration's simulated ones: a click of a colour none of the calibration photos held
    would be clipped there (a hint model of random weights calibrated on 4 made-up photos clipped ab / 110 below
    -0.63: at a hint of (-0.2, -0.9) int8 moved ab from fp32 by 4.6 Lab units, 2.5 with these ranges; by 1.4 at a
    gray hint, either way)."""
    inputs = {i.name for i in model.graph.input}
    if "hints" not in inputs:
        return {}
    bound = np.float32(128 / AB_SCALE)  # also covers gray_l's -1..1 and the spread's hinted shares, 0..1
    sources = inputs | {out for n in model.graph.node if n.name.startswith(SPREAD_NODES) for out in n.output}
    joined = [n.output[0] for n in model.graph.node if n.op_type == "Concat" and set(n.input) <= sources]
    return {name: [{"rmin": -bound, "rmax": bound}] for name in ["hints", *joined]}


@contextlib.contextmanager
def _root_logger_quiet():
    """The quantization tools warn per node (a BatchNorm's weight has no channel axis 1...) through logging.warning,
    which also gives the root logger a handler of its own: our lines would then print twice. Both undone on exit."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)
        root.handlers[:] = handlers
