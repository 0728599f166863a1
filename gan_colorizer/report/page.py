"""The HTML of evaluate.py --report: index.html from what collect.py gathered, and the pixel-data scripts."""
from __future__ import annotations

import base64
import json
import math
from dataclasses import dataclass
from html import escape

import numpy as np

from gan_colorizer.data.benchmarks import COMPARED, OURS, THEIRS, beside_ours
from gan_colorizer.inspect.ab_histograms import DECADES
from gan_colorizer.metrics import METRICS

METRIC_NAMES = {  # column title, and the better direction shown beside it
    "psnr": "PSNR dB \u2191", "ssim": "SSIM \u2191", "delta_e2000": "CIEDE2000 \u2193", "colorfulness": "colorfulness",
    "delta_colorfulness": "\u0394 colorfulness \u2193", "auc_ab": "AuC ab \u2191", "lpips": "LPIPS \u2193",
    "fid": "FID \u2193", "img_per_sec": "img/s", "ab_intersection": "ab \u2229 truth \u2191",
    "mean_chroma": "mean chroma", "warp_error": "warp error \u2193", "fps": "frames/s"}
DIGITS = {"psnr": 2, "ssim": 4, "delta_e2000": 2, "colorfulness": 2, "delta_colorfulness": 2, "auc_ab": 4,
          "lpips": 4, "fid": 2, "img_per_sec": 1, "ab_intersection": 3, "mean_chroma": 1, "warp_error": 2, "fps": 1,
          "frames": 0, "cuts": 0}
CLIP_COLUMNS = ("delta_e2000", "psnr", "ssim", "colorfulness", "warp_error", "fps")  # the clips' set table
SUMMARY_COLUMNS = ("psnr", "ssim", "delta_e2000", "colorfulness", "delta_colorfulness", "auc_ab", "lpips", "fid",
                   "ab_intersection", "mean_chroma", "img_per_sec")


def pixel_script(ident: str, truth_png: bytes, model_pngs: dict[str, bytes], extra: dict | None = None) -> str:
    """pixels/ID.js: the shown truth and predictions as PNG data URLs, read back by the inspector (and, in extra,
    the top-k distributions of classification models: class_views.inspector_grid)."""
    url = lambda raw: "data:image/png;base64," + base64.b64encode(raw).decode("ascii")  # noqa: E731
    entry = {"truth": url(truth_png), "models": {label: url(raw) for label, raw in model_pngs.items()}, **(extra or {})}
    return (f"window.REPORT_PIXELS = window.REPORT_PIXELS || {{}};\n"
            f"window.REPORT_PIXELS[{script_json(ident)}] = {script_json(entry)};\n")


def script_json(value) -> str:
    """JSON for a <script>: no '<', '>' or '&' at all (as \\u escapes, the same strings to JavaScript), so no label
    can close the script or open an HTML comment ('<!--') that hides the rest of the page's scripts."""
    return json.dumps(value).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def number_cell(value, metric: str, extra: str = "") -> str:
    """A right-aligned number whose exact value sorts (blank and sorted last when undefined)."""
    if value is None or not isinstance(value, (int, float)) or not math.isfinite(value):
        shown = "inf" if isinstance(value, float) and value == math.inf else "\u2013"
        return f'<td data-value=""{extra}>{shown}</td>'
    return f'<td data-value="{value!r}"{extra}>{value:.{DIGITS.get(metric, 3)}f}</td>'


