"""What a run starts from: its folders and lock, the data split and loaders, the color prior, the nets and the
monitor, gathered in one Run that loop.py steps through."""
from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import torch

from gan_colorizer import ab_bins, ab_prior
from gan_colorizer import checkpoint as ckpt_io
from gan_colorizer.atomic import remove_stale_parts
from gan_colorizer.config import Config, batches_per_step, best_mode, validate
from gan_colorizer.config_checks import check_run_name
from gan_colorizer.data.dataset import (
    DataSplit,
    EpochSampler,
    PhotoDataset,
    make_loader,
    prepare_files,
    save_split,
    saved_split,
    split_digest,
)
from gan_colorizer.errors import UserError
from gan_colorizer.inspect.ab_histograms import bin_distribution_figure
from gan_colorizer.models.bodies import check_body_weights
from gan_colorizer.models.patchgan import check_input_size
from gan_colorizer.runtime import Runtime, resolve_workers, seed_everything, unwrap
from gan_colorizer.data.shard_stream import shard_loaders, shard_split
from gan_colorizer.data.shards import is_shards
from gan_colorizer.split import BY_PATH, BY_POSITION, RULES, training_set, warn_if_validating_on_stage1_training
from gan_colorizer.train import distributed
from gan_colorizer.train.guard import BadSteps, RunLock
from gan_colorizer.train.monitor import Monitor
from gan_colorizer.train.nets import TrainState, build_nets
from gan_colorizer.train.saver import CheckpointSchedule
from gan_colorizer.train.steps import Nets

log = logging.getLogger("gan_colorizer")
N_SAMPLES = 4  # fixed validation photos in the image grids


@dataclass
class Run:
    """Everything one training run holds; the loop changes `state`, `metrics` and `saved_step` as it goes."""
    cfg: Config
    dist: distributed.Dist
    rt: Runtime
    run_dir: Path
    ckpt_dir: Path
    lock: object  # RunLock on rank 0, NoLock elsewhere
    nets: Nets
    opts: dict
    state: TrainState
    loader: torch.utils.data.DataLoader
    sampler: EpochSampler
    val_loader: torch.utils.data.DataLoader | None
    samples: torch.Tensor | None  # the fixed validation photos of the image grids (rank 0 only)
    sources: dict  # "train" / "val": where the photos come from, for messages
    monitor: Monitor
    micro_batch: int  # images per process and micro-batch
    data_digest: str
    prior_info: dict | None  # what the classification prior was made from
    split_rule: str  # how --val-fraction chose the validation files (split.RULES)
    training_set: dict | None  # split.training_set() of the training list, for stage 2 to check (rank 0 only)
    metrics: dict = field(default_factory=dict)  # the last validation figures
    schedule: CheckpointSchedule = None
    bad_steps: BadSteps = None
    saved_step: int = 0  # the step last.pt holds

    @property
    def steps_per_epoch(self) -> int:
        return self.sampler.per_rank // self.micro_batch // batches_per_step(self.cfg)

    @property
    def total_steps(self) -> int:
        """The run's last step: --epochs of steps, or --max-steps if sooner."""
        planned = self.cfg.optim.epochs * self.steps_per_epoch
        return min(planned, self.cfg.optim.max_steps) if self.cfg.optim.max_steps else planned

    def reached_max(self) -> bool:
        return bool(self.cfg.optim.max_steps) and self.state.step >= self.cfg.optim.max_steps

    def done(self, stopped: bool) -> bool:
        return self.state.epoch >= self.cfg.optim.epochs or self.reached_max() or stopped

    def shown_generator(self) -> torch.nn.Module:
        """What validation and sample grids score: the EMA copy under --ema-decay (what evaluation and inference
        use by default), else the trained generator."""
        return self.nets.ema.model if self.nets.ema is not None else unwrap(self.nets.generator)

    def improved(self, value: float | None) -> bool:
        """Whether a validation figure beats the best so far (by --best-metric / --best-mode); records it."""
        if value is None or not math.isfinite(value):
            return False
        sign = 1 if best_mode(self.cfg) == "min" else -1
        if self.state.best is None or sign * value < sign * self.state.best:
            self.state.best = value
            return True
        return False


