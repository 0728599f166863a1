"""colorize.py's videos: each one colorized into its output file with its progress in frames (a bar on a terminal,
a dated line every 30 s off one), and counted as photos are (one line per failure naming the file, the rest of the
inputs still done)."""
from __future__ import annotations

import math

from gan_colorizer.colorize.encoding import check as check_encoding
from gan_colorizer.colorize.video import colorize_video, probe
from gan_colorizer.console import Progress
from gan_colorizer.errors import UserError, reason
from gan_colorizer.data.images import UnreadableImage


def check_video_args(args) -> None:
    """The video flags' values: one line naming the flag, before anything is read or written."""
    if args.temporal is not None and not (math.isfinite(args.temporal) and 0 <= args.temporal <= 1):
        raise UserError(f"--temporal {args.temporal}: must be in 0..1 (0 = each frame on its own)")
    check_encoding(args.codec, args.crf, args.chroma)


def colorize_videos(colorizer, jobs: list, args, report) -> None:
    """Colorize each video job into its output; report: cli.Report (ok / fail per file). A KeyboardInterrupt passes
    through after the video being written is removed (colorize_video writes to a temporary name)."""
    try:
        import av

        from gan_colorizer.colorize import temporal  # noqa: F401 (OpenCV's optical flow)
    except ImportError as e:  # a colorizing-only install (requirements-colorize.txt) has neither
        for job in jobs:
            report.fail(job.source, f"videos need PyAV and OpenCV ({e}): pip install av opencv-python-headless")
        return
    controls = {"temperature": args.temperature, "saturation": args.saturation, "hue": args.hue}
    for job in jobs:
        try:
            info = probe(job.source, args.max_pixels)
            with Progress(info.frames, job.source.name, "frame") as progress:
                colorize_video(colorizer, job.source, job.output, args.temporal, controls, args.batch_size, args.crf,
                               args.codec, progress=progress.update, info=info, max_pixels=args.max_pixels,
                               chroma=args.chroma)
            report.ok()
        except UnreadableImage as e:
            report.fail(job.source, e.reason)
        except av.FFmpegError as e:  # the encoder or the muxer refused (an odd size for mpeg4, a full disk...)
            report.fail(job.output, f"cannot write the video ({e.strerror or e})")
        except OSError as e:
            report.fail(job.output, f"cannot write ({e.strerror or e})")
        except (RuntimeError, MemoryError) as e:
            report.fail(job.source, f"colorization failed ({reason(e, 'out of memory')})")


def describe(jobs: list) -> str:
    """'3 photos', '1 video', '2 photos and 1 video': what a job list holds, for colorize.py's first line."""
    from gan_colorizer.colorize.video import is_video
    videos = sum(is_video(job.source) for job in jobs)
    counts = [(len(jobs) - videos, "photo"), (videos, "video")]
    return " and ".join(f"{n} {name}{'s' * (n != 1)}" for n, name in counts if n) or "0 photos"
