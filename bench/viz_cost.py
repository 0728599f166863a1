"""What --viz-every costs: one call of the TensorBoard visuals (feature maps, ab histograms, difference maps, ab
distribution of the 4 fixed validation samples) against one training step, and its share of training time at the
default --viz-every. Also the time of one evaluate.py --report layer view (every stage of the default generator).

    python bench/viz_cost.py [--size 256] [--batch 16] [--repeats 3]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import print_table, sync, write_results  # noqa: E402
from bench.train_speed import build  # noqa: E402
from gan_colorizer.config import defaults  # noqa: E402
from gan_colorizer.inspect.features import activation_chart, capture, feature_grid, select_stages, training_visuals  # noqa: E402
from gan_colorizer.runtime import Runtime  # noqa: E402
from gan_colorizer.train.setup import N_SAMPLES  # noqa: E402
from gan_colorizer.train.steps import pretrain_step  # noqa: E402


def seconds(fn, rt: Runtime, repeats: int) -> float:
    """Median wall time of fn() after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        sync(rt.device)
        start = time.perf_counter()
        fn()
        sync(rt.device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def layer_view(rt: Runtime, generator, gray_l) -> None:
    """What the report does per model: every stage captured, a channel grid and an activation chart each."""
    _, outputs = capture(generator, gray_l, select_stages(generator), rt)
    for name, fmap in outputs.items():
        feature_grid(fmap[0], name)
        activation_chart(fmap[0], name)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    rt = Runtime("auto", "auto")
    cfg, nets, opts = build("pretrain", rt)
    pixels = torch.randint(0, 256, (args.batch, 3, args.size, args.size), dtype=torch.uint8)
    micro = [rt.batch(pixels)]
    step_s = seconds(lambda: pretrain_step(rt, nets, opts, micro, cfg), rt, args.repeats)
    samples = pixels[:N_SAMPLES]
    viz_s = seconds(lambda: training_visuals(rt, nets.generator, samples), rt, args.repeats)
    every = defaults("pretrain").run.viz_every
    gray_l = rt.batch(samples[:1])[0]
    report_s = seconds(lambda: layer_view(rt, nets.generator, gray_l), rt, 1)
    rows = [{"size": args.size, "batch": args.batch, "step_s": step_s, "viz_s": viz_s, "viz_in_steps": viz_s / step_s,
             "overhead_pct": 100 * viz_s / (every * step_s), "report_layers_s": report_s}]
    print_table(rows, ["size", "batch", "step_s", "viz_s", "viz_in_steps", "overhead_pct", "report_layers_s"])
    print(f"(overhead_pct: one call every --viz-every {every} steps; report_layers_s: one model's layer view)")
    print(f"\nwritten {write_results('viz_cost', rows, {'repeats': args.repeats, 'viz_every': every})}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
