"""The loop shared by both stages; they differ only in their step function and in which nets exist."""
from __future__ import annotations

import logging
import math
import signal
import time

import torch
from tqdm import tqdm

from gan_colorizer import checkpoint as ckpt_io
from gan_colorizer.checkpoint import kill_here_in_tests
from gan_colorizer.config import Config, best_mode, validate
from gan_colorizer.data import (
    DataSplit,
    EpochSampler,
    LoaderFailure,
    PhotoDataset,
    guarded,
    make_loader,
    prepare_files,
    save_split,
    saved_split,
    split_digest,
)
from gan_colorizer.errors import Interrupted, TrainingDiverged, UserError
from gan_colorizer.inspect.features import training_visuals
from gan_colorizer.networks import unwrap
from gan_colorizer.runtime import Runtime, compile_errors_as_user_errors, resolve_workers, seed_everything
from gan_colorizer.train import distributed
from gan_colorizer.train.guard import BadSteps, CheckpointSchedule, RunLock, StopSignals, StopWaiting
from gan_colorizer.train.monitor import Monitor, sample_grid
from gan_colorizer.train.setup import (NoLock, build_nets, nets_by_name, per_process_batch, prior_for_run, run_paths,
                                      same_data)
from gan_colorizer.train.steps import finish_validation, gan_step, pretrain_step, validation_sums

log = logging.getLogger("gan_colorizer")
N_SAMPLES = 4  # fixed validation photos in the image grids


