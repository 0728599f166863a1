"""visualize.py: what every stage of a trained generator makes of one photo, and how its colors differ from the truth."""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from gan_colorizer.ab_bins import DECODES
from gan_colorizer.checkpoint import load_generator
from gan_colorizer.color import AB_SCALE, model_to_lab, model_to_rgb, rgb_to_lab, rgb_to_model, to_uint8
from gan_colorizer.colorize.inference import render_shape, size_multiple
from gan_colorizer.console import run_command, setup_logging
from gan_colorizer.errors import UserError
from gan_colorizer.images import UnreadableImage, is_gray, load_rgb
from gan_colorizer.inspect.ab_histograms import ColorDistribution, distribution_figure
from gan_colorizer.inspect.class_views import (
    classifier,
    head_info,
    logits_of,
    pixel_figure,
    pixel_marks,
    prior_figure,
    top_bins,
)
from gan_colorizer.inspect.drawing import difference_maps, save_png
from gan_colorizer.inspect.features import (
    TOP_CHANNELS,
    ab_maps,
    activation_chart,
    capture,
    channel_means,
    feature_grid,
    select_stages,
    top_channels,
)
from gan_colorizer.options import REQUIRED, amp_opt, device_opt, opt, parse_options, tool_parser
from gan_colorizer.runtime import Runtime

DESCRIPTION = """Look inside a trained generator on one photo: feature maps of every encoder stage, the bottleneck and
every decoder stage; the predicted a and b maps; and, for a color photo, the difference maps and ab distributions
against the photo itself (its L is the input).

Writes into OUT: input.png, prediction.png, truth.png, ab_prediction.png, ab_truth.png, difference.png
(CIEDE2000, |delta a|, |delta b|), ab_distribution.png, and per layer layers/NN_NAME_channels.png (the most
active channels) and layers/NN_NAME_activations.png (every filter's mean activation); layers.json lists them.
A classification checkpoint (--head classification) also gets prior.png (its training set's color prior) and,
per --pixel X,Y, pixel_X_Y.png: that pixel's predicted distribution over the ab bins, as predicted (T = 1) and
annealed, with the truth, the decoded ab, the mode and the mean marked.

examples:
  python visualize.py --checkpoint checkpoints/coco-gan/best.pt --image photo.jpg --out runs/viz-photo
  python visualize.py --checkpoint best.pt --image photo.jpg --out /tmp/viz --layers bottleneck,decoder --top 9
  python visualize.py --checkpoint classes/best.pt --image photo.jpg --out /tmp/viz --pixel 120,80 --pixel 30,200"""


CLASSES = "classification checkpoints (--head classification)"  # a --help section


@dataclass
class VisualizeOptions:
    """Which checkpoint, photo and layers; the flags of visualize.py are these fields."""
    checkpoint: str = opt(REQUIRED, "a stage-1 or stage-2 checkpoint", metavar="PATH")
    image: str = opt(REQUIRED, "the photo (color or gray)", metavar="PATH")
    out: str = opt(REQUIRED, "output folder", metavar="DIR")
    image_size: int | None = opt(None, "short side the network sees, snapped to the sizes it accepts (default: its "
                                       "training size)", metavar="N", aliases=("--size",))
    layers: str | None = opt(None, "comma-separated stage names or groups (encoder, bottleneck, decoder, head); "
                                   "default: all", metavar="NAMES")
    top: int = opt(TOP_CHANNELS, "channels shown per layer", metavar="K")
    device: str = device_opt()
    amp: str = amp_opt("off", "; off here by default: the maps and figures of the fp32 network")
    pixel: list[str] | None = opt(None, "draw the predicted distribution over the ab bins of the photo's pixel X,Y "
                                        "(0-based, from the top left) into pixel_X_Y.png; repeat for several pixels",
                                  action="append", metavar="X,Y", group=CLASSES)
    decode: str | None = opt(None, "how the distribution becomes ab: annealed mean (the checkpoint's default), mode, "
                                   "or mean", choices=DECODES, group=CLASSES)
    annealed_t: float | None = opt(None, "temperature of the annealed mean (default: the checkpoint's --annealed-t)",
                                   metavar="T", group=CLASSES)


def build_parser() -> argparse.ArgumentParser:
    return tool_parser(VisualizeOptions, DESCRIPTION)


def parse_pixels(values, photo: Image.Image) -> list[tuple[int, int]]:
    """--pixel X,Y values as (x, y) inside the photo."""
    points = []
    for value in values or []:
        try:
            x, y = (int(t) for t in value.split(","))
        except ValueError:
            raise UserError(f"--pixel {value}: give X,Y in the photo's pixels, e.g. --pixel 120,80") from None
        if not (0 <= x < photo.width and 0 <= y < photo.height):
            raise UserError(f"--pixel {value}: outside the photo ({photo.width} x {photo.height} pixels)")
        points.append((x, y))
    return points


def read_photo(path) -> Image.Image:
    try:
        return load_rgb(path)
    except UnreadableImage as e:
        raise UserError(f"--image {e.path}: {e.reason}") from None


def network_input(img: Image.Image, size: int, multiple: int) -> tuple[torch.Tensor, bool]:
    """The photo resized (bicubic) to the network's input shape as uint8 (1, 3, H, W), and whether it is gray."""
    h, w = render_shape(img.height, img.width, size, multiple)
    pixels = torch.from_numpy(np.array(img.resize((w, h), Image.BICUBIC))).permute(2, 0, 1)[None]
    return pixels.contiguous(), is_gray(img)


