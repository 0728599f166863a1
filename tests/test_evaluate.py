"""evaluate.py end to end: outputs, numbers recomputed independently from the saved PNGs, protocols, the
pretrained-network metrics with random weights, user errors, and flat memory over 2,000 images."""
import csv
import json
import math
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import color_image, make_photo_folder, run_script
from PIL import Image
from skimage.color import deltaE_ciede2000, rgb2lab
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from gan_colorizer.config import defaults, update
from gan_colorizer.evaluate import run as evaluation
from gan_colorizer.evaluate.cli import main
from gan_colorizer.evaluate.protocols import make_labels
from gan_colorizer.evaluate.run import EvalOptions, evaluate
from gan_colorizer.models.registry import build_generator

N_COLOR = 5


def save_checkpoint(path: Path, stage: str, **model) -> Path:
    """The dict layout training writes for best.pt: weights, stage, step and the resolved config."""
    cfg = defaults(stage)
    update(cfg, {"image_size": 64, **model})
    torch.manual_seed(0)
    state = build_generator(cfg.model, load_pretrained=False).state_dict()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format_version": 1, "stage": stage, "config": cfg.to_dict(), "generator": state,
                "step": 7, "epoch": 1, "metrics": {}}, path)
    return path


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Two checkpoints named best.pt in different run folders: a stage-1 ResNet U-Net, and a stage-2 pix2pix U-Net
    (8 filters, so it is small; it renders at 256 px, the multiple it needs)."""
    root = tmp_path_factory.mktemp("ckpt")
    return [save_checkpoint(root / "run-a" / "best.pt", "pretrain"),
            save_checkpoint(root / "run-b" / "best.pt", "gan", generator="unet", unet_filters=8)]


@pytest.fixture(scope="module")
def messy_folder(tmp_path_factory) -> Path:
    """Color photos, a gray one, an RGBA PNG in a subfolder, a broken JPEG and an empty file."""
    folder = tmp_path_factory.mktemp("data") / "photos"
    make_photo_folder(folder, N_COLOR)
    gray = np.asarray(color_image(99).convert("L"))
    Image.fromarray(gray).save(folder / "gray.png")
    (folder / "sub").mkdir()
    rgba = np.dstack([np.asarray(color_image(7)), np.full((40, 48), 128, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(folder / "sub" / "alpha.png")
    (folder / "broken.jpg").write_bytes((folder / "photo_000.jpg").read_bytes()[:200])
    (folder / "empty.png").write_bytes(b"")
    return folder


class TinyGenerator(torch.nn.Module):
    """A fast stand-in generator: a fixed 3x3 convolution of L to ab."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(1, 2, 3, padding=1)

    def forward(self, gray_l):
        return torch.tanh(self.conv(gray_l))


@pytest.fixture
def tiny_generator(monkeypatch):
    """evaluation.load_generator returns TinyGenerator: for tests about the data path, not the networks."""
    def load(path, device="cpu", weights="auto"):
        if not Path(path).is_file():
            from gan_colorizer.errors import UserError
            raise UserError(f"{path}: checkpoint not found")
        return TinyGenerator().eval(), defaults("pretrain"), {"stage": "pretrain", "step": 1, "weights_used": "raw"}
    monkeypatch.setattr(evaluation, "load_generator", load)


