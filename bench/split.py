"""The train / validation split's stability and cost: how many files change sides when a share of a folder is added
or removed (the positional shuffle of runs started before issue 22 against the path hash), and the time to split
100k and 1M names.

    python bench/split.py [--files 20000] [--fraction 0.01] [--sizes 100000 1000000] [--repeats 3]

The names are synthetic ImageNet-like paths (1,000 class folders); nothing is read from disk.
"""
from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import print_table, write_results  # noqa: E402
from gan_colorizer.split import (  # noqa: E402
    BY_PATH,
    BY_POSITION,
    count_trained_on,
    path_hashes,
    split_by_path,
    split_by_position,
    training_set,
)

ROOT = "/data/imagenet/train"


def names(n: int, seed: int = 0, tag: str = "") -> list[str]:
    """n sorted absolute paths as an ImageNet folder holds them."""
    rng = random.Random(seed)
    found = {f"{ROOT}/n{c:08d}/n{c:08d}_{tag}{rng.randrange(10**6)}.JPEG" for c in (rng.randrange(1000) for _ in range(n))}
    while len(found) < n:
        c = rng.randrange(1000)
        found.add(f"{ROOT}/n{c:08d}/n{c:08d}_{tag}{rng.randrange(10**6)}.JPEG")
    return sorted(found, key=lambda p: p.replace("/", "\0"))  # as the listing sorts (by path parts)


def sides(rule: str, paths: list[str], fraction: float, seed: int = 0) -> tuple[set, set]:
    if rule == BY_PATH:
        train, val, _ = split_by_path(paths, ROOT, fraction, seed)
    else:
        train, val = split_by_position(paths, fraction, seed)
    return set(train), set(val)


def stability(n: int, fraction: float) -> list[dict]:
    """Per rule and change: files of the folder before (and after) that changed sides."""
    before = names(n)
    rows = []
    for share in (0.001, 0.01):
        k = round(n * share)
        removed = set(random.Random(1).sample(before, k))
        changed = {"add": sorted(before + names(k, seed=2, tag="new"), key=lambda p: p.replace("/", "\0")),
                   "remove": [p for p in before if p not in removed]}
        for change, after in changed.items():
            for rule in (BY_POSITION, BY_PATH):
                (train0, val0), (train1, val1) = sides(rule, before, fraction), sides(rule, after, fraction)
                rows.append({"what": "stability", "rule": rule, "files": n, "change": f"{change} {share:.1%}",
                             "val_before": len(val0), "val_after": len(val1),
                             "val_to_train": len(val0 & train1), "train_to_val": len(train0 & val1)})
    return rows


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def cost(n: int, fraction: float, repeats: int) -> dict:
    """Seconds to split n names by each rule, to hash them, and stage 2's check of its validation files."""
    paths = names(n)
    train, val, hashes = split_by_path(paths, ROOT, fraction, 0)
    carried = training_set(train, ROOT, hashes)
    return {"what": "cost", "files": n,
            "split_by_path_s": best_of(lambda: split_by_path(paths, ROOT, fraction, 0), repeats),
            "split_by_position_s": best_of(lambda: split_by_position(paths, fraction, 0), repeats),
            "path_hashes_s": best_of(lambda: path_hashes(paths, ROOT), repeats),
            "stage2_check_s": best_of(lambda: count_trained_on(carried, val), repeats),
            "training_set_mb": carried["hashes"].numel() * 8 / 1e6}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=20_000, help="folder size of the stability rows")
    parser.add_argument("--fraction", type=float, default=0.01, help="--val-fraction")
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    rows = stability(args.files, args.fraction)
    print_table(rows, ["rule", "files", "change", "val_before", "val_after", "val_to_train", "train_to_val"])
    costs = [cost(n, args.fraction, args.repeats) for n in args.sizes]
    print_table(costs, ["files", "split_by_path_s", "split_by_position_s", "path_hashes_s", "stage2_check_s",
                        "training_set_mb"])
    print(f"\nwritten {write_results('split', rows + costs, {'val_fraction': args.fraction})}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
