"""Scale figures (issue 15, point 4): the folder scan cold and cached, start-up to the first training step, the scan
cache file, DataLoader worker memory at 1M paths, evaluation memory over many images, and per-image decode + crop
cost with the projection of an ImageNet epoch on an 8-GPU node that follows from it.

    python bench/scale.py [--sizes 10000 100000 1000000] [--eval-sizes 5000 20000 50000] [--dir /tmp/...]

The folders hold tiny 32x32 JPEGs (~1 KB; made once under --dir, then reused; 1M files take about 4 GB and a
minute or two to write): the scan and start-up figures then measure per-file bookkeeping and the scan's decode of a
small file, not the decode of large photos, which is measured apart on COCO-sized JPEGs (the "per image" row).
The default 50,000-image evaluation took 12 minutes on the 2-core machine at load 2-5 (longer under more load);
--parts reruns one part and keeps the rest. Stage 1's cold start-up (a second cold scan) is measured up to
--cold-startup-max files, 100,000 by default, as in the committed rows (the 1M row has none: 11 more minutes).
"""
from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import RESULTS, peak_rss_mb, run_child, write_results  # noqa: E402

DIR = Path("/tmp/gan_colorizer_scale")  # not bench/cache: millions of files belong on a scratch disk


def tiny_jpegs(variants: int = 64, size: int = 32) -> list[bytes]:
    """A few colored 32x32 JPEGs (a flat random color plus noise: none gray), written over and over."""
    rng = np.random.default_rng(0)
    blobs = []
    for _ in range(variants):
        pixels = rng.integers(0, 256, (1, 1, 3)) + rng.integers(-40, 40, (size, size, 3))
        buf = io.BytesIO()
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=85)
        blobs.append(buf.getvalue())
    return blobs


def tiny_folder(n: int, root: Path = DIR) -> Path:
    """DIR/nN: n tiny JPEGs in subfolders of 1,000 (as ImageNet's class folders), made once (a marker says done)."""
    folder = root / f"n{n}"
    if (folder / ".complete").is_file():
        return folder
    blobs = tiny_jpegs()
    for start in range(0, n, 1000):
        sub = folder / f"d{start // 1000:04d}"
        sub.mkdir(parents=True, exist_ok=True)
        for i in range(start, min(n, start + 1000)):
            (sub / f"{i:07d}.jpg").write_bytes(blobs[i % len(blobs)])
    (folder / ".complete").write_text(f"{n}\n")
    return folder


# ---- measurements, each in a fresh child process (its own memory and caches): python bench/scale.py --child KIND

def scan_child(folder: str, cache_home: str) -> dict:
    """The listing, a cold scan, a cached scan, and the cache file's size and load time."""
    os.environ["XDG_CACHE_HOME"] = cache_home
    from gan_colorizer.data.dataset import scan_folder
    from gan_colorizer.data.images import list_files
    from gan_colorizer.data.scan import cache_file, cached_outcomes
    list_s = _seconds(lambda: list_files(Path(folder).resolve()))  # with the one stat per file the scan keys on
    cold_s = _seconds(lambda: scan_folder(folder, keep_gray=False, workers=WORKERS))
    cached_s = _seconds(lambda: scan_folder(folder, keep_gray=False, workers=WORKERS))
    cache = cache_file(Path(folder))
    load_s = _seconds(lambda: cached_outcomes(Path(folder)))  # read and turned into a dict per file (tests' view)
    return {"list_s": list_s, "scan_cold_s": cold_s, "scan_cold_files_s": _count(folder) / cold_s,
            "scan_cached_s": cached_s, "cache_mb": cache.stat().st_size / 2**20, "cache_load_s": load_s,
            "scan_peak_rss_mb": peak_rss_mb()}


def memory_of(pid: int) -> tuple[float, float]:
    """(private MB, RSS MB) of a process: private memory is what copy-on-read of a shared list would grow."""
    fields = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, value = line.split(":", 1)
        fields[key] = int(value.split()[0]) / 1024
    return fields["Private_Clean"] + fields["Private_Dirty"], fields["Rss"]


