"""What a run reports: TensorBoard scalars (loss/, val/, perf/, lr), sample grids, the config, and console lines."""
from __future__ import annotations

import functools
import json
import logging
import time
from collections import defaultdict
from pathlib import Path

import torch
from torch.utils.tensorboard import SummaryWriter
from torchvision.utils import make_grid, save_image

from gan_colorizer.color import model_to_rgb
from gan_colorizer.config import VAL_METRICS
from gan_colorizer.console import Progress, duration
from gan_colorizer.inspect.runs import flatten

log = logging.getLogger("gan_colorizer")


@torch.no_grad()
def sample_grid(runtime, generator, pixels: torch.Tensor) -> torch.Tensor:
    """One row per sample: gray input | predicted | real, as an RGB (3, H, W) grid in [0, 1]."""
    was_training = generator.training
    generator.eval()
    gray_l, real_ab = runtime.batch(pixels)
    with runtime.autocast():
        fake_ab = generator(gray_l)
    generator.train(was_training)
    gray = model_to_rgb(gray_l, torch.zeros_like(real_ab))
    fake = model_to_rgb(gray_l, fake_ab.float())
    real = pixels.to(gray.device).float() / 255.0
    rows = torch.stack([gray, fake, real], dim=1).flatten(0, 1)
    return make_grid(rows.cpu(), nrow=3, padding=2, pad_value=1.0)


def _never_fatal(write):
    """A full or vanished run folder costs the logs, not the run: warn once, then stop writing there."""
    @functools.wraps(write)
    def guarded(self, *args, **kwargs):
        if self.broken:
            return None
        try:
            return write(self, *args, **kwargs)
        except OSError as e:
            self.broken = True
            log.warning("warning: cannot write to %s (%s): TensorBoard logs and sample grids are off for the rest "
                        "of this run; training and checkpoints go on", self.run_dir, e.strerror or e)
            return None
    return guarded


