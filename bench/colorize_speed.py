"""Colorization throughput and full-resolution cost.

- folder: colorize.py's path (decode in threads -> full-size L -> network at render size -> recombination ->
  PNG encode and atomic write in threads) over a folder of 640x480 JPEGs, vs the pure network forward on
  in-memory tensors of the same render shape (target: folder >= 80% of pure). CPU seconds per image are
  reported too: on a shared machine they are steadier than wall-clock rates;
- big: latency and peak RSS of one 12 MP and one 24 MP JPEG, and of a folder of 24 MP JPEGs, each in its own
  process so the RSS is its own (target on CPU: peak RSS < 2.5 GB for 24 MP). Latency (per photo) counts
  decode, colorization and the write, not the model load; the RSS includes the interpreter, torch and the model.

The generator has random weights (speed and memory do not depend on them).

    python bench/colorize_speed.py [--images 16] [--batch-size 4] [--formats png jpg] [--sizes 12 24]
                                   [--folder-copies 4]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as colorize.py runs, for the pure forward too
import torch  # noqa: E402
from PIL import Image  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import (  # noqa: E402
    CACHE,
    peak_rss_mb,
    photo_folder,
    print_table,
    random_checkpoint,
    run_child,
    timed,
    write_results,
)
from gan_colorizer.colorize.cli import Report, build_parser, colorize_jobs  # noqa: E402
from gan_colorizer.colorize.files import plan_jobs  # noqa: E402

BIG = {12: (4240, 2832), 24: (6000, 4000)}


def big_jpeg(megapixels: int) -> Path:
    """A photo upscaled to 12 or 24 MP, saved as a quality-90 JPEG (made once)."""
    from gan_colorizer.data.dataset import sample_photos
    from gan_colorizer.data.images import load_rgb
    path = CACHE / f"photo_{megapixels}mp.jpg"
    if not path.is_file():
        CACHE.mkdir(parents=True, exist_ok=True)
        load_rgb(sample_photos()[0][-1]).resize(BIG[megapixels], Image.BICUBIC).save(path, quality=90)
    return path


def cli_args(extra: list[str]):
    return build_parser().parse_args(["x", "--checkpoint", "x", "--out", "x", *extra])


def run_folder(colorizer, folder: Path, args) -> tuple[float, float]:
    """(img/s, process CPU seconds per image) of colorize.py's pipeline over the folder, into a fresh output folder."""
    with tempfile.TemporaryDirectory() as out:
        jobs = plan_jobs([str(folder)], Path(out), args.format)
        report = Report(len(jobs), 0)
        start, cpu = time.perf_counter(), time.process_time()
        colorize_jobs(colorizer, jobs, args, report)
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
        report.close()
        assert report.tally.done == len(jobs), "some photos failed"
    return len(jobs) / elapsed, cpu / len(jobs)


def measure_folder(ckpt: Path, n: int, batch: int, device: str) -> dict:
    """Wall-clock img/s of both paths, and CPU seconds per image (steadier than wall time on a busy machine)."""
    from gan_colorizer import Colorizer
    from gan_colorizer.colorize.inference import forward_ab
    colorizer = Colorizer.from_checkpoint(ckpt, device=device)
    shape = colorizer.render_shape(480, 640)
    small_l = torch.rand(batch, 1, *shape, device=colorizer.device) * 2 - 1
    steps = max(1, n // batch)
    with torch.inference_mode():
        cpu = time.process_time()
        pure = timed(lambda: forward_ab(colorizer.generator, small_l, colorizer.runtime), warmup=2, steps=steps,
                     images_per_step=batch, device=colorizer.device)
        pure_cpu = (time.process_time() - cpu) / ((steps + 2) * batch)
    args = cli_args(["--batch-size", str(batch)])
    run_folder(colorizer, photo_folder(2 * batch, root=CACHE / "photos_warmup"), args)  # warm-up
    folder_rate, folder_cpu = run_folder(colorizer, photo_folder(n), args)
    return {"what": f"{n} photos 640x480 -> png", "render": f"{shape[0]}x{shape[1]}", "batch": batch,
            "amp": colorizer.runtime.amp_name, "pure_img_s": pure, "folder_img_s": folder_rate,
            "folder_vs_pure": folder_rate / pure, "pure_cpu_s_img": pure_cpu, "folder_cpu_s_img": folder_cpu}


def one_image(ckpt: str, image: str, fmt: str, device: str) -> None:
    """Child process: load the model, then colorize a file (or a folder) as colorize.py does; print JSON."""
    from gan_colorizer import Colorizer
    colorizer = Colorizer.from_checkpoint(ckpt, device=device)
    loaded_mb = peak_rss_mb()
    with tempfile.TemporaryDirectory() as out:
        args = cli_args(["--format", fmt])
        jobs = plan_jobs([image], Path(out), fmt)
        report = Report(len(jobs), 0)
        start = time.perf_counter()
        colorize_jobs(colorizer, jobs, args, report)
        latency = (time.perf_counter() - start) / len(jobs)
        report.close()
    print(json.dumps({"latency_s": latency, "peak_rss_mb": peak_rss_mb(), "rss_after_model_load_mb": loaded_mb,
                      "ok": report.tally.done == len(jobs)}))


def measure_big(ckpt: Path, megapixels: int, fmt: str, device: str, copies: int = 1) -> dict:
    """One photo of that size, or a folder of `copies` of it, colorized in a fresh process."""
    path = big_jpeg(megapixels)
    if copies > 1:
        folder = CACHE / f"folder_{copies}x{megapixels}mp"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(copies):
            if not (folder / f"{i}.jpg").is_file():
                shutil.copyfile(path, folder / f"{i}.jpg")
        path = folder
    row = run_child(__file__, "--one-image", path, "--checkpoint", ckpt, "--formats", fmt, "--device", device)
    what = f"{megapixels} MP JPEG -> {fmt}" if copies == 1 else f"folder of {copies} x {megapixels} MP -> {fmt}"
    return {"what": what, "size": "x".join(map(str, BIG[megapixels])), **row}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=16, help="photos in the folder measurement")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--sizes", type=int, nargs="*", default=[12, 24], choices=sorted(BIG), help="megapixels")
    parser.add_argument("--formats", nargs="+", default=["png", "jpg"], choices=["png", "jpg"])
    parser.add_argument("--folder-copies", type=int, default=4,
                        help="also a folder of this many copies of the largest photo, as jpg (0: skip)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--checkpoint", help=argparse.SUPPRESS)
    parser.add_argument("--one-image", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one_image:
        one_image(args.checkpoint, args.one_image, args.formats[0], args.device)
        return 0
    ckpt = random_checkpoint()
    folder = measure_folder(ckpt, args.images, args.batch_size, args.device) if args.images else None
    if folder:
        print_table([folder], ["what", "render", "batch", "amp", "pure_img_s", "folder_img_s", "folder_vs_pure",
                               "pure_cpu_s_img", "folder_cpu_s_img"])
    big = [measure_big(ckpt, mp, fmt, args.device) for mp in args.sizes for fmt in args.formats]
    if args.sizes and args.folder_copies > 1:
        big.append(measure_big(ckpt, max(args.sizes), "jpg", args.device, args.folder_copies))
    if big:
        print()
        print_table(big, ["what", "size", "latency_s", "peak_rss_mb", "rss_after_model_load_mb"])
    path = write_results("colorize_speed", ([folder] if folder else []) + big)
    print(f"\nwritten {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
