"""WebDataset shards: write them from an image folder (the checked files, the training split, original bytes), and
find them again from --data: brace patterns or a folder, counts from the index, members listed for evaluation.

    python -m gan_colorizer.data.shards --data photos/ --out shards/     # shards/train-000000.tar ... val-000000.tar
"""
from __future__ import annotations

import io
import json
import logging
import os
import re
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import braceexpand

from gan_colorizer.atomic import replacing, write_atomic
from gan_colorizer.config import DataConfig, RunConfig
from gan_colorizer.console import Progress, run_command, setup_logging
from gan_colorizer.errors import UserError, reason, shown
from gan_colorizer.data.images import IMAGE_EXTENSIONS
from gan_colorizer.options import REQUIRED, opt, parse_options, tool_parser, workers_opt

log = logging.getLogger("gan_colorizer")
INDEX = "index.json"  # beside the shards: samples per shard, so epoch sizes are known without reading the tars
FORMAT = "gan_colorizer-shards"
IMAGE_EXTS = {e.lstrip(".") for e in IMAGE_EXTENSIONS}


@dataclass
class ShardOptions:
    """Flags of `python -m gan_colorizer.data.shards`; the split flags default to training's, so that the shards hold
    the train / val split a folder run with the same --seed would make."""
    data: str = opt(REQUIRED, "image folder, searched recursively and checked as training checks it", metavar="DIR")
    out: str = opt(REQUIRED, "folder for train-NNNNNN.tar, val-NNNNNN.tar and index.json (new or empty)",
                   metavar="DIR")
    shard_size: int = opt(1000, "images per shard (the last of each split holds the rest)", metavar="N")
    val_fraction: float = opt(DataConfig.val_fraction, "share held out as val-*.tar; 0 = no validation shards")
    val_data: str | None = opt(None, "held-out image folder written as val-*.tar, instead of --val-fraction of "
                                     "--data (training's --val-data)", metavar="DIR")
    seed: int = opt(RunConfig.seed, "seed of the train / val split (training's --seed)")
    include_gray: bool = opt(False, "keep photos that are already gray (training's --include-gray)")
    num_workers: int = workers_opt("threads that check the files (the scan, cached as training caches it)",
                                   "one per CPU core, 2 to 16; more than the cores help on slow network disks")


def sample_key(relative: Path) -> str:
    """A WebDataset key from a relative path: the path without its extension, dots in the name made '_' (the key
    ends at the name's first dot)."""
    return str(relative.with_name(relative.stem.replace(".", "_")))


def write_shards(opts: ShardOptions) -> dict:
    """Scan, split and write every shard (each atomically), then index.json; returns the index."""
    from gan_colorizer.data.dataset import prepare_files  # data imports nothing of this module; the split is training's
    out = _check_options(opts)
    cfg = DataConfig(data=opts.data, val_data=opts.val_data, val_fraction=opts.val_fraction,
                     include_gray=opts.include_gray, num_workers=opts.num_workers)
    split = prepare_files(cfg, opts.seed)
    root = Path(opts.data).resolve()
    counts, n_bytes = {}, 0
    with Progress(len(split.train) + len(split.val), "shards", "file", leave=True) as bar:  # or dated lines
        for name, files in (("train", split.train), ("val", split.val)):
            for i, start in enumerate(range(0, len(files), opts.shard_size)):
                shard = out / f"{name}-{i:06d}.tar"
                try:
                    counts[shard.name], size = _write_shard(shard, files[start:start + opts.shard_size], root, bar)
                except OSError as e:
                    raise UserError(f"--out {shard}: cannot be written ({e.strerror or e})") from None
                n_bytes += size
    index = {"format": FORMAT, "version": 1, "source": str(opts.data), "seed": opts.seed,
             "val_fraction": None if opts.val_data else opts.val_fraction, "val_data": opts.val_data,
             "include_gray": opts.include_gray, "shard_size": opts.shard_size,
             "shards": counts, "bytes": n_bytes, "scan": split.summary}
    try:
        write_atomic(out / INDEX, json.dumps(index, indent=1))
    except OSError as e:
        raise UserError(f"--out {out / INDEX}: cannot be written ({e.strerror or e})") from None
    return index


def _check_options(opts: ShardOptions) -> Path:
    """Refuse what training would refuse, and make sure --out can be written, before the scan; returns --out."""
    if opts.shard_size < 1:
        raise UserError(f"--shard-size {opts.shard_size}: must be >= 1")
    if not 0.0 <= opts.val_fraction < 1.0:
        raise UserError(f"--val-fraction {opts.val_fraction}: must be in [0, 1)")  # training's range (config.py)
    if opts.num_workers < -1:
        raise UserError(f"--num-workers {opts.num_workers}: must be >= 0, or -1 for auto")
    for flag, folder in (("--data", opts.data), ("--val-data", opts.val_data)):
        if folder and Path(folder).is_file():
            raise UserError(f"{flag} {folder}: a file, not a folder")
    out = Path(opts.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: a file, not a folder")
    taken = sorted(p.name for p in out.glob("*") if p.name == INDEX or p.suffix == ".tar") if out.is_dir() else []
    if taken:
        raise UserError(f"--out {out}: already holds shards ({taken[0]}): choose another folder or remove them")
    try:
        out.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=out).close()  # a folder that exists but refuses files (read-only disk)
    except OSError as e:
        raise UserError(f"--out {out}: cannot be written ({e.strerror or e})") from None
    return out


