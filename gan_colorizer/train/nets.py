"""The nets a run trains (fresh, from a stage-1 generator, or resumed), their optimizers and the step counters."""
from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from gan_colorizer import ab_prior
from gan_colorizer import checkpoint as ckpt_io
from gan_colorizer import hints
from gan_colorizer.config import Config
from gan_colorizer.errors import UserError
from gan_colorizer.models.patchgan import build_discriminator
from gan_colorizer.models.registry import build_generator
from gan_colorizer.runtime import Runtime, compile_net, count_parameters, unwrap
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
    scaler_skips: int = 0  # fp16 steps the gradient scaler skipped (overflow with finite losses), in all
    unvalidated: bool = False  # the steps of an epoch ended and its validation has not run (a stop came first)

    @property
    def epoch_number(self) -> int:
        """The epoch the last step was in, counted from 1 as every message says it (`epoch` counts the whole epochs
        done, as checkpoints store it); before any step, the first."""
        return self.epoch + 1 if self.batch_in_epoch or not self.step else self.epoch

    def where(self, epochs: int) -> str:
        """'step 5 in epoch 2/20', for messages."""
        return f"step {self.step} in epoch {self.epoch_number}/{epochs}"


def restore_state(ckpt: dict, path: str, cfg: Config, nets: Nets, opts: dict, rt: Runtime) -> TrainState:
    if ckpt.get("stage") != cfg.stage:
        raise UserError(f"{path}: a {ckpt.get('stage')} checkpoint cannot resume a {cfg.stage} run")
    ckpt_io.check_architecture(Config.from_dict(ckpt["config"]), cfg, path, nets=[n for n in nets_by_name(nets)
                                                                                  if n in ckpt_io.ARCH_FIELDS])
    counters = ckpt_io.restore(ckpt, path, nets_by_name(nets), opts, rt.scaler)
    saved = Config.from_dict(ckpt["config"]).optim
    if cfg.optim.lr_policy != "constant" and (saved.epochs, saved.max_steps) != (cfg.optim.epochs, cfg.optim.max_steps):
        log.info("note: --epochs / --max-steps differ from the resumed run's: the %s schedule is drawn over the new "
                 "length from here on (the rate may jump)", cfg.optim.lr_policy)
    state = TrainState(counters["epoch"], counters["batch_in_epoch"], counters["step"], counters["best_metric"],
                       counters["skipped_steps"], int(ckpt.get("scaler_skips", 0)), bool(ckpt.get("unvalidated")))
    n = state.batch_in_epoch
    into = f"{n} step{'s' if n > 1 else ''} into it" if n else "at its end"
    log.info("resumed %s at %s (%s)", path, state.where(cfg.optim.epochs), into)
    return state


