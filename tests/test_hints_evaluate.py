"""evaluate.py --hints: oracle hints from each photo's truth, seeded, every metric per hint count in summary.json,
metrics.csv, the console and a plot."""
import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_photo_folder
from PIL import Image
from test_hints_colorize import HintEcho

from gan_colorizer.config import defaults, update
from gan_colorizer.errors import UserError
from gan_colorizer.evaluate import hint_curve
from gan_colorizer.evaluate import run as evaluation
from gan_colorizer.evaluate.run import EvalOptions, evaluate
from gan_colorizer.metrics import GRAY

COUNTS = "0,1,5,20"


class Automatic(torch.nn.Module):
    def forward(self, gray_l):
        return torch.zeros(gray_l.shape[0], 2, *gray_l.shape[2:])


@pytest.fixture
def models(monkeypatch, tmp_path):
    """Checkpoint names -> stand-in networks (evaluation.load_generator), and the photos."""
    nets = {"a.pt": HintEcho(), "b.pt": HintEcho(), "auto.pt": Automatic()}
    for name in nets:
        (tmp_path / name).write_bytes(b"")
    monkeypatch.setattr(evaluation, "load_generator", lambda path, device="cpu", weights="auto": (
        nets[Path(path).name], update(defaults("pretrain"), {"hints": Path(path).name != "auto.pt"}),
        {"stage": "pretrain", "step": 1, "weights_used": "raw"}))
    make_photo_folder(tmp_path / "photos", 4, size=(48, 40))
    return nets


def run(tmp_path, out: str, checkpoints=("a.pt",), **options) -> dict:
    return evaluate(EvalOptions(checkpoints=[str(tmp_path / c) for c in checkpoints], data=str(tmp_path / "photos"),
                                out=str(tmp_path / out), image_size=32, num_workers=0, hints=COUNTS, **options))


def test_every_metric_per_hint_count_in_the_summary_the_csv_the_console_and_a_plot(models, tmp_path, capsys):
    summary = run(tmp_path, "out", ("a.pt", "auto.pt"))
    curve = summary["hints"]["curves"]["a"]
    assert summary["hints"]["counts"] == curve["hints"] == [0, 1, 5, 20]
    assert set(summary["models"]) == {GRAY, "a +0 hints", "a +1 hint", "a +5 hints", "a +20 hints", "auto"}
    for k, psnr, de in zip(curve["hints"], curve["psnr"], curve["delta_e2000"]):
        assert summary["models"][hint_curve.label("a", k)]["psnr"] == pytest.approx(psnr)
        assert summary["models"][hint_curve.label("a", k)]["delta_e2000"] == pytest.approx(de)
    assert curve["delta_e2000"][0] == pytest.approx(summary["models"][GRAY]["delta_e2000"])  # no hints: ab 0 here
    assert curve["delta_e2000"] == sorted(curve["delta_e2000"], reverse=True)  # more true colour, less error
    assert curve["delta_e2000"][-1] < curve["delta_e2000"][0]
    with open(tmp_path / "out" / "metrics.csv", newline="") as f:
        labels = {row["label"] for row in csv.DictReader(f)}
    assert {"a +0 hints", "a +20 hints", "auto"} <= labels
    console = capsys.readouterr().out
    assert "a: hints              0       1       5      20" in console and "a: delta_e2000" in console
    plot = Image.open(tmp_path / "out" / "hints.png")
    assert plot.size[0] > 500 and summary["hints"]["plot"][0].endswith("hints.png")
    assert (tmp_path / "out" / "hints.svg").read_text().lstrip().startswith("<?xml")


