"""How a colorized video is encoded: codec, quality (CRF), colour resolution (chroma), and the encoder options that
make the written bytes follow them and come out the same on every run."""
from __future__ import annotations

from fractions import Fraction

from gan_colorizer.errors import UserError

CODECS = ("libx264", "libx265", "mpeg4", "ffv1")
MATROSKA_ONLY = ("ffv1",)  # codecs written as .mkv whatever the source's container (MP4 / MOV do not hold FFV1)
CHROMA = ("420", "444")  # colour resolution of the written file: half each way (what players expect) or every pixel
DEFAULT_CRF = 18  # x264's "visually lossless" end: the colour is what matters, not the bitrate
MAX_CRF = 51  # x264 / x265's range is 0 (lossless) .. 51
PRESET = "medium"  # x264 / x265's speed-size trade-off
MPEG4_MAX_TIME_BASE = 65535  # MPEG-4 part 2 stores the time base's denominator in 16 bits
FFV1_SLICES = "4"  # fixed, not chosen from the thread count: the same bytes on every machine
MUXER_OPTIONS = {"fflags": "+bitexact"}  # no random Matroska segment id, no muxing date: the same frames, the same file
HELP = {  # colorize.py's flags for the encoding
    "codec": "video encoder: H.264, H.265, MPEG-4 part 2, or FFV1 (lossless, .mkv: for masters)",
    "crf": "x264 / x265 constant rate factor: 0 lossless, 18 visually lossless, 23 x264's default (mpeg4: quantizer "
           "crf / 6; ffv1: unused, always lossless)",
    "chroma": "colour resolution of the written video: 420 = half each way (what players expect), 444 = every "
              "pixel's own (masters); default 420, 444 for ffv1",
}


def check(codec: str, crf: int, chroma: str | None) -> None:
    """The encoding flags together: one line naming the flag, before anything is read or written."""
    if not 0 <= crf <= MAX_CRF:
        raise UserError(f"--crf {crf}: must be in 0..{MAX_CRF} (lower = better quality, larger file)")
    if codec == "mpeg4" and chroma == "444":
        raise UserError("--chroma 444: mpeg4 holds 4:2:0 only; use libx264, libx265 or ffv1")


def default_chroma(codec: str) -> str:
    """4:2:0 for the lossy codecs (players expect it), 4:4:4 for FFV1 (a master keeps every pixel's colour)."""
    return "444" if codec in MATROSKA_ONLY else "420"


def pixel_format(codec: str, chroma: str | None, width: int, height: int) -> str:
    """The stored pixel format. 4:2:0 needs even sides in x264 / x265 / FFV1 (odd ones get 4:4:4; mpeg4 refuses them
    at the encoder); FFV1's 4:4:4 is RGB (its only 8-bit RGB layout is bgr0), so that the file decodes to the
    colorized frames bit for bit."""
    chroma = chroma or default_chroma(codec)
    even = width % 2 == 0 and height % 2 == 0
    if chroma == "420" and (even or codec == "mpeg4"):
        return "yuv420p"
    return "bgr0" if codec == "ffv1" else "yuv444p"


def _has_avx512() -> bool:
    """True where the CPU runs AVX-512. x264's AVX-512 code makes the bitstream depend on the process's memory, not
    only on the frames: three runs of colorize_video on one clip wrote three bitstreams, with x264's macroblock-tree
    rate control on (with it off, or with x264 held to its AVX2 code, one bitstream). Held to AVX2 there."""
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as cpu
    except ImportError:  # numpy 1.x
        try:
            from numpy.core._multiarray_umath import __cpu_features__ as cpu
        except ImportError:
            return False
    return bool(cpu.get("AVX512F"))


def encoder_options(codec: str, crf: int) -> dict[str, str]:
    """The encoder's options, all in one dict: PyAV's stream.options and codec_context.options are one mapping, so
    assigning the second replaced the first (every file was x264's default CRF 23 whatever --crf said)."""
    if codec == "libx264":
        return {"crf": str(crf), "preset": PRESET, **({"x264-params": "asm=AVX2"} if _has_avx512() else {})}
    if codec == "libx265":
        return {"crf": str(crf), "preset": PRESET, "x265-params": "log-level=error"}
    if codec == "mpeg4":  # no CRF: a fixed quantizer, CRF 18 ~ q 3 (2 best .. 31); PyAV's qscale is a flag, not q
        q = str(max(2, min(31, round(crf / 6))))
        return {"qmin": q, "qmax": q}
    if codec == "ffv1":  # lossless: version 3 with a CRC per slice (damage is found, not decoded silently)
        return {"level": "3", "slicecrc": "1", "slices": FFV1_SLICES, "g": "1"}
    raise ValueError(f"unknown codec {codec!r} (one of {', '.join(CODECS)})")


def video_stream(sink, source_stream, info, codec: str, crf: int, chroma: str | None):
    """The output video stream: the source's size, time base (so every timestamp is kept as is), rate and matrix,
    encoded as codec / crf / chroma say."""
    stream = sink.add_stream(codec, rate=info.fps)
    stream.width, stream.height = info.width, info.height
    stream.pix_fmt = pixel_format(codec, chroma, info.width, info.height)
    stream.time_base = stream.codec_context.time_base = source_stream.time_base
    if codec == "mpeg4" and source_stream.time_base.denominator > MPEG4_MAX_TIME_BASE:  # e.g. cameras' 1/90000
        stream.codec_context.time_base = Fraction(1, 1000)  # the encoder's only; PyAV rebases frames and packets
    if source_stream.sample_aspect_ratio:
        stream.codec_context.sample_aspect_ratio = source_stream.sample_aspect_ratio
    stream.codec_context.options = encoder_options(codec, crf)
    if info.matrix:
        stream.set_display_matrix(info.matrix)
    return stream
