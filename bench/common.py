"""Helpers shared by the benchmark scripts: a folder of realistic JPEGs, timing, and the results table."""
from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch
from PIL import Image

from gan_colorizer.cpu import isa, proc_field

RESULTS = Path(__file__).resolve().parent / "results"  # the JSON files, committed
CACHE = Path(__file__).resolve().parent / "cache"  # generated photos and checkpoints, reused between runs
# The machine's load when this benchmark process started: on a shared machine absolute rates move with it.
STARTED = {"started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "load_1min_start": round(os.getloadavg()[0], 2)}


def photo_folder(n: int = 96, size=(640, 480), root: Path | None = None) -> Path:
    """n COCO-sized JPEGs cut from the embedded sample photos (made once, then reused)."""
    from gan_colorizer.data.dataset import sample_photos
    from gan_colorizer.data.images import load_rgb
    root = root or CACHE / f"photos_{n}_{size[0]}x{size[1]}"
    if root.is_dir() and len(list(root.glob("*.jpg"))) == n:
        return root
    root.mkdir(parents=True, exist_ok=True)
    train, val = sample_photos()
    sources = [load_rgb(p) for p in train + val]
    for i in range(n):
        src = sources[i % len(sources)]
        k = 1.0 + 0.5 * (i // len(sources)) / max(1, n // len(sources))
        w, h = int(src.width / k), int(src.height / k)
        left, top = (i * 37) % max(1, src.width - w + 1), (i * 53) % max(1, src.height - h + 1)
        src.resize(size, Image.BICUBIC, box=(left, top, left + w, top + h)).save(root / f"{i:04d}.jpg", quality=90)
    return root


def trained_checkpoint(name: str, flags: list[str]) -> Path:
    """checkpoints/NAME/best.pt: a short stage-1 run on the embedded photos with these flags (trained once)."""
    root = Path(__file__).resolve().parents[1]
    path = root / "checkpoints" / name / "best.pt"
    if not path.is_file():
        subprocess.run([sys.executable, str(root / "pretrain_generator.py"), *flags, "--name", name], check=True,
                       cwd=root)
    return path


def random_checkpoint() -> Path:
    """A stage-1 checkpoint of the default generator with random weights (made once): for what does not depend on
    the weights (speed, memory, start-up)."""
    path = CACHE / "colorize_bench_generator.pt"
    if not path.is_file():
        from gan_colorizer.checkpoint import save_atomic
        from gan_colorizer.config import defaults
        from gan_colorizer.models.registry import build_generator
        cfg = defaults("pretrain")
        save_atomic({"format_version": 1, "stage": "pretrain", "config": cfg.to_dict(),
                     "generator": build_generator(cfg.model, load_pretrained=False).state_dict()}, path)
    return path


def run_child(script: str, *args) -> dict:
    """Run `python script args...` in a fresh process (its own state and peak memory) and return the JSON object
    it prints last; a failure stops the benchmark with the end of the child's stderr."""
    result = subprocess.run([sys.executable, script, *map(str, args)], capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{Path(script).name} {' '.join(map(str, args))} failed:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA runs asynchronously; the CPU has nothing to wait for)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, warmup: int, steps: int, images_per_step: int, device: torch.device | None = None) -> float:
    """Images per second of fn() over `steps` calls after `warmup` calls, the device's queue drained at both ends."""
    device = device or torch.device("cpu")
    for _ in range(warmup):
        fn()
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    sync(device)
    return steps * images_per_step / (time.perf_counter() - start)


def machine() -> dict:
    """What ran the benchmark: CPU model, cores, memory, GPU (if any) and torch's CPU threads."""
    info = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "threads": torch.get_num_threads()}
    info["cpu"] = proc_field("model name") or info["cpu"]
    info["isa"] = isa()  # what bf16 and int8 speed rest on: the same model name has come with and without AVX-512
    mem_kb = proc_field("MemTotal", "/proc/meminfo")
    if mem_kb:
        info["memory_gb"] = round(int(mem_kb.split()[0]) / 2**20, 1)
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def software() -> dict:
    """torch, Python and the git commit measured; git_dirty: the package or bench/ had uncommitted changes."""
    root = Path(__file__).resolve().parents[1]

    def git(*args):
        result = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
        return result.stdout.strip() if result.returncode == 0 else None
    status = git("status", "--porcelain", "--", "gan_colorizer", "bench", ":!bench/results")
    return {"torch": torch.__version__, "python": platform.python_version(), "git_commit": git("rev-parse", "HEAD"),
            "git_dirty": bool(status) if status is not None else None}


def peak_rss_mb() -> float:
    """Peak RSS of this process image. VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the forking
    parent through exec, so a per-measurement child of a big parent would report the parent's peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_results(name: str, rows: list[dict], extra: dict | None = None, folder: Path = RESULTS) -> Path:
    """bench/results/NAME-DEVICE.json: the rows, the machine, the software, and the load at start and end
    (folder: elsewhere, for figures not to be committed)."""
    folder.mkdir(parents=True, exist_ok=True)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    path = folder / f"{name}-{device}.json"
    run = {"date": datetime.now(timezone.utc).date().isoformat(), **STARTED,
           "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "load_1min_end": round(os.getloadavg()[0], 2), **software()}
    path.write_text(json.dumps({"machine": machine(), "run": run, "rows": rows, **(extra or {})}, indent=2) + "\n")
    return path


def print_table(rows: list[dict], columns: list[str]) -> None:
    widths = [max(len(c), *(len(_fmt(r.get(c))) for r in rows)) for c in columns]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    for r in rows:
        print("  ".join(_fmt(r.get(c)).ljust(w) for c, w in zip(columns, widths)))


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.2f}"
    return "" if v is None else str(v)