def workers_child(n: int, workers: int, batch: int) -> dict:
    """One epoch over n synthetic ImageNet-like paths, decode replaced by a constant 8x8 photo (the bookkeeping
    is measured, not JPEGs): private memory and RSS of the main process and of each worker, first and last batch."""
    from gan_colorizer.data.dataset import EpochSampler, PhotoDataset, make_loader

    class ConstantPhotos(PhotoDataset):
        def _load(self, index: int) -> Image.Image:
            self.paths[index]  # the per-file bookkeeping a real load does
            return PHOTO

    PHOTO = Image.new("RGB", (8, 8), (200, 120, 40))
    paths = [f"/data/imagenet/train/n{i // 1300:08d}/n{i // 1300:08d}_{i}.JPEG" for i in range(n)]
    loader = make_loader(ConstantPhotos(paths, 8, True), EpochSampler(n, 0, True), batch, workers, False, True)
    del paths
    seen = {}
    for k, _ in enumerate(loader):
        if k in (0, len(loader) - 1):
            pids = [("main", os.getpid())] + [(f"worker{w}", p.pid) for w, p in enumerate(loader._iterator._workers)]
            seen["first" if k == 0 else "last"] = {name: memory_of(pid) for name, pid in pids}
    row = {"paths": n, "workers": workers, "batch": batch}
    for name in seen["first"]:
        row[f"{name}_private_mb"] = [seen["first"][name][0], seen["last"][name][0]]
        row[f"{name}_rss_mb"] = [seen["first"][name][1], seen["last"][name][1]]
    return row


def eval_child(folder: str, checkpoint: str, out: str, probes: str) -> list[dict]:
    """One evaluate() over a folder of tiny photos (no LPIPS / FID: no weights here): the main process's peak and
    current RSS when 5k, 20k, 50k... images are scored (the probes), and the seconds so far."""
    from gan_colorizer.evaluate.run import EvalOptions, evaluate
    options = EvalOptions(checkpoints=[checkpoint], data=folder, out=out, image_size=32, batch_size=128,
                          num_workers=2, device="cpu", download=False)
    todo, rows, start = [int(p) for p in probes.split(",")], [], time.perf_counter()

    def probe(n_images: int) -> None:
        if todo and n_images >= todo[0]:
            rows.append({"images": todo.pop(0), "seconds": time.perf_counter() - start, "peak_rss_mb": peak_rss_mb(),
                         "rss_mb": memory_of(os.getpid())[1]})
    evaluate(options, on_batch=probe)
    rows[-1]["metrics_csv_mb"] = (Path(out) / "metrics.csv").stat().st_size / 2**20
    return rows


def decode_child(size: int) -> dict:
    """Per CPU core (one thread): the training loader's decode + random resized crop of a COCO-sized JPEG, and the
    scan's check of one."""
    import torch
    torch.set_num_threads(1)
    from bench.common import photo_folder
    from gan_colorizer.data.dataset import PhotoDataset
    from gan_colorizer.data.images import list_images
    from gan_colorizer.data.scan import check
    paths = list_images(photo_folder())
    dataset = PhotoDataset(paths, size, True)
    crop_s = _seconds(lambda: [dataset[(i % len(paths), i)] for i in range(2 * len(paths))]) / (2 * len(paths))
    check_s = _seconds(lambda: [check(p) for p in paths + paths]) / (2 * len(paths))
    return {"size": size, "decode_crop_img_s_per_core": 1 / crop_s, "scan_check_files_s_per_core": 1 / check_s}


