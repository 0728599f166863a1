"""Where a checkpoint's parameters are and what its layers do: counts per layer and group, weight histograms,
activation statistics on a few photos. torch and the network's modules are imported by the functions that use
them, so `--help` answers at once.

    python -m gan_colorizer.inspect.weights --checkpoint CKPT --out DIR [--data DIR] [--limit 8]
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from gan_colorizer.errors import UserError
from gan_colorizer.options import REQUIRED, amp_opt, device_opt, opt, parse_options, tool_parser


def friendly_names(generator) -> dict[str, str]:
    """{qualified module name: stage-based name}, e.g. layers.4.conv1.0 -> decoder.block1.conv1.0."""
    from gan_colorizer.inspect.anatomy import stages
    qualified = {id(m): n for n, m in generator.named_modules()}
    prefixes = sorted(((qualified[id(s.module)], s.name) for s in stages(generator)), key=lambda p: -len(p[0]))
    names = {}
    for name in qualified.values():
        match = next(((pre, stage) for pre, stage in prefixes if name == pre or name.startswith(pre + ".")), None)
        names[name] = match[1] + name[len(match[0]):] if match else name
    return names


def layer_rows(generator, discriminator=None) -> list[dict]:
    """One row per module that holds parameters: name, group, type, shapes, count."""
    from gan_colorizer.inspect.anatomy import group_of
    nets = [(generator, group_of(generator), friendly_names(generator))]
    if discriminator is not None:
        names = {n: f"discriminator.{n}" for n, _ in discriminator.named_modules()}
        nets.append((discriminator, {}, names))
    rows = []
    for net, groups, names in nets:
        for name, module in net.named_modules():
            params = list(module.parameters(recurse=False))
            if params:
                rows.append({"layer": names[name], "module": name, "group": groups.get(name, "discriminator"),
                             "type": type(module).__name__, "params": sum(p.numel() for p in params),
                             "shape": "x".join(map(str, params[0].shape))})
    total = sum(r["params"] for r in rows)
    for r in rows:
        r["share"] = r["params"] / total
    return rows


def group_rows(rows: list[dict]) -> list[dict]:
    total = sum(r["params"] for r in rows)
    groups: dict[str, int] = {}
    for r in rows:
        groups[r["group"]] = groups.get(r["group"], 0) + r["params"]
    return [{"group": g, "params": n, "share": n / total} for g, n in groups.items()]


def largest(rows: list[dict], k: int = 10) -> dict:
    """The k largest layers and the share of all parameters they hold together."""
    top = sorted(rows, key=lambda r: -r["params"])[:k]
    return {"layers": [{"layer": r["layer"], "params": r["params"], "share": r["share"]} for r in top],
            "share_of_top": sum(r["share"] for r in top)}


def save_histograms(net, groups: dict[str, str], names: dict[str, str], out: Path, title: str) -> list[Path]:
    """One PNG per group: a small histogram of every conv / linear weight tensor in it."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch
    by_group: dict[str, list] = {}
    for name, module in net.named_modules():
        w = getattr(module, "weight", None)
        if isinstance(w, torch.Tensor) and w.dim() >= 2:
            by_group.setdefault(groups.get(name, title), []).append((names.get(name, name),
                                                                     w.detach().float().flatten().numpy()))
    paths = []
    for group, layers in by_group.items():
        cols = 6
        rows = (len(layers) + cols - 1) // cols
        fig, axes = plt.subplots(rows, cols, figsize=(cols * 2.2, rows * 1.7), squeeze=False)
        for ax, (name, values) in zip(axes.flat, layers):
            ax.hist(values, bins=60, color="#4477aa")
            ax.set_title(name[-28:], fontsize=6)
            ax.tick_params(labelsize=5)
        for ax in list(axes.flat)[len(layers):]:
            ax.axis("off")
        fig.suptitle(f"{title}: {group} weights ({len(layers)} layers)", fontsize=9)
        fig.tight_layout()
        path = out / f"weights_{group}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


