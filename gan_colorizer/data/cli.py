"""gan-colorizer-data (python -m gan_colorizer.data): the datasets the recipes name, in one command each, and what
is already on disk."""
from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

from gan_colorizer.console import run_command, setup_logging
import gan_colorizer.data.fetch as fetch
from gan_colorizer.data.benchmarks import BENCHMARKS, published
from gan_colorizer.errors import UserError
from gan_colorizer.options import REQUIRED, opt, parse_options, tool_parser

log = logging.getLogger("gan_colorizer")
RULE = fetch.TutorialSplit()
DESCRIPTION = """Fetch and split the data of the recipes in configs/, or list what is known and what is on disk.

  coco-sample  fastai's COCO_SAMPLE (3.2 GB, through fastai's untar_data: its cache and checksums), split as the
               tutorial splits it: OUT/train.txt, OUT/val.txt, and OUT/train/, OUT/val/ of links for
               --data OUT/train --val-data OUT/val (with --shards also OUT/shards/ for --data OUT/shards)
  list         the datasets and the benchmark splits (evaluate.py --benchmark), and where they are on disk

examples:
  gan-colorizer-data coco-sample --out data/coco-sample
  python pretrain_generator.py --config configs/tutorial-stage1.json --data data/coco-sample/train \\
      --val-data data/coco-sample/val"""


@dataclass
class DataOptions:
    what: str = opt(REQUIRED, "coco-sample or list", positional=True, metavar="{coco-sample,list}")
    out: str = opt("data/coco-sample", "folder for the split's file lists and folders of links", metavar="DIR")
    seed: int = opt(RULE.seed, "seed of the tutorial's draw (np.random.seed)")
    subset: int = opt(RULE.count, "photos drawn from the archive (without replacement)", metavar="N")
    train: int = opt(RULE.train, "of those, the first N of the permutation train; the rest validate", metavar="N")
    order: str = opt("sorted", "the archive's photos in file-name order, so the split is the same on every machine; "
                               "glob: in the disk's listing order, as the tutorial's glob.glob (its names then vary "
                               "between machines)", choices=fetch.ORDERS)
    links: bool = opt(True, "write OUT/train/ and OUT/val/ of links to the photos (--no-links: the .txt lists only)")
    shards: bool = opt(False, "also write OUT/shards/ (train-*.tar, val-*.tar) with the shard writer",
                       action="store_true")
    url: str = opt(fetch.COCO_SAMPLE_URL, "where coco_sample.tgz is downloaded from (fastai's URLs.COCO_SAMPLE; a "
                                          "mirror keeps its checks only when fastai lists that address)",
                   metavar="URL")
    cache: str | None = opt(None, "fastai's download folder (default: fastai's config: $FASTAI_HOME or ~/.fastai)",
                            metavar="DIR")


def build_parser():
    return tool_parser(DataOptions, DESCRIPTION, prog="gan-colorizer-data")


def main(argv=None) -> int:
    setup_logging()
    return run_command(lambda: _main(parse_options(build_parser(), DataOptions, argv)))


def _main(opts: DataOptions) -> None:
    if opts.what not in ("coco-sample", "list"):
        raise UserError(f"{opts.what}: use coco-sample or list")
    if opts.what == "list":
        print("\n".join(status_lines(opts.cache, Path(opts.out))))
        return
    if opts.shards and not opts.links:
        raise UserError("--shards writes its shards from OUT/train and OUT/val: drop --no-links")
    rule = fetch.TutorialSplit(opts.seed, opts.subset, opts.train)
    out = Path(opts.out)
    record = fetch.coco_sample(out, rule, opts.order, opts.links, opts.url, opts.cache)
    if opts.shards:
        from gan_colorizer.data.shards import ShardOptions, write_shards
        write_shards(ShardOptions(data=str(out / "train"), val_data=str(out / "val"), out=str(out / "shards")))
    log.info("coco-sample: %d training and %d validation photos of %d (seed %d, %s order) -> %s; train with "
             "--data %s --val-data %s", record["train"], record["val"], record["photos"], rule.seed, opts.order,
             out / "split.json", out / "train", out / "val")


def status_lines(cache: str | None = None, out: Path = Path("data/coco-sample")) -> list[str]:
    """What `list` prints: each dataset with where it is on disk (fastai's cache; the split in --out), each
    benchmark with its count and source."""
    lines = ["datasets (gan-colorizer-data NAME):",
             f"  coco-sample        fastai's COCO_SAMPLE, {RULE.count:,} photos split {RULE.train:,} / "
             f"{RULE.count - RULE.train:,} as the tutorial does: {coco_sample_state(cache)}; {split_state(out)}",
             "benchmarks (evaluate.py --benchmark NAME --data FOLDER):"]
    for b in BENCHMARKS.values():
        names = f"list data/lists/{b.list_file}" if b.list_file else f"by rule: {b.rule}"
        protocol = f"--protocol {b.protocol}" if b.protocol else "papers' protocol not known here"
        source = published(b.name)["source"]
        figures = f"published figures: {source['cite']}" if source else "no published figure read"
        lines.append(f"  {b.name:<18} {b.count:>6,} photos, {b.title}; {protocol}; {names}; "
                     f"source: {b.source}; {figures}")
    return lines


def split_state(out: Path) -> str:
    try:
        record = json.loads((out / "split.json").read_text())
        return (f"split into {out}: {record['train']:,} / {record['val']:,}, seed {record['seed']}, "
                f"{record['order']} order")
    except (OSError, ValueError, KeyError, TypeError):
        return f"no split in {out} (--out)"


def coco_sample_state(cache: str | None) -> str:
    try:
        archive, folder = fetch.cache_paths(fetch.COCO_SAMPLE_URL, cache)
    except UserError as e:
        return str(e)
    if folder.is_dir():
        return f"extracted at {folder}"
    if archive.is_file():
        return f"archive at {archive} (extracted on the next coco-sample)"
    return f"not on disk (fastai puts it at {folder})"


if __name__ == "__main__":
    sys.exit(main())