@dataclass
class ImageTable:
    """The per-image metrics: one row per image, a column group per label."""
    labels: list[str]
    metrics: list[str]
    rows: np.ndarray  # evaluation rows shown
    values: dict  # label -> (len(METRICS), n) array
    names: list[str]
    row_index: np.ndarray  # evaluation row -> dataset index
    cards: set  # ids of the images shown as cards
    count: int

    def html(self, all_metrics: tuple) -> str:
        groups = "".join(f'<th class="group" colspan="{len(self.metrics)}">{escape(l)}</th>' for l in self.labels)
        heads, col = [], 1
        for _ in self.labels:
            for j, m in enumerate(self.metrics):
                first = ' class="first"' if j == 0 else ""
                heads.append(f'<th data-col="{col}" data-type="num"{first}>{escape(METRIC_NAMES[m])}</th>')
                col += 1
        body = [self._row(r, all_metrics) for r in self.rows]
        note = "" if len(self.rows) == self.count else (
            f'<p class="note">The {len(self.rows)} images with the highest CIEDE2000 (mean over the models) of '
            f'{self.count}; every image is in <a href="../metrics.csv">metrics.csv</a>.</p>')
        return (f'{note}<div class="scroll"><table id="image-table"><thead><tr><th rowspan="2" data-col="0" '
                f'data-type="text">image</th>{groups}</tr><tr>{"".join(heads)}</tr></thead>'
                f'<tbody>{"".join(body)}</tbody></table></div>')

    def _row(self, row: int, all_metrics: tuple) -> str:
        index = int(self.row_index[row])
        name, ident = self.names[index], f"{index:06d}"
        link = f'<a href="#img-{ident}">{escape(name)}</a>' if ident in self.cards else escape(name)
        cells = [f'<td data-value="{escape(name)}">{link}</td>']
        for label in self.labels:
            for j, m in enumerate(self.metrics):
                value = float(self.values[label][all_metrics.index(m), row])
                cells.append(number_cell(value, m, ' class="first"' if j == 0 else ""))
        return f"<tr>{''.join(cells)}</tr>"


def summary_table(table_id: str, rows: list[tuple[str, dict]], columns) -> str:
    """Set figures, sortable: one row per (name, {metric: value}), one number column per metric of `columns`."""
    head = "".join(f'<th data-col="{i + 1}" data-type="num">{escape(METRIC_NAMES[c])}</th>' for i, c in enumerate(columns))
    body = "".join(f'<tr><td data-value="{escape(name)}">{escape(name)}</td>'
                   f'{"".join(number_cell(values.get(c), c) for c in columns)}</tr>' for name, values in rows)
    return (f'<table id="{table_id}"><thead><tr><th data-col="0" data-type="text">model</th>{head}</tr></thead>'
            f'<tbody>{body}</tbody></table>')


def card(c: dict, labels: list[str], models: list[str], metrics: list[str]) -> str:
    """One image: gray input, each model, the truth (all inspectable), difference maps, its metrics."""
    p = c["paths"]

    def tile(source: str, path: str, caption: str) -> str:
        return (f'<figure><div class="tile"><img class="inspect" data-source="{escape(source)}" '
                f'src="{escape(path)}" alt="{escape(source)}"><span class="mark" hidden></span></div>'
                f'<figcaption>{caption}</figcaption></figure>')
    m = c["metrics"]
    gray = [l for l in labels if l not in models][0]
    tiles = [tile(gray, p["pred"][gray], "input L (and the gray baseline)")]
    tiles += [tile(l, p["pred"][l], f"{escape(l)}<br>CIEDE2000 {m[l]['delta_e2000']:.2f} \u00b7 "
                                    f"PSNR {m[l]['psnr']:.2f} dB") for l in models]
    tiles.append(tile("ground truth", p["truth"], "ground truth"))
    errors = [f'<figure><img src="{escape(p["errors"][l])}" alt="errors {escape(l)}"><figcaption>{escape(l)}: '
              f'CIEDE2000 | |\u0394a| | |\u0394b| per pixel (fixed scales, ab units)</figcaption></figure>' for l in models]
    head = "".join(f"<th>{escape(METRIC_NAMES[k])}</th>" for k in metrics)
    rows = "".join(f"<tr><td>{escape(l)}</td>{''.join(number_cell(m[l].get(k), k) for k in metrics)}</tr>"
                   for l in labels)
    shrunk = ' <span class="muted">(shown shrunk; metrics at full size)</span>' if c["shrunk"] else ""
    return (f'<article class="card" id="img-{c["id"]}" data-id="{c["id"]}" data-name="{escape(c["name"])}">'
            f'<h3>{escape(c["name"])} <span class="muted">{c["size"][0]} x {c["size"][1]} px{shrunk}; mean '
            f'CIEDE2000 of the models {c["score"]:.2f}</span></h3><div class="tiles">{"".join(tiles)}</div>'
            f'<div class="errors">{"".join(errors)}</div><table class="mini"><thead><tr><th></th>{head}</tr></thead>'
            f'<tbody>{rows}</tbody></table></article>')


