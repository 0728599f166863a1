"""Engines (torch, onnx, onnx-int8): parity with torch, int8's color change, the same files whatever the engine,
and one-line refusals of combinations that cannot work."""
import os
import re

import numpy as np
import pytest
import torch
from conftest import color_image, dated_lines
from PIL import Image

from gan_colorizer.colorize import cli as colorize_cli
from gan_colorizer.colorize import engines
from gan_colorizer.colorize.api import Colorizer
from gan_colorizer.colorize.inference import forward_ab
from gan_colorizer.colorize.onnx import main as export_main
from gan_colorizer.errors import UserError
from gan_colorizer.metrics import delta_e2000_map, image_lab


@pytest.fixture(scope="module")
def exported(tiny_checkpoint, tmp_path_factory):
    """The tiny checkpoint exported as fp32 and as int8 (calibrated on a few made-up photos): (fp32, int8) paths."""
    root = tmp_path_factory.mktemp("onnx")
    (root / "calibration").mkdir()
    for i in range(4):
        color_image(i, size=(96, 80)).save(root / "calibration" / f"{i}.png")
    fp32, int8 = root / "g.onnx", root / "g-int8.onnx"
    assert export_main(["--checkpoint", str(tiny_checkpoint), "--out", str(fp32), "--no-check"]) == 0
    assert export_main(["--checkpoint", str(tiny_checkpoint), "--out", str(int8), "--no-check", "--int8",
                        "--calibration", str(root / "calibration"), "--image-size", "64"]) == 0
    return fp32, int8


def colorized_lab(colorizer, photo, hints=None):
    return image_lab(torch.from_numpy(np.asarray(colorizer.colorize(photo, hints=hints))).permute(2, 0, 1)[None])


@pytest.mark.slow
def test_onnx_fp32_is_within_1e_3_of_torch_in_ab_at_sizes_other_than_the_traced_one(tiny_checkpoint, exported):
    torch_fp32 = Colorizer.from_checkpoint(tiny_checkpoint, "cpu", amp="off")
    from_file = Colorizer.from_checkpoint(exported[0])
    in_memory = Colorizer.from_checkpoint(tiny_checkpoint, "cpu", engine="onnx")  # a .pt run in onnxruntime
    assert (from_file.engine, in_memory.engine, from_file.multiple) == ("onnx", "onnx", 32)
    for shape in [(1, 1, 96, 160), (2, 1, 128, 64)]:  # traced at (1, 1, 64, 96)
        gray_l = torch.rand(*shape) * 2 - 1
        expected = forward_ab(torch_fp32.generator, gray_l, torch_fp32.runtime)
        from_numpy = torch.from_numpy(from_file.generator(gray_l.numpy()))  # numpy in and out: no torch on its path
        through_torch = forward_ab(in_memory.generator, gray_l, in_memory.runtime)  # as video and inspect call it
        for got in (from_numpy, through_torch):
            assert got.shape == expected.shape and float((got - expected).abs().max()) < 1e-3


@pytest.mark.slow
def test_int8_changes_color_within_the_stated_bounds_against_fp32(exported):
    fp32, int8 = Colorizer.from_checkpoint(exported[0], render_size=64), Colorizer.from_checkpoint(exported[1],
                                                                                                 render_size=64)
    assert int8.engine == "onnx-int8" and "per-channel" in int8.generator.metadata["quantization"]
    assert "4 calibration photos: mean " in int8.generator.metadata["int8_change"]  # checked at export
    de = torch.cat([delta_e2000_map(colorized_lab(int8, p), colorized_lab(fp32, p)).flatten()
                    for p in (color_image(i, size=(120, 90)) for i in range(10, 13))])
    assert float(de.mean()) < 1.0 and float(torch.quantile(de.double(), 0.99)) < 5.0
    assert float(de.max()) > 0  # it is int8: not the fp32 model again