def read_csv(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def png(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def colorfulness_np(rgb: np.ndarray) -> float:
    r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
    rg, yb = np.abs(r - g), np.abs(0.5 * (r + g) - b)
    return math.hypot(rg.std(), yb.std()) + 0.3 * math.hypot(rg.mean(), yb.mean())


def auc_np(pred: np.ndarray, true: np.ndarray) -> float:
    err = np.linalg.norm(rgb2lab(pred)[..., 1:] - rgb2lab(true)[..., 1:], axis=-1)
    shares = [(err <= t).mean() for t in range(0, 151)]  # Zhang et al.: the cumulative curve, trapezoid, / 150
    return float(np.trapezoid(shares) / 150)


@pytest.fixture(scope="module")
def cli_run(checkpoints, messy_folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval") / "out"
    result = run_script("evaluate.py", "--checkpoint", checkpoints[0], "--checkpoint", checkpoints[1],
                        "--data", messy_folder, "--out", out, "--image-size", "32", "--batch-size", "3",
                        "--num-workers", "1", "--save-images", timeout=300)
    return out, result


@pytest.mark.slow
def test_cli_writes_the_table_csv_summary_grids_and_images(cli_run, messy_folder):
    out, result = cli_run
    assert result.returncode == 0, result.stderr
    labels = ["gray", "run-a", "run-b"]  # each best.pt by its run
    lines = result.stdout.splitlines()
    header = next(i for i, l in enumerate(lines) if l.startswith("label"))
    assert [l.split()[0] for l in lines[header + 1: header + 4]] == labels
    assert "psnr" in lines[header] and "fid" in lines[header] and "img_per_sec" in lines[header]
    assert "skipped" in result.stderr and "broken.jpg" in result.stderr and "empty.png" in result.stderr

    summary = json.loads((out / "summary.json").read_text())
    n = N_COLOR + 2  # the gray photo and the RGBA one are evaluated
    assert summary["n_images"] == n and summary["data"] == str(messy_folder)
    assert summary["protocol"]["name"] == "center-crop" and summary["protocol"]["image_size"] == 32
    assert sorted(Path(s["path"]).name for s in summary["skipped"]) == ["broken.jpg", "empty.png"]
    assert all(s["reason"] for s in summary["skipped"])
    assert summary["ground_truth"]["gray_images"] == ["gray.png"]
    assert list(summary["models"]) == labels
    keys = {"checkpoint", "psnr", "ssim", "delta_e2000", "colorfulness", "delta_colorfulness", "auc_ab", "lpips",
            "fid", "img_per_sec"}
    for label, m in summary["models"].items():
        assert keys <= set(m), label
        assert m["lpips"] is None and m["fid"] is None and m["img_per_sec"] > 0
    assert set(summary["unavailable"]) == {"lpips", "fid"}
    assert summary["models"]["gray"]["checkpoint"] is None
    assert summary["models"]["run-b"]["stage"] == "gan"
    assert summary["models"]["run-b"]["generator"] == "unet"

    rows = read_csv(out / "metrics.csv")
    assert len(rows) == 3 * n and {r["label"] for r in rows} == set(labels)
    assert {r["image"] for r in rows if r["gray_truth"] == "1"} == {"gray.png"}
    assert {"sub/alpha.png", "photo_000.jpg"} <= {r["image"] for r in rows}
    assert len(list((out / "grids").glob("sheet_*.png"))) == 2  # 7 images, 4 per sheet
    for label in ("gray", "run-a", "run-b"):
        assert len(list((out / "images" / label).rglob("*.png"))) == n
    assert png(out / "truth" / "sub" / "alpha.png").shape == (32, 32, 3)


@pytest.mark.slow
def test_csv_numbers_agree_with_scikit_image_on_the_saved_pngs(cli_run):
    out, _ = cli_run
    rows = read_csv(out / "metrics.csv")
    for r in rows:
        folder = {"gray": "gray"}.get(r["label"], r["label"].replace("/", "_"))
        name = str(Path(r["image"]).with_suffix(".png"))
        pred, true = png(out / "images" / folder / name), png(out / "truth" / name)
        expected_psnr = math.inf if (pred == true).all() else peak_signal_noise_ratio(true, pred, data_range=255)
        assert float(r["psnr"]) == pytest.approx(expected_psnr, abs=1e-5)
        ssim = structural_similarity(true, pred, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                     data_range=255, channel_axis=-1)
        assert float(r["ssim"]) == pytest.approx(ssim, abs=1e-5)
        assert float(r["delta_e2000"]) == pytest.approx(deltaE_ciede2000(rgb2lab(pred), rgb2lab(true)).mean(), abs=1e-3)
        assert float(r["colorfulness"]) == pytest.approx(colorfulness_np(pred), abs=1e-5)
        assert float(r["colorfulness_truth"]) == pytest.approx(colorfulness_np(true), abs=1e-5)
        assert float(r["auc_ab"]) == pytest.approx(auc_np(pred, true), abs=2e-3)


@pytest.mark.slow
def test_summary_aggregates_the_csv_and_leaves_identical_images_out_of_psnr(cli_run):
    out, _ = cli_run
    rows, summary = read_csv(out / "metrics.csv"), json.loads((out / "summary.json").read_text())
    truth_cf = np.mean([float(r["colorfulness_truth"]) for r in rows if r["label"] == "gray"])
    assert summary["ground_truth"]["colorfulness"] == pytest.approx(truth_cf, abs=1e-4)
    for label, m in summary["models"].items():
        mine = [r for r in rows if r["label"] == label]
        psnr = np.array([float(r["psnr"]) for r in mine])
        assert m["psnr"] == pytest.approx(psnr[np.isfinite(psnr)].mean(), abs=1e-4)
        assert m["psnr_identical"] == int(np.isinf(psnr).sum())
        assert m["median"]["ssim"] == pytest.approx(np.median([float(r["ssim"]) for r in mine]), abs=1e-5)
        cf = np.mean([float(r["colorfulness"]) for r in mine])
        assert m["delta_colorfulness"] == pytest.approx(abs(cf - truth_cf), abs=1e-4)
    # the gray baseline reproduces a gray photo exactly: PSNR inf in the CSV, counted apart from the mean
    gray_row = next(r for r in rows if r["label"] == "gray" and r["image"] == "gray.png")
    assert gray_row["psnr"] == "inf" and summary["models"]["gray"]["psnr_identical"] == 1


def test_labels_are_stems_made_unique_by_their_folders():
    assert make_labels(["a/x/model.pt", "a/y/model.pt", "b/other.pt"], None) == ["x/model", "y/model", "other"]
    assert make_labels(["runs/gray.pt"], None) == ["runs/gray"]
    assert make_labels(["m.pt", "m.pt"], None) == ["m#1", "m#2"]
    assert make_labels(["a.pt", "b.pt"], ["ours", "theirs"]) == ["ours", "theirs"]


def test_the_best_and_last_files_training_writes_are_labelled_by_their_run():
    assert make_labels(["checkpoints/mine/best.pt"], None) == ["mine"]  # not 'best'
    assert make_labels(["/tmp/best.pt"], None, ["coco-gan"]) == ["coco-gan"]  # the name in the config comes first
    assert make_labels(["a/x/best.pt", "a/y/last.pt", "b/other.pt"], None) == ["x", "y", "other"]
    assert make_labels(["mine/best.pt", "mine/last.pt"], None, ["mine", "mine"]) == ["mine/best", "mine/last"]
    assert make_labels(["a/best.pt", "b/best.pt"], None, ["run", "run"]) == ["a/best", "b/best"]
    assert make_labels(["gray/best.pt", "m/gray.pt"], None) == ["gray/best", "m/gray"]  # the baseline's is reserved


def test_a_lone_best_pt_is_labelled_by_its_run_in_the_table_and_the_summary(tmp_path, tiny_generator, capsys):
    make_photo_folder(tmp_path / "photos", 1)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "best.pt").write_bytes(b"")  # tiny_generator's config names no run: the folder does
    assert main(["--checkpoint", str(tmp_path / "mine" / "best.pt"), "--data", str(tmp_path / "photos"),
                 "--out", str(tmp_path / "out"), "--image-size", "32", "--num-workers", "0"]) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert list(summary["models"]) == ["gray", "mine"]
    assert any(line.split()[:1] == ["mine"] for line in capsys.readouterr().out.splitlines())


def test_off_a_terminal_an_evaluation_ends_with_a_dated_line_of_how_far_it_got(tmp_path, tiny_generator, capsys):
    make_photo_folder(tmp_path / "photos", 3)
    (tmp_path / "x.pt").write_bytes(b"")
    assert main(["--checkpoint", str(tmp_path / "x.pt"), "--data", str(tmp_path / "photos"), "--out",
                 str(tmp_path / "out"), "--image-size", "32", "--num-workers", "0"]) == 0
    out, err = capsys.readouterr()  # pytest's capture is no terminal: lines instead of a bar
    assert re.search(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d evaluate 3/3 img, [\d.]+ img/s$", out, re.M), out
    assert "evaluate:" not in err  # no bar


def test_resize_and_full_res_protocols(tmp_path, tiny_generator):
    data = tmp_path / "photos"
    make_photo_folder(data, 2, size=(64, 40))
    (tmp_path / "x.pt").write_bytes(b"")
    common = dict(checkpoints=[str(tmp_path / "x.pt")], data=str(data), image_size=32, num_workers=0, save_images=True)
    evaluate(EvalOptions(out=str(tmp_path / "resize"), protocol="resize", **common))
    assert png(tmp_path / "resize" / "images" / "x" / "photo_000.png").shape == (32, 32, 3)
    truth = np.asarray(Image.open(data / "photo_001.png").resize((32, 32), Image.BICUBIC))
    assert (png(tmp_path / "resize" / "truth" / "photo_001.png") == truth).all()  # stretched, not cropped

    summary = evaluate(EvalOptions(out=str(tmp_path / "full"), protocol="full-res", **common))
    pred, true = png(tmp_path / "full" / "images" / "x" / "photo_001.png"), np.asarray(Image.open(data / "photo_001.png"))
    assert pred.shape == true.shape == (40, 64, 3)
    in_gamut = (pred > 3).all(-1) & (pred < 252).all(-1)
    assert np.abs(rgb2lab(pred)[..., 0] - rgb2lab(true)[..., 0])[in_gamut].max() < 1.0  # the photo's own L
    assert summary["protocol"]["name"] == "full-res" and summary["n_images"] == 2


def test_embedded_validation_photos_and_a_single_image(tmp_path, tiny_generator):
    (tmp_path / "x.pt").write_bytes(b"")
    opts = dict(checkpoints=[str(tmp_path / "x.pt")], image_size=32, num_workers=0)
    summary = evaluate(EvalOptions(data="embedded:val", out=str(tmp_path / "emb"), **opts))
    assert summary["n_images"] == 3 and summary["data"] == "embedded:val"
    one = evaluate(EvalOptions(data="embedded:val", out=str(tmp_path / "one"), limit=1, **opts))
    assert one["n_images"] == 1 and one["models"]["x"]["std"]["psnr"] == 0.0
    assert len(read_csv(tmp_path / "one" / "metrics.csv")) == 2


def test_amp_runs_the_generator_under_autocast_and_the_summary_says_so(tmp_path, tiny_generator, monkeypatch):
    """--amp as in colorize.py (off by default here: the published figures are fp32)."""
    seen = []
    forward = TinyGenerator.forward
    monkeypatch.setattr(TinyGenerator, "forward", lambda self, x: seen.append(self.conv(x).dtype) or forward(self, x))
    (tmp_path / "x.pt").write_bytes(b"")
    opts = dict(checkpoints=[str(tmp_path / "x.pt")], image_size=32, num_workers=0, data="embedded:val", limit=1)
    fp32 = evaluate(EvalOptions(out=str(tmp_path / "fp32"), **opts))
    bf16 = evaluate(EvalOptions(out=str(tmp_path / "bf16"), amp="bf16", **opts))
    assert seen == [torch.float32, torch.bfloat16]
    assert (fp32["protocol"]["precision"], bf16["protocol"]["precision"]) == ("fp32", "bf16 autocast (--amp bf16)")


class PooledFeatures(torch.nn.Module):
    """A cheap stand-in for the FID Inception (whose loading and equality with pytorch-fid test_lpips_fid checks):
    48-d features, the 4x4 average-pooled RGB."""

    def forward(self, rgb):
        return F.adaptive_avg_pool2d(rgb, 4).flatten(1)


def test_lpips_and_fid_are_wired_to_the_right_images(tmp_path, tiny_generator, monkeypatch):
    """LPIPS (random AlexNet from --lpips-weights) and FID recomputed from the saved PNGs by other means."""
    import torchvision

    from gan_colorizer.evaluate.lpips_fid import Lpips
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))  # nothing cached: only the flag's file
    monkeypatch.setattr(evaluation, "load_fid", lambda path, download: (PooledFeatures(), "pooled"))
    torch.manual_seed(1)
    torch.save(torchvision.models.alexnet(weights=None).state_dict(), tmp_path / "alex.pth")
    data, out = tmp_path / "photos", tmp_path / "out"
    make_photo_folder(data, 5)
    (tmp_path / "x.pt").write_bytes(b"")
    summary = evaluate(EvalOptions(checkpoints=[str(tmp_path / "x.pt")], data=str(data), out=str(out), image_size=32,
                                   num_workers=0, save_images=True, batch_size=2, grid_images=0,
                                   lpips_weights=str(tmp_path / "alex.pth")))
    assert summary["weights"] == {"lpips": str(tmp_path / "alex.pth"), "fid": "pooled"} and not summary["unavailable"]
    rows = read_csv(out / "metrics.csv")
    lpips_net = Lpips().eval()
    lpips_net.load_weights(torch.load(tmp_path / "alex.pth"), "")
    names = [f"photo_{i:03d}.png" for i in range(5)]
    load = lambda folder: torch.stack([torch.from_numpy(png(folder / n).copy()).permute(2, 0, 1) for n in names])  # noqa: E731
    truth = load(out / "truth").float() / 255
    with torch.no_grad():
        for label in ("gray", "x"):
            pred = load(out / "images" / label).float() / 255
            got = [float(r["lpips"]) for r in rows if r["label"] == label]
            np.testing.assert_allclose(got, lpips_net(pred, truth).numpy(), atol=1e-5)
            fid = _fid_low_rank(PooledFeatures()(pred).double().numpy(), PooledFeatures()(truth).double().numpy())
            assert summary["models"][label]["fid"] == pytest.approx(fid, rel=1e-6, abs=1e-6)


def _fid_low_rank(a: np.ndarray, b: np.ndarray) -> float:
    """FID of two small feature sets without any d x d matrix: with centered A (n1 x d) and B (n2 x d),
    tr((S1 S2)^1/2) is the nuclear norm of A B^T over sqrt((n1 - 1)(n2 - 1))."""
    ca, cb = a - a.mean(0), b - b.mean(0)
    n1, n2 = len(a) - 1, len(b) - 1
    cross = np.linalg.svd(ca @ cb.T, compute_uv=False).sum() / math.sqrt(n1 * n2)
    return float(((a.mean(0) - b.mean(0)) ** 2).sum() + (ca ** 2).sum() / n1 + (cb ** 2).sum() / n2 - 2 * cross)


@pytest.mark.parametrize("case", ["missing checkpoint", "not a checkpoint", "no folder", "empty folder",
                                  "label count", "label gray", "fid weights", "all broken", "bad size"])
def test_unusable_arguments_exit_2_with_one_line(case, tmp_path, capsys, tiny_generator, monkeypatch):
    ckpt, junk, folder = tmp_path / "ok.pt", tmp_path / "junk.pt", tmp_path / "photos"
    ckpt.write_bytes(b"")
    make_photo_folder(folder, 1)
    (tmp_path / "empty").mkdir()
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "a.jpg").write_bytes(b"not a jpeg")
    args = {"missing checkpoint": ["--checkpoint", tmp_path / "nope.pt", "--data", folder],
            "not a checkpoint": ["--checkpoint", junk, "--data", folder],
            "no folder": ["--checkpoint", ckpt, "--data", tmp_path / "nowhere"],
            "empty folder": ["--checkpoint", ckpt, "--data", tmp_path / "empty"],
            "label count": ["--checkpoint", ckpt, "--data", folder, "--label", "a", "--label", "b"],
            "label gray": ["--checkpoint", ckpt, "--data", folder, "--label", "gray"],
            "fid weights": ["--checkpoint", ckpt, "--data", folder, "--fid-weights", tmp_path / "none.pth"],
            "all broken": ["--checkpoint", ckpt, "--data", tmp_path / "broken"],
            "bad size": ["--checkpoint", ckpt, "--data", folder, "--image-size", "8"]}[case]
    if case == "not a checkpoint":
        from gan_colorizer.models.registry import load_generator
        monkeypatch.setattr(evaluation, "load_generator", load_generator)
        junk.write_bytes(b"\x00garbage")
    code = main([str(a) for a in args] + ["--out", str(tmp_path / "out"), "--num-workers", "0"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith("error: ") and "Traceback" not in "\n".join(err)


@pytest.fixture
def one_thread():
    """Single-threaded torch: on a busy 2-core machine, two OpenMP threads per tiny op make this test 5x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
def test_memory_does_not_grow_from_200_to_2000_images(tmp_path, tiny_generator, one_thread):
    """Resident memory sampled after every batch: its floor at the end of a 2,000-image run is no higher than
    the 200-image run ever went. The floor is what a leak raises; peaks jitter by tens of MB with the batch temporaries.

    Both runs share one process, so one-off costs (fonts, colormaps, allocator pools) are paid before either is
    measured; keeping the 64 px ground truth of each image would add 22 MB (uint8), the margin is 10 MB.
    """
    folder = tmp_path / "many"
    folder.mkdir()
    base = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8).repeat(8, 0).repeat(8, 1)
    for i in range(2000):
        Image.fromarray(np.roll(base, i, axis=(0, 1))).save(folder / f"{i:04d}.png")
    (tmp_path / "x.pt").write_bytes(b"")
    page = os.sysconf("SC_PAGE_SIZE")

    def run(limit: int) -> list[float]:
        samples = []
        probe = lambda n: samples.append(int(Path("/proc/self/statm").read_text().split()[1]) * page / 2**20)  # noqa: E731
        summary = evaluate(EvalOptions(checkpoints=[str(tmp_path / "x.pt")], data=str(folder), limit=limit,
                                       out=str(tmp_path / f"out{limit}"), image_size=64, batch_size=50, num_workers=0),
                           on_batch=probe)
        assert summary["n_images"] == limit
        return samples

    small, large = run(200), run(2000)
    trace = ([round(m) for m in small], [round(m) for m in large])
    late, early = np.median(large[-10:]), np.median(large[5:15])
    assert late - early < 10, trace  # no climb over its last 1,300 images (a 64 px truth kept per image: +14 MB)
    assert late - max(small) < 25, trace  # near the 200-image run (allocator arenas may grow once, by ~12 MB)


def test_subfolders_are_categories_in_the_csv_the_summary_and_the_table(tmp_path, tiny_generator, capsys):
    """Per-category figures (ImageNet synsets, scene types): each equals the mean of that category's CSV rows."""
    make_photo_folder(tmp_path / "data" / "beach", 3)
    make_photo_folder(tmp_path / "data" / "forest", 2, start_seed=10)
    color_image(9).save(tmp_path / "data" / "loose.png")
    (tmp_path / "x.pt").write_bytes(b"")
    summary = evaluate(EvalOptions(checkpoints=[str(tmp_path / "x.pt")], data=str(tmp_path / "data"),
                                   out=str(tmp_path / "out"), image_size=32, num_workers=0))
    rows = read_csv(tmp_path / "out" / "metrics.csv")
    assert {r["category"] for r in rows} == {"beach", "forest", "."}
    cats = summary["categories"]
    assert {c: cats[c]["n_images"] for c in cats} == {".": 1, "beach": 3, "forest": 2}
    for cat in ("beach", "forest"):
        for label in ("gray", "x"):
            psnrs = [float(r["psnr"]) for r in rows if r["category"] == cat and r["label"] == label]
            assert cats[cat]["models"][label]["psnr"] == pytest.approx(np.mean(psnrs), rel=1e-6)  # CSV: 8 digits
    assert "per category:" in capsys.readouterr().out


def test_a_flat_folder_has_no_categories(tmp_path, tiny_generator):
    make_photo_folder(tmp_path / "flat", 2)
    (tmp_path / "x.pt").write_bytes(b"")
    summary = evaluate(EvalOptions(checkpoints=[str(tmp_path / "x.pt")], data=str(tmp_path / "flat"),
                                   out=str(tmp_path / "out"), image_size=32, num_workers=0))
    assert "categories" not in summary
    assert {r["category"] for r in read_csv(tmp_path / "out" / "metrics.csv")} == {""}


# --- issue 14: one evaluation per --out, whole files, nothing stale, safe names and cells ------------------------

NO_PROCESS = 4_194_305  # above Linux's largest pid_max: no process has this id


def small_set(tmp_path, n=4, **options) -> EvalOptions:
    make_photo_folder(tmp_path / "photos", n)
    (tmp_path / "x.pt").write_bytes(b"")
    return EvalOptions(**{"checkpoints": [str(tmp_path / "x.pt")], "data": str(tmp_path / "photos"),
                          "out": str(tmp_path / "out"), "image_size": 32, "num_workers": 0, "batch_size": 2,
                          **options})


def test_a_second_evaluation_into_a_busy_out_is_refused_and_spoils_nothing(tmp_path, tiny_generator, capsys):
    opts, codes = small_set(tmp_path), []

    def second_run(n_images):  # starts while the first is under way, into the same --out
        if not codes:
            codes.append(main(["--checkpoint", opts.checkpoints[0], "--label", "y", "--data", opts.data, "--out",
                               opts.out, "--image-size", "32", "--num-workers", "0"]))
    summary = evaluate(opts, on_batch=second_run)
    assert codes == [2]
    [line] = [l for l in capsys.readouterr().err.splitlines() if l.startswith("error:")]
    assert f"--out {opts.out}: an evaluation by pid {os.getpid()}" in line
    out = Path(opts.out)
    assert b"\0" not in (out / "metrics.csv").read_bytes()
    assert sorted((r["label"], r["image"]) for r in read_csv(out / "metrics.csv")) == sorted(
        (label, f"photo_{i:03d}.{'png' if i % 2 else 'jpg'}") for label in ("gray", "x") for i in range(4))
    assert json.loads((out / "summary.json").read_text())["models"].keys() == summary["models"].keys() == {"gray", "x"}
    assert not list(out.glob(".*"))  # no .lock, no temporary file


@pytest.mark.slow
def test_nothing_of_an_earlier_evaluation_survives_beside_a_later_one(tmp_path, tiny_generator):
    """A report and two grid sheets, then a run that fails half way (no summary, no half metrics.csv, no page of the
    earlier run), then one with one sheet and no report."""
    opts = small_set(tmp_path, 8, grid_images=8, report=True, report_images=2, report_worst=1)
    evaluate(opts)
    out = Path(opts.out)
    assert len(list((out / "grids").glob("sheet_*.png"))) == 2 and (out / "report" / "index.html").is_file()
    (out / "grids" / f".sheet_003.png.{NO_PROCESS}-1.part").write_bytes(b"half a sheet")

    def disk_gone(n_images):
        raise OSError(5, "Input/output error")
    later = EvalOptions(**{**vars(opts), "grid_images": 4, "report": False})
    with pytest.raises(OSError):
        evaluate(later, on_batch=disk_gone)
    assert sorted(p.name for p in out.iterdir()) == ["grids"]  # its one sheet, not the earlier run's two
    assert not list(out.rglob(".*")) and [p.name for p in (out / "grids").iterdir()] == ["sheet_001.png"]
    evaluate(later)
    assert sorted(p.name for p in out.iterdir()) == ["grids", "metrics.csv", "summary.json"]
    assert [p.name for p in (out / "grids").iterdir()] == ["sheet_001.png"]


@pytest.mark.slow
def test_labels_become_distinct_file_names_inside_out(tmp_path, tiny_generator):
    """'m 1' and 'm_1' (and 'M_1' on a case-insensitive disk) used to share every file; '..' wrote at the top."""
    labels = ["m 1", "m_1", "M_1", ".."]
    opts = small_set(tmp_path, 2, out=str(tmp_path / "out" / "o"), labels=labels, save_images=True, report=True,
                     report_images=2, report_worst=0)
    evaluate(EvalOptions(**{**vars(opts), "checkpoints": opts.checkpoints * len(labels)}))
    out = Path(opts.out)
    folders = list((out / "images").iterdir())
    assert len({p.name.casefold() for p in folders}) == len(folders) == 5  # gray and four labels
    assert all(len(list(p.glob("*.png"))) == 2 for p in folders)
    assert not list(out.glob("*.png")) and [p.name for p in (tmp_path / "out").iterdir()] == ["o"]
    for ident in ("000000", "000001"):  # the truth, 5 predictions and 4 difference maps per shown image
        assert len({p.name.casefold() for p in (out / "report" / "img").glob(f"{ident}_*")}) == 10


def test_csv_cells_a_spreadsheet_would_run_as_formulas_are_written_as_text(tmp_path, tiny_generator):
    data = tmp_path / "photos"
    for i, name in enumerate(["=1+1.png", "@cmd.png", "-x.png", "+y.png", "=cat/a.png", "plain.png"]):
        (data / name).parent.mkdir(parents=True, exist_ok=True)
        color_image(i).save(data / name)
    (tmp_path / "x.pt").write_bytes(b"")
    evaluate(EvalOptions(checkpoints=[str(tmp_path / "x.pt")], labels=["-m"], data=str(data),
                         out=str(tmp_path / "out"), image_size=32, num_workers=0))
    rows = read_csv(tmp_path / "out" / "metrics.csv")
    assert not [c for r in rows for c in (r["label"], r["image"], r["category"]) if c[:1] in "=+-@"]
    assert {r["image"] for r in rows} == {"'=1+1.png", "'@cmd.png", "'-x.png", "'+y.png", "'=cat/a.png", "plain.png"}
    assert {r["label"] for r in rows} == {"gray", "'-m"} and "'=cat" in {r["category"] for r in rows}


def strip_and_bad_photos(folder: Path) -> Path:
    """Two photos, a 1 x 100000 gray strip (a few hundred bytes), a 576 MP header over a tiny file, and an all-black
    photo that the scoring below refuses."""
    from test_images import png_declaring
    make_photo_folder(folder, 2)
    Image.fromarray(np.linspace(20, 230, 100_000).astype(np.uint8)[None, :]).save(folder / "strip.png")
    png_declaring(folder / "huge.png", 24000, 24000)
    Image.new("RGB", (50, 30)).save(folder / "black.png")
    return folder


@pytest.mark.parametrize("protocol", ["full-res", "center-crop"])
def test_a_1x100000_strip_is_evaluated_and_an_image_that_fails_is_skipped_in_one_line(
        protocol, tmp_path, tiny_generator, monkeypatch, caplog):
    """full-res used to die with a traceback on the strip (a 26 GB network input) and write no summary; an image
    whose scoring fails (out of memory...) is skipped, alone even when it came in a batch, and the set goes on."""
    real_metrics = evaluation.image_metrics

    def metrics_failing_on_black(pred, truth, truth_lab):
        if (truth.flatten(1).amax(1) == 0).any():
            raise RuntimeError("CUDA out of memory. Tried to allocate 26.00 GiB\nsecond line of advice")
        return real_metrics(pred, truth, truth_lab)
    monkeypatch.setattr(evaluation, "image_metrics", metrics_failing_on_black)
    data = strip_and_bad_photos(tmp_path / "data")
    (tmp_path / "x.pt").write_bytes(b"")
    summary = evaluate(EvalOptions(checkpoints=[str(tmp_path / "x.pt")], data=str(data), out=str(tmp_path / "out"),
                                   protocol=protocol, image_size=32, batch_size=8, num_workers=0))
    skipped = {Path(s["path"]).name: s["reason"] for s in summary["skipped"]}
    assert summary["n_images"] == 3 and set(skipped) == {"huge.png", "black.png"}
    limit = "64 MP" if protocol == "full-res" else "400 MP"  # full-size metrics need far more memory per pixel
    assert skipped["huge.png"] == f"too large: 24000x24000 is 576 MP, over the limit of {limit} (--max-pixels)"
    assert skipped["black.png"] == "cannot colorize or score it (CUDA out of memory. Tried to allocate 26.00 GiB)"
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warned) == 2 and all("\n" not in w and w.startswith("warning: skipped") for w in warned)
    rows = read_csv(tmp_path / "out" / "metrics.csv")
    assert sorted({r["image"] for r in rows}) == ["photo_000.jpg", "photo_001.png", "strip.png"]
    if protocol == "full-res":
        assert {(r["width"], r["height"]) for r in rows if r["image"] == "strip.png"} == {("100000", "1")}


def test_max_pixels_skips_larger_photos_from_their_header(tmp_path, tiny_generator):
    make_photo_folder(tmp_path / "data", 2)  # 48 x 40
    color_image(5, (64, 48)).save(tmp_path / "data" / "bigger.png")
    (tmp_path / "x.pt").write_bytes(b"")
    summary = evaluate(EvalOptions(checkpoints=[str(tmp_path / "x.pt")], data=str(tmp_path / "data"),
                                   out=str(tmp_path / "out"), image_size=32, num_workers=0, max_pixels=2000))
    assert summary["n_images"] == 2 and [Path(s["path"]).name for s in summary["skipped"]] == ["bigger.png"]
    assert summary["skipped"][0]["reason"] == ("too large: 64x48 is 3,072 pixels, over the limit of 2,000 pixels "
                                               "(--max-pixels)")


def test_a_self_link_in_data_counts_each_photo_once(tmp_path):
    """A link to '.' in --data used to count each photo 41 times (once per level, up to the kernel's 40 links)."""
    from gan_colorizer.evaluate.protocols import resolve_data
    make_photo_folder(tmp_path / "data", 2)
    (tmp_path / "data" / "self").symlink_to(".")
    paths, names = resolve_data(str(tmp_path / "data"))
    assert names == ["photo_000.jpg", "photo_001.png"]


def test_write_rows_puts_cells_in_the_csv_columns_and_flushes_before_close(tmp_path):
    """Photos and clips write metrics.csv through Report.write_rows: a reader of the growing file sees the rows."""
    from types import SimpleNamespace

    from gan_colorizer.evaluate.outputs import CSV_COLUMNS, Report
    opts = SimpleNamespace(out=str(tmp_path / "out"), grid_images=0, save_images=False, report=False)
    report = Report(opts, ["x"], ["a.png"], 1)
    try:
        report.write_rows([{"label": "x", "image": "a.png", "psnr": "20.5"}, {"kind": "clip", "label": "y"}])
        with open(report.csv_path, newline="") as f:  # the file is still open for writing
            rows = list(csv.DictReader(f))
        assert rows == [dict.fromkeys(CSV_COLUMNS, "") | {"label": "x", "image": "a.png", "psnr": "20.5"},
                        dict.fromkeys(CSV_COLUMNS, "") | {"kind": "clip", "label": "y"}]
    finally:
        report.abandon()
