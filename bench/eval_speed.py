"""Evaluation throughput with and without the metric computations, and what each metric costs.

- compute: one batch already on the device; 'inference' = the ResNet U-Net's prediction plus the gray baseline's
  (L -> ab -> 8-bit sRGB), 'with metrics' = the same plus every per-image metric for both and the truth's
  colorfulness (what evaluate.py adds per batch; LPIPS / FID only when --perceptual, with random weights);
- end to end: evaluate() on a folder of 640x480 JPEGs (decode in workers, CSV, summary), against the same
  loader feeding inference only.

    python bench/eval_speed.py [--size 256] [--batch 8] [--steps 3] [--images 48] [--perceptual] [--threads N]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import peak_rss_mb, photo_folder, print_table, timed, write_results  # noqa: E402
from gan_colorizer import metrics as M
from gan_colorizer.color import lab_to_model, rgb_to_lab  # noqa: E402
from gan_colorizer.config import defaults  # noqa: E402
from gan_colorizer.evaluate.lpips_fid import FidInception, Lpips  # noqa: E402
from gan_colorizer.evaluate.protocols import EvalDataset, collate  # noqa: E402
from gan_colorizer.evaluate.run import Candidate, EvalOptions, evaluate, predict  # noqa: E402
from gan_colorizer.data.images import list_images  # noqa: E402
from gan_colorizer.models.registry import build_generator  # noqa: E402
from gan_colorizer.runtime import Runtime  # noqa: E402


def candidates(rt: Runtime) -> list[Candidate]:
    generator = rt.place(build_generator(defaults("pretrain").model, load_pretrained=False)).eval()
    return [Candidate("gray"), Candidate("model", generator)]


def truth_batch(paths, size: int, batch: int, rt: Runtime) -> torch.Tensor:
    items = [EvalDataset(paths, "center-crop", size)[i] for i in range(batch)]
    return collate(items)["pixels"].to(rt.device)


def inference(cands, truth, size, rt) -> dict:
    truth_lab = rgb_to_lab(truth.float() / 255)
    gray_l, _ = lab_to_model(truth_lab)
    return {c.label: predict(c, gray_l, size, rt) for c in cands}, truth_lab


def with_metrics(cands, truth, size, rt, nets=None) -> None:
    preds, truth_lab = inference(cands, truth, size, rt)
    M.colorfulness(truth)
    with torch.inference_mode():
        for pred in preds.values():
            M.image_metrics(pred, truth, truth_lab)
            if nets:
                nets["lpips"](pred.float() / 255, truth.float() / 255)
                nets["fid"](pred.float() / 255)
        if nets:
            nets["fid"](truth.float() / 255)


def metric_costs(truth, rt, steps: int) -> dict:
    """ms per image of each metric (one prediction against the truth)."""
    pred = truth.flip(-1)
    lab_t, lab_p = rgb_to_lab(truth.float() / 255), rgb_to_lab(pred.float() / 255)
    parts = {"lab": lambda: rgb_to_lab(pred.float() / 255), "psnr": lambda: M.psnr(pred, truth),
             "ssim": lambda: M.ssim(pred, truth), "delta_e2000": lambda: M.delta_e2000(lab_p, lab_t),
             "colorfulness": lambda: M.colorfulness(pred), "auc_ab": lambda: M.auc_ab(lab_p[:, 1:], lab_t[:, 1:])}
    n = truth.shape[0]
    return {f"{k}_ms": 1000 / timed(f, 1, steps, n, rt.device) for k, f in parts.items()}


def end_to_end(paths, folder: Path, size: int, batch: int, workers: int, rt: Runtime) -> tuple[float, float]:
    """(img/s of loader + inference, img/s of evaluate()) over the same files."""
    cands = candidates(rt)
    loader = DataLoader(EvalDataset(paths, "center-crop", size), batch_size=batch, num_workers=workers,
                        collate_fn=collate)
    start = time.perf_counter()
    for b in loader:
        inference(cands, b["pixels"].to(rt.device), size, rt)
    plain = len(paths) / (time.perf_counter() - start)
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / "model.pt"
        cfg = defaults("pretrain")
        torch.save({"stage": "pretrain", "config": cfg.to_dict(), "generator": cands[1].generator.state_dict()}, ckpt)
        start = time.perf_counter()
        evaluate(EvalOptions(checkpoints=[str(ckpt)], data=str(folder), out=str(Path(tmp) / "out"), image_size=size,
                             batch_size=batch, num_workers=workers, limit=len(paths), grid_images=0,
                             download=False))  # LPIPS / FID only when cached, as before downloads existed
        full = len(paths) / (time.perf_counter() - start)  # includes building the generator from the checkpoint
    return plain, full


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3, help="timed batches per measurement")
    parser.add_argument("--images", type=int, default=48, help="images for the end-to-end runs (0 = skip them)")
    parser.add_argument("--num-workers", type=int, default=2)
    parser.add_argument("--perceptual", action="store_true", help="also time LPIPS and FID (random weights)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rt = Runtime("auto", "off", channels_last=True)
    folder = photo_folder()
    paths = list_images(folder)
    truth = truth_batch(paths, args.size, args.batch, rt)
    cands = candidates(rt)
    row = {"size": args.size, "batch": args.batch, "threads": torch.get_num_threads(), "device": rt.device.type}
    row["inference_img_s"] = timed(lambda: inference(cands, truth, args.size, rt), 1, args.steps, args.batch, rt.device)
    row["metrics_img_s"] = timed(lambda: with_metrics(cands, truth, args.size, rt), 1, args.steps, args.batch, rt.device)
    row["metrics_overhead"] = row["inference_img_s"] / row["metrics_img_s"] - 1
    if args.perceptual:
        nets = {"lpips": Lpips().eval().to(rt.device), "fid": FidInception().eval().to(rt.device)}
        row["perceptual_img_s"] = timed(lambda: with_metrics(cands, truth, args.size, rt, nets), 1, args.steps,
                                        args.batch, rt.device)
        row["perceptual_overhead"] = row["inference_img_s"] / row["perceptual_img_s"] - 1
    costs = metric_costs(truth, rt, args.steps)
    if args.images:
        row["loader_inference_img_s"], row["evaluate_img_s"] = end_to_end(
            paths[: args.images], folder, args.size, args.batch, args.num_workers, rt)
    print_table([row], [k for k in row if k != "device"])
    print("\nper-image cost of each metric (ms, one prediction):")
    print_table([costs], list(costs))
    path = write_results("eval_speed", [row | costs], {"peak_rss_mb": peak_rss_mb(), "steps": args.steps})
    print(f"\nwritten {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
