"""What an evaluation reads: the image files under a protocol (streamed as uint8 ground truth), and row labels."""
from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from gan_colorizer.colorize.video import VIDEO_SUFFIXES
from gan_colorizer.data.dataset import crop_box, sample_photos
from gan_colorizer.errors import UserError
from gan_colorizer.data.images import IMAGE_EXTENSIONS, UnreadableImage, is_gray, list_images, load_rgb
from gan_colorizer.metrics import GRAY
from gan_colorizer.data.shards import ShardMember, expand, is_shards, list_members

log = logging.getLogger("gan_colorizer")


def resolve_data(data: str, allow_empty: bool = False) -> tuple[list[Path], list[str]]:
    """(paths, names) of the evaluation images; names are relative to the folder. 'embedded:val' (or ':train')
    names the sample photos that ship inside scikit-image and scikit-learn. allow_empty: the folder has clips."""
    if data.startswith("embedded:"):
        which = data.split(":", 1)[1]
        if which not in ("train", "val"):
            raise UserError(f"--data {data}: use embedded:val or embedded:train")
        paths = sample_photos()[which == "val"]
        return paths, [p.name for p in paths]
    if is_shards(data):
        return shard_members(data)
    root = Path(data)
    if not root.is_dir():
        raise UserError(f"--data {root}: {'a file, not a folder' if root.exists() else 'no such folder'}")
    paths = list_images(root)
    if not paths and not allow_empty:
        raise UserError(f"--data {root}: no image or video file (looked for {' '.join(IMAGE_EXTENSIONS)} "
                        f"{' '.join(VIDEO_SUFFIXES)}, recursively)")
    return paths, [str(p.relative_to(root)) for p in paths]


def shard_members(data: str) -> tuple[list[ShardMember], list[str]]:
    """(members, names) of the images in shards ('val-{000000..000004}.tar', a .tar, or a folder: its val-*.tar);
    names are the sample keys with the image's extension. A shard that cannot be listed is one line and skipped
    (from where its listing stopped); a sample with no image is one line."""
    members = []
    for shard in expand(data, "--data", "val"):
        found, error = list_members(shard)
        if error:
            log.warning("warning: skipped %s shard %s: %s", "the rest of" if found else "the", shard, error)
        members += found
    if not members:
        raise UserError(f"--data {data}: no readable image sample in its shards")
    return members, [f"{m.key}.{m.ext}" for m in members]


TRAINED_NAMES = ("best", "last")  # what training writes into checkpoints/RUN (train/saver.py): the run names them
ROOT_CATEGORY = "."  # images directly in --data, when others sit in subfolders


def categories(names: list[str]) -> list[str] | None:
    """Each image's category, its first folder below --data (ImageNet synsets, ADE20K scene types...);
    None when every image sits directly in --data."""
    firsts = [Path(n).parts[0] if len(Path(n).parts) > 1 else ROOT_CATEGORY for n in names]
    return firsts if any(f != ROOT_CATEGORY for f in firsts) else None


class EvalDataset(Dataset):
    """Ground truth under the protocol as uint8 (3, H, W), or the reason the file cannot be read."""

    def __init__(self, paths, protocol: str, size: int, max_pixels: int | None = None):
        self.paths, self.protocol, self.size, self.max_pixels = list(paths), protocol, size, max_pixels

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict:
        """One file's item; a file that fails (unreadable, over --max-pixels, out of memory) is a reason, never
        an exception that would end the evaluation."""
        try:
            return self._item(index)
        except UnreadableImage as e:
            return {"index": index, "reason": e.reason}
        except MemoryError:
            return {"index": index, "reason": "not enough memory to decode it"}
        except (OSError, ValueError) as e:
            return {"index": index, "reason": f"cannot prepare it ({e})"}

    def _item(self, index: int) -> dict:
        source = self.paths[index]
        source = source.open() if isinstance(source, ShardMember) else source  # a shard's sample: its bytes alone
        img = load_rgb(source, max_pixels=self.max_pixels)  # full decode: no JPEG draft scaling
        w, h, s = img.width, img.height, self.size
        gray = is_gray(img)
        if self.protocol == "center-crop":
            img = img.resize((s, s), Image.BICUBIC, box=crop_box(w, h, None, 1.0))
        elif self.protocol == "resize":
            img = img.resize((s, s), Image.BICUBIC)
        pixels = torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1).contiguous()
        return {"index": index, "pixels": pixels, "gray": gray, "size": (w, h)}


def collate(items: list[dict]) -> dict:
    ok = [it for it in items if "pixels" in it]
    return {"failed": [(it["index"], it["reason"]) for it in items if "reason" in it],
            "index": [it["index"] for it in ok], "gray": [it["gray"] for it in ok],
            "size": [it["size"] for it in ok], "pixels": torch.stack([it["pixels"] for it in ok]) if ok else None}


def single_images(batch: dict) -> list[dict]:
    """A collated batch as one batch per image (to retry each alone when the batch fails)."""
    return [{"failed": [], "index": [i], "gray": [g], "size": [s], "pixels": batch["pixels"][k:k + 1]}
            for k, (i, g, s) in enumerate(zip(batch["index"], batch["gray"], batch["size"]))]


def make_labels(checkpoints: list[str], given: list[str] | None, run_names: list | None = None) -> list[str]:
    """--label values, else the name a person knows each model by: for the best.pt / last.pt that training writes,
    its run's (`run_names`: the name in each checkpoint's config, else the folder), else the file stem. Labels that
    clash take parent folders until they differ ('mine/best', 'mine/last')."""
    if given:
        if len(given) != len(checkpoints):
            raise UserError(f"--label given {len(given)} times for {len(checkpoints)} --checkpoint")
        clash = [l for l, n in Counter(given + [GRAY]).items() if n > 1]
        if clash:
            raise UserError(f"--label {clash[0]}: used twice ('{GRAY}' is the gray baseline's)")
        return list(given)
    files = [Path(p).resolve().with_suffix("") for p in checkpoints]
    runs = run_names or [None] * len(files)
    labels = [run or f.parent.name or f.name if f.name in TRAINED_NAMES else f.name for f, run in zip(files, runs)]
    counts = Counter(labels + [GRAY])
    clashing = [i for i, label in enumerate(labels) if counts[label] > 1]
    for i, label in zip(clashing, _with_folders([files[i] for i in clashing])):
        labels[i] = label
    counts, seen, out = Counter(labels + [GRAY]), Counter(), []
    for label in labels:  # the same file given twice
        seen[label] += 1
        out.append(label if counts[label] == 1 else f"{label}#{seen[label]}")
    return out


def _with_folders(files: list[Path]) -> list[str]:
    """Stems with as many parent folders as make them differ; best / last keep their run's folder at least."""
    depth = [min(2 if f.name in TRAINED_NAMES else 1, len(f.parts) - 1) for f in files]
    while True:
        labels = ["/".join(f.parts[-d:]) for f, d in zip(files, depth)]
        owners: dict[str, set] = {}
        for label, f in zip(labels, files):
            owners.setdefault(label, set()).add(f)
        grow = [i for i, l in enumerate(labels)
                if (len(owners[l]) > 1 or l == GRAY) and depth[i] < len(files[i].parts) - 1]
        if not grow:
            break
        for i in grow:
            depth[i] += 1
    return labels
