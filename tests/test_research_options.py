"""The research options: reconstruction-loss menu, VGG perceptual loss, weight decay, EMA, best-metric choice,
weight reports."""
import csv
import json

import pytest
import torch
import torchvision
from conftest import make_photo_folder, run_dirs_args
from test_training import events

from gan_colorizer import checkpoint as ckpt_io

from gan_colorizer.models.registry import load_generator
from gan_colorizer.errors import UserError
from gan_colorizer.losses import load_perceptual, perceptual_loss, reconstruction_loss
from gan_colorizer.runtime import count_parameters
from gan_colorizer.train.cli import main
from gan_colorizer.train.ema import EMA

TINY32 = ["--image-size", "32", "--batch-size", "2", "--num-workers", "0", "--log-every", "1", "--image-every", "100",
          "--val-fraction", "0.25", "--amp", "off"]


@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory):
    """A VGG16 with random weights in torchvision's layout: proves the loading path without the real file."""
    path = tmp_path_factory.mktemp("vgg") / "vgg16-random.pth"
    torch.manual_seed(0)
    torch.save(torchvision.models.vgg16(weights=None).state_dict(), path)
    return path


@pytest.fixture
def photos(tmp_path):
    return make_photo_folder(tmp_path / "photos", 8)[0].parent


def test_reconstruction_losses_are_l1_l2_and_their_mix():
    fake, real = torch.zeros(1, 2, 2, 2), torch.full((1, 2, 2, 2), 0.5)
    l1, parts = reconstruction_loss(fake, real, "l1")
    l2, parts2 = reconstruction_loss(fake, real, "l2")
    mix, parts3 = reconstruction_loss(fake, real, "l1+l2", l2_weight=2.0)
    assert l1.item() == pytest.approx(0.5) and l2.item() == pytest.approx(0.25) and mix.item() == pytest.approx(1.0)
    assert set(parts) == {"g_l1"} and set(parts2) == set(parts3) == {"g_l1", "g_l2"}  # L1 always reported


@pytest.mark.slow
def test_perceptual_loss_loads_local_weights_and_gradients_reach_ab(vgg_file):
    net = load_perceptual(str(vgg_file), "relu1_2,relu2_2")
    gray_l = torch.rand(2, 1, 32, 32) * 2 - 1
    real_ab = torch.rand(2, 2, 32, 32) * 0.4 - 0.2
    fake_ab = torch.zeros_like(real_ab, requires_grad=True)
    loss = perceptual_loss(net, gray_l, fake_ab, real_ab)
    loss.backward()
    assert loss.item() > 0 and fake_ab.grad.abs().sum() > 0
    assert perceptual_loss(net, gray_l, real_ab, real_ab).item() == pytest.approx(0.0, abs=1e-6)
    assert not any(p.requires_grad for p in net.parameters())


