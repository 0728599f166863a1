"""Video on the CPU (issue 17's targets), with a trained checkpoint on the synthetic test clips of tests/clips.py:

- quality: evaluate.py on the clips twice, per frame (--temporal 0) and with the default filter: the warp error of
  Lai et al. on ab (target: temporal at least 50% lower) and the per-frame CIEDE2000 against the truth (target:
  temporal no more than 0.5 above per frame), per clip and over the set;
- speed: frames per second of colorized_frames (in memory: no decode or encode) at 480p and 1080p, per frame and
  temporal, and the filter's time as a share of the network's (target: at most 20%);
- memory: peak RSS of colorize_video on a 200-frame and a 2,000-frame clip, each in a fresh process (target: within
  5%); small frames (96 x 128) at render 64 so that 2,000 frames fit in minutes on 2 loaded cores.

The checkpoint: checkpoints/demo-gan/best.pt (make demo), else checkpoints/bench-engines/best.pt, or --checkpoint.
Targets are written as met / not met, never adjusted.

    python bench/video.py [--checkpoint CKPT] [--frames 16] [--speed-frames 6] [--memory-frames 200 2000]
    python bench/video.py --memory-child CLIP CKPT    # one memory cell (run by the benchmark itself)
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as colorize.py runs
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
from bench.common import CACHE, peak_rss_mb, print_table, run_child, write_results  # noqa: E402

RENDER = 256  # colorize.py's default render size, for the quality and speed cells
MEMORY_RENDER, MEMORY_SIZE = 64, (96, 128)
TARGETS = {"warp_reduction": 0.5, "de00_increase": 0.5, "filter_share": 0.2, "rss_growth": 0.05}


def checkpoint(given: Path | None) -> Path:
    for path in [given] if given else [ROOT / "checkpoints" / n / "best.pt" for n in ("demo-gan", "bench-engines")]:
        if path.is_file():
            return path
    raise SystemExit("no checkpoint: run `make demo` (checkpoints/demo-gan/best.pt) or pass --checkpoint")


def test_clips(folder: Path, frames: int, size=(240, 320)) -> Path:
    """The kinds of clip tests/clips.py makes: pans and a zoom over still photos, sensor noise, a scene cut."""
    from clips import cut, noisy, pan, write_clip, zoom
    folder.mkdir(parents=True, exist_ok=True)
    half = frames // 2
    clips = {"pan_astronaut.mp4": pan("astronaut", frames, size, (1.0, 2.0)),
             "zoom_coffee.mp4": zoom("coffee", frames, size, 1.01),
             "noisy_pan_chelsea.mp4": noisy(pan("chelsea", frames, size, (0.5, -1.5)), 6.0),
             "cut_rocket_astronaut.mp4": cut(pan("rocket", half, size, (0.0, 2.0)), zoom("astronaut", half, size, 0.99))}
    for name, clip in clips.items():
        if not (folder / name).is_file():
            write_clip(folder / name, clip)
    return folder


def quality(ckpt: Path, folder: Path, out: Path) -> list[dict]:
    """evaluate() per frame and with the default filter; a row per clip and one for the set."""
    from gan_colorizer.evaluate.run import EvalOptions, evaluate
    runs = {}
    for mode, strength in (("per_frame", 0.0), ("temporal", None)):
        extra = {} if strength is None else {"temporal": strength}
        runs[mode] = evaluate(EvalOptions(checkpoints=[str(ckpt)], labels=["model"], data=str(folder),
                                          out=str(out / mode), image_size=RENDER, batch_size=4, num_workers=0,
                                          download=False, **extra))["clips"]
    rows = []
    entries = [(c["clip"], c, t) for c, t in zip(runs["per_frame"]["clips"], runs["temporal"]["clips"])]
    for name, before, after in entries + [("all clips (mean)", runs["per_frame"], runs["temporal"])]:
        b, a = before["models"]["model"], after["models"]["model"]
        floor = before.get("warp_error_truth", before.get("truth", {}).get("warp_error"))
        reduction = 1 - a["warp_error"] / b["warp_error"]
        rows.append({"what": "quality", "clip": name, "frames": before.get("frames", before.get("n_frames")),
                     "warp_per_frame": b["warp_error"], "warp_temporal": a["warp_error"], "warp_truth": floor,
                     "warp_reduction_pct": 100 * reduction, "de00_per_frame": b["delta_e2000"],
                     "de00_temporal": a["delta_e2000"], "de00_increase": a["delta_e2000"] - b["delta_e2000"]})
    last = rows[-1]
    last["target"] = (f">= {100 * TARGETS['warp_reduction']:.0f}% lower warp error: "
                      f"{'met' if last['warp_reduction_pct'] >= 100 * TARGETS['warp_reduction'] else 'not met'}; "
                      f"CIEDE2000 <= +{TARGETS['de00_increase']}: "
                      f"{'met' if last['de00_increase'] <= TARGETS['de00_increase'] else 'not met'}")
    rows[-1]["strength"] = runs["temporal"]["temporal"]
    return rows


def speed(ckpt: Path, n: int) -> list[dict]:
    """Frames per second of colorized_frames at 480p and 1080p, per frame and temporal, with the time spent in the
    network call and in the temporal filter (its Lab conversions included), both wrapped with a clock."""
    from clips import pan
    from gan_colorizer.colorize import temporal, video
    from gan_colorizer.colorize.api import Colorizer
    clock = {"network": 0.0, "filter": 0.0}

    def timed(key, fn):
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                clock[key] += time.perf_counter() - start
        return wrapper
    colorizer = Colorizer.from_checkpoint(ckpt, "cpu", RENDER, "off", channels_last=True)
    colorizer.pipeline.predict = timed("network", colorizer.pipeline.predict)
    video._filtered = timed("filter", video._filtered)
    rows = []
    for label, size in (("480p", (480, 854)), ("1080p", (1080, 1920))):
        frames = pan("astronaut", n + 1, size, (1.0, 2.0))
        for mode, strength in (("per frame", 0.0), ("temporal", temporal.DEFAULT_STRENGTH)):
            for _ in video.colorized_frames(colorizer, frames[:1], strength, {}, 1):  # warm-up
                pass
            clock.update(network=0.0, filter=0.0)
            start = time.perf_counter()
            for _ in video.colorized_frames(colorizer, frames[1:], strength, {}, 4):
                pass
            seconds = time.perf_counter() - start
            rows.append({"what": "speed", "size": f"{size[1]}x{size[0]} ({label})", "mode": mode, "frames": n,
                         "fps": n / seconds, "network_ms": 1000 * clock["network"] / n,
                         "filter_ms": 1000 * clock["filter"] / n,
                         "filter_share_pct": 100 * clock["filter"] / clock["network"] if strength else None})
    worst = max(r["filter_share_pct"] for r in rows if r["filter_share_pct"] is not None)
    rows[-1]["target"] = (f"filter <= {100 * TARGETS['filter_share']:.0f}% of the network's time: "
                          f"{'met' if worst <= 100 * TARGETS['filter_share'] else 'not met'}")
    return rows


def memory_child(clip: Path, ckpt: Path) -> int:
    """One memory cell: colorize_video of the clip at render MEMORY_RENDER with the default filter; prints JSON."""
    from gan_colorizer.colorize.api import Colorizer
    from gan_colorizer.colorize.video import colorize_video
    colorizer = Colorizer.from_checkpoint(ckpt, "cpu", MEMORY_RENDER, "off", channels_last=True)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        colorize_video(colorizer, clip, Path(tmp) / clip.name)
        seconds = time.perf_counter() - start
    print(json.dumps({"peak_rss_mb": peak_rss_mb(), "seconds": seconds}))
    return 0


def memory(ckpt: Path, counts=(200, 2000)) -> list[dict]:
    from clips import pan, write_clip
    rows = []
    for n in counts:
        clip = CACHE / f"video_memory_{n}.mp4"
        if not clip.is_file():
            CACHE.mkdir(parents=True, exist_ok=True)
            write_clip(clip, pan("astronaut", n, MEMORY_SIZE, (0.02, 0.05)))
        cell = run_child(__file__, "--memory-child", clip, ckpt)
        rows.append({"what": "memory", "size": f"{MEMORY_SIZE[1]}x{MEMORY_SIZE[0]}", "render": MEMORY_RENDER,
                     "frames": n, "peak_rss_mb": cell["peak_rss_mb"], "fps": n / cell["seconds"]})
    growth = rows[1]["peak_rss_mb"] / rows[0]["peak_rss_mb"] - 1
    rows[1]["rss_growth_pct"] = 100 * growth
    rows[1]["target"] = (f"peak RSS within {100 * TARGETS['rss_growth']:.0f}%: "
                         f"{'met' if abs(growth) <= TARGETS['rss_growth'] else 'not met'}")
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--frames", type=int, default=16, help="frames per test clip (quality)")
    parser.add_argument("--speed-frames", type=int, default=6, help="frames timed per speed cell")
    parser.add_argument("--memory-frames", nargs=2, type=int, default=(200, 2000), metavar=("SHORT", "LONG"))
    parser.add_argument("--memory-child", nargs=2, type=Path, metavar=("CLIP", "CKPT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        return memory_child(*args.memory_child)
    ckpt = checkpoint(args.checkpoint)
    with tempfile.TemporaryDirectory() as tmp:
        rows = quality(ckpt, test_clips(CACHE / f"video_clips_{args.frames}", args.frames), Path(tmp))
    rows += speed(ckpt, args.speed_frames) + memory(ckpt, args.memory_frames)
    for what in ("quality", "speed", "memory"):
        mine = [r for r in rows if r["what"] == what]
        print_table(mine, list(dict.fromkeys(k for r in mine for k in r)))
    targets = {r["what"]: r["target"] for r in rows if "target" in r}
    path = write_results("video", rows, {"checkpoint": str(ckpt.relative_to(ROOT) if ckpt.is_relative_to(ROOT)
                                                           else ckpt), "render": RENDER,
                                         "clips": f"4 x {args.frames} frames, 320x240 (tests/clips.py)",
                                         "targets": "; ".join(targets.values())})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
