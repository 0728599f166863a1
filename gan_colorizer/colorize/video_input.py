"""Video files in: each read by the demuxer its suffix names, its frames refused over a pixel limit before they are
decoded, probed (size, rate, rotation, audio), and decoded as a stream with a check that none is missing."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np

from gan_colorizer.errors import reason
from gan_colorizer.data.images import UnreadableImage, amount

# suffix -> the FFmpeg demuxer that reads it. Named, never guessed from the content: FFmpeg's guess would take an
# ffconcat script or a playlist named .mp4 (reading the files it lists) or a PNG named .mp4 as the video
DEMUXERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm", ".avi": "avi"}
CONTAINERS = {"mp4": "MP4 / QuickTime", "mov": "MP4 / QuickTime", "matroska": "Matroska", "webm": "Matroska / WebM",
              "avi": "AVI"}  # as the messages name them
VIDEO_SUFFIXES = tuple(DEMUXERS)
MAX_FRAME_PIXELS = 8192 * 4320  # DCI 8K, the largest frames cameras record (35 MP); --max-pixels raises it
MISSING_FRAMES = 2  # more frames than this missing against the header's count or duration: truncated


@dataclass
class VideoInfo:
    width: int
    height: int
    fps: Fraction  # the average frame rate (a variable-rate source keeps its own timestamps regardless)
    frames: int | None  # None when the container does not say (Matroska, WebM)
    rotation: int  # degrees counter-clockwise a player turns the frames (display matrix), 0 for none
    audio_streams: int
    matrix: tuple[int, ...] | None = None  # the display matrix as stored (rotation and flips), carried to the output


def is_video(path) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def _too_large(width: int, height: int, limit: int) -> str | None:
    if width * height <= limit:
        return None
    return (f"too large: frames of {width}x{height} are {amount(width * height)}, over the limit of {amount(limit)} "
            f"per frame (--max-pixels)")


def _declared_size(path, demuxer: str) -> tuple[int, int]:
    """The frame size the container declares, read with every decoder barred (opening a file otherwise decodes a
    frame of some codecs to learn their pixel format): (0, 0) when it says none."""
    import av
    try:
        with av.open(str(Path(path).absolute()), format=demuxer, options={"codec_whitelist": "none"}) as container:
            context = container.streams.video[0].codec_context
            return context.width, context.height
    except (av.FFmpegError, OSError, ValueError, IndexError):
        return 0, 0


@contextlib.contextmanager
def opened(path, max_pixels: int | None = None) -> Iterator:
    """The input container, read by the demuxer its suffix names. A file FFmpeg cannot open as what its name says, with
    no video stream, or whose frames are declared over max_pixels (None: MAX_FRAME_PIXELS), is UnreadableImage. Its
    decoder refuses frames far over the limit before allocating them, frame by frame (the size may change
    mid-stream); _decoded checks each frame exactly."""
    import av
    demuxer = DEMUXERS.get(Path(path).suffix.lower())
    if demuxer is None:
        raise UnreadableImage(path, f"not a video name ({', '.join(VIDEO_SUFFIXES)})")
    limit = max_pixels or MAX_FRAME_PIXELS
    # FFmpeg's check counts rows padded to its alignment: twice the limit leaves room for that (also bounds the frame
    # that opening a file decodes for some codecs)
    decoder = {"max_pixels": str(2 * limit)}
    try:  # an absolute path: FFmpeg would read 'concat:a|b' or 'subfile:...' at the start of a name as a protocol
        container = av.open(str(Path(path).absolute()), format=demuxer, options=decoder)
    except (av.FFmpegError, OSError, ValueError) as e:
        raise UnreadableImage(path, f"cannot open the video as {CONTAINERS[demuxer]}, what its name says "
                                    f"({reason(e)})") from None
    with container:
        if not container.streams.video:
            raise UnreadableImage(path, "no video stream in the file")
        stream = container.streams.video[0]
        size = stream.codec_context.width, stream.codec_context.height
        if not size[0]:  # some decoders drop a declared size over the limit when opened (or none was declared)
            size = _declared_size(path, demuxer)
        refused = _too_large(*size, limit)
        if refused:
            raise UnreadableImage(path, refused)
        stream.codec_context.options = decoder
        stream.thread_type = "AUTO"  # frame threads: decoding keeps up with the network
        yield container


def probe(path, max_pixels: int | None = None) -> VideoInfo:
    """Size, frame rate, frame count, rotation and audio streams of a video (its first frame is decoded); frames
    over max_pixels (None: MAX_FRAME_PIXELS) are refused."""
    import struct
    with opened(path, max_pixels) as container:
        stream = container.streams.video[0]
        first = next(decoded(path, container, max_pixels=max_pixels), None)  # (only the first: no count checked)
        if first is None:
            raise UnreadableImage(path, "no frame decodes")
        sides = first.side_data  # iterating it gives the side data in PyAV 18.1.0, their types (its keys) in 18.1.1
        sides = [side if hasattr(side, "type") else sides[side] for side in sides]
        matrix = next((struct.unpack("9i", bytes(s)[:36]) for s in sides if str(s.type).endswith("DISPLAYMATRIX")),
                      None)
        fps = stream.average_rate or stream.guessed_rate or Fraction(25)
        return VideoInfo(first.width, first.height, Fraction(fps), stream.frames or None, int(first.rotation or 0),
                         len(container.streams.audio), matrix)


def _expected_seconds(container, stream) -> float | None:
    """How long the header says the video stream lasts (Matroska / WebM give no frame count, only this)."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    text = stream.metadata.get("DURATION")  # hh:mm:ss.fraction, as Matroska muxers write it
    if text:
        h, m, s = text.split(":")
        return int(h) * 3600 + int(m) * 60 + float(s)
    return None


