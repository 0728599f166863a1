"""The test splits colorization papers report, as data: each a list of file names (committed under data/lists/ with
its source, or made by a stated rule), matched by name against a folder the user already has.

    python evaluate.py --benchmark imagenet-val5k --data ~/imagenet/val --checkpoint ... --out runs/eval-val5k
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from gan_colorizer.errors import UserError

LISTS = Path(__file__).resolve().parent / "lists"
PUBLISHED = LISTS / "published_figures.json"  # the papers' figures for the splits, each with the table it is from
THEIRS = "published (theirs)"  # how every paper's figure is marked wherever it is shown beside ours
OURS = "ours (measured here)"
COMPARED = ("psnr", "colorfulness", "delta_colorfulness", "fid")  # what the papers print that evaluate.py computes


@dataclass(frozen=True)
class Benchmark:
    name: str
    title: str
    count: int
    pattern: str  # every name matches it (re.fullmatch)
    source: str  # where the names come from
    protocol: str | None  # evaluate.py's --protocol matching what the papers do to each photo; None: not known here
    list_file: str | None = None  # under data/lists/; None: the names come from `rule`
    rule: str = ""  # how the names are made when there is no list file

    def summary(self, protocol: str | None = None, image_size: int | None = None, n_images: int | None = None) -> dict:
        """What summary.json says of the split: its name and source, and the papers' figures, marked as theirs, with
        one line saying how our run's protocol (when given) differs from theirs."""
        return {"name": self.name, "title": self.title, "count": self.count, "source": self.source,
                "papers_protocol": self.protocol,
                "published": {**published(self.name), "note": f"{THEIRS}: figures the papers print, not measured here",
                              "protocol_note": protocol_note(self, protocol, image_size, n_images)}}

    def names(self) -> list[str]:
        """The split's file names (with the folders a list keeps, e.g. ImageNet synsets), in the list's order."""
        if self.list_file is None:
            return RULES[self.name]()
        lines = (LISTS / self.list_file).read_text().splitlines()
        return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


RULES = {  # names defined by a rule in the papers' own words, so no list is needed
    "imagenet-val5k": lambda: [f"ILSVRC2012_val_{i:08d}.JPEG" for i in range(1, 5001)],
    "ade20k-val2k": lambda: [f"ADE_val_{i:08d}.jpg" for i in range(1, 2001)],
}

BENCHMARKS = {b.name: b for b in (
    Benchmark("imagenet-ctest10k", "ImageNet ctest10k (Larsson et al.)", 10_000,
              r"n\d{8}/ILSVRC2012_val_\d{8}\.JPEG",
              "github.com/AruniRC/colorizer-fcn lists/ctest10k.txt @33ab423 (\"gustav's val images list\")",
              None, list_file="imagenet_ctest10k.txt"),
    Benchmark("imagenet-val5k", "ImageNet val, first 5k (ColTran, CT2, DDColor)", 5_000,
              r"ILSVRC2012_val_\d{8}\.JPEG",
              "github.com/shuchenweng/CT2 README: \"the first 5k images of the public validation set, consistent "
              "with [ColTran]\"; DDColor's options/train/train_ddcolor.yml validates on imagenet_val_5k.txt",
              "center-crop", rule="ILSVRC2012_val_00000001.JPEG ... ILSVRC2012_val_00005000.JPEG"),
    Benchmark("coco-stuff-val5k", "COCO-Stuff val (COCO 2017 val, 5k)", 5_000, r"\d{12}\.jpg",
              "val2017.txt of github.com/BowieHsu/EfficientTeacher @6a619ba (the same names as "
              "github.com/lzh123422/yolov5-master @f37b83e)", "resize", list_file="coco_stuff_val5k.txt"),
    Benchmark("ade20k-val2k", "ADE20K val (SceneParsing, 2k)", 2_000, r"ADE_val_\d{8}\.jpg",
              "the SceneParsing release ADEChallengeData2016/images/validation (as listed in "
              "github.com/xyfJASON/datasetx docs/ADE20K-SceneParse150.md: 2,000 validation photos)",
              "resize", rule="ADE_val_00000001.jpg ... ADE_val_00002000.jpg"),
)}


