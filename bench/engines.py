"""Engines on the CPU: speed at render 256 and at 24 MP, peak memory, and the color change against torch fp32, in
one run on the same photos.

- speed: img/s of the whole inference path (Colorizer.colorize_prepared: full-size L, network at render 256,
  upsampling, recombination; no decode or encode) over a folder of 640x480 photos, one photo per call, and of the
  network call alone on the same photo right after it (interleaved, so both see the same machine load), with the
  path's steps timed one by one (where the time goes); the engines alternate over --rounds rounds and each keeps
  its best round;
- 24 MP: seconds for one 6000x4000 photo (the same photo for every engine, best of --repeats after a warm-up at
  its render shape), each engine in a fresh process;
- peak memory: peak RSS (VmHWM) of a fresh process per engine that loads the model and colorizes the 640x480 photos,
  and of the 24 MP one; the ONNX engines' processes import neither torch nor fastai (as a torch-free install runs);
- color change: CIEDE2000 between each engine's 8-bit output and torch fp32's, per pixel over the embedded held-out
  photos (mean and 99th percentile). Targets: onnx-int8 >= 2x torch fp32 img/s, mean < 1.0, p99 < 5.

The checkpoint is a short stage-1 run on the embedded photos (random weights amplify noise, so they would overstate
the change): made once with pretrain_generator.py (a few minutes), or --checkpoint. The int8 model is calibrated on
the embedded training photos (never the held-out ones).

    python bench/engines.py [--checkpoint CKPT] [--images 8] [--rounds 2] [--repeats 2]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as colorize.py runs

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from gan_colorizer.colorize.api import Colorizer, prepare  # noqa: E402 (torch-free: the children of ONNX engines)
from gan_colorizer.data.images import list_images, open_image  # noqa: E402

TRAIN = ["--no-pretrained", "--image-size", "128", "--epochs", "2", "--epoch-size", "200", "--batch-size", "8"]
ENGINES = {"torch fp32": ("torch", "off"), "torch bf16": ("torch", "bf16"), "onnx fp32": ("onnx", None),
           "onnx int8": ("onnx-int8", None)}


def cache() -> Path:
    from bench.common import CACHE
    return CACHE


def bench_checkpoint() -> Path:
    from bench.common import trained_checkpoint
    return trained_checkpoint("bench-engines", TRAIN)


def exported(ckpt: Path, int8: bool) -> Path:
    """The checkpoint exported to ONNX (fp32, or int8 calibrated on the embedded training photos)."""
    from gan_colorizer.colorize.onnx import main as export
    from gan_colorizer.data.dataset import sample_photos
    out = cache() / f"engines_{ckpt.parent.name}{'_int8' if int8 else ''}.onnx"
    calibration = cache() / "engines_calibration"
    if int8:
        calibration.mkdir(parents=True, exist_ok=True)
        for p in sample_photos()[0]:
            shutil.copy(p, calibration / p.name)
    made_by = ("onnx.py", "onnx_graph.py", "int8.py")
    recipe = [ckpt] + [ROOT / "gan_colorizer" / "colorize" / name for name in made_by]
    if not out.is_file() or out.stat().st_mtime < max(p.stat().st_mtime for p in recipe):  # or the way it is made
        args = ["--checkpoint", str(ckpt), "--out", str(out)] + (["--int8", "--calibration", str(calibration)]
                                                                 if int8 else [])
        if export(args) != 0:
            raise SystemExit("export failed")
    return out


def sources(ckpt: Path) -> dict:
    """{engine name: (the file it loads, --engine, --amp)}."""
    return {name: (ckpt if engine == "torch" else exported(ckpt, engine == "onnx-int8"), engine, amp or "off")
            for name, (engine, amp) in ENGINES.items()}


def load(source: Path, engine: str, amp: str) -> Colorizer:
    return Colorizer.from_checkpoint(source, "cpu", 256, amp, channels_last=True, engine=engine)


def timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


def speed(colorizer, items: list) -> dict:
    """img/s of the inference path and of the network alone, and ms per step, over the photos, one per call."""
    colorizer.colorize_prepared(items[:1])  # warm-up: first-call allocations, oneDNN / onnxruntime kernel choice
    pipeline, total = colorizer.pipeline, dict.fromkeys(("path", "full_l", "small_l", "network", "recombine"), 0.0)
    with pipeline.context():
        for item in items:
            total["path"] += timed(colorizer.colorize_prepared, [item])[1]
            gray_l, seconds = timed(pipeline.full_res_l, item.pixels)
            total["full_l"] += seconds
            small_l, seconds = timed(pipeline.small_l, [gray_l], colorizer.render_shape(*item.pixels.shape[:2]))
            total["small_l"] += seconds
            small_ab, seconds = timed(pipeline.predict, small_l)
            total["network"] += seconds
            total["recombine"] += timed(colorizer._recombine, item, gray_l, small_ab)[1]
    n = len(items)
    return {"img_s": n / total["path"], "network_img_s": n / total["network"],
            **{f"{k}_ms": 1000 * total[k] / n for k in ("full_l", "small_l", "network", "recombine")}}


def vm_hwm_mb() -> float:
    """This process's peak RSS (VmHWM; bench.common.peak_rss_mb would import torch into the ONNX children)."""
    status = Path("/proc/self/status").read_text()
    return int(status.split("VmHWM:")[1].split()[0]) / 1024


