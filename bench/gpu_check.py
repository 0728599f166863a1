"""The first run on a lent GPU, in one command (make gpu-check): each check prints one line; the first failure stops
the run with one line naming it (exit 1). On CUDA it writes bench/results/gpu_check-cuda.json; a few minutes of
device time in all (torch.compile takes most of it).

    python bench/gpu_check.py            # on the GPU: every check, the JSON written
    python bench/gpu_check.py --dry-run  # anywhere: the plan, then each check tiny on this device, nothing written

Without CUDA it runs dry whatever the flags: what needs a GPU (fp16, torch.compile, NCCL) is named, not run.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.common import photo_folder, random_checkpoint, timed, write_results  # noqa: E402
from bench.train_speed import build, measure  # noqa: E402
from gan_colorizer.runtime import Runtime, resolve_amp, resolve_workers  # noqa: E402
from gan_colorizer.train.distributed import convert_sync_bn  # noqa: E402
from gan_colorizer.train.steps import BAD, SCALER_SKIP, gan_step  # noqa: E402

CHECKS = []  # (name, what it measures on a GPU, function(settings) -> list of result rows), in order


def check(name: str, measures: str):
    def register(fn):
        CHECKS.append((name, measures, fn))
        return fn
    return register


@check("device", "the GPU's name, compute capability and memory; what --amp auto and the loader workers resolve to")
def device(s) -> list[dict]:
    row = {"device": str(s.device), "amp_auto": Runtime(str(s.device), "auto").amp_name,
           "workers_auto": resolve_workers(-1, s.device), "torch": torch.__version__}
    if s.device.type == "cuda":
        props = torch.cuda.get_device_properties(s.device)
        row.update(gpu=props.name, capability=f"{props.major}.{props.minor}", memory_gb=round(props.total_memory / 2**30, 1),
                   cuda=torch.version.cuda, gpus=torch.cuda.device_count())
    return [row]


def variants(s) -> list[dict]:
    """The training set-ups to try: each precision the GPU runs (bf16 natively from 8.0; fp16 + scaler always), each
    eager and compiled; channels_last and SyncBatchNorm (converted as --sync-bn does) under autocast."""
    if s.dry:
        return [{"amp": "bf16", "compile": False, "sync_bn": True}]
    amps = (["bf16"] if resolve_amp("auto", s.device) == torch.bfloat16 else []) + ["fp16"]
    return [{"amp": amp, "compile": compiled, "sync_bn": True} for amp in amps for compiled in (False, True)]


@check("train steps", "stage-2 steps at SIZE px, batch BATCH, channels_last, SyncBatchNorm, under bf16 (compute "
                      "capability 8.0+) and fp16 + scaler, each eager and with torch.compile: img/s, scaler skips, "
                      "finite losses, peak memory")
def train_steps(s) -> list[dict]:
    rows = []
    for v in variants(s):
        rt = Runtime(str(s.device), v["amp"], channels_last=True, training=True)
        cfg, nets, opts = build("gan", rt)
        if v["sync_bn"]:
            nets.generator, nets.discriminator = (convert_sync_bn(n, rt.device) for n in (nets.generator,
                                                                                          nets.discriminator))
        if v["compile"]:
            from gan_colorizer.runtime import compile_net
            nets.generator, nets.discriminator = (compile_net(n, rt.device) for n in (nets.generator,
                                                                                      nets.discriminator))
        micro = [rt.batch(torch.randint(0, 256, (s.batch, 3, s.size, s.size), dtype=torch.uint8))]
        outcomes = []

        def step():
            parts, outcome = gan_step(rt, nets, opts, micro, cfg)
            outcomes.append(outcome)
            if outcome == BAD:
                raise RuntimeError(f"{v}: non-finite losses {parts}")
        if s.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(s.device)
        start = time.perf_counter()
        rate = timed(step, warmup=2, steps=s.steps, images_per_step=s.batch, device=rt.device)
        rows.append({**v, "img_s": rate, "seconds_with_warmup": time.perf_counter() - start,
                     "scaler_skips": outcomes.count(SCALER_SKIP), "steps": len(outcomes),
                     **({"gpu_peak_mb": torch.cuda.max_memory_allocated(s.device) / 2**20}
                        if s.device.type == "cuda" else {})})
    return rows


@check("data path", "stage-2 steps fed by the real data path (JPEG folder -> DataLoader workers -> Lab on the "
                    "device) against the same steps on tensors already there: img/s of each, their ratio")
def data_path(s) -> list[dict]:
    paths = sorted(str(p) for p in photo_folder(n=16 if s.dry else 96).glob("*.jpg"))
    row = measure("gan", s.size, s.batch, paths, "pair", s.steps, 1 if s.dry else -1, rounds=1 if s.dry else 2)
    return [{**row, "real_vs_pure": row["real_img_s"] / row["pure_img_s"]}]


@check("evaluation", "evaluate.py on a folder at SIZE px (fp32 without TF32, as --amp off) and with --amp auto: img/s")
def evaluation(s) -> list[dict]:
    from gan_colorizer.evaluate.run import EvalOptions, evaluate
    rows, folder = [], photo_folder(n=16)
    for amp in ("off", "auto"):
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):  # its tables: this check prints one line
                summary = evaluate(EvalOptions(checkpoints=[str(random_checkpoint())], data=str(folder), out=out,
                                               image_size=s.size, batch_size=s.batch, device=str(s.device), amp=amp,
                                               limit=8 if s.dry else None, grid_images=0,
                                               num_workers=0 if s.dry else -1,
                                               download=False))  # LPIPS / FID weights: not what this checks
            rows.append({"amp": amp, "images": summary["n_images"],
                         "img_s": summary["n_images"] / (time.perf_counter() - start)})
    return rows


@check("colorizing", "one 12-megapixel photo colorized at full resolution (render 256, --amp auto): seconds, twice "
                     "(the second without cuDNN's search: it is off outside training)")
def colorizing(s) -> list[dict]:
    from PIL import Image

    from gan_colorizer import Colorizer
    colorizer = Colorizer.from_checkpoint(random_checkpoint(), device=str(s.device))
    photo = Image.open(next(photo_folder(n=16).glob("*.jpg")))
    photo = photo if s.dry else photo.resize((4240, 2832))
    rows = []
    for attempt in (1, 2):
        start = time.perf_counter()
        out = colorizer.colorize(photo)
        rows.append({"attempt": attempt, "pixels": photo.width * photo.height, "seconds": time.perf_counter() - start,
                     "size_ok": out.size == photo.size})
        if not rows[-1]["size_ok"]:
            raise RuntimeError(f"colorized {out.size}, expected {photo.size}")
    return rows


@check("nccl", "two processes under torchrun with NCCL (2+ GPUs): 3 stage-2 steps at SIZE px with --sync-bn "
               "(torch's SyncBatchNorm) under --amp auto, last.pt written by rank 0")
def nccl(s) -> list[dict]:
    if s.dry or torch.cuda.device_count() < 2:
        return [{"skipped": f"{torch.cuda.device_count()} CUDA device(s); needs 2"}]
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               str(ROOT / "train_gan.py"), "--data", str(photo_folder(n=16)), "--image-size", str(s.size),
               "--batch-size", "8", "--max-steps", "3", "--sync-bn", "--no-pretrained", "--name", "gpu-check",
               "--runs-dir", f"{tmp}/runs", "--checkpoints-dir", f"{tmp}/checkpoints", "--num-workers", "2"]
        start = time.perf_counter()
        result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300,
                                env=dict(os.environ, PYTHONUNBUFFERED="1"))
        if result.returncode != 0 or not Path(tmp, "checkpoints", "gpu-check", "last.pt").is_file():
            tail = [line for line in result.stderr.splitlines() if line.strip()][-1:] or ["no output"]
            raise RuntimeError(f"torchrun exited {result.returncode}: {tail[0][:300]}")
        return [{"processes": 2, "seconds": time.perf_counter() - start}]


def parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="the plan, then each check tiny; nothing written")
    parser.add_argument("--size", type=int, default=256, help="crop size of the training and evaluation checks")
    parser.add_argument("--batch", type=int, default=16, help="images per step")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per training set-up")
    args = parser.parse_args(argv)
    for flag in ("size", "batch", "steps"):
        if getattr(args, flag) < 1 or (flag == "size" and args.size % 32):
            parser.error(f"--{flag} {getattr(args, flag)}: must be a positive " + ("multiple of 32" if flag == "size"
                                                                                  else "number"))
    args.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    args.dry = args.dry_run or args.device.type != "cuda"
    if args.dry:  # tiny, on whatever this machine is
        args.size, args.batch, args.steps = 64, 2, 1
    return args


def main(argv=None) -> int:
    s = parse(argv)
    if s.dry:
        print(f"gpu-check, dry run on {s.device}: on a CUDA device it measures, in order:")
        for name, measures, _ in CHECKS:
            print(f"  {name}: {measures}".replace("SIZE", "256").replace("BATCH", "16"))
        print("each check now runs tiny here (64 px, batch 2, 1 step; no fp16, torch.compile or NCCL):")
    results = {}
    for name, _, fn in CHECKS:
        try:
            results[name] = fn(s)
        except Exception as e:  # the first failure stops the check: one line, which check and why
            first = (str(e).strip().splitlines() or [""])[0][:300]
            print(f"gpu-check: {name} FAILED: {type(e).__name__}: {first}")
            return 1
        skipped = [row["skipped"] for row in results[name] if "skipped" in row]
        if skipped:
            print(f"gpu-check: {name} skipped: {'; '.join(skipped)}")
            continue
        print(f"gpu-check: {name} ok: " + "; ".join(", ".join(f"{k} {_short(v)}" for k, v in row.items())
                                                   for row in results[name]))
    if not s.dry:
        rows = [{"check": name, **row} for name, check_rows in results.items() for row in check_rows]
        print(write_results("gpu_check", rows, {"size": s.size, "batch": s.batch, "steps": s.steps}))
    return 0


def _short(v) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


if __name__ == "__main__":
    raise SystemExit(main())