def start(cfg: Config) -> Run:
    """Set a run up: process group, folders and lock (rank 0), data split, prior, nets, loaders, monitor."""
    cfg = validate(cfg)
    dist, device = distributed.setup(cfg.run.device)
    if not dist.main:
        log.setLevel(logging.WARNING)  # one console: rank 0 speaks for all
    rt = Runtime(device, cfg.optim.amp, cfg.optim.channels_last, training=True)
    micro_batch = per_process_batch(cfg.optim.batch_size, dist.world)
    seed_everything(cfg.run.seed + dist.rank)  # dropout differs per process; DDP broadcasts rank 0's weights
    if not (cfg.run.resume or cfg.run.init_generator):  # offline without the ImageNet file: stop before writing
        distributed.on_main(dist, lambda: check_body_weights(cfg.model))
    if cfg.stage == "gan":  # a discriminator too deep for the photos fails at its first step: say so now
        check_input_size(cfg.model, cfg.data.image_size)
    lock = NoLock()  # processes other than rank 0 write nothing and lock nothing

    def claim() -> tuple:  # a lock cannot travel between processes: rank 0 keeps it, the others learn it worked
        nonlocal lock
        lock = claim_folders(cfg)
        return lock.run_dir, lock.folder, cfg.run.name
    run_dir, ckpt_dir, cfg.run.name = distributed.on_main(dist, claim)
    try:
        resumed = ckpt_io.load(cfg.run.resume) if cfg.run.resume else None
        initial = ckpt_io.load(cfg.run.init_generator) if cfg.run.init_generator and not resumed else None
        split = distributed.on_main_sharing_scan(dist, lambda: data_split(cfg, run_dir, resumed, initial))
        return _start_locked(cfg, dist, rt, run_dir, ckpt_dir, lock, split, resumed, initial, micro_batch)
    except BaseException:
        lock.abandon()  # a run that never started leaves no folder and no .lock behind
        raise


def _start_locked(cfg, dist, rt, run_dir, ckpt_dir, lock, split, resumed, initial, micro_batch) -> Run:
    if split.summary and dist.main:  # a fresh scan (a resume that found its saved lists has nothing to save)
        log.info(save_split(split, run_dir))
    digest = split_digest(split)
    if dist.main:  # what the checkpoints carry of the training list (rank 0 writes them)
        split.carried = carried_training_set(cfg, split, digest, resumed)
        if initial is not None:
            warn_if_validating_on_stage1_training(initial, cfg.run.init_generator, split.val)
    prior_info = (resumed or {}).get("color_prior")
    prior = None  # --head classification: made on rank 0 and sent to all; on resume last.pt holds it
    if cfg.model.head == "classification" and resumed is None:
        workers = resolve_workers(cfg.data.num_workers, rt.device)
        prior, prior_info = distributed.on_main(dist, lambda: prior_for_run(cfg, split, digest, run_dir, rt.device,
                                                                            workers))
    nets, opts, state = build_nets(cfg, rt, resumed, dist, prior, initial)
    if resumed and dist.rank:  # checkpoints hold rank 0's RNG: the others branch off it, reproducibly
        seed_everything(cfg.run.seed + dist.rank + 7919 * state.step)
    loader, sampler, val_loader, samples = make_loaders(cfg, split, dist, rt, micro_batch)
    monitor = Monitor(run_dir, cfg.run.log_every, start_step=state.step, writes=dist.main)
    monitor.add_config(cfg.to_dict())
    d = cfg.data
    sources = {"train": f"--data {d.data}" if d.data else "the embedded sample photos"}
    sources["val"] = f"--val-data {d.val_data}" if d.val_data else sources["train"]
    return Run(cfg, dist, rt, run_dir, ckpt_dir, lock, nets, opts, state, loader, sampler, val_loader, samples,
               sources, monitor, micro_batch, digest, prior_info, split.rule, split.carried,
               metrics=(resumed or {}).get("metrics") or {},
               schedule=CheckpointSchedule(cfg.run.checkpoint_every, cfg.run.checkpoint_minutes),
               bad_steps=BadSteps(cfg.optim.max_bad_steps), saved_step=state.step)


