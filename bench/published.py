"""CPU cost of the published colorizers (models/registry.py) beside our default generator, in one run.

Per model, in its own process (its own peak memory), with random weights (speed and memory do not depend on them):
- network: seconds per forward of the network alone at its authors' render size, batch 1, fp32 (median of --reps
  after one warm-up);
- photo: seconds per 640 x 480 photo through Colorizer.colorize (PIL in, PIL out): the authors' preparation of the
  gray rendition, the network, its output to ab, and our full-resolution recombination;
- peak RSS of the process (interpreter, torch, the model and its activations).
"ours" is the default ResNet-18 U-Net at render 256 through the same API; each row's vs_ours is its photo time over
ours, measured in the same run.

    python bench/published.py [--reps 3] [--models zhang-eccv16 ddcolor-tiny ...]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import peak_rss_mb, photo_folder, print_table, random_checkpoint, run_child, write_results  # noqa: E402

OURS = "ours"
# every published architecture once per render size (ddcolor-paper and -artistic are ddcolor-large's network)
MODELS = ("zhang-eccv16", "zhang-siggraph17", "ddcolor-tiny", "ddcolor-large", "deoldify-artistic",
          "deoldify-stable", "deoldify-video")


def median_seconds(fn, reps: int) -> float:
    fn()  # warm-up: first-call allocations and kernel choices
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def colorizer_for(name: str):
    """A Colorizer of the named model with random weights (no weight file is read), and its network's input."""
    from gan_colorizer import Colorizer
    from gan_colorizer.runtime import Runtime
    if name == OURS:
        colorizer = Colorizer.from_checkpoint(random_checkpoint(), device="cpu", render_size=256, amp="off")
        return colorizer, colorizer.generator, torch.zeros(1, 1, 256, 256)
    from gan_colorizer.models import registry
    model = registry.find(name)
    torch.manual_seed(0)
    loaded = registry.Loaded(model, model.build().eval(), Path("random weights"), "random weights")
    side = model.render_size
    return Colorizer(loaded, Runtime("cpu", "off", channels_last=False)), loaded.network, \
        model.prepare(torch.rand(1, 1, side, side))


@torch.inference_mode()
def measure_one(name: str, reps: int) -> dict:
    from gan_colorizer.data.images import load_rgb
    from gan_colorizer.runtime import count_parameters
    photo = load_rgb(sorted(photo_folder(4).glob("*.jpg"))[0])
    colorizer, network, net_input = colorizer_for(name)
    return {"model": name, "render": colorizer.render_size, "parameters": count_parameters(network),
            "network_s": round(median_seconds(lambda: network(net_input), reps), 3),
            "photo_s": round(median_seconds(lambda: colorizer.colorize(photo), reps), 3),
            "peak_rss_mb": round(peak_rss_mb())}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--one", help=argparse.SUPPRESS)  # a child process: measure this model, print JSON
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure_one(args.one, args.reps)))
        return 0
    rows = [run_child(__file__, "--one", name, "--reps", args.reps) for name in [OURS, *args.models]]
    for row in rows:
        row["vs_ours"] = round(row["photo_s"] / rows[0]["photo_s"], 1)
    print_table(rows, ["model", "render", "parameters", "network_s", "photo_s", "vs_ours", "peak_rss_mb"])
    write_results("published", rows, {"reps": args.reps, "photo": "640 x 480 JPEG"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
