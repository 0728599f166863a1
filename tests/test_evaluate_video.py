"""evaluate.py on clips (issue 17, point 3): a folder mixing video files and a photo, per-clip rows and set means,
the warp error of a flickering network against the truth's floor, the temporal filter's effect on it, broken clips
and the report's clips section."""
import csv
import json
import logging
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from clips import cut, noisy, pan, write_clip, zoom
from conftest import color_image
from skimage.color import deltaE_ciede2000, lab2rgb, rgb2lab

from gan_colorizer.colorize.video import DEFAULT_STRENGTH
from gan_colorizer.colorize.video import read_frames
from gan_colorizer.config import defaults
from gan_colorizer.evaluate import run as evaluation
from gan_colorizer.evaluate.cli import main
from gan_colorizer.evaluate.run import EvalOptions, evaluate

FRAMES = 12  # per shot
CLIPS = {"pan.mp4": FRAMES, "short.mov": 6, "sub/zoom_cut.mkv": 2 * FRAMES}  # 3 clips: a set mean is no median


class Flicker(torch.nn.Module):
    """A network that guesses each frame anew: a fixed 3x3 convolution of L plus a random color cast per frame."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(1, 2, 3, padding=1)
        self.rng = torch.Generator().manual_seed(1)

    def forward(self, gray_l):
        cast = torch.rand(gray_l.shape[0], 2, 1, 1, generator=self.rng) - 0.5
        return torch.tanh(self.conv(gray_l)) * 0.5 + 0.4 * cast


@pytest.fixture(scope="module")
def flicker():
    """evaluation.load_generator returns a Flicker network for any existing path."""
    def load(path, device="cpu", weights="auto"):
        return Flicker().eval(), defaults("pretrain"), {"stage": "pretrain", "step": 1, "weights_used": "raw"}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(evaluation, "load_generator", load)
        yield


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """A pan over a photo (mp4), a short one (mov), a noisy zoom cut to a pan over another photo (mkv, in a subfolder)
    and a photo."""
    root = tmp_path_factory.mktemp("clips") / "data"
    (root / "sub").mkdir(parents=True)
    write_clip(root / "pan.mp4", pan("astronaut", FRAMES, (96, 128), (1.0, 2.0)))
    write_clip(root / "short.mov", pan("rocket", CLIPS["short.mov"], (96, 128), (0.0, 3.0)))
    write_clip(root / "sub" / "zoom_cut.mkv", cut(noisy(zoom("coffee", FRAMES, (96, 128), 1.02), 4.0),
                                                  pan("chelsea", FRAMES, (96, 128), (0.5, -1.5))))
    color_image(3).save(root / "photo.png")
    return root


def options(folder: Path, out: Path, **kw) -> EvalOptions:
    return EvalOptions(checkpoints=[str(folder / "photo.png")], labels=["flicker"], data=str(folder), out=str(out),
                       image_size=64, batch_size=5, num_workers=0, download=False, **kw)


@pytest.fixture(scope="module")
def runs(folder, flicker, tmp_path_factory):
    """The folder evaluated per frame (--temporal 0) and with the default filter (and the report)."""
    out = tmp_path_factory.mktemp("eval")
    per_frame = evaluate(options(folder, out / "per_frame", temporal=0.0))
    temporal = evaluate(options(folder, out / "temporal", report=True, report_images=2))
    return {"per_frame": (out / "per_frame", per_frame), "temporal": (out / "temporal", temporal)}


def rows(out: Path) -> list[dict]:
    with open(out / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_clips_get_a_row_per_label_and_the_set_means_of_their_rows(runs):
    out, summary = runs["per_frame"]
    table = rows(out)
    photos = [r for r in table if r["kind"] == "photo"]
    assert [(r["label"], r["image"], r["frames"]) for r in photos] == [("gray", "photo.png", ""), ("flicker", "photo.png", "")]
    clips = [r for r in table if r["kind"] == "clip"]
    assert sorted((r["image"], r["label"]) for r in clips) == sorted((c, l) for c in CLIPS for l in ("gray", "flicker"))
    for r in clips:
        assert int(r["frames"]) == CLIPS[r["image"]] and (r["width"], r["height"]) == ("128", "96")
        assert r["category"] == ("sub" if r["image"].startswith("sub/") else ".")  # subfolders are categories
        assert float(r["warp_error_truth"]) > 0 and r["warp_error"] != ""
    assert summary["n_images"] == 1 and summary["clips"]["n_clips"] == len(CLIPS)
    assert summary["clips"]["n_frames"] == sum(CLIPS.values()) and summary["clips"]["temporal"] == 0.0
    for label in ("gray", "flicker"):
        mine = [r for r in clips if r["label"] == label]
        for metric in ("delta_e2000", "psnr", "ssim", "warp_error"):
            expected = np.mean([float(r[metric]) for r in mine])
            assert summary["clips"]["models"][label][metric] == pytest.approx(expected, rel=1e-5, abs=1e-6)  # the CSV has 6 decimals
    floor = np.mean([float(r["warp_error_truth"]) for r in clips if r["label"] == "gray"])
    assert summary["clips"]["truth"]["warp_error"] == pytest.approx(floor, rel=1e-5, abs=1e-6)
    entry = {c["clip"]: c for c in summary["clips"]["clips"]}
    assert [entry[c]["cuts"] for c in CLIPS] == [0, 0, 1]  # the cut is not scored
    assert json.loads((out / "summary.json").read_text())["clips"]["n_frames"] == sum(CLIPS.values())


@pytest.mark.slow
def test_a_clips_frame_metrics_are_the_mean_over_its_frames(runs, folder):
    """The gray baseline needs no network: its CIEDE2000 per frame, recomputed with scikit-image from the decoded
    frames, averages to the clip's row."""
    out, _ = runs["per_frame"]
    row = next(r for r in rows(out) if r["image"] == "pan.mp4" and r["label"] == "gray")
    scores = []
    for frame in read_frames(folder / "pan.mp4"):
        lab = rgb2lab(frame)
        gray = np.round(np.clip(lab2rgb(np.dstack([lab[..., :1], np.zeros_like(lab[..., 1:])])), 0, 1) * 255)
        scores.append(deltaE_ciede2000(rgb2lab(gray.astype(np.uint8)), lab).mean())
    assert len(scores) == FRAMES
    assert float(row["delta_e2000"]) == pytest.approx(np.mean(scores), abs=0.05)