def _layer_files(out: Path, outputs: dict, k: int) -> list[dict]:
    layers = []
    for i, (name, fmap) in enumerate(outputs.items()):
        stem = f"layers/{i:02d}_{name}"
        fmap = fmap[0]
        means = channel_means(fmap)
        title = f"{name}  {fmap.shape[0]} x {fmap.shape[1]} x {fmap.shape[2]}"
        save_png(feature_grid(fmap, title, k), out / f"{stem}_channels.png")
        save_png(activation_chart(fmap, name, k), out / f"{stem}_activations.png")
        top = top_channels(means, k)
        layers.append({"name": name, "shape": list(fmap.shape), "channels": f"{stem}_channels.png",
                       "activations": f"{stem}_activations.png", "top_channels": top,
                       "top_means": [round(float(means[c]), 6) for c in top], "mean": float(means.mean())})
    return layers


def visualize(args) -> dict:
    if args.top < 1:
        raise UserError("--top must be >= 1")
    if args.image_size is not None and args.image_size < 16:
        raise UserError(f"--image-size {args.image_size}: must be at least 16")
    if args.annealed_t is not None and args.annealed_t <= 0:
        raise UserError(f"--annealed-t {args.annealed_t}: must be > 0")
    photo = read_photo(args.image)  # before the model loads: a wrong path fails at once
    points = parse_pixels(args.pixel, photo)
    rt = Runtime(args.device, args.amp, channels_last=False)
    generator, cfg, ckpt = load_generator(args.checkpoint, rt.device)
    head = head_info(generator, ckpt, args.decode, args.annealed_t)
    if points and head["head"] != "classification":
        raise UserError(f"--pixel: {args.checkpoint} has a regression head (one ab per pixel, no distribution); "
                        f"--pixel needs a checkpoint trained with --head classification")
    names = [n.strip() for n in args.layers.split(",") if n.strip()] if args.layers else None
    chosen = select_stages(generator, names)
    pixels, gray = network_input(photo, args.image_size or cfg.data.image_size, size_multiple(generator))
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"--out {out}: cannot write there ({e.strerror or e})") from None
    gray_l, real_ab = rgb_to_model(pixels.to(rt.device))
    fake_ab, outputs = capture(generator, gray_l, chosen, rt)
    fake_rgb = to_uint8(model_to_rgb(gray_l, fake_ab))
    save_png(_hwc(to_uint8(model_to_rgb(gray_l, torch.zeros_like(fake_ab)))), out / "input.png")
    save_png(_hwc(fake_rgb), out / "prediction.png")
    save_png(ab_maps(fake_ab[0], "prediction"), out / "ab_prediction.png")
    if not gray:  # a gray photo has no truth to compare with
        compare_with_truth(out, pixels, gray_l, real_ab, fake_rgb)
    summary = {"checkpoint": str(args.checkpoint), "image": str(args.image), "input_size": list(pixels.shape[-2:]),
               "generator": cfg.model.generator, "gray_photo": gray, **head,
               "layers": _layer_files(out, outputs, args.top)}
    if head["head"] == "classification":
        prior_figure(generator, out / "prior.png", head.get("color_prior"))
        summary["pixels"] = pixel_files(out, generator, gray_l, None if gray else real_ab, fake_ab, points, photo, rt)
    (out / "layers.json").write_text(json.dumps(summary, indent=2))
    print(f"{len(summary['layers'])} layers of {args.checkpoint} on {args.image} "
          f"({pixels.shape[-1]}x{pixels.shape[-2]}) -> {out}")
    return summary


def pixel_files(out: Path, generator, gray_l, real_ab, fake_ab, points: list, photo: Image.Image,
                runtime=None) -> list[dict]:
    """pixel_X_Y.png for each --pixel point: the distribution at the network pixel the photo pixel falls in."""
    g = classifier(generator)
    logits = logits_of(generator, gray_l, runtime)[0]
    h, w = logits.shape[-2:]
    rows = []
    for x, y in points:
        nx, ny = min(w - 1, x * w // photo.width), min(h - 1, y * h // photo.height)
        truth = None if real_ab is None else (real_ab[0, :, ny, nx] * AB_SCALE).tolist()
        marks = pixel_marks(logits[:, ny, nx], g.bins, (fake_ab[0, :, ny, nx] * AB_SCALE).tolist(), truth)
        name = f"pixel_{x}_{y}.png"
        pixel_figure(logits[:, ny, nx], g.bins, g.temperature, marks, f"pixel ({x}, {y}) of the photo = ({nx}, {ny}) "
                     f"of the network's {w} x {h} output", out / name)
        rows.append({"pixel": [x, y], "network_pixel": [nx, ny], "file": name, "top_bins": top_bins(
            logits[:, ny, nx], g.bins.cpu()), **{k: [round(v, 3) for v in ab] for k, ab in marks.items()}})
    return rows


def compare_with_truth(out: Path, pixels, gray_l, real_ab, fake_rgb) -> None:
    """truth.png, ab_truth.png, difference.png and ab_distribution.png: the prediction against the photo."""
    fake_lab, real_lab = rgb_to_lab(fake_rgb.float() / 255), model_to_lab(gray_l, real_ab)
    save_png(_hwc(pixels), out / "truth.png")
    save_png(ab_maps(real_ab[0], "truth"), out / "ab_truth.png")
    save_png(difference_maps(fake_lab, real_lab), out / "difference.png")
    truth, pred = ColorDistribution(), ColorDistribution()
    truth.update(real_lab)
    pred.update(fake_lab)
    distribution_figure(truth, {"prediction": pred}, out / "ab_distribution.png")


def _hwc(images: torch.Tensor):
    return images[0].permute(1, 2, 0).cpu().numpy()


def main(argv=None) -> int:
    args = parse_options(build_parser(), VisualizeOptions, argv)
    setup_logging()
    return run_command(lambda: visualize(args))