def benchmark(name: str) -> Benchmark:
    if name not in BENCHMARKS:
        raise UserError(f"--benchmark {name}: unknown; use one of {', '.join(BENCHMARKS)}")
    return BENCHMARKS[name]


def match_files(bench: Benchmark, root) -> tuple[list[Path], list[str]]:
    """(paths, names relative to root) of the split's photos in the folder root, in the split's order. A name is
    found at its own relative path, or anywhere below root by its file name (ImageNet val flat or in synset
    folders); a folder missing some says how many and which first, in one line."""
    from gan_colorizer.data.images import list_images
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"--data {root}: {'a file, not a folder' if root.exists() else 'no such folder'}")
    by_name: dict[str, list[Path]] = {}
    for path in list_images(root):
        by_name.setdefault(path.name, []).append(path)
    paths, missing = [], []
    for name in bench.names():
        exact = root / name
        found = [exact] if exact.is_file() else by_name.get(Path(name).name, [])
        if len(found) > 1:
            raise UserError(f"--data {root}: {Path(name).name} of {bench.name} is there {len(found)} times "
                            f"({found[0].relative_to(root)}, {found[1].relative_to(root)}): point --data at one copy")
        if found:
            paths.append(found[0])
        else:
            missing.append(name)
    if missing:
        raise UserError(f"--data {root}: {len(missing)} of the {bench.count} files of {bench.name} are missing, "
                        f"first {missing[0]} (looked for them by name, recursively)")
    return paths, [str(p.relative_to(root)) for p in paths]


def check_names(bench: Benchmark) -> list[str]:
    """What is wrong with a benchmark's names (count, duplicates, pattern); empty when nothing is."""
    names = bench.names()
    wrong = [f"{len(names)} names, not {bench.count}"] if len(names) != bench.count else []
    if len(set(names)) != len(names):
        wrong.append(f"{len(names) - len(set(names))} duplicates")
    wrong += [f"{n!r} does not match {bench.pattern}" for n in names if not re.fullmatch(bench.pattern, n)][:3]
    return wrong


@lru_cache(maxsize=1)
def _published_file() -> dict:
    return json.loads(PUBLISHED.read_text())


def published(name: str) -> dict:
    """The papers' figures for split `name` as {method: {metric: value}} (our metric names), with their source
    (which table, where it was read, under which protocol); or, when none was read, what was searched."""
    data = _published_file()
    entry = data["benchmarks"].get(name, {})
    if "source" not in entry:
        return {"figures": {}, "source": None, "searched": entry.get("searched", "nothing recorded")}
    return {"figures": entry["figures"], "column": entry["column"], "source": data["sources"][entry["source"]],
            "their_metrics": data["metrics"]}


def protocol_note(bench: Benchmark, protocol: str | None, image_size: int | None, n_images: int | None) -> str | None:
    """One line: where our run's protocol differs from that of the split's published figures (photo rule, size,
    photos evaluated; the FID network always), so nobody compares unlike numbers silently. None: no figures."""
    source = published(bench.name)["source"]
    if source is None or protocol is None:
        return None
    theirs = source["protocol"]
    differ = [f"{what} ours {mine}, theirs {their}" for what, mine, their in (
        ("photo rule", protocol, theirs["name"]), ("size", f"{image_size} px", f"{theirs['image_size']} px"),
        ("photos scored", n_images, bench.count)) if mine != their]
    head = (f"protocol differs from that of the published figures ({source['cite']}): {'; '.join(differ)}" if differ
            else f"protocol as that of the published figures ({source['cite']}): {theirs['name']}, "
                 f"{theirs['image_size']} px, all {bench.count} photos")
    return f"{head}; FID: theirs {theirs['fid_network']}, ours pytorch-fid's TF Inception, so FIDs compare roughly"


def beside_ours(models: dict, published: dict) -> list[dict]:
    """The rows of one table: each of our models (summary.json's 'models'), then each method the paper prints, marked
    as theirs; the metrics both sides have (COMPARED), None where a side has no figure."""
    rows = [{"label": label, "whose": OURS, **{m: values.get(m) for m in COMPARED}} for label, values in models.items()]
    return rows + [{"label": method, "whose": THEIRS, **{m: figures.get(m) for m in COMPARED}}
                   for method, figures in published["figures"].items()]