class Trainer:
    """One run: owns the nets, loaders, monitor and state; `fit()` runs epochs until done."""

    def __init__(self, cfg: Config):
        self.cfg = validate(cfg)
        self.dist, device = distributed.setup(cfg.run.device)
        if not self.dist.main:
            log.setLevel(logging.WARNING)  # one console: rank 0 speaks for all
        self.rt = Runtime(device, cfg.optim.amp, cfg.optim.channels_last)
        if self.dist.active:
            self.rt.agree = lambda ok: not distributed.any_rank(self.dist, not ok, self.rt.device)
        self.micro_batch = per_process_batch(cfg.optim.batch_size, self.dist.world)
        seed_everything(cfg.run.seed + self.dist.rank)  # dropout differs per process; DDP broadcasts rank 0's weights
        self.run_dir, self.ckpt_dir, cfg.run.name = distributed.on_main(self.dist, lambda: (*run_paths(cfg), cfg.run.name))
        resumed = ckpt_io.load(cfg.run.resume) if cfg.run.resume else None
        split = distributed.on_main(self.dist, lambda: self._data_split(resumed))
        self.lock = NoLock()  # processes other than rank 0 write nothing and lock nothing
        distributed.on_main(self.dist, self._claim_folders_on_main)
        try:
            self._setup(split, resumed)
        except BaseException:
            self.lock.release()
            raise

    def _claim_folders_on_main(self) -> None:
        self.lock = self._claim_folders()

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
        if split.summary and self.dist.main:  # a fresh scan (a resume that found its saved lists has nothing to save)
            log.info(save_split(split, self.run_dir))
        self.data_digest = split_digest(split)
        prior = self._color_prior(split, resumed)
        self.nets, self.opts, self.state = build_nets(cfg, self.rt, resumed, self.dist, prior)
        if resumed and self.dist.rank:  # checkpoints hold rank 0's RNG: the others branch off it, reproducibly
            seed_everything(cfg.run.seed + self.dist.rank + 7919 * self.state.step)
        step_fn = gan_step if cfg.stage == "gan" else pretrain_step
        self.step_fn = compile_errors_as_user_errors(step_fn) if cfg.optim.compile else step_fn
        self._make_loaders(split)
        self.monitor = Monitor(self.run_dir, cfg.run.log_every, start_step=self.state.step, writes=self.dist.main)
        self.monitor.add_config(cfg.to_dict())
        self.metrics: dict = (resumed or {}).get("metrics") or {}
        self.bad_steps = BadSteps(cfg.optim.max_bad_steps)
        self.schedule = CheckpointSchedule(cfg.run.checkpoint_every, cfg.run.checkpoint_minutes)
        self.saved_step = self.state.step  # the step last.pt holds (nothing to save before the first step)
        self.stop = StopSignals()

    def _color_prior(self, split: DataSplit, resumed: dict | None):
        """--head classification: the training set's color prior, made on rank 0 and sent to all; None on resume
        (last.pt holds it) and for regression."""
        self.prior_info = (resumed or {}).get("color_prior")
        if self.cfg.model.head != "classification" or resumed is not None:
            return None
        workers = resolve_workers(self.cfg.data.num_workers, self.rt.device)
        prior, self.prior_info = distributed.on_main(self.dist, lambda: prior_for_run(
            self.cfg, split, self.data_digest, self.run_dir, self.rt.device, workers))
        return prior

    def _data_split(self, resumed: dict | None) -> DataSplit:
        """On resume, the file lists the run started with (no rescan: the same data as an uninterrupted run)."""
        cfg = self.cfg
        digest = (resumed or {}).get("data_digest")
        if digest and same_data(Config.from_dict(resumed["config"]), cfg):
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
        d, pin, dist = self.cfg.data, self.rt.device.type == "cuda", self.dist
        micro_batch, workers = self.micro_batch, resolve_workers(d.num_workers, self.rt.device)
        train = PhotoDataset(split.train, d.image_size, True, d.crop_scale, cache=split.embedded)
        self.sampler = EpochSampler(len(train), self.cfg.run.seed, True, d.epoch_size, dist.rank, dist.world)
        self.loader = make_loader(train, self.sampler, micro_batch, workers, pin, True, d.loader_timeout)
        if len(self.loader) < self.cfg.optim.grad_accum:
            raise UserError(f"an epoch of {len(self.sampler)} images holds fewer than --grad-accum "
                            f"{self.cfg.optim.grad_accum} batches of {micro_batch}; lower --batch-size or raise --epoch-size")
        val = PhotoDataset(split.val, d.image_size, False, cache=split.embedded)
        val_sampler = EpochSampler(len(val), 0, False, rank=dist.rank, world=dist.world, pad=False)
        self.val_loader = make_loader(val, val_sampler, micro_batch, workers, pin, False, d.loader_timeout) \
            if len(val) else None
        n_samples = min(N_SAMPLES, len(val)) if dist.main else 0
        self.samples = torch.stack([val[(i, 0)][0] for i in range(n_samples)]) if n_samples else None
        self.sources = {"train": f"--data {d.data}" if d.data else "the embedded sample photos"}
        self.sources["val"] = f"--val-data {d.val_data}" if d.val_data else self.sources["train"]

    @property
    def steps_per_epoch(self) -> int:
        return self.sampler.per_rank // self.micro_batch // self.cfg.optim.grad_accum

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
        self.sampler.set_epoch(s.epoch, s.batch_in_epoch * self.micro_batch * cfg.optim.grad_accum)
        bar = tqdm(total=self.steps_per_epoch, initial=s.batch_in_epoch, desc=f"epoch {s.epoch + 1}/{cfg.optim.epochs}",
                   unit="step", dynamic_ncols=True, leave=False, disable=None if self.dist.main else True)
        try:
            for micro, wait in self._micro_batches():
                parts, updated = self.step_fn(self.rt, self.nets, self.opts, micro, cfg)
                if updated and self.nets.ema is not None:
                    self.nets.ema.update(self.nets.generator)
                kill_here_in_tests(f"step:{s.step + 1}")
                s.step += 1
                s.batch_in_epoch += 1  # a skipped step still consumed its batch: resume stays in step with the data
                self._after_step(parts, updated, micro, wait, bar)
                if self._reached_max() or self._stop_agreed():
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
        n = sum(g.shape[0] for g, _ in micro) * self.dist.world
        parts = self._mean_over_processes(parts) if updated else parts
        means = self.monitor.step(step, parts if updated else {}, n, wait, self.opts["g"].param_groups[0]["lr"],
                                  self.state.skipped_steps)
        bar.update(1)
        if means:
            bar.set_postfix({k.split("/")[-1]: f"{v:.3g}" for k, v in means.items() if k.startswith("loss/")}
                            | {"img/s": f"{means['perf/img_per_sec']:.1f}"})
        if step % self.cfg.run.image_every == 0 and self.samples is not None:
            self.monitor.grid(step, sample_grid(self.rt, self._shown_generator(), self.samples))
        if self.cfg.run.viz_every and step % self.cfg.run.viz_every == 0 and self.samples is not None:
            self.monitor.visuals(step, training_visuals(self.rt, self._shown_generator(), self.samples))

    def _shown_generator(self) -> torch.nn.Module:
        """What validation and sample grids score: the EMA copy under --ema-decay (what evaluation and inference
        use by default), else the trained generator."""
        return self.nets.ema.model if self.nets.ema is not None else unwrap(self.nets.generator)

    def _mean_over_processes(self, parts: dict) -> dict:
        """The losses every process logs: the mean over processes (each saw an equal share of the batch)."""
        if not self.dist.active:
            return parts
        keys = sorted(parts)
        sums = distributed.all_reduce_sum(self.dist, [parts[k] for k in keys], self.rt.device)
        return {k: v / self.dist.world for k, v in zip(keys, sums)}

    def _stop_agreed(self) -> bool:
        """A stop signal, taken at the same step boundary by every process (torchrun may deliver it unevenly)."""
        if self.dist.active and distributed.any_rank(self.dist, self.stop.requested, self.rt.device):
            self.stop.received = self.stop.received or signal.SIGTERM
        return self.stop.requested

    def _end_of_period(self) -> None:
        """Validate, log, write last.pt and (when improved) best.pt."""
        metrics = {}
        if self.val_loader is not None:
            sums = validation_sums(self.rt, self._shown_generator(), self._batches(self.val_loader, self.sources["val"]))
            keys = sorted(sums)
            metrics = finish_validation(dict(zip(keys, distributed.all_reduce_sum(
                self.dist, [sums[k] for k in keys], self.rt.device))))
        if self.stop.requested:
            metrics = {}  # validation cut short by a stop signal: no partial figures, no best.pt from them
        self.metrics = metrics or self.metrics
        s, run = self.state, self.cfg.run
        self.monitor.scalars(s.step, metrics)
        if self.samples is not None:
            self.monitor.grid(s.step, sample_grid(self.rt, self._shown_generator(), self.samples))
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
        """Write last.pt / best.pt atomically (rank 0 only: the processes hold the same weights); never while steps
        are being skipped (the weights may be going bad)."""
        if not self.dist.main:
            self.saved_step = self.state.step if full else self.saved_step
            return True
        if self.bad_steps.streak:
            log.warning("warning: step %d: %s not written while steps are being skipped (%d in a row)",
                        self.state.step, name, self.bad_steps.streak)
            return False
        s = self.state
        counters = {"epoch": s.epoch, "batch_in_epoch": s.batch_in_epoch, "step": s.step, "best_metric": s.best,
                    "skipped_steps": s.skipped_steps, "data_digest": self.data_digest}
        if self.prior_info:
            counters["color_prior"] = self.prior_info  # what the generator's prior buffer was made from
        ckpt = ckpt_io.make_checkpoint(self.cfg, nets_by_name(self.nets), counters, self.metrics,
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
    try:
        return Trainer(cfg).fit()
    finally:
        distributed.cleanup()
