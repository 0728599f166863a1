"""The loop shared by both stages; they differ only in their step function and in which nets exist."""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import torch
from tqdm import tqdm

from . import checkpoint as ckpt_io
from .color import model_to_rgb, to_uint8
from .config import Config, best_mode, validate
from .data import (DataSplit, EpochSampler, LoaderFailure, PhotoDataset, guarded, make_loader, prepare_files,
                   save_split, saved_split, split_digest)
from .errors import Interrupted, TrainingDiverged, UserError
from .features import training_visuals
from .faults import BadSteps, CheckpointSchedule, RunLock, StopSignals, StopWaiting, all_finite, kill_here_in_tests
from .losses import discriminator_loss, generator_loss, l1_loss
from .metrics import psnr
from .monitor import Monitor, sample_grid
from .networks import build_discriminator, build_generator, count_parameters
from .runtime import Runtime, resolve_workers, seed_everything

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
    skipped_steps: int = 0  # steps skipped for a NaN / Inf loss or gradient, in all


def make_optimizer(net: torch.nn.Module, cfg: Config) -> torch.optim.Optimizer:
    return torch.optim.Adam(net.parameters(), lr=cfg.optim.lr, betas=(cfg.optim.beta1, cfg.optim.beta2))


def pretrain_step(rt: Runtime, nets: Nets, opts: dict, micro: list, cfg: Config) -> tuple[dict, bool]:
    """Stage 1: L1 on ab, gradients accumulated over the micro-batches. Returns (losses, whether G was updated)."""
    opts["g"].zero_grad(set_to_none=True)
    parts = {}
    for gray_l, real_ab in micro:
        with rt.autocast():
            fake_ab = nets.generator(gray_l)
        loss, parts_i = l1_loss(fake_ab, real_ab)
        rt.backward(loss / len(micro))
        _accumulate(parts, parts_i, len(micro))
    updated = rt.step(opts["g"], all_finite(parts))
    rt.end_step()
    return parts, updated


def gan_step(rt: Runtime, nets: Nets, opts: dict, micro: list, cfg: Config) -> tuple[dict, bool]:
    """Stage 2, in pix2pix order: update D on real vs fake, then G on GAN + lambda * L1 against the updated D.

    Returns (losses, whether the step went through). A NaN / Inf in the D phase skips the whole step (neither net
    moves); one in the G phase skips G's update, while D's, made from finite values, stands.
    """
    parts = {}
    fakes = _discriminator_phase(rt, nets, opts, micro, cfg, parts)
    updated = rt.step(opts["d"], all_finite(parts))
    if updated:
        _generator_phase(rt, nets, opts, micro, fakes, cfg, parts)
        updated = rt.step(opts["g"], all_finite(parts))
    rt.end_step()
    return parts, updated


def _discriminator_phase(rt: Runtime, nets: Nets, opts: dict, micro: list, cfg: Config, parts: dict) -> list:
    """D's gradients on real vs fake; returns the fakes (with their graph when one micro-batch lets G reuse them)."""
    G, D = nets.generator, nets.discriminator
    reuse = len(micro) == 1
    fakes = []
    D.requires_grad_(True)
    opts["d"].zero_grad(set_to_none=True)
    for gray_l, real_ab in micro:
        with rt.autocast(), torch.set_grad_enabled(reuse):
            fake_ab = G(gray_l)
        fakes.append(fake_ab)
        with rt.autocast():
            loss_d, parts_d = discriminator_loss(D(gray_l, real_ab), D(gray_l, fake_ab.detach()), cfg.optim.gan_mode)
        rt.backward(loss_d / len(micro))
        _accumulate(parts, parts_d, len(micro))
    return fakes


def _generator_phase(rt: Runtime, nets: Nets, opts: dict, micro: list, fakes: list, cfg: Config, parts: dict) -> None:
    """G's gradients on GAN + lambda * L1 against the updated D; with several micro-batches each fake is recomputed
    so that only one generator graph is alive at a time."""
    G, D, o = nets.generator, nets.discriminator, cfg.optim
    D.requires_grad_(False)
    opts["g"].zero_grad(set_to_none=True)
    for (gray_l, real_ab), fake_ab in zip(micro, fakes):
        if len(micro) > 1:
            with rt.autocast():
                fake_ab = G(gray_l)
        with rt.autocast():
            loss_g, parts_g = generator_loss(D(gray_l, fake_ab), fake_ab, real_ab, o.lambda_l1, o.gan_mode)
        rt.backward(loss_g / len(micro))
        _accumulate(parts, parts_g, len(micro))


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


