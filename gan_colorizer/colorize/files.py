"""Which files colorize.py reads and where each result goes: inputs expanded, outputs named, clashes refused,
results written atomically (a finished file or none, never half of one)."""
from __future__ import annotations

import fnmatch
import glob
import os
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from gan_colorizer.atomic import replacing
from gan_colorizer.colorize import video
from gan_colorizer.errors import UserError
from gan_colorizer.data.images import is_image_file, list_images, walk

PIL_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WEBP", ".bmp": "BMP", ".tif": "TIFF",
               ".tiff": "TIFF", ".ppm": "PPM"}
SAME_AS = {".pgm": ".ppm"}  # --format same: a gray-only format gets its colour sibling
ALPHA_FORMATS = {"PNG", "WEBP", "TIFF"}
EXIF_FORMATS = {"JPEG", "PNG", "WEBP"}


@dataclass
class Job:
    source: Path
    output: Path

    @property
    def keeps_alpha(self) -> bool:
        return output_format(self.output) in ALPHA_FORMATS


def output_format(path: Path) -> str:
    return PIL_FORMATS[path.suffix.lower()]


def is_input_file(path: Path) -> bool:
    """A photo or a video colorize.py reads."""
    return is_image_file(path) or video.is_video(path)


def _glob_base(pattern: str) -> Path:
    """The leading folders of a glob pattern that hold no wildcard: matches keep their path below it."""
    parts = Path(pattern).parts
    fixed = parts[:next((i for i, p in enumerate(parts) if glob.has_magic(p)), len(parts))]
    return Path(*fixed) if fixed else Path(".")


def _parts_match(names: tuple, patterns: tuple) -> bool:
    """glob's rule for one path, name by name: '**' is any number of folders (none included)."""
    if not patterns:
        return not names
    if patterns[0] == "**":
        return any(_parts_match(names[i:], patterns[1:]) for i in range(len(names) + 1))
    return bool(names) and fnmatch.fnmatchcase(names[0], patterns[0]) and _parts_match(names[1:], patterns[1:])


def _glob(pattern: str) -> list[str]:
    """glob.glob(pattern, recursive=True), except that '**' visits each real folder once: a link loop
    (s1 -> .) ends instead of expanding forever, as glob's '**' would."""
    if "**" not in Path(pattern).parts:
        return glob.glob(pattern, recursive=True)
    base = _glob_base(pattern)
    patterns, dirs_only = Path(pattern).parts[len(base.parts):], pattern.endswith(("/", os.sep))
    found = [str(base)] if _parts_match((), patterns) else []
    for folder, _, entries in walk(base):
        found += [str(folder / e.name) for e in entries if (not dirs_only or e.is_dir())
                  and _parts_match((folder / e.name).relative_to(base).parts, patterns)]
    return found


def _inside(path: Path, folder: Path) -> bool:
    return folder == path or folder in path.parents


def _without_outputs(found: list, root: Path, out_dir: Path) -> list:
    """Leave out files under out_dir when out_dir lies inside the input root, so earlier results are not inputs."""
    root, out_dir = root.resolve(), out_dir.resolve()
    if out_dir == root or not _inside(out_dir, root):
        return found
    return [(p, rel) for p, rel in found if not _inside(p.resolve(), out_dir)]


def expand_input(arg: str, out_dir: Path) -> list[tuple[Path, Path]]:
    """(source file, its path relative to the output folder, suffix still the source's) for one INPUT argument.

    A file keeps its name; a folder's images (recursive) keep their path below it; a glob's matches keep
    their path below the pattern's fixed leading folders. A --out inside an input folder is not searched.
    """
    path = Path(arg)
    if path.is_dir():
        found = _without_outputs([(p, p.relative_to(path)) for p in list_images(path, is_input_file)], path, out_dir)
        if not found:
            raise UserError(f"{arg}: no image or video files in this folder (extensions "
                            f"{', '.join(sorted(PIL_FORMATS))}..., {', '.join(video.VIDEO_SUFFIXES)})")
        return found
    if path.is_file():
        return [(path, Path(path.name))]
    if glob.has_magic(arg):
        base, found = _glob_base(arg), []
        for match in sorted(Path(m) for m in _glob(arg)):
            if match.is_dir():
                found += [(p, p.relative_to(base)) for p in list_images(match, is_input_file)]
            elif is_input_file(match):
                found.append((match, match.relative_to(base)))
        found = _without_outputs(found, base, out_dir)
        if not found:
            raise UserError(f"{arg}: the pattern matches no image or video file")
        return found
    raise UserError(f"{arg}: no such file or folder")


