"""evaluate.py --report: the files it writes, what it selects, and the page in a real headless Chromium."""
import csv
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from browser import Chromium, find_chromium
from conftest import make_photo_folder
from PIL import Image
from skimage.color import deltaE_ciede2000, rgb2lab
from test_evaluate import TinyGenerator  # a 3x3 convolution: fast, and of no known generator type

from gan_colorizer.checkpoint import save_atomic
from gan_colorizer.config import defaults
from gan_colorizer.evaluate.run import EvalOptions, evaluate
from gan_colorizer.inspect.anatomy import stages
from gan_colorizer.models.registry import build_generator, load_generator

LABELS = ["a", "b"]
N_IMAGES, SPREAD, WORST = 7, 3, 2


def save_checkpoint(path: Path, seed: int, head: str = "regression") -> Path:
    torch.manual_seed(seed)
    cfg = defaults("pretrain")
    cfg.model.head = head
    save_atomic({"format_version": 1, "stage": "pretrain", "config": cfg.to_dict(), "step": 1, "epoch": 0,
                 "metrics": {}, "generator": build_generator(cfg.model, load_pretrained=False).state_dict()}, path)
    return path


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """Two ResNet U-Nets (different seeds; b with the classification head) on 7 photos of 48 x 40, center-cropped to
    32 px, in batches of 3."""
    root = tmp_path_factory.mktemp("report")
    data = root / "photos"
    make_photo_folder(data, N_IMAGES)
    ckpts = [str(save_checkpoint(root / f"{label}.pt", seed, head)) for seed, (label, head) in
             enumerate(zip(LABELS, ("regression", "classification")))]
    out = root / "out"
    summary = evaluate(EvalOptions(checkpoints=ckpts, labels=LABELS, data=str(data), out=str(out), image_size=32,
                                   batch_size=3, num_workers=0, report=True, report_images=SPREAD,
                                   report_worst=WORST))
    with open(out / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return out / "report", summary, rows, ckpts


def card_ids(html: str, section: str) -> list[str]:
    part = re.search(rf'<section id="{section}">(.*?)</section>', html, re.S).group(1)
    return re.findall(r'<article class="card" id="img-(\d+)"', part)


def mean_de(rows) -> dict[str, float]:
    per_image = {}
    for r in rows:
        if r["label"] in LABELS:
            per_image.setdefault(r["image"], []).append(float(r["delta_e2000"]))
    return {name: float(np.mean(v)) for name, v in per_image.items()}


@pytest.mark.slow
def test_report_shows_the_worst_images_and_a_spread_and_keeps_only_their_files(report):
    folder, summary, rows, _ = report
    html = (folder / "index.html").read_text()
    assert summary["outputs"]["report"] == str(folder / "index.html")
    names = sorted({r["image"] for r in rows})  # the dataset order: sorted paths
    scores = mean_de(rows)
    worst = sorted(names, key=lambda n: -scores[n])[:WORST]
    assert [names[int(i)] for i in card_ids(html, "worst")] == worst
    spread = [i for i in (0, 3, 6) if names[i] not in worst]  # an image among the worst is shown once
    assert [int(i) for i in card_ids(html, "images")] == spread
    shown = {f"{names.index(n):06d}" for n in worst} | {f"{i:06d}" for i in spread}
    on_disk = {p.name.split("_")[0] for p in (folder / "img").iterdir()} | {p.stem for p in (folder / "pixels").iterdir()}
    assert on_disk == shown  # the cards of images pushed out of the worst were deleted
    for ident in shown:
        assert {p.name for p in (folder / "img").glob(f"{ident}_*")} == {
            f"{ident}_{s}.png" for s in ["truth", "pred_gray", *(f"pred_{l}" for l in LABELS),
                                          *(f"errors_{l}" for l in LABELS)]}


@pytest.mark.slow
def test_report_is_self_contained_and_holds_distributions_and_layers(report):
    folder, summary, _, ckpts = report
    html = (folder / "index.html").read_text()
    links = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert not [l for l in links if re.match(r"(https?:)?//", l)]  # no CDN, no server
    for link in links:
        if not link.startswith(("#", "data:")):
            assert (folder / link.split("#")[0]).exists(), link
    hist = np.load(folder / "color_histograms.npz")
    assert hist["ground_truth_ab"].sum() == N_IMAGES * 32 * 32 and hist["a_ab"].sum() == N_IMAGES * 32 * 32
    assert hist["ground_truth_l"].shape == (100,)
    assert Image.open(folder / "ab_distribution.png").size[0] > 500
    layers = sorted((folder / "layers" / "a").glob("*_channels.png"))
    generator = load_generator(ckpts[0])[0]
    assert [p.name.split("_", 1)[1][: -len("_channels.png")] for p in layers] == [s.name for s in stages(generator)]
    assert len(list((folder / "layers" / "b").glob("*_activations.png"))) == len(layers)
    assert (folder / "prior_b.png").is_file() and not (folder / "prior_a.png").exists()  # b: classification head
    assert 'src="prior_b.png"' in html and "window.REPORT_CLASSES" in html
    script = next((folder / "pixels").iterdir()).read_text()
    assert '"dists": {"b": {"net": [32, 32], "grid": [32, 32], "k": 16' in script


@pytest.fixture(scope="module")
def page(report, tmp_path_factory):
    """The report open in one headless Chromium session for all browser checks."""
    browser = Chromium(find_chromium())
    try:
        browser.open((report[0] / "index.html").as_uri())
        yield browser
        browser.screenshot(tmp_path_factory.mktemp("shot") / "report.png")  # kept for a look by hand
    finally:
        browser.close()


@pytest.mark.system
def test_page_loads_without_console_errors_and_every_image_loads(page):
    assert page.errors() == []
    broken = page.evaluate("Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0)"
                           ".map(i => i.getAttribute('src'))")
    assert page.evaluate("document.images.length") > 50 and broken == []


def box(page, selector: str) -> dict:
    return page.evaluate(f"(() => {{ const e = document.querySelector({selector!r}); e.scrollIntoView({{block: 'center'}});"
                         f" const r = e.getBoundingClientRect(); return {{x: r.left, y: r.top, w: r.width, h: r.height}}; }})()")


@pytest.mark.system
def test_clicking_a_column_header_sorts_the_table(page, report):
    _, _, rows, _ = report
    de_b = {r["image"]: float(r["delta_e2000"]) for r in rows if r["label"] == "b"}
    heads = page.evaluate("Array.from(document.querySelectorAll('#image-table thead tr:nth-child(2) th'))"
                          ".map(th => th.textContent)")
    column = heads.index("CIEDE2000 \u2193", len(heads) // 3 * 2)  # gray, a, b: the third group
    selector = f"#image-table thead tr:nth-child(2) th:nth-child({column + 1})"
    order = "Array.from(document.querySelectorAll('#image-table tbody tr')).map(r => r.cells[0].dataset.value)"
    for expected in (sorted(de_b, key=de_b.get), sorted(de_b, key=de_b.get, reverse=True)):
        b = box(page, selector)
        page.click(b["x"] + b["w"] / 2, b["y"] + b["h"] / 2)
        assert page.evaluate(order) == expected


@pytest.mark.system
def test_hovering_a_pixel_shows_its_l_ab_and_ciede2000(page, report):
    folder = report[0]
    ident = page.evaluate("document.querySelector('#worst .card').dataset.id")
    truth = np.asarray(Image.open(folder / "img" / f"{ident}_truth.png").convert("RGB"))
    truth_lab = rgb2lab(truth)
    preds = {l: rgb2lab(np.asarray(Image.open(folder / "img" / f"{ident}_pred_{l}.png").convert("RGB")))
             for l in LABELS}
    h, w = truth.shape[:2]
    for x, y in ((5, 9), (w - 3, h - 12)):
        b = box(page, f"#img-{ident} img.inspect[data-source='b']")
        px, py = b["x"] + (x + 0.5) / w * b["w"], b["y"] + (y + 0.5) / h * b["h"]
        page.mouse_move(px, py)
        page.evaluate("new Promise(done => setTimeout(done, 300))")  # the pixel script loads and decodes once
        page.mouse_move(px + 0.01, py)
        shown = page.evaluate("Object.fromEntries(Array.from(document.querySelectorAll('#inspector [data-field]'))"
                              ".map(e => [(e.closest('tr') ? e.closest('tr').dataset.source + ' ' : '') + e.dataset.field,"
                              " e.textContent]))")
        assert (int(shown["x"]), int(shown["y"])) == (x, y)
        expected = {"L": truth_lab[y, x, 0], "ground truth a": truth_lab[y, x, 1], "ground truth b": truth_lab[y, x, 2]}
        for label, lab in preds.items():
            expected |= {f"{label} a": lab[y, x, 1], f"{label} b": lab[y, x, 2],
                         f"{label} de": deltaE_ciede2000(lab[y, x], truth_lab[y, x])}
        for key, value in expected.items():
            assert float(shown[key]) == pytest.approx(value, abs=0.011), key
        check_distribution(page, report, truth, x, y)


def check_distribution(page, report, truth: np.ndarray, x: int, y: int) -> None:
    """The inspector draws b's (classification) predicted distribution at that pixel, and none for a."""
    from gan_colorizer.color import rgb_to_model
    figures = "Array.from(document.querySelectorAll('#inspector figure.dist'))"
    assert page.evaluate(f"{figures}.map(f => f.dataset.source)") == ["b"]
    shown = page.evaluate("Object.fromEntries(Array.from(document.querySelectorAll('#inspector figure.dist "
                          "[data-field]')).map(e => [e.closest('figure').dataset.source + ' ' + e.dataset.field, "
                          "e.textContent]))")
    assert (int(shown["b net-x"]), int(shown["b net-y"])) == (x, y)  # 32 px output: every pixel is on the grid
    generator = load_generator(report[3][1])[0]
    gray_l, _ = rgb_to_model(torch.from_numpy(np.array(truth)).permute(2, 0, 1)[None].contiguous())
    with torch.no_grad():
        p = torch.softmax(generator(gray_l, return_logits=True)[0][0, :, y, x].double(), 0)
    shown_bin = [float(shown["b top-a"]), float(shown["b top-b"])]
    top = next(i for i, ab in enumerate(generator.bins.tolist()) if ab == shown_bin)
    assert float(shown["b top-p"]) == pytest.approx(p[top].item(), abs=2e-4) and p.max() - p[top] < 1e-4
    inked = page.evaluate("(() => { const c = document.querySelector('#inspector figure.dist canvas');"
                          " const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0;"
                          " for (let i = 0; i < d.length; i += 4) if (d[i] + d[i + 1] + d[i + 2] < 600) n++;"
                          " return n; })()")
    assert inked > 500  # the top bins and the marks are drawn


def test_report_keeps_a_bounded_number_of_images_while_streaming(tmp_path, monkeypatch):
    from gan_colorizer.evaluate import run as evaluation
    monkeypatch.setattr(evaluation, "load_generator",
                        lambda path, device="cpu", weights="auto": (TinyGenerator().eval(), defaults("pretrain"), {}))
    rng = np.random.default_rng(0)
    (tmp_path / "photos").mkdir()
    for i in range(60):
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(tmp_path / "photos" / f"{i:02d}.png")
    opts = EvalOptions(checkpoints=["tiny.pt"], data=str(tmp_path / "photos"), out=str(tmp_path / "out"), image_size=16,
                       batch_size=7, num_workers=0, grid_images=0, report=True, report_images=4, report_worst=3)
    evaluator = evaluation.Evaluator(opts)
    held = []
    evaluator.run(on_batch=lambda n: held.append((len(evaluator.report.html.cards),
                                                  len(list((tmp_path / "out" / "report" / "img").iterdir())))))
    assert len(held) == 9 and max(cards for cards, _ in held) <= 4 + 3
    assert all(files == 4 * cards for cards, files in held)  # gray, model, truth and errors of each card
    html = (tmp_path / "out" / "report" / "index.html").read_text()
    assert "No layer view: tiny: TinyGenerator names no stages" in html
    assert len(card_ids(html, "worst")) == 3


def test_a_long_evaluation_keeps_the_worst_images_by_mean_ciede2000_in_the_table(monkeypatch):
    from types import SimpleNamespace

    from gan_colorizer.metrics import METRICS
    from gan_colorizer.report import collect
    monkeypatch.setattr(collect, "TABLE_MAX_ROWS", 3)
    values = {label: np.zeros((len(METRICS), 8)) for label in LABELS}
    values["a"][METRICS.index("delta_e2000")] = [1, 9, 2, 8, 3, 7, 4, 0]
    values["b"][METRICS.index("delta_e2000")] = [1, 0, 2, 9, 3, 0, 4, 20]  # means: 1 4.5 2 8.5 3 3.5 4 10
    rows = collect.HtmlReport._table_rows(SimpleNamespace(models=LABELS), values, 8)
    assert rows.tolist() == [1, 3, 7]
    assert collect.HtmlReport._table_rows(SimpleNamespace(models=LABELS), values, 3).tolist() == [0, 1, 2]


def test_a_label_cannot_end_or_comment_out_the_pages_inline_script():
    """A classification model's label in REPORT_CLASSES: '<!--<script>' used to swallow the report.js tag after it."""
    import json

    from gan_colorizer.report import page
    label, bins = "b <!--<script></script>", {"ab": [[0, 0]], "rgb": [[1, 2, 3]]}
    summary = {"protocol": {"name": "center-crop", "description": "", "precision": "fp32", "metrics": {}},
               "n_images": 0, "data": "d", "skipped": [], "device": "cpu", "models": {"gray": {}, label: {}}}
    table = page.ImageTable(["gray", label], [], np.arange(0), {}, [], np.arange(0), set(), 0)
    html = page.render(summary, ["gray", label], [label], [], [], table, {}, None, {label: {**bins, "prior": "p.png"}})
    inline = re.search(r"<script>window.REPORT_CLASSES = (.*?);</script>", html, re.S).group(1)
    assert "<" not in inline and json.loads(inline) == {label: bins}
    assert html.count('<script src="report.js"></script>') == 1


def test_nothing_of_an_earlier_report_survives_a_later_one_in_the_same_out(tmp_path, monkeypatch):
    from gan_colorizer.evaluate import run as evaluation
    monkeypatch.setattr(evaluation, "load_generator",
                        lambda path, device="cpu", weights="auto": (TinyGenerator().eval(), defaults("pretrain"), {}))
    make_photo_folder(tmp_path / "photos", 3)
    opts = EvalOptions(checkpoints=["tiny.pt"], data=str(tmp_path / "photos"), out=str(tmp_path / "out"), image_size=16,
                       batch_size=3, num_workers=0, grid_images=0, report=True, report_images=2, report_worst=0)
    evaluate(opts)
    folder = tmp_path / "out" / "report"
    first = sorted(p.relative_to(folder) for p in folder.rglob("*"))
    stale = [folder / "img" / "999999_truth.png", folder / "pixels" / "999999.js", folder / "prior_old.png"]
    for path in stale:
        path.write_bytes(b"from an earlier evaluation")
    evaluate(opts)
    assert not any(path.exists() for path in stale)
    assert sorted(p.relative_to(folder) for p in folder.rglob("*")) == first


def test_the_clip_summary_is_the_photo_summary_table_with_a_truth_row():
    from gan_colorizer.report.page import CLIP_COLUMNS, clip_section, summary_table
    models = {"gray": {"delta_e2000": 12.5, "warp_error": 0.0}, "m<1>": {"delta_e2000": 9.25, "psnr": 21.0}}
    clips = {"models": models, "truth": {"warp_error": 1.5, "colorfulness": 30.0}, "clips": [], "n_clips": 0,
             "n_frames": 0, "temporal": 0.5}
    table = re.search(r'<table id="clip-summary">.*?</table>', clip_section(clips), re.S).group(0)
    rows = re.findall(r"<tr><td[^>]*>(.*?)</td>(.*?)</tr>", table)
    assert [name for name, _ in rows] == ["gray", "m&lt;1&gt;", "ground truth (reference)"]
    cells = [re.findall(r'data-value="([^"]*)"', row) for _, row in rows]
    assert cells == [[repr(v[c]) if c in v else "" for c in CLIP_COLUMNS]
                     for v in (*models.values(), clips["truth"])]
    assert table == summary_table("clip-summary", [*models.items(), ("ground truth (reference)", clips["truth"])],
                                  CLIP_COLUMNS)