class Monitor:
    """Running means of the step losses, throughput, progress (a bar on a terminal, a dated line every --log-every
    steps off one), and everything written to runs/NAME."""

    def __init__(self, run_dir: Path, log_every: int, start_step: int = 0, writes: bool = True):
        """writes=False (processes other than rank 0 under torchrun): the means are kept, nothing is written."""
        self.run_dir = Path(run_dir)
        self.broken = not writes
        # on resume, drop what a killed run logged after its checkpoint
        self.writer = SummaryWriter(str(self.run_dir), purge_step=start_step + 1 if start_step else None) if writes else None
        self.log_every = log_every
        self.shows = writes  # progress too: one console, rank 0 speaks for all
        self.progress: Progress | None = None  # this epoch's
        self.total_steps = 0  # of the whole run (--epochs, or --max-steps if sooner)
        self.run_start: tuple[float, int] | None = None  # (clock, step) when this process began stepping
        self.sums: dict[str, float] = defaultdict(float)
        self.counts: dict[str, int] = defaultdict(int)
        self.images = 0
        self.data_wait = 0.0
        self.clock = time.perf_counter()
        self.last: dict[str, float] = {}
        self.hparams_end = None  # the HParams session's end summary, written by close()

    @_never_fatal
    def add_config(self, config: dict) -> None:
        text = json.dumps(config, indent=2)
        (self.run_dir / "config.json").write_text(text)
        self.writer.add_text("config", "```\n" + text + "\n```", 0)
        self.hparams(config)

    def hparams(self, config: dict) -> None:
        """The config as TensorBoard's HParams plugin reads it (one session per run folder, its fields dotted:
        optim.lr), with the validation figures as its metrics: `tensorboard --logdir runs` then sorts and plots
        runs by them. The metrics' values are the val/ scalars the run logs."""
        from torch.utils.tensorboard.summary import hparams
        experiment, start, self.hparams_end = hparams(flatten(config), dict.fromkeys(VAL_METRICS, 0.0))
        for summary in (experiment, start):
            self.writer.file_writer.add_summary(summary)

    def start_epoch(self, label: str, steps: int, done: int, step: int, total_steps: int) -> None:
        """label: 'epoch 2/20', as every message names it; `done` of its `steps` are behind (a resume mid-epoch)."""
        self.progress = Progress(steps, label, "step", initial=done, seconds=None, shows=self.shows)
        self.total_steps = total_steps
        self.run_start = self.run_start or (time.monotonic(), step)

    def end_epoch(self) -> None:
        """The bar goes (before any message); the counts stay for the run's last line."""
        if self.progress is not None:
            self.progress.close()

    def step(self, step: int, parts: dict, n_images: int, data_wait: float, lrs: dict, skipped: int = 0) -> dict | None:
        """Accumulate one optimizer step; every log_every steps write the means and return them.

        A skipped step passes no parts: its NaN losses stay out of the means, its images still count.
        """
        if self.progress is not None:
            self.progress.update(1)
        for k, v in parts.items():
            self.sums[k] += float(v)
            self.counts[k] += 1
        self.images += n_images
        self.data_wait += data_wait
        return None if step % self.log_every else self.flush(step, lrs, skipped)

    def flush(self, step: int, lrs: dict, skipped: int = 0) -> dict | None:
        """Write and return the means of the steps since the last log (the loop calls it at a run's last step too,
        so a run shorter than --log-every still logs its losses); None when there were none."""
        if not self.images:
            return None
        elapsed = max(time.perf_counter() - self.clock, 1e-9)
        means = {f"loss/{k}": v / self.counts[k] for k, v in self.sums.items()}
        means["perf/img_per_sec"] = self.images / elapsed
        means["perf/data_wait_frac"] = self.data_wait / elapsed
        means.update({f"lr/{name}": lr for name, lr in lrs.items()})  # each net's rate at this step: lr/g, lr/d
        means["train/skipped_steps"] = skipped
        self.scalars(step, means)
        self.sums.clear()
        self.counts.clear()
        self.images = 0
        self.data_wait = 0.0
        self.clock = time.perf_counter()
        self.last = means
        if self.progress is not None:
            self.progress.note({k.split("/")[-1]: f"{v:.3g}" for k, v in means.items() if k.startswith("loss/")}
                               | {"img/s": f"{means['perf/img_per_sec']:.1f}"})
            self.progress.line(self.line(step, means))
        return means

    def line(self, step: int, means: dict) -> str:
        """What a person reading a log file needs every --log-every steps: where the run is, the losses, the speed and
        when the epoch and the run should end (the run's ETA from its pace so far, validation and checkpoints in)."""
        p = self.progress
        losses = ", ".join(f"{k.split('/')[-1]} {v:.4g}" for k, v in means.items() if k.startswith("loss/"))
        clock, first = self.run_start
        pace = (step - first) / max(time.monotonic() - clock, 1e-9)
        left = max(self.total_steps - step, 0)
        rate = p.rate()  # this epoch's steps alone: its ETA leaves out the validation at its end
        epoch_eta = min(p.total - p.done, left) / rate if rate else None  # --max-steps may end the run mid-epoch
        return (f"{p.what} step {step}/{self.total_steps} ({p.done}/{p.total} of the epoch): "
                f"{losses or 'no loss (skipped steps)'}; {means['perf/img_per_sec']:.1f} img/s; "
                f"ETA epoch {duration(epoch_eta)}, run {duration(left / pace if pace > 0 else None)}")

    @_never_fatal
    def scalars(self, step: int, values: dict) -> None:
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, step)

    @_never_fatal
    def grid(self, step: int, grid: torch.Tensor) -> Path | None:
        self.writer.add_image("val/samples", grid, step)
        path = self.run_dir / "samples" / f"step_{step:07d}.png"
        path.parent.mkdir(exist_ok=True)
        save_image(grid, path)
        return path

    @_never_fatal
    def visuals(self, step: int, visuals) -> None:
        """features.Visuals: images (H, W, 3) uint8 and histograms, by tag."""
        for tag, image in visuals.images.items():
            self.writer.add_image(tag, image, step, dataformats="HWC")
        for tag, values in visuals.histograms.items():
            self.writer.add_histogram(tag, values, step)

    @_never_fatal
    def close(self) -> None:
        if self.hparams_end is not None:  # the session's end: the HParams view shows the run as finished
            self.writer.file_writer.add_summary(self.hparams_end)
        self.writer.flush()
        self.writer.close()
