"""visualize.py's work: what every stage of a trained generator makes of one photo, and how its colors differ
from the truth (the command line is inspect/cli.py)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from gan_colorizer.color import AB_SCALE, model_to_lab, model_to_rgb, rgb_to_lab, rgb_to_model, to_uint8
from gan_colorizer.colorize.inference import render_shape, size_multiple
from gan_colorizer.colorize.published import AsGenerator
from gan_colorizer.errors import UserError
from gan_colorizer.data.images import UnreadableImage, is_gray, load_rgb
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
    ab_maps,
    activation_chart,
    capture,
    channel_means,
    feature_grid,
    select_stages,
    top_channels,
)
from gan_colorizer.models import registry
from gan_colorizer.runtime import Runtime


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


def network_input(img: Image.Image, shape: tuple[int, int]) -> tuple[torch.Tensor, bool]:
    """The photo resized (bicubic) to the network's input shape (h, w) as uint8 (1, 3, h, w), and whether it is gray."""
    h, w = shape
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


def load_network(args, photo: Image.Image, points: list, rt: Runtime):
    """(generator, input shape for the photo, what summary.json says of the network) for --checkpoint: our checkpoint,
    or a published model (by name or its authors' file), run as a generator of ours at its authors' render size."""
    loaded = registry.load_network(args.checkpoint, rt.device)
    if isinstance(loaded, registry.Loaded):
        model = loaded.model
        if points:
            raise UserError(f"--pixel: {model.name} is a published model; --pixel shows the distributions of our "
                            f"classification checkpoints (--head classification)")
        if args.image_size is not None and args.image_size != model.render_size:
            raise UserError(f"--image-size {args.image_size}: {model.name} runs at its authors' render size, "
                            f"{model.render_size} x {model.render_size}; leave --image-size out")
        side = model.render_size  # every photo stretched to a square, as its authors run it
        info = {"published": model.name, "weights_file": str(loaded.file), "source": model.source,
                "head": "published: the authors' output, as ab"}
        return rt.place(AsGenerator(loaded)).eval(), (side, side), info, None
    generator, cfg, ckpt = loaded
    info = {"generator": cfg.model.generator, **head_info(generator, ckpt, args.decode, args.annealed_t)}
    if points and info["head"] != "classification":
        raise UserError(f"--pixel: {args.checkpoint} has a regression head (one ab per pixel, no distribution); "
                        f"--pixel needs a checkpoint trained with --head classification")
    shape = render_shape(photo.height, photo.width, args.image_size or cfg.data.image_size, size_multiple(generator))
    return generator, shape, info, ckpt


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
    generator, shape, info, ckpt = load_network(args, photo, points, rt)
    names = [n.strip() for n in args.layers.split(",") if n.strip()] if args.layers else None
    chosen = select_stages(generator, names)
    pixels, gray = network_input(photo, shape)
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
               **info, "gray_photo": gray, "layers": _layer_files(out, outputs, args.top)}
    if info["head"] == "classification":
        prior_figure(generator, out / "prior.png", info.get("color_prior"))
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
