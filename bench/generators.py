"""Every generator's size and cost at 256 px, side by side in one run (issue 24's "speed per body"):
parameters, GMACs of one forward (torch.utils.flop_counter: convolutions and matrix products, two FLOPs per
multiply-accumulate), and img/s of a stage-1 training step (pretrain_step: forward, L1, backward, Adam), each
generator in its own process, with random weights, under the runtime training uses here (bf16 autocast where the
CPU runs it fast, channels_last).

    python bench/generators.py [--size 256] [--batch 4] [--steps 4]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import peak_rss_mb, print_table, run_child, timed, write_results  # noqa: E402
from gan_colorizer.models.bodies import BODIES  # noqa: E402

# (name, config changes): every generator the config offers, resunet on every body of models/bodies.py
GENERATORS = {**{f"resunet-{body}": {"generator": "resunet", "backbone": body} for body in BODIES},
              "unet": {"generator": "unet"}, "resnet9": {"generator": "resnet9"}}


def measure_one(name: str, size: int, batch: int, steps: int) -> dict:
    from torch.utils.flop_counter import FlopCounterMode

    from gan_colorizer.config import defaults, update
    from gan_colorizer.models.registry import build_generator
    from gan_colorizer.runtime import Runtime, count_parameters
    from gan_colorizer.train.steps import Nets, make_optimizer, pretrain_step
    cfg = update(defaults("pretrain"), {**GENERATORS[name], "image_size": size, "batch_size": batch})
    torch.manual_seed(0)
    generator = build_generator(cfg.model, load_pretrained=False)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        generator.eval()(torch.zeros(1, 1, size, size))
    rt = Runtime("auto", "auto", channels_last=True)
    nets = Nets(rt.place(generator).train())
    opts = {"g": make_optimizer(nets.generator, cfg)}
    micro = [(torch.rand(batch, 1, size, size) * 2 - 1, (torch.rand(batch, 2, size, size) - 0.5) * 0.5)]
    rate = timed(lambda: pretrain_step(rt, nets, opts, micro, cfg), warmup=1, steps=steps, images_per_step=batch)
    return {"generator": name, "size": size, "batch": batch, "amp": rt.amp_name,
            "parameters": count_parameters(generator), "gmacs": round(counter.get_total_flops() / 2e9, 2),
            "train_img_s": round(rate, 2), "peak_rss_mb": round(peak_rss_mb())}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--one", help=argparse.SUPPRESS)  # a child process: measure this generator, print JSON
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure_one(args.one, args.size, args.batch, args.steps)))
        return 0
    rows = [run_child(__file__, "--one", name, "--size", args.size, "--batch", args.batch, "--steps", args.steps)
            for name in GENERATORS]
    for row in rows:
        row["vs_resnet18"] = round(row["train_img_s"] / rows[0]["train_img_s"], 2)
    print_table(rows, ["generator", "parameters", "gmacs", "amp", "train_img_s", "vs_resnet18", "peak_rss_mb"])
    write_results("generators", rows, {"steps": args.steps})
    return 0


if __name__ == "__main__":
    sys.exit(main())
