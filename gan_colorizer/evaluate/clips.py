"""Clips in an evaluation (issue 17): each video colorized as colorize.py does it (temporal filter included), scored
with the photo metrics averaged over its frames and with the warp error of Lai et al. (ECCV 2018) on ab, for every
model and for the truth (a reference, not a floor: an output smoother than the truth goes below it); one
metrics.csv row per label and clip, set means in summary.json."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from gan_colorizer import flow
from gan_colorizer.color import gray_rgb, lab_to_model
from gan_colorizer.colorize.api import Colorizer
from gan_colorizer.colorize.video import colorized_frames, is_video, read_frames, runs
from gan_colorizer.console import Progress
from gan_colorizer.errors import reason
from gan_colorizer.evaluate.protocols import categories
from gan_colorizer.data.images import UnreadableImage, list_images
from gan_colorizer.inspect.drawing import SheetRow, comparison_sheet, fit_long_side, save_png
from gan_colorizer.metrics import GRAY, METRICS, colorfulness, image_lab, image_metrics, summarize

log = logging.getLogger("gan_colorizer")
TRUTH = "truth"
STRIP_FRAMES = 4  # consecutive frames from the middle of a clip in the report: flicker shows between neighbours
# full-size pixels scored at once, whatever --batch-size: the metrics take ~0.35 KB per pixel (a 16-frame 720p batch
# peaked at 5.2 GB), so a chunk stays near 1.4 GB; a larger frame goes alone, as full-resolution photos do
CHUNK_PIXELS = 4_000_000
CLIP_NOTES = {
    "clips": "video files (color originals) at their own size: ab predicted at --image-size (short side), upsampled "
             "and recombined with each frame's L, through the temporal filter at --temporal (colorize.py's path); "
             "photo metrics per frame, mean over the clip's frames; set figures are means over clips",
    "warp_error": "Lai et al. (ECCV 2018) on ab: per consecutive pair, the mean over the reliable pixels of "
                  "||ab_t - warp(ab_t-1)||^2 (Lab units^2), flow (DIS) and reliability mask (forward-backward, "
                  "occlusion, lightness) from the truth's L; mean over the clip's pairs; pairs across a scene cut "
                  "are left out. warp_error_truth: the same on the true frames (a reference, not a floor: an "
                  "output smoother than the truth scores below it)",
}
TABLE = [("label", "{}"), ("clips", "{}"), ("frames", "{}"), ("psnr", "{:.2f}"), ("ssim", "{:.4f}"),
         ("delta_e2000", "{:.3f}"), ("colorfulness", "{:.2f}"), ("warp_error", "{:.3f}"), ("fps", "{:.1f}")]


def list_clips(data: str, limit: int | None = None) -> tuple[list[Path], list[str]]:
    """(paths, names relative to --data) of the video files under a folder (none for embedded: or a non-folder,
    which resolve_data reports), the first `limit` of them."""
    root = Path(data)
    if data.startswith("embedded:") or not root.is_dir():
        return [], []
    paths = list_images(root, keep=is_video)[:limit]
    return paths, [str(p.relative_to(root)) for p in paths]


@dataclass
class ClipResult:
    """One clip's numbers: per label, every metric per frame and the warp error per scored pair."""
    name: str
    labels: list[str]
    size: tuple[int, int] = (0, 0)  # width, height
    frames: int = 0
    cuts: int = 0
    values: dict = field(default_factory=dict)  # label -> metric -> [per frame]
    warp: dict = field(default_factory=dict)  # label or TRUTH -> [per pair]
    seconds: dict = field(default_factory=dict)  # label -> seconds spent waiting for its colorized frames
    truth_cf: list = field(default_factory=list)
    strip: dict = field(default_factory=dict)  # label or TRUTH -> [(frame number, (H, W, 3) uint8)]

    def __post_init__(self):
        self.values = {l: {m: [] for m in METRICS} for l in self.labels}
        self.warp = {k: [] for k in [*self.labels, TRUTH]}
        self.seconds = dict.fromkeys(self.labels, 0.0)

    def means(self, label: str) -> dict:
        out = {m: summarize(v)["mean"] if v else None for m, v in self.values[label].items()}
        return out | {"warp_error": self.warp_error(label)}

    def warp_error(self, key: str) -> float | None:
        return float(np.mean(self.warp[key])) if self.warp[key] else None

    def pairs(self) -> int:
        return len(self.warp[TRUTH])