@pytest.mark.slow
def test_every_engine_writes_the_same_files_under_the_same_rules(tiny_checkpoint, exported, tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    color_image(1, size=(90, 70)).convert("RGBA").save(photos / "alpha.png")
    exif = Image.Exif()
    exif[0x0132] = "1950:01:01 00:00:00"  # DateTime
    color_image(2, size=(80, 100)).convert("L").save(photos / "old.jpg", exif=exif)
    runs = {"torch": [tiny_checkpoint], "onnx-from-pt": [tiny_checkpoint, "--engine", "onnx"],
            "onnx": [exported[0]], "onnx-int8": [exported[1], "--engine", "onnx-int8"]}
    for name, checkpoint in runs.items():
        out = tmp_path / name
        argv = [str(photos), "--out", str(out), "--image-size", "64", "--checkpoint", *map(str, checkpoint)]
        assert colorize_cli.main(argv) == 0, name
        assert sorted(p.name for p in out.iterdir()) == ["alpha.png", "old.png"]
        with Image.open(out / "alpha.png") as img, Image.open(photos / "alpha.png") as src:
            assert img.mode == "RGBA"
            assert np.array_equal(np.asarray(img.getchannel("A")), np.asarray(src.getchannel("A")))
        with Image.open(out / "old.png") as img:
            assert img.size == (80, 100) and img.getexif().get(0x0132) == "1950:01:01 00:00:00"
        first = (out / "old.png").stat().st_mtime_ns
        assert colorize_cli.main(argv + ["--saturation", "0"]) == 0 and (out / "old.png").stat().st_mtime_ns == first
        assert colorize_cli.main(argv + ["--saturation", "0", "--overwrite"]) == 0
        with Image.open(out / "old.png") as img:
            assert np.ptp(np.asarray(img.convert("RGB")).astype(int), axis=-1).max() == 0, name  # replaced: gray
    assert "engine onnx-int8" in capsys.readouterr().out


def test_int8_with_a_pytorch_checkpoint_is_one_line(tiny_checkpoint, tmp_path, capsys):
    color_image(1).save(tmp_path / "a.png")
    code = colorize_cli.main([str(tmp_path / "a.png"), "--out", str(tmp_path / "out"), "--checkpoint",
                              str(tiny_checkpoint), "--engine", "onnx-int8"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "--int8 --calibration" in err
    assert not (tmp_path / "out").exists()


def test_a_file_that_is_not_an_export_of_ours_is_one_line(tmp_path):
    (tmp_path / "junk.onnx").write_bytes(b"not a model at all")
    with pytest.raises(UserError, match="not an ONNX model"):
        engines.engine_for(tmp_path / "junk.onnx", None)
    with pytest.raises(UserError, match="no such file"):
        engines.engine_for(tmp_path / "missing.onnx", "onnx")


@pytest.mark.slow
def test_an_engine_other_than_the_files_own_and_decode_on_an_export_are_refused(exported):
    assert engines.engine_for(exported[0], None) == "onnx" and engines.engine_for(exported[1], None) == "onnx-int8"
    for path, engine in [(exported[0], "torch"), (exported[0], "onnx-int8"), (exported[1], "onnx")]:
        with pytest.raises(UserError, match=f"--engine {engine}: .* is an onnx"):
            engines.engine_for(path, engine)
    with pytest.raises(UserError, match="runs on the CPU"):
        Colorizer.from_checkpoint(exported[0], device="cuda")


def test_int8_export_needs_calibration_photos(tiny_checkpoint, tmp_path, capsys):
    argv = ["--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path / "g.onnx"), "--int8"]
    assert export_main(argv) == 2 and "--calibration" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert export_main(argv + ["--calibration", str(tmp_path / "empty"), "--no-check"]) == 2
    assert "no photos there" in capsys.readouterr().err and not (tmp_path / "g.onnx").exists()


@pytest.mark.slow
def test_a_classification_head_exports_with_its_decoding_and_refuses_another_one(tmp_path):
    from gan_colorizer.colorize.onnx import export_onnx, model_metadata
    from gan_colorizer.config import defaults
    from gan_colorizer.models.classifier import set_decoding
    from gan_colorizer.models.registry import build_generator
    cfg = defaults("pretrain")
    cfg.model.head = "classification"
    generator = build_generator(cfg.model, load_pretrained=False).eval()
    decoding = set_decoding(generator, "mode")
    path = export_onnx(generator, tmp_path / "c.onnx", 32, metadata=model_metadata(cfg, 32, decoding))
    colorizer = Colorizer.from_checkpoint(path)
    gray_l = torch.rand(2, 1, 96, 128) * 2 - 1
    with torch.inference_mode():
        expected = generator(gray_l)
    assert colorizer.decoding == "mode" and float((torch.from_numpy(colorizer.generator(gray_l.numpy())) - expected).abs().max()) < 1e-3
    with pytest.raises(UserError, match="decoding is fixed at export"):
        Colorizer.from_checkpoint(path, decode="annealed")


def test_unreadable_calibration_photos_are_named_and_none_readable_is_refused_before_exporting(
        tiny_checkpoint, tmp_path, capsys, monkeypatch):
    from gan_colorizer.colorize import onnx as onnx_export
    folder = tmp_path / "calibration"
    folder.mkdir()
    (folder / "broken.png").write_bytes(b"not a png")
    (folder / "empty.jpg").write_bytes(b"")
    monkeypatch.setattr(onnx_export, "export_onnx", lambda *a, **k: pytest.fail("exported before the check"))
    argv = ["--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path / "g.onnx"), "--int8", "--no-check",
            "--calibration", str(folder)]
    assert export_main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and str(folder) in errors[0] and "none of its 2 photos is readable" in errors[0]
    skipped = [line for line in lines if line.startswith("warning: skipped calibration photo")]
    assert len(skipped) == 2 and "broken.png" in skipped[0] and "empty.jpg: empty file" in skipped[1]
    assert len(lines) == 3 and not (tmp_path / "g.onnx").exists()  # no traceback, nothing written


def test_a_readable_calibration_photo_is_used_and_an_unreadable_one_named(tmp_path, caplog):
    from gan_colorizer.colorize.int8 import calibration_inputs
    color_image(1, size=(96, 80)).save(tmp_path / "a.png")
    (tmp_path / "b.png").write_bytes(b"\x89PNG truncated")
    color_image(2, size=(96, 80)).save(tmp_path / "c.png")
    with caplog.at_level("WARNING"):
        expected, inputs = calibration_inputs(tmp_path, 64, 32, 10)
        inputs = list(inputs)
    assert expected == 3 and [p.name for p, _ in inputs] == ["a.png", "c.png"] and list(inputs[0][1]) == ["gray_l"]
    assert inputs[0][1]["gray_l"].shape[:2] == (1, 1)
    assert len(caplog.records) == 1 and f"skipped calibration photo {tmp_path / 'b.png'}: " in caplog.text
    assert len(list(calibration_inputs(tmp_path, 64, 32, 1)[1])) == 1  # --calibration-count: readable photos at most


@pytest.mark.slow
def test_an_int8_model_calibrated_on_one_flat_photo_is_refused_with_its_figures_and_nothing_written(
        tiny_checkpoint, tmp_path, capsys):
    """One 1x1 photo as the calibration set: ranges that fit nothing else (int8 moved ordinary photos by tens of
    Lab units, exit 0 before). The check runs the int8 and fp32 models itself, on the calibration photos and on the
    embedded sample photos; off a terminal calibration and check are dated progress lines."""
    (tmp_path / "calibration").mkdir()
    Image.new("RGB", (1, 1), (120, 90, 60)).save(tmp_path / "calibration" / "dot.png")
    (tmp_path / "out").mkdir()
    code = export_main(["--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path / "out" / "g-int8.onnx"),
                        "--no-check", "--int8", "--calibration", str(tmp_path / "calibration"), "--image-size", "64"])
    out, err = capsys.readouterr()
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    figures = re.search(r"by ([\d.]+) Lab units on average over \d+ embedded sample photos \(limit ([\d.]+)\)", err)
    assert figures and float(figures[1]) > float(figures[2]) and "--max-change" in err, err
    assert os.listdir(tmp_path / "out") == []  # no model, no temporary
    assert len(dated_lines(out, "calibrate")) == 1 and len(dated_lines(out, "int8 check (calibration photos)")) == 1


def test_the_int8_check_refuses_past_the_mean_or_the_worst_photos_limit_and_0_turns_it_off():
    from pathlib import Path

    from gan_colorizer.colorize.int8 import WORST_FACTOR, Change, check_change
    limit = 5.0
    check_change(Change("calibration photos", 8, limit, WORST_FACTOR * limit, Path("a.png")), limit, "cal")  # at them
    for mean, worst in [(limit + 0.01, limit), (1.0, WORST_FACTOR * limit + 0.01)]:
        with pytest.raises(UserError) as refused:
            check_change(Change("calibration photos", 8, mean, worst, Path("dir/b.png")), limit, "cal")
        message = str(refused.value)
        assert message.startswith("--calibration cal: int8 moved ab from fp32 by ") and "\n" not in message
        assert f"by {mean:.2f} Lab units on average over 8 calibration photos (limit 5)" in message
        assert f"by {worst:.2f} on the worst, b.png (limit {WORST_FACTOR * limit:g})" in message
        check_change(Change("calibration photos", 8, mean, worst, Path("b.png")), 0, "cal")  # --max-change 0


@pytest.mark.parametrize("value", ["-1", "nan", "inf"])
def test_a_max_change_that_is_no_limit_is_one_line(tiny_checkpoint, tmp_path, capsys, value):
    code = export_main(["--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path / "g.onnx"), "--int8",
                        "--calibration", str(tmp_path), "--max-change", value])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.splitlines() == [f"error: --max-change {value}: must be a number >= 0 (Lab units; 0: "
                                              f"no limit)"] and not (tmp_path / "g.onnx").exists()


def test_calibration_without_int8_is_refused(tiny_checkpoint, tmp_path, capsys):
    (tmp_path / "photos").mkdir()
    code = export_main(["--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path / "g.onnx"), "--no-check",
                        "--calibration", str(tmp_path / "photos")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "--int8" in err and not (tmp_path / "g.onnx").exists()


def test_without_onnxruntime_an_onnx_model_is_one_line_saying_what_to_install(tmp_path, capsys, monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` raises ImportError
    (tmp_path / "m.onnx").write_bytes(b"whatever it holds")
    with pytest.raises(UserError, match=r"m.onnx: .* needs onnxruntime, which is not installed: pip install -e "
                                        r"\"\.\[export\]\", or pip install -r requirements-colorize.txt"):
        engines.engine_for(tmp_path / "m.onnx", None)
    color_image(1).save(tmp_path / "a.png")
    code = colorize_cli.main([str(tmp_path / "a.png"), "--out", str(tmp_path / "out"), "--checkpoint",
                              str(tmp_path / "m.onnx")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "onnxruntime" in err and "not an ONNX model" not in err


@pytest.mark.parametrize("missing", ["onnx", "onnxruntime"])
def test_without_onnx_engine_onnx_and_the_export_tool_are_one_line_saying_what_to_install(
        tiny_checkpoint, tmp_path, capsys, monkeypatch, missing):
    import sys
    monkeypatch.setitem(sys.modules, missing, None)
    color_image(1).save(tmp_path / "a.png")
    code = colorize_cli.main([str(tmp_path / "a.png"), "--out", str(tmp_path / "out"), "--checkpoint",
                              str(tiny_checkpoint), "--engine", "onnx"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and f"needs {missing}," in err and '".[export]"' in err
    code = export_main(["--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path / "g.onnx")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and f"needs {missing}," in err and '".[export]"' in err
    assert not (tmp_path / "g.onnx").exists()


def optimized_ops(path, tmp_path) -> dict:
    """{op type: count} of the graph onnxruntime runs for the model (after its fusions and layout changes)."""
    import collections

    import onnx
    import onnxruntime
    options = onnxruntime.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return collections.Counter(node.op_type for node in onnx.load(options.optimized_model_filepath).graph.node)


@pytest.mark.slow
def test_every_convolution_of_the_int8_model_runs_in_int8(exported, tmp_path):
    import onnx
    convs = sum(node.op_type == "Conv" for node in onnx.load(str(exported[0])).graph.node)
    ops = optimized_ops(exported[1], tmp_path)
    assert ops["QLinearConv"] == convs > 30 and ops["Conv"] == ops["FusedConv"] == 0, ops
    assert "QLinearAdd" in ops  # the residual sums stay in int8 too


@pytest.mark.slow
def test_widening_the_last_cross_adds_channels_up_to_a_multiple_of_4_and_changes_no_output(exported, tmp_path):
    import onnx
    import onnxruntime

    from gan_colorizer.colorize.onnx_graph import widen_last_cross
    model = onnx.load(str(exported[0]))
    assert widen_last_cross(model) == 3  # 96 channels from the last upsampling + gray_l = 97 -> 100
    weights = {w.name: tuple(w.dims) for w in model.graph.initializer}
    assert sum(shape == (100, 100, 3, 3) for shape in weights.values()) == 2 and (2, 100, 1, 1) in weights.values()
    assert widen_last_cross(model) == 0  # already a multiple of 4
    onnx.save(model, str(tmp_path / "wide.onnx"))
    gray_l = np.random.default_rng(0).uniform(-1, 1, (2, 1, 96, 128)).astype(np.float32)
    run = lambda path: onnxruntime.InferenceSession(str(path)).run(["ab"], {"gray_l": gray_l})[0]  # noqa: E731
    assert np.abs(run(tmp_path / "wide.onnx") - run(exported[0])).max() < 1e-5
    assert "widened by 3" in Colorizer.from_checkpoint(exported[1]).generator.metadata["quantization"]


def test_the_numpy_path_gives_the_same_rows_in_the_same_order_on_several_threads_as_on_one(monkeypatch):
    from gan_colorizer.colorize import inference_numpy
    monkeypatch.setattr(inference_numpy, "CHUNK_PIXELS", 200)  # 20 chunks of 5 rows, a ragged last one
    rng = np.random.default_rng(0)
    pixels, small_ab = rng.integers(0, 256, (97, 35, 3), dtype=np.uint8), rng.normal(0, 0.3, (1, 2, 24, 12))
    results = {}
    for threads in (1, 4):
        monkeypatch.setattr(inference_numpy, "THREADS", threads)
        gray_l = inference_numpy.full_res_l(pixels)
        rows = list(inference_numpy.recombined_rows(gray_l, small_ab.astype(np.float32)))
        results[threads] = gray_l, [first for first, _ in rows], np.concatenate([r for _, r in rows])
    assert results[1][1] == results[4][1] == sorted(results[4][1]) and len(results[4][1]) > 10
    assert np.array_equal(results[1][0], results[4][0]) and np.array_equal(results[1][2], results[4][2])


def test_a_hint_models_calibration_photos_carry_simulated_hints_seeded_per_photo(tmp_path):
    from gan_colorizer.colorize.int8 import calibration_inputs
    for i in range(6):
        color_image(i, size=(96, 80)).save(tmp_path / f"{i}.png")
    feeds = [f for _, f in calibration_inputs(tmp_path, 64, 32, 10, hints=True)[1]]
    again = [f for _, f in calibration_inputs(tmp_path, 64, 32, 10, hints=True)[1]]
    assert all(f["hints"].shape == (1, 3, *f["gray_l"].shape[2:]) for f in feeds)
    masks = [f["hints"][0, 2] for f in feeds]
    assert sum(m.any() for m in masks) >= 3 and all(set(np.unique(m)) <= {0.0, 1.0} for m in masks)
    assert any(np.abs(f["hints"][0, :2]).max() > 0.05 for f in feeds)  # the photos' own colours, in ab / 110
    assert all(np.array_equal(a["hints"], b["hints"]) for a, b in zip(feeds, again))


@pytest.fixture(scope="module")
def hint_exported(tmp_path_factory):
    """A hint model (default generator, --hints, seeded random weights, its hint weights made non-zero so hints
    matter) as a checkpoint and exported as fp32 and as int8: (checkpoint, fp32, int8) paths."""
    from gan_colorizer.checkpoint import save_atomic
    from gan_colorizer.config import defaults, update
    from gan_colorizer.models.registry import build_generator
    root = tmp_path_factory.mktemp("hint-onnx")
    cfg = update(defaults("pretrain"), {"hints": True, "pretrained": False})
    torch.manual_seed(0)
    generator = build_generator(cfg.model, load_pretrained=False)
    first = next(m for m in generator.modules() if isinstance(m, torch.nn.Conv2d))
    with torch.no_grad():  # the hint weights start at zero (an untrained hint model is the automatic one)
        first.weight[:, 1:].normal_(0, float(first.weight[:, :1].std()))
    checkpoint = root / "hints.pt"
    save_atomic({"format_version": 1, "stage": "pretrain", "config": cfg.to_dict(), "generator":
                 generator.state_dict(), "step": 1, "epoch": 0, "metrics": {}}, checkpoint)
    (root / "calibration").mkdir()
    for i in range(4):
        color_image(i, size=(96, 80)).save(root / "calibration" / f"{i}.png")
    fp32, int8 = root / "h.onnx", root / "h-int8.onnx"
    assert export_main(["--checkpoint", str(checkpoint), "--out", str(fp32)]) == 0  # checked with random hints
    assert export_main(["--checkpoint", str(checkpoint), "--out", str(int8), "--no-check", "--int8",
                        "--calibration", str(root / "calibration"), "--image-size", "64"]) == 0
    return checkpoint, fp32, int8


HINTS = [{"x": 30, "y": 25, "color": "#c83c28", "radius": 4}, {"x": 90, "y": 70, "color": "#2850dc", "radius": 3}]


@pytest.mark.slow
def test_a_hint_models_export_takes_hints_and_runs_as_torch_does_with_them_and_without(hint_exported):
    import onnx

    from gan_colorizer.colorize.onnx import random_hints
    checkpoint, fp32, _ = hint_exported
    model = onnx.load(str(fp32))
    assert [i.name for i in model.graph.input] == ["gray_l", "hints"]
    assert "mask" in {p.key: p.value for p in model.metadata_props}["hints"]
    torch_fp32 = Colorizer.from_checkpoint(checkpoint, "cpu", amp="off")
    from_file, in_memory = Colorizer.from_checkpoint(fp32), Colorizer.from_checkpoint(checkpoint, "cpu", engine="onnx")
    assert torch_fp32.takes_hints and from_file.takes_hints and in_memory.takes_hints
    for n, h, w in [(1, 96, 160), (2, 128, 64)]:  # traced at (1, 1, 64, 96)
        gray_l, hints = torch.rand(n, 1, h, w) * 2 - 1, random_hints(n, h, w, seed=h)
        expected, automatic = (forward_ab(torch_fp32.generator, gray_l, torch_fp32.runtime, x) for x in (hints, None))
        assert float((expected - automatic).abs().max()) > 0.05  # the hints matter: the comparison below can fail
        for got, auto in [(torch.from_numpy(from_file.generator(gray_l.numpy(), hints.numpy())),
                           torch.from_numpy(from_file.generator(gray_l.numpy()))),
                          (forward_ab(in_memory.generator, gray_l, None, hints),
                           forward_ab(in_memory.generator, gray_l, None))]:
            assert float((got - expected).abs().max()) < 1e-3 and float((auto - automatic).abs().max()) < 1e-3


@pytest.mark.slow
def test_both_onnx_engines_colour_a_photo_with_hints_as_torch_does(hint_exported, tmp_path, capsys):
    import json
    checkpoint, fp32, int8 = hint_exported
    engines_ = {"torch": Colorizer.from_checkpoint(checkpoint, "cpu", 64, amp="off"),
                "onnx": Colorizer.from_checkpoint(fp32, render_size=64),
                "onnx-int8": Colorizer.from_checkpoint(int8, render_size=64)}
    assert engines_["onnx-int8"].engine == "onnx-int8" and "mean" in engines_["onnx-int8"].generator.metadata[
        "int8_change"]
    photos = [color_image(i, size=(120, 96)) for i in range(10, 13)]
    lab = {name: [colorized_lab(c, p, HINTS) for p in photos] for name, c in engines_.items()}
    for name, colorizer in engines_.items():  # hints change every engine's colours
        automatic = colorized_lab(colorizer, photos[0])
        assert float(delta_e2000_map(lab[name][0], automatic).mean()) > 1.0, name
    de = {name: torch.cat([delta_e2000_map(a, b).flatten() for a, b in zip(lab[name], lab["torch"])])
          for name in ("onnx", "onnx-int8")}
    assert float(de["onnx"].max()) < 1.0  # 8-bit rounding only
    assert float(de["onnx-int8"].mean()) < 1.0 and float(torch.quantile(de["onnx-int8"].double(), 0.99)) < 5.0
    photos[0].save(tmp_path / "photo.png")
    (tmp_path / "hints.json").write_text(json.dumps({"hints": HINTS}))
    for path, engine in [(fp32, "onnx"), (int8, "onnx-int8"), (checkpoint, "onnx")]:
        out = tmp_path / f"out-{engine}-{path.suffix}"
        assert colorize_cli.main([str(tmp_path / "photo.png"), "--checkpoint", str(path), "--engine", engine,
                                  "--hints", str(tmp_path / "hints.json"), "--image-size", "64", "--out",
                                  str(out)]) == 0
        assert f"engine {engine}" in capsys.readouterr().out
        with Image.open(out / "photo.png") as written:
            expected = engines_[engine].colorize(photos[0], hints=HINTS)
            assert np.abs(np.asarray(written, int) - np.asarray(expected, int)).max() <= (0 if path != checkpoint
                                                                                          else 1)


@pytest.mark.slow
def test_the_int8_hint_input_spans_every_hint_colour_and_its_last_cross_is_widened(hint_exported):
    import onnx
    from onnx import numpy_helper
    model = onnx.load(str(hint_exported[2]))
    weights = {w.name: numpy_helper.to_array(w) for w in model.graph.initializer}
    producer = {out: node for node in model.graph.node for out in node.output}

    def origin(name):  # the tensor before its QuantizeLinear / DequantizeLinear pair
        while name in producer and producer[name].op_type in ("QuantizeLinear", "DequantizeLinear"):
            name = producer[name].input[0]
        return name
    spread = [n for n in model.graph.node if n.name.startswith("/hint_spread/")]  # hints.Spread: left in fp32
    features = {out for n in spread for out in n.output}
    assert spread and not any(producer.get(i) and producer[i].op_type == "DequantizeLinear"
                              for n in spread for i in n.input)
    joined = [n.output[0] for n in model.graph.node if n.op_type == "Concat" and not n.name.startswith("/hint_")
              and {origin(i) for i in n.input} <= {"gray_l", *features}]
    quantized = [n for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] in {*features, *joined}]
    assert len(joined) == 1 and len(quantized) == 2  # the spread's output and hints.with_hints's Concat
    quantization = {p.key: p.value for p in model.metadata_props}["quantization"]
    assert "last cross widened by 3" in quantization  # 97 -> 100 channels, as the automatic model's
    for node in quantized:
        scale, zero = float(weights[node.input[1]]), int(weights[node.input[2]])
        assert -zero * scale == pytest.approx(-128 / 110, abs=0.01) and (255 - zero) * scale > 128 / 110 - 0.01