def _restore(ckpt: dict, path: str, cfg: Config, nets: Nets, opts: dict, rt: Runtime) -> TrainState:
    if ckpt.get("stage") != cfg.stage:
        raise UserError(f"{path}: a {ckpt.get('stage')} checkpoint cannot resume a {cfg.stage} run")
    ckpt_io.check_architecture(Config.from_dict(ckpt["config"]), cfg, path, nets=list(_by_name(nets)))
    counters = ckpt_io.restore(ckpt, path, _by_name(nets), opts, rt.scaler)
    state = TrainState(counters["epoch"], counters["batch_in_epoch"], counters["step"], counters["best_metric"],
                       counters["skipped_steps"])
    log.info("resumed %s at epoch %d, step %d", path, state.epoch, state.step)
    return state


def _init_generator(path: str, cfg: Config, generator: torch.nn.Module) -> None:
    ckpt = ckpt_io.load(path)
    ckpt_io.check_architecture(Config.from_dict(ckpt["config"]), cfg, path)
    ckpt_io.load_weights(generator, ckpt["generator"], path, "generator")
    metrics = ", ".join(f"{k} {v:.4g}" for k, v in (ckpt.get("metrics") or {}).items())
    log.info("generator: weights from %s (%s checkpoint, step %s%s)", path, ckpt.get("stage"), ckpt.get("step"),
             f", {metrics}" if metrics else "")


def _by_name(nets: Nets) -> dict:
    """{"generator": G} or {"generator": G, "discriminator": D}: the nets this stage has."""
    return {name: net for name, net in vars(nets).items() if net is not None}


def _build(cfg: Config, rt: Runtime, resumed: dict | None) -> tuple[Nets, dict, TrainState]:
    fresh = not (cfg.run.resume or cfg.run.init_generator)
    nets = Nets(build_generator(cfg.model, load_pretrained=fresh))
    if cfg.stage == "gan":
        nets.discriminator = build_discriminator(cfg.model)
    for name, net in _by_name(nets).items():
        setattr(nets, name, rt.place(net).train())
    opts = {"g": make_optimizer(nets.generator, cfg)}
    if nets.discriminator is not None:
        opts["d"] = make_optimizer(nets.discriminator, cfg)
    state = TrainState()
    if resumed is not None:
        state = _restore(resumed, cfg.run.resume, cfg, nets, opts, rt)
    elif cfg.run.init_generator:
        _init_generator(cfg.run.init_generator, cfg, nets.generator)
    elif cfg.stage == "gan":
        log.info("generator: starting from scratch (no --init-generator stage-1 checkpoint)")
    sizes = ", ".join(f"{n} {count_parameters(net):,} parameters" for n, net in _by_name(nets).items())
    log.info("%s; device %s, amp %s, channels_last %s", sizes, rt.device, rt.amp_name, rt.channels_last)
    return nets, opts, state


def run_paths(cfg: Config) -> tuple[Path, Path]:
    """runs/NAME and checkpoints/NAME (created later, once the data is known to be usable)."""
    if cfg.run.name is None:
        cfg.run.name = f"{cfg.stage}-{datetime.now():%Y%m%d-%H%M%S}"
    run_dir, ckpt_dir = Path(cfg.run.runs_dir) / cfg.run.name, Path(cfg.run.checkpoints_dir) / cfg.run.name
    if not cfg.run.resume and (ckpt_dir / "last.pt").exists():
        raise UserError(f"{ckpt_dir / 'last.pt'} exists: pass --resume {ckpt_dir / 'last.pt'} to continue that run, "
                        f"or choose another --name")
    return run_dir, ckpt_dir


def _same_data(saved: Config, cfg: Config) -> bool:
    """Whether the flags that choose the files (not how they are cropped) are those the run started with."""
    fields = ("data", "val_data", "val_fraction", "include_gray")
    return saved.run.seed == cfg.run.seed and all(getattr(saved.data, f) == getattr(cfg.data, f) for f in fields)


