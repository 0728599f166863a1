"""The tutorial's data in one command: fastai's COCO_SAMPLE through fastai's own untar_data (its cache under
~/.fastai or $FASTAI_HOME, its size and checksum check), split by the tutorial's rule, written as file lists and
folders of links that training reads (--data OUT/train --val-data OUT/val), and optionally as shards.

The rule (moein-shariatnia/Deep-Learning, "Image Colorization Tutorial"): the archive's train_sample/*.jpg,
np.random.seed(123), 10,000 of them chosen without replacement, then a permutation of those 10,000: the first
8,000 train, the other 2,000 validate.
"""
from __future__ import annotations

import glob
import json
import logging
import os
import shutil
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gan_colorizer.atomic import write_atomic
from gan_colorizer.console import Progress
from gan_colorizer.errors import UserError, reason

log = logging.getLogger("gan_colorizer")
COCO_SAMPLE_URL = "https://s3.amazonaws.com/fast-ai-coco/coco_sample.tgz"  # fastai's URLs.COCO_SAMPLE
COCO_SAMPLE_BYTES = 3_245_877_008  # fastai/data/download_checks.py's size for it
ORDERS = ("sorted", "glob")  # which order the rule draws from (glob: the tutorial's own, the disk's listing order)


@dataclass(frozen=True)
class TutorialSplit:
    seed: int = 123
    count: int = 10_000
    train: int = 8_000


def tutorial_split(paths: list[str], rule: TutorialSplit = TutorialSplit()) -> tuple[list[str], list[str]]:
    """(train, val) as the tutorial draws them from `paths`: its legacy-numpy stream (np.random.seed, then choice
    without replacement, then permutation), so the same list in the same order gives the tutorial's names."""
    if not 0 < rule.train < rule.count:
        raise UserError(f"--train {rule.train}: must be between 1 and --subset - 1 ({rule.count - 1})")
    if len(paths) < rule.count:
        raise UserError(f"the archive holds {len(paths)} photos, fewer than --subset {rule.count}")
    stream = np.random.RandomState(rule.seed)  # the generator np.random.seed seeds
    chosen = stream.choice(len(paths), rule.count, replace=False)
    order = stream.permutation(rule.count)
    pick = [paths[i] for i in chosen]
    return [pick[i] for i in order[:rule.train]], [pick[i] for i in order[rule.train:]]


def photo_paths(folder: Path, order: str = "sorted") -> list[str]:
    """The tutorial's candidates, folder/*.jpg. glob.glob lists them in the disk's directory order, which differs
    between machines (the tutorial notes its names vary for this reason): 'sorted' makes the split the same
    everywhere, 'glob' reproduces what the tutorial's own code picks on this disk."""
    paths = glob.glob(glob.escape(str(folder)) + "/*.jpg")
    return paths if order == "glob" else sorted(paths)


def fastai_store(cache: str | None):
    """fastai's downloader as untar_data builds it: its config (~/.fastai or $FASTAI_HOME), or `cache` as its base."""
    try:
        import fastai.data
        from fastai.data.external import fastai_cfg
        from fastdownload import FastDownload
    except ImportError:
        raise UserError("coco-sample downloads through fastai, which is not installed: "
                        "pip install 'gan_colorizer[data]' (or fastai)") from None
    if cache is None:
        return FastDownload(fastai_cfg(), module=fastai.data, base="~/.fastai")
    return FastDownload(None, module=fastai.data, base=cache)


def cache_paths(url: str = COCO_SAMPLE_URL, cache: str | None = None) -> tuple[Path, Path]:
    """(archive, extracted folder) where fastai keeps, or would keep, the dataset at `url`."""
    store = fastai_store(cache)  # first: without fastai, its one line
    from fastcore.net import urlclean
    archive = store.arch_path() / urlclean(Path(url).name)  # fastcore's urldest, once the folder exists
    return archive, store.data_path("data", archive)


class Undo:
    """The paths a run may create, each noted before it can: on failure those that did not exist are removed again
    (files; folders when empty, `tree` ones whole), so a failed run leaves nothing the user did not have."""

    def __init__(self):
        self.before: dict[Path, bool] = {}
        self.trees: set[Path] = set()

    def track(self, *paths: Path, tree: bool = False) -> None:
        for path in paths:
            self.before.setdefault(Path(path), os.path.lexists(path))
            self.trees |= {Path(path)} if tree else set()

    def __call__(self) -> None:
        for path in sorted((p for p, was in self.before.items() if not was), key=lambda p: -len(p.parts)):
            try:
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path) if path in self.trees else path.rmdir()
                elif os.path.lexists(path):
                    path.unlink()
            except OSError:  # a folder something else filled meanwhile stays
                pass


def fastai_home(cache: str | None) -> Path:
    """The folder fastai's config.ini is in: --cache, else $FASTAI_HOME or ~/.fastai (fastai's fastai_cfg)."""
    return Path(cache or os.environ.get("FASTAI_HOME", "~/.fastai")).expanduser().absolute()


