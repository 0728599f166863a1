"""The bodies of the ResNet U-Net (models/bodies.py): each one's layout as its own layers give it, its stages named
by torchvision's own module names, its ImageNet file read from torch.hub's cache, and the whole way a generator goes."""
import pytest
import torch
import torchvision
from conftest import generator_goes_the_whole_way

from gan_colorizer import config
from gan_colorizer.config import ModelConfig
from gan_colorizer.errors import UserError
from gan_colorizer.inspect.anatomy import stages
from gan_colorizer.models import bodies
from gan_colorizer.models.bodies import BODIES, body_weights, build_body, check_body_weights, imagenet_weights
from gan_colorizer.models.resunet import ResUNet, resunet
from gan_colorizer.weights import hub_file

QUICK = ("resnet18", "convnext_tiny", "efficientnet_b0")  # one of each family in the fast tier, the rest slow
EACH = [name if name in QUICK else pytest.param(name, marks=pytest.mark.slow) for name in BODIES]


def torchvision_twin(name: str, seed: int) -> torch.nn.Module:
    """torchvision's own model, drawn from the same seed as build_body draws its body."""
    torch.manual_seed(seed)
    return torchvision.models.get_model(name, weights=None, **BODIES[name].build_args)


def test_the_config_offers_every_body_and_no_other():
    assert config.BODIES == tuple(BODIES)


@pytest.mark.parametrize("name", EACH)
def test_the_layout_read_on_the_meta_device_is_what_the_real_body_gives(name):
    body = build_body(name).eval()
    x, seen = torch.zeros(1, 1, 96, 64), []
    with torch.no_grad():
        for layer in body:
            x = layer(x)
            seen.append((x.shape[1], 96 // x.shape[2], 64 // x.shape[3]))
    assert seen == [(c, f, f) for c, f in zip(body.layout.channels, body.layout.factors)]
    assert body.layout.factors[-1] == 32 and len(body.layout.skips) in (3, 4)


@pytest.mark.parametrize("name", EACH)
def test_every_named_encoder_stage_is_the_torchvision_module_of_that_name(name):
    twin = torchvision_twin(name, 5)
    torch.manual_seed(5)
    net = ResUNet(build_body(name), 2)
    encoder = [s for s in stages(net) if s.group == "encoder"]
    layout = net.body.layout
    assert [s.name for s in encoder] == [f"encoder.{layout.labels[i]}" for i in layout.stages]
    for stage, i in zip(encoder, layout.stages):
        theirs = twin.get_submodule(layout.names[i])  # the name torchvision gives it
        assert type(stage.module) is type(theirs)
        ours = stage.module.state_dict()
        assert ours.keys() == theirs.state_dict().keys()
        assert all(torch.equal(v, theirs.state_dict()[k]) for k, v in ours.items()), stage.name


def test_resnet_stages_keep_their_names():
    assert [s.name for s in stages(resunet("resnet18"))][:5] == ["encoder.stem"] + [f"encoder.layer{i}" for i in
                                                                                   range(1, 5)]


@pytest.mark.parametrize("name", QUICK)
def test_the_output_is_full_size_for_sides_that_are_multiples_of_32(name):
    net = resunet(name).eval()
    with torch.no_grad():
        assert net(torch.rand(2, 1, 64, 96) * 2 - 1).shape == (2, 2, 64, 96)


@pytest.mark.parametrize("name", ["convnext_tiny", "efficientnet_b0"])
def test_imagenet_weights_load_from_the_hub_cache_with_the_first_conv_summed(name, empty_torch_home):
    cfg = ModelConfig(backbone=name, pretrained=True)
    url = imagenet_weights(name).url
    twin = torchvision_twin(name, 7)
    with pytest.raises(UserError, match=url.rsplit("/", 1)[-1]):  # offline, nothing cached: the file is named
        check_body_weights(cfg)
    hub_file(url).parent.mkdir(parents=True, exist_ok=True)
    torch.save(twin.state_dict(), hub_file(url))
    check_body_weights(cfg)
    state, source = body_weights(cfg)
    assert str(hub_file(url)) in source
    body = build_body(name, state, source)
    rgb = next(m for m in twin.modules() if isinstance(m, torch.nn.Conv2d)).weight
    assert torch.equal(next(body.parameters()), rgb.sum(dim=1, keepdim=True))


@pytest.mark.parametrize("theirs, ours", [("resnet18", "convnext_tiny"), ("resnet50", "resnet18"),
                                         ("efficientnet_b2", "efficientnet_b0")])
def test_a_state_dict_of_another_model_is_refused_in_one_line(theirs, ours):
    state = torchvision_twin(theirs, 0).state_dict()  # other names, or (same family) the same names at other shapes
    with pytest.raises(UserError, match=f"^{theirs}.pth: not a torchvision {ours} state dict \\([^\\n]*\\)$"):
        build_body(ours, state, f"{theirs}.pth")


# One body per family goes the whole way in the suite: the others of a family are torchvision's same class at other
# widths, and take the same code path (all eleven passed it on 2026-12-07, 891 s under load; resnet50 and resnet101
# alone took 420 s: their U-Nets hold 339 and 358 M parameters). resnet18 goes it in the rest of the suite.
@pytest.mark.slow  # per body: two stage-1 steps, evaluation, colorizing, ONNX export, feature maps
@pytest.mark.parametrize("name", ["resnet34", "convnext_tiny", "efficientnet_b0"])
def test_each_body_trains_evaluates_colorizes_exports_and_shows_named_layers(name, tmp_path, capsys):
    summary = generator_goes_the_whole_way(tmp_path, capsys, "b", ["--backbone", name, "--no-pretrained"])
    assert summary["models"]["b"]["backbone"] == name
    layout = bodies.layout(name)
    shown = [layer["name"] for layer in summary["visualized"]["layers"] if layer["name"].startswith("encoder.")]
    assert shown == [f"encoder.{layout.labels[i]}" for i in layout.stages]


def test_a_checkpoint_naming_a_body_this_version_lacks_is_one_line_naming_the_file(tiny_checkpoint, tmp_path):
    from gan_colorizer.models.registry import load_generator
    ckpt = torch.load(tiny_checkpoint, weights_only=True)
    ckpt["config"]["model"]["backbone"] = "resnet19"
    torch.save(ckpt, tmp_path / "newer.pt")
    with pytest.raises(UserError, match=f"^{tmp_path / 'newer.pt'}: its generator cannot be built here "
                                        f"\\(--backbone resnet19: not a known body"):
        load_generator(tmp_path / "newer.pt")