def activation_rows(generator, pixels: torch.Tensor, runtime=None) -> list[dict]:
    """Mean, std, share of zeros and max of every stage's output over a batch of photos (under the runtime's
    device and autocast when one is given)."""
    import torch

    from gan_colorizer.color import rgb_to_model
    from gan_colorizer.colorize.inference import forward_ab
    from gan_colorizer.inspect.anatomy import stages
    found, stats = stages(generator), {}

    def record(name):
        def hook(module, inputs, output):
            x = output.float()
            stats[name] = {"mean": x.mean().item(), "std": x.std().item(),
                           "zero_share": (x == 0).float().mean().item(), "max": x.abs().max().item(),
                           "shape": "x".join(map(str, x.shape[1:]))}
        return hook
    hooks = [s.module.register_forward_hook(record(s.name)) for s in found]
    try:
        with torch.no_grad():
            gray_l, _ = rgb_to_model(pixels if runtime is None else pixels.to(runtime.device))
            forward_ab(generator, gray_l, runtime)
    finally:
        for h in hooks:
            h.remove()
    return [{"stage": s.name, "group": s.group, **stats[s.name]} for s in found]


def _photos(images: str | None, n: int, size: int) -> torch.Tensor:
    import torch

    from gan_colorizer.data.dataset import PhotoDataset, sample_photos
    from gan_colorizer.data.images import list_images
    paths = list_images(images)[:n] if images else sum(sample_photos(), [])[:n]
    if not paths:
        raise UserError(f"--data {images}: no image found")
    ds = PhotoDataset(paths, size, train=False)
    return torch.stack([ds[(i, 0)][0] for i in range(len(ds))])


def write_csv(path: Path, rows: list[dict]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def report(checkpoint: str, out: Path, images: str | None = None, n_images: int = 8, size: int | None = None,
           runtime=None) -> dict:
    from gan_colorizer import checkpoint as ckpt_io
    from gan_colorizer.models.registry import load_generator
    from gan_colorizer.inspect.anatomy import group_of
    from gan_colorizer.models.classifier import core
    from gan_colorizer.models.patchgan import build_discriminator
    generator, cfg, ckpt = load_generator(checkpoint)
    discriminator = None
    if "discriminator" in ckpt:
        discriminator = build_discriminator(cfg.model)
        ckpt_io.load_weights(discriminator, ckpt["discriminator"], checkpoint, "discriminator")
    out.mkdir(parents=True, exist_ok=True)
    net = core(generator)  # the parameters; a classification head's wrapper holds none (bins and prior are buffers)
    rows = layer_rows(net, discriminator)
    write_csv(out / "layers.csv", rows)
    groups = group_rows(rows)
    write_csv(out / "groups.csv", groups)
    pngs = save_histograms(net, group_of(net), friendly_names(net), out, "generator")
    if discriminator is not None:
        pngs += save_histograms(discriminator, {}, {}, out, "discriminator")
    activations = activation_rows(generator if runtime is None else runtime.place(generator),
                                  _photos(images, n_images, size or cfg.data.image_size), runtime)
    write_csv(out / "activations.csv", activations)
    summary = {"checkpoint": str(checkpoint), "total_params": sum(r["params"] for r in rows), "groups": groups,
               "largest": largest(rows), "histograms": [p.name for p in pngs]}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


@dataclass
class WeightsOptions:
    """The flags of the weight report."""
    checkpoint: str = opt(REQUIRED, "stage-1 or stage-2 checkpoint")
    out: str = opt(REQUIRED, "folder for the CSVs, PNGs and summary.json")
    data: str | None = opt(None, "folder of photos for the activation statistics (default: the embedded samples)",
                           metavar="DIR", aliases=("--images",))
    limit: int = opt(8, "how many of its photos (the first, sorted)", metavar="N", aliases=("--n-images",))
    image_size: int | None = opt(None, "their size (default: the run's --image-size)")
    device: str = device_opt()
    amp: str = amp_opt("off", "; off here by default: the statistics of the fp32 network")


def build_parser() -> argparse.ArgumentParser:
    return tool_parser(WeightsOptions, __doc__, prog="python -m gan_colorizer.inspect.weights")


def main(argv=None) -> int:
    args = parse_options(build_parser(), WeightsOptions, argv)
    try:
        from gan_colorizer.runtime import Runtime
        summary = report(args.checkpoint, Path(args.out), args.data, args.limit, args.image_size,
                         Runtime(args.device, args.amp, channels_last=False))
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    print(f"{summary['total_params']:,} parameters")
    for g in summary["groups"]:
        print(f"  {g['group']:<14} {g['params']:>12,}  {100 * g['share']:5.1f}%")
    top = summary["largest"]
    print(f"the {len(top['layers'])} largest layers hold {100 * top['share_of_top']:.1f}% of the parameters")
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
