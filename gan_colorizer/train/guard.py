"""What keeps a long run alive or stops it cleanly, around the loop: the Guard (stop signals, loader failures and
hung loaders, shutdown), the non-finite step counter and the run lock. Checkpoint cadence and retries: saver.py."""
from __future__ import annotations

import contextlib
import logging
import shutil
import signal
import threading
from pathlib import Path

from gan_colorizer.atomic import FolderLock
from gan_colorizer.data.dataset import LoaderFailure, guarded
from gan_colorizer.errors import Interrupted
from gan_colorizer.train import distributed, saver

log = logging.getLogger("gan_colorizer")


class StopWaiting(Exception):
    """A stop signal arrived while the loop waited for data: no step is under way, so it ends the wait at once."""


class StopSignals:
    """SIGINT / SIGTERM ask the loop to stop after the current step; a second one stops at once (KeyboardInterrupt).

    The handler only sets a flag (writing from it could collide with a progress bar mid-write), except inside
    `waiting_for_data()`, which it ends with StopWaiting: workers killed by the same SIGTERM would never deliver.
    Such worker deaths must not raise mid-step either, so once a stop signal came PyTorch's SIGCHLD check is off
    until exit (shut the workers down before leaving). Installed from the main thread only; the previous handlers
    come back on exit.
    """

    def __init__(self):
        self.received: int | None = None
        self._previous: dict = {}
        self._waiting = False

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            if callable(handler) or sig != getattr(signal, "SIGCHLD", None):  # a caught SIGCHLD needs a handler
                signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum, frame) -> None:
        if self.received is not None:
            raise KeyboardInterrupt
        self.received = signum
        if hasattr(signal, "SIGCHLD") and signal.SIGCHLD not in self._previous:
            # a Python no-op rather than SIG_DFL: a SIGCHLD already caught must still find a Python handler
            self._previous[signal.SIGCHLD] = signal.signal(signal.SIGCHLD, _ignore_child_exit)
        if self._waiting:
            raise StopWaiting

    @contextlib.contextmanager
    def waiting_for_data(self):
        self._waiting = True
        try:
            if self.requested:
                raise StopWaiting
            yield
        finally:
            self._waiting = False

    @property
    def requested(self) -> bool:
        return self.received is not None

    @property
    def name(self) -> str:
        return signal.Signals(self.received).name if self.received else ""


def _ignore_child_exit(signum, frame) -> None:
    pass


class Guard:
    """The context the loop runs in. Inside, SIGINT / SIGTERM only ask for a stop, which the loop takes once every
    process agreed on it (`agree`, before each step and around validation); `batches()` ends a wait for data at once.
    On the way out: a stop becomes Interrupted and a loader failure a one-line LoaderFailure, both with last.pt
    written first; a dead worker (OOM killer...) a LoaderFailure without it (the step under way may be half done);
    then the workers are shut down, the logs closed and the run lock released, whatever happened."""

    def __init__(self, run):
        self.run, self.signals = run, StopSignals()
        self.stopped = False  # a stop every process agreed on: the loop acts on this, never on its own signal

    def agree(self, have_batches: bool = True, failure: LoaderFailure | None = None) -> bool:
        """Whether every process goes on, in one collective: a stop signal, a failed loader or a missing batch on any
        process ends the wait on all of them at the same step boundary (a process leaving alone would leave the others
        inside a collective: a peer-closed error under gloo, a 30-minute hang under NCCL). A stop wins over a
        failure (workers killed by the same signal); a failure is raised on every process."""
        stop, failed, missing = distributed.all_reduce_sum(
            self.run.dist, [float(self.signals.requested), float(failure is not None), float(not have_batches)],
            self.run.rt.device)
        if stop:
            self.stopped = True
            self.signals.received = self.signals.received or signal.SIGTERM  # another process got it
            return False
        if failed:
            raise failure or LoaderFailure(f"{self.run.sources['train']}: the data loader of another process failed "
                                           "(its own message says why)")
        return not missing

    def batches(self, loader, source: str):
        """A loader's batches until it ends or a stop signal comes to this process (no step is under way while
        waiting, and workers killed by the same SIGTERM would never deliver)."""
        batches = guarded(loader, source, self.run.cfg.data.loader_timeout)
        while not self.signals.requested:
            try:
                with self.signals.waiting_for_data():
                    batch = next(batches)
            except (StopIteration, StopWaiting):
                return
            yield batch

    def __enter__(self) -> "Guard":
        self.signals.__enter__()
        return self

    def __exit__(self, kind, error, tb) -> bool:
        self.run.monitor.end_epoch()  # the progress bar goes before any message
        try:
            outcome = self._outcome(error)
        finally:
            try:
                self._shut_down_workers()
            finally:
                self.signals.__exit__(kind, error, tb)
                self.run.monitor.close()
                self.run.lock.release()
        if outcome is not None:
            raise outcome from None
        return False

    def _outcome(self, error) -> BaseException | None:
        """What the run ends with, when it is not `error` itself. Every process comes here together when the loop
        ended (a signal since the last agreement is agreed once more) or a LoaderFailure was agreed: rank 0 writes
        last.pt and every process says the same line."""
        if error is None:
            self.agree()
        if self.stopped and (error is None or isinstance(error, LoaderFailure)):
            state = self.run.state
            log.info("%s: stopping after step %d", self.signals.name, state.step)
            at = state.where(self.run.cfg.optim.epochs)
            written = distributed.on_main(self.run.dist, lambda: saver.on_the_way_out(self.run))
            return Interrupted(f"stopped by {self.signals.name} at {at}; {written}", self.signals.received)
        if isinstance(error, LoaderFailure):
            return LoaderFailure(f"{error}; {distributed.on_main(self.run.dist, lambda: saver.on_the_way_out(self.run))}")
        if isinstance(error, RuntimeError) and "DataLoader worker" in str(error):  # PyTorch's SIGCHLD check
            reason = str(error).strip().splitlines()[0].rstrip(".")
            return LoaderFailure(f"{self.run.sources['train']}: {reason}; {saver.resume_hint(self.run)}")
        return None

    def _shut_down_workers(self) -> None:
        """End the persistent workers now rather than at exit, while their deaths still cannot raise (see StopSignals)."""
        for loader in (self.run.loader, self.run.val_loader):
            iterator = getattr(loader, "_iterator", None)  # PyTorch keeps the persistent workers' iterator here
            if iterator is not None:
                try:
                    iterator._shutdown_workers()
                except RuntimeError as e:  # PyTorch's SIGCHLD check, for a worker whose death _outcome has reported
                    if "DataLoader worker" not in str(e):
                        raise
                loader._iterator = None


