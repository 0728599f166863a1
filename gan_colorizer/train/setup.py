"""What a run starts from: the nets (fresh, from a stage-1 generator, or resumed), their optimizers, the counters,
and the run's folders. loop.py runs the loop on top of it."""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import torch

from gan_colorizer import ab_bins, ab_prior
from gan_colorizer import checkpoint as ckpt_io
from gan_colorizer.config import Config
from gan_colorizer.errors import UserError
from gan_colorizer.inspect.ab_histograms import bin_distribution_figure
from gan_colorizer.networks import build_discriminator, build_generator, count_parameters, unwrap
from gan_colorizer.runtime import Runtime, compile_net
from gan_colorizer.train import distributed
from gan_colorizer.train.steps import Nets, make_optimizer

log = logging.getLogger("gan_colorizer")


@dataclass
class TrainState:
    epoch: int = 0
    batch_in_epoch: int = 0  # optimizer steps already taken in this epoch
    step: int = 0
    best: float | None = None
    skipped_steps: int = 0  # steps skipped for a NaN / Inf loss or gradient, in all


def restore_state(ckpt: dict, path: str, cfg: Config, nets: Nets, opts: dict, rt: Runtime) -> TrainState:
    if ckpt.get("stage") != cfg.stage:
        raise UserError(f"{path}: a {ckpt.get('stage')} checkpoint cannot resume a {cfg.stage} run")
    ckpt_io.check_architecture(Config.from_dict(ckpt["config"]), cfg, path, nets=[n for n in nets_by_name(nets)
                                                                                  if n in ckpt_io.ARCH_FIELDS])
    counters = ckpt_io.restore(ckpt, path, nets_by_name(nets), opts, rt.scaler)
    state = TrainState(counters["epoch"], counters["batch_in_epoch"], counters["step"], counters["best_metric"],
                       counters["skipped_steps"])
    log.info("resumed %s at epoch %d, step %d", path, state.epoch, state.step)
    return state


def init_generator(path: str, cfg: Config, generator: torch.nn.Module) -> None:
    ckpt = ckpt_io.load(path)
    ckpt_io.check_architecture(Config.from_dict(ckpt["config"]), cfg, path)
    ckpt_io.load_weights(generator, ckpt["generator"], path, "generator")
    metrics = ", ".join(f"{k} {v:.4g}" for k, v in (ckpt.get("metrics") or {}).items())
    log.info("generator: weights from %s (%s checkpoint, step %s%s)", path, ckpt.get("stage"), ckpt.get("step"),
             f", {metrics}" if metrics else "")


TRAINED = ("generator", "discriminator")  # the Nets fields an optimizer updates


def nets_by_name(nets: Nets) -> dict:
    """The nets a checkpoint holds: generator, discriminator (stage 2), generator_ema (--ema-decay); without
    DDP / compile wrappers, so checkpoints written under torchrun load anywhere."""
    named = {"generator": unwrap(nets.generator)}
    if nets.discriminator is not None:
        named["discriminator"] = unwrap(nets.discriminator)
    if nets.ema is not None:
        named["generator_ema"] = nets.ema.model
    return named


def build_nets(cfg: Config, rt: Runtime, resumed: dict | None, dist: distributed.Dist,
           prior=None) -> tuple[Nets, dict, TrainState]:
    fresh = not (cfg.run.resume or cfg.run.init_generator)
    nets = Nets(build_generator(cfg.model, load_pretrained=fresh))
    if cfg.stage == "gan":
        nets.discriminator = build_discriminator(cfg.model)
    for name, net in nets_by_name(nets).items():
        if cfg.optim.sync_bn and dist.active:
            net = distributed.convert_sync_bn(net, rt.device)
        setattr(nets, name, rt.place(net).train())
    opts = {"g": make_optimizer(nets.generator, cfg)}
    if nets.discriminator is not None:
        opts["d"] = make_optimizer(nets.discriminator, cfg)
    state = TrainState()
    if resumed is not None:
        state = restore_state(resumed, cfg.run.resume, cfg, nets, opts, rt)
    elif cfg.run.init_generator:
        init_generator(cfg.run.init_generator, cfg, nets.generator)
    elif cfg.stage == "gan":
        log.info("generator: starting from scratch (no --init-generator stage-1 checkpoint)")
    if cfg.model.head == "classification":  # the prior goes in before the EMA copy is made
        nets.classes = ab_prior.attach(nets.generator, prior, cfg, rt.device)
    add_helpers(cfg, rt, nets, resumed)
    sizes = ", ".join(f"{n} {count_parameters(net):,} parameters" for n, net in nets_by_name(nets).items())
    log.info("%s; device %s, amp %s, channels_last %s%s", sizes, rt.device, rt.amp_name, rt.channels_last,
             f", {dist.world} processes (global batch {cfg.optim.batch_size})" if dist.active else "")
    for name in TRAINED:  # not the EMA copy: it has no gradients for DDP to sync, and nothing trains it
        if getattr(nets, name) is not None:
            net = distributed.wrap(getattr(nets, name), dist, rt.device)
            setattr(nets, name, compile_net(net, rt.device) if cfg.optim.compile else net)
    return nets, opts, state


def add_helpers(cfg: Config, rt: Runtime, nets: Nets, resumed: dict | None) -> None:
    """The frozen VGG16 of --perceptual-weight and the EMA copy of --ema-decay (from the checkpoint on resume)."""
    o = cfg.optim
    if o.perceptual_weight > 0:
        from gan_colorizer.losses import load_perceptual
        nets.perceptual = rt.place(load_perceptual(o.vgg_weights, o.perceptual_layers))
    if o.ema_decay > 0:
        from gan_colorizer.train.ema import EMA
        nets.ema = EMA(nets.generator, o.ema_decay)
        if resumed is not None and "generator_ema" in resumed:
            ckpt_io.load_weights(nets.ema.model, resumed["generator_ema"], cfg.run.resume, "generator_ema")
        elif resumed is not None:
            log.info("note: %s has no EMA weights: the average starts now from the resumed generator", cfg.run.resume)


def run_paths(cfg: Config) -> tuple[Path, Path]:
    """runs/NAME and checkpoints/NAME (created later, once the data is known to be usable)."""
    if cfg.run.name is None:
        cfg.run.name = f"{cfg.stage}-{datetime.now():%Y%m%d-%H%M%S}"
    run_dir, ckpt_dir = Path(cfg.run.runs_dir) / cfg.run.name, Path(cfg.run.checkpoints_dir) / cfg.run.name
    if not cfg.run.resume and (ckpt_dir / "last.pt").exists():
        raise UserError(f"{ckpt_dir / 'last.pt'} exists: pass --resume {ckpt_dir / 'last.pt'} to continue that run, "
                        f"or choose another --name")
    return run_dir, ckpt_dir


class NoLock:
    """What processes other than rank 0 hold: they lock nothing."""

    def release(self) -> None:
        pass


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
