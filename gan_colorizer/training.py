"""The loop shared by both stages; they differ only in their step function and in which nets exist."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import torch
from tqdm import tqdm

from . import checkpoint as ckpt_io
from .color import model_to_rgb, to_uint8
from .config import Config, best_mode, validate
from .data import EpochSampler, PhotoDataset, make_loader, prepare_files, save_split
from .errors import UserError
from .losses import discriminator_loss, generator_loss, l1_loss
from .metrics import psnr
from .monitor import Monitor, sample_grid
from .networks import build_discriminator, build_generator, count_parameters
from .runtime import Runtime, seed_everything

log = logging.getLogger("gan_colorizer")
N_SAMPLES = 4  # fixed validation photos in the image grids
PSNR_CAP = 100.0  # dB; an exact prediction has infinite PSNR, which would make the mean useless for best.pt


@dataclass
class Nets:
    generator: torch.nn.Module
    discriminator: torch.nn.Module | None = None


@dataclass
class TrainState:
    epoch: int = 0
    batch_in_epoch: int = 0  # optimizer steps already taken in this epoch
    step: int = 0
    best: float | None = None


def make_optimizer(net: torch.nn.Module, cfg: Config) -> torch.optim.Optimizer:
    return torch.optim.Adam(net.parameters(), lr=cfg.optim.lr, betas=(cfg.optim.beta1, cfg.optim.beta2))


def pretrain_step(rt: Runtime, nets: Nets, opts: dict, micro: list, cfg: Config) -> dict:
    """Stage 1: L1 on ab, gradients accumulated over the micro-batches."""
    opts["g"].zero_grad(set_to_none=True)
    parts = {}
    for gray_l, real_ab in micro:
        with rt.autocast():
            fake_ab = nets.generator(gray_l)
        loss, parts_i = l1_loss(fake_ab, real_ab)
        rt.backward(loss / len(micro))
        _accumulate(parts, parts_i, len(micro))
    rt.step(opts["g"])
    rt.end_step()
    return parts


def gan_step(rt: Runtime, nets: Nets, opts: dict, micro: list, cfg: Config) -> dict:
    """Stage 2, in pix2pix order: update D on real vs fake, then G on GAN + lambda * L1 against the updated D.

    With one micro-batch the fake from the D phase is reused; with several, each G phase recomputes its
    fake so that only one generator graph is alive at a time.
    """
    G, D, o = nets.generator, nets.discriminator, cfg.optim
    reuse = len(micro) == 1
    parts, fakes = {}, []
    D.requires_grad_(True)
    opts["d"].zero_grad(set_to_none=True)
    for gray_l, real_ab in micro:
        with rt.autocast(), torch.set_grad_enabled(reuse):
            fake_ab = G(gray_l)
        fakes.append(fake_ab)
        with rt.autocast():
            loss_d, parts_d = discriminator_loss(D(gray_l, real_ab), D(gray_l, fake_ab.detach()), o.gan_mode)
        rt.backward(loss_d / len(micro))
        _accumulate(parts, parts_d, len(micro))
    rt.step(opts["d"])
    D.requires_grad_(False)
    opts["g"].zero_grad(set_to_none=True)
    for (gray_l, real_ab), fake_ab in zip(micro, fakes):
        if not reuse:
            with rt.autocast():
                fake_ab = G(gray_l)
        with rt.autocast():
            loss_g, parts_g = generator_loss(D(gray_l, fake_ab), fake_ab, real_ab, o.lambda_l1, o.gan_mode)
        rt.backward(loss_g / len(micro))
        _accumulate(parts, parts_g, len(micro))
    rt.step(opts["g"])
    rt.end_step()
    return parts


def _accumulate(total: dict, parts: dict, n: int) -> None:
    for k, v in parts.items():
        total[k] = total.get(k, 0.0) + float(v) / n


@torch.no_grad()
def validate_generator(rt: Runtime, generator: torch.nn.Module, loader) -> dict:
    """Mean L1 on ab (model units) and mean PSNR on 8-bit RGB over the validation set."""
    generator.eval()
    l1_sum, psnr_sum, n = 0.0, 0.0, 0
    for pixels, _ in loader:
        gray_l, real_ab = rt.batch(pixels)
        with rt.autocast():
            fake_ab = generator(gray_l).float()
        l1_sum += (fake_ab - real_ab).abs().mean(dim=(1, 2, 3)).sum().item()
        fake = to_uint8(model_to_rgb(gray_l, fake_ab))
        psnr_sum += psnr(fake, pixels.to(fake.device)).clamp_max(PSNR_CAP).sum().item()
        n += pixels.shape[0]
    generator.train()
    return {"val/l1": l1_sum / n, "val/psnr": psnr_sum / n} if n else {}


def _checkpoint(cfg: Config, nets: Nets, opts: dict, rt: Runtime, state: TrainState, metrics: dict, full: bool) -> dict:
    """last.pt holds everything to resume; best.pt (full=False) only the weights, config and metrics."""
    ckpt = {"format_version": ckpt_io.FORMAT_VERSION, "stage": cfg.stage, "config": cfg.to_dict(),
            "generator": nets.generator.state_dict(), "epoch": state.epoch, "batch_in_epoch": state.batch_in_epoch,
            "step": state.step, "best_metric": state.best, "metrics": metrics}
    if nets.discriminator is not None:
        ckpt["discriminator"] = nets.discriminator.state_dict()
    if full:
        ckpt["optimizers"] = {k: o.state_dict() for k, o in opts.items()}
        ckpt["scaler"] = rt.scaler.state_dict()
        ckpt["rng"] = ckpt_io.rng_state()
    return ckpt


def _restore(path: str, cfg: Config, nets: Nets, opts: dict, rt: Runtime) -> TrainState:
    ckpt = ckpt_io.load(path)
    if ckpt.get("stage") != cfg.stage:
        raise UserError(f"{path}: a {ckpt.get('stage')} checkpoint cannot resume a {cfg.stage} run")
    if "optimizers" not in ckpt:
        raise UserError(f"{path}: holds weights only (best.pt); resume from last.pt")
    ckpt_io.check_architecture(Config.from_dict(ckpt["config"]), cfg, path, nets=list(_net_names(nets)))
    for name in _net_names(nets):
        ckpt_io.load_weights(getattr(nets, name), ckpt[name], path, name)
    for key, opt in opts.items():
        opt.load_state_dict(ckpt["optimizers"][key])
    rt.scaler.load_state_dict(ckpt["scaler"])
    ckpt_io.set_rng_state(ckpt["rng"])
    log.info("resumed %s at epoch %d, step %d", path, ckpt["epoch"], ckpt["step"])
    return TrainState(ckpt["epoch"], ckpt["batch_in_epoch"], ckpt["step"], ckpt["best_metric"])


def _init_generator(path: str, cfg: Config, generator: torch.nn.Module) -> None:
    ckpt = ckpt_io.load(path)
    ckpt_io.check_architecture(Config.from_dict(ckpt["config"]), cfg, path)
    ckpt_io.load_weights(generator, ckpt["generator"], path, "generator")
    metrics = ", ".join(f"{k} {v:.4g}" for k, v in (ckpt.get("metrics") or {}).items())
    log.info("generator: weights from %s (%s checkpoint, step %s%s)", path, ckpt.get("stage"), ckpt.get("step"),
             f", {metrics}" if metrics else "")


def _net_names(nets: Nets):
    return ("generator", "discriminator") if nets.discriminator is not None else ("generator",)


def _build(cfg: Config, rt: Runtime) -> tuple[Nets, dict, TrainState]:
    fresh = not (cfg.run.resume or cfg.run.init_generator)
    nets = Nets(build_generator(cfg.model, load_pretrained=fresh))
    if cfg.stage == "gan":
        nets.discriminator = build_discriminator(cfg.model)
    for name in _net_names(nets):
        setattr(nets, name, rt.place(getattr(nets, name)).train())
    opts = {"g": make_optimizer(nets.generator, cfg)}
    if nets.discriminator is not None:
        opts["d"] = make_optimizer(nets.discriminator, cfg)
    state = TrainState()
    if cfg.run.resume:
        state = _restore(cfg.run.resume, cfg, nets, opts, rt)
    elif cfg.run.init_generator:
        _init_generator(cfg.run.init_generator, cfg, nets.generator)
    elif cfg.stage == "gan":
        log.info("generator: starting from scratch (no --init-generator stage-1 checkpoint)")
    sizes = ", ".join(f"{n} {count_parameters(getattr(nets, n)):,} parameters" for n in _net_names(nets))
    log.info("%s; device %s, amp %s, channels_last %s", sizes, rt.device, rt.amp_name, rt.channels_last)
    return nets, opts, state


def run_dirs(cfg: Config) -> tuple[Path, Path]:
    if cfg.run.name is None:
        cfg.run.name = f"{cfg.stage}-{datetime.now():%Y%m%d-%H%M%S}"
    run_dir, ckpt_dir = Path(cfg.run.runs_dir) / cfg.run.name, Path(cfg.run.checkpoints_dir) / cfg.run.name
    if not cfg.run.resume and (ckpt_dir / "last.pt").exists():
        raise UserError(f"{ckpt_dir / 'last.pt'} exists: pass --resume {ckpt_dir / 'last.pt'} to continue that run, "
                        f"or choose another --name")
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    return run_dir, ckpt_dir


class Trainer:
    """One run: owns the nets, loaders, monitor and state; `fit()` runs epochs until done."""

    def __init__(self, cfg: Config):
        self.cfg = validate(cfg)
        self.rt = Runtime(cfg.run.device, cfg.optim.amp, cfg.optim.channels_last)
        seed_everything(cfg.run.seed)
        split = prepare_files(cfg.data, cfg.run.seed)
        self.run_dir, self.ckpt_dir = run_dirs(cfg)
        log.info(save_split(split, self.run_dir))
        self.nets, self.opts, self.state = _build(cfg, self.rt)
        self.step_fn = gan_step if cfg.stage == "gan" else pretrain_step
        self._make_loaders(split)
        self.monitor = Monitor(self.run_dir, cfg.run.log_every, start_step=self.state.step)
        self.monitor.add_config(cfg.to_dict())

    def _make_loaders(self, split) -> None:
        d, pin = self.cfg.data, self.rt.device.type == "cuda"
        micro_batch = self.cfg.optim.batch_size
        train = PhotoDataset(split.train, d.image_size, True, d.crop_scale, cache=split.embedded)
        self.sampler = EpochSampler(len(train), self.cfg.run.seed, True, d.epoch_size)
        self.loader = make_loader(train, self.sampler, micro_batch, d.num_workers, pin, drop_last=True)
        if len(self.loader) < self.cfg.optim.grad_accum:
            raise UserError(f"an epoch of {len(self.sampler)} images holds fewer than --grad-accum "
                            f"{self.cfg.optim.grad_accum} batches of {micro_batch}; lower --batch-size or raise --epoch-size")
        val = PhotoDataset(split.val, d.image_size, False, cache=split.embedded)
        self.val_loader = make_loader(val, EpochSampler(len(val), 0, False), micro_batch, d.num_workers, pin,
                                      drop_last=False) if len(val) else None
        self.samples = torch.stack([val[(i, 0)][0] for i in range(min(N_SAMPLES, len(val)))]) if len(val) else None

    @property
    def steps_per_epoch(self) -> int:
        return self.sampler.per_rank // self.cfg.optim.batch_size // self.cfg.optim.grad_accum

    def fit(self) -> dict:
        """Train until --epochs or --max-steps; returns the last validation metrics."""
        o, metrics = self.cfg.optim, {}
        try:
            while self.state.epoch < o.epochs and not self._reached_max():
                self._run_epoch()
                metrics = self._end_of_period()
        finally:
            self.monitor.close()
        return metrics

    def _reached_max(self) -> bool:
        return bool(self.cfg.optim.max_steps) and self.state.step >= self.cfg.optim.max_steps

    def _micro_batches(self):
        """Groups of grad_accum device batches, with the time spent waiting for the loader."""
        k, group, wait = self.cfg.optim.grad_accum, [], 0.0
        clock = time.perf_counter()
        for pixels, flips in self.loader:
            wait += time.perf_counter() - clock
            group.append(self.rt.batch(pixels, flips))
            if len(group) == k:
                yield group, wait
                group, wait = [], 0.0
            clock = time.perf_counter()

    def _run_epoch(self) -> bool:
        """Steps until the epoch ends (True) or --max-steps is reached (False)."""
        s, cfg = self.state, self.cfg
        self.sampler.set_epoch(s.epoch, s.batch_in_epoch * cfg.optim.batch_size * cfg.optim.grad_accum)
        bar = tqdm(total=self.steps_per_epoch, initial=s.batch_in_epoch, desc=f"epoch {s.epoch + 1}/{cfg.optim.epochs}",
                   unit="step", dynamic_ncols=True, leave=False, disable=None)
        try:
            for micro, wait in self._micro_batches():
                parts = self.step_fn(self.rt, self.nets, self.opts, micro, cfg)
                s.step += 1
                s.batch_in_epoch += 1
                self._after_step(parts, micro, wait, bar)
                if self._reached_max():
                    break
        finally:
            bar.close()
        finished = s.batch_in_epoch >= self.steps_per_epoch
        if finished:
            s.epoch, s.batch_in_epoch = s.epoch + 1, 0
        return finished

    def _after_step(self, parts: dict, micro: list, wait: float, bar) -> None:
        step = self.state.step
        n = sum(g.shape[0] for g, _ in micro)
        means = self.monitor.step(step, parts, n, wait, self.opts["g"].param_groups[0]["lr"])
        bar.update(1)
        if means:
            bar.set_postfix({k.split("/")[-1]: f"{v:.3g}" for k, v in means.items() if k.startswith("loss/")}
                            | {"img/s": f"{means['perf/img_per_sec']:.1f}"})
        if step % self.cfg.run.image_every == 0 and self.samples is not None:
            self.monitor.grid(step, sample_grid(self.rt, self.nets.generator, self.samples))

    def _end_of_period(self) -> dict:
        """Validate, log, write last.pt and (when improved) best.pt."""
        metrics = validate_generator(self.rt, self.nets.generator, self.val_loader) if self.val_loader else {}
        s, run = self.state, self.cfg.run
        self.monitor.scalars(s.step, metrics)
        if self.samples is not None:
            self.monitor.grid(s.step, sample_grid(self.rt, self.nets.generator, self.samples))
        improved = self._improved(metrics.get(run.best_metric))
        ckpt_io.save_atomic(_checkpoint(self.cfg, self.nets, self.opts, self.rt, s, metrics, full=True),
                            self.ckpt_dir / "last.pt")
        if improved:
            ckpt_io.save_atomic(_checkpoint(self.cfg, self.nets, self.opts, self.rt, s, metrics, full=False),
                                self.ckpt_dir / "best.pt")
        losses = " ".join(f"{k.split('/')[-1]} {v:.4f}" for k, v in self.monitor.last.items() if k.startswith("loss/"))
        vals = " ".join(f"{k} {v:.4f}" for k, v in metrics.items())
        rate = self.monitor.last.get("perf/img_per_sec")
        log.info("epoch %d step %d: %s %s%s%s", s.epoch, s.step, losses, vals,
                 f" ({rate:.1f} img/s)" if rate else "", " [best]" if improved else "")
        return metrics

    def _improved(self, value: float | None) -> bool:
        if value is None:
            return False
        sign = 1 if best_mode(self.cfg) == "min" else -1
        if self.state.best is None or sign * value < sign * self.state.best:
            self.state.best = value
            return True
        return False


def train(cfg: Config) -> dict:
    return Trainer(cfg).fit()
