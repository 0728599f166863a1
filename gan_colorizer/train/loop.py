"""The loop both stages share, top to bottom: epoch -> micro-batches -> the stage's step -> EMA -> log -> validate
-> checkpoint. What keeps it alive sits behind named pieces (guard.py: signals, loader failures, bad steps, the
lock; saver.py: checkpoint cadence and retries); collectives under torchrun are called here, where they happen."""
from __future__ import annotations

import logging
import time

import torch

from gan_colorizer.checkpoint import kill_here_in_tests
from gan_colorizer.color import rotate_ab
from gan_colorizer.config import Config, batches_per_step
from gan_colorizer.data.dataset import LoaderFailure
from gan_colorizer.errors import TrainingDiverged
from gan_colorizer.inspect.features import training_visuals
from gan_colorizer.runtime import compile_errors_as_user_errors, exact_fp32
from gan_colorizer.train import distributed, saver
from gan_colorizer.train.guard import Guard, record_scaler_skip
from gan_colorizer.train.monitor import sample_grid
from gan_colorizer.train.schedules import lr_factor, rates, set_lr
from gan_colorizer.train.setup import Run, start
from gan_colorizer.train.steps import (
    BAD,
    SCALER_SKIP,
    UPDATED,
    base_lr,
    finish_validation,
    gan_step,
    pretrain_step,
    validation_sums,
)

log = logging.getLogger("gan_colorizer")


def train(cfg: Config) -> dict:
    """Train until --epochs or --max-steps; returns the last validation metrics.

    SIGINT / SIGTERM stop after the current step with last.pt written (Interrupted: exit 130 / 143 from the CLI);
    a loader that fails writes last.pt first (LoaderFailure); a diverged run leaves it (TrainingDiverged).
    """
    try:
        run = start(cfg)
        with Guard(run) as guard:
            loop(run, guard)
        return run.metrics
    finally:
        distributed.cleanup()


def loop(run: Run, guard: Guard) -> None:
    cfg, s, dist, rt = run.cfg, run.state, run.dist, run.rt
    step_fn = gan_step if cfg.stage == "gan" else pretrain_step
    step_fn = compile_errors_as_user_errors(step_fn) if cfg.optim.compile else step_fn
    if s.unvalidated and guard.agree():  # a stop landed on an epoch's last step: that epoch's validation first
        close_epoch(run, guard)
    while not run.done(guard.stopped):
        run.sampler.set_epoch(s.epoch, s.batch_in_epoch * run.micro_batch * batches_per_step(cfg))
        run.monitor.start_epoch(f"epoch {s.epoch + 1}/{cfg.optim.epochs}", run.steps_per_epoch, s.batch_in_epoch,
                                s.step, run.total_steps)
        for micro, wait in micro_batches(run, guard):
            set_lr(run.opts, base_lr(cfg), lr_factor(s.step, cfg.optim, run.steps_per_epoch, run.total_steps))
            parts, outcome = step_fn(rt, run.nets, run.opts, micro, cfg, dist)
            if outcome == UPDATED and run.nets.ema is not None:
                run.nets.ema.update(run.nets.generator)
            kill_here_in_tests(f"step:{s.step + 1}")
            s.step += 1
            s.batch_in_epoch += 1  # a skipped step still consumed its batch: resume stays in step with the data
            if run.bad_steps.record(outcome != BAD, s, parts):
                raise TrainingDiverged(f"{run.bad_steps.diverged_message(s.step, parts)}; "
                                       f"{saver.resume_hint(run, diverged=True)}")
            if outcome == SCALER_SKIP:
                record_scaler_skip(s, rt.scaler, run.monitor)
            if outcome != BAD:  # what every process logs: the mean over processes (finite losses)
                parts = distributed.mean_over_ranks(dist, parts, rt.device)
            else:
                run.monitor.scalars(s.step, {"train/skipped_steps": s.skipped_steps})
            n_images = sum(len(gray_l) for gray_l, _ in micro) * dist.world
            run.monitor.step(s.step, parts if outcome != BAD else {}, n_images, wait, rates(run.opts), s.skipped_steps)
            show_samples(run, s.step)
            if run.reached_max():  # a stop signal is agreed before the next step (micro_batches)
                break
            if s.batch_in_epoch < run.steps_per_epoch and run.schedule.due(s.step):
                saver.write(run, "last.pt", full=True, final=False)
        run.monitor.end_epoch()
        s.unvalidated = s.batch_in_epoch >= run.steps_per_epoch or run.reached_max()  # kept in last.pt by a stop
        if s.batch_in_epoch >= run.steps_per_epoch:
            s.epoch, s.batch_in_epoch = s.epoch + 1, 0
        if not guard.stopped:
            guard.agree()  # before validation: every process validates, or none does
        if run.done(guard.stopped):  # the last step's losses, however far from a multiple of --log-every
            run.monitor.flush(s.step, rates(run.opts), s.skipped_steps)
        if guard.stopped:
            break  # the guard writes last.pt on its way out
        close_epoch(run, guard)


