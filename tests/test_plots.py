"""python -m gan_colorizer.inspect.curves: curves from TensorBoard event files as PNG / SVG, and every value in scalars.csv."""
import csv
import subprocess
import sys

import pytest
from conftest import ROOT
from PIL import Image
from torch.utils.tensorboard import SummaryWriter

from gan_colorizer.inspect.curves import main, read_scalars, smooth


def write_run(folder, values: dict, purge_step=None):
    writer = SummaryWriter(str(folder), purge_step=purge_step)
    for tag, points in values.items():
        for step, value in points:
            writer.add_scalar(tag, value, step)
    writer.close()


@pytest.fixture
def runs(tmp_path):
    """A run resumed at step 3 (two event files; step 3 logged again after the resume) and a second run."""
    a = tmp_path / "runs" / "l1"
    write_run(a, {"loss/g_l1": [(1, 0.9), (2, 0.7), (3, 0.65)], "val/psnr": [(2, 20.0)], "lr": [(1, 1e-4)]})
    write_run(a, {"loss/g_l1": [(3, 0.6), (4, 0.5)], "val/psnr": [(4, 21.5)]}, purge_step=3)
    b = tmp_path / "runs" / "gan"
    write_run(b, {"loss/g_l1": [(1, 0.8), (2, 0.75)], "loss/g_gan": [(1, 2.0), (2, 1.5)]})
    return a, b


def test_curves_are_exported_per_tag_group_with_every_value_in_the_csv(runs, tmp_path, capsys):
    a, b = runs
    out = tmp_path / "curves"
    assert main(["--run", str(a), "--run", str(b), "--out", str(out)]) == 0
    for group in ("loss", "val", "lr"):
        assert Image.open(out / f"{group}.png").size[0] > 300
        assert (out / f"{group}.svg").read_text().lstrip().startswith("<?xml")
    with open(out / "scalars.csv", newline="") as f:
        rows = [(r["run"], r["tag"], int(r["step"]), float(r["value"])) for r in csv.DictReader(f)]
    l1 = [(s, v) for run, tag, s, v in rows if run == "l1" and tag == "loss/g_l1"]
    assert [s for s, _ in l1] == [1, 2, 3, 4]
    assert [v for _, v in l1] == pytest.approx([0.9, 0.7, 0.6, 0.5])  # the resumed run's step 3 wins
    assert {(run, tag) for run, tag, _, _ in rows} == {("l1", "loss/g_l1"), ("l1", "val/psnr"), ("l1", "lr"),
                                                       ("gan", "loss/g_l1"), ("gan", "loss/g_gan")}
    assert "wrote 7 files" in capsys.readouterr().out


def test_reader_and_smoothing_match_tensorboard(runs):
    a, _ = runs
    steps, values = read_scalars(a)["val/psnr"]
    assert steps.tolist() == [2, 4] and values.tolist() == [20.0, 21.5]
    assert smooth(values, 0.0).tolist() == [20.0, 21.5]
    assert smooth(values, 0.5).tolist() == pytest.approx([20.0, (0.25 * 20 + 0.5 * 21.5) / 0.75])


@pytest.mark.parametrize("case", ["missing", "no events", "bad smooth"])
@pytest.mark.slow
def test_mistakes_exit_2_with_one_line(case, tmp_path):
    (tmp_path / "empty").mkdir()
    args = {"missing": ["--run", str(tmp_path / "nope")], "no events": ["--run", str(tmp_path / "empty")],
            "bad smooth": ["--run", str(tmp_path / "empty"), "--smooth", "1.5"]}[case]
    result = subprocess.run([sys.executable, "-m", "gan_colorizer.inspect.curves", *args, "--out", str(tmp_path / "o")],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stderr.startswith("error: ") and len(result.stderr.splitlines()) == 1
    assert {"missing": "no such folder", "no events": "no TensorBoard event file", "bad smooth": "--smooth 1.5"}[case] \
        in result.stderr
