"""Image folders -> checked file lists -> uint8 crops in DataLoader workers (Lab happens on the device)."""
from __future__ import annotations

import itertools
import json
import logging
import math
import os
import random
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler

from gan_colorizer.atomic import write_atomic
from gan_colorizer.errors import UserError, shown
from gan_colorizer.data.images import IMAGE_EXTENSIONS, UnreadableImage, list_files, load_rgb
from gan_colorizer.data.scan import PathArray, check_files
from gan_colorizer.split import BY_PATH, lists_digest, split_by_path, split_by_position, training_set

log = logging.getLogger("gan_colorizer")

# Real color photos that ship inside installed packages: the embedded default data.
SAMPLE_TRAIN = [("skimage", "astronaut.png"), ("skimage", "rocket.jpg"), ("skimage", "motorcycle_left.png"),
                ("skimage", "motorcycle_right.png"), ("skimage", "hubble_deep_field.jpg"), ("skimage", "retina.jpg"),
                ("skimage", "ihc.png"), ("sklearn", "china.jpg")]
SAMPLE_VAL = [("skimage", "chelsea.png"), ("skimage", "coffee.png"), ("sklearn", "flower.jpg")]


def sample_photos() -> tuple[list[Path], list[Path]]:
    """(train, val) paths of the embedded sample photos from scikit-image's and scikit-learn's data folders."""
    import skimage.data
    import sklearn.datasets
    folders = {"skimage": Path(skimage.data.__file__).parent,
               "sklearn": Path(sklearn.datasets.__file__).parent / "images"}
    paths = [[folders[pkg] / name for pkg, name in group] for group in (SAMPLE_TRAIN, SAMPLE_VAL)]
    missing = [str(p) for p in paths[0] + paths[1] if not p.is_file()]
    if missing:
        raise UserError(f"embedded sample photos missing from the installed packages: {', '.join(missing)}")
    return paths[0], paths[1]


@dataclass
class FileScan:
    """The outcome of checking every file of a folder: usable, unreadable (with reasons) and gray."""
    source: str
    used: list[str] = field(default_factory=list)  # paths as str(Path) spells them: no Path per file at 1M files
    skipped: list[tuple[str, str]] = field(default_factory=list)
    gray: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"source": self.source, "used": len(self.used), "gray_excluded": [str(p) for p in self.gray],
                "skipped": [{"path": p, "reason": r} for p, r in self.skipped]}


def scan_files(paths, source: str, keep_gray: bool, workers: int = 4, root: Path | None = None,
               stamps=None) -> FileScan:
    """Check every file (scan.check_files; cached when `root` is given, with the listing's stamps when it has
    them): unreadable ones are skipped with one warning line each, on every run."""
    names = [str(p) for p in paths]
    out = check_files(names, workers, root, stamps)
    readable = out.reason < 0
    skipped = [(names[i], out.reasons[out.reason[i]]) for i in np.flatnonzero(~readable)]
    for path, why in skipped:  # as data: a file's name, or a reason from the cache, may hold escape codes
        log.warning("warning: skipped %s: %s", shown(path), shown(why))
    gray = readable & out.gray & (not keep_gray)
    return FileScan(source, list(itertools.compress(names, (readable & ~gray).tolist())), skipped,
                    list(itertools.compress(names, gray.tolist())))


def scan_folder(root, keep_gray: bool, workers: int = 4, flag: str = "--data") -> FileScan:
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{flag} {root}: {'a file, not a folder' if root.exists() else 'no such folder'}")
    # absolute paths: the saved file lists must still name the files when a resume starts in another folder
    names, stamps = list_files(root.resolve())
    scan = scan_files(names, str(root), keep_gray, workers, root=root, stamps=stamps)
    if not scan.used:
        raise UserError(f"{flag} {root}: no usable image ({len(scan.skipped)} unreadable, {len(scan.gray)} gray "
                        f"left out; looked for {' '.join(IMAGE_EXTENSIONS)})")
    return scan


@dataclass
class DataSplit:
    train: list[str]
    val: list[str]
    summary: dict
    embedded: bool
    rule: str = BY_PATH  # how --val-fraction chose the validation files (split.RULES)
    carried: dict | None = None  # split.training_set() of train, when the split made it on the way


def prepare_files(data_cfg, seed: int, rule: str = BY_PATH) -> DataSplit:
    """Resolve --data / --val-data / --val-fraction (or the embedded sample) into train and val file lists; `rule`
    (split.RULES) is how --val-fraction chooses: by path hash, or as runs started before issue 22 did."""
    keep = data_cfg.include_gray
    workers = min(16, max(2, data_cfg.num_workers, os.cpu_count() or 1))  # threads: the scan mostly waits on I/O
    if data_cfg.data is None:
        train, val = sample_photos()
        scans = [scan_files(train, "embedded:train", keep), scan_files(val, "embedded:val", keep)]
        return DataSplit(scans[0].used, scans[1].used, {"train": scans[0].to_dict(), "val": scans[1].to_dict()}, True)
    scan = scan_folder(data_cfg.data, keep, workers)
    root, carried = str(Path(data_cfg.data).resolve()), None  # the root the scan's names start with
    if data_cfg.val_data:
        val_scan = scan_folder(data_cfg.val_data, keep, workers, flag="--val-data")
        train, val = scan.used, val_scan.used
        summary = {"train": scan.to_dict(), "val": val_scan.to_dict()}
    else:
        if rule == BY_PATH:
            train, val, hashes = split_by_path(scan.used, root, data_cfg.val_fraction, seed)
            carried = training_set(train, root, hashes)
        else:
            train, val = split_by_position(scan.used, data_cfg.val_fraction, seed)
        summary = {"train": scan.to_dict(), "val": {"source": f"{data_cfg.val_fraction} of --data, seed {seed}",
                                                    "rule": rule}}
    summary["train"]["used"], summary["val"]["used"] = len(train), len(val)
    return DataSplit(train, val, summary, False, rule, carried or training_set(train, root))


