"""What an evaluation writes: metrics.csv (streamed), summary.json, the stdout table, grids/ and images/."""
from __future__ import annotations

import csv
import json
import os
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from gan_colorizer.atomic import FolderLock, part_path, remove_stale_parts, write_atomic
from gan_colorizer.color import rgb_to_lab
from gan_colorizer.errors import UserError
from gan_colorizer.inspect.drawing import SheetRow, comparison_sheet, difference_maps, fit_long_side, save_png
from gan_colorizer.metrics import GRAY, METRICS, summarize
from gan_colorizer.report.collect import HtmlReport, clear_report, file_names

CSV_COLUMNS = ("label", "image", "category", "width", "height", "gray_truth", "psnr", "ssim", "delta_e2000", "colorfulness",
               "colorfulness_truth", "auc_ab", "lpips", "kind", "frames", "warp_error", "warp_error_truth")  # clips.py
SUMMARY_ORDER = ("psnr", "ssim", "delta_e2000", "colorfulness", "delta_colorfulness", "auc_ab", "lpips", "fid",
                 "img_per_sec")
SHEET_ROWS = 4  # images per grid sheet
MAX_PRINTED_CATEGORIES = 40  # more (ImageNet's 1,000 synsets) stay in summary.json only
CATEGORY_TABLE = [("category", "{}"), ("label", "{}"), ("n", "{}"), ("psnr", "{:.2f}"), ("ssim", "{:.4f}"),
                  ("delta_e2000", "{:.3f}"), ("colorfulness", "{:.2f}"), ("delta_colorfulness", "{:.2f}"),
                  ("auc_ab", "{:.4f}")]
GRAY_COLUMN = "gray (baseline)"  # the input the models see, and the ab = 0 baseline
TABLE = [("label", "{}"), ("psnr", "{:.2f}"), ("ssim", "{:.4f}"), ("delta_e2000", "{:.3f}"),
         ("colorfulness", "{:.2f}"), ("delta_colorfulness", "{:.2f}"), ("auc_ab", "{:.4f}"), ("lpips", "{:.4f}"),
         ("fid", "{:.2f}"), ("img_per_sec", "{:.1f}")]


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, (bool, np.bool_)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return f"{value:.6f}" if np.isfinite(value) else str(value)
    return str(value)


def text_cell(text: str) -> str:
    """A name (label, image, category) as a spreadsheet shows it but never runs it: one starting with =, +, -, @,
    a tab or a carriage return would be read as a formula, so it gets a leading apostrophe (OWASP's advice)."""
    return f"'{text}" if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def png_names(names: list[str]) -> list[str]:
    """Relative names with a .png suffix; 'a.jpg' and 'a.png' side by side keep their full names apart."""
    stems = [str(Path(n).with_suffix(".png")) for n in names]
    counts = Counter(stems)
    return [f"{n}.png" if counts[s] > 1 else s for n, s in zip(names, stems)]


def _tile(image: torch.Tensor) -> torch.Tensor:
    """(C, H, W) -> a sheet-sized copy: long side 256 when the image is large or tiny, as it is otherwise."""
    return fit_long_side(image, None if 96 <= max(image.shape[-2:]) <= 320 else 256)