def fetch(url: str = COCO_SAMPLE_URL, cache: str | None = None) -> Path:
    """The extracted folder, downloaded (with fastai's progress bar) and checked by fastai unless already there.
    A failure leaves nothing fastai created for it (its config, archive folder, lock, partial or refused download)."""
    undo = Undo()
    undo.track(fastai_home(cache), fastai_home(cache) / "config.ini")  # before fastai's config is made
    archive, folder = cache_paths(url, cache)
    from fastai.data.external import untar_data
    undo.track(archive.parent, archive, archive.with_name(archive.name + ".lock"),
               archive.with_name(archive.name + ".part"), folder.parent)
    if not folder.exists():
        size = f"{COCO_SAMPLE_BYTES / 1e9:.1f} GB, " if url == COCO_SAMPLE_URL else ""
        log.info("coco-sample: %s -> %s (%schecked against the size and checksum fastai records for it)", url,
                 archive, size)
    try:
        return Path(untar_data(url, base=cache) if cache else untar_data(url))
    except BaseException as e:
        whole = archive.is_file()
        undo()
        error = fetch_error(e, url, archive, folder, whole, kept=undo.before[archive])
        if error is None:
            raise
        raise error from None


def fetch_error(e: BaseException, url: str, archive: Path, folder: Path, whole: bool, kept: bool) -> UserError | None:
    """The one line for a failed untar_data (None: not one we expect); whole: the archive was downloaded whole,
    kept: it was there before this run (a download of this run is removed)."""
    if isinstance(e, (OSError, EOFError, tarfile.TarError, zlib.error)) and whole:  # fastai renames it only then
        then = "remove it and run again" if kept else "removed: run again"
        return UserError(f"coco-sample: cannot extract {archive} into {folder.parent} ({reason(e)}): {then}")
    if isinstance(e, OSError):  # no network (URLError), a refused or missing file (HTTPError), a full disk
        size = f" ({COCO_SAMPLE_BYTES / 1e9:.1f} GB)" if url == COCO_SAMPLE_URL else ""
        return UserError(f"coco-sample: {archive.name}{size} is not in {archive.parent} and cannot be downloaded "
                         f"from {url} ({reason(e)}): put it there (or its extracted folder at {folder}) and run again")
    if type(e) is Exception and "corrupt" in str(e):  # fastdownload's size / checksum refusal
        return UserError(f"coco-sample: {archive}: its size or checksum is not fastai's for {url} (damaged or "
                         f"incomplete download{'' if kept else '; removed'}): run again to download it anew")
    return None


def write_split(out: Path, train: list[str], val: list[str], links: bool = True) -> None:
    """OUT/train.txt and OUT/val.txt (absolute paths), and OUT/train/, OUT/val/ of links to the photos. The links
    of an earlier split there go first (check_out made sure only links live there), so a second run with another
    --seed, or with --no-links, leaves no photo of the first in them."""
    for role, files in (("train", train), ("val", val)):
        write_atomic(out / f"{role}.txt", "".join(f"{os.path.abspath(p)}\n" for p in files))
        for old in (out / role).iterdir() if (out / role).is_dir() else ():
            old.unlink()
    if not links:
        return
    with Progress(len(train) + len(val), "links", "file", leave=True) as bar:
        for role, files in (("train", train), ("val", val)):
            (out / role).mkdir(exist_ok=True)
            for path in files:
                (out / role / Path(path).name).symlink_to(os.path.abspath(path))
                bar.update()


def check_out(out: Path) -> None:
    """Refuse an --out whose train/ or val/ holds anything but links, before anything is downloaded."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: a file, not a folder")
    for role in ("train", "val"):
        kept = [p for p in (out / role).iterdir() if not p.is_symlink()] if (out / role).is_dir() else []
        if kept:
            raise UserError(f"--out {out}: {role}/ holds files that are not links ({kept[0].name}): choose another "
                            f"folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"--out {out}: cannot be written ({reason(e)})") from None


def coco_sample(out: Path, rule: TutorialSplit = TutorialSplit(), order: str = "sorted", links: bool = True,
                url: str = COCO_SAMPLE_URL, cache: str | None = None) -> dict:
    """Fetch COCO_SAMPLE, split it by the tutorial's rule into `out`; returns what split.json records. A run that
    fails leaves no --out it made (and fetch nothing of fastai's)."""
    undo = Undo()
    undo.track(out, tree=True)
    try:
        check_out(out)
        folder = fetch(url, cache) / "train_sample"
        paths = photo_paths(folder, order)
        train, val = tutorial_split(paths, rule)
        write_split(out, train, val, links)
    except BaseException:
        undo()
        raise
    record = {"dataset": "coco-sample", "source": url, "folder": str(folder), "photos": len(paths),
              "rule": "np.random.seed(seed); choice(photos, count, replace=False); permutation(count): first "
                      "`train` train, the rest validate (the tutorial's)",
              "seed": rule.seed, "count": rule.count, "train": len(train), "val": len(val), "order": order}
    write_atomic(out / "split.json", json.dumps(record, indent=1))
    return record
