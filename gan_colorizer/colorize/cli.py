"""colorize.py: colorize files, folders and glob patterns at full resolution into --out. A thin layer over Colorizer.

Exit codes: 0 every photo colorized (or its output already there), 1 some could not be read or written,
2 bad arguments (nothing is written), 130 / 143 Ctrl-C / SIGTERM (finished files are complete; rerun to continue).
"""
from __future__ import annotations

import os
import sys
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from gan_colorizer.colorize.options import DESCRIPTION, ColorizeOptions, build_parser  # noqa: F401 (the tool's flags)
from gan_colorizer.colorize.video import MAX_BATCH_PIXELS
from gan_colorizer.console import Progress, terminated_as_interrupt
from gan_colorizer.data.images import MAX_PIXELS
from gan_colorizer.errors import UserError, reason
from gan_colorizer.options import parse_options

# Idle OpenMP threads sleep instead of spinning, so the decode / encode threads get the cores (on a 2-core
# machine spinning cost ~2x CPU per photo). Read when torch loads, hence before any torch import; env overrides.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

IN_FLIGHT_PIXELS = 24_000_000  # full-size pixels decoded ahead, and waiting to be written, at most


def io_threads(num_workers: int) -> int:
    """--num-workers as threads: -1 (auto) is one per CPU core, at most 8."""
    return num_workers if num_workers > 0 else min(8, os.cpu_count() or 2)


def check_args(args) -> None:
    from gan_colorizer.colorize.api import check_controls
    from gan_colorizer.colorize.video_jobs import check_video_args
    check_video_args(args)
    checks = [(args.image_size >= 32, f"--image-size {args.image_size}: must be >= 32"),
              (args.batch_size >= 1, "--batch-size must be >= 1"),
              (1 <= args.quality <= 100, f"--quality {args.quality}: must be in 1..100"),
              (args.num_workers >= 1 or args.num_workers == -1, "--num-workers must be >= 1, or -1 for auto"),
              (args.max_pixels is None or args.max_pixels >= 1, f"--max-pixels {args.max_pixels}: must be >= 1"),
              (args.annealed_t is None or args.annealed_t > 0, f"--annealed-t {args.annealed_t}: must be > 0"),
              (not Path(args.out).exists() or Path(args.out).is_dir(), f"--out {args.out}: exists and is not a folder")]
    for ok, message in checks:
        if not ok:
            raise UserError(message)
    try:
        check_controls(args.temperature, args.saturation, args.hue)
    except ValueError as e:
        raise UserError(f"--{str(e)}") from None


@dataclass
class Tally:
    done: int = 0
    failed: int = 0
    kept: int = 0


def _load(job, colorizer_module, max_pixels: int | None):
    """Decode one file for the network (runs in a worker thread): a Prepared, or the UnreadableImage."""
    from gan_colorizer.data.images import UnreadableImage, open_image
    try:
        return colorizer_module.prepare(open_image(job.source, max_pixels=max_pixels or MAX_PIXELS),
                                        keep_alpha=job.keeps_alpha)
    except UnreadableImage as e:
        return e
    except MemoryError:
        return UnreadableImage(job.source, "not enough memory to decode it")


class _InFlight:
    """Futures in submission order with the pixels they hold: memory is bounded by count and by pixels."""

    def __init__(self, max_items: int, max_pixels: int):
        self.items, self.pixels = deque(), 0
        self.max_items, self.max_pixels = max_items, max_pixels

    def full(self, more_pixels: int = 0) -> bool:
        """True when one more item of more_pixels would exceed a bound (an empty queue always takes one)."""
        return bool(self.items) and (len(self.items) >= self.max_items or self.pixels + more_pixels > self.max_pixels)

    def add(self, job, future, pixels: int) -> None:
        self.items.append((job, future, pixels))
        self.pixels += pixels

    def pop(self):
        job, future, pixels = self.items.popleft()
        self.pixels -= pixels
        return job, future, pixels


