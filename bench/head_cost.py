"""What the classification head (--head classification: Q = 313 logits per pixel, Zhang et al. 2016) costs over the
regression head (2 channels of ab), and what decoding and soft-encoding cost.

- train: img/s of the stage-1 and stage-2 steps with each head, pure compute (batches already on the device), each
  in its own process with its own peak memory;
- decode: ms per batch to turn logits into ab (annealed mean, mode, mean), and to soft-encode the true ab
  (the 5 nearest of the 313 bins of every pixel) for the loss.

    python bench/head_cost.py [--steps 3] [--size 128] [--batch 8] [--stages pretrain gan]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import peak_rss_mb, print_table, run_child, timed, write_results  # noqa: E402
from bench.train_speed import build  # noqa: E402
from gan_colorizer.ab_bins import DECODES, bin_tensor, decode, soft_encode  # noqa: E402
from gan_colorizer.runtime import Runtime  # noqa: E402
from gan_colorizer.train.steps import gan_step, pretrain_step  # noqa: E402

HEADS = ("regression", "classification")


def train_rate(stage: str, head: str, size: int, batch: int, steps: int) -> dict:
    """img/s of one stage's step with one head, on a fixed batch of random photos."""
    rt = Runtime("auto", "auto", channels_last=True)
    cfg, nets, opts = build(stage, rt, head)
    micro = [rt.batch(torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8))]
    step_fn = gan_step if stage == "gan" else pretrain_step
    rate = timed(lambda: step_fn(rt, nets, opts, micro, cfg), warmup=2, steps=steps, images_per_step=batch,
                 device=rt.device)
    result = {"img_s": rate, "amp": rt.amp_name, "peak_rss_mb": peak_rss_mb()}
    if rt.device.type == "cuda":
        result["gpu_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return result


def in_subprocess(stage: str, head: str, size: int, batch: int, steps: int) -> dict:
    return run_child(__file__, "--one", stage, head, "--size", size, "--batch", batch, "--steps", steps)


def decode_rows(size: int, batch: int, steps: int) -> list[dict]:
    """ms per batch of each decoding of random logits, and of the soft encoding of random in-range ab."""
    rt = Runtime("auto", "off")
    bins = bin_tensor(rt.device)
    logits = torch.randn(batch, len(bins), size, size, device=rt.device)
    real_ab = (torch.rand(batch, 2, size, size, device=rt.device) - 0.5) * 1.2
    jobs = {f"decode {how}": (lambda how=how: decode(logits, bins, how)) for how in DECODES}
    jobs["soft-encode targets"] = lambda: soft_encode(real_ab, bins)
    rows = []
    with torch.no_grad():
        for name, fn in jobs.items():
            rate = timed(fn, warmup=1, steps=steps, images_per_step=batch, device=rt.device)
            rows.append({"what": name, "size": size, "batch": batch, "ms_per_batch": 1000 * batch / rate,
                         "img_s": rate})
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per measurement")
    parser.add_argument("--size", type=int, default=128, help="image side in pixels")
    parser.add_argument("--batch", type=int, default=8, help="images per step")
    parser.add_argument("--stages", nargs="+", default=["pretrain", "gan"], choices=["pretrain", "gan"])
    parser.add_argument("--one", nargs=2, metavar=("STAGE", "HEAD"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(train_rate(*args.one, args.size, args.batch, args.steps)))
        return 0
    rows = []
    for stage in args.stages:
        for head in HEADS:
            result = in_subprocess(stage, head, args.size, args.batch, args.steps)
            rows.append({"what": f"train {stage} {head}", "size": args.size, "batch": args.batch,
                         "img_s": result["img_s"], "ms_per_batch": 1000 * args.batch / result["img_s"],
                         "peak_rss_mb": result["peak_rss_mb"], "gpu_peak_mb": result.get("gpu_peak_mb"),
                         "amp": result["amp"]})
            print(f"{rows[-1]['what']}: {result['img_s']:.2f} img/s", flush=True)
        rows[-1]["vs_regression"] = rows[-1]["img_s"] / rows[-2]["img_s"]
    rows += decode_rows(args.size, args.batch, args.steps)
    print()
    print_table(rows, ["what", "size", "batch", "amp", "img_s", "ms_per_batch", "vs_regression", "peak_rss_mb",
                       "gpu_peak_mb"])
    path = write_results("head_cost", rows, {"steps": args.steps})
    print(f"\nwritten {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
