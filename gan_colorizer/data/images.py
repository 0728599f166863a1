"""Decode any image file into an 8-bit sRGB PIL image, or say in one line why it cannot be read."""
from __future__ import annotations

import io
import operator
import os
import warnings
from collections import deque
from pathlib import Path

import numpy as np
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".ppm", ".pgm")
WHITE = (255, 255, 255)
_SRGB = ImageCms.createProfile("sRGB")
MAX_PIXELS = 400_000_000  # large scans are legitimate; a 24 GB machine colorizes one (docs/reliability.md)
Image.MAX_IMAGE_PIXELS = None  # open_image checks the header against max_pixels itself, in one line, before decoding


class UnreadableImage(Exception):
    """A file that is not a usable image; str() is 'PATH: reason'."""

    def __init__(self, path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = str(path), reason


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def walk(root):
    """Yield (folder, linked, its entries sorted by name) for root and each folder below it, hidden ones left out.

    Links are followed, but each real folder is visited once (a link loop ends), and the tree reached without links
    comes first, so a folder also reached through a link keeps its own path. linked: reached through a link.
    """
    seen, queues = set(), (deque([Path(root)]), deque())
    while queues[0] or queues[1]:
        linked = not queues[0]
        folder = queues[linked].popleft()
        try:
            st = folder.stat()
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            with os.scandir(folder) as it:
                entries = sorted([e for e in it if e.name[0] != "."], key=_NAME)
        except OSError:  # unreadable or vanished: left out, as os.walk leaves it out
            continue
        yield folder, linked, entries
        for e in entries:
            if _is_dir(e):
                queues[linked or e.is_symlink()].append(folder / e.name)


_NAME = operator.attrgetter("name")


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def list_images(root, keep=None) -> list[Path]:
    """Every image file under root (or every file whose path `keep` accepts: video files...), recursively, sorted;
    hidden files and folders are left out.

    A file reached by several paths (links, hard links) is listed once, by a path without links where it has one.
    """
    return [Path(p) for p in list_files(root, keep)[0]]


def list_files(root, keep=None) -> tuple[list[str], list[tuple[int, int, int] | None]]:
    """list_images' files as the strings str(Path) spells them (a Path per file was half the listing's time at 1M
    files), with each file's (size, mtime_ns, ctime_ns) from the one stat the listing makes anyway (None: a dangling
    link): the folder scan's cache key, so a cached scan stats nothing again."""
    chosen, wanted = {}, (lambda name: keep(Path(name))) if keep else _image_name
    for folder, linked, entries in walk(root):
        base = "" if str(folder) == "." else os.path.join(str(folder), "")  # as str(folder / name) spells it
        for e in entries:
            if wanted(e.name) and not _is_dir(e):
                rank = linked or e.is_symlink()
                try:
                    st = e.stat()
                    key, stamp = (st.st_dev, st.st_ino), (st.st_size, st.st_mtime_ns, st.st_ctime_ns)
                except OSError:  # a dangling link is its own file, reported when it is read
                    key, stamp = e.path, None
                if key not in chosen or rank < chosen[key][0]:
                    chosen[key] = (rank, base + e.name, stamp)
    # sorted as Paths sort (by their parts: the separator below every other character makes a plain string order
    # the parts' order), so the order and the seeded splits stay those of before; mostly sorted already, so fast
    found = sorted(((p, stamp) for _, p, stamp in chosen.values()), key=lambda ps: ps[0].replace(os.sep, "\0"))
    return [p for p, _ in found], [stamp for _, stamp in found]


def _image_name(name: str) -> bool:
    return name[name.rfind("."):].lower() in IMAGE_EXTENSIONS  # no dot: the last character, never an extension


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


def _check_pixels(path, img: Image.Image, max_pixels: int | None) -> None:
    """Refuse, from the header's width and height, an image over the pixel limit before anything is decoded."""
    limit = max_pixels or MAX_PIXELS
    if img.width * img.height > limit:
        flag = " (--max-pixels)" if max_pixels else ""
        raise UnreadableImage(path, f"too large: {img.width}x{img.height} is {amount(img.width * img.height)}, "
                                    f"over the limit of {amount(limit)}{flag}")


def amount(pixels: int) -> str:
    """A pixel count as a message gives it: '576 MP', '307,200 pixels'."""
    return f"{pixels / 1e6:.0f} MP" if pixels >= 1e7 else f"{pixels:,} pixels"


def header_pixels(path) -> int:
    """Width x height as the file's header declares them (nothing decoded); 0 when the header cannot be read."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as img:
                return img.width * img.height
    except Exception:  # noqa: BLE001 - the decode that follows reports the reason
        return 0


def open_image(path, min_side: int | None = None, max_pixels: int | None = None) -> Image.Image:
    """Open and fully decode a file, EXIF orientation applied, in its own mode.

    min_side lets JPEGs decode at a reduced scale whose short side stays >= min_side. Raises UnreadableImage with a
    short reason for empty, truncated or non-image files, and for those over max_pixels (default MAX_PIXELS).
    `path` may also be an in-memory file (io.BytesIO, e.g. a shard's sample) whose `name` the reasons give.
    """
    source, in_memory = path, isinstance(path, io.BytesIO)
    path = Path(getattr(source, "name", "<memory>")) if in_memory else Path(source)
    try:
        if (len(source.getbuffer()) if in_memory else path.stat().st_size) == 0:
            raise UnreadableImage(path, "empty file")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. Pillow's "Possibly corrupt EXIF data" chatter
            with Image.open(source if in_memory else path) as img:
                _check_pixels(path, img, max_pixels)
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
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        reason = str(e) or type(e).__name__
        if "truncated" in reason or isinstance(e, EOFError):
            reason = f"truncated ({reason})"
        raise UnreadableImage(path, reason) from None
    if img.width < 1 or img.height < 1:
        raise UnreadableImage(path, f"image has no pixels ({img.width}x{img.height})")
    return img


def load_rgb(path, min_side: int | None = None, max_pixels: int | None = None) -> Image.Image:
    """open_image, then to 8-bit sRGB."""
    img = open_image(path, min_side, max_pixels)
    try:
        return to_rgb8(img)
    except (OSError, ValueError) as e:
        raise UnreadableImage(path.name if isinstance(path, io.BytesIO) else path, f"cannot convert mode {img.mode} to RGB ({e})") from None


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
