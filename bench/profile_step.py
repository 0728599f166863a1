"""Where a training step's time goes: torch.profiler over a few real-data steps, grouped by kind of work.

    python bench/profile_step.py [--stage gan] [--size 128] [--batch 8] [--steps 3]
"""
from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import photo_folder, write_results  # noqa: E402
from bench.train_speed import build, endless  # noqa: E402
from gan_colorizer.data.dataset import EpochSampler, PhotoDataset, make_loader  # noqa: E402
from gan_colorizer.data.images import list_images  # noqa: E402
from gan_colorizer.runtime import Runtime, resolve_workers  # noqa: E402
from gan_colorizer.train.steps import gan_step, pretrain_step  # noqa: E402

# Substrings of profiler op names -> the kind of work they are.
KINDS = [("dtype casts / copies (autocast)", ("aten::copy_", "_to_copy")),
         ("convolution", ("conv", "mkldnn_convolution", "cudnn")), ("batch norm", ("batch_norm", "native_batch_norm")),
         ("matmul", ("aten::mm", "addmm", "bmm")),
         ("elementwise / other", ("",))]


def kind_of(event) -> str:
    """Ops inside Optimizer.step are optimizer work; others are classed by their own name."""
    parent = event.cpu_parent
    while parent is not None:
        if "Optimizer.step" in parent.name:
            return "optimizer (Adam)"
        parent = parent.cpu_parent
    name = event.name.lower()
    return next(kind for kind, keys in KINDS if any(k.lower() in name for k in keys))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage", default="gan", choices=["pretrain", "gan"])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args(argv)
    rt = Runtime("auto", "auto", True)
    cfg, nets, opts = build(args.stage, rt)
    step_fn = gan_step if args.stage == "gan" else pretrain_step
    paths = list_images(photo_folder())
    sampler = EpochSampler(len(paths), 0, True, epoch_size=args.batch * (args.steps + 2) * 2)
    loader = make_loader(PhotoDataset(paths, args.size, True), sampler, args.batch, resolve_workers(-1, rt.device),
                         rt.device.type == "cuda", drop_last=True)
    batches = endless(loader)
    for _ in range(2):  # warm-up: workers start, kernels get chosen
        step_fn(rt, nets, opts, [rt.batch(*next(batches))], cfg)
    by_kind = defaultdict(float)  # microseconds
    micro = []
    for _ in range(args.steps):  # the input side, timed by hand so its ops are not mixed into the step's
        clock = time.perf_counter()
        pixels, flips = next(batches)
        by_kind["data wait (loader)"] += (time.perf_counter() - clock) * 1e6
        clock = time.perf_counter()
        micro.append([rt.batch(pixels, flips)])
        by_kind["Lab conversion on device"] += (time.perf_counter() - clock) * 1e6
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if rt.device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for m in micro:
            step_fn(rt, nets, opts, m, cfg)
    for e in prof.events():
        by_kind[kind_of(e)] += e.self_cpu_time_total
    events = prof.key_averages()
    total = sum(by_kind.values())
    print(f"{args.stage} {args.size}px batch {args.batch}, amp {rt.amp_name}, {args.steps} steps on {rt.device}:")
    rows = [{"kind": k, "share": v / total, "ms_per_step": v / 1e3 / args.steps}
            for k, v in sorted(by_kind.items(), key=lambda kv: -kv[1])]
    for r in rows:
        print(f"  {r['kind']:<22} {100 * r['share']:5.1f}%  {r['ms_per_step']:8.1f} ms/step")
    print(events.table(sort_by="self_cpu_time_total", row_limit=15))
    write_results(f"profile_{args.stage}", rows, {"size": args.size, "batch": args.batch, "amp": rt.amp_name})
    return 0


if __name__ == "__main__":
    sys.exit(main())