def save_split(split: DataSplit, run_dir: Path) -> str:
    """Write the file lists and counts into the run directory; return a one-line account."""
    write_atomic(run_dir / "train_files.txt", "".join(f"{p}\n" for p in split.train))  # a kill leaves the old list
    write_atomic(run_dir / "val_files.txt", "".join(f"{p}\n" for p in split.val))
    write_atomic(run_dir / "data.json", json.dumps(split.summary, indent=2))
    t, v = split.summary["train"], split.summary["val"]
    skipped = len(t["skipped"]) + len(v.get("skipped", []))
    gray = len(t["gray_excluded"]) + len(v.get("gray_excluded", []))
    sources = ["the embedded sample photos" if split.embedded else t["source"], v["source"]]  # --val-data, its share
    if "shards" in t:  # of --data, the val shards, or embedded:val: which photos a validation figure speaks for
        sources = [f"{source} ({n} shard{'s' * (n != 1)})" for source, n in zip(sources, (t["shards"], v["shards"]))]
    return (f"data: {t['used']} training and {v['used']} validation images; training: {sources[0]}; validation: "
            f"{sources[1]}; {skipped} unreadable skipped, {gray} gray left out (see {run_dir / 'data.json'})")


def split_digest(data: DataSplit) -> str:
    """A fingerprint of the file lists, kept in checkpoints so that a resume can tell whether they changed."""
    return lists_digest(data.train, data.val)


def saved_split(run_dir: Path, digest: str, embedded: bool) -> DataSplit | None:
    """The file lists a run started with, when runs/NAME still holds them unchanged (same digest); else None.

    A resume never rescans the folder: files added since are not used, and files gone since stay in the lists
    (so that every other image keeps its index) and are skipped when met, as the resumed run would otherwise differ.
    """
    try:
        lists = [(run_dir / f"{n}_files.txt").read_text().splitlines() for n in ("train", "val")]
    except (OSError, UnicodeDecodeError):
        return None
    split = DataSplit(lists[0], lists[1], {}, embedded)
    if split_digest(split) != digest:
        return None
    gone = {p for p in split.train + split.val if not os.path.isfile(p)}
    if split.train and gone.issuperset(split.train):
        raise UserError(f"all {len(split.train)} training images of this run are gone (e.g. {split.train[0]}): "
                        f"is the data disk mounted?")
    if gone:
        log.warning("warning: %d of the %d images of this run are gone since it started (e.g. %s); they are skipped",
                    len(gone), len(split.train) + len(split.val), sorted(gone)[0])
    return split


def crop_box(width: int, height: int, rng: random.Random | None, scale_min: float) -> tuple[int, int, int, int]:
    """A random resized crop box (area share in [scale_min, 1], aspect in [3/4, 4/3]); the center square without rng."""
    if rng is not None:
        area = width * height
        for _ in range(10):
            target = area * rng.uniform(scale_min, 1.0)
            ratio = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
            w, h = round(math.sqrt(target * ratio)), round(math.sqrt(target / ratio))
            if 0 < w <= width and 0 < h <= height:
                left, top = rng.randint(0, width - w), rng.randint(0, height - h)
                return left, top, left + w, top + h
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    return left, top, left + side, top + side


class PhotoDataset(Dataset):
    """Photos as uint8 (3, S, S) crops plus a flip flag; keys are (index, sample_seed) from EpochSampler.

    Randomness comes only from the key, so crops do not depend on the number of workers.
    A file that breaks after the scan is skipped with a warning and the next one is used.
    """

    def __init__(self, paths, image_size: int, train: bool, crop_scale: float = 0.25, cache: bool = False):
        self.paths = paths if isinstance(paths, PathArray) else PathArray(paths)  # flat worker memory
        self.size, self.train, self.crop_scale = image_size, train, crop_scale
        self.cache = {} if cache else None
        self.broken: set[int] = set()

    def __len__(self) -> int:
        return len(self.paths)

    def _load(self, index: int) -> Image.Image:
        if self.cache is not None and index in self.cache:
            return self.cache[index]
        min_side = decode_side(self.size, self.train, self.crop_scale)
        img = load_rgb(self.paths[index], min_side=None if self.cache is not None else min_side)
        if self.cache is not None:
            self.cache[index] = img
        return img

    def __getitem__(self, key):
        index, sample_seed = key if isinstance(key, tuple) else (key, 0)
        for attempt in range(len(self.paths)):
            i = (index + attempt) % len(self.paths)
            if i in self.broken:
                continue
            try:
                img = self._load(i)
                break
            except UnreadableImage as e:
                self.broken.add(i)
                print(f"warning: skipped {e.path} during training: {e.reason}", file=sys.stderr)
        else:
            raise RuntimeError("every image of the dataset became unreadable (is the data disk still mounted?)")
        return photo_crop(img, self.size, random.Random(sample_seed) if self.train else None, self.crop_scale)


