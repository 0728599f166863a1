"""Shards as training and validation streams: shards split by rank and DataLoader worker, shuffled per epoch from the
seed, a sample shuffle buffer, and the folder path's uint8 crops (Lab happens on the device)."""
from __future__ import annotations

import io
import itertools
import logging
import math
import os
import random
import re
import sys
import tarfile
from pathlib import Path

import torch
import webdataset as wds
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from gan_colorizer.config import batches_per_step
from gan_colorizer.data.dataset import DataSplit, _leave_ctrl_c_to_the_main_process, decode_side, photo_crop
from gan_colorizer.errors import UserError, reason, shown
from gan_colorizer.data.images import UnreadableImage, load_rgb
from gan_colorizer.runtime import resolve_workers
from gan_colorizer.data.shards import (
    IMAGE_EXTS,
    expand,
    is_shards,
    list_members,
    sample_file,
    shard_counts,
    val_shards_beside,
)

log = logging.getLogger("gan_colorizer")
SHUFFLE_BUFFER = 1000  # samples (still encoded) per worker: ~100 MB of COCO-sized JPEGs


def _mix(*parts: int) -> int:
    """One seed from several integers (random.Random accepts any int; tuples hash differently per process)."""
    return int.from_bytes(str(parts).encode(), "little") % (2**61 - 1)


_last_warning: list = [None]
SHARD_ERRORS = (OSError, EOFError, tarfile.TarError, ValueError)  # unreadable file, broken tar, duplicate member


def _warn(exn: Exception) -> bool:
    """webdataset's handler for a shard that breaks mid-read: one line, the rest of that shard skipped. webdataset
    hands the same failure up twice (member, then shard level): the repeat is not printed. Anything else (a stop
    signal, a bug) is raised on."""
    if not isinstance(exn, SHARD_ERRORS):
        raise exn
    message, _, stream = str(exn.args[0] if exn.args else type(exn).__name__).partition(" @ ")
    named = re.search(r"name='([^']+)'", stream)
    where = next((a for a in exn.args[1:] if isinstance(a, str)), named.group(1) if named else "a shard")
    if _last_warning[0] != (where, message):
        print(f"warning: skipped the rest of {where}: {message}", file=sys.stderr)
    _last_warning[0] = (where, message)
    return True


def _print(line: str) -> None:
    print(line, file=sys.stderr)


def _open(url: str):
    return open(url, "rb")


def shard_files(sources, handler=_warn):
    """What webdataset's tar expander yields ({"fname", "data", "__url__"} per sample file, {} at each shard's end),
    with shards.sample_file's rule: a member's header is checked before its bytes are read (a 14 KB shard may
    declare a 4 GiB member)."""
    for source in sources:
        url = source["url"]
        try:
            with _open(url) as stream, tarfile.open(fileobj=stream, mode="r|") as tar:
                size = os.fstat(stream.fileno()).st_size
                for info in tar:
                    if sample_file(info, url, size, _print) is not None:
                        yield {"fname": info.name, "data": tar.extractfile(info).read(), "__url__": url}
        except SHARD_ERRORS as e:
            e.args = (reason(e), url)
            if not handler(e):
                return
        yield {}


def samples_of(sources):
    """The samples of the shards in order, grouped by key as webdataset groups them; a shard that breaks is one line
    (_warn) and the rest of it skipped."""
    return wds.tariterators.group_by_keys(shard_files(sources), handler=_warn)


def decode(sample: dict, size: int, rng: random.Random | None, crop_scale: float, train: bool, warn: bool = True):
    """(pixels, flip) of one webdataset sample, or None with one warning line naming shard and key (unless not
    warn: a sample already reported)."""
    name = f"{sample.get('__url__', '?')}:{shown(sample.get('__key__', '?'))}"  # a key is a name from the shard
    ext = next((e for e in sample if e in IMAGE_EXTS), None)
    if ext is None:
        if warn:
            print(f"warning: skipped {name}: no image in the sample", file=sys.stderr)
        return None
    data = io.BytesIO(sample[ext])
    data.name = f"{name}.{ext}"
    try:
        img = load_rgb(data, min_side=decode_side(size, train, crop_scale))
    except UnreadableImage as e:
        if warn:
            print(f"warning: skipped {e.path} during {'training' if train else 'validation'}: {e.reason}",
                  file=sys.stderr)
        return None
    return photo_crop(img, size, rng, crop_scale)


def worker_slot() -> tuple[int, int]:
    info = get_worker_info()
    return (info.id, info.num_workers) if info is not None else (0, 1)


