"""The folder scan, run once: each file's check (usable / unreadable and why / gray) cached by path, size, mtime
and ctime; and the compact arrays file lists are held in by datasets."""
from __future__ import annotations

import contextlib
import hashlib
import io
import itertools
import json
import logging
import os
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gan_colorizer.atomic import write_atomic
from gan_colorizer.console import Progress
from gan_colorizer.errors import shown
from gan_colorizer.data.images import UnreadableImage, is_gray, open_image

log = logging.getLogger("gan_colorizer")
VERSION = 3  # raise when the checks in images.py or the key change (2: ctime, 3: npz): older caches are then ignored


def cache_file(root: Path) -> Path:
    """$XDG_CACHE_HOME/gan_colorizer/scan-<hash of the folder's resolved path>.npz (default ~/.cache).

    A user cache rather than a file beside the runs: both stages and every run directory share it, and it works
    for read-only data folders."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    digest = hashlib.sha256(os.fsencode(Path(root).resolve())).hexdigest()[:16]
    return base / "gan_colorizer" / f"scan-{digest}.npz"


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


@dataclass
class Outcomes:
    """Each file's check as arrays (a million files hold no Python object each): reason[i] indexes `reasons` (-1:
    readable), gray[i] (meaningful for readable files)."""
    reasons: list[str]
    reason: np.ndarray
    gray: np.ndarray

    def __len__(self) -> int:
        return len(self.reason)

    def __getitem__(self, i: int) -> tuple[str | None, bool]:
        return (self.reasons[self.reason[i]] if self.reason[i] >= 0 else None), bool(self.gray[i])

    def fill(self, indices, outcomes) -> None:
        """Set files `indices` from check() outcomes (why unreadable or None, gray)."""
        code = {r: i for i, r in enumerate(self.reasons)}
        for i, (why, gray) in zip(indices, outcomes):
            if why is not None and why not in code:
                code[why] = len(self.reasons)
                self.reasons.append(why)
            self.reason[i], self.gray[i] = (-1 if why is None else code[why]), gray

    def compact(self) -> None:
        """Drop reasons no file has any more (those of removed or mended files), renumbering the codes."""
        used = np.unique(self.reason[self.reason >= 0])
        renumber = np.zeros(len(self.reasons) + 1, np.int64)  # + 1: index 0 exists for the readable (-1 -> 0)
        renumber[used] = np.arange(len(used))
        self.reason = np.where(self.reason >= 0, renumber[np.maximum(self.reason, 0)], -1)
        self.reasons = [self.reasons[i] for i in used]


def _joined(keys: list[str]) -> bytes:
    return os.fsencode("\0".join(keys))  # no file name holds a NUL


def keys_below(names: list[str], top: str) -> tuple[list[str] | None, bytes]:
    """(the names relative to top, or None where that list was not needed; the keys joined): names under top lose
    it in one bytes replace on the joined names (a million names: 0.7 s as a list comprehension)."""
    prefix = os.fsencode(top + os.sep)
    joined = _joined(names)
    if joined.startswith(prefix) and joined.count(b"\0" + prefix) == len(names) - 1:
        return None, joined.replace(b"\0" + prefix, b"\0")[len(prefix):]
    keys = [p[len(top) + 1:] if p.startswith(top + os.sep) else p for p in names]
    return keys, _joined(keys)


def _read(cache: Path, root: str) -> tuple[bytes, np.ndarray, Outcomes] | None:
    """(the keys joined, their stamps (n, 3), their outcomes) of the folder's cache file, or None."""
    try:
        with np.load(cache, allow_pickle=False) as saved:
            if any(i.compress_type != zipfile.ZIP_STORED for i in saved.zip.infolist()):
                raise ValueError("compressed arrays: not a cache this code wrote")  # no zip bomb is inflated
            meta = json.loads(saved["meta"].tobytes())
            if not isinstance(meta, dict):
                raise ValueError("no metadata object")
            if meta.get("version") != VERSION or meta.get("root") != root:
                return None
            keys, stamps = saved["keys"].tobytes(), saved["stamps"]
            if not isinstance(meta["reasons"], list) or not all(isinstance(r, str) for r in meta["reasons"]):
                raise ValueError("reasons that are not text")
            outcomes = Outcomes(meta["reasons"], saved["reason"].astype(np.int64), saved["gray"].astype(bool))
        n = keys.count(b"\0") + 1 if keys else 0
        if stamps.shape != (n, 3) or outcomes.reason.shape != (n,) or outcomes.gray.shape != (n,) or \
                not -1 <= outcomes.reason.min(initial=-1) <= outcomes.reason.max(initial=-1) < len(outcomes.reasons):
            raise ValueError("arrays of unequal lengths, or reason codes out of range")
        return keys, stamps, outcomes
    except FileNotFoundError:
        pass
    except (OSError, ValueError, KeyError, TypeError, EOFError, MemoryError, zipfile.BadZipFile) as e:
        log.info("note: scan cache %s unreadable (%s): every file is checked again", cache, shown(e))
    return None