def flops_child(size: int) -> dict:
    """FLOPs of one training step per image at the default nets (counted by torch, not timed)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode
    from bench.train_speed import build
    from gan_colorizer.runtime import Runtime
    from gan_colorizer.train.steps import gan_step, pretrain_step
    rt, row = Runtime("cpu", "off"), {"size": size}
    for stage, step in (("pretrain", pretrain_step), ("gan", gan_step)):
        cfg, nets, opts = build(stage, rt)
        micro = [rt.batch(torch.randint(0, 256, (2, 3, size, size), dtype=torch.uint8))]
        with FlopCounterMode(display=False) as counter:
            step(rt, nets, opts, micro, cfg)
        row[f"{stage}_gflop_per_img"] = counter.get_total_flops() / 2 / 1e9
    return row


CHILDREN = {"scan": scan_child, "workers": workers_child, "eval": eval_child, "decode": decode_child,
            "flops": flops_child}
WORKERS = 4  # the scan's threads, as prepare_files chooses on this 2-core machine (max(2, cores, --num-workers))


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _count(folder) -> int:
    return sum(len(files) for _, _, files in os.walk(folder)) - (Path(folder) / ".complete").exists()


# ---- the parent: start-up runs, the projection, the results file

ROOT = Path(__file__).resolve().parents[1]
IMAGENET = 1_281_167  # ImageNet-1k training images


def startup(stage: str, folder: Path | None, cache_home: Path, work: Path) -> float:
    """Seconds from process start to the end of the first training step (the test hook kills the run there),
    tiny nets' settings: what is measured is the start-up, not the step. No folder: the embedded sample photos."""
    script = "train_gan.py" if stage == "gan" else "pretrain_generator.py"
    env = dict(os.environ, XDG_CACHE_HOME=str(cache_home), GAN_COLORIZER_TEST_KILL_AT="step:1")
    data = ["--data", folder] if folder else []
    args = [sys.executable, script, *data, *TINY_RUN, "--runs-dir", work / "runs", "--checkpoints-dir",
            work / "checkpoints", "--name", f"{stage}-{folder.name if folder else 'embedded'}"]
    work.mkdir(parents=True, exist_ok=True)
    # output to a file, not a pipe: the killed run's DataLoader workers hold a pipe open until they notice (up to
    # 5 s), which the earlier figures included
    with open(work / "startup.log", "w+") as log:
        start = time.perf_counter()
        result = subprocess.run(list(map(str, args)), cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        seconds = time.perf_counter() - start
        log.seek(0)
        if result.returncode != -signal.SIGKILL:
            raise SystemExit(f"{script} on {folder} ended with {result.returncode}:\n{log.read()[-2000:]}")
    return seconds


TINY_RUN = ["--image-size", "32", "--batch-size", "8", "--epochs", "1", "--epoch-size", "64", "--num-workers", "2",
            "--no-pretrained", "--amp", "off"]


def folder_row(n: int, root: Path, cold_startup: bool) -> dict:
    folder, work = tiny_folder(n, root), root / "work"
    shutil.rmtree(work, ignore_errors=True)
    row = {"what": "folder", "files": n, **run_child(__file__, "--child", "scan", folder, work / "cache-scan")}
    if cold_startup:  # stage 1 on a folder never scanned: the scan's cold cost in the start-up
        row["startup_stage1_cold_s"] = startup("pretrain", folder, work / "cache-run", work)
    else:
        shutil.copytree(work / "cache-scan", work / "cache-run")
    row["startup_stage2_cached_s"] = startup("gan", folder, work / "cache-run", work)  # after stage 1's scan
    shutil.rmtree(work)
    return row


def floor_row(root: Path) -> dict:
    """Stage 2's start-up on the 11 embedded sample photos: what a start-up costs with no folder to speak of."""
    work = root / "work-floor"
    shutil.rmtree(work, ignore_errors=True)
    row = {"what": "start-up floor", "photos": 11, "startup_stage2_s": startup("gan", None, work / "cache", work)}
    shutil.rmtree(work)
    return row


def eval_rows(sizes: list[int], root: Path) -> list[dict]:
    """A small stage-1 checkpoint (one step), then one evaluate() over max(sizes) tiny photos, probed at each size."""
    work = root / "work-eval"
    shutil.rmtree(work, ignore_errors=True)
    args = [sys.executable, "pretrain_generator.py", "--data", tiny_folder(1000, root), *TINY_RUN, "--max-steps", "1",
            "--runs-dir", work / "runs", "--checkpoints-dir", work / "checkpoints", "--name", "tiny"]
    result = subprocess.run(list(map(str, args)), cwd=ROOT, capture_output=True, text=True,
                            env=dict(os.environ, XDG_CACHE_HOME=str(work / "cache")))
    if result.returncode:
        raise SystemExit(f"the checkpoint for evaluation failed:\n{result.stderr[-2000:]}")
    rows = run_child(__file__, "--child", "eval", tiny_folder(max(sizes), root),
                     work / "checkpoints" / "tiny" / "last.pt", work / "eval", ",".join(map(str, sorted(sizes))))
    shutil.rmtree(work)
    return [{"what": "evaluate", **row} for row in rows]


def projection(per_image: dict, gpu_tflops: float, node_cores: int) -> list[dict]:
    """An ImageNet epoch on one 8-GPU node: the slower of the GPUs (FLOPs counted here over an assumed sustained
    rate) and the node's CPU cores decoding and cropping (measured per core here)."""
    loader_img_s = per_image["decode_crop_img_s_per_core"] * node_cores
    rows = []
    for stage in ("pretrain", "gan"):
        gpu_img_s = 8 * gpu_tflops * 1e12 / (per_image[f"{stage}_gflop_per_img"] * 1e9)
        rows.append({"what": "projection", "stage": stage, "gpus_img_s": gpu_img_s, "node_loader_img_s": loader_img_s,
                     "bound_by": "GPUs" if gpu_img_s < loader_img_s else "CPU decode",
                     "epoch_minutes": IMAGENET / min(gpu_img_s, loader_img_s) / 60})
    first_scan_min = IMAGENET / (per_image["scan_check_files_s_per_core"] * node_cores) / 60
    rows.append({"what": "projection", "stage": "first scan (shared by 8 ranks)", "epoch_minutes": first_scan_min})
    return rows


ORDER = ["floor", "folder", "workers", "evaluate", "per"]


def part_of(row: dict) -> str:
    """The --parts name a results row belongs to."""
    return {"folder": f"folder-{row.get('files')}", "per image": "per-image", "projection": "per-image",
            "start-up floor": "floor"}.get(
        row["what"], row["what"])


def per_image_rows(args) -> list[dict]:
    per_image = {**run_child(__file__, "--child", "decode", 256), **run_child(__file__, "--child", "flops", 256)}
    return [{"what": "per image", **per_image}, *projection(per_image, args.gpu_tflops, args.node_cores)]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", type=int, default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--cold-startup-max", type=int, default=100_000,
                        help="measure stage 1's cold start-up (a second cold scan) up to this many files")
    parser.add_argument("--eval-sizes", nargs="+", type=int, default=[5_000, 20_000, 50_000])
    parser.add_argument("--worker-paths", type=int, default=1_000_000)
    parser.add_argument("--dir", type=Path, default=DIR, help="where the folders of tiny JPEGs are made and kept")
    parser.add_argument("--gpu-tflops", type=float, default=100.0,
                        help="ASSUMED sustained training TFLOP/s per GPU for the projection (not measured here)")
    parser.add_argument("--node-cores", type=int, default=96, help="ASSUMED CPU cores of the 8-GPU node")
    parser.add_argument("--parts", nargs="+", help="measure only these (per-image, workers, folder-N, floor, "
                        "evaluate); "
                        "the other rows of bench/results/scale-cpu.json are kept")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.child:
        kind, *rest = args.child
        print(json.dumps(CHILDREN[kind](*[int(a) if a.isdigit() else a for a in rest])))
        return 0
    assumed = {"assumed_gpu_tflops": args.gpu_tflops, "assumed_node_cores": args.node_cores}
    parts = {"per-image": lambda: per_image_rows(args), "workers": lambda: [
                 {"what": "workers", **run_child(__file__, "--child", "workers", args.worker_paths, 2, 1024)}],
             **{f"folder-{n}": lambda n=n: [folder_row(n, args.dir, n <= args.cold_startup_max)] for n in args.sizes},
             "floor": lambda: [floor_row(args.dir)], "evaluate": lambda: eval_rows(args.eval_sizes, args.dir)}
    unknown = [name for name in args.parts or [] if name not in parts]
    if unknown:
        print(f"error: --parts {unknown[0]}: no such part (choose from {', '.join(parts)})", file=sys.stderr)
        return 2
    kept = RESULTS / "scale-cpu.json"  # the rows of parts not run this time (--parts) stay as they were
    rows = [r for r in json.loads(kept.read_text())["rows"] if part_of(r) not in (args.parts or parts)] \
        if args.parts and kept.is_file() else []
    for name in args.parts or parts:  # the file is written after each part: a run cut short keeps what it measured
        rows += parts[name]()
        print(*rows[-1].items(), sep="  ", flush=True)
        path = write_results("scale", sorted(rows, key=lambda r: ORDER.index(part_of(r).split("-")[0])), assumed)
    print(f"\nwritten {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
