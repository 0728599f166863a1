"""Start-up of every entry point, each command in a fresh process as a user runs it.

- `--help` of every tool (training stages, evaluate, colorize, visualize, export, curves, weights, shards);
- colorize.py on one 741x500 JPEG with each engine (torch on a .pt checkpoint, onnx and onnx-int8 on its exports):
  the whole command, start-up and the photo (about 2.5 s of it is the photo's own work on 2 cores);
- stage 1 (pretrain_generator.py on the embedded photos, 64 px, batch 2, no loader processes) from start to the end of
  its first step (the test-only kill hook stops it there);
- evaluate.py of one checkpoint on one photo (no loader processes, no LPIPS / FID weights, no grids).

Every command runs --repeats times, round-robin over the commands so a change in the machine's load touches all
alike; a row has the median wall seconds, the fastest and slowest, and the median CPU seconds (user + system of the
process and its children: steadier than wall time on a shared machine, but blind to waiting). The checkpoint has
random weights (start-up does not depend on them). --compare DIR runs the same commands in another checkout too (a
`git worktree` of an older commit), interleaved with this one: before / after under the same load.

    python bench/startup.py [--repeats 5] [--compare DIR]
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.common import CACHE, print_table, random_checkpoint, write_results  # noqa: E402

PHOTO_SIZE = (741, 500)
HELP = {  # the command line of each tool, as its docs give it
    "pretrain_generator.py": ["pretrain_generator.py"], "train_gan.py": ["train_gan.py"],
    "evaluate.py": ["evaluate.py"], "colorize.py": ["colorize.py"], "visualize.py": ["visualize.py"],
    **{f"-m {m}": ["-m", m] for m in ("gan_colorizer.colorize.onnx", "gan_colorizer.inspect.curves",
                                      "gan_colorizer.inspect.weights", "gan_colorizer.data.shards")}}
STAGE1 = ["--no-pretrained", "--image-size", "64", "--batch-size", "2", "--num-workers", "0", "--epochs", "1"]
KILL_AT_FIRST_STEP = {"GAN_COLORIZER_TEST_KILL_AT": "step:1"}  # checkpoint.kill_here_in_tests: SIGKILL after step 1


def photo() -> Path:
    """One embedded sample photo at 741x500, a quality-90 JPEG (made once)."""
    from PIL import Image

    from gan_colorizer.data.dataset import sample_photos
    from gan_colorizer.data.images import load_rgb
    path = CACHE / "startup_photo.jpg"
    if not path.is_file():
        CACHE.mkdir(parents=True, exist_ok=True)
        load_rgb(sample_photos()[0][0]).resize(PHOTO_SIZE, Image.BICUBIC).save(path, quality=90)
    return path


def commands(scratch: Path) -> dict[str, tuple[list[str], dict]]:
    """{row name: (argv after the interpreter, extra environment)}."""
    from bench.engines import exported
    ckpt, jpeg = random_checkpoint(), photo()
    models = {"torch": ckpt, "onnx": exported(ckpt, int8=False), "onnx-int8": exported(ckpt, int8=True)}
    runs = ["--runs-dir", str(scratch / "runs"), "--checkpoints-dir", str(scratch / "checkpoints")]
    rows = {f"{name} --help": ([*argv, "--help"], {}) for name, argv in HELP.items()}
    for engine, model in models.items():
        rows[f"colorize.py, one photo, {engine}"] = (
            ["colorize.py", str(jpeg), "--checkpoint", str(model), "--out", str(scratch / "out"), "--overwrite"], {})
    rows["pretrain_generator.py, start to first step"] = (
        ["pretrain_generator.py", *STAGE1, "--name", "startup", *runs], KILL_AT_FIRST_STEP)
    rows["evaluate.py, one photo"] = (
        ["evaluate.py", "--checkpoint", str(ckpt), "--data", str(jpeg.parent / "startup_eval"), "--out",
         str(scratch / "eval"), "--num-workers", "0", "--no-download", "--grid-images", "0"], {})
    (jpeg.parent / "startup_eval").mkdir(exist_ok=True)
    (jpeg.parent / "startup_eval" / jpeg.name).write_bytes(jpeg.read_bytes())
    return rows


def run_once(tree: Path, argv: list[str], env: dict, name: str) -> tuple[float, float]:
    """(wall s, CPU s) of one fresh process; a failure stops the benchmark with the end of its output."""
    env = {**os.environ, "PYTHONPATH": str(tree), **env}  # the package of that tree, not an installed one
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    result = subprocess.run([sys.executable, *argv], cwd=tree, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    expected = -9 if env.get("GAN_COLORIZER_TEST_KILL_AT") else 0
    if result.returncode != expected:
        raise SystemExit(f"{name} in {tree} exited {result.returncode}:\n{(result.stdout + result.stderr)[-2000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def summary(times: list[tuple[float, float]]) -> dict:
    walls = [w for w, _ in times]
    return {"wall_s": statistics.median(walls), "wall_min_s": min(walls), "wall_max_s": max(walls),
            "cpu_s": statistics.median(c for _, c in times), "repeats": len(times)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--compare", type=Path, help="another checkout's root, timed interleaved with this one")
    args = parser.parse_args()
    trees = {"this": ROOT, **({"compare": args.compare.resolve()} if args.compare else {})}
    with tempfile.TemporaryDirectory() as scratch:
        todo = commands(Path(scratch))
        times = {(tree, name): [] for name in todo for tree in trees}
        for _ in range(args.repeats):
            for name, (argv, env) in todo.items():
                for tree, path in trees.items():
                    times[(tree, name)].append(run_once(path, argv, env, name))
    rows = [{"command": name, **({"tree": tree} if args.compare else {}), **summary(t)}
            for (tree, name), t in times.items()]
    print_table(rows, list(rows[0]))
    if args.compare:  # a before / after is a comparison of the day, not a figure for the page: kept in the cache
        path = write_results("startup_compare", rows, {"compare": str(args.compare)}, folder=CACHE)
    else:
        path = write_results("startup", rows)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