def _prefetch(pool, fn, jobs, ahead: int):
    """Yield (job, result, pixels) in order while later jobs decode in the pool, within `ahead` and IN_FLIGHT_PIXELS."""
    from gan_colorizer.data.images import header_pixels
    pending, it = _InFlight(ahead, IN_FLIGHT_PIXELS), iter(jobs)
    nxt = next(it, None)
    nxt_pixels = header_pixels(nxt.source) if nxt else 0
    while True:
        while nxt is not None and not pending.full(nxt_pixels):
            pending.add(nxt, pool.submit(fn, nxt), nxt_pixels)
            nxt = next(it, None)
            nxt_pixels = header_pixels(nxt.source) if nxt else 0
        if not pending.items:
            return
        job, future, pixels = pending.pop()
        yield job, future.result(), pixels


def _batches(decoded, batch_size: int):
    """Group decoded photos into batches of at most batch_size photos and MAX_BATCH_PIXELS pixels."""
    batch, pixels = [], 0
    for job, item, n in decoded:
        if batch and pixels + n > MAX_BATCH_PIXELS:
            yield batch
            batch, pixels = [], 0
        batch.append((job, item))
        pixels += n
        if len(batch) >= batch_size:
            yield batch
            batch, pixels = [], 0
    if batch:
        yield batch


class Report:
    """Progress (a bar on a terminal, a dated line every 30 s off one), one stderr line per failed file, the counts."""

    def __init__(self, total: int, kept: int):
        self.bar = Progress(total, "colorize", "img", shows=total > 0, leave=True)
        self.tally = Tally(kept=kept)

    def ok(self) -> None:
        self.tally.done += 1
        self.bar.update()

    def fail(self, path, reason: str) -> None:
        self.bar.write(f"error: {path}: {reason}")
        self.tally.failed += 1
        self.bar.update()

    def close(self) -> None:
        self.bar.close()


def _colorize_batch(colorizer, batch: list, controls: dict, report: Report) -> list:
    """Images for the batch; on a runtime failure (out of device memory...) each photo is retried alone."""
    try:
        return colorizer.colorize_prepared([item for _, item in batch], **controls)
    except (RuntimeError, MemoryError) as e:
        if len(batch) > 1:
            return [img for one in batch for img in (_colorize_batch(colorizer, [one], controls, report) or [None])]
        report.fail(batch[0][0].source, f"colorization failed ({reason(e, 'out of memory')})")
        return []


def _finish(job, future, report: Report) -> None:
    try:
        future.result()
        report.ok()
    except (OSError, ValueError) as e:  # disk full, permissions, metadata the format cannot hold...
        report.fail(job.output, f"cannot write ({getattr(e, 'strerror', None) or e})")


def colorize_jobs(colorizer, jobs: list, args, report: Report) -> None:
    """Decode (worker threads) -> colorize in batches (this thread) -> encode and write atomically (workers).

    Decoded photos waiting, the batch, and finished images waiting for their write are each bounded in pixels,
    so a folder of 24 MP photos needs little more memory than one.
    """
    from gan_colorizer.colorize import api as colorizer_module
    from gan_colorizer.colorize.files import save_atomic
    controls = {"temperature": args.temperature, "saturation": args.saturation, "hue": args.hue,
                "hints": getattr(args, "hint_list", None)}
    workers = io_threads(args.num_workers)
    pool, writes = ThreadPoolExecutor(workers, thread_name_prefix="colorize-io"), _InFlight(2 * workers,
                                                                                            IN_FLIGHT_PIXELS)
    try:
        decoded = _prefetch(pool, lambda job: _load(job, colorizer_module, args.max_pixels), jobs,
                            args.batch_size + workers)
        for batch in _batches(decoded, args.batch_size):
            good = []
            for job, item in batch:
                if isinstance(item, Exception):
                    report.fail(job.source, item.reason)
                elif why := _misplaced(controls["hints"], item, args.hints):
                    report.fail(job.source, why)
                else:
                    good.append((job, item))
            for (job, _), img in zip(good, _colorize_batch(colorizer, good, controls, report)):
                if img is not None:
                    pixels = img.width * img.height
                    while writes.full(pixels):
                        _finish(*writes.pop()[:2], report)
                    writes.add(job, pool.submit(save_atomic, img, job.output, args.quality), pixels)
        while writes.items:
            _finish(*writes.pop()[:2], report)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # running writes finish (atomically); queued ones are dropped


