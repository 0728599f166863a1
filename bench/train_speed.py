"""Training throughput per stage: the real data path vs pure compute vs a plain reference implementation.

- pure: the step function on (gray_l, real_ab) tensors already on the device;
- real: JPEG folder -> DataLoader workers (decode, crop) -> Lab on the device -> the same step (our defaults);
  pure and real run in one process, alternating round by round, so their ratio is not moved by the drift of a
  shared machine between processes (which reached 20% on the development VM);
- plain: the textbook path with the same networks: fp32, no channels_last, per-image scikit-image
  rgb2lab in the workers.

    python bench/train_speed.py [--steps 4] [--rounds 3] [--sizes 128x8 256x16] [--stages pretrain gan] [--no-plain]
"""
from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import peak_rss_mb, photo_folder, print_table, run_child, timed, write_results  # noqa: E402
from gan_colorizer.config import defaults  # noqa: E402
from gan_colorizer.data.dataset import EpochSampler, PhotoDataset, crop_box, make_loader  # noqa: E402
from gan_colorizer.data.images import list_images  # noqa: E402
from gan_colorizer.runtime import Runtime, resolve_workers  # noqa: E402
from gan_colorizer.train.steps import Nets, gan_step, make_optimizer, pretrain_step  # noqa: E402


class PlainLabDataset(Dataset):
    """The textbook loader: PIL decode, random crop, per-image skimage rgb2lab, float tensors out."""

    def __init__(self, paths, size):
        self.paths, self.size = paths, size

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, key):
        import random

        from skimage.color import rgb2lab
        index, seed = key
        img = Image.open(self.paths[index]).convert("RGB")
        rng = random.Random(seed)
        img = img.resize((self.size, self.size), Image.BICUBIC, box=crop_box(img.width, img.height, rng, 0.25))
        if rng.random() < 0.5:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        lab = rgb2lab(np.asarray(img) / 255.0).astype(np.float32)
        lab = torch.from_numpy(lab).permute(2, 0, 1)
        return lab[:1] / 50.0 - 1.0, lab[1:] / 110.0


def build(stage: str, rt: Runtime, head: str = "regression"):
    cfg = defaults(stage)
    cfg.model.head = head
    from gan_colorizer.models.patchgan import build_discriminator
    from gan_colorizer.models.registry import build_generator
    nets = Nets(rt.place(build_generator(cfg.model, load_pretrained=False)).train())
    if head == "classification":  # a uniform prior: the weights' values do not change the cost
        from gan_colorizer.ab_bins import ClassTargets
        nets.classes = ClassTargets.from_prior(nets.generator.bins, nets.generator.prior, 0.5, rt.device)
    opts = {"g": make_optimizer(nets.generator, cfg)}
    if stage == "gan":
        nets.discriminator = rt.place(build_discriminator(cfg.model)).train()
        opts["d"] = make_optimizer(nets.discriminator, cfg)
    return cfg, nets, opts


def endless(loader):
    return itertools.chain.from_iterable(itertools.repeat(loader))


