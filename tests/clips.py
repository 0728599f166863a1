"""Synthetic test clips (issue 17, point 4): camera pans and zooms over still photos (known motion), sensor noise,
scene cuts, as lists of uint8 RGB frames, and `write_clip` to make a real video file of them with PyAV."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")  # ship inside scikit-image: nothing to download


def photo(name_or_array) -> np.ndarray:
    """A photo as uint8 RGB: a scikit-image sample by name (astronaut, coffee, chelsea, rocket), or an array as is."""
    if isinstance(name_or_array, np.ndarray):
        return name_or_array
    import skimage.data
    return np.ascontiguousarray(getattr(skimage.data, name_or_array)()[..., :3])


def _affine(image: np.ndarray, matrix: np.ndarray, size) -> np.ndarray:
    """Output pixel (x, y) samples the photo at matrix @ (x, y, 1): bilinear, borders reflected (never black)."""
    import cv2
    h, w = size
    return cv2.warpAffine(image, matrix.astype(np.float64), (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REFLECT101)


def _fit(image: np.ndarray, size, margin: float) -> float:
    """Scale from output pixels to photo pixels so that the window plus `margin` output pixels fits the photo."""
    h, w = size
    return min(image.shape[0] / (h + margin), image.shape[1] / (w + margin))


def pan(photo_name="astronaut", frames: int = 48, size=(96, 128), step=(1.0, 2.0)) -> list[np.ndarray]:
    """A camera pan: a (h, w) window moving by step = (dy, dx) output pixels per frame over a still photo (sub-pixel
    steps allowed), so content moves by (-dy, -dx) per frame. The photo is scaled so the whole path stays inside it."""
    image = photo(photo_name)
    dy, dx = step
    travel = max(abs(dy), abs(dx)) * (frames - 1)
    scale = _fit(image, size, travel + 2)
    h, w = size
    y0 = (image.shape[0] / scale - h - dy * (frames - 1)) / 2  # centre the path on the photo
    x0 = (image.shape[1] / scale - w - dx * (frames - 1)) / 2
    out = []
    for i in range(frames):
        matrix = np.array([[scale, 0, (x0 + dx * i) * scale], [0, scale, (y0 + dy * i) * scale]])
        out.append(_affine(image, matrix, size))
    return out


def zoom(photo_name="coffee", frames: int = 48, size=(96, 128), rate: float = 1.01) -> list[np.ndarray]:
    """A zoom about the centre: frame i shows the photo magnified by rate**i (rate > 1 zooms in, < 1 out)."""
    image = photo(photo_name)
    h, w = size
    widest = min(1.0, rate ** (frames - 1))  # the magnification of the widest frame must fit the photo
    scale = _fit(image, size, 2) * widest
    cy, cx = image.shape[0] / 2, image.shape[1] / 2
    out = []
    for i in range(frames):
        s = scale / rate ** i
        matrix = np.array([[s, 0, cx - s * w / 2], [0, s, cy - s * h / 2]])
        out.append(_affine(image, matrix, size))
    return out


def noisy(frames: list[np.ndarray], sigma: float = 8.0, seed: int = 0) -> list[np.ndarray]:
    """Sensor noise: Gaussian noise of `sigma` (in 0-255 units), new on every frame, independent per channel."""
    rng = np.random.default_rng(seed)
    return [np.clip(f + rng.normal(0, sigma, f.shape), 0, 255).round().astype(np.uint8) for f in frames]


def cut(frames_a: list[np.ndarray], frames_b: list[np.ndarray]) -> list[np.ndarray]:
    """A scene cut: the frames of one shot, then the other's (same size)."""
    return list(frames_a) + list(frames_b)


def write_clip(path, frames: list[np.ndarray], fps=24, audio: bool = False, rotation: int = 0,
               codec: str = "libx264", pts: list[int] | None = None, crf: int = 18,
               time_base: Fraction | None = None) -> Path:
    """Write frames as a real video file (container from the suffix). audio: a 440 Hz AAC tone as long as the clip.
    rotation: display-matrix rotation in degrees (counter-clockwise, as PyAV's VideoFrame.rotation reads it back).
    pts: timestamps in units of 1/(fps * 100) for a variable frame rate clip; None = one frame every 1/fps.
    time_base: the stream's, e.g. 1/90000 as cameras write (frames then 1/fps apart in it)."""
    import av
    path = Path(path)
    rate = Fraction(fps).limit_denominator(1001000)
    h, w = frames[0].shape[:2]
    with av.open(str(path), "w") as container:
        video = container.add_stream(codec, rate=rate)
        video.width, video.height, video.pix_fmt = w, h, "yuv420p"
        if codec in ("libx264", "libx265"):
            video.options = {"crf": str(crf), "preset": "veryfast"}
            video.codec_context.options = {"x264-params" if codec == "libx264" else "x265-params": "log-level=error"}
        if pts is not None:
            video.codec_context.time_base = 1 / (rate * 100)
        elif time_base is not None:
            video.time_base = video.codec_context.time_base = time_base
            pts = [round(i / rate / time_base) for i in range(len(frames))]
        if rotation:
            video.set_display_rotation(rotation)
        tone = container.add_stream("aac", rate=44100) if audio else None
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            if pts is not None:
                frame.pts, frame.time_base = pts[i], video.codec_context.time_base
            container.mux(video.encode(frame))
        container.mux(video.encode())
        if tone is not None:
            _write_tone(container, tone, len(frames) / float(rate))
    return path


def _write_tone(container, stream, seconds: float, hz: float = 440.0) -> None:
    """A mono 440 Hz sine in AAC, fed in 1024-sample frames (the AAC frame size)."""
    import av
    rate = stream.codec_context.sample_rate
    t = np.arange(int(seconds * rate)) / rate
    samples = (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)
    for start in range(0, len(samples), 1024):
        chunk = samples[start:start + 1024][None]
        frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
        frame.sample_rate, frame.pts = rate, start
        container.mux(stream.encode(frame))
    container.mux(stream.encode())