def _write_shard(shard: Path, files: list[str], root: Path, bar) -> tuple[int, int]:
    """One tar of the files' original bytes (no re-encode), under a temporary name until whole; a file that cannot
    be read now is one line and left out. Returns (samples, bytes)."""
    import webdataset as wds  # imports torch: here, so the writer's --help answers without it
    count, size, keys = 0, 0, set()
    with replacing(shard, fsync=True) as tmp, open(tmp, "wb") as stream, \
            wds.TarWriter(stream, encoder=False, format="PAX_FORMAT", mtime=0) as writer:
        for path in map(Path, files):
            bar.update()
            key = sample_key(path.relative_to(root)) if path.is_relative_to(root) else path.stem
            while key in keys:  # a.jpg beside a.png, or a.b.jpg beside a_b.jpg
                key += "~"
            try:
                data = path.read_bytes()
            except OSError as e:
                log.warning("warning: skipped %s: %s", path, e.strerror or e)
                continue
            writer.write({"__key__": key, path.suffix.lower().lstrip("."): data})
            keys.add(key)
            count, size = count + 1, size + len(data)
    return count, size


# ---------------------------------------------------------------------------------------------- finding shards
def is_shards(spec: str | None) -> bool:
    """Whether --data names shards: a folder holding the writer's index.json or only .tar files (a photo folder with
    a stray backup.tar stays a photo folder); a path that is no folder, when it is a .tar name or brace pattern."""
    if not spec or spec.startswith("embedded:"):
        return False
    folder = Path(spec)
    if not folder.is_dir():
        return ".tar" in spec
    if (folder / INDEX).is_file():
        return True
    tars = False
    for entry in folder.iterdir():  # stops at the first other entry: a large photo folder is not listed
        if entry.name.startswith("."):
            continue
        if entry.suffix != ".tar" or not entry.is_file():
            return False
        tars = True
    return tars


def expand(spec: str, flag: str = "--data", role: str = "train") -> list[Path]:
    """The shard files of a spec: 'shards/train-{000000..000127}.tar' (brace pattern), one .tar, or a folder (its
    ROLE-*.tar, else every .tar in it). Every named file must exist."""
    folder = Path(spec)
    if folder.is_dir():
        shards = sorted(folder.glob(f"{role}-*.tar")) or sorted(folder.glob("*.tar"))
        if not shards:
            raise UserError(f"{flag} {spec}: no .tar shard in this folder")
        return shards
    try:
        shards = [Path(s) for s in braceexpand.braceexpand(spec)]
    except (ValueError, IndexError) as e:
        raise UserError(f"{flag} {spec}: not a shard pattern ({e})") from None
    missing = [s for s in shards if not s.is_file()]
    if missing:
        raise UserError(f"{flag} {spec}: {len(missing)} of the {len(shards)} shards it names do not exist "
                        f"(e.g. {missing[0]})")
    return shards


def val_shards_beside(train: list[Path]) -> list[Path]:
    """The validation shards that go with training shards: the val-*.tar files in the folder of the first one."""
    return sorted(train[0].parent.glob("val-*.tar")) if train else []


def shard_counts(shards: list[Path], flag: str = "--data") -> list[int]:
    """Samples per shard: from the index beside them, else counted from the tars' headers (data not read). A tar
    that cannot be read is a UserError naming it."""
    counts = []
    indexes: dict[Path, dict] = {}
    for shard in shards:
        folder = shard.parent
        if folder not in indexes:
            indexes[folder] = _read_index(folder)
        known = indexes[folder].get(shard.name)
        if known is not None and known > max(0, shard.stat().st_size) // 512:  # a sample takes a 512-byte header
            log.warning("warning: %s says %d samples for %s, more than its %d bytes can hold: the shards there are "
                        "counted from their headers", folder / INDEX, known, shard.name, shard.stat().st_size)
            indexes[folder], known = {}, None
        if known is None:
            members, error = list_members(shard)
            if error and not members:
                raise UserError(f"{flag}: shard {shard} cannot be read as a tar file ({error})")
            known = len(members)
        else:
            _check_tar(shard, flag)
        counts.append(int(known))
    return counts


def _check_tar(shard: Path, flag: str) -> None:
    """Read the first header only: a shard that is no tar (or unreadable) stops the run before it starts."""
    try:
        with tarfile.open(shard, "r:") as tar:
            tar.next()
    except (tarfile.TarError, OSError, EOFError) as e:
        raise UserError(f"{flag}: shard {shard} cannot be read as a tar file ({e or type(e).__name__})") from None