class Trainer:
    """One run: owns the nets, loaders, monitor and state; `fit()` runs epochs until done."""

    def __init__(self, cfg: Config):
        self.cfg = validate(cfg)
        self.rt = Runtime(cfg.run.device, cfg.optim.amp, cfg.optim.channels_last)
        seed_everything(cfg.run.seed)
        self.run_dir, self.ckpt_dir = run_paths(cfg)
        resumed = ckpt_io.load(cfg.run.resume) if cfg.run.resume else None
        split = self._data_split(resumed)
        self.lock = self._claim_folders()
        try:
            self._setup(split, resumed)
        except BaseException:
            self.lock.release()
            raise

    def _claim_folders(self) -> RunLock:
        """Create runs/NAME and checkpoints/NAME and lock the run: from here on this process owns them."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        lock = RunLock(self.ckpt_dir)
        if ckpt_io.remove_partial_writes(self.ckpt_dir):
            log.info("note: removed the temporary file of a checkpoint write that was cut short (%s)", self.ckpt_dir)
        return lock

    def _setup(self, split: DataSplit, resumed: dict | None) -> None:
        cfg = self.cfg
        if split.summary:  # a fresh scan (a resume that found its saved file lists has nothing new to save)
            log.info(save_split(split, self.run_dir))
        self.data_digest = split_digest(split)
        self.nets, self.opts, self.state = _build(cfg, self.rt, resumed)
        self.step_fn = gan_step if cfg.stage == "gan" else pretrain_step
        self._make_loaders(split)
        self.monitor = Monitor(self.run_dir, cfg.run.log_every, start_step=self.state.step)
        self.monitor.add_config(cfg.to_dict())
        self.metrics: dict = (resumed or {}).get("metrics") or {}
        self.bad_steps = BadSteps(cfg.optim.max_bad_steps)
        self.schedule = CheckpointSchedule(cfg.run.checkpoint_every, cfg.run.checkpoint_minutes)
        self.saved_step = self.state.step  # the step last.pt holds (nothing to save before the first step)
        self.stop = StopSignals()

    def _data_split(self, resumed: dict | None) -> DataSplit:
        """On resume, the file lists the run started with (no rescan: the same data as an uninterrupted run)."""
        cfg = self.cfg
        digest = (resumed or {}).get("data_digest")
        if digest and _same_data(Config.from_dict(resumed["config"]), cfg):
            split = saved_split(self.run_dir, digest, embedded=cfg.data.data is None)
            if split is not None:
                log.info("data: %d training and %d validation images: the file lists this run started with (%s)",
                         len(split.train), len(split.val), self.run_dir / "train_files.txt")
                return split
        split = prepare_files(cfg.data, cfg.run.seed)
        if digest and split_digest(split) != digest:
            log.warning("warning: the training or validation files are not those of the checkpoint (folder changed, "
                        "or %s is gone): the resumed run will differ from an uninterrupted one", self.run_dir)
        return split

    def _make_loaders(self, split) -> None:
        d, pin = self.cfg.data, self.rt.device.type == "cuda"
        micro_batch, workers = self.cfg.optim.batch_size, resolve_workers(d.num_workers, self.rt.device)
        train = PhotoDataset(split.train, d.image_size, True, d.crop_scale, cache=split.embedded)
        self.sampler = EpochSampler(len(train), self.cfg.run.seed, True, d.epoch_size)
        self.loader = make_loader(train, self.sampler, micro_batch, workers, pin, True, d.loader_timeout)
        if len(self.loader) < self.cfg.optim.grad_accum:
            raise UserError(f"an epoch of {len(self.sampler)} images holds fewer than --grad-accum "
                            f"{self.cfg.optim.grad_accum} batches of {micro_batch}; lower --batch-size or raise --epoch-size")
        val = PhotoDataset(split.val, d.image_size, False, cache=split.embedded)
        self.val_loader = make_loader(val, EpochSampler(len(val), 0, False), micro_batch, workers, pin,
                                      False, d.loader_timeout) if len(val) else None
        self.samples = torch.stack([val[(i, 0)][0] for i in range(min(N_SAMPLES, len(val)))]) if len(val) else None
        self.sources = {"train": f"--data {d.data}" if d.data else "the embedded sample photos"}
        self.sources["val"] = f"--val-data {d.val_data}" if d.val_data else self.sources["train"]

    @property
    def steps_per_epoch(self) -> int:
        return self.sampler.per_rank // self.cfg.optim.batch_size // self.cfg.optim.grad_accum

    def fit(self) -> dict:
        """Train until --epochs or --max-steps; returns the last validation metrics.

        SIGINT / SIGTERM stop after the current step with last.pt written (exit 130 / 143 from the CLI);
        a loader that fails between steps also writes last.pt first; a diverged run (TrainingDiverged) leaves it.
        """
        try:
            with self.stop:
                try:
                    self._train_or_stop()
                finally:
                    self._shut_down_workers()
        finally:
            self.monitor.close()
            self.lock.release()
        return self.metrics

    def _train_or_stop(self) -> None:
        try:
            self._train()
        except LoaderFailure as e:
            if not self.stop.requested:  # workers killed by the same SIGTERM are no failure of their own
                raise LoaderFailure(f"{e}; {self._write_on_the_way_out()}") from None
        except RuntimeError as e:  # PyTorch's SIGCHLD check: a worker died (OOM killer...), maybe mid-step
            if "DataLoader worker" not in str(e):
                raise
            reason = str(e).strip().splitlines()[0].rstrip(".")  # no last.pt: the step under way may be half done
            raise LoaderFailure(f"{self.sources['train']}: {reason}; {self._resume_hint()}") from None
        if self.stop.requested:
            self._stop_on_signal()

    def _shut_down_workers(self) -> None:
        """End the persistent workers now rather than at exit, while their deaths still cannot raise (see StopSignals)."""
        for loader in (self.loader, self.val_loader):
            iterator = getattr(loader, "_iterator", None)  # PyTorch keeps the persistent workers' iterator here
            if iterator is not None:
                iterator._shutdown_workers()
                loader._iterator = None

    def _train(self) -> None:
        while not self._done():
            self._run_epoch()
            if not self.stop.requested:
                self._end_of_period()

    def _done(self) -> bool:
        return self.state.epoch >= self.cfg.optim.epochs or self._reached_max() or self.stop.requested

    def _reached_max(self) -> bool:
        return bool(self.cfg.optim.max_steps) and self.state.step >= self.cfg.optim.max_steps

    def _batches(self, loader, source: str):
        """A loader's batches until it ends or a stop signal comes; the signal also ends a wait for data at once
        (no step is under way then, and workers killed by the same SIGTERM would never deliver)."""
        batches = guarded(loader, source, self.cfg.data.loader_timeout)
        while not self.stop.requested:
            try:
                with self.stop.waiting_for_data():
                    batch = next(batches)
            except (StopIteration, StopWaiting):
                return
            yield batch

    def _micro_batches(self):
        """Groups of grad_accum device batches, with the time spent waiting for the loader."""
        k, group, wait = self.cfg.optim.grad_accum, [], 0.0
        clock = time.perf_counter()
        for pixels, flips in self._batches(self.loader, self.sources["train"]):
            wait += time.perf_counter() - clock
            group.append(self.rt.batch(pixels, flips))
            if len(group) == k:
                yield group, wait
                group, wait = [], 0.0
            clock = time.perf_counter()

    def _run_epoch(self) -> None:
        """Steps until the epoch ends, --max-steps is reached or a stop signal arrives; last.pt when it is due."""
        s, cfg = self.state, self.cfg
        self.sampler.set_epoch(s.epoch, s.batch_in_epoch * cfg.optim.batch_size * cfg.optim.grad_accum)
        bar = tqdm(total=self.steps_per_epoch, initial=s.batch_in_epoch, desc=f"epoch {s.epoch + 1}/{cfg.optim.epochs}",
                   unit="step", dynamic_ncols=True, leave=False, disable=None)
        try:
            for micro, wait in self._micro_batches():
                parts, updated = self.step_fn(self.rt, self.nets, self.opts, micro, cfg)
                kill_here_in_tests(f"step:{s.step + 1}")
                s.step += 1
                s.batch_in_epoch += 1  # a skipped step still consumed its batch: resume stays in step with the data
                self._after_step(parts, updated, micro, wait, bar)
                if self._reached_max() or self.stop.requested:
                    break
                if s.batch_in_epoch < self.steps_per_epoch and self.schedule.due(s.step):
                    self._write("last.pt", full=True, final=False)
        finally:
            bar.close()
        if s.batch_in_epoch >= self.steps_per_epoch:
            s.epoch, s.batch_in_epoch = s.epoch + 1, 0

    def _after_step(self, parts: dict, updated: bool, micro: list, wait: float, bar) -> None:
        step = self.state.step
        if self.bad_steps.record(updated, self.state, parts):
            raise TrainingDiverged(f"{self.bad_steps.diverged_message(step, parts)}; {self._resume_hint(diverged=True)}")
        if not updated:
            self.monitor.scalars(step, {"train/skipped_steps": self.state.skipped_steps})
        n = sum(g.shape[0] for g, _ in micro)
        means = self.monitor.step(step, parts if updated else {}, n, wait, self.opts["g"].param_groups[0]["lr"],
                                  self.state.skipped_steps)
        bar.update(1)
        if means:
            bar.set_postfix({k.split("/")[-1]: f"{v:.3g}" for k, v in means.items() if k.startswith("loss/")}
                            | {"img/s": f"{means['perf/img_per_sec']:.1f}"})
        if step % self.cfg.run.image_every == 0 and self.samples is not None:
            self.monitor.grid(step, sample_grid(self.rt, self.nets.generator, self.samples))
        if self.cfg.run.viz_every and step % self.cfg.run.viz_every == 0 and self.samples is not None:
            self.monitor.visuals(step, training_visuals(self.rt, self.nets.generator, self.samples))

    def _end_of_period(self) -> None:
        """Validate, log, write last.pt and (when improved) best.pt."""
        metrics = {}
        if self.val_loader is not None:
            metrics = validate_generator(self.rt, self.nets.generator, self._batches(self.val_loader, self.sources["val"]))
        if self.stop.requested:
            metrics = {}  # validation cut short by a stop signal: no partial figures, no best.pt from them
        self.metrics = metrics or self.metrics
        s, run = self.state, self.cfg.run
        self.monitor.scalars(s.step, metrics)
        if self.samples is not None:
            self.monitor.grid(s.step, sample_grid(self.rt, self.nets.generator, self.samples))
        improved = self._improved(metrics.get(run.best_metric))
        final = self._done()
        self._write("last.pt", full=True, final=final)
        if improved:
            self._write("best.pt", full=False, final=final)
        losses = " ".join(f"{k.split('/')[-1]} {v:.4f}" for k, v in self.monitor.last.items() if k.startswith("loss/"))
        vals = " ".join(f"{k} {v:.4f}" for k, v in metrics.items())
        rate = self.monitor.last.get("perf/img_per_sec")
        log.info("epoch %d step %d: %s %s%s%s", s.epoch, s.step, losses, vals,
                 f" ({rate:.1f} img/s)" if rate else "", " [best]" if improved else "")

    def _improved(self, value: float | None) -> bool:
        if value is None or not math.isfinite(value):
            return False
        sign = 1 if best_mode(self.cfg) == "min" else -1
        if self.state.best is None or sign * value < sign * self.state.best:
            self.state.best = value
            return True
        return False

    def _write(self, name: str, full: bool, final: bool) -> bool:
        """Write last.pt / best.pt atomically; never while steps are being skipped (the weights may be going bad)."""
        if self.bad_steps.streak:
            log.warning("warning: step %d: %s not written while steps are being skipped (%d in a row)",
                        self.state.step, name, self.bad_steps.streak)
            return False
        s = self.state
        counters = {"epoch": s.epoch, "batch_in_epoch": s.batch_in_epoch, "step": s.step, "best_metric": s.best,
                    "skipped_steps": s.skipped_steps, "data_digest": self.data_digest}
        ckpt = ckpt_io.make_checkpoint(self.cfg, _by_name(self.nets), counters, self.metrics,
                                       (self.opts, self.rt.scaler) if full else None)
        written = self.schedule.write(lambda: ckpt_io.save_atomic(ckpt, self.ckpt_dir / name), final)
        if written and full:
            self.saved_step = self.state.step
        return written

    def _write_on_the_way_out(self) -> str:
        """Write last.pt if anything happened since it was written; say where the run can continue from."""
        if self.state.step != self.saved_step and not self._write("last.pt", full=True, final=True):
            return f"last.pt not written (steps are being skipped); {self._resume_hint(diverged=True)}"
        return self._resume_hint()

    def _resume_hint(self, diverged: bool = False) -> str:
        last = self.ckpt_dir / "last.pt"
        if not last.is_file():
            return "no checkpoint to resume from (none was written yet)"
        if diverged:
            return f"{last} (step {self.saved_step}) is the last good state: resume from it with a lower --lr"
        return f"{last} holds step {self.saved_step}: continue with --resume {last}"

    def _stop_on_signal(self) -> None:
        log.info("%s: stopping after step %d", self.stop.name, self.state.step)
        where = self._write_on_the_way_out()
        raise Interrupted(f"stopped by {self.stop.name} at step {self.state.step}; {where}", self.stop.received)


def train(cfg: Config) -> dict:
    return Trainer(cfg).fit()
