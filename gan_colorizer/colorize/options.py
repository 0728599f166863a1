"""colorize.py's flags: the options dataclass its parser is built from, and the --help text."""
from __future__ import annotations

import argparse
from dataclasses import dataclass

from gan_colorizer.colorize.encoding import CHROMA, CODECS, DEFAULT_CRF, HELP as ENCODING_HELP
from gan_colorizer.colorize.engines import ENGINES
from gan_colorizer.colorize.video import DEFAULT_STRENGTH, MAX_FRAME_PIXELS
from gan_colorizer.config import DECODES, WEIGHTS
from gan_colorizer.data.images import MAX_PIXELS
from gan_colorizer.options import REQUIRED, amp_opt, device_opt, opt, tool_parser, workers_opt

DESCRIPTION = """Colorize gray (or colour, taken to gray first) photos and videos at their full resolution.

The network predicts colour from an --image-size copy; the result keeps the photo's own full-resolution
lightness, its width and height, EXIF orientation and metadata, and alpha (PNG/WebP/TIFF outputs).

Outputs: a file INPUT goes to OUT/NAME.png, a folder's photos to OUT/<path below the folder>.png, a quoted
glob's matches to OUT/<path below the pattern's fixed folders>.png (--format picks the suffix). A video
(mp4, mov, mkv, avi, webm) keeps its name, size, timestamps, rotation and audio (avi and webm become .mkv).
Existing outputs are kept unless --overwrite (rerunning a command continues an interrupted job); two inputs
that would share an output are refused before anything is written.

examples:
  python colorize.py old_photo.jpg --checkpoint checkpoints/coco-gan/best.pt --out colorized
  python colorize.py ~/scans --checkpoint best.pt --out ~/scans-color --format same --batch-size 8
  python colorize.py 'archive/*/19[5-6]?/' --checkpoint best.pt --out color --temperature 8 --saturation 1.2

exit codes: 0 all done, 1 some files failed (one line each on stderr), 2 bad arguments, 130 / 143 Ctrl-C / SIGTERM"""
MOOD, FILES, VIDEO = "mood controls (applied in Lab after prediction)", "output files", "videos"  # --help sections


@dataclass
class ColorizeOptions:
    """What to colorize and how; the flags of colorize.py are these fields."""
    inputs: list[str] = opt(REQUIRED, "image or video files, folders (searched recursively) or quoted glob patterns "
                                      "('scans/**/*.tif')", positional=True, nargs="+", metavar="INPUT")
    checkpoint: str = opt(REQUIRED, "stage-1 or stage-2 checkpoint (best.pt or last.pt), a model exported to .onnx "
                                    "(python -m gan_colorizer.colorize.onnx), or a published model's name "
                                    "(ddcolor-tiny, zhang-eccv16...: docs/published-models.md)", metavar="CKPT")
    out: str = opt(REQUIRED, "output folder (created if needed)", metavar="DIR")
    hints: str | None = opt(None, "a hints JSON file: colours at points of the photo, in its own pixels, for a model "
                                  "trained with --hints (docs/hints.md; the app downloads one); every photo given "
                                  "takes the same hints; photos only", metavar="FILE")
    image_size: int = opt(256, "short side, in pixels, of the copy the network sees (its long side at most "
                               "8 times that); ab is upsampled from it", metavar="N", aliases=("--render-size",))
    max_pixels: int | None = opt(None, "refuse (one line, from the file's header, before decoding) photos and video "
                                       f"frames with more pixels than this (default: {MAX_PIXELS:,} for a photo, "
                                       f"{MAX_FRAME_PIXELS:,} (8K) for a video's frames)", metavar="N")
    batch_size: int = opt(4, "photos of the same render shape per network forward", metavar="N")
    device: str = device_opt()
    weights: str = opt("auto", "auto = the EMA copy when the run kept one (--ema-decay), else the trained weights",
                       choices=WEIGHTS)
    decode: str | None = opt(None, "classification checkpoints: how the predicted distribution becomes ab: annealed "
                                   "mean (as trained), mode (most vivid, blotchy) or mean (smooth, duller)",
                             choices=DECODES)
    annealed_t: float | None = opt(None, "classification checkpoints: temperature of the annealed mean (default: as "
                                         "trained)", metavar="T")
    engine: str | None = opt(None, "what runs the network: torch, onnx (onnxruntime fp32) or onnx-int8 (a model "
                                   "exported with --int8); default: torch for a .pt, the model's own for a .onnx",
                             choices=ENGINES)
    amp: str = amp_opt()
    download: bool = opt(True, "fetch a published model's weights the cache lacks (--no-download: the cache only)")
    temperature: float = opt(0.0, "shift b by this many ab units: > 0 warmer (yellow), < 0 cooler (blue); try +-5..15",
                             metavar="T", group=MOOD)
    saturation: float = opt(1.0, "scale ab: 1 as predicted, 0 gray, 1.3 more vivid", metavar="S", group=MOOD)
    hue: float = opt(0.0, "rotate ab by this many degrees", metavar="DEG", group=MOOD)
    format: str = opt("png", "png (lossless, keeps alpha), jpg, or same as each input", choices=("png", "jpg", "same"),
                      group=FILES)
    quality: int = opt(95, "JPEG / WebP quality, 1-100", metavar="Q", group=FILES)
    overwrite: bool = opt(False, "replace outputs that already exist", action="store_true", group=FILES)
    num_workers: int = workers_opt("threads that decode and encode files", "one per CPU core, at most 8 (PNG "
                                   "encoding is the slow part: enough to keep a GPU fed)", group=FILES,
                                   aliases=("--workers",))
    temporal: float = opt(DEFAULT_STRENGTH, "temporal filter strength (0-1): each frame's colour blended with the "
                          "previous one's along the motion; 0 = each frame on its own", metavar="S", group=VIDEO)
    codec: str = opt("libx264", ENCODING_HELP["codec"], choices=CODECS, group=VIDEO)
    crf: int = opt(DEFAULT_CRF, ENCODING_HELP["crf"], metavar="N", group=VIDEO)
    chroma: str | None = opt(None, ENCODING_HELP["chroma"], choices=CHROMA, group=VIDEO)


def build_parser() -> argparse.ArgumentParser:
    return tool_parser(ColorizeOptions, DESCRIPTION, prog="colorize.py")
