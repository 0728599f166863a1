"""The folder scan, run once: each file's check (usable / unreadable and why / gray) cached by path, size, mtime
and ctime; and the compact arrays file lists are held in by datasets."""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from tqdm import tqdm

from gan_colorizer.atomic import write_atomic
from gan_colorizer.images import UnreadableImage, is_gray, open_image

log = logging.getLogger("gan_colorizer")
VERSION = 2  # raise when the checks in images.py or the key change (2: ctime added): older caches are then ignored


def cache_file(root: Path) -> Path:
    """$XDG_CACHE_HOME/gan_colorizer/scan-<hash of the folder's resolved path>.json (default ~/.cache).

    A user cache rather than a file beside the runs: both stages and every run directory share it, and it works
    for read-only data folders."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    digest = hashlib.sha256(os.fsencode(Path(root).resolve())).hexdigest()[:16]
    return base / "gan_colorizer" / f"scan-{digest}.json"


def check(path) -> tuple[str | None, bool]:
    """(why the file is unreadable, or None; whether it is gray), decoding JPEGs at reduced scale."""
    try:
        return None, is_gray(open_image(path, min_side=64))
    except UnreadableImage as e:
        return e.reason, False


def check_here(names: list[str], workers: int, bar=None) -> list[tuple[str | None, bool]]:
    """check() for each name in this process (threads: the check mostly waits on I/O), in order."""
    outcomes = []
    with ThreadPoolExecutor(max(1, workers)) as pool:
        for outcome in pool.map(check, names):
            outcomes.append(outcome)
            if bar is not None:
                bar.update()
    return outcomes


_checker = check_here  # what check_files hands the files to check to: shared_checking() swaps it


@contextlib.contextmanager
def shared_checking(checker):
    """Within the block, check_files hands the files it must check to checker(names, workers, bar) -> outcomes in
    order (train/distributed.py shares them over the torchrun processes)."""
    global _checker
    saved, _checker = _checker, checker
    try:
        yield
    finally:
        _checker = saved


def _stamp(path: str) -> tuple[int, int, int] | None:
    """(size, mtime, ctime): ctime too, as a chmod that makes an unreadable file readable changes only the ctime."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns, st.st_ctime_ns


def _read(cache: Path, root: str) -> dict:
    try:
        saved = json.loads(cache.read_text())
        if saved.get("version") == VERSION and saved.get("root") == root:
            return saved["files"]
    except FileNotFoundError:
        pass
    except (OSError, ValueError, KeyError, AttributeError) as e:
        log.info("note: scan cache %s unreadable (%s): every file is checked again", cache, e)
    return {}


def _write(cache: Path, root: str, files: dict) -> None:
    try:
        write_atomic(cache, json.dumps({"version": VERSION, "root": root, "files": files}, separators=(",", ":")))
    except OSError as e:
        log.warning("warning: scan cache not written (%s: %s): the next run checks every file again", cache,
                    e.strerror or e)


def check_files(paths, workers: int = 4, root: Path | None = None) -> list[tuple[str | None, bool]]:
    """check() for every path, in order; with `root` (the folder the paths lie under) outcomes of files whose size,
    mtime and ctime are unchanged come from the folder's cache file, and the cache is rewritten when anything changed."""
    names = [str(p) for p in paths]
    cache = cache_file(root) if root is not None else None
    top = str(Path(root).resolve()) if root is not None else ""
    known = _read(cache, top) if cache else {}
    keys = [n[len(top) + 1:] if top and n.startswith(top + os.sep) else n for n in names]
    stamps = [_stamp(n) for n in names] if cache else [None] * len(names)
    outcomes: list = [None] * len(names)
    todo = []
    for i, (key, stamp) in enumerate(zip(keys, stamps)):
        entry = known.get(key)
        if stamp is not None and entry is not None and tuple(entry[:3]) == stamp:
            outcomes[i] = (entry[3], entry[4])
        else:
            todo.append(i)
    if todo:
        with tqdm(total=len(todo), desc="scan", unit="file", dynamic_ncols=True, disable=None, leave=False) as bar:
            for i, outcome in zip(todo, _checker([names[i] for i in todo], workers, bar)):
                outcomes[i] = outcome
    if cache:
        files = {k: [*s, *o] for k, s, o in zip(keys, stamps, outcomes) if s is not None}
        if todo or len(files) != len(known):  # new, changed or removed files
            _write(cache, top, files)
    return outcomes


class PathArray:
    """A file list as one uint8 array of encoded names plus an offsets array: DataLoader workers read it without
    touching a Python object per file, so their memory stays flat over an epoch (no copy-on-read of refcounts)."""

    def __init__(self, paths):
        encoded = [os.fsencode(p) for p in paths]
        self.offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum(np.fromiter(map(len, encoded), np.int64, len(encoded)), out=self.offsets[1:])
        self.names = np.frombuffer(b"".join(encoded), dtype=np.uint8)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, index: int) -> Path:
        if not -len(self) <= index < len(self):
            raise IndexError(f"file index {index} out of range for {len(self)} files")
        index %= len(self)
        return Path(os.fsdecode(self.names[self.offsets[index]:self.offsets[index + 1]].tobytes()))

    def __iter__(self):
        return (self[i] for i in range(len(self)))