def format_losses(parts: dict) -> str:
    return ", ".join(f"{k} {v:.4g}" for k, v in parts.items()) or "none computed"


class BadSteps:
    """Steps skipped because a loss or gradient was NaN / Inf, in a row; the total lives in the training state."""

    def __init__(self, limit: int):
        self.limit, self.streak, self.first = limit, 0, 0

    def record(self, ok: bool, state, parts: dict) -> bool:
        """Count the step `state.step`; True when `limit` steps in a row were bad, i.e. the run has diverged."""
        if ok:
            self.streak = 0
            return False
        state.skipped_steps += 1
        self.streak += 1
        self.first = state.step if self.streak == 1 else self.first
        if self.streak < self.limit:
            log.warning("warning: step %d: non-finite loss or gradient (%s): step skipped, no weight changed "
                        "(%d in a row, %d in all)", state.step, format_losses(parts), self.streak, state.skipped_steps)
        return self.streak >= self.limit

    def diverged_message(self, step: int, parts: dict) -> str:
        return (f"training diverged: {self.streak} steps in a row (steps {self.first}-{step}) had a non-finite loss "
                f"or gradient (last losses: {format_losses(parts)}); stopped at step {step}")


def record_scaler_skip(state, scalers, monitor) -> None:
    """An fp16 step the scaler skipped (finite losses, overflowing scaled gradients): counted apart from bad steps,
    in TensorBoard (train/scaler_skips, each net's train/loss_scale_NET), the first one in the log. It never blocks
    a checkpoint and never counts toward --max-bad-steps: the scale settles in the first steps, then overflows
    again every few thousand steps as it grows back."""
    state.scaler_skips += 1
    scales = {net: scaler.get_scale() for net, scaler in scalers.by_net.items()}
    if state.scaler_skips == 1:
        log.info("note: step %d: fp16 gradients overflowed, the scaler skipped the update and lowered its scale (%s); "
                 "normal while the scale settles, counted as train/scaler_skips, not as a bad step", state.step,
                 ", ".join(f"{net} {scale:g}" for net, scale in scales.items()))
    monitor.scalars(state.step, {"train/scaler_skips": state.scaler_skips,
                                 **{f"train/loss_scale_{net}": scale for net, scale in scales.items()}})


class RunLock(FolderLock):
    """An exclusive lock on checkpoints/NAME, so two processes never train (and overwrite) the same run
    (atomic.FolderLock: released by the kernel even on SIGKILL, its .lock file deleted on release)."""

    def __init__(self, folder: Path):
        super().__init__(folder, f"{folder}: this run is being trained by {{holder}}; wait for it to finish or stop "
                                 f"it, or choose another --name")
        self.run_dir: Path | None = None
        self.created: list[Path] = []  # the folders this start made (claim_folders), removed if it fails

    def abandon(self) -> None:
        """A start-up that failed: remove the folders it created (.lock with them), then unlock."""
        if self.held:
            for folder in self.created:
                shutil.rmtree(folder, ignore_errors=True)
        self.release()