class GridCollector:
    """Keeps the few selected images (evenly spread over the set) until a sheet is full, then writes it."""

    def __init__(self, folder: Path, labels: list[str], n_eval: int, n_images: int):
        self.folder, self.labels = folder, labels
        self.models = [l for l in labels if l != GRAY]
        self.selected = set(np.linspace(0, n_eval - 1, min(n_images, n_eval)).round().astype(int).tolist()) \
            if n_images else set()
        self.rows: list[SheetRow] = []
        self.sheets = 0

    def add(self, index: int, name: str, truth_u8, truth_lab, preds: dict, scores: dict, i: int) -> None:
        if index not in self.selected:
            return
        tiles = {GRAY_COLUMN: preds[GRAY][i], **{l: preds[l][i] for l in self.models}, "ground truth": truth_u8[i]}
        tiles = {k: _tile(v).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).cpu().numpy()
                 for k, v in tiles.items()}
        captions = {}
        for label in [GRAY] + self.models:
            column = GRAY_COLUMN if label == GRAY else label
            s = scores[label]
            captions[column] = f"PSNR {float(s['psnr'][i]):.2f}  dE00 {float(s['delta_e2000'][i]):.2f}"
        long_side = max(tiles["ground truth"].shape[:2])
        for label in self.models:
            pred_lab = rgb_to_lab(preds[label][i:i + 1].float() / 255)
            tiles[f"errors {label}"] = difference_maps(pred_lab, truth_lab[i:i + 1], long_side)
        self.rows.append(SheetRow(name, tiles, captions))
        if len(self.rows) == SHEET_ROWS:
            self.flush()

    def columns(self) -> list[str]:
        return [GRAY_COLUMN, *self.models, "ground truth", *[f"errors {l}" for l in self.models]]

    def flush(self) -> None:
        if self.rows:
            self.sheets += 1
            save_png(comparison_sheet(self.rows, self.columns()), self.folder / f"sheet_{self.sheets:03d}.png")
            self.rows = []


class ImageSaver:
    """PNG writes in two background threads, at most a few batches behind."""

    def __init__(self, out: Path, labels: list[str], names: list[str]):
        self.out, self.names = out, png_names(names)
        self.folders = {label: out / "images" / name for label, name in file_names(labels).items()}
        self.pool = ThreadPoolExecutor(2)
        self.pending: list[Future] = []

    def save(self, indices: list[int], truth_u8: torch.Tensor, preds: dict) -> None:
        items = [(self.out / "truth", truth_u8)] + [(self.folders[l], p) for l, p in preds.items()]
        for folder, images in items:
            arrays = images.permute(0, 2, 3, 1).cpu().numpy()
            for index, array in zip(indices, arrays):
                self.pending.append(self.pool.submit(save_png, array, folder / self.names[index]))
        while len(self.pending) > 256:
            self.pending.pop(0).result()

    def close(self) -> None:
        for f in self.pending:
            f.result()
        self.pool.shutdown()


