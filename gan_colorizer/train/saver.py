"""last.pt and best.pt: when they are due, what goes in, retries of failed writes, and where a run can resume."""
from __future__ import annotations

import logging
import time
from typing import Callable

from gan_colorizer import checkpoint as ckpt_io
from gan_colorizer.errors import UserError
from gan_colorizer.train.nets import nets_by_name

log = logging.getLogger("gan_colorizer")


class CheckpointSchedule:
    """When last.pt is due between epoch ends (every N steps and/or M minutes), and how many failed writes to bear.

    A failed write (disk full, folder gone) is a warning and is retried at the next due point; `max_failures`
    in a row, or a failure of the run's final write, stop the run with the error. The previous file stays intact.
    """

    def __init__(self, every_steps: int, every_minutes: float, max_failures: int = 3, clock=time.monotonic):
        self.every_steps, self.every_seconds = every_steps, every_minutes * 60.0
        self.max_failures, self.failures, self.clock = max_failures, 0, clock
        self.last_try = clock()

    def due(self, step: int) -> bool:
        by_steps = self.every_steps > 0 and step % self.every_steps == 0
        return by_steps or (self.every_seconds > 0 and self.clock() - self.last_try >= self.every_seconds)

    def write(self, save: Callable[[], None], final: bool) -> bool:
        """Run save(); True when it worked. Its UserError is raised when final or after max_failures in a row."""
        self.last_try = self.clock()
        try:
            save()
        except UserError as e:
            self.failures += 1
            if final or self.failures >= self.max_failures:
                raise
            log.warning("%s; training goes on and tries again at the next checkpoint (%d of %d failed writes in a "
                        "row before the run stops)", e, self.failures, self.max_failures)
            return False
        self.failures = 0
        return True


def write(run, name: str, full: bool, final: bool) -> bool:
    """Write last.pt (full: with optimizers, to resume) or best.pt (weights) atomically; rank 0 only, as the processes
    hold the same weights; never while steps are being skipped (the weights may be going bad)."""
    s = run.state
    if not run.dist.main:
        run.saved_step = s.step if full else run.saved_step
        return True
    if run.bad_steps.streak:
        log.warning("warning: step %d: %s not written while steps are being skipped (%d in a row)", s.step, name,
                    run.bad_steps.streak)
        return False
    counters = {"epoch": s.epoch, "batch_in_epoch": s.batch_in_epoch, "step": s.step, "best_metric": s.best,
                "skipped_steps": s.skipped_steps, "scaler_skips": s.scaler_skips, "unvalidated": s.unvalidated,
                "data_digest": run.data_digest,
                "split_rule": run.split_rule}
    if run.training_set is not None:
        counters["train_set"] = run.training_set  # stage 2 checks its validation files against it
    if run.prior_info:
        counters["color_prior"] = run.prior_info  # what the generator's prior buffer was made from
    ckpt = ckpt_io.make_checkpoint(run.cfg, nets_by_name(run.nets), counters, run.metrics,
                                   (run.opts, run.rt.scaler) if full else None)
    if full and run.nets.pool is not None:
        ckpt["image_pool"] = run.nets.pool.state_dict()  # what D saw of earlier steps, for an exact resume
    written = run.schedule.write(lambda: ckpt_io.save_atomic(ckpt, run.ckpt_dir / name), final)
    if written and full:
        run.saved_step = s.step
    return written


def on_the_way_out(run) -> str:
    """Write last.pt if anything happened since it was written; say where the run can continue from."""
    if run.state.step != run.saved_step and not write(run, "last.pt", full=True, final=True):
        return f"last.pt not written (steps are being skipped); {resume_hint(run, diverged=True)}"
    return resume_hint(run)


def resume_hint(run, diverged: bool = False) -> str:
    last = run.ckpt_dir / "last.pt"
    if not last.is_file():
        return "no checkpoint to resume from (none was written yet)"
    if diverged:
        return f"{last} (step {run.saved_step}) is the last good state: resume from it with a lower --lr"
    return f"{last} holds step {run.saved_step}: continue with --resume {last}"
