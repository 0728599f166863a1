"""Video in, video out: frames decoded with PyAV, colorized in batches at render size (then the temporal filter, the
mood controls and the frame's own full-resolution L, as for photos), encoded as colorize/encoding.py says (H.264
4:2:0 by default) with the source's timestamps, rotation and audio packets. Frames stream through: memory does not
grow with the length."""
from __future__ import annotations

import logging
from collections import deque
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from gan_colorizer.colorize.encoding import DEFAULT_CRF, MATROSKA_ONLY, MUXER_OPTIONS, video_stream
from gan_colorizer.colorize.video_input import (  # noqa: F401 (the reading side, imported from here by callers)
    MAX_FRAME_PIXELS, VIDEO_SUFFIXES, VideoInfo, decoded, is_video, opened, probe, read_frames)

log = logging.getLogger("gan_colorizer")
MAX_BATCH_PIXELS = 16_000_000  # full-size pixels per network batch at most, photos or frames (a bigger one goes alone)
MUXERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}  # output suffix -> FFmpeg muxer
OUTPUT_SUFFIX = {".avi": ".mkv", ".webm": ".mkv"}  # AVI / WebM hold H.264 badly or not at all; Matroska holds it and
#                                                    any audio they carry, so their audio is still copied, not re-encoded
# the temporal filter's strength for videos: a memory of about 10 frames; measured: docs/colorizing.md#temporal-consistency
DEFAULT_STRENGTH = 0.9


def output_suffix(source, codec: str = "libx264") -> str:
    """The container a colorized video is written in: the source's where it holds the codec well, else .mkv."""
    suffix = Path(source).suffix
    return ".mkv" if codec in MATROSKA_ONLY else OUTPUT_SUFFIX.get(suffix.lower(), suffix)


def temporal_filter(strength: float | None):
    """The temporal filter for one clip, or None for per-frame colorization (strength 0). None = the default."""
    from gan_colorizer.colorize.temporal import TemporalFilter
    strength = DEFAULT_STRENGTH if strength is None else strength
    return TemporalFilter(strength) if strength else None


def predict(colorizer, frames: list[np.ndarray]):
    """Frames of one size, uint8 RGB -> (full-size L per frame, render-size L (N, 1, h, w), render-size ab (N, 2, h,
    w)), model units, in the engine's arrays (torch on its device, or numpy): the photo path's prediction without the
    mood controls, so that the temporal filter can go between."""
    pipeline = colorizer.pipeline
    with pipeline.context():
        gray_l = [pipeline.full_res_l(frame) for frame in frames]
        small_l = pipeline.small_l(gray_l, colorizer.render_shape(*frames[0].shape[:2]))
        return gray_l, small_l, pipeline.predict(small_l)


def _apply_controls(small_ab, controls: dict):
    if isinstance(small_ab, np.ndarray):  # the ONNX engines: no torch here
        from gan_colorizer.colorize.inference_numpy import apply_controls
    else:
        from gan_colorizer.colorize.inference import apply_controls
    return apply_controls(small_ab, **controls)


def finish(colorizer, gray_l: list, small_ab, controls: dict) -> Iterator[np.ndarray]:
    """Mood controls on the render-size ab, then each frame's ab upsampled and recombined with its full-size L, as
    for photos: uint8 RGB (H, W, 3) frames."""
    pipeline = colorizer.pipeline
    with pipeline.context():
        small_ab = _apply_controls(small_ab, controls)
        for i, one_l in enumerate(gray_l):
            frame = np.empty((*one_l.shape[-2:], 3), np.uint8)
            for first, rows in pipeline.rgb8_rows(one_l, small_ab[i:i + 1]):
                frame[first:first + len(rows)] = rows
            yield frame


def _filtered(temporal, small_l, small_ab):
    """small_ab through the temporal filter frame by frame, in order (it works in Lab units on numpy arrays)."""
    from gan_colorizer.color_numpy import AB_SCALE, L_SCALE
    numpy = lambda x: x if isinstance(x, np.ndarray) else x.float().cpu().numpy()  # noqa: E731
    lightness, ab = (numpy(small_l)[:, 0] + 1) * L_SCALE, numpy(small_ab) * AB_SCALE
    out = np.stack([temporal(lightness[i], ab[i]) for i in range(len(ab))]).astype(np.float32) / AB_SCALE
    if isinstance(small_ab, np.ndarray):
        return out
    import torch
    return torch.from_numpy(out).to(small_ab.device)


def runs(items: Iterable, batch_size: int, max_pixels: int = MAX_BATCH_PIXELS,
         frame=lambda item: item) -> Iterator[list]:
    """Consecutive items in lists of at most batch_size and max_pixels full-size pixels (a larger frame goes alone), a
    new list where the frame size changes; frame(item) is the item's (H, W, C) frame."""
    batch, pixels = [], 0
    for item in items:
        shape = frame(item).shape
        if batch and (len(batch) >= batch_size or shape != frame(batch[0]).shape
                      or pixels + shape[0] * shape[1] > max_pixels):
            yield batch
            batch, pixels = [], 0
        batch.append(item)
        pixels += shape[0] * shape[1]
    if batch:
        yield batch