def output_suffix(source: Path, fmt: str, codec: str = "libx264") -> str:
    """--format's suffix for a photo; a video keeps its container where it holds the codec (video.output_suffix)."""
    if video.is_video(source):
        return video.output_suffix(source, codec)
    if fmt != "same":
        return "." + fmt
    suffix = source.suffix
    if suffix.lower() in SAME_AS:
        return SAME_AS[suffix.lower()]
    return suffix if suffix.lower() in PIL_FORMATS else ".png"  # a name with no known suffix: lossless PNG


def _key(path: Path) -> str:
    return str(path.resolve()).casefold()  # outputs may land on a case-insensitive file system


def plan_jobs(inputs: list[str], out_dir: Path, fmt: str, codec: str = "libx264") -> list[Job]:
    """Every (source, output) pair, each source once.

    Photos that differ only by suffix (scan.jpg, scan.tif) keep it in their output names (scan.jpg.png,
    scan.tif.png). Any other two sources with one output, or an output that is an input, are refused
    before anything is written.
    """
    expanded = {}
    for arg in inputs:
        for source, rel in expand_input(arg, out_dir):
            expanded.setdefault(source.resolve(), (source, rel))
    named = {key: rel.with_name(rel.stem + output_suffix(source, fmt, codec))
             for key, (source, rel) in expanded.items()}
    by_output = {}
    for key, rel in named.items():
        by_output.setdefault(_key(out_dir / rel), []).append(key)
    for keys in by_output.values():
        if len(keys) > 1 and len({expanded[k][1].with_suffix("") for k in keys}) == 1:
            for k in keys:
                source, rel = expanded[k]
                named[k] = rel.with_name(rel.name + output_suffix(source, fmt, codec))
    pairs = [(expanded[k][0], _inside_out(expanded[k][0], out_dir / named[k], out_dir)) for k in expanded]
    return _checked_jobs(pairs, set(expanded), fmt)


def _inside_out(source: Path, output: Path, out_dir: Path) -> Path:
    """The path a write to output lands on, as --out joined with what lies below it, once its folder's links
    and '..' are resolved; a path landing outside --out (a '..' after a wildcard, a link) is refused."""
    root, landing = out_dir.resolve(), output.parent.resolve() / output.name  # a link as the file itself is replaced
    if root not in landing.parents:
        raise UserError(f"{source}: its output {output} would land at {landing}, outside --out {out_dir} (a '..' or "
                        f"a link in the path); nothing written")
    return out_dir / landing.relative_to(root)


def _checked_jobs(pairs: list, sources: set, fmt: str) -> list[Job]:
    seen = {}
    for source, output in pairs:
        if output.resolve() in sources:
            raise UserError(f"{output}: refusing to overwrite an input photo with its colorized result; "
                            f"choose another --out folder")
        clash = seen.setdefault(_key(output), source)
        if clash is not source:
            hint = " or use --format same" if fmt != "same" and not video.is_video(source) else ""
            raise UserError(f"{clash} and {source} would both be written to {output}; "
                            f"colorize them into separate --out folders{hint}")
    return [Job(source, output) for source, output in pairs]


def save_atomic(img: Image.Image, path: Path, quality: int = 95) -> None:
    """Write img to path through a hidden temporary file in the same folder, then rename it into place.

    An interrupt or a failure leaves either the finished file or no file; the temporary is removed.
    """
    fmt = output_format(path)
    if img.mode == "RGBA" and fmt not in ALPHA_FORMATS:
        img = _on_white(img)
    options = {"quality": quality} if fmt in ("JPEG", "WEBP") else {}
    if img.info.get("exif") and fmt in EXIF_FORMATS:
        options["exif"] = img.info["exif"]
    with replacing(path, fsync=True) as tmp, open(tmp, "wb") as f:  # fsync: a crash must not leave an empty file
        img.save(f, format=fmt, **options)  # that a rerun keeps as done (a first write removes killed writes' .part)


def _on_white(img: Image.Image) -> Image.Image:
    base = Image.new("RGBA", img.size, (255, 255, 255, 255))
    out = Image.alpha_composite(base, img).convert("RGB")
    out.info.update(img.info)
    return out
