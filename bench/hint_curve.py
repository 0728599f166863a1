"""Colour hints (issue 25): the hint curve of a hint model trained on the built-in photos.

evaluate.py --hints 0,1,2,5,10,20,50,100 on the embedded held-out photos (3, centre-crop 256), CIEDE2000 and PSNR per
count; targets: CIEDE2000 with 10 hints at least 25% lower than with none, with 100 hints at least 50% lower.

The model is a stage-1 --hints run on the embedded training photos (8) with the recipe in TRAIN, trained once into
checkpoints/bench-hint-curve-STEPS; its last.pt is scored (best.pt is chosen on automatic validation). pix2pix's
ResNet-9 generator at 32 filters, 128 px crops, bf16 autocast (twice fp32's speed on a CPU with AVX-512 BF16; on one
without, emulated and slower than fp32: pass --amp off there by editing TRAIN): on a 2-core CPU the U-Net on
ResNet-18 takes 2.2x its time per step. --hue-jitter 180: on 8 photos the model otherwise learns their colours from L
and leaves the hints unused (docs/hints.md); --hint-points 31 (Zhang et al.'s mean is 7): more hinted pixels per
step for a run this short.

    python bench/hint_curve.py
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.common import CACHE, print_table, trained_checkpoint, write_results  # noqa: E402

TRAIN = ["--hints", "--hint-points", "31", "--hue-jitter", "180", "--generator", "resnet9", "--unet-filters", "32",
         "--image-size", "128", "--batch-size", "8", "--lr", "3e-4", "--epoch-size", "400", "--amp", "bf16",
         "--epochs", "100", "--max-steps", "{steps}"]
STEPS = 1200  # the committed run: 17 minutes of a 2-core CPU with AVX-512 BF16 (2026-12-08)
COUNTS = "0,1,2,5,10,20,50,100"
TARGETS = {10: 0.25, 100: 0.50}  # CIEDE2000 this much lower than with no hints


def hint_curve(ckpt: Path) -> tuple[dict, dict]:
    """(the model's curve, the gray baseline's metrics: ab = 0, what no colour scores) on the held-out photos."""
    from gan_colorizer.evaluate.run import EvalOptions, evaluate
    from gan_colorizer.metrics import GRAY
    summary = evaluate(EvalOptions(checkpoints=[str(ckpt)], data="embedded:val", out=str(CACHE / "hint_curve"),
                                   image_size=256, hints=COUNTS, num_workers=0, grid_images=0, download=False))
    return next(iter(summary["hints"]["curves"].values())), summary["models"][GRAY]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=STEPS, help="training steps of the hint model")
    args = parser.parse_args()
    flags = [f.format(steps=args.steps) for f in TRAIN]
    ckpt = trained_checkpoint(f"bench-hint-curve-{args.steps}", flags).with_name("last.pt")
    curve, gray = hint_curve(ckpt)
    de = dict(zip(curve["hints"], curve["delta_e2000"]))
    rows = [{"hints": k, "psnr": p, "delta_e2000": d, "vs_no_hints": d / de[0] - 1,
             "vs_gray": d / gray["delta_e2000"] - 1}
            for k, p, d in zip(curve["hints"], curve["psnr"], curve["delta_e2000"])]
    print_table(rows, ["hints", "psnr", "delta_e2000", "vs_no_hints", "vs_gray"])
    met = {k: 1 - de[k] / de[0] >= drop for k, drop in TARGETS.items()}
    print("; ".join(f"{k} hints: {1 - de[k] / de[0]:.0%} lower (target {drop:.0%}: {'met' if met[k] else 'not met'})"
                    for k, drop in TARGETS.items()))
    path = write_results("hint_curve", rows, {
        "data": "embedded:val (3 photos), center-crop 256", "model": " ".join(flags),
        "targets": {f"{k} hints": f">= {drop:.0%} lower CIEDE2000 than none" for k, drop in TARGETS.items()},
        "met": {f"{k} hints": v for k, v in met.items()},
        "gray_baseline": {"psnr": gray["psnr"], "delta_e2000": gray["delta_e2000"]}})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