class ClipScorer:
    """Colorizes and scores clips with every model in lockstep: each model reads its own stream of the file, so one
    flow per pair of true frames serves them all, and memory holds about a batch of frames per model."""

    def __init__(self, candidates, opts, runtime, lpips=None):
        self.opts, self.lpips, self.device = opts, lpips, runtime.device
        self.labels = [c.label for c in candidates]
        self.colorizers = {c.label: c.published or Colorizer(c.generator, runtime, opts.image_size)
                           for c in candidates if c.generator is not None or c.published is not None}

    @torch.inference_mode()
    def score(self, path: Path, name: str, strip_at: int | None = None) -> ClipResult:
        """Every frame of one clip, scored in chunks of at most --batch-size frames and CHUNK_PIXELS; raises
        UnreadableImage (or RuntimeError...) when the file fails part way, so that a broken clip gives no row at all.
        Frames over --max-pixels (default: video.MAX_FRAME_PIXELS) are refused before they are decoded."""
        result, limit = ClipResult(name, self.labels), self.opts.max_pixels
        streams = {label: colorized_frames(c, read_frames(path, limit), self.opts.temporal, {}, self.opts.batch_size)
                   for label, c in self.colorizers.items()}
        truth = ((frame, {label: self._next(streams[label], result, label, index) for label in streams})
                 for index, frame in enumerate(read_frames(path, limit)))
        prev = None
        try:
            for chunk in runs(truth, self.opts.batch_size, CHUNK_PIXELS, frame=lambda item: item[0]):
                prev = self._chunk(chunk, result, prev, strip_at)
        finally:
            for stream in streams.values():
                stream.close()
        if result.frames == 0:
            raise UnreadableImage(path, "no video frame could be decoded")
        return result

    def _next(self, stream, result: ClipResult, label: str, index: int) -> np.ndarray:
        clock = time.perf_counter()
        try:
            rgb = next(stream)
        except StopIteration:
            raise RuntimeError(f"{label}'s colorized frames ended at frame {index}") from None
        result.seconds[label] += time.perf_counter() - clock
        return rgb

    def _tensor(self, frames: list[np.ndarray]) -> torch.Tensor:
        return torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).to(self.device)

    def _chunk(self, chunk: list, result: ClipResult, prev: dict | None, strip_at: int | None) -> dict:
        """Score consecutive frames of one size for every label, then the warp error of each pair in them (and of the
        pair across from the previous chunk); returns the last frame's L and ab for the next chunk."""
        truth = self._tensor([frame for frame, _ in chunk])
        truth_lab = image_lab(truth)
        gray_l = lab_to_model(truth_lab)[0]  # the models see the truth's L only
        preds = {GRAY: gray_rgb(gray_l),
                 **{label: self._tensor([p[label] for _, p in chunk]) for label in self.colorizers}}
        labs = {TRUTH: truth_lab}
        for label in self.labels:
            labs[label] = image_lab(preds[label])
            scores = image_metrics(preds[label], truth, truth_lab, labs[label])
            if self.lpips is not None:
                scores["lpips"] = self.lpips(preds[label].float() / 255, truth.float() / 255)
            for m, v in scores.items():
                result.values[label][m] += v.tolist()
        result.truth_cf += colorfulness(truth).tolist()
        result.size = (truth.shape[-1], truth.shape[-2])
        l8 = np.clip(truth_lab[:, 0].cpu().numpy() * 2.55 + 0.5, 0, 255).astype(np.uint8)
        ab = {key: lab[:, 1:].permute(0, 2, 3, 1).float().cpu().numpy() for key, lab in labs.items()}
        for k in range(len(chunk)):
            cur = {"l": l8[k], "ab": {key: v[k] for key, v in ab.items()}}
            if prev is not None:
                self._pair(prev, cur, result)
            if strip_at is not None and 0 <= result.frames - strip_at < STRIP_FRAMES:
                for key, rgb in [(TRUTH, truth), *preds.items()]:
                    result.strip.setdefault(key, []).append((result.frames, rgb[k].permute(1, 2, 0).cpu().numpy()))
            prev, result.frames = cur, result.frames + 1
        return prev

    @staticmethod
    def _pair(prev: dict, cur: dict, result: ClipResult) -> None:
        """The warp error of every label and of the truth for one pair, with the flow and mask of the true frames."""
        fwd = flow.flow(prev["l"], cur["l"])
        if flow.is_cut(prev["l"], cur["l"], fwd):
            result.cuts += 1
            return
        mask = flow.reliable(prev["l"], cur["l"], fwd, flow.flow(cur["l"], prev["l"]))
        if not mask.any():
            return
        for key, ab in cur["ab"].items():
            result.warp[key].append(flow.warp_error(prev["ab"][key], ab, fwd, mask))