@pytest.mark.slow
def test_the_truths_warp_error_is_below_a_flickering_networks(runs):
    _, summary = runs["per_frame"]
    for clip in summary["clips"]["clips"]:
        assert clip["models"]["flicker"]["warp_error"] > 5 * clip["warp_error_truth"] > 0, clip["clip"]


@pytest.mark.slow
def test_the_temporal_filter_lowers_the_warp_error_and_per_frame_leaves_it(runs):
    per_frame, temporal = runs["per_frame"][1]["clips"], runs["temporal"][1]["clips"]
    assert temporal["temporal"] == DEFAULT_STRENGTH > 0
    for before, after in zip(per_frame["clips"], temporal["clips"]):
        assert after["models"]["flicker"]["warp_error"] < 0.5 * before["models"]["flicker"]["warp_error"]
        assert after["models"]["gray"] == before["models"]["gray"]  # no network, no filter
        assert after["warp_error_truth"] == before["warp_error_truth"]


@pytest.mark.slow
def test_report_shows_the_clips_section_with_a_row_per_clip_and_frame_strips(runs):
    out, summary = runs["temporal"]
    html = (out / "report" / "index.html").read_text()
    section = re.search(r'<section id="clips">(.*?)</section>', html, re.S).group(1)
    body = re.search(r'<table id="clip-table">.*?<tbody>(.*?)</tbody>', section, re.S).group(1)
    assert [re.sub(r"<.*?>", "", c) for c in re.findall(r"<tr><td[^>]*>(.*?)</td>", body)] == list(CLIPS)
    assert 'href="#clips"' in html and "ground truth (reference)" in section
    strips = re.findall(r'<img src="([^"]+)" alt="frames of', section)
    assert len(strips) == 2 and all((out / "report" / s).is_file() for s in strips)
    assert [c["report_strip"] for c in summary["clips"]["clips"] if "report_strip" in c] == strips


@pytest.mark.slow
def test_a_broken_clip_is_one_line_and_the_rest_is_evaluated(tmp_path, flicker, caplog):
    data = tmp_path / "data"
    data.mkdir()
    write_clip(data / "good.mp4", pan("rocket", 6, (96, 128)))
    whole = write_clip(tmp_path / "whole.mkv", pan("coffee", 24, (96, 128))).read_bytes()
    (data / "truncated.mkv").write_bytes(whole[: len(whole) * 2 // 3])
    (data / "not_a_video.mp4").write_bytes(b"this is text")
    with caplog.at_level(logging.WARNING, logger="gan_colorizer"):
        summary = evaluate(options(data, tmp_path / "out"))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2 and all(len(w.splitlines()) == 1 for w in warnings)
    assert any("truncated.mkv" in w for w in warnings) and any("not_a_video.mp4" in w for w in warnings)
    assert {Path(s["path"]).name for s in summary["clips"]["skipped"]} == {"truncated.mkv", "not_a_video.mp4"}
    assert summary["skipped"] == []  # the photos' list: no photo was skipped
    assert {r["image"] for r in rows(tmp_path / "out")} == {"good.mp4"} and summary["n_images"] == 0


@pytest.mark.slow
def test_a_folder_of_clips_only_prints_the_clip_table(tmp_path, flicker, capsys):
    data = tmp_path / "data"
    data.mkdir()
    write_clip(data / "a.mkv", pan("astronaut", 4, (64, 96)))
    code = main(["--checkpoint", str(data / "a.mkv"), "--data", str(data), "--out", str(tmp_path / "out"),
                 "--image-size", "32", "--num-workers", "0", "--no-download", "--temporal", "0.5", "--report"])
    out = capsys.readouterr().out
    assert code == 0 and "\nclips:\nlabel" in out and "temporal 0.5" in out
    assert "psnr  ssim" not in out.split("clips:")[0] and "0 images" not in out  # no photo table
    assert "a.mkv" in (tmp_path / "out" / "metrics.csv").read_text()
    page = (tmp_path / "out" / "report" / "index.html").read_text()  # and no empty photo sections in the report
    assert '<section id="clips">' in page and "1 clip from" in page
    assert not any(f'<section id="{s}">' in page for s in ("summary", "worst", "images", "per-image", "colors"))
    assert not (tmp_path / "out" / "report" / "ab_distribution.png").exists()


@pytest.mark.parametrize("value", ["-0.1", "1.5"])
def test_temporal_outside_0_to_1_is_one_line(tmp_path, value, capsys):
    code = main(["--checkpoint", "x.pt", "--data", str(tmp_path), "--out", str(tmp_path / "out"), "--temporal", value])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "--temporal" in err