def close_epoch(run: Run, guard: Guard) -> None:
    """Validate, log, and write last.pt (and best.pt when the figure improved)."""
    s = run.state
    metrics = validate(run, guard)
    s.unvalidated = run.val_loader is not None and not metrics  # cut short by a stop: the resumed run does it
    run.metrics = metrics or run.metrics
    run.monitor.scalars(s.step, metrics)
    show_samples(run, s.step, always=True)
    improved, final = run.improved(metrics.get(run.cfg.run.best_metric)), run.done(guard.stopped)
    saver.write(run, "last.pt", full=True, final=final)
    if improved:
        saver.write(run, "best.pt", full=False, final=final)
    log_epoch(run, metrics, improved)


def hue_jitter(gray_l, real_ab, degrees: float):
    """--hue-jitter: each photo's ab turned by its own angle, uniform in +-degrees (drawn from torch's seeded
    generator, which last.pt carries), so the colours of the photos are no longer a function of their L."""
    if not degrees:
        return gray_l, real_ab
    return gray_l, rotate_ab(real_ab, (torch.rand(real_ab.shape[0], dtype=torch.float64) * 2 - 1) * degrees)


def micro_batches(run: Run, guard: Guard):
    """Groups of --grad-accum (x --d-steps) batches on the device (Lab, flips), with the time spent waiting for the
    loader. Every process takes the step or none does: a stop, a failed loader or a missing batch on any process
    ends the epoch's steps on all of them (guard.agree)."""
    k, batches = batches_per_step(run.cfg), guard.batches(run.loader, run.sources["train"])
    while True:
        group, wait, failure = [], 0.0, None
        try:
            while len(group) < k:
                clock = time.perf_counter()
                pixels, flips = next(batches)
                wait += time.perf_counter() - clock
                group.append(hue_jitter(*run.rt.batch(pixels, flips), run.cfg.data.hue_jitter))
        except StopIteration:
            pass
        except LoaderFailure as e:
            failure = e
        if not guard.agree(len(group) == k, failure):
            return
        yield group, wait


def validate(run: Run, guard: Guard) -> dict:
    """Validation figures summed over every process's share; none when a stop signal cut validation short on any
    process (agreed, as a loader failure is, before the sums are added)."""
    if run.val_loader is None:
        return {}
    sums, failure = {}, None
    try:
        with exact_fp32():  # no TF32 on Ampere and newer: the fp32 figures evaluate.py gives with --amp off
            sums = validation_sums(run.rt, run.shown_generator(), guard.batches(run.val_loader, run.sources["val"]))
    except LoaderFailure as e:
        failure = e
    if not guard.agree(failure=failure):
        return {}
    return finish_validation(distributed.sum_over_ranks(run.dist, sums, run.rt.device))


def show_samples(run: Run, step: int, always: bool = False) -> None:
    """The fixed validation photos: image grid every --image-every steps (and at each epoch end), feature maps and
    histograms every --viz-every."""
    if run.samples is None:
        return
    if always or step % run.cfg.run.image_every == 0:
        run.monitor.grid(step, sample_grid(run.rt, run.shown_generator(), run.samples))
    if not always and run.cfg.run.viz_every and step % run.cfg.run.viz_every == 0:
        run.monitor.visuals(step, training_visuals(run.rt, run.shown_generator(), run.samples))


def log_epoch(run: Run, metrics: dict, improved: bool) -> None:
    s, last = run.state, run.monitor.last
    losses = " ".join(f"{k.split('/')[-1]} {v:.4f}" for k, v in last.items() if k.startswith("loss/"))
    vals = " ".join(f"{k} {v:.4f}" for k, v in metrics.items())
    rate = last.get("perf/img_per_sec")
    log.info("epoch %d/%d step %d: %s %s%s%s", s.epoch_number, run.cfg.optim.epochs, s.step, losses, vals,
             f" ({rate:.1f} img/s)" if rate else "", " [best]" if improved else "")