def colorized_frames(colorizer, frames: Iterable[np.ndarray], temporal: float | None = None,
                     controls: dict | None = None, batch_size: int = 4) -> Iterator[np.ndarray]:
    """uint8 RGB frames in -> colorized uint8 RGB frames out, in order, at most batch_size (and MAX_BATCH_PIXELS) in
    memory: prediction at render size -> temporal filter (strength `temporal`, None = its default, 0 = per-frame) ->
    mood controls -> recombination with each frame's own full-resolution L. A frame colorized with temporal=0 equals
    the photo path's."""
    smoother = temporal_filter(temporal)
    for batch in runs(frames, batch_size):
        gray_l, small_l, small_ab = predict(colorizer, batch)
        if smoother is not None:
            small_ab = _filtered(smoother, small_l, small_ab)
        yield from finish(colorizer, gray_l, small_ab, controls or {})


def _audio_streams(path, source, sink) -> dict:
    """{source audio stream index: output stream} for the audio copied packet for packet (no re-encoding); a codec the
    output container cannot hold is left out with a one-line warning naming the file."""
    copied = {}
    for stream in source.streams.audio:
        try:
            copied[stream.index] = sink.add_stream_from_template(stream)
        except ValueError as e:
            log.warning(f"{path}: audio stream {stream.index} left out ({e}); the video is colorized")
    others = [s for s in source.streams if s.type not in ("video", "audio")] + list(source.streams.video[1:])
    if others:
        log.warning(f"{path}: {len(others)} stream(s) other than the first video and the audio left out "
                    f"({', '.join(sorted({s.type for s in others}))})")
    return copied


def _copy_metadata(source, sink) -> None:
    """Container tags (title, creation time...) other than those the muxer writes itself."""
    for key, value in source.metadata.items():
        if key not in ("encoder", "major_brand", "minor_version", "compatible_brands"):
            sink.metadata[key] = value


class _Clock:
    """Output timestamps in the source stream's time base: the source's own while they increase (variable rates
    kept). AVI has no presentation times (H.264 with B-frames decodes with reordered packet times), and a missing or
    non-increasing time would stop the encoder: those frames are timed by their count at the stream's rate."""

    def __init__(self, container, stream, fps: Fraction):
        self.step = 1 / (Fraction(fps) * stream.time_base)
        self.by_count = container.format.name == "avi"
        self.start, self.count, self.last = stream.start_time or 0, 0, None

    def __call__(self, pts: int | None) -> int:
        time = self.start + round(self.count * self.step)
        if not self.by_count and pts is not None and (self.last is None or pts > self.last):
            time = pts
        elif self.last is not None and time <= self.last:
            time = self.last + max(1, round(self.step))
        self.count, self.last = self.count + 1, time
        return time


def colorize_video(colorizer, src, dst, temporal: float | None = None, controls: dict | None = None,
                   batch_size: int = 4, crf: int = DEFAULT_CRF, codec: str = "libx264", progress=None,
                   info: VideoInfo | None = None, max_pixels: int | None = None, chroma: str | None = None) -> int:
    """Colorize the video file src into dst (container from dst's suffix): same size, frame timestamps (variable
    rates included), rotation and tags; audio packets copied as they are. Written to a temporary name beside dst
    and renamed when complete: a failure or an interrupt leaves no file under dst. progress(1) after each frame.
    Returns the frames written; an unreadable or truncated source, or frames over max_pixels (None: MAX_FRAME_PIXELS),
    raise UnreadableImage. info: probe(src), if known. codec / crf / chroma: the encoding (colorize/encoding.py)."""
    import av

    from gan_colorizer.atomic import replacing
    info, dst = info or probe(src, max_pixels), Path(dst)
    options = {**MUXER_OPTIONS, **({"movflags": "+faststart"} if MUXERS[dst.suffix.lower()] in ("mp4", "mov") else {})}
    with opened(src, max_pixels) as source, replacing(dst, fsync=True) as tmp, \
            av.open(str(tmp), "w", format=MUXERS[dst.suffix.lower()], options=options) as sink:
        source_stream = source.streams.video[0]
        stream = video_stream(sink, source_stream, info, codec, crf, chroma)
        audio = _audio_streams(src, source, sink)
        _copy_metadata(source, sink)
        times, clock = deque(), _Clock(source, source_stream, info.fps)

        def remux(packet):
            packet.stream = audio[packet.stream.index]
            sink.mux(packet)

        def frames():
            for frame in decoded(src, source, remux if audio else None, max_pixels):
                times.append(clock(frame.pts))
                yield frame.to_ndarray(format="rgb24")
        written = 0
        for rgb in colorized_frames(colorizer, frames(), temporal, controls, batch_size):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts, frame.time_base = times.popleft(), source_stream.time_base
            sink.mux(stream.encode(frame))
            written += 1
            if progress is not None:
                progress(1)
        sink.mux(stream.encode())
    return written