def claim_folders(cfg: Config) -> RunLock:
    """Lock checkpoints/NAME first, then look at it: no other process can start, finish or overwrite this run
    between the check for last.pt (and the data scan) and the training. Creates runs/NAME; the lock remembers
    which folders it made, for abandon()."""
    run_dir, ckpt_dir = run_paths(cfg)
    created = [d for d in (run_dir, ckpt_dir) if not d.exists()]
    lock = RunLock(ckpt_dir)
    lock.run_dir, lock.created = run_dir, created
    try:
        if not cfg.run.resume and (ckpt_dir / "last.pt").exists():
            raise UserError(f"{ckpt_dir / 'last.pt'} exists: pass --resume {ckpt_dir / 'last.pt'} to continue that "
                            f"run, or choose another --name")
        run_dir.mkdir(parents=True, exist_ok=True)
    except BaseException:
        lock.abandon()
        raise
    if ckpt_io.remove_partial_writes(ckpt_dir) + remove_stale_parts(run_dir):
        log.info("note: removed the temporary files of writes that were cut short (%s, %s)", ckpt_dir, run_dir)
    return lock


def data_split(cfg: Config, run_dir: Path, resumed: dict | None, initial: dict | None = None) -> DataSplit:
    """On resume, the file lists the run started with (no rescan: the same data as an uninterrupted run)."""
    digest = (resumed or {}).get("data_digest")
    rule = split_rule(cfg, resumed, initial)
    if digest and same_data(Config.from_dict(resumed["config"]), cfg):
        split = saved_split(run_dir, digest, embedded=cfg.data.data is None)
        if split is not None:
            log.info("data: %d training and %d validation images: the file lists this run started with (%s)",
                     len(split.train), len(split.val), run_dir / "train_files.txt")
            split.rule = rule
            return split
    if is_shards(cfg.data.data):
        split = shard_split(cfg.data, cfg.model.head)
    else:
        split = prepare_files(cfg.data, cfg.run.seed, rule)
    if digest and split_digest(split) != digest:
        log.warning("warning: the training or validation files are not those of the checkpoint (folder changed, "
                    "or %s is gone): the resumed run will differ from an uninterrupted one", run_dir)
    return split


def split_rule(cfg: Config, resumed: dict | None, initial: dict | None) -> str:
    """How --val-fraction chooses: as the resumed run did (before issue 22, by position), as the stage-1 run did on
    the same data (so that stage 2 validates on what stage 1 validated on), else by path hash."""
    source = resumed or (initial if initial and same_data(Config.from_dict(initial["config"]), cfg) else None)
    if source is None:
        return BY_PATH
    rule = source.get("split_rule", BY_POSITION)
    if not resumed and rule == BY_POSITION and cfg.data.val_fraction > 0 and not cfg.data.val_data:
        log.info("note: validation files chosen as the run of --init-generator %s chose them (its checkpoint "
                 "predates splits by path hash)", cfg.run.init_generator)
    return rule if rule in RULES else BY_PATH


def carried_training_set(cfg: Config, split: DataSplit, digest: str, resumed: dict | None) -> dict:
    """The training set a checkpoint carries: made by the split, kept from the resumed checkpoint when its lists are
    these, else hashed now."""
    if split.carried is not None:
        return split.carried
    if resumed and resumed.get("data_digest") == digest and isinstance(resumed.get("train_set"), dict):
        return resumed["train_set"]
    root = str(Path(cfg.data.data).resolve()) if cfg.data.data and not is_shards(cfg.data.data) else None
    return training_set(split.train, root)