class Report:
    def __init__(self, opts, labels: list[str], names: list[str], n_eval: int, candidates=None, runtime=None,
                 categories: list[str] | None = None):
        self.opts, self.labels, self.names, self.categories = opts, labels, names, categories
        self.out, self.finished = Path(opts.out), False
        try:
            self.lock = FolderLock(self.out, f"--out {self.out}: an evaluation by {{holder}} is writing there; wait "
                                             f"for it to finish, or choose another --out")
            clear_outputs(self.out)
            self.csv_path = part_path(self.out / "metrics.csv")  # renamed to metrics.csv by finish()
            self.csv_file = open(self.csv_path, "w", newline="")
        except OSError as e:
            self.abandon()
            raise UserError(f"--out {self.out}: cannot write there ({e.strerror or e})") from None
        self.csv = csv.writer(self.csv_file)
        self.csv.writerow(CSV_COLUMNS)
        # preallocated, not appended per batch: small long-lived buffers between the batches' large temporaries
        # would fragment the heap and make the resident memory creep up with the number of images
        self.values = {label: np.full((len(METRICS), n_eval), np.nan) for label in labels}
        self.measured: dict[str, set] = {label: set() for label in labels}
        self.truth_cf = np.full(n_eval, np.nan)
        self.category_names = sorted(set(categories)) if categories else []
        self.row_category = np.full(n_eval, -1, dtype=np.int32)  # index into category_names, per stored row
        self.count = 0
        self.gray_truth: list[str] = []
        self.grid = GridCollector(self.out / "grids", labels, n_eval, opts.grid_images)
        self.saver = ImageSaver(self.out, labels, names) if opts.save_images else None
        self.html = HtmlReport(self.out, labels, names, n_eval, opts, candidates, runtime) if opts.report else None

    def add(self, batch: dict, truth_u8, truth_lab, preds: dict, scores: dict, truth_cf) -> None:
        """One scored batch: CSV rows, the per-image values kept for the statistics, grid rows, PNGs."""
        indices = batch["index"]
        host = {l: {m: v.cpu().numpy() for m, v in s.items()} for l, s in scores.items()}
        truth_cf = truth_cf.cpu().numpy()
        rows = slice(self.count, self.count + len(indices))
        self.count += len(indices)
        self.truth_cf[rows] = truth_cf
        if self.categories:
            self.row_category[rows] = [self.category_names.index(self.categories[i]) for i in indices]
        self.gray_truth += [self.names[i] for i, g in zip(indices, batch["gray"]) if g]
        for label in self.labels:
            for j, m in enumerate(METRICS):
                if m in host[label]:
                    self.values[label][j, rows] = host[label][m]
                    self.measured[label].add(m)
        self.write_rows(self._csv_rows(batch, host, truth_cf))
        for k, index in enumerate(indices):
            self.grid.add(index, self.names[index], truth_u8, truth_lab, preds, scores, k)
        if self.saver:
            self.saver.save(indices, truth_u8, preds)
        if self.html:
            self.html.add(batch, truth_u8, truth_lab, preds, host, rows.start)

    def _csv_rows(self, batch: dict, host: dict, truth_cf: np.ndarray):
        for label in self.labels:
            values = host[label]
            for k, index in enumerate(batch["index"]):
                cells = {m: _cell(values[m][k]) if m in values else "" for m in METRICS}
                cells |= {"label": text_cell(label), "image": text_cell(self.names[index]),
                          "width": batch["size"][k][0],
                          "category": text_cell(self.categories[index]) if self.categories else "",
                          "height": batch["size"][k][1], "gray_truth": _cell(batch["gray"][k]),
                          "colorfulness_truth": _cell(truth_cf[k]), "kind": "photo"}
                yield cells

    def write_rows(self, rows) -> None:
        """metrics.csv rows ({column: cell}, missing ones empty), flushed together: readers see whole batches."""
        for cells in rows:
            self.csv.writerow([cells.get(c, "") for c in CSV_COLUMNS])
        self.csv_file.flush()

    def close(self) -> None:
        self.csv_file.close()
        self.grid.flush()
        if self.saver:
            self.saver.close()

    def _model_stats(self, label: str, truth_cf_mean: float | None, rows=None) -> dict:
        values = self.values[label][:, : self.count]
        if rows is not None:
            values = values[:, rows]
        stats = {m: summarize(values[j]) if m in self.measured[label] else None for j, m in enumerate(METRICS)}
        out = {m: s["mean"] if s else None for m, s in stats.items()}
        cf = out["colorfulness"]
        out["delta_colorfulness"] = abs(cf - truth_cf_mean) if cf is not None and truth_cf_mean is not None else None
        out["psnr_identical"] = stats["psnr"]["inf"] if stats["psnr"] else 0  # 0 with no photo (clips only)
        out["std"] = {m: s["std"] for m, s in stats.items() if s}
        out["median"] = {m: s["median"] for m, s in stats.items() if s}
        undefined = {m: s["nan"] for m, s in stats.items() if s and s["nan"]}
        if undefined:
            out["undefined"] = undefined
        return out

    def finish(self, summary: dict) -> dict:
        """Merge the per-image statistics into the summary, write summary.json, print the table."""
        truth = summarize(self.truth_cf[: self.count])
        summary["ground_truth"] = {"colorfulness": truth["mean"], "colorfulness_std": truth["std"],
                                   "colorfulness_median": truth["median"], "gray_images": self.gray_truth}
        head = ["checkpoint", *SUMMARY_ORDER]  # the headline numbers first, then the details
        for label in self.labels:
            both = {**summary["models"][label], **self._model_stats(label, truth["mean"])}
            summary["models"][label] = {**{k: both.get(k) for k in head}, **{k: v for k, v in both.items()
                                                                            if k not in head}}
        if self.category_names:
            summary["categories"] = self._per_category()
        summary["outputs"] = {"csv": str(self.out / "metrics.csv"), "grids": self.grid.sheets,
                              "images": str(self.out / "images") if self.saver else None}
        if self.html:
            summary["outputs"]["report"] = str(self.html.finish(_finite(summary), self.values, self.measured, METRICS,
                                                                 self.count))
        summary = _finite(summary)
        os.replace(self.csv_path, self.out / "metrics.csv")
        write_atomic(self.out / "summary.json", json.dumps(summary, indent=2, allow_nan=False))
        self.finished = True
        self.lock.release()
        if self.count:  # a folder of clips only: their table follows (clips.print_clip_table)
            print_table(summary)
        return summary

    def abandon(self) -> None:
        """An evaluation that never finished: its half-written metrics.csv goes, and the --out lock with it."""
        if getattr(self, "csv_file", None) is not None and not self.finished:
            self.csv_file.close()
            self.csv_path.unlink(missing_ok=True)
        if getattr(self, "lock", None) is not None:
            self.lock.release()

    __del__ = abandon  # a Report dropped without finish() or abandon() (the Evaluator calls abandon on failure)

    def _per_category(self) -> dict:
        """Every metric per category (FID and LPIPS-free set statistics stay per set: FID on a few dozen images
        per category would be noise)."""
        out = {}
        for c, name in enumerate(self.category_names):
            rows = self.row_category[: self.count] == c
            if not rows.any():
                continue
            truth = summarize(self.truth_cf[: self.count][rows])
            models = {}
            for label in self.labels:
                stats = self._model_stats(label, truth["mean"], rows)
                models[label] = {k: stats[k] for k in (*METRICS, "delta_colorfulness", "psnr_identical")}
            out[name] = {"n_images": int(rows.sum()), "ground_truth": {"colorfulness": truth["mean"]},
                         "models": models}
        return out


