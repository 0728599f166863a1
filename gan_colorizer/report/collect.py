"""evaluate.py --report: OUT/report/index.html, a self-contained page (files beside it, no server, no network).

It streams with the evaluation: the shown images (spread over the set, and the worst so far) are written as they
pass, color distributions accumulate in fixed-size arrays, and the page itself is written at the end.
"""
from __future__ import annotations

import contextlib
import hashlib
import heapq
import io
import re
import shutil
from collections import Counter
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from gan_colorizer.atomic import remove_stale_parts, replacing, write_atomic
from gan_colorizer.color import rgb_to_lab
from gan_colorizer.errors import UserError
from gan_colorizer.inspect.ab_histograms import ColorDistribution, compare, distribution_figure
from gan_colorizer.inspect.class_views import classifier, inspector_grid, logits_of, page_bins, prior_figure
from gan_colorizer.inspect.drawing import difference_maps, fit_long_side, save_png
from gan_colorizer.metrics import GRAY, METRICS
from gan_colorizer.report import page

MAX_SIDE = 512  # shown images larger than this are shrunk (area); the pixel inspector reads the shown pixels
MIN_MAP_SIDE = 160  # difference maps of tiny images are enlarged (nearest) so their color bars stay readable
TABLE_MAX_ROWS = 5000  # per-image table rows; beyond, the worst images (all rows are in metrics.csv)


def file_names(labels, reserved=()) -> dict[str, str]:
    """A file name per label, unique even on a case-insensitive disk: ASCII letters, digits, '-', '_' and '.' (not
    leading: '..' cannot climb), at most 64 characters; names that would clash with each other or with `reserved`
    get a short hash of their label ('m 1' and 'm_1' become 'm_1-' and 8 hex digits each)."""
    safe = {label: re.sub(r"^\.", "_", re.sub(r"[^A-Za-z0-9._-]", "_", label))[:64] or "_" for label in labels}
    counts = Counter([name.casefold() for name in safe.values()] + [r.casefold() for r in reserved])
    return {label: name if counts[name.casefold()] == 1 else f"{name}-{hashlib.sha1(label.encode()).hexdigest()[:8]}"
            for label, name in safe.items()}


def clear_report(folder: Path) -> None:
    """Remove what an earlier report wrote into folder, the page first: none of it may outlive the evaluation that
    made it (index.html is written again when this evaluation completes)."""
    for name in ("index.html", "report.js", "report.css", "ab_distribution.png", "color_histograms.npz"):
        (folder / name).unlink(missing_ok=True)
    for path in folder.glob("prior_*.png"):
        path.unlink()
    for sub in ("img", "pixels", "layers"):
        shutil.rmtree(folder / sub, ignore_errors=True)
    remove_stale_parts(folder)
    with contextlib.suppress(OSError):
        folder.rmdir()  # when nothing else is left in it


