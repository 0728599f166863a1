"""The photos a person has open in the app: each keeps its own hints and its own result while another is shown, and
gives its own downloads (the full-resolution result and the hints file colorize.py --hints reads), or all of them in
one zip. Plain Python over Colorizer: the page (main.py) holds one Album per browser session."""
from __future__ import annotations

import io
import re
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

RENDERS_KEPT = 2  # per photo: the result as shown, and the one without mood controls that a proposed colour reads
THUMB = 160  # the photo strip's thumbnails (px, long side)


@dataclass(eq=False)
class Photo:
    """One opened photo: as opened (EXIF orientation applied), its hints in its own pixels, its latest results."""
    name: str  # unique in its album: the downloads are NAME-colorized.png and NAME-hints.json
    image: object  # PIL image
    hints: list = field(default_factory=list)
    renders: dict = field(default_factory=dict)  # (model, hints, controls) -> the result made with them
    thumbnail: object = None  # for the photo strip, made once when opened

    def result(self, colorizer, model: str, controls: tuple = (0.0, 1.0, 0.0)):
        """The colorized photo for this model, these hints and (temperature, saturation, hue); made once for each
        such set, so that switching photos or back to earlier settings shows the result without running the model."""
        key = (model, tuple(self.hints), tuple(float(c) for c in controls))
        if key not in self.renders:
            made = render(colorizer, self.image, self.hints, *key[2])
            older = list(self.renders.items())
            self.renders = dict(older[max(len(older) - RENDERS_KEPT + 1, 0):])  # the newest others, and this one
            self.renders[key] = made
        return self.renders[key]

    def place(self, hint, move: int = 0) -> None:
        """Add a hint, or put it in the place of hint number `move` (1-based; 0 or a number no hint has: add)."""
        given = list(self.hints)
        if 1 <= move <= len(given):
            given[move - 1] = hint
        else:
            given.append(hint)
        self.hints = given

    def remove(self, number: int | None = None) -> None:
        """Remove hint number `number` (1-based), or all of them (None)."""
        self.hints = [] if number is None else [h for j, h in enumerate(self.hints, 1) if j != number]


@dataclass(eq=False)
class Album:
    """The photos open in one browser session, one of them current, and the folder of their downloads."""
    photos: list = field(default_factory=list)
    current: int = 0
    folder: Path | None = None

    @property
    def photo(self) -> Photo | None:
        return self.photos[self.current] if self.photos else None

    def add(self, name: str, image) -> Photo:
        """Open one more photo under a name no other has (its file's stem, numbered when taken); it becomes current."""
        stem = re.sub(r"[^\w.-]+", "_", name).strip("._") or "photo"
        taken = {p.name for p in self.photos}
        unique = next(n for n in [stem] + [f"{stem}-{i}" for i in range(2, len(taken) + 3)] if n not in taken)
        from gan_colorizer.data.images import to_rgb8
        thumbnail = to_rgb8(image)  # any mode (16-bit gray, CMYK...) as 8-bit sRGB
        thumbnail = image.copy() if thumbnail is image else thumbnail  # an RGB photo comes back as it is
        thumbnail.thumbnail((THUMB, THUMB))
        self.photos.append(Photo(unique, image, thumbnail=thumbnail))
        self.current = len(self.photos) - 1
        return self.photos[-1]

    def select(self, index) -> None:
        if index is not None and 0 <= int(index) < len(self.photos):
            self.current = int(index)

    def close_current(self) -> None:
        """Close the current photo; the one before it (or the new first) becomes current."""
        if self.photos:
            del self.photos[self.current]
            self.current = max(self.current - 1, 0)

    def downloads_folder(self, root: Path) -> Path:
        """This session's own folder under `root` (made on first use): two sessions never overwrite each other."""
        if self.folder is None:
            self.folder = Path(tempfile.mkdtemp(prefix="session-", dir=root))
        return self.folder

    def thumbnails(self) -> list:
        """(thumbnail, name) for the photo strip, in the order opened."""
        return [(p.thumbnail, p.name) for p in self.photos]


def render(colorizer, image, hints: list, temperature: float, saturation: float, hue: float):
    """The colorized photo at full resolution, following the hints when the model reads them."""
    if image is None:
        return None
    given = hints if colorizer.takes_hints else None
    return colorizer.colorize(image, temperature=temperature, saturation=saturation, hue=hue, hints=given)


def downloads(photo: Photo, result, folder: Path) -> list[str]:
    """The photo's full-resolution result (PNG) and its hints file (colorize.py --hints reads it), for the download
    box, named after the photo."""
    from gan_colorizer.hints import to_json
    files = []
    if result is not None:
        result.save(folder / f"{photo.name}-colorized.png")
        files.append(str(folder / f"{photo.name}-colorized.png"))
    (folder / f"{photo.name}-hints.json").write_text(to_json(photo.hints))
    return files + [str(folder / f"{photo.name}-hints.json")]


def zip_all(album: Album, colorizer, model: str, controls: tuple, folder: Path) -> str:
    """Every open photo's result (made now where it is not yet) and hints file in one zip; returns its path."""
    from gan_colorizer.hints import to_json
    path = folder / "colorized-photos.zip"
    part = path.with_suffix(".part")
    with zipfile.ZipFile(part, "w", zipfile.ZIP_STORED) as archive:  # PNGs are compressed already
        for photo in album.photos:
            png = io.BytesIO()
            photo.result(colorizer, model, controls).save(png, format="PNG")
            archive.writestr(f"{photo.name}-colorized.png", png.getvalue())  # dated now, as the hints file
            archive.writestr(f"{photo.name}-hints.json", to_json(photo.hints))
    part.replace(path)
    return str(path)