def decode_side(size: int, train: bool, crop_scale: float) -> int:
    """The short side a JPEG may be decoded at (draft scaling) without losing pixels the crop needs."""
    return math.ceil(size / math.sqrt(crop_scale)) if train else size


def photo_crop(img: Image.Image, size: int, rng: random.Random | None, crop_scale: float) -> tuple[torch.Tensor, bool]:
    """(uint8 (3, size, size) crop, flip flag): a random resized crop and flip with rng, the center square without;
    what the folder and the shard datasets hand to the device (Lab happens there)."""
    box = crop_box(img.width, img.height, rng, crop_scale)
    crop = img.resize((size, size), Image.BICUBIC, box=box, reducing_gap=3.0)
    flip = bool(rng is not None and rng.random() < 0.5)
    return torch.from_numpy(np.asarray(crop, dtype=np.uint8).copy()).permute(2, 0, 1), flip


class EpochSampler(Sampler):
    """Yields (index, sample_seed): a fresh permutation per epoch from (seed, epoch), sharded over ranks.

    `set_epoch(epoch, start)` skips the first `start` samples of this rank, so a resumed run
    sees exactly the batches an uninterrupted run would have seen.
    """

    def __init__(self, n: int, seed: int, shuffle: bool, epoch_size: int = 0, rank: int = 0, world: int = 1,
                 pad: bool = True):
        """pad=False (validation): no sample repeated to even out the ranks' shares, which may then differ by one."""
        self.n, self.seed, self.shuffle, self.rank, self.world = n, seed, shuffle, rank, world
        size = epoch_size or n
        self.total = math.ceil(size / world) * world if pad else size
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def _keys(self) -> tuple[np.ndarray, np.ndarray]:
        """This rank's (indices, sample seeds) as arrays: no Python object per sample."""
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        reps = math.ceil(self.total / self.n)
        if self.shuffle:
            order = torch.cat([torch.randperm(self.n, generator=g) for _ in range(reps)])
        else:
            order = torch.arange(self.n).repeat(reps)
        seeds = torch.randint(0, 2**62, (self.total,), generator=g)
        return order[: self.total].numpy()[self.rank:: self.world], seeds.numpy()[self.rank:: self.world]

    def __iter__(self):
        order, seeds = self._keys()
        return ((int(i), int(s)) for i, s in zip(order[self.start:], seeds[self.start:]))

    @property
    def per_rank(self) -> int:
        return len(range(self.rank, self.total, self.world))

    def __len__(self) -> int:
        return self.per_rank - self.start


def make_loader(dataset: PhotoDataset, sampler: EpochSampler, batch_size: int, num_workers: int,
                pin_memory: bool, drop_last: bool, timeout: float = 0.0) -> DataLoader:
    """Worker seeds come from a private generator: the crops depend on the keys only, and drawing them from the
    global RNG would shift dropout after a mid-epoch resume. `timeout` (seconds) only applies to workers."""
    workers = num_workers if len(dataset) > 0 else 0
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                      pin_memory=pin_memory, drop_last=drop_last, persistent_workers=workers > 0,
                      prefetch_factor=4 if workers > 0 else None, timeout=timeout if workers > 0 else 0,
                      worker_init_fn=_leave_ctrl_c_to_the_main_process, generator=torch.Generator().manual_seed(0))


def _leave_ctrl_c_to_the_main_process(_worker_id: int) -> None:
    """Ctrl-C reaches the whole process group; the main process turns it into a clean stop, workers go on."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class LoaderFailure(UserError):
    """The DataLoader stopped delivering batches: a worker timed out or died, or every image became unreadable."""


def guarded(loader: DataLoader, source: str, timeout: float):
    """Iterate a DataLoader; a worker timeout or crash becomes a one-line LoaderFailure naming `source`."""
    batches = iter(loader)
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except RuntimeError as e:
            text = str(e)
            if "timed out" in text:
                reason = f"no batch from the DataLoader workers in {timeout:g} s (--loader-timeout): a slow or hung disk?"
            else:
                lines = [line.strip() for line in text.splitlines() if line.strip()]
                reason = f"data loading failed ({lines[-1] if lines else type(e).__name__})"
            raise LoaderFailure(f"{source}: {reason}") from None
        except (EOFError, ConnectionError):  # a worker killed while it handed over a batch's shared memory
            raise LoaderFailure(f"{source}: data loading failed (a DataLoader worker died while handing over a batch: "
                                "killed, or out of memory?)") from None
        yield batch