def png_bytes(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return buffer.getvalue()


def _shown(image: torch.Tensor) -> np.ndarray:
    """(3, H, W) uint8 -> (H, W, 3) uint8 with the long side at most MAX_SIDE."""
    if max(image.shape[-2:]) > MAX_SIDE:
        image = fit_long_side(image.float(), MAX_SIDE).round().clamp(0, 255).to(torch.uint8)
    return image.permute(1, 2, 0).cpu().numpy()


class HtmlReport:
    """Collects what the page shows while the evaluation streams; `finish()` writes index.html."""

    def __init__(self, out: Path, labels: list[str], names: list[str], n_eval: int, opts, candidates=None, runtime=None):
        self.dir, self.labels, self.names = Path(out) / "report", labels, names
        self.models = [l for l in labels if l != GRAY]
        self.files = file_names(labels, reserved=("ground_truth",))  # "ground_truth": the truth's histograms
        self.opts, self.runtime = opts, runtime
        self.candidates = {c.label: c for c in candidates or [] if c.generator is not None}
        self.classes = [l for l, c in self.candidates.items() if classifier(c.generator) is not None]
        self.published = {c.label: c.published for c in candidates or [] if c.published is not None}
        try:  # into the folder evaluate.outputs.clear_outputs emptied (a previous report's files would mislead)
            for sub in ("img", "pixels", "layers"):
                (self.dir / sub).mkdir(parents=True)
        except OSError as e:
            raise UserError(f"--out {out}: cannot write the report there ({e.strerror or e})") from None
        n = min(opts.report_images, n_eval)
        self.spread = set(np.linspace(0, n_eval - 1, n).round().astype(int).tolist()) if n else set()
        self.worst: list[tuple[float, int]] = []  # min-heap of (mean CIEDE2000 of the models, dataset index)
        self.cards: dict[int, dict] = {}
        self.row_index = np.full(n_eval, -1, np.int64)  # evaluation row -> dataset index
        self.dists = {"ground truth": ColorDistribution(), **{l: ColorDistribution() for l in self.models}}
        self.layers: dict | None = None

    def add(self, batch: dict, truth_u8, truth_lab, preds: dict, host: dict, first_row: int) -> None:
        """One scored batch (host: {label: {metric: per-image numpy values}})."""
        self.dists["ground truth"].update(truth_lab)
        for label in self.models:
            self.dists[label].update_rgb8(preds[label])
        for k, index in enumerate(batch["index"]):
            self.row_index[first_row + k] = index
            score = float(np.mean([host[l]["delta_e2000"][k] for l in self.models]))
            keep = self._offer_worst(score, index)
            if (index in self.spread or keep) and index not in self.cards:
                self._write_card(index, k, truth_u8, preds, host, score)
            if self.layers is None and self.cards:
                self.layers = self._layer_view(index, truth_lab[k:k + 1])

    def _offer_worst(self, score: float, index: int) -> bool:
        """Keep the report_worst highest scores; drop the card of one pushed out (unless it is also in the spread)."""
        k = self.opts.report_worst
        if k <= 0 or not np.isfinite(score):
            return False
        if len(self.worst) < k:
            heapq.heappush(self.worst, (score, index))
            return True
        if score <= self.worst[0][0]:
            return False
        _, dropped = heapq.heapreplace(self.worst, (score, index))
        if dropped not in self.spread and dropped in self.cards:
            for name in self.cards.pop(dropped)["files"]:
                (self.dir / name).unlink(missing_ok=True)
        return True

    def _write_card(self, index: int, k: int, truth_u8, preds: dict, host: dict, score: float) -> None:
        """The shown images of one photo, its difference maps, and pixels/ID.js for the pixel inspector."""
        ident = f"{index:06d}"
        truth = _shown(truth_u8[k])
        shown = {label: _shown(preds[label][k]) for label in self.labels}
        raw = {label: png_bytes(rgb) for label, rgb in shown.items()}
        paths = {"truth": f"img/{ident}_truth.png", "pixels": f"pixels/{ident}.js",
                 "pred": {l: f"img/{ident}_pred_{self.files[l]}.png" for l in self.labels},
                 "errors": {l: f"img/{ident}_errors_{self.files[l]}.png" for l in self.models}}
        truth_png = png_bytes(truth)
        write_atomic(self.dir / paths["truth"], truth_png)
        for label in self.labels:
            write_atomic(self.dir / paths["pred"][label], raw[label])
        truth_lab = rgb_to_lab(torch.from_numpy(truth).permute(2, 0, 1)[None].float() / 255)
        side = min(MAX_SIDE, max(MIN_MAP_SIDE, *truth.shape[:2]))
        for label in self.models:  # the maps of the shown pixels, so that they agree with the inspector
            pred_lab = rgb_to_lab(torch.from_numpy(shown[label]).permute(2, 0, 1)[None].float() / 255)
            save_png(difference_maps(pred_lab, truth_lab, side), self.dir / paths["errors"][label])
        dists = {label: self._distributions(label, truth_u8[k]) for label in self.classes}
        script = page.pixel_script(ident, truth_png, {l: raw[l] for l in self.models},
                                   {"dists": dists} if dists else None)
        write_atomic(self.dir / paths["pixels"], script)
        files = [paths["truth"], paths["pixels"], *paths["pred"].values(), *paths["errors"].values()]
        metrics = {l: {m: float(v[k]) for m, v in host[l].items()} for l in self.labels}
        self.cards[index] = {"id": ident, "name": self.names[index], "files": files, "paths": paths, "size": truth.shape[1::-1], "metrics": metrics, "score": score,
                             "shrunk": max(truth_u8.shape[-2:]) > MAX_SIDE}

    def _distributions(self, label: str, image: torch.Tensor) -> dict:
        """A classification model's top bins for a grid of its output pixels on one image, for the inspector."""
        from gan_colorizer.colorize.inference import downsample_l, full_res_l, render_shape
        cand = self.candidates[label]
        gray_l = full_res_l(image[None])  # in row chunks: a full-res photo needs no full-size Lab temporaries
        shape = render_shape(*gray_l.shape[-2:], self.opts.image_size, cand.multiple)
        return inspector_grid(logits_of(cand.generator, downsample_l(gray_l, shape), self.runtime)[0])

    def _layer_view(self, index: int, truth_lab: torch.Tensor) -> dict:
        """Feature-map grids and activation charts of every stage of every model, on one image."""
        from gan_colorizer.color import lab_to_model
        from gan_colorizer.colorize.inference import downsample_l
        from gan_colorizer.inspect.features import activation_chart, capture, feature_grid, select_stages
        gray_l = lab_to_model(truth_lab)[0]
        view = {"image": self.names[index], "id": f"{index:06d}", "models": {}, "unavailable": {}}
        for label, (generator, shape, runtime) in self._networks(gray_l.shape[-2:]).items():
            try:
                chosen = select_stages(generator)
            except ValueError as e:
                view["unavailable"][label] = str(e)
                continue
            _, outputs = capture(generator, downsample_l(gray_l, shape), chosen, runtime)
            layers = []
            for i, (name, fmap) in enumerate(outputs.items()):
                stem = f"layers/{self.files[label]}/{i:02d}_{name}"
                title = f"{name}  {fmap.shape[1]} x {fmap.shape[2]} x {fmap.shape[3]}"
                save_png(feature_grid(fmap[0], title), self.dir / f"{stem}_channels.png")
                save_png(activation_chart(fmap[0], name), self.dir / f"{stem}_activations.png")
                group = next(s.group for s in chosen if s.name == name)
                layers.append({"name": name, "group": group, "shape": list(fmap.shape[1:]),
                               "channels": f"{stem}_channels.png", "activations": f"{stem}_activations.png"})
            view["models"][label] = {"input": list(shape), "layers": layers}
        return view

    def _networks(self, size) -> dict:
        """{label: (network called as our generators are, its input shape for a photo of `size`, its runtime)}: our
        checkpoints at --image-size, the published models at their authors' square render size, in fp32."""
        from gan_colorizer.colorize.inference import render_shape
        from gan_colorizer.colorize.published import AsGenerator
        networks = {label: (cand.generator, render_shape(*size, self.opts.image_size, cand.multiple), self.runtime)
                    for label, cand in self.candidates.items()}
        for label, colorizer in self.published.items():
            side = colorizer.render_size
            networks[label] = (AsGenerator(colorizer.published), (side, side), colorizer.runtime)
        return {label: networks[label] for label in self.models if label in networks}  # the table's order

    def finish(self, summary: dict, values: dict, measured: dict, metrics: tuple, count: int) -> Path:
        """Write the distributions, the assets and index.html; returns its path."""
        truth = self.dists["ground truth"]
        models = {l: self.dists[l] for l in self.models}
        if count:  # a folder of clips only has no photo distributions (the page leaves their section out)
            distribution_figure(truth, models, self.dir / "ab_distribution.png")
        with replacing(self.dir / "color_histograms.npz") as tmp, open(tmp, "wb") as f:
            np.savez_compressed(f, **{f"{self.files.get(k, 'ground_truth')}_{kind}": getattr(d, kind)
                                      for k, d in self.dists.items() for kind in "ab l c".split()})
        colors = {l: compare(d, truth) for l, d in models.items()}
        classes = {}
        for label in self.classes:  # each classification model's training prior, and its bins for the inspector
            cand, path = self.candidates[label], f"prior_{self.files[label]}.png"
            prior_figure(cand.generator, self.dir / path, cand.info.get("color_prior"))
            classes[label] = {**page_bins(cand.generator), "prior": path}
        for asset in ("report.css", "report.js"):
            write_atomic(self.dir / asset, (resources.files("gan_colorizer.report") / "assets" / asset).read_bytes())
        rows = self._table_rows(values, count)
        table = page.ImageTable(self.labels, [m for m in metrics if any(m in measured[l] for l in self.labels)],
                                rows, values, self.names, self.row_index, {c["id"] for c in self.cards.values()},
                                count)
        worst = [self.cards[i] for _, i in sorted(self.worst, reverse=True) if i in self.cards]
        shown = {c["id"] for c in worst}  # an image among the worst is shown once, there
        spread = [self.cards[i] for i in sorted(self.spread) if i in self.cards and self.cards[i]["id"] not in shown]
        html = page.render(summary, self.labels, self.models, worst, spread, table, colors, self.layers, classes)
        path = self.dir / "index.html"
        write_atomic(path, html)
        return path

    def _table_rows(self, values: dict, count: int) -> np.ndarray:
        """Evaluation rows in the per-image table: all of them, or the TABLE_MAX_ROWS worst by CIEDE2000."""
        if count <= TABLE_MAX_ROWS:
            return np.arange(count)
        de = np.nanmean([values[l][METRICS.index("delta_e2000"), :count] for l in self.models], axis=0)
        return np.sort(np.argsort(-de, kind="stable")[:TABLE_MAX_ROWS])