def decoded(path, container, passthrough=None, max_pixels: int | None = None) -> Iterator:
    """The video stream's frames in order, each checked against max_pixels (None: MAX_FRAME_PIXELS) before anything
    converts it; packets of the other demuxed streams go to passthrough(packet). A frame that fails to decode or is
    over the limit, or fewer frames (or seconds) than the header declares, raises UnreadableImage."""
    stream, count, last = container.streams.video[0], 0, None
    streams = [stream] + (list(container.streams.audio) if passthrough else [])
    limit = max_pixels or MAX_FRAME_PIXELS
    try:
        for packet in container.demux(streams):
            if packet.stream.type != "video":
                if packet.dts is not None:  # the demuxer's empty flush packets carry nothing
                    passthrough(packet)
                continue
            for frame in packet.decode():
                refused = _too_large(frame.width, frame.height, limit)
                if refused:
                    raise UnreadableImage(path, f"frame {count + 1}: {refused}")
                count, last = count + 1, frame
                yield frame
    except UnreadableImage:
        raise
    except Exception as e:  # noqa: BLE001 (FFmpeg's errors: av.FFmpegError and its OSError / ValueError kin)
        raise UnreadableImage(path, _decode_failure(e, count, limit)) from None
    _check_complete(path, container, stream, count, last)


def _decode_failure(error: Exception, count: int, limit: int) -> str:
    """Why decoding stopped. FFmpeg refuses a frame far over the limit before allocating it, saying only 'Invalid
    argument' (frame threads may hold back a frame or two decoded before it: hence no frame number)."""
    import av
    if isinstance(error, av.ArgumentError):
        return (f"decoding stopped after {count} frames: a frame far over the limit of {amount(limit)} per frame "
                f"(--max-pixels), or damaged data ({reason(error)})")
    return f"cannot decode frame {count + 1} ({reason(error)})"


def _check_complete(path, container, stream, count: int, last) -> None:
    rate = float(stream.average_rate or stream.guessed_rate or 25)
    if stream.frames and count + MISSING_FRAMES < stream.frames:
        raise UnreadableImage(path, f"truncated or damaged: {count} of the {stream.frames} frames its header "
                                    f"declares decode")
    expected = _expected_seconds(container, stream)
    if count and expected and last.time is not None:
        seen = last.time - float((stream.start_time or 0) * stream.time_base) + 1 / rate
        if seen + MISSING_FRAMES / rate < expected:
            raise UnreadableImage(path, f"truncated or damaged: frames decode up to {seen:.2f} s of the {expected:.2f}"
                                        f" s its header declares")
    if not count:
        raise UnreadableImage(path, "no frame decodes")


def read_frames(path, max_pixels: int | None = None) -> Iterator[np.ndarray]:
    """The frames of a video as uint8 RGB (H, W, 3), streamed, as stored (a rotation tag is not applied).
    A file that cannot be read, is truncated, or has frames over max_pixels (None: MAX_FRAME_PIXELS) raises
    UnreadableImage naming it."""
    with opened(path, max_pixels) as container:
        for frame in decoded(path, container, max_pixels=max_pixels):
            yield frame.to_ndarray(format="rgb24")