def test_the_oracle_hints_are_seeded_the_same_for_every_model_and_nested_over_counts(models, tmp_path):
    run(tmp_path, "out", ("a.pt", "b.pt"))
    given_a = [h for h in models["a.pt"].seen if h is not None]
    given_b = [h for h in models["b.pt"].seen if h is not None]
    assert len(given_a) == 3 and all(torch.equal(x, y) for x, y in zip(given_a, given_b))  # counts 1, 5, 20
    one, five, twenty = (h[:, 2] for h in given_a)
    assert torch.all(five >= one) and torch.all(twenty >= five)  # a photo's first points stay as more come
    truth = given_a[-1][:, :2]  # the hint ab: the photo's own colour there, not noise
    assert truth[given_a[-1][:, 2:].expand_as(truth) > 0].abs().max() > 0.05
    models["a.pt"].seen.clear()
    run(tmp_path, "again", ("a.pt",))
    run(tmp_path, "other", ("a.pt",), hint_seed=1)
    again, other = ([h for h in models["a.pt"].seen[i:i + 4] if h is not None] for i in (0, 4))
    assert all(torch.equal(x, y) for x, y in zip(again, given_a))  # the same seed: the same points
    assert not any(torch.equal(x, y) for x, y in zip(other, given_a))  # another seed: others


@pytest.mark.parametrize("text, why", [("1,x", "expected whole numbers"), ("-1,2", "from 0 to"), (",", "expected")])
def test_bad_hint_counts_are_one_line(text, why):
    with pytest.raises(UserError, match=why):
        hint_curve.parse_counts(text)


def test_hints_need_a_hint_model(models, tmp_path):
    with pytest.raises(UserError, match="none of the --checkpoint models takes hints"):
        run(tmp_path, "out", ("auto.pt",))


def test_oracle_hints_are_drawn_at_the_render_shape_from_the_truth_there():
    truth = torch.rand(2, 2, 64, 64) - 0.5
    maps = hint_curve.oracle(truth, [3, 4], 1, seed=0, shape=(16, 16))
    assert maps.shape == (2, 3, 16, 16)
    small = torch.nn.functional.avg_pool2d(truth, 4)  # the truth at the render: each pixel the mean of 4 x 4
    for i in range(2):
        mask = maps[i, 2] > 0
        assert mask.any()
        expected = small[i][:, mask].mean(dim=1)
        assert torch.allclose(maps[i, :2][:, mask], expected[:, None].expand(-1, int(mask.sum())), atol=1e-6)


def test_siggraph17s_release_gets_the_oracle_hints_at_its_own_render_and_draws_its_curve(monkeypatch, tmp_path):
    from gan_colorizer.models import registry, zhang
    network, seen = zhang.SIGGRAPH17(), []

    def forward(l, hint_ab=None, hint_mask=None):  # its output where a hint is: the hinted ab (Lab units), else 0
        seen.append(hint_mask)
        return torch.zeros(l.shape[0], 2, *l.shape[2:]) if hint_ab is None else hint_ab
    monkeypatch.setattr(network, "forward", forward)
    (tmp_path / "w.pth").write_bytes(b"stands in for the authors' file")  # summary.json records its SHA-256
    loaded = registry.Loaded(registry.find("zhang-siggraph17"), network, tmp_path / "w.pth", "test")
    monkeypatch.setattr(registry, "load_network", lambda *args, **kwargs: loaded)
    make_photo_folder(tmp_path / "photos", 3, size=(60, 40))
    summary = evaluate(EvalOptions(checkpoints=["zhang-siggraph17"], data=str(tmp_path / "photos"),
                                   out=str(tmp_path / "out"), image_size=32, num_workers=0, hints="0,5,50"))
    curve = next(iter(summary["hints"]["curves"].values()))
    assert curve["hints"] == [0, 5, 50]
    assert curve["delta_e2000"][0] > curve["delta_e2000"][1] > curve["delta_e2000"][2]  # more truth, less error
    drawn = [mask for mask in seen if mask is not None]
    assert drawn and all(mask.shape[-2:] == (256, 256) for mask in drawn)  # its square render, not --image-size
    assert any(int(mask.sum()) > 0 for mask in drawn)