def strip_start(path: Path, max_pixels: int | None = None) -> int:
    """Where the report's strip starts: the middle of the clip when its container says how long it is."""
    from gan_colorizer.colorize.video import probe
    try:
        frames = probe(path, max_pixels).frames
    except Exception:  # noqa: BLE001 - only a position in the page; scoring reports a bad file
        return 0
    return max(0, (frames or 0) // 2 - STRIP_FRAMES // 2)


def strip_sheet(result: ClipResult, labels: list[str]) -> np.ndarray:
    """One row per label (truth first), one column per frame: the consecutive frames where flicker shows."""
    rows = []
    for key in [TRUTH, *labels]:
        tiles = {f"frame {n}": fit_long_side(torch.from_numpy(rgb).permute(2, 0, 1).float(), 160).round().clamp(
            0, 255).to(torch.uint8).permute(1, 2, 0).numpy() for n, rgb in result.strip.get(key, [])}
        rows.append(SheetRow("ground truth" if key == TRUTH else key, tiles))
    return comparison_sheet(rows, list(rows[0].tiles))


def _reason(e: BaseException) -> str:
    if isinstance(e, UnreadableImage):
        return e.reason
    return reason(e)


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return summarize(values)["mean"] if values else None


class ClipEvaluation:
    """The clips of one evaluation, one after another: a metrics.csv row per label as each clip ends, a clip that
    fails is one line and no row, a strip of frames per shown clip for the report, the set means at the end."""

    def __init__(self, paths: list[Path], names: list[str], candidates, opts, runtime, report, lpips=None):
        self.paths, self.names, self.opts, self.report = paths, names, opts, report
        self.labels = [c.label for c in candidates]
        self.scorer = ClipScorer(candidates, opts, runtime, lpips) if paths else None
        self.entries: list[dict] = []
        self.skipped: list[dict] = []
        self.categories = categories(names)

    def run(self) -> None:
        if not self.paths:
            return
        log.info("evaluating %d clips from %s (temporal %g, ab at %d px) with %s", len(self.paths), self.opts.data,
                 self.opts.temporal, self.opts.image_size, ", ".join(self.labels))
        html = self.report.html
        n = min(self.opts.report_images, len(self.paths)) if html else 0
        shown = set(np.linspace(0, len(self.paths) - 1, n).round().astype(int).tolist()) if n else set()
        progress = Progress(len(self.paths), "clips", "clip")  # off a terminal: a line every 30 s
        for i, (path, name) in enumerate(progress.each(zip(self.paths, self.names))):
            try:
                result = self.scorer.score(path, name, strip_start(path, self.opts.max_pixels) if i in shown else None)
            except (UnreadableImage, RuntimeError, MemoryError, ValueError, OSError) as e:
                log.warning("warning: skipped %s: %s", path, _reason(e))
                self.skipped.append({"path": str(path), "reason": _reason(e)})
                continue
            entry = self._entry(result)
            if i in shown:
                save_png(strip_sheet(result, self.labels), html.dir / "img" / f"clip_{i:06d}.png")
                entry["report_strip"] = f"img/clip_{i:06d}.png"  # in report/
            self.report.write_rows(self._csv_rows(entry, self.categories[i] if self.categories else ""))
            self.entries.append(entry)

    def _entry(self, result: ClipResult) -> dict:
        models = {label: {**result.means(label), "fps": result.frames / result.seconds[label]
                          if result.seconds.get(label) else None} for label in self.labels}
        return {"clip": result.name, "frames": result.frames, "width": result.size[0], "height": result.size[1],
                "pairs": result.pairs(), "cuts": result.cuts, "warp_error_truth": result.warp_error(TRUTH),
                "colorfulness_truth": summarize(result.truth_cf)["mean"], "models": models}

    def _csv_rows(self, entry: dict, category: str):
        from gan_colorizer.evaluate.outputs import _cell, text_cell
        for label in self.labels:
            cells = {m: _cell(v) for m, v in entry["models"][label].items()}
            yield cells | {"label": text_cell(label), "image": text_cell(entry["clip"]),
                           "category": text_cell(category), "width": entry["width"], "height": entry["height"],
                           "kind": "clip", "frames": entry["frames"],
                           "colorfulness_truth": _cell(entry["colorfulness_truth"]),
                           "warp_error_truth": _cell(entry["warp_error_truth"])}

    def summary(self) -> dict:
        """Per set: every figure as the mean over the clips (each clip counts once, as in Lai et al.)."""
        truth_cf = _mean(e["colorfulness_truth"] for e in self.entries)
        models = {}
        for label in self.labels:
            per = [e["models"][label] for e in self.entries]
            stats = {m: _mean(p[m] for p in per) for m in (*METRICS, "warp_error")}
            cf = stats["colorfulness"]
            stats["delta_colorfulness"] = abs(cf - truth_cf) if cf is not None and truth_cf is not None else None
            seconds = sum(e["frames"] / p["fps"] for e, p in zip(self.entries, per) if p["fps"])
            stats["fps"] = sum(e["frames"] for e in self.entries) / seconds if seconds else None
            models[label] = stats
        return {"n_clips": len(self.entries), "n_frames": sum(e["frames"] for e in self.entries),
                "n_files": len(self.paths), "temporal": self.opts.temporal, "metrics": CLIP_NOTES,
                "truth": {"warp_error": _mean(e["warp_error_truth"] for e in self.entries), "colorfulness": truth_cf},
                "models": models, "clips": self.entries, "skipped": self.skipped}


def print_clip_table(clips: dict) -> None:
    from gan_colorizer.evaluate.outputs import table_lines
    rows = [{"label": label, "clips": clips["n_clips"], "frames": clips["n_frames"], **m}
            for label, m in clips["models"].items()]
    lines = ["clips:", *table_lines(TABLE, rows)]
    truth = clips["truth"]["warp_error"]
    lines.append(f"truth warp_error {'-' if truth is None else f'{truth:.3f}'} (a reference: an output smoother than "
                 f"the truth goes below it); {clips['n_clips']} clips, {clips['n_frames']} frames, "
                 f"temporal {clips['temporal']:g}, {len(clips['skipped'])} skipped")
    print("\n".join(lines), flush=True)