def clip_section(clips: dict | None) -> str:
    """Clips (issue 17): the set means per model with the truth's own warp error as a reference, one row per clip, and a
    strip of consecutive frames for the clips shown."""
    if not clips:
        return ""
    table = summary_table("clip-summary", [*clips["models"].items(), ("ground truth (reference)", clips["truth"])],
                          CLIP_COLUMNS)
    labels = list(clips["models"])
    per_head = "".join(f'<th data-col="{4 + 2 * i}" data-type="num" class="first">{escape(l)} '
                       f'{METRIC_NAMES["delta_e2000"]}</th><th data-col="{5 + 2 * i}" data-type="num">{escape(l)} '
                       f'{METRIC_NAMES["warp_error"]}</th>' for i, l in enumerate(labels))
    per_clip = "".join(
        f'<tr><td data-value="{escape(c["clip"])}">{escape(c["clip"])}</td>{number_cell(c["frames"], "frames")}'
        f'{number_cell(c["cuts"], "cuts")}{number_cell(c["warp_error_truth"], "warp_error")}'
        + "".join(number_cell(c["models"][l]["delta_e2000"], "delta_e2000", ' class="first"')
                  + number_cell(c["models"][l]["warp_error"], "warp_error") for l in labels) + "</tr>"
        for c in clips["clips"])
    strips = "".join(f'<figure><img src="{escape(c["report_strip"])}" alt="frames of {escape(c["clip"])}">'
                     f'<figcaption>{escape(c["clip"])}: consecutive frames (from the middle when its container gives the frame count)</figcaption></figure>'
                     for c in clips["clips"] if c.get("report_strip"))
    return (f'<section id="clips"><h2>Clips</h2><p class="note">{clips["n_clips"]} clips, {clips["n_frames"]} '
            f'frames, temporal filter strength {clips["temporal"]:g} (0 = each frame on its own). Photo metrics are '
            f'means over each clip\'s frames, then over the clips; warp error (Lai et al. 2018): ab change along the '
            f'true frames\' optical flow, over reliable pixels; the truth\'s own is a reference: an output smoother than the truth goes below it.</p>'
            f'{table}<div class="scroll"><table id="clip-table"><thead><tr>'
            f'<th data-col="0" data-type="text">clip</th><th data-col="1" data-type="num">frames</th>'
            f'<th data-col="2" data-type="num">cuts</th><th data-col="3" data-type="num">truth warp error</th>'
            f'{per_head}</tr></thead><tbody>{per_clip}</tbody></table></div><div class="tiles">{strips}</div></section>')


def prior_section(classes: dict) -> str:
    """The training prior of each classification model, drawn as the distributions above."""
    if not classes:
        return ""
    images = "".join(f'<figure><img src="{escape(c["prior"])}" alt="prior {escape(l)}"><figcaption>{escape(l)}: '
                     f'the color prior of its training set (rebalancing weights ~ 1 / prior)</figcaption></figure>'
                     for l, c in classes.items())
    return (f'<h3>Training priors of the classification models</h3><p class="note">How often each ab bin occurs in '
            f'the training pixels, smoothed (Zhang et al. 2016); the pixel inspector draws the predicted distribution '
            f'of the pixel under the mouse the same way.</p><div class="tiles">{images}</div>')


def distribution_section(colors: dict) -> str:
    rows = "".join(f'<tr><td>{escape(l)}</td>{number_cell(c["ab_intersection"], "ab_intersection")}'
                   f'{number_cell(c["mean_chroma"], "mean_chroma")}{number_cell(c["truth_mean_chroma"], "mean_chroma")}</tr>'
                   for l, c in colors.items())
    return (f'<p class="note">Top: the 2-D histogram of ab over every pixel of the set (2 x 2 ab-unit bins), each bin '
            f'drawn in its own color at L = 50 with opacity = log density (from the densest bin down to '
            f'10<sup>-{DECADES:g}</sup> of it; light gray marks colors that exist in sRGB at L = 50). Predictions '
            f'squeezed toward the center are the gray / brown bias of L1 training; missing regions are colors the '
            f'model never produces. Bottom: the chroma distributions and the L histogram of the inputs.</p>'
            f'<img src="ab_distribution.png" alt="ab distributions" style="max-width:100%">'
            f'<table><thead><tr><th>model</th><th>{METRIC_NAMES["ab_intersection"]}</th><th>mean chroma</th>'
            f'<th>truth mean chroma</th></tr></thead><tbody>{rows}</tbody></table>'
            f'<p class="note">ab \u2229 truth: histogram intersection of the ab distributions (1 = the same). Raw '
            f'counts: <a href="color_histograms.npz">color_histograms.npz</a>.</p>')