def _read_index(folder: Path) -> dict:
    """{shard name: samples} from the writer's index.json; {} (shards counted from their headers) when there is none,
    or it is not one, or its counts are not whole numbers >= 0 (one warning line)."""
    try:
        index = json.loads((folder / INDEX).read_text())
        if not isinstance(index, dict) or index.get("format") != FORMAT:
            return {}
        counts = index["shards"]
        if not isinstance(counts, dict) or not all(type(n) is int and n >= 0 for n in counts.values()):
            raise ValueError("a shard's count is not a whole number >= 0")
        return counts
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, KeyError, TypeError) as e:
        log.warning("warning: %s unreadable (%s): shards are counted from their headers", folder / INDEX,
                    shown(reason(e)))
        return {}


@dataclass
class ShardMember:
    """One sample's image inside a shard: where its bytes are, so that a map-style dataset can read it alone."""
    shard: str
    key: str
    ext: str
    offset: int
    size: int

    def open(self) -> io.BytesIO:
        with open(self.shard, "rb") as f:
            f.seek(self.offset)
            data = io.BytesIO(f.read(self.size))
        data.name = str(self)
        return data

    def __str__(self) -> str:
        return f"{self.shard}:{self.key}.{self.ext}"


def list_members(shard: Path) -> tuple[list[ShardMember], str | None]:
    """The image of every sample of a tar, in order, from its headers alone (sample_file's rule); samples without an
    image are one warning line each. Returns (members, why the listing stopped early or None)."""
    samples: dict[str, list] = {}
    error = None
    try:
        with open(shard, "rb") as stream, tarfile.open(fileobj=stream, mode="r:") as tar:
            size = os.fstat(stream.fileno()).st_size
            for info in tar:
                named = sample_file(info, shard, size, log.warning)
                if named is not None:
                    samples.setdefault(named[0], []).append((named[1].lower(), info))
    except (tarfile.TarError, OSError, EOFError) as e:
        error = str(e) or type(e).__name__
    members = []
    for key, files in samples.items():
        image = next(((ext, info) for ext, info in files if ext in IMAGE_EXTS), None)
        if image is None:
            log.warning("warning: skipped %s:%s: no image in the sample (%s)", shard, shown(key),
                        shown(", ".join(ext for ext, _ in files)))
            continue
        members.append(ShardMember(str(shard), key, image[0], image[1].offset_data, image[1].size))
    return members, error


MAX_MEMBER_BYTES = 2 << 30  # a photo's file: far above any the pixel limit lets through (images.MAX_PIXELS)
_SAMPLE_NAME = re.compile(r"^((?:.*/|)[^.]+)[.]([^/]*)$")  # webdataset's rule: the key ends at the name's first dot


def sample_file(info: tarfile.TarInfo, shard, shard_bytes: int, warn) -> tuple[str, str] | None:
    """(key, extension) of a tar member that is a sample's file, the one rule of every reader (training, validation,
    evaluation), decided from its header before anything is read: None for what is no sample file (folders, links,
    devices; webdataset's metadata, a top-level __NAME__) and, with one warn() line, for a member that must not be
    read (a name leaving the folder it would be saved in, a sparse member, one over MAX_MEMBER_BYTES). A member that
    ends past the end of the file raises tarfile.ReadError: the shard is cut short."""
    name = info.name
    match = _SAMPLE_NAME.match(name)
    if not info.isreg() or match is None or ("/" not in name and name.startswith("__") and name.endswith("__")):
        return None
    problem = None
    if name.startswith("/") or ".." in name.split("/"):
        problem = "its name leaves the folder (absolute, or ..)"
    elif info.issparse():
        problem = f"a sparse member ({info.size:,} bytes declared; shards hold files as they are)"
    elif info.size > MAX_MEMBER_BYTES:
        problem = f"{info.size:,} bytes, over the limit of {MAX_MEMBER_BYTES:,} for one file"
    elif info.offset_data + info.size > shard_bytes:
        raise tarfile.ReadError("unexpected end of data")
    if problem:
        warn(f"warning: skipped {shard}:{shown(name)}: {problem}")
        return None
    return match.group(1), match.group(2)


def main(argv=None) -> int:
    setup_logging()
    return run_command(lambda: _main(argv))


def build_parser():
    return tool_parser(ShardOptions, __doc__, prog="gan-colorizer-shards")


def _main(argv) -> None:
    opts = parse_options(build_parser(), ShardOptions, argv)
    index = write_shards(opts)
    n = {role: sum(c for s, c in index["shards"].items() if s.startswith(role)) for role in ("train", "val")}
    log.info("shards: %d training and %d validation images in %d shards, %.1f MB -> %s", n["train"], n["val"],
             len(index["shards"]), index["bytes"] / 1e6, Path(opts.out) / INDEX)


if __name__ == "__main__":
    sys.exit(main())