class ShardStream(IterableDataset):
    """Training samples from shards: every rank yields exactly `batches` batches of `batch_size` per epoch (DDP
    hangs on unequal counts), each DataLoader worker a fixed share of them.

    Epoch e reads the shards in a permutation drawn from (seed, e), then in further permutations (rounds) when a
    worker's share of shards runs out before its count: rank r takes every world-th shard of that sequence
    (webdataset's split_by_node), worker w every num_workers-th of those (split_by_worker). Samples pass a seeded
    shuffle buffer. `set_epoch(e, start)` skips the `start` samples this rank already trained on: the resumed
    epoch yields the batches an uninterrupted one would have, when world size and --num-workers are unchanged.
    """

    def __init__(self, shards: list[Path], counts: list[int], size: int, crop_scale: float, seed: int,
                 epoch_size: int, rank: int, world: int, batch_size: int, buffer: int = SHUFFLE_BUFFER):
        self.shards, self.size, self.crop_scale, self.seed = [str(s) for s in shards], size, crop_scale, seed
        self.rank, self.world, self.batch_size, self.buffer = rank, world, batch_size, buffer
        self.total = max(1, sum(counts))
        self.per_rank = math.ceil((epoch_size or sum(counts)) / world)
        self.batches = self.per_rank // batch_size
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def __len__(self) -> int:
        """Samples this rank still yields this epoch, in whole batches."""
        return (self.batches - self.start // self.batch_size) * self.batch_size

    def _shard_order(self):
        """This epoch's endless shard sequence: round after round, each a permutation from (seed, epoch, round)."""
        for round_ in itertools.count():
            order = list(range(len(self.shards)))
            random.Random(_mix(self.seed, self.epoch, round_)).shuffle(order)
            yield from ({"url": self.shards[i]} for i in order)

    def _quota(self, role: int, workers: int) -> tuple[int, int]:
        """(samples done, samples still to yield) of the worker playing `role`: batch k of the epoch comes from role
        k % workers (the DataLoader takes batches from its workers in turn)."""
        done = self.start // self.batch_size
        share = lambda n: n // workers + (role < n % workers)  # noqa: E731 - batches among the first n
        return share(done) * self.batch_size, (share(self.batches) - share(done)) * self.batch_size

    def __iter__(self):
        worker, workers = worker_slot()
        # on resume worker 0 plays the role whose batch comes next, so the batches keep their uninterrupted order
        role = (worker + self.start // self.batch_size) % workers
        skip, todo = self._quota(role, workers)
        mine = itertools.islice(itertools.islice(self._shard_order(), self.rank, None, self.world), role, None,
                                workers)
        samples = samples_of(self._guarded(mine))
        rng = random.Random(_mix(self.seed, self.epoch, self.rank, role))
        stream = wds.shuffle(self.buffer, initial=min(100, self.buffer), rng=rng)(self._reset(samples))
        failed, bad_images, in_a_row = set(), 0, 0  # since the last sample that decoded
        for position, sample in enumerate(stream):
            if position < skip:  # already trained on: skipped undecoded
                continue
            name = (sample.get("__url__"), sample.get("__key__"))
            item = decode(sample, self.size, random.Random(_mix(self.seed, self.epoch, self.rank, role, position)),
                          self.crop_scale, True, warn=name not in failed)
            if item is None:
                bad_images += name not in failed and any(e in IMAGE_EXTS for e in sample)  # what counts count
                failed.add(name)
                in_a_row += 1
                self._check_decodable(bad_images, in_a_row)
            else:
                failed, bad_images, in_a_row = set(), 0, 0
                yield item
                todo -= 1
                if todo <= 0:
                    return

    def _guarded(self, shards):
        """Stop an endless search when no shard yields a sample: a whole pass of shards opened without one."""
        self._opened = 0
        for shard in shards:
            self._opened += 1
            if self._opened > len(self.shards) + 1:
                raise RuntimeError(f"no readable sample in any of the {len(self.shards)} shards (is the disk mounted?)")
            yield shard

    def _check_decodable(self, bad_images: int, in_a_row: int) -> None:
        """Stop when no sample decodes: every sample of the shards failed since the last one that decoded, or (a
        worker sees only its share of them) twice their number and the shuffle buffer's failed in a row."""
        if bad_images >= self.total or in_a_row > 2 * (self.total + self.buffer):
            raise RuntimeError(f"no sample of the {len(self.shards)} shards decodes as an image "
                               f"({in_a_row} in a row failed)")

    def _reset(self, samples):
        """A sample read from a shard (decodable or not) ends the search for a readable shard."""
        for sample in samples:
            self._opened = 0
            yield sample


class ShardValStream(IterableDataset):
    """Validation samples from shards, each once over all ranks and workers, center-cropped: shards split by rank
    and worker, or samples when there are fewer shards than ranks x workers."""

    def __init__(self, shards: list[Path], size: int, rank: int, world: int):
        self.shards, self.size, self.rank, self.world = [str(s) for s in shards], size, rank, world

    def __iter__(self):
        worker, workers = worker_slot()
        slots, slot = self.world * workers, self.rank * workers + worker
        by_shard = len(self.shards) >= slots
        mine = self.shards[slot::slots] if by_shard else self.shards
        samples = samples_of({"url": s} for s in mine)
        for i, sample in enumerate(samples):
            if by_shard or i % slots == slot:
                item = decode(sample, self.size, None, 1.0, False)
                if item is not None:
                    yield item


def first_samples(shards: list[Path], n: int, size: int) -> torch.Tensor | None:
    """The first n readable validation images (center crops) for the image grids, read by the main process."""
    found = []
    for shard in shards:
        for member in list_members(shard)[0]:
            try:
                found.append(photo_crop(load_rgb(member.open(), min_side=size), size, None, 1.0)[0])
            except UnreadableImage:
                continue
            if len(found) == n:
                return torch.stack(found)
    return torch.stack(found) if found else None


def shard_loader(dataset: IterableDataset, batch_size: int, num_workers: int, pin_memory: bool,
                 timeout: float = 0.0) -> DataLoader:
    """Workers restart every epoch (not persistent): they must see the epoch and start set in the main process."""
    return DataLoader(dataset, batch_size=batch_size, num_workers=num_workers, pin_memory=pin_memory,
                      prefetch_factor=4 if num_workers else None, timeout=timeout if num_workers else 0,
                      worker_init_fn=_leave_ctrl_c_to_the_main_process)


def shard_split(data_cfg, head: str = "regression") -> DataSplit:
    """--data (and --val-data) as shard lists; validation from --val-data, else the val-*.tar beside the training
    shards. The sample counts come from the index (summary['train' / 'val']['used'])."""
    if head == "classification":
        raise UserError("--head classification draws its color prior from image files: train it on a folder")
    train = expand(data_cfg.data, "--data", "train")
    if data_cfg.val_data and not is_shards(data_cfg.val_data):
        raise UserError(f"--val-data {data_cfg.val_data}: give validation shards too when --data names shards")
    val = expand(data_cfg.val_data, "--val-data", "val") if data_cfg.val_data else val_shards_beside(train)
    val = [s for s in val if s not in train]
    counts, val_counts = shard_counts(train), shard_counts(val, "--val-data")
    if not sum(counts):
        raise UserError(f"--data {data_cfg.data}: the {len(train)} shards hold no sample")
    if not val:
        log.warning("warning: no validation shards (no --val-data, no val-*.tar beside %s): no validation", train[0])
    summary = {"train": {"source": data_cfg.data, "shards": len(train), "used": sum(counts), "skipped": [],
                         "gray_excluded": []},
               "val": {"source": data_cfg.val_data or f"val-*.tar beside {train[0]}", "shards": len(val),
                       "used": sum(val_counts)}}
    return DataSplit([str(s) for s in train], [str(s) for s in val], summary, False)  # file lists are strings


def shard_loaders(cfg, split: DataSplit, rank: int, world: int, rt, micro_batch: int, n_samples: int) -> tuple:
    """make_loaders for shards: (train loader, its ShardStream, validation loader or None, grid photos or None)."""
    d, pin = cfg.data, rt.device.type == "cuda"
    workers = resolve_workers(d.num_workers, rt.device)
    train, val_shards = [Path(p) for p in split.train], [Path(p) for p in split.val]
    stream = ShardStream(train, shard_counts(train), d.image_size, d.crop_scale, cfg.run.seed,
                         d.epoch_size, rank, world, micro_batch)
    if stream.batches < batches_per_step(cfg):
        raise UserError(f"an epoch of {stream.per_rank} images per process holds fewer than the "
                        f"{batches_per_step(cfg)} batches of {micro_batch} one step reads (--grad-accum x --d-steps); "
                        f"lower --batch-size or raise --epoch-size")
    if len(train) < world * max(1, workers) and rank == 0:
        log.info("note: %d shards for %d processes x %d workers: some shards are read by several of them each epoch; "
                 "write smaller shards (--shard-size) for one pass per epoch", len(train), world, max(1, workers))
    loader = shard_loader(stream, micro_batch, workers, pin, d.loader_timeout)
    val = ShardValStream(val_shards, d.image_size, rank, world)
    val_loader = shard_loader(val, micro_batch, workers, pin, d.loader_timeout) if val_shards else None
    samples = first_samples(val_shards, n_samples, d.image_size) if n_samples and val_shards else None
    return loader, stream, val_loader, samples