def _misplaced(hints, item, source) -> str | None:
    """Why --hints do not fit this photo (a point outside it), or None."""
    if not hints:
        return None  # hints.py needs torch: not imported by a run without hints (the ONNX engines run without it)
    from gan_colorizer.hints import check_inside
    try:
        check_inside(hints, item.pixels.shape[1], item.pixels.shape[0], f"--hints {source}")
    except UserError as e:
        return str(e)
    return None


def read_hints(args, colorizer, jobs: list) -> list | None:
    """--hints FILE's hints, for photos and a model that reads them; else a UserError (before anything is written)."""
    if not args.hints:
        return None
    from gan_colorizer.colorize.video import is_video
    videos = [job.source for job in jobs if is_video(job.source)]
    if videos:
        raise UserError(f"--hints {args.hints}: hints are for photos; {videos[0]} is a video")
    if colorizer is None:
        return None
    colorizer.check_takes_hints(f"--hints {args.hints}: {args.checkpoint}")
    from gan_colorizer.hints import read_file
    return read_file(args.hints)


def load_colorizer(args):
    from gan_colorizer.colorize.api import Colorizer
    return Colorizer.from_checkpoint(args.checkpoint, args.device, args.image_size, args.amp, weights=args.weights,
                                     decode=args.decode, annealed_t=args.annealed_t, engine=args.engine,
                                     download=args.download)


def _decoding(colorizer, args) -> str:
    if colorizer.published is not None:  # it runs at its authors' render size, in fp32, with its own output
        from gan_colorizer.colorize.published import ignored_flags
        given = ignored_flags(args, ColorizeOptions.image_size)
        return f", {' / '.join(given)} ignored: a published model runs as its authors run it" if given else ""
    if colorizer.decoding:
        return f", {colorizer.decoding}"
    return ", --decode / --annealed-t ignored: regression checkpoint" if args.decode or args.annealed_t else ""


def _hinted(args) -> str:
    n = len(args.hint_list or [])
    return f", {n} hint{'s' if n != 1 else ''} from {args.hints}" if args.hints else ""


def _plan(args):
    """(jobs, those still to do, the colorizer or None when nothing is left): every argument error comes from here."""
    from gan_colorizer.colorize.files import plan_jobs
    check_args(args)
    jobs = plan_jobs(args.inputs, Path(args.out), args.format, args.codec)
    todo = jobs if args.overwrite else [job for job in jobs if not job.output.exists()]
    colorizer = load_colorizer(args) if todo else None
    args.hint_list = read_hints(args, colorizer, jobs)
    return jobs, todo, colorizer


@terminated_as_interrupt()  # SIGTERM cleans up as Ctrl-C does: no temporary file left behind
def main(argv=None) -> int:
    args = parse_options(build_parser(), ColorizeOptions, argv)
    from gan_colorizer.console import setup_logging
    setup_logging()
    try:
        jobs, todo, colorizer = _plan(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt as e:
        print("interrupted: nothing written", file=sys.stderr)
        return getattr(e, "exit_code", 130)
    from gan_colorizer.colorize.video_jobs import describe
    report = Report(len(todo), kept=len(jobs) - len(todo))
    if colorizer is not None:
        kept = f"; {report.tally.kept} existing outputs kept (--overwrite replaces them)" if report.tally.kept else ""
        print(f"colorizing {describe(todo)} into {args.out} (image size {colorizer.render_size}, "
              f"{colorizer.describe()}{_decoding(colorizer, args)}{_hinted(args)}){kept}", flush=True)
    try:
        if todo:
            from gan_colorizer.colorize.video import is_video
            from gan_colorizer.colorize.video_jobs import colorize_videos
            colorize_jobs(colorizer, [job for job in todo if not is_video(job.source)], args, report)
            colorize_videos(colorizer, [job for job in todo if is_video(job.source)], args, report)
    except KeyboardInterrupt as e:
        print(f"interrupted after {report.tally.done} of {describe(todo)}: every written file is complete; "
              f"rerun the same command to continue", file=sys.stderr)
        return getattr(e, "exit_code", 130)
    finally:
        report.close()
    t = report.tally
    print(f"done: {t.done} colorized, {t.failed} failed, {t.kept} already there -> {args.out}")
    return 1 if t.failed else 0