def test_perceptual_loss_without_weights_names_the_file_and_never_uses_random_vgg(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(UserError, match=r"vgg16-397923af\.pth"):
        load_perceptual(None, "relu1_2")
    with pytest.raises(UserError, match="--perceptual-layers"):
        load_perceptual(None, "relu9_9")


def test_ema_follows_the_weights_at_its_decay():
    net = torch.nn.Linear(2, 1)
    ema = EMA(net, 0.9)
    start = ema.model.weight.detach().clone()
    with torch.no_grad():
        net.weight.add_(1.0)
    ema.update(net)
    assert torch.allclose(ema.model.weight, 0.9 * start + 0.1 * net.weight)
    assert not ema.model.weight.requires_grad


@pytest.mark.slow
def test_stage2_with_every_option_trains_and_logs_them(photos, tmp_path, vgg_file):
    args = ["--data", str(photos), *TINY32, "--max-steps", "2", "--recon-loss", "l1+l2", "--l2-weight", "0.5",
            "--perceptual-weight", "0.1", "--perceptual-layers", "relu1_2,relu2_2", "--vgg-weights", str(vgg_file),
            "--weight-decay", "0.01", "--ema-decay", "0.5", "--best-metric", "val/colorfulness_gap",
            *run_dirs_args(tmp_path, "all")]
    assert main("gan", args) == 0
    tags = set(events(tmp_path / "runs" / "all").Tags()["scalars"])
    assert {"loss/g_l1", "loss/g_l2", "loss/g_perceptual", "val/colorfulness_gap", "val/delta_e2000"} <= tags
    last = ckpt_io.load(tmp_path / "checkpoints" / "all" / "last.pt")
    assert last["optimizers"]["g"]["param_groups"][0]["weight_decay"] == 0.01
    assert last["optimizers"]["g"]["param_groups"][0].get("decoupled_weight_decay", True)  # AdamW
    best = ckpt_io.load(tmp_path / "checkpoints" / "all" / "best.pt")
    assert best["best_metric"] == pytest.approx(best["metrics"]["val/colorfulness_gap"])
    assert "generator_ema" in best and "generator_ema" in last
    differs = [k for k in last["generator"] if not torch.equal(last["generator"][k], last["generator_ema"][k])]
    assert differs  # the average lags the trained weights


@pytest.mark.slow
def test_evaluation_and_inference_take_the_ema_weights_when_present(photos, tmp_path):
    assert main("pretrain", ["--data", str(photos), *TINY32, "--max-steps", "2", "--ema-decay", "0.5",
                             *run_dirs_args(tmp_path, "ema")]) == 0
    path = tmp_path / "checkpoints" / "ema" / "last.pt"
    auto, _, ckpt = load_generator(path)
    assert ckpt["weights_used"] == "ema"
    assert all(torch.equal(v, ckpt["generator_ema"][k]) for k, v in auto.state_dict().items())
    raw, _, ckpt = load_generator(path, weights="raw")
    assert ckpt["weights_used"] == "raw"
    assert all(torch.equal(v, ckpt["generator"][k]) for k, v in raw.state_dict().items())
    assert main("pretrain", ["--data", str(photos), *TINY32, "--max-steps", "1", *run_dirs_args(tmp_path, "plain")]) == 0
    with pytest.raises(UserError, match="no EMA weights"):
        load_generator(tmp_path / "checkpoints" / "plain" / "last.pt", weights="ema")
    from gan_colorizer import Colorizer
    colorizer = Colorizer.from_checkpoint(path, device="cpu", weights="raw")
    assert all(torch.equal(v, ckpt["generator"][k].to(v.dtype)) for k, v in colorizer.generator.state_dict().items())


@pytest.mark.slow
def test_init_generator_takes_the_stage1_ema_weights_unless_told_raw_and_says_which(photos, tmp_path, caplog):
    from gan_colorizer.config import defaults, update
    from gan_colorizer.models.registry import build_generator
    from gan_colorizer.train.nets import init_generator
    assert main("pretrain", ["--data", str(photos), *TINY32, "--max-steps", "2", "--ema-decay", "0.5",
                             "--no-pretrained", *run_dirs_args(tmp_path, "ema")]) == 0
    path = tmp_path / "checkpoints" / "ema" / "best.pt"
    saved = ckpt_io.load(path)
    assert any(not torch.equal(saved["generator"][k], saved["generator_ema"][k]) for k in saved["generator"])
    cfg = update(defaults("gan"), {"init_generator": str(path), "image_size": 32})
    generator = build_generator(cfg.model, load_pretrained=False)
    for choice, key, said in [("auto", "generator_ema", "EMA weights"), ("ema", "generator_ema", "EMA weights"),
                              ("raw", "generator", "trained weights")]:
        caplog.clear()
        with caplog.at_level("INFO", logger="gan_colorizer"):
            init_generator(str(path), update(cfg, {"init_weights": choice}), generator)
        assert all(torch.equal(v, saved[key][k]) for k, v in generator.state_dict().items()), choice
        assert f"generator: {said} ({key}) from {path}" in caplog.text
    assert main("pretrain", ["--data", str(photos), *TINY32, "--max-steps", "1", "--no-pretrained",
                             *run_dirs_args(tmp_path, "plain")]) == 0
    plain = str(tmp_path / "checkpoints" / "plain" / "best.pt")
    with pytest.raises(UserError, match="no EMA weights.*--init-weights raw"):
        init_generator(plain, update(cfg, {"init_weights": "ema"}), generator)
    init_generator(plain, update(cfg, {"init_weights": "auto"}), generator)  # none kept: the trained weights


@pytest.mark.slow
def test_resume_keeps_the_ema_exactly(photos, tmp_path):
    common = ["--data", str(photos), *TINY32, "--ema-decay", "0.7"]
    assert main("pretrain", [*common, "--max-steps", "3", *run_dirs_args(tmp_path, "straight")]) == 0
    assert main("pretrain", [*common, "--max-steps", "2", *run_dirs_args(tmp_path, "split")]) == 0
    assert main("pretrain", ["--resume", str(tmp_path / "checkpoints" / "split" / "last.pt"), "--max-steps", "3"]) == 0
    a = ckpt_io.load(tmp_path / "checkpoints" / "straight" / "last.pt")["generator_ema"]
    b = ckpt_io.load(tmp_path / "checkpoints" / "split" / "last.pt")["generator_ema"]
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_report_weights_counts_every_parameter_once(photos, tmp_path):
    assert main("gan", ["--data", str(photos), *TINY32, "--max-steps", "1", *run_dirs_args(tmp_path, "w")]) == 0
    from gan_colorizer.inspect.weights import main as report_main
    out = tmp_path / "report"
    assert report_main(["--checkpoint", str(tmp_path / "checkpoints" / "w" / "last.pt"), "--out", str(out),
                        "--data", str(photos), "--limit", "2"]) == 0
    with (out / "layers.csv").open() as f:
        layers = list(csv.DictReader(f))
    generator, _, _ = load_generator(tmp_path / "checkpoints" / "w" / "last.pt")
    from gan_colorizer.models.patchgan import PatchDiscriminator
    total = count_parameters(generator) + count_parameters(PatchDiscriminator())
    assert sum(int(r["params"]) for r in layers) == total
    summary = json.loads((out / "summary.json").read_text())
    assert {g["group"] for g in summary["groups"]} == {"encoder", "bottleneck", "decoder", "head", "discriminator"}
    assert sum(g["share"] for g in summary["groups"]) == pytest.approx(1.0)
    assert (out / "weights_encoder.png").stat().st_size > 1000 and (out / "activations.csv").is_file()
    assert report_main(["--checkpoint", str(tmp_path / "missing.pt"), "--out", str(out)]) == 2
