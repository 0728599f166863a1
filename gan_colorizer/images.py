"""Decode any image file into an 8-bit sRGB PIL image, or say in one line why it cannot be read."""
from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".ppm", ".pgm")
WHITE = (255, 255, 255)
_SRGB = ImageCms.createProfile("sRGB")
Image.MAX_IMAGE_PIXELS = 400_000_000  # large scans are legitimate; the default bomb limit is 89 MP


class UnreadableImage(Exception):
    """A file that is not a usable image; str() is 'PATH: reason'."""

    def __init__(self, path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = str(path), reason


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def list_images(root) -> list[Path]:
    """Every image file under root, recursively, sorted; hidden files and folders are left out."""
    root = Path(root)
    found = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found += [Path(dirpath) / n for n in filenames if not n.startswith(".") and is_image_file(Path(n))]
    return sorted(found)


def _high_bit_to_8(img: Image.Image) -> Image.Image:
    """16-bit and 32-bit single-channel modes -> 8-bit gray, scaled by the range the mode implies."""
    arr = np.asarray(img)
    if img.mode == "F":
        top = 1.0 if float(np.nanmax(arr, initial=0.0)) <= 1.0 else 255.0
        arr = np.nan_to_num(arr) / top * 255.0
    elif img.mode.startswith("I;16") or arr.max(initial=0) > 255:
        arr = arr.astype(np.float64) / 257.0
    return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "L")


def _to_srgb(img: Image.Image) -> Image.Image:
    """Convert an embedded ICC profile (Display P3, Adobe RGB, CMYK...) to sRGB; keep pixels as they are otherwise."""
    icc = img.info.get("icc_profile")
    if not icc or img.mode not in ("RGB", "CMYK"):
        return img
    try:
        src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        return ImageCms.profileToProfile(img, src, _SRGB, outputMode="RGB")
    except (ImageCms.PyCMSError, OSError, ValueError):
        return img


def to_rgb8(img: Image.Image, background=WHITE) -> Image.Image:
    """Any PIL mode -> 8-bit RGB: alpha composited on white, palette expanded, CMYK and ICC profiles to sRGB."""
    if img.mode in ("F", "I") or img.mode.startswith("I;16"):
        img = _high_bit_to_8(img)
    if img.mode == "P":
        img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
    if img.mode in ("LA", "La", "PA", "RGBA", "RGBa"):
        rgba = img.convert("RGBA")
        base = Image.new("RGBA", rgba.size, background + (255,))
        return Image.alpha_composite(base, rgba).convert("RGB")
    img = _to_srgb(img)
    return img if img.mode == "RGB" else img.convert("RGB")


def open_image(path, min_side: int | None = None) -> Image.Image:
    """Open and fully decode a file, EXIF orientation applied, in its own mode.

    min_side lets JPEGs decode at a reduced scale whose short side stays >= min_side.
    Raises UnreadableImage with a short reason for empty, truncated or non-image files.
    """
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise UnreadableImage(path, "empty file")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. Pillow's "Possibly corrupt EXIF data" chatter
            with Image.open(path) as img:
                if min_side and img.format == "JPEG":
                    w, h = img.size
                    k = max(1.0, min(w, h) / min_side)
                    img.draft(img.mode, (int(w / k), int(h / k)))
                img.load()
                img = ImageOps.exif_transpose(img)
    except UnreadableImage:
        raise
    except UnidentifiedImageError:
        raise UnreadableImage(path, "not an image (format not recognized)") from None
    except FileNotFoundError:
        raise UnreadableImage(path, "file not found") from None
    except Image.DecompressionBombError as e:
        raise UnreadableImage(path, f"too large ({e})") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        reason = str(e) or type(e).__name__
        if "truncated" in reason or isinstance(e, EOFError):
            reason = f"truncated ({reason})"
        raise UnreadableImage(path, reason) from None
    if img.width < 1 or img.height < 1:
        raise UnreadableImage(path, f"image has no pixels ({img.width}x{img.height})")
    return img


def load_rgb(path, min_side: int | None = None) -> Image.Image:
    """open_image, then to 8-bit sRGB."""
    img = open_image(path, min_side)
    try:
        return to_rgb8(img)
    except (OSError, ValueError) as e:
        raise UnreadableImage(path, f"cannot convert mode {img.mode} to RGB ({e})") from None


def chroma_spread(img: Image.Image, side: int = 64) -> float:
    """99.5th percentile over pixels of max - min across R, G, B (0 for a gray image), on a thumbnail."""
    thumb = img.copy()
    thumb.thumbnail((side, side))
    arr = np.asarray(thumb, dtype=np.int16)
    if arr.ndim < 3:
        return 0.0
    spread = arr.max(axis=2) - arr.min(axis=2)
    return float(np.percentile(spread, 99.5))


def is_gray(img: Image.Image, tolerance: float = 3.0) -> bool:
    """True for photos with no chroma (gray modes, or RGB with R = G = B up to JPEG noise)."""
    if img.mode in ("1", "L", "LA", "La", "I", "F") or img.mode.startswith("I;16"):
        return True
    return chroma_spread(to_rgb8(img)) <= tolerance
