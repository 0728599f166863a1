"""int8 calibration sets against the export's check: how far int8 moves ab from fp32 (Lab units, the export's own
figures: mean over the photos and the worst photo's mean) on the calibration photos and on the 11 embedded sample
photos, for sets of 1 to 64 ordinary photos and for sets that do not represent photos (one 1x1, dark, tiny, noise or
gray-ramp image); what --max-change's default (int8.MAX_CHANGE) was chosen from.

Two checkpoints: the engines bench's short stage-1 run (bench/engines.py, trained once) and random weights (what the
tests export). Ordinary photos are COCO-sized JPEGs cut from the embedded sample photos (bench.common.photo_folder).

    python bench/int8_calibration.py [--checkpoint CKPT] [--image-size 256] [--counts 1 4 16 64]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.common import CACHE, photo_folder, print_table, random_checkpoint, write_results  # noqa: E402


def one_image_sets() -> dict[str, Path]:
    """Calibration folders of one image each that do not represent photos (made once)."""
    from gan_colorizer.data.dataset import sample_photos
    from gan_colorizer.data.images import load_rgb
    chelsea = load_rgb(next(p for p in sum(sample_photos(), []) if p.stem == "chelsea"))
    rng = np.random.default_rng(0)
    images = {"1x1": Image.new("RGB", (1, 1), (120, 90, 60)),
              "16x16 crop": chelsea.crop((100, 100, 116, 116)),
              "dark photo (x0.15)": Image.fromarray((np.asarray(chelsea) * 0.15).astype(np.uint8)),
              "noise": Image.fromarray(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)),
              "gray ramp": Image.fromarray(np.tile(np.linspace(0, 255, 256).astype(np.uint8), (256, 1)))}
    folders = {}
    for name, image in images.items():
        folder = CACHE / "int8_calibration" / name.split(" ")[0].replace("x0.15", "")
        if not (folder / "0.png").is_file():
            folder.mkdir(parents=True, exist_ok=True)
            image.save(folder / "0.png")
        folders[f"one {name}"] = folder
    return folders


def measure(ckpt: Path, label: str, sets: dict[str, Path], image_size: int) -> list[dict]:
    """One row per calibration set: the export's check figures (nothing refused: --max-change 0) and its seconds."""
    from gan_colorizer.models.registry import load_generator
    from gan_colorizer.colorize.inference import size_multiple
    from gan_colorizer.colorize.int8 import MAX_CHANGE, WORST_FACTOR, calibration_inputs, export_int8
    from gan_colorizer.colorize.onnx import export_onnx, model_metadata
    from gan_colorizer.models.classifier import set_decoding
    generator, cfg, _ = load_generator(ckpt, "cpu")
    multiple = size_multiple(generator)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = export_onnx(generator, Path(tmp) / "fp32.onnx", multiple,
                           metadata=model_metadata(cfg, multiple, set_decoding(generator)))
        for name, folder in sets.items():
            args = SimpleNamespace(calibration_method="minmax", keep_float=(), max_change=0, calibration=folder,
                                   image_size=image_size, weight_bits="auto")
            start = time.perf_counter()
            total, inputs = calibration_inputs(folder, image_size, multiple, 200)
            _, (own, sample) = export_int8(fp32, Path(tmp) / "checked.onnx", inputs, total, args, multiple)
            refused = any(c.mean > MAX_CHANGE or c.worst > WORST_FACTOR * MAX_CHANGE for c in (own, sample))
            rows.append({"checkpoint": label, "calibration": name, "photos": own.photos,
                         "calibration_mean": own.mean, "calibration_worst": own.worst, "sample_mean": sample.mean,
                         "sample_worst": sample.worst, "refused_by_default": refused,
                         "seconds": time.perf_counter() - start})
            print(rows[-1], flush=True)
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, default=None, help="default: the engines bench's checkpoint")
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--counts", type=int, nargs="+", default=[1, 4, 16, 64], help="sizes of the ordinary sets")
    args = parser.parse_args(argv)
    from bench.engines import bench_checkpoint
    from gan_colorizer.colorize.int8 import MAX_CHANGE, WORST_FACTOR
    sets = {f"{n} ordinary photo{'s' * (n != 1)}": photo_folder(n) for n in args.counts} | one_image_sets()
    trained = args.checkpoint or bench_checkpoint()
    rows = measure(trained, "trained (engines bench)", sets, args.image_size)
    rows += measure(random_checkpoint(), "random weights", sets, args.image_size)
    print_table(rows, ["checkpoint", "calibration", "calibration_mean", "calibration_worst", "sample_mean",
                       "sample_worst", "refused_by_default", "seconds"])
    extra = {"image_size": args.image_size, "max_change": MAX_CHANGE, "worst_factor": WORST_FACTOR}
    print(f"\nwritten {write_results('int8_calibration', rows, extra)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