def layer_section(view: dict | None) -> str:
    if not view or not view["models"]:
        reasons = "; ".join(f"{escape(l)}: {escape(r)}" for l, r in (view or {}).get("unavailable", {}).items())
        return f'<p class="note">No layer view{": " + reasons if reasons else ""}.</p>'
    options = "".join(f'<option value="{escape(l)}">{escape(l)}</option>' for l in view["models"])
    sets = []
    for label, model in view["models"].items():
        layers = "".join(
            f'<div class="layer"><h4>{escape(layer["name"])} <span class="tag">{layer["group"]}</span> '
            f'<span class="muted">{" x ".join(map(str, layer["shape"]))} (channels x height x width)</span></h4>'
            f'<div class="pair"><img src="{escape(layer["channels"])}" alt="{escape(layer["name"])} channels">'
            f'<img src="{escape(layer["activations"])}" alt="{escape(layer["name"])} activations"></div></div>'
            for layer in model["layers"])
        sets.append(f'<div class="layer-set" data-model="{escape(label)}"><p class="muted">input '
                    f'{model["input"][1]} x {model["input"][0]} px</p>{layers}</div>')
    return (f'<p class="note">What each stage of the generator makes of <a href="#img-{view["id"]}">'
            f'{escape(view["image"])}</a>, from the encoder (texture, edges) through the bottleneck to the decoder '
            f'(color). Per layer: the 16 channels with the highest mean activation, each scaled to its own '
            f'min..max (viridis), with its index and mean; then the mean activation of every filter.</p>'
            f'<label>model <select id="layer-model">{options}</select></label>{"".join(sets)}')


def photo_summary(summary: dict, colors: dict) -> str:
    columns = [c for c in SUMMARY_COLUMNS if c in ("ab_intersection", "mean_chroma")
               or any(m.get(c) is not None for m in summary["models"].values())]
    rows = [(label, {**m, **colors.get(label, {})}) for label, m in summary["models"].items()]
    return ('<section id="summary"><h2>Summary</h2>\n<p class="note">Means over the set (FID and \u0394 colorfulness '
            'per set). Click a column to sort. "gray" predicts ab = 0.</p>\n'
            + summary_table("summary-table", rows, columns) + "</section>")


def photo_sections(worst: list, spread: list, table: ImageTable, colors: dict, classes: dict | None,
                   layers: dict | None, cards) -> str:
    """The photo sections: worst images, a spread over the set, per-image metrics, distributions, layers."""
    return f"""<section id="worst"><h2>Worst images</h2>
<p class="note">The {len(worst)} images with the highest CIEDE2000 (mean over the models). Move the mouse over an
image: the inspector (bottom right) shows that pixel's L, each model's a and b and CIEDE2000, and the true a and b,
all of the 8-bit images as shown and scored. For a classification model it also draws the predicted distribution
over the ab bins (of the nearest of at most 48 x 48 sampled pixels of the network's output).</p>
{cards(worst)}</section>
<section id="images"><h2>Images across the set</h2>
<p class="note">Spread evenly over the set (those among the worst are shown above only).</p>
{cards(spread)}</section>
<section id="per-image"><h2>Per-image metrics</h2>
<p class="note">Click a column to sort (again to reverse); names link to the images shown above.</p>
{table.html(METRICS)}</section>
<section id="colors"><h2>Color distributions</h2>
{distribution_section(colors)}{prior_section(classes)}</section>
<section id="layers"><h2>Layers</h2>
{layer_section(layers)}</section>"""


def benchmark_note(bench: dict | None) -> str:
    """' of the NAME split (...)' for the header; '' outside --benchmark."""
    if not bench:
        return ""
    return (f" of the {escape(bench['name'])} split ({escape(bench['title'])}; names from {escape(bench['source'])}; "
            f'the papers\' figures for it: <a href="#published">published (theirs)</a>)')


