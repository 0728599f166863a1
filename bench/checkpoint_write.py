"""What a mid-epoch last.pt costs: size, atomic write time (torch.save + fsync + rename), load time, and the share
of training time it takes at the default --checkpoint-minutes.

    python bench/checkpoint_write.py [--repeats 3] [--stages pretrain gan] [--dir checkpoints]

Write it to the disk the checkpoints go to: --dir is where the temporary files are written.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import print_table, write_results  # noqa: E402
from bench.train_speed import build  # noqa: E402
from gan_colorizer import checkpoint as ckpt_io
from gan_colorizer.config import defaults  # noqa: E402
from gan_colorizer.runtime import Runtime  # noqa: E402
from gan_colorizer.train.nets import nets_by_name  # noqa: E402
from gan_colorizer.train.steps import gan_step, pretrain_step  # noqa: E402


def trained_state(stage: str, rt: Runtime):
    """Default nets after one tiny step, so that Adam holds its two moments per weight as in a real last.pt."""
    cfg, nets, opts = build(stage, rt)
    micro = [rt.batch(torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8))]
    (gan_step if stage == "gan" else pretrain_step)(rt, nets, opts, micro, cfg)
    return cfg, nets_by_name(nets), opts


def measure(stage: str, repeats: int, folder: Path) -> dict:
    rt = Runtime("auto", "auto")
    cfg, nets, opts = trained_state(stage, rt)
    counters = {"epoch": 0, "batch_in_epoch": 1, "step": 1, "best_metric": None, "skipped_steps": 0}
    writes, loads = [], []
    path = folder / f"{stage}-last.pt"
    for _ in range(repeats):
        start = time.perf_counter()
        ckpt_io.save_atomic(ckpt_io.make_checkpoint(cfg, nets, counters, {}, (opts, rt.scaler)), path)
        writes.append(time.perf_counter() - start)
        start = time.perf_counter()
        ckpt_io.load(path)
        loads.append(time.perf_counter() - start)
    write_s = statistics.median(writes)
    minutes = defaults(stage).run.checkpoint_minutes
    return {"stage": stage, "size_mb": path.stat().st_size / 2**20, "write_s": write_s, "load_s": statistics.median(loads),
            "write_mb_s": path.stat().st_size / 2**20 / write_s, "overhead_pct": 100 * write_s / (minutes * 60)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--stages", nargs="+", default=["pretrain", "gan"], choices=["pretrain", "gan"])
    parser.add_argument("--dir", default="checkpoints", help="folder on the disk the checkpoints go to")
    args = parser.parse_args(argv)
    Path(args.dir).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.dir, prefix=".bench-") as folder:
        rows = [measure(stage, args.repeats, Path(folder)) for stage in args.stages]
    print_table(rows, ["stage", "size_mb", "write_s", "write_mb_s", "load_s", "overhead_pct"])
    print(f"(overhead_pct: one write every {defaults('pretrain').run.checkpoint_minutes:g} minutes of training)")
    print(f"\nwritten {write_results('checkpoint_write', rows, {'repeats': args.repeats})}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