def clear_outputs(out: Path) -> None:
    """Remove what an earlier evaluation wrote into --out that this one might not write again (summary.json,
    metrics.csv, grid sheets, the report), and the temporary files of killed writes: nothing outlives its run.
    images/ and truth/ are left (files are replaced one by one; they may hold more than ours)."""
    for name in ("summary.json", "metrics.csv"):
        (out / name).unlink(missing_ok=True)
    for old in (out / "grids").glob("sheet_*.png"):
        old.unlink()
    clear_report(out / "report")
    for folder, deep in ((out, False), (out / "grids", False), (out / "images", True), (out / "truth", True)):
        remove_stale_parts(folder, deep)


def _finite(x):
    """JSON has no inf or NaN: they become null (the counts of such images are reported beside)."""
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_finite(v) for v in x]
    if isinstance(x, float) and not np.isfinite(x):
        return None
    return x


def table_lines(spec, rows: list[dict]) -> list[str]:
    """A console table: the header of spec's (key, format) pairs, then a line per row, "-" where a value is None."""
    cells = [[fmt.format(v) if (v := row.get(k)) is not None else "-" for k, fmt in spec] for row in rows]
    header = [k for k, _ in spec]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(header)]
    return ["  ".join(h.ljust(w) for h, w in zip(header, widths))] + \
        ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in cells]


def print_table(summary: dict) -> None:
    lines = table_lines(TABLE, [{**m, "label": label} for label, m in summary["models"].items()])
    gt = summary["ground_truth"]
    lines.append(f"ground truth colorfulness {gt['colorfulness']:.2f}; {summary['n_images']} images "
                 f"({summary['protocol']['name']}, {summary['protocol']['image_size']} px), "
                 f"{len(summary['skipped'])} skipped, {len(gt['gray_images'])} gray")
    for name, reason in summary.get("unavailable", {}).items():
        lines.append(f"{name}: not computed ({reason.split(':')[0]}; see 'unavailable' in summary.json)")
    print("\n".join(lines), flush=True)
    if summary.get("categories"):
        print_category_table(summary["categories"])


def print_category_table(cats: dict) -> None:
    """One row per (category, label); only the count when there are too many categories to read."""
    if len(cats) > MAX_PRINTED_CATEGORIES:
        print(f"{len(cats)} categories (subfolders of --data): per-category figures in summary.json "
              f"('categories') and the category column of metrics.csv", flush=True)
        return
    rows = [{"category": cat, "label": label, "n": entry["n_images"], **m}
            for cat, entry in cats.items() for label, m in entry["models"].items()]
    lines = ["per category:", *table_lines(CATEGORY_TABLE, rows)]
    print("\n".join(lines), flush=True)