def _split(keys: bytes) -> list[str]:
    return os.fsdecode(keys).split("\0") if keys else []


def _write(cache: Path, root: str, keys: bytes, stamps: np.ndarray, outcomes: Outcomes) -> None:
    outcomes.compact()
    meta = json.dumps({"version": VERSION, "root": root, "reasons": outcomes.reasons}).encode()
    data = io.BytesIO()
    np.savez(data, meta=np.frombuffer(meta, np.uint8), keys=np.frombuffer(keys, np.uint8), stamps=stamps,
             reason=outcomes.reason.astype(np.int32), gray=outcomes.gray)
    try:
        write_atomic(cache, data.getvalue())
    except OSError as e:
        log.warning("warning: scan cache not written (%s: %s): the next run checks every file again", cache,
                    e.strerror or e)


def cached_outcomes(root: Path) -> dict[str, tuple]:
    """The folder's cache as {path under root: (size, mtime, ctime, why unreadable or None, gray)} (tests, bench)."""
    found = _read(cache_file(root), str(Path(root).resolve()))
    if found is None:
        return {}
    keys, stamps, outcomes = found
    return {k: (*map(int, s), *outcomes[i]) for i, (k, s) in enumerate(zip(_split(keys), stamps))}


def check_files(names: list[str], workers: int = 4, root: Path | None = None, stamps=None) -> Outcomes:
    """check() for every file name, in order; with `root` (the folder the files lie under) and `stamps` (each
    file's (size, mtime_ns, ctime_ns), or None for a dangling link, as images.list_files gives them from its one
    stat per file) outcomes of files whose stamp is unchanged come from the folder's cache file, and the cache is
    rewritten when anything changed. ctime is in the stamp as a chmod that makes an unreadable file readable changes
    only the ctime.

    At a million files the cached path is array work: the keys are compared as one joined string (the folder
    unchanged: the same list) and the stamps as one array."""
    n = len(names)
    outcomes = Outcomes([], np.full(n, -1, np.int64), np.zeros(n, bool))
    todo, found = np.arange(n), None
    cache = cache_file(root) if root is not None else None
    if cache:
        top = str(Path(root).resolve())
        keys, joined = keys_below(names, top)
        now = np.fromiter(itertools.chain.from_iterable(s or (-1, -1, -1) for s in stamps), np.int64, 3 * n)
        now = now.reshape(n, 3)
        found = _read(cache, top)
        if found is not None:
            old_keys, old_stamps, old = found
            if old_keys == joined:  # the same files as last time, in the same order
                at = np.arange(n)
            else:
                position = {k: i for i, k in enumerate(_split(old_keys))}
                at = np.fromiter((position.get(k, -1) for k in keys or _split(joined)), np.int64, n)
            known = np.flatnonzero(at >= 0)
            same = known[(old_stamps[at[known]] == now[known]).all(axis=1) & (now[known, 0] >= 0)]
            outcomes.reasons = list(old.reasons)
            outcomes.reason[same], outcomes.gray[same] = old.reason[at[same]], old.gray[at[same]]
            todo = np.setdiff1d(todo, same, assume_unique=True)
    if len(todo):
        with Progress(len(todo), "scan", "file") as progress:  # off a terminal: a dated line every 30 s
            outcomes.fill(todo, _checker([names[i] for i in todo], workers, progress))
    # new, changed or removed files (a dangling link, checked on every run, changes nothing in the cache)
    if cache and (found is None or found[0] != joined or (now[todo, 0] >= 0).any()):
        _write(cache, top, joined, now, outcomes)
    return outcomes


class PathArray:
    """A file list as one uint8 array of encoded names plus an offsets array: DataLoader workers read it without
    touching a Python object per file, so their memory stays flat over an epoch (no copy-on-read of refcounts)."""

    def __init__(self, paths):
        names = [str(p) for p in paths]
        # the names NUL-terminated in one buffer (no file name holds a NUL): offsets from one pass over the bytes
        self.names = np.frombuffer(_joined(names) + b"\0" if names else b"", dtype=np.uint8)
        self.offsets = np.concatenate(([0], np.flatnonzero(self.names == 0) + 1))  # file i: [offsets[i], [i+1] - 1)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, index: int) -> Path:
        if not -len(self) <= index < len(self):
            raise IndexError(f"file index {index} out of range for {len(self)} files")
        index %= len(self)
        return Path(os.fsdecode(self.names[self.offsets[index]:self.offsets[index + 1] - 1].tobytes()))

    def __iter__(self):
        return (self[i] for i in range(len(self)))
