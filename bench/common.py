"""Helpers shared by the benchmark scripts: a folder of realistic JPEGs, timing, and the results table."""
from __future__ import annotations

import json
import platform
import resource
import time
from datetime import date
from pathlib import Path

import torch
from PIL import Image

RESULTS = Path(__file__).resolve().parent / "results"


def photo_folder(n: int = 96, size=(640, 480), root: Path | None = None) -> Path:
    """n COCO-sized JPEGs cut from the embedded sample photos (made once, then reused)."""
    from gan_colorizer.data import sample_photos
    from gan_colorizer.images import load_rgb
    root = root or RESULTS / f"photos_{n}_{size[0]}x{size[1]}"
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


def timed(fn, warmup: int, steps: int, images_per_step: int, sync=None) -> float:
    """Images per second of fn() over `steps` calls after `warmup` calls."""
    for _ in range(warmup):
        fn()
    if sync:
        sync()
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    if sync:
        sync()
    return steps * images_per_step / (time.perf_counter() - start)


def machine() -> dict:
    info = {"date": date.today().isoformat(), "torch": torch.__version__, "python": platform.python_version(),
            "cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_results(name: str, rows: list[dict], extra: dict | None = None) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    path = RESULTS / f"{name}-{device}.json"
    path.write_text(json.dumps({"machine": machine(), "rows": rows, **(extra or {})}, indent=2))
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
