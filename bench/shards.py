"""WebDataset shards against the folder: the shard write rate (files/s, MB/s), then the read rate through each
training loader (samples/s: decode, crop, batch, as training reads, with --workers workers; and the CPU ms per sample
of the same loader run in-process, which the machine's load disturbs far less), and the bytes-only read rates.

    python bench/shards.py [--images 5000] [--size 320 240] [--crop 128] [--workers 1] [--rounds 4]

The JPEGs are generated once into bench/cache/ and are in the page cache when read, so the figures measure the
formats' CPU costs on this machine, not a network disk's latency (where shards gain most). The loaders run
alternately in one process, `--rounds` times each, on one machine whose load is recorded per row.
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import CACHE, photo_folder, print_table, write_results  # noqa: E402
from gan_colorizer.config import DataConfig  # noqa: E402
from gan_colorizer.data.dataset import EpochSampler, PhotoDataset, make_loader, prepare_files  # noqa: E402
from gan_colorizer.data.shard_stream import ShardStream, shard_loader  # noqa: E402
from gan_colorizer.data.shards import ShardOptions, expand, shard_counts, write_shards  # noqa: E402


def load() -> float:
    return round(os.getloadavg()[0], 2)


def write_rate(folder: Path, out: Path, shard_size: int) -> dict:
    """Scan first (cached afterwards, as a second run finds it), then time the shard write alone."""
    prepare_files(DataConfig(data=str(folder), val_fraction=0.0, num_workers=2), 0)
    n_bytes = sum(p.stat().st_size for p in folder.glob("*.jpg"))
    start = time.perf_counter()
    index = write_shards(ShardOptions(data=str(folder), out=str(out), shard_size=shard_size, val_fraction=0.0))
    seconds = time.perf_counter() - start
    files = sum(index["shards"].values())
    return {"what": "write shards (scan cached)", "files": files, "shards": len(index["shards"]),
            "seconds": seconds, "files_s": files / seconds, "mb_s": n_bytes / 1e6 / seconds, "load_1min": load()}


def epoch_rate(loader, n: int) -> tuple[float, float]:
    """(samples/s by the wall clock, CPU ms per sample of this process: the whole cost when workers = 0)."""
    start, cpu = time.perf_counter(), _cpu()
    seen = sum(len(pixels) for pixels, _ in loader)
    assert seen >= n * 0.9, (seen, n)
    return seen / (time.perf_counter() - start), 1000 * (_cpu() - cpu) / seen


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def bytes_rates(folder: Path, shards: list[Path]) -> list[dict]:
    """Reading the bytes alone: every file of the folder, every sample of the shards (webdataset's tar reader)."""
    import webdataset as wds
    files = sorted(folder.glob("*.jpg"))
    start = time.perf_counter()
    n_bytes = sum(len(p.read_bytes()) for p in files)
    folder_s = time.perf_counter() - start
    start = time.perf_counter()
    n = sum(1 for _ in wds.tarfile_to_samples()({"url": str(s)} for s in shards))
    shard_s = time.perf_counter() - start
    return [{"what": "read bytes only: folder", "files": len(files), "seconds": folder_s,
             "files_s": len(files) / folder_s, "mb_s": n_bytes / 1e6 / folder_s, "load_1min": load()},
            {"what": "read bytes only: shards", "files": n, "seconds": shard_s, "files_s": n / shard_s,
             "mb_s": n_bytes / 1e6 / shard_s, "load_1min": load()}]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--size", type=int, nargs=2, default=[320, 240], help="JPEG width and height")
    parser.add_argument("--shard-size", type=int, default=500)
    parser.add_argument("--crop", type=int, default=128, help="training crop size")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--workers", type=int, default=1, help="DataLoader workers (1: the CPU default)")
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args(argv)
    folder = photo_folder(args.images, tuple(args.size), CACHE / f"shards_photos_{args.images}_{args.size[0]}")
    out = Path(tempfile.mkdtemp(prefix="bench-shards-", dir=CACHE))
    try:
        rows = [write_rate(folder, out, args.shard_size)]
        shards = expand(str(out), role="train")
        rows += bytes_rates(folder, shards)
        split = prepare_files(DataConfig(data=str(folder), val_fraction=0.0), 0)
        dataset = PhotoDataset(split.train, args.crop, True)
        sampler = EpochSampler(len(dataset), 0, True)
        stream = ShardStream(shards, shard_counts(shards), args.crop, 0.25, 0, 0, 0, 1, args.batch)
        loaders = {(name, w): make_loader(dataset, sampler, args.batch, w, False, True) if name == "folder"
                   else shard_loader(stream, args.batch, w, False) for name in ("folder", "shards")
                   for w in (args.workers, 0)}
        rates = {key: [] for key in loaders}
        for epoch in range(args.rounds):  # which goes first alternates: neither always meets the other's leftovers
            for name in (["folder", "shards"] if epoch % 2 == 0 else ["shards", "folder"]):
                for workers in (args.workers, 0):
                    (sampler if name == "folder" else stream).set_epoch(epoch)
                    rates[name, workers].append(epoch_rate(loaders[name, workers], len(dataset)))
        for name in ("folder", "shards"):
            wall, cpu = rates[name, args.workers], [c for _, c in rates[name, 0]]
            rows.append({"what": f"training loader: {name}", "files": len(dataset), "crop": args.crop,
                         "workers": args.workers, "samples_s": statistics.median(r for r, _ in wall),
                         "rounds": [round(r, 1) for r, _ in wall], "cpu_ms_per_sample": statistics.median(cpu),
                         "load_1min": load()})
        rows[-1]["vs_folder"] = rows[-1]["samples_s"] / rows[-2]["samples_s"]
        rows[-1]["cpu_vs_folder"] = rows[-1]["cpu_ms_per_sample"] / rows[-2]["cpu_ms_per_sample"]
    finally:
        shutil.rmtree(out, ignore_errors=True)
    print_table(rows, ["what", "files", "seconds", "files_s", "mb_s", "samples_s", "vs_folder", "cpu_ms_per_sample",
                       "cpu_vs_folder", "load_1min"])
    print(f"-> {write_results('shards', rows, {'jpeg_size': f'{args.size[0]}x{args.size[1]}'})}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