def child(source: str, engine: str, amp: str, photos: list[str], repeats: int) -> None:
    """A fresh process: load the engine, colorize the photos (one big photo: best of `repeats` after a warm-up on a
    small copy with its render shape), print JSON with the seconds per photo and the peak RSS."""
    colorizer = load(Path(source), engine, amp)
    loaded = vm_hwm_mb()
    if len(photos) == 1:
        big = open_image(photos[0])
        colorizer.colorize_prepared([prepare(big.reduce(max(1, min(big.size) // 400)))])
        del big  # the warm-up's copy of the photo is not counted in the peak
    items = [prepare(open_image(p)) for p in photos]
    if len(items) == 1:
        seconds = min(timed(colorizer.colorize_prepared, items)[1] for _ in range(repeats))
    else:
        seconds = timed(lambda: [colorizer.colorize_prepared([item]) for item in items])[1] / len(items)
    print(json.dumps({"s_per_photo": seconds, "peak_rss_mb": vm_hwm_mb(), "rss_after_load_mb": loaded,
                      "torch_imported": "torch" in sys.modules}))


def in_child(source: Path, engine: str, amp: str, photos: list, repeats: int = 1) -> dict:
    from bench.common import run_child
    return run_child(__file__, "--child", source, engine, amp, "--repeats", repeats, *photos)


def color_change(colorizers_: dict, photos: list) -> dict:
    """{engine: (mean, p99) CIEDE2000 of its output against torch fp32's, over every pixel of the photos}."""
    import numpy as np
    import torch

    from gan_colorizer.metrics import delta_e2000_map, image_lab

    def lab(colorizer, photo):
        return image_lab(torch.from_numpy(np.asarray(colorizer.colorize(photo))).permute(2, 0, 1)[None])
    reference = [lab(colorizers_["torch fp32"], p) for p in photos]
    out = {}
    for name, colorizer in colorizers_.items():
        de = torch.cat([delta_e2000_map(lab(colorizer, p), ref).flatten() for p, ref in zip(photos, reference)])
        out[name] = (float(de.mean()), float(torch.quantile(de.double(), 0.99)))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2, help="24 MP: best of this many calls per engine")
    parser.add_argument("--child", nargs=3, metavar=("SOURCE", "ENGINE", "AMP"), help=argparse.SUPPRESS)
    parser.add_argument("photos", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child, args.photos, args.repeats)
        return 0
    from bench.colorize_speed import BIG, big_jpeg
    from bench.common import photo_folder, print_table, write_results
    from gan_colorizer.data.dataset import sample_photos
    ckpt = args.checkpoint or bench_checkpoint()
    files = sources(ckpt)
    made = {name: load(*source) for name, source in files.items()}
    folder = sorted(map(str, list_images(photo_folder(args.images))))
    items = [prepare(open_image(p)) for p in folder]
    rates = {}
    for _ in range(args.rounds):
        for name, colorizer in made.items():
            now = speed(colorizer, items)
            rates[name] = now if name not in rates or now["img_s"] > rates[name]["img_s"] else rates[name]
    change = color_change(made, sample_photos()[1])
    del made
    memory = {name: in_child(*files[name], folder) for name in files}
    big = {name: in_child(*files[name], [big_jpeg(24)], repeats=args.repeats) for name in files}
    rows = [{"engine": name, "photos": "640x480", "render": 256, **rates[name],
             "vs_torch_fp32": rates[name]["img_s"] / rates["torch fp32"]["img_s"], "de00_mean": change[name][0],
             "de00_p99": change[name][1], "peak_rss_mb": memory[name]["peak_rss_mb"],
             "rss_after_load_mb": memory[name]["rss_after_load_mb"]} for name in files]
    rows += [{"engine": name, "photos": "x".join(map(str, BIG[24])), "render": 256, **big[name],
              "vs_torch_fp32": big["torch fp32"]["s_per_photo"] / big[name]["s_per_photo"]} for name in files]
    print_table(rows[:len(files)], ["engine", "img_s", "network_img_s", "vs_torch_fp32", "full_l_ms", "small_l_ms",
                                    "network_ms", "recombine_ms", "de00_mean", "de00_p99", "peak_rss_mb"])
    print_table(rows[len(files):], ["engine", "photos", "s_per_photo", "vs_torch_fp32", "peak_rss_mb",
                                    "rss_after_load_mb", "torch_imported"])
    path = write_results("engines", rows, {"checkpoint": str(ckpt.relative_to(ROOT) if ckpt.is_relative_to(ROOT)
                                                             else ckpt), "photos": f"{len(items)} x 640x480",
                                           "held_out": f"{len(sample_photos()[1])} embedded validation photos"})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
