"""Which photos train and which validate: each file's side decided by a hash of its path below the data folder (with
the seed), so adding or removing files moves only those files; and what a checkpoint carries of its training list, so
that stage 2 can tell when it validates on photos stage 1 trained on."""
from __future__ import annotations

import hashlib
import logging
import os
import random

import numpy as np

from gan_colorizer.data.scan import keys_below

log = logging.getLogger("gan_colorizer")

BY_PATH = "path-hash"  # the rule of runs started since issue 22
BY_POSITION = "position-shuffle"  # before: a seeded shuffle of positions in the sorted list (a checkpoint without a rule)
RULES = (BY_PATH, BY_POSITION)
_MIX = (np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB))  # splitmix64's finalizer


def path_hashes(names: list[str], root: str | None) -> np.ndarray:
    """64-bit BLAKE2b of each name's bytes, relative to root where the name lies below it (the full name otherwise,
    and for root None): the same on every machine and in every process (not Python's salted hash())."""
    if not names:
        return np.zeros(0, np.uint64)
    joined = keys_below(names, root)[1] if root is not None else os.fsencode("\0".join(names))
    b2 = hashlib.blake2b
    return np.frombuffer(b"".join([b2(k, digest_size=8).digest() for k in joined.split(b"\0")]), "<u8").copy()


def _seed_key(seed: int) -> np.uint64:
    return np.uint64(int.from_bytes(hashlib.blake2b(str(seed).encode(), digest_size=8).digest(), "little"))


def validation_mask(hashes: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Whether each file validates: its path hash mixed with the seed (splitmix64's finalizer, a bijection, so each
    seed draws its own pseudo-random sample) falls below fraction x 2^64. At least one file validates and one
    trains (a tiny folder may otherwise draw none)."""
    if fraction <= 0 or len(hashes) < 2:
        return np.zeros(len(hashes), bool)
    z = hashes ^ _seed_key(seed)
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * _MIX[0]
        z = (z ^ (z >> np.uint64(27))) * _MIX[1]
    z ^= z >> np.uint64(31)
    val = z < np.uint64(min(int(fraction * 2.0**64), 2**64 - 1))
    if not val.any():
        val[np.argmin(z)] = True
    if val.all():
        val[np.argmax(z)] = False
    return val


def split_by_path(paths: list[str], root: str | None, fraction: float, seed: int) -> tuple[list, list, np.ndarray]:
    """(train, val, the training files' path hashes sorted) of a file list, each part in the list's order."""
    if len(paths) < 2 and fraction > 0:
        log.warning("warning: only one usable image: it is used for training and validation")
        return list(paths), list(paths), np.sort(path_hashes(list(paths), root))
    hashes = path_hashes(paths, root)
    val = validation_mask(hashes, fraction, seed)
    train = [p for p, v in zip(paths, val.tolist()) if not v]
    return train, [p for p, v in zip(paths, val.tolist()) if v], np.sort(hashes[~val])


def split_by_position(paths: list, fraction: float, seed: int) -> tuple[list, list]:
    """The rule of runs started before issue 22, kept so that they rescan to the same lists: a seeded shuffle of
    positions in the sorted list (adding one file moves most of the validation photos)."""
    if fraction <= 0:
        return list(paths), []
    if len(paths) < 2:
        log.warning("warning: only one usable image: it is used for training and validation")
        return list(paths), list(paths)
    order = list(range(len(paths)))
    random.Random(seed).shuffle(order)
    n_val = min(len(order) - 1, max(1, round(len(order) * fraction)))
    return [paths[i] for i in sorted(order[n_val:])], [paths[i] for i in sorted(order[:n_val])]


# ------------------------------------------------------------------------------- what stage 1 trained on
def training_set(train: list[str], root: str | None, hashes: np.ndarray | None = None) -> dict:
    """What a checkpoint carries of its training list: the folder the names are relative to and their sorted path
    hashes (8 bytes a file: 10 MB for ImageNet) as an int64 tensor (a weights-only load takes it)."""
    import torch
    hashes = np.sort(path_hashes(train, root)) if hashes is None else hashes
    return {"root": root or "", "hashes": torch.from_numpy(hashes.view(np.int64))}


def count_trained_on(carried: dict, files: list[str]) -> int:
    """How many of `files` are in a training set that training_set() made."""
    hashes = carried["hashes"].numpy().view(np.uint64)
    mine = path_hashes(files, carried["root"] or None)
    at = np.minimum(np.searchsorted(hashes, mine), max(len(hashes) - 1, 0))
    return int((hashes[at] == mine).sum()) if len(hashes) else 0


def lists_digest(train: list[str], val: list[str]) -> str:
    """A fingerprint of the file lists, kept in checkpoints so that a resume can tell whether they changed."""
    h = hashlib.sha256()
    for name, paths in (("train", train), ("val", val)):
        h.update("".join(f"{p}\n" for p in [name, *paths]).encode())
    return h.hexdigest()[:16]


def stage1_training_set(ckpt: dict) -> dict | None:
    """What a stage-1 checkpoint says it trained on: the set it carries, or (a checkpoint from before issue 22) the
    training list its run folder still holds unchanged (same digest); None when neither is there."""
    if isinstance(ckpt.get("train_set"), dict):
        return ckpt["train_set"]
    run = ckpt["config"].get("run", {})
    folder = os.path.join(str(run.get("runs_dir", "runs")), str(run.get("name")))
    try:
        lists = [_read_lines(os.path.join(folder, f"{n}_files.txt")) for n in ("train", "val")]
    except (OSError, UnicodeDecodeError):
        return None
    return training_set(lists[0], None) if lists_digest(*lists) == ckpt.get("data_digest") else None


def _read_lines(path: str) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return f.read().splitlines()


def warn_if_validating_on_stage1_training(ckpt: dict, path: str, val: list[str]) -> int | None:
    """Warn, with counts, when validation files of this run were training files of the run it starts from (stage 1,
    for a stage 2; its figures would flatter the model); returns how many (None: the checkpoint cannot tell)."""
    carried = stage1_training_set(ckpt)
    if carried is None:
        log.info("note: %s carries no training list (written before issue 22, and its run folder's lists are gone): "
                 "whether this run validates on photos stage 1 trained on cannot be checked", path)
        return None
    seen = count_trained_on(carried, val)
    if seen:
        log.warning("warning: %d of the %d validation images of this run were training images of the run of "
                    "--init-generator %s (the folder changed since, or --data / --seed / --val-fraction differ): its "
                    "validation figures are optimistic on them", seen, len(val), path)
    return seen