def measure(stage, size, batch, paths, kind, steps, workers, rounds):
    """img/s of one (stage, size, batch): kind "pair" times pure and real alternately in this one process (`rounds`
    rounds of `steps` steps each, after a warm-up step), so the drift of a shared machine between processes does not
    enter their ratio; kind "plain" times the plain path alone (its own runtime: fp32, no channels_last)."""
    plain = kind == "plain"
    rt = Runtime("auto", "off" if plain else "auto", channels_last=not plain)
    workers = resolve_workers(workers, rt.device)
    cfg, nets, opts = build(stage, rt)
    step_fn = gan_step if stage == "gan" else pretrain_step
    sampler = EpochSampler(len(paths), 0, True, epoch_size=batch * (steps + 1) * rounds * 4)
    if plain:
        loader = DataLoader(PlainLabDataset(paths, size), batch_size=batch, sampler=sampler, num_workers=workers,
                            persistent_workers=workers > 0, drop_last=True)
        batches = endless(loader)
        feeds = {"plain": lambda: [tuple(t.to(rt.device) for t in next(batches))]}
    else:
        fixed = [rt.batch(torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8))]
        ds = PhotoDataset(paths, size, train=True)
        batches = endless(make_loader(ds, sampler, batch, workers, rt.device.type == "cuda", drop_last=True))
        feeds = {"pure": lambda: fixed, "real": lambda: [rt.batch(*next(batches))]}
    rates = {mode: [] for mode in feeds}
    for _ in range(rounds):
        for mode, feed in feeds.items():
            rates[mode].append(timed(lambda: step_fn(rt, nets, opts, feed(), cfg), warmup=1, steps=steps,
                                     images_per_step=batch, device=rt.device))
    result = {"amp": rt.amp_name, "peak_rss_mb": peak_rss_mb(),
              **{f"{mode}_img_s": statistics.median(r) for mode, r in rates.items()},
              **{f"{mode}_rounds": r for mode, r in rates.items()}}
    if rt.device.type == "cuda":
        result["gpu_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return result


def measure_in_subprocess(stage, size, batch, kind, steps, workers, rounds) -> dict:
    """One measurement in a fresh process: no state carried over, and its own peak memory."""
    return run_child(__file__, "--one", stage, size, batch, kind, "--steps", steps, "--num-workers", workers,
                     "--rounds", rounds)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=4, help="timed optimizer steps per round")
    parser.add_argument("--rounds", type=int, default=3, help="alternating pure / real rounds; the median is kept")
    parser.add_argument("--sizes", nargs="+", default=["128x8", "256x16"], help="SIZExBATCH pairs")
    parser.add_argument("--stages", nargs="+", default=["pretrain", "gan"], choices=["pretrain", "gan"])
    parser.add_argument("--no-plain", action="store_true", help="skip the plain reference path")
    parser.add_argument("--num-workers", type=int, default=-1, help="-1 = the training default for the device")
    parser.add_argument("--one", nargs=4, metavar=("STAGE", "SIZE", "BATCH", "KIND"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    paths = list_images(photo_folder())
    if args.one:
        stage, size, batch, kind = args.one
        print(json.dumps(measure(stage, int(size), int(batch), paths, kind, args.steps, args.num_workers,
                                 args.rounds)))
        return 0
    rows = []
    for stage, spec in itertools.product(args.stages, args.sizes):
        size, batch = map(int, spec.split("x"))
        row = {"stage": stage, "size": size, "batch": batch}
        for kind in ["pair"] + ([] if args.no_plain else ["plain"]):
            rounds = args.rounds if kind == "pair" else 1  # rounds only serve the pure / real comparison
            result = measure_in_subprocess(stage, size, batch, kind, args.steps, args.num_workers, rounds)
            modes = ["pure", "real"] if kind == "pair" else ["plain"]
            for mode in modes:
                row[f"{mode}_img_s"], row[f"{mode}_rounds"] = result[f"{mode}_img_s"], result[f"{mode}_rounds"]
            row[f"{kind}_rss_mb"] = result["peak_rss_mb"]
            if "gpu_peak_mb" in result:
                row[f"{kind}_gpu_mb"] = result["gpu_peak_mb"]
            row.setdefault("amp", result["amp"])
            rates = ", ".join(f"{mode} {result[f'{mode}_img_s']:.2f}" for mode in modes)
            print(f"{stage} {size}px batch {batch}: {rates} img/s (median of {rounds} rounds), "
                  f"peak RSS {result['peak_rss_mb']:.0f} MB", flush=True)
        row["real_vs_pure"] = row["real_img_s"] / row["pure_img_s"]
        if "plain_img_s" in row:
            row["real_vs_plain"] = row["real_img_s"] / row["plain_img_s"]
        rows.append(row)
    print()
    print_table(rows, ["stage", "size", "batch", "amp", "pure_img_s", "real_img_s", "plain_img_s", "real_vs_pure",
                       "real_vs_plain", "pair_rss_mb"])
    path = write_results("train_speed", rows, {"steps": args.steps, "rounds": args.rounds,
                                               "num_workers": args.num_workers})
    print(f"\nwritten {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