def make_loaders(cfg: Config, split: DataSplit, dist, rt: Runtime, micro_batch: int) -> tuple:
    """(train loader, its epoch sampler, validation loader or None, the fixed sample photos or None)."""
    if is_shards(cfg.data.data):  # a stream: every rank the same number of batches per epoch
        return shard_loaders(cfg, split, dist.rank, dist.world, rt, micro_batch, N_SAMPLES if dist.main else 0)
    d, pin = cfg.data, rt.device.type == "cuda"
    workers = resolve_workers(d.num_workers, rt.device)
    train = PhotoDataset(split.train, d.image_size, True, d.crop_scale, cache=split.embedded)
    sampler = EpochSampler(len(train), cfg.run.seed, True, d.epoch_size, dist.rank, dist.world)
    loader = make_loader(train, sampler, micro_batch, workers, pin, True, d.loader_timeout)
    if len(loader) < batches_per_step(cfg):
        raise UserError(f"an epoch of {len(sampler)} images holds fewer than the {batches_per_step(cfg)} batches of "
                        f"{micro_batch} one step reads (--grad-accum x --d-steps); lower --batch-size or raise "
                        f"--epoch-size")
    val = PhotoDataset(split.val, d.image_size, False, cache=split.embedded)
    val_sampler = EpochSampler(len(val), 0, False, rank=dist.rank, world=dist.world, pad=False)
    val_loader = make_loader(val, val_sampler, micro_batch, workers, pin, False, d.loader_timeout) if len(val) else None
    n_samples = min(N_SAMPLES, len(val)) if dist.main else 0
    samples = torch.stack([val[(i, 0)][0] for i in range(n_samples)]) if n_samples else None
    return loader, sampler, val_loader, samples


def run_paths(cfg: Config) -> tuple[Path, Path]:
    """runs/NAME and checkpoints/NAME (claim_folders creates and checks them, under the run lock)."""
    if cfg.run.name is None:
        cfg.run.name = f"{cfg.stage}-{datetime.now():%Y%m%d-%H%M%S}"
    name = check_run_name(cfg.run.name)  # one folder inside each: never '../x', '/x' or ''
    return Path(cfg.run.runs_dir) / name, Path(cfg.run.checkpoints_dir) / name


class NoLock:
    """What processes other than rank 0 hold: they lock nothing."""

    def release(self) -> None:
        pass

    abandon = release


def per_process_batch(batch_size: int, world: int) -> int:
    """--batch-size is the global micro-batch: each of `world` processes takes an equal share."""
    if batch_size % world:
        raise UserError(f"--batch-size {batch_size} does not split evenly over {world} processes")
    return batch_size // world


def same_data(saved: Config, cfg: Config) -> bool:
    """Whether the flags that choose the files (not how they are cropped) are those the run started with."""
    fields = ("data", "val_data", "val_fraction", "include_gray")
    return saved.run.seed == cfg.run.seed and all(getattr(saved.data, f) == getattr(cfg.data, f) for f in fields)


def prior_for_run(cfg, split, digest: str, run_dir: Path, device, workers: int) -> tuple[np.ndarray, dict]:
    """The run's prior: from runs/NAME when cached for the same files and settings, else computed and cached."""
    bins = ab_bins.ab_bins()
    n = min(cfg.data.prior_images, len(split.train))
    want = {"data_digest": digest, "images": n, "image_size": cfg.data.image_size, "seed": cfg.run.seed,
            "sigma": ab_bins.SIGMA, "q": len(bins)}
    found = ab_prior.cached_prior(run_dir, want)
    if found is not None:
        log.info("%s (cached: %s)", ab_prior.prior_title(found[1]).replace("\n", ": "), run_dir / "prior.npy")
        return found
    prior, info = ab_prior.empirical_prior(split.train, cfg.data.image_size, n, cfg.run.seed, workers, device, bins,
                                  split.embedded)
    info["data_digest"] = digest
    save_prior(run_dir, prior, info, bins)
    log.info("%s -> %s", ab_prior.prior_title(info).replace("\n", ": "), run_dir / "prior.npy")
    return prior, info


def save_prior(run_dir: Path, prior: np.ndarray, info: dict, bins: np.ndarray) -> None:
    np.save(run_dir / "prior.npy", prior)
    (run_dir / "prior.json").write_text(json.dumps(info, indent=2))
    bin_distribution_figure({"training prior, smoothed (sigma 5)": prior}, bins, path=run_dir / "prior.png",
                            title=ab_prior.prior_title(info))
