"""Engines on the CPU: speed at render 256 and the color change against torch fp32, in one run on the same photos.

- speed: img/s of the whole inference path (Colorizer.colorize_prepared: full-size L, network at render 256,
  upsampling, recombination; no decode or encode) over a folder of 640x480 photos, one photo per call, and of the
  network call alone; the engines alternate over --rounds rounds and each keeps its best round;
- color change: CIEDE2000 between each engine's 8-bit output and torch fp32's, per pixel over the embedded held-out
  photos (mean and 99th percentile). Targets: onnx-int8 >= 2x torch fp32 img/s, mean < 1.0, p99 < 5.

The checkpoint is a short stage-1 run on the embedded photos (random weights amplify noise, so they would overstate
the change): made once with pretrain_generator.py (a few minutes), or --checkpoint. The int8 model is calibrated on
the embedded training photos (never the held-out ones).

    python bench/engines.py [--checkpoint CKPT] [--images 8] [--rounds 2]
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as colorize.py runs
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.common import CACHE, photo_folder, print_table, write_results  # noqa: E402
from gan_colorizer.colorize.api import Colorizer, prepare  # noqa: E402
from gan_colorizer.images import list_images, open_image  # noqa: E402

TRAIN = ["--no-pretrained", "--image-size", "128", "--epochs", "2", "--epoch-size", "200", "--batch-size", "8"]
ENGINES = {"torch fp32": ("torch", "off"), "torch bf16": ("torch", "bf16"), "onnx fp32": ("onnx", None),
           "onnx int8": ("onnx-int8", None)}


def bench_checkpoint() -> Path:
    """checkpoints/bench-engines/best.pt: a short stage-1 run on the embedded photos (trained once)."""
    path = ROOT / "checkpoints" / "bench-engines" / "best.pt"
    if not path.is_file():
        subprocess.run([sys.executable, str(ROOT / "pretrain_generator.py"), *TRAIN, "--name", "bench-engines"],
                       check=True, cwd=ROOT)
    return path


def exported(ckpt: Path, int8: bool) -> Path:
    """The checkpoint exported to ONNX (fp32, or int8 calibrated on the embedded training photos)."""
    from gan_colorizer.colorize.onnx import main as export
    from gan_colorizer.data import sample_photos
    out = CACHE / f"engines_{ckpt.parent.name}{'_int8' if int8 else ''}.onnx"
    calibration = CACHE / "engines_calibration"
    if int8:
        calibration.mkdir(parents=True, exist_ok=True)
        for p in sample_photos()[0]:
            shutil.copy(p, calibration / p.name)
    if not out.is_file() or out.stat().st_mtime < ckpt.stat().st_mtime:
        args = ["--checkpoint", str(ckpt), "--onnx", str(out)] + (["--int8", "--calibration", str(calibration)]
                                                                 if int8 else [])
        if export(args) != 0:
            raise SystemExit("export failed")
    return out


def colorizers(ckpt: Path) -> dict:
    made = {}
    for name, (engine, amp) in ENGINES.items():
        source = ckpt if engine == "torch" else exported(ckpt, engine == "onnx-int8")
        made[name] = Colorizer.from_checkpoint(source, "cpu", 256, amp or "off", channels_last=True, engine=engine)
    return made


def speed(colorizer, items: list) -> tuple[float, float]:
    """(img/s of the inference path, img/s of the network call alone) over the prepared photos, one per call."""
    colorizer.colorize_prepared(items[:1])  # warm-up: first-call allocations, oneDNN / onnxruntime kernel choice
    start = time.perf_counter()
    for item in items:
        colorizer.colorize_prepared([item])
    path = len(items) / (time.perf_counter() - start)
    from gan_colorizer.colorize.inference import forward_ab
    gray_l = torch.rand(1, 1, *colorizer.render_shape(*items[0].pixels.shape[:2])) * 2 - 1
    start = time.perf_counter()
    for _ in items:
        forward_ab(colorizer.generator, gray_l, colorizer.runtime)
    return path, len(items) / (time.perf_counter() - start)


def color_change(colorizers_: dict, photos: list) -> dict:
    """{engine: (mean, p99) CIEDE2000 of its output against torch fp32's, over every pixel of the photos}."""
    import numpy as np

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
    args = parser.parse_args()
    from gan_colorizer.data import sample_photos
    ckpt = args.checkpoint or bench_checkpoint()
    made = colorizers(ckpt)
    items = [prepare(open_image(p)) for p in list_images(photo_folder(args.images))]
    rates = {name: (0.0, 0.0) for name in made}
    for _ in range(args.rounds):
        for name, colorizer in made.items():
            rates[name] = tuple(max(a, b) for a, b in zip(rates[name], speed(colorizer, items)))
    change = color_change(made, sample_photos()[1])
    base = rates["torch fp32"][0]
    rows = [{"engine": name, "render": 256, "img_s": rates[name][0], "network_img_s": rates[name][1],
             "vs_torch_fp32": rates[name][0] / base, "de00_mean": change[name][0], "de00_p99": change[name][1]}
            for name in made]
    print_table(rows, list(rows[0]))
    path = write_results("engines", rows, {"checkpoint": str(ckpt.relative_to(ROOT) if ckpt.is_relative_to(ROOT)
                                                             else ckpt), "photos": f"{len(items)} x 640x480",
                                           "held_out": f"{len(sample_photos()[1])} embedded validation photos"})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