def init_generator(path: str, cfg: Config, generator: torch.nn.Module, ckpt: dict | None = None) -> None:
    """The weights of the --init-generator checkpoint's generator (a stage-1 run's for stage 2; any run's to fine-tune
    in stage 1; `ckpt`: that file already loaded): its EMA copy unless --init-weights raw (or it has none)."""
    ckpt = ckpt or ckpt_io.load(path)
    saved = Config.from_dict(ckpt["config"])
    widen = cfg.model.hints and not saved.model.hints  # an automatic net starts a hint net (--hints)
    if widen:
        saved.model.hints = True
    ckpt_io.check_architecture(saved, cfg, path)
    key = ckpt_io.generator_key(ckpt, path, cfg.run.init_weights, flag="--init-weights")
    state = ckpt_io.strip_wrappers(ckpt[key], path, generator.state_dict().keys())
    if widen:
        state = hints.from_automatic(state, generator.state_dict())
        log.info("generator: an automatic net's weights; its hint inputs start at zero (they learn from here)")
    ckpt_io.load_weights(generator, state, path, key)
    metrics = ", ".join(f"{k} {v:.4g}" for k, v in (ckpt.get("metrics") or {}).items())
    which = "EMA weights (generator_ema)" if key == "generator_ema" else "trained weights (generator)"
    log.info("generator: %s from %s (%s checkpoint, step %s%s)", which, path, ckpt.get("stage"), ckpt.get("step"),
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
               prior=None, initial: dict | None = None) -> tuple[Nets, dict, TrainState]:
    fresh = not (cfg.run.resume or cfg.run.init_generator)
    nets = Nets(build_generator(cfg.model, load_pretrained=fresh), hints=cfg.model.hints,
                hint_points=cfg.data.hint_points)
    if cfg.stage == "gan":
        nets.discriminator = build_discriminator(cfg.model)
        if cfg.optim.gan_mode == "wgangp" and cfg.model.d_norm == "batch":
            log.info("note: --gan-mode wgangp with --d-norm batch: Gulrajani et al. advise a critic without batch "
                     "norm (its penalty is per image); try --d-norm none or instance")
    for name, net in nets_by_name(nets).items():
        if cfg.optim.sync_bn and dist.active:
            net = distributed.convert_sync_bn(net, rt.device)
        setattr(nets, name, rt.place(net).train())
    opts = {"g": make_optimizer(nets.generator, cfg)}
    if nets.discriminator is not None:
        opts["d"] = make_optimizer(nets.discriminator, cfg, "d")
    state = TrainState()
    if resumed is not None:
        state = restore_state(resumed, cfg.run.resume, cfg, nets, opts, rt)
    elif cfg.run.init_generator:
        init_generator(cfg.run.init_generator, cfg, nets.generator, initial)
    elif cfg.stage == "gan":
        log.info("generator: starting from scratch (no --init-generator stage-1 checkpoint)")
    if cfg.model.head == "classification":  # the prior goes in before the EMA copy is made
        nets.classes = ab_prior.attach(nets.generator, prior, cfg, rt.device)
    add_helpers(cfg, rt, nets, resumed, dist.rank)
    for name in TRAINED:  # not the EMA copy: it has no gradients for DDP to sync, and nothing trains it
        if getattr(nets, name) is not None:
            net = distributed.wrap(getattr(nets, name), dist, rt.device)
            setattr(nets, name, compile_net(net, rt.device) if cfg.optim.compile else net)
    add_ema(cfg, nets, resumed)  # after DDP broadcast rank 0's weights: every process averages the same generator
    sizes = ", ".join(f"{n} {count_parameters(net):,} parameters" for n, net in nets_by_name(nets).items())
    log.info("%s; device %s, amp %s, channels_last %s%s", sizes, rt.device, rt.amp_name, rt.channels_last,
             f", {dist.world} processes (global batch {cfg.optim.batch_size})" if dist.active else "")
    return nets, opts, state


def add_helpers(cfg: Config, rt: Runtime, nets: Nets, resumed: dict | None, rank: int = 0) -> None:
    """The frozen VGG16 of --perceptual-weight and the image pool of --pool-size (from the checkpoint on resume)."""
    o = cfg.optim
    if cfg.stage == "gan" and o.pool_size > 0:
        from gan_colorizer.train.pool import ImagePool
        nets.pool = ImagePool(o.pool_size, cfg.run.seed + rank)  # each process its own (rank 0's is saved)
        if resumed is not None and "image_pool" in resumed:
            nets.pool.load_state_dict(resumed["image_pool"], rt.device)
    if o.perceptual_weight > 0:
        from gan_colorizer.losses import load_perceptual
        nets.perceptual = rt.place(load_perceptual(o.vgg_weights, o.perceptual_layers))


def add_ema(cfg: Config, nets: Nets, resumed: dict | None) -> None:
    """The EMA copy of --ema-decay: from the checkpoint on resume, else a copy of the generator as DDP made it."""
    if cfg.optim.ema_decay <= 0:
        return
    from gan_colorizer.train.ema import EMA
    nets.ema = EMA(nets.generator, cfg.optim.ema_decay)
    if resumed is not None and "generator_ema" in resumed:
        ckpt_io.load_weights(nets.ema.model, resumed["generator_ema"], cfg.run.resume, "generator_ema")
    elif resumed is not None:
        log.info("note: %s has no EMA weights: the average starts now from the resumed generator", cfg.run.resume)
