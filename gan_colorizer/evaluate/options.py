"""What evaluate.py takes: its options (the flags are these fields) and the protocols, with nothing heavy imported,
so `evaluate.py --help` answers at once; evaluate/run.py does the work."""
from __future__ import annotations

from dataclasses import dataclass

from gan_colorizer.colorize.video import DEFAULT_STRENGTH, MAX_FRAME_PIXELS
from gan_colorizer.config import DECODES, WEIGHTS
from gan_colorizer.data.benchmarks import BENCHMARKS
from gan_colorizer.data.images import MAX_PIXELS
from gan_colorizer.options import REQUIRED, amp_opt, device_opt, opt, workers_opt

PROTOCOLS = {
    "center-crop": "center square crop to the short side, resized to SIZE x SIZE (the ImageNet val5k protocol)",
    "resize": "whole photo stretched to SIZE x SIZE (the val50k / COCO-Stuff protocol)",
    "full-res": "ab predicted at a SIZE short side (aspect kept), upsampled to the photo's size and recombined with "
                "its full-resolution L; measured at full resolution",
}
FULL_RES_MAX_PIXELS = 64_000_000  # a 16 MP photo peaked at 5.3 GB in full-res (2026-11-30): 64 MP fits in 24 GB


@dataclass
class EvalOptions:
    """What to evaluate and how; `python evaluate.py` builds its flags from these fields (evaluate/cli.py)."""
    checkpoints: list[str] = opt(REQUIRED, "a stage-1 or stage-2 checkpoint, or a published model's name (ddcolor-tiny, "
                                           "zhang-eccv16...: docs/published-models.md); repeat to compare several",
                                 flag="--checkpoint", action="append", metavar="PATH")
    data: str = opt(REQUIRED, "folder of photos and / or video clips (color originals), searched recursively; "
                              "embedded:val = the sample photos held out in training", metavar="DIR")
    out: str = opt(REQUIRED, "where metrics.csv, summary.json and grids/ go", metavar="DIR")
    benchmark: str | None = opt(None, "evaluate exactly the photos of a paper's test split, found by name in --data "
                                      "(docs/data.md); summary.json names it, beside the figures papers publish for "
                                      "it", choices=list(BENCHMARKS), metavar="NAME")
    labels: list[str] | None = opt(None, "name of each --checkpoint, in order (default: the run's name for a best.pt "
                                         "or last.pt, else the file stem; made unique with its folders)",
                                   flag="--label", action="append", metavar="NAME")
    protocol: str = opt("center-crop", "; ".join(f"{k}: {v}" for k, v in PROTOCOLS.items()), choices=list(PROTOCOLS))
    image_size: int = opt(256, "the network's input size in pixels: SIZE above (full-res: the short side of the copy "
                               "the network sees, as colorize.py's --image-size)", metavar="SIZE")
    batch_size: int = opt(16, "images per batch (full-res: always 1)", metavar="N")
    device: str = device_opt()
    amp: str = amp_opt("off", "; off here by default, as the published figures (summary.json says which ran)")
    weights: str = opt("auto", "auto = a checkpoint's EMA copy when the run kept one (--ema-decay), else its trained "
                               "weights", choices=WEIGHTS)
    limit: int | None = opt(None, "evaluate only the first N files (sorted)", metavar="N")
    hints: str | None = opt(None, "oracle hint counts, e.g. 0,1,2,5,10,20,50,100: each model trained with --hints is "
                                  "scored once per count, with that many hints sampled from each photo's truth "
                                  "(seeded: the same points for every model); every metric per count in "
                                  "summary.json, metrics.csv, the console and hints.png (docs/hints.md)",
                            metavar="COUNTS")
    hint_seed: int = opt(0, "--hints: the seed of the oracle hints", metavar="N")
    max_pixels: int | None = opt(None, "skip (one line, from the file's header, before decoding) photos and clips "
                                       f"with more pixels (per frame) than this (default: {MAX_PIXELS:,}; "
                                       f"{FULL_RES_MAX_PIXELS:,} with --protocol full-res, whose full-size metrics "
                                       f"take ~0.3 KB per pixel; {MAX_FRAME_PIXELS:,} (8K) for a clip's frames)",
                                 metavar="N")
    save_images: bool = opt(False, "also write every colorized image (and the truth) as PNG", action="store_true")
    fid_weights: str | None = opt(None, "pytorch-fid's pt_inception-2015-12-05-6726825d.pth (default: the one in "
                                        "$TORCH_HOME/hub/checkpoints, downloaded there on first use)", metavar="PATH")
    lpips_weights: str | None = opt(None, "torchvision's alexnet-owt-7be5be79.pth, or a whole lpips.LPIPS state dict "
                                          "(default: the one in $TORCH_HOME/hub/checkpoints, downloaded there on "
                                          "first use)", metavar="PATH")
    download: bool = opt(True, "download the LPIPS / FID weights and published models' weights the cache lacks "
                               "(--no-download: cached files only; a metric without weights is null, with the reason; "
                               "a published model without its file is one line)")
    num_workers: int = workers_opt("DataLoader worker processes that decode images", "1 on CPU; with CUDA, min(8, the "
                                   "CPUs this process may use / processes on the node), as in training")
    grid_images: int = opt(16, "images shown in grids/, spread evenly over the set, 4 per sheet; 0 = none", metavar="N")
    report: bool = opt(False, "also write OUT/report/index.html: images, sortable metric tables, ab distributions, "
                              "layer view and a pixel inspector; opens from disk, offline", action="store_true")
    report_images: int = opt(16, "images the report shows, spread evenly over the set", metavar="N")
    report_worst: int = opt(8, "and the N with the highest CIEDE2000, mean over the models", metavar="N")
    decode: str | None = opt(None, "classification checkpoints (--head classification): how the predicted "
                                   "distribution becomes ab: annealed mean (as trained), mode or mean; regression ones "
                                   "ignore it (summary.json says so)", choices=DECODES)
    annealed_t: float | None = opt(None, "temperature of the annealed mean for classification checkpoints (default: "
                                         "each checkpoint's --annealed-t)", metavar="T")
    temporal: float = opt(DEFAULT_STRENGTH, "clips: strength of the temporal filter, colorize.py's default for videos; "
                                            "0 = each frame on its own", metavar="S")
