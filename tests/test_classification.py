"""--head classification end to end: both stages from the command line, the color prior, checkpoints, evaluation
with every decoding, colorize.py, visualize.py --pixel, and the ONNX export."""
import json

import numpy as np
import pytest
import torch
from conftest import make_photo_folder, run_dirs_args
from test_training import events

from gan_colorizer import checkpoint as ckpt_io

from gan_colorizer.models.registry import load_generator
from gan_colorizer.ab_bins import ab_bins
from gan_colorizer.ab_prior import empirical_prior
from gan_colorizer.colorize.cli import main as colorize_main
from gan_colorizer.inspect.cli import main as visualize_main
from gan_colorizer.inspect.weights import layer_rows
from gan_colorizer.models.classifier import ColorClassifier, core
from gan_colorizer.runtime import count_parameters
from gan_colorizer.train.cli import main

TINY32 = ["--image-size", "32", "--batch-size", "2", "--num-workers", "0", "--log-every", "1", "--image-every", "100",
          "--viz-every", "0", "--val-fraction", "0.25", "--amp", "off", "--head", "classification"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Stage 1 (2 steps) then stage 2 from it (2 steps, with EMA) with the classification head."""
    tmp = tmp_path_factory.mktemp("classes")
    data = make_photo_folder(tmp / "photos", 8)[0].parent
    args = ["--data", str(data), *TINY32]
    assert main("pretrain", [*args, "--max-steps", "2", "--viz-every", "2", *run_dirs_args(tmp, "c1")]) == 0
    assert main("gan", [*args, "--max-steps", "2", "--ema-decay", "0.9", "--init-generator",
                        str(tmp / "checkpoints" / "c1" / "best.pt"), *run_dirs_args(tmp, "c2")]) == 0
    return tmp, data


@pytest.mark.slow
def test_both_stages_train_with_the_cross_entropy_and_save_the_prior(runs):
    tmp, _ = runs
    for name in ("c1", "c2"):
        run_dir = tmp / "runs" / name
        prior = np.load(run_dir / "prior.npy")
        info = json.loads((run_dir / "prior.json").read_text())
        assert prior.shape == (313,) and prior.sum() == pytest.approx(1.0) and prior.min() > 0
        used = json.loads((run_dir / "data.json").read_text())["train"]["used"]  # the split decides how many
        assert info["images"] == used and info["pixels"] == used * 32 * 32 and info["q"] == 313
        assert (run_dir / "prior.png").stat().st_size > 10_000
        ckpt = ckpt_io.load(tmp / "checkpoints" / name / "last.pt")
        assert np.allclose(ckpt["generator"]["prior"].numpy(), prior)  # the checkpoint carries it
        assert ckpt["color_prior"]["pixels"] == info["pixels"]
    scalars = set(events(tmp / "runs" / "c2").Tags()["scalars"])
    assert {"loss/g_ce", "loss/g_l1", "loss/g_gan", "loss/d_fake", "val/l1"} <= scalars
    ema = ckpt_io.load(tmp / "checkpoints" / "c2" / "last.pt")["generator_ema"]
    assert np.allclose(ema["prior"].numpy(), prior)


@pytest.mark.slow
def test_the_prior_is_deterministic_and_counts_every_pixel_of_the_sample(runs):
    tmp, data = runs
    files = sorted(data.iterdir())
    a, info = empirical_prior(files, 32, 4, seed=3, workers=0, device="cpu", bins=ab_bins())
    b, _ = empirical_prior(files, 32, 4, seed=3, workers=0, device="cpu", bins=ab_bins())
    c, _ = empirical_prior(files, 32, 4, seed=4, workers=0, device="cpu", bins=ab_bins())
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert info["pixels"] == 4 * 32 * 32 and info["images"] == 4 and info["of_images"] == 8


@pytest.mark.slow
def test_checkpoints_rebuild_the_classifier_without_flags(runs):
    tmp, _ = runs
    generator, cfg, ckpt = load_generator(tmp / "checkpoints" / "c2" / "best.pt")
    assert isinstance(generator, ColorClassifier) and cfg.model.head == "classification"
    assert ckpt["weights_used"] == "ema"
    gray_l = torch.zeros(1, 1, 32, 64)
    logits, ab = generator(gray_l, return_logits=True)
    assert logits.shape == (1, 313, 32, 64) and ab.shape == (1, 2, 32, 64)
    assert torch.equal(generator(gray_l), ab)
    net = core(generator)  # the parameters: the wrapper holds only buffers (bins, prior)
    rows = layer_rows(net)
    assert sum(r["params"] for r in rows) == count_parameters(generator) == count_parameters(net)
    assert {r["group"] for r in rows} == {"encoder", "bottleneck", "decoder", "head"}


def test_both_generator_types_output_313_logits_per_pixel():
    from gan_colorizer.config import defaults
    from gan_colorizer.models.pix2pix import UNetGenerator
    from gan_colorizer.models.registry import build_generator
    cfg = defaults("pretrain")
    cfg.model.head, cfg.model.generator, cfg.model.unet_filters = "classification", "unet", 4
    unet = build_generator(cfg.model).eval()
    assert isinstance(unet.net, UNetGenerator) and not isinstance(unet.net.up1[-1], torch.nn.Tanh)
    with torch.no_grad():
        logits, ab = unet(torch.randn(1, 1, 256, 256), return_logits=True)
    assert logits.shape == (1, 313, 256, 256) and ab.shape == (1, 2, 256, 256)
    assert ab.abs().max() <= 1.0 and logits.abs().max() > 0


@pytest.mark.slow
def test_resume_keeps_the_prior_of_the_checkpoint(runs, tmp_path):
    tmp, data = runs
    last = tmp / "checkpoints" / "c1" / "last.pt"
    before = ckpt_io.load(last)["generator"]["prior"]
    assert main("pretrain", ["--data", str(data), *TINY32, "--max-steps", "3", "--resume", str(last),
                             *run_dirs_args(tmp, "c1")]) == 0
    after = ckpt_io.load(last)
    assert after["step"] == 3 and torch.equal(after["generator"]["prior"], before)


@pytest.mark.slow
def test_a_stage1_classifier_cannot_start_a_stage2_told_regression(runs, capsys):
    tmp, data = runs  # --init-generator takes the head from stage 1; --head given overrides it, and must fit
    code = main("gan", ["--data", str(data), *TINY32[:-2], "--max-steps", "1", "--init-generator",
                        str(tmp / "checkpoints" / "c1" / "best.pt"), "--head", "regression",
                        *run_dirs_args(tmp, "mismatch")])
    assert code == 2 and "head: checkpoint 'classification', this run 'regression'" in capsys.readouterr().err


@pytest.mark.slow
def test_evaluate_reports_the_same_metrics_with_each_decoding(runs, tiny_checkpoint):
    from gan_colorizer.evaluate.run import EvalOptions, evaluate
    tmp, data = runs
    ckpt = str(tmp / "checkpoints" / "c2" / "best.pt")
    results = {}
    for decode in ("annealed", "mode", "mean"):
        summary = evaluate(EvalOptions(checkpoints=[ckpt, str(tiny_checkpoint)], labels=["classes", "regression"],
                                       data=str(data), out=str(tmp / f"eval-{decode}"), image_size=32,
                                       num_workers=0, grid_images=0, decode=decode))
        results[decode] = summary["models"]
    for decode, models in results.items():
        assert models["classes"]["head"] == "classification" and models["classes"]["decode"].startswith(
            "annealed mean, T = 0.38" if decode == "annealed" else decode)
        assert models["regression"]["decode"].startswith("ignored")
        assert set(models["classes"]) >= {"psnr", "ssim", "delta_e2000", "auc_ab", "colorfulness"}
        assert {k for k in models["regression"] if k not in ("decode", "color_prior")} <= set(models["classes"])
    assert results["mode"]["classes"]["psnr"] != results["mean"]["classes"]["psnr"]


@pytest.mark.slow
def test_colorize_and_visualize_pixel_work_with_a_classification_checkpoint(runs, tmp_path, capsys):
    tmp, data = runs
    ckpt = tmp / "checkpoints" / "c2" / "best.pt"
    photo = sorted(data.iterdir())[0]  # 48 x 40 pixels
    args = [str(photo), "--checkpoint", str(ckpt), "--out", str(tmp_path / "col"), "--decode", "mode"]
    assert colorize_main([*args, "--image-size", "32"]) == 0
    assert ", mode)" in capsys.readouterr().out and len(list((tmp_path / "col").iterdir())) == 1
    out = tmp_path / "viz"
    assert visualize_main(["--checkpoint", str(ckpt), "--image", str(photo), "--out", str(out), "--pixel", "5,7",
                           "--pixel", "47,39", "--layers", "head"]) == 0
    summary = json.loads((out / "layers.json").read_text())
    assert [p["pixel"] for p in summary["pixels"]] == [[5, 7], [47, 39]]
    first = summary["pixels"][0]
    assert (out / first["file"]).stat().st_size > 10_000 and (out / "prior.png").is_file()
    assert {"truth", "decoded", "mode", "mean"} <= set(first) and len(first["top_bins"]) == 5
    assert first["mode"] == [first["top_bins"][0]["a"], first["top_bins"][0]["b"]]
    assert summary["pixels"][1]["network_pixel"][0] == summary["input_size"][1] - 1  # the last column maps to the last


@pytest.mark.parametrize("args, message", [
    (["--pixel", "5"], "--pixel 5: give X,Y"),
    (["--pixel", "48,0"], "--pixel 48,0: outside the photo (48 x 40 pixels)"),
    (["--pixel", "1,1", "--regression"], "has a regression head"),
])
@pytest.mark.slow
def test_visualize_pixel_mistakes_are_one_line(runs, tmp_path, tiny_checkpoint, args, message, capsys):
    tmp, data = runs
    ckpt = tiny_checkpoint if "--regression" in args else tmp / "checkpoints" / "c1" / "best.pt"
    args = [a for a in args if a != "--regression"]
    code = visualize_main(["--checkpoint", str(ckpt), "--image", str(sorted(data.iterdir())[0]), "--out",
                           str(tmp_path / "v"), *args])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_onnx_export_of_a_classifier_outputs_the_decoded_ab(runs, tmp_path):
    pytest.importorskip("onnxruntime", reason="the optional [export] dependencies are not installed")
    from gan_colorizer.colorize.onnx import check_onnx, export_onnx
    generator, _, _ = load_generator(runs[0] / "checkpoints" / "c1" / "best.pt")
    path = export_onnx(generator, tmp_path / "classes.onnx")
    assert check_onnx(path, generator, [(1, 32, 64)]) < 1e-3


@pytest.mark.system
def test_under_torchrun_rank_0_makes_the_prior_and_every_rank_trains_with_it(runs, tmp_path):
    from test_distributed import _torchrun
    _, data = runs
    result = _torchrun(2, "train_gan.py", "--data", str(data), *TINY32, "--batch-size", "4", "--grad-accum", "2",
                       "--epoch-size", "16", "--max-steps", "2", *run_dirs_args(tmp_path, "ddp"))
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = tmp_path / "runs" / "ddp"
    files = run_dir.joinpath("train_files.txt").read_text().splitlines()
    expected, _ = empirical_prior(files, 32, len(files), seed=0, workers=0, device="cpu", bins=ab_bins())
    assert np.allclose(np.load(run_dir / "prior.npy"), expected)
    assert result.stdout.count("color prior of the training set") == 1  # made once, on rank 0
    ckpt = ckpt_io.load(tmp_path / "checkpoints" / "ddp" / "last.pt")
    assert np.allclose(ckpt["generator"]["prior"].numpy(), expected) and ckpt["step"] == 2
    assert {"loss/g_ce", "loss/g_gan"} <= set(events(run_dir).Tags()["scalars"])
