"""Is a gap between the real data path and pure compute the loader, or the photos themselves? One process, one
set of nets, three feeds alternating round by round: a fixed batch of noise (what train_speed.py's "pure" uses),
one fixed batch of real photos, and the real loader (a new batch every step).

    python bench/input_ab.py [--stage pretrain] [--size 256] [--batch 16] [--steps 3] [--rounds 2]

Not part of `make bench`: run it when train_speed.py shows real / pure below target, to tell noise from cause.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import photo_folder, print_table, timed  # noqa: E402
from bench.train_speed import build, endless  # noqa: E402
from gan_colorizer.data.dataset import EpochSampler, PhotoDataset, make_loader  # noqa: E402
from gan_colorizer.data.images import list_images  # noqa: E402
from gan_colorizer.runtime import Runtime, resolve_workers  # noqa: E402
from gan_colorizer.train.steps import gan_step, pretrain_step  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage", default="pretrain", choices=["pretrain", "gan"])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per feed and round")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    rt = Runtime("auto", "auto", channels_last=True)
    cfg, nets, opts = build(args.stage, rt)
    step_fn = gan_step if args.stage == "gan" else pretrain_step
    b, s = args.batch, args.size
    paths = list_images(photo_folder())
    sampler = EpochSampler(len(paths), 0, True, epoch_size=b * (args.steps + 1) * args.rounds * 4)
    loader = make_loader(PhotoDataset(paths, s, train=True), sampler, b, resolve_workers(-1, rt.device),
                         rt.device.type == "cuda", drop_last=True)
    batches = endless(loader)
    noise = [rt.batch(torch.randint(0, 256, (b, 3, s, s), dtype=torch.uint8))]
    photo = [rt.batch(*next(batches))]
    feeds = {"fixed noise": lambda: noise, "fixed photos": lambda: photo, "real loader": lambda: [rt.batch(*next(batches))]}
    rows = [{"feed": name, "img_s_per_round": []} for name in feeds]
    for _ in range(args.rounds):
        for row, feed in zip(rows, feeds.values()):
            row["img_s_per_round"].append(timed(lambda: step_fn(rt, nets, opts, feed(), cfg), warmup=1,
                                                steps=args.steps, images_per_step=b, device=rt.device))
    for row in rows:
        row["img_s_per_round"] = " / ".join(f"{x:.2f}" for x in row["img_s_per_round"])
    print(f"{args.stage} {s}px batch {b}, amp {rt.amp_name}, {args.rounds} rounds of {args.steps} steps on {rt.device}:")
    print_table(rows, ["feed", "img_s_per_round"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