def published_section(summary: dict) -> str:
    """The papers' figures for the split in one table with ours, each of theirs marked, the line on how our
    protocol differs from theirs, and where the figures were read; '' outside --benchmark."""
    bench = summary.get("benchmark")
    if not bench:
        return ""
    pub = bench["published"]
    head = f'<section id="published"><h2>Published figures for {escape(bench["name"])} (theirs)</h2>\n'
    if pub["source"] is None:
        return f'{head}<p class="note">No published figure read. Searched: {escape(pub["searched"])}</p></section>'
    src = pub["source"]
    rows = [(row["label"] if row["whose"] == OURS else f'{row["label"]} \u2013 {THEIRS}', row)
            for row in beside_ours(summary["models"], pub)]
    notes = "".join(f"<li>{escape(k)}: {escape(v)}</li>" for k, v in src["metric_notes"].items())
    return (f'{head}<p><strong>{escape(pub["protocol_note"])}</strong></p>\n'
            f'<p class="note">Rows marked {THEIRS} are {escape(src["cite"])}, column {escape(pub["column"])}, '
            f'measured by {escape(src["measured_by"])}; not measured here. Their protocol: '
            f'{escape(src["protocol"]["text"])}.</p>\n' + summary_table("published-table", rows, COMPARED)
            + f'<p class="note">Metrics: </p><ul class="note">{notes}</ul><p class="note">Read: {escape(src["read"])} '
            f'Left out: {escape(src["left_out"])}</p></section>')


def render(summary: dict, labels, models, worst: list, spread: list, table: ImageTable, colors: dict,
           layers: dict | None, classes: dict | None = None) -> str:
    proto = summary["protocol"]
    metrics = table.metrics
    cards = lambda cs: "".join(card(c, labels, models, metrics) for c in cs) or '<p class="note">none</p>'  # noqa: E731
    notes = "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in proto["metrics"].items())
    missing = "".join(f"<li>{escape(k)}: {escape(v)}</li>" for k, v in summary.get("unavailable", {}).items())
    skipped = len(summary["skipped"])
    bins = {l: {"ab": c["ab"], "rgb": c["rgb"]} for l, c in (classes or {}).items()}
    bins_js = script_json(bins)
    clips = summary.get("clips")
    photos = summary["n_images"] > 0 or not clips  # a folder of clips only: no empty photo sections
    photo_nav = ('<a href="#worst">worst images</a><a href="#images">images</a>\n<a href="#per-image">per-image '
                 'metrics</a><a href="#colors">color distributions</a><a href="#layers">layers</a>') if photos else ""
    counted = " and ".join(([f'{summary["n_images"]} images'] if photos else [])
                           + ([f'{clips["n_clips"]} clip' + "s" * (clips["n_clips"] != 1)] if clips else []))
    counted += benchmark_note(summary.get("benchmark"))
    pub_nav = '<a href="#published">published (theirs)</a>' if summary.get("benchmark") else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Evaluation report: {escape(', '.join(models))}</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><link rel="icon" href="data:,">
<link rel="stylesheet" href="report.css"></head>
<body><header><h1>Colorization evaluation</h1>
<div class="muted">{counted} from {escape(str(summary["data"]))} ({skipped} skipped);
protocol {escape(proto["name"])}: {escape(proto["description"])}; {escape(proto["precision"])} on {escape(summary["device"])}.
Files: <a href="../summary.json">summary.json</a>, <a href="../metrics.csv">metrics.csv</a>, <a href="../grids/">grids/</a>.</div>
<nav>{'<a href="#summary">summary</a>' if photos else ""}{pub_nav}{'<a href="#clips">clips</a>' if clips else ""}{photo_nav}
<a href="#notes">metric definitions</a></nav></header>
<main>
{photo_summary(summary, colors) if photos else ""}
{published_section(summary)}
{clip_section(clips)}
{photo_sections(worst, spread, table, colors, classes, layers, cards) if photos else ""}
<section id="notes"><h2>Metric definitions</h2>
<dl>{notes}</dl>{f"<p>Not computed:</p><ul>{missing}</ul>" if missing else ""}</section>
</main>
<div id="inspector"><div class="title">pixel inspector</div><div id="inspector-body" class="muted">move the mouse over
an image</div></div>
<script>window.REPORT_CLASSES = {bins_js};</script>
<script src="report.js"></script>
</body></html>
"""
