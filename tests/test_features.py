"""Feature-map hooks (both generators), channel ranking, the pictures, visualize.py, and the training-time visuals."""
import json

import numpy as np
import pytest
import torch
from conftest import color_image
from PIL import Image

from gan_colorizer.config import ModelConfig
from gan_colorizer.errors import UserError
from gan_colorizer.inspect.anatomy import stages
from gan_colorizer.inspect.cli import main as visualize_main
from gan_colorizer.inspect.features import (
    TOP_CHANNELS,
    ab_maps,
    activation_chart,
    capture,
    default_layers,
    feature_grid,
    feature_hooks,
    select_stages,
    top_channels,
    training_visuals,
)
from gan_colorizer.models.pix2pix import UNetGenerator
from gan_colorizer.models.registry import build_generator
from gan_colorizer.runtime import Runtime


def hook_count(net: torch.nn.Module) -> int:
    return sum(len(m._forward_hooks) for m in net.modules())


@pytest.fixture(scope="module", params=[pytest.param("resunet", marks=pytest.mark.slow), "unet"])
def generator(request):
    """Both generator types, small: the ResNet U-Net at 64 px, the pix2pix U-Net (8 filters) at the 256 it needs."""
    torch.manual_seed(0)
    if request.param == "resunet":
        return build_generator(ModelConfig(), load_pretrained=False).eval(), 64
    return UNetGenerator(1, 2, filters=8).eval(), 256


def test_capture_records_every_stage_and_leaves_outputs_and_hooks_unchanged(generator):
    net, size = generator
    gray_l = torch.rand(2, 1, size, size) * 2 - 1
    before = hook_count(net)  # a net may keep hooks of its own (fastai's DynamicUnet did, for its skips)
    with torch.no_grad():
        plain = net(gray_l)
    fake_ab, outputs = capture(net, gray_l, select_stages(net))
    assert list(outputs) == [s.name for s in stages(net)]
    assert torch.equal(fake_ab, plain) and torch.equal(outputs["head.out"], plain)
    assert all(o.shape[0] == 2 and o.dtype == torch.float32 for o in outputs.values())
    assert hook_count(net) == before
    with torch.no_grad():
        assert torch.equal(net(gray_l), plain)
    assert not net.training


def test_hooks_are_removed_when_the_forward_fails():
    net = UNetGenerator(1, 2, filters=8).eval()
    before = hook_count(net)
    with pytest.raises(RuntimeError):
        with feature_hooks(net, select_stages(net)) as outputs:
            assert hook_count(net) == before + len(stages(net))
            net(torch.zeros(1, 1, 100, 100))  # not a multiple of 256: fails inside
    assert hook_count(net) == before and "encoder.down1" in outputs


def test_layers_are_chosen_by_name_or_group_and_unknown_names_are_listed():
    net = UNetGenerator(1, 2, filters=8)
    assert [s.name for s in select_stages(net, ["bottleneck", "head"])] == ["bottleneck", "head.out"]
    assert len(select_stages(net, ["encoder"])) == 7
    with pytest.raises(UserError, match="--layers nope: no such layer.*encoder.down1"):
        select_stages(net, ["nope", "encoder"])
    names = [s.name for s in default_layers(net)]
    assert names == ["encoder.down1", "encoder.down4", "bottleneck", "decoder.up2"]


def test_grid_shows_the_most_active_channels_first():
    fmap = torch.zeros(20, 6, 6)
    means = torch.randperm(20).float()
    fmap += means.view(-1, 1, 1)
    fmap[:, :3] *= 2  # structure inside each channel, mean order kept
    assert top_channels(fmap.mean(dim=(1, 2)), 4) == torch.argsort(means, descending=True)[:4].tolist()
    grid = feature_grid(fmap, "layer", k=TOP_CHANNELS, side=24)
    assert grid.dtype == np.uint8 and grid.ndim == 3
    assert grid.shape[1] >= 4 * 24 and grid.shape[0] >= 4 * 24  # 16 tiles in 4 x 4
    assert activation_chart(fmap, "layer").shape[2] == 3 and ab_maps(torch.zeros(2, 8, 12)).shape[2] == 3


@pytest.mark.slow
def test_visualize_writes_every_layer_of_a_checkpoint(tiny_checkpoint, tmp_path, capsys):
    color_image(3, (70, 50)).save(tmp_path / "photo.png")
    out = tmp_path / "viz"
    assert visualize_main(["--checkpoint", str(tiny_checkpoint), "--image", str(tmp_path / "photo.png"),
                           "--out", str(out), "--image-size", "64", "--layers", "encoder.layer1,bottleneck,head"]) == 0
    summary = json.loads((out / "layers.json").read_text())
    assert [l["name"] for l in summary["layers"]] == ["encoder.layer1", "bottleneck", "head.resblock", "head.out"]
    assert summary["input_size"] == [64, 96]  # short side 64, aspect kept, multiples of 32
    for layer in summary["layers"]:
        assert len(layer["top_channels"]) == min(16, layer["shape"][0])
        assert layer["top_means"] == sorted(layer["top_means"], reverse=True)
        for key in ("channels", "activations"):
            assert Image.open(out / layer[key]).size[0] > 50
    for name in ("input", "prediction", "truth", "ab_prediction", "ab_truth", "difference", "ab_distribution"):
        assert (out / f"{name}.png").is_file(), name
    assert np.asarray(Image.open(out / "prediction.png")).shape == (64, 96, 3)


@pytest.mark.parametrize("args, message", [(["--image", "missing.png"], "--image missing.png: file not found"),
                                           (["--layers", "encoder.layer9"], "--layers encoder.layer9: no such layer"),
                                           (["--top", "0"], "--top must be >= 1")])
def test_visualize_mistakes_exit_2_with_one_line(tiny_checkpoint, tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    color_image(3).save(tmp_path / "photo.png")
    base = {"--checkpoint": str(tiny_checkpoint), "--image": "photo.png", "--out": "out"}
    base.update(dict(zip(args[::2], args[1::2])))
    assert visualize_main([x for kv in base.items() for x in kv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and len(err.splitlines()) == 1


@pytest.mark.slow
def test_training_visuals_cover_features_histograms_errors_and_the_ab_distribution():
    torch.manual_seed(0)
    net = build_generator(ModelConfig(), load_pretrained=False).train()
    pixels = torch.stack([torch.from_numpy(np.array(color_image(i, (64, 64)))).permute(2, 0, 1) for i in range(2)])
    visuals = training_visuals(Runtime("cpu", "off", channels_last=True), net, pixels)
    assert set(visuals.images) == {"features/encoder.stem", "features/encoder.layer2", "features/bottleneck",
                                   "features/decoder.upsample", "errors/val_samples", "ab/distribution"}
    assert set(visuals.histograms) == {"ab/pred_a", "ab/pred_b", "ab/real_a", "ab/real_b"}
    assert visuals.histograms["ab/real_a"].numel() == 2 * 64 * 64
    assert visuals.histograms["ab/real_a"].abs().max() > 10  # ab units, not model units
    assert all(img.dtype == np.uint8 and img.shape[2] == 3 for img in visuals.images.values())
    assert net.training  # the mode is restored
