import pytest
import torch

from gan_colorizer.config import ModelConfig
from gan_colorizer.errors import UserError
from gan_colorizer.models.patchgan import PatchDiscriminator, build_discriminator
from gan_colorizer.models.pix2pix import UNetGenerator
from gan_colorizer.models.registry import build_generator
from gan_colorizer.models.bodies import build_body, check_body_weights, imagenet_body, imagenet_weights
from gan_colorizer.runtime import count_parameters
from gan_colorizer.weights import hub_file


def _unet_256_count(cin: int, cout: int, f: int = 64) -> int:
    """Parameters of pix2pix's unet_256, counted layer by layer from its definition."""
    conv = lambda i, o, bias=False: i * o * 16 + (o if bias else 0)  # noqa: E731  4x4 kernels
    bn = lambda c: 2 * c  # noqa: E731
    downs = [(cin, f, False), (f, 2 * f, True), (2 * f, 4 * f, True), (4 * f, 8 * f, True)] + \
        [(8 * f, 8 * f, True)] * 3 + [(8 * f, 8 * f, False)]
    total = sum(conv(i, o) + (bn(o) if norm else 0) for i, o, norm in downs)
    ups = [(8 * f, 8 * f)] + [(16 * f, 8 * f)] * 3 + [(16 * f, 4 * f), (8 * f, 2 * f), (4 * f, f)]
    total += sum(conv(i, o) + bn(o) for i, o in ups)
    return total + conv(2 * f, cout, bias=True)


@pytest.mark.slow
def test_resunet_resnet18_has_the_reference_tutorials_parameter_count_and_shapes(resunet):
    g = resunet
    assert count_parameters(g) == 31_099_672
    for size in (64, 96, 256):
        assert g(torch.randn(2, 1, size, size)).shape == (2, 2, size, size)
    assert type(g(torch.zeros(2, 1, 64, 64))) is torch.Tensor  # not fastai's TensorBase subclass


def test_a_new_generator_is_in_training_mode_everywhere(resunet):
    g = resunet  # a copy of build_generator's net: fastai's DynamicUnet leaves its encoder in eval mode after tracing
    assert all(m.training for m in g.modules())


def test_pix2pix_unet_parameter_count_and_shape():
    g = UNetGenerator(1, 2)
    assert count_parameters(g) == _unet_256_count(1, 2)
    assert count_parameters(UNetGenerator(3, 3)) == 54_413_955  # pix2pix's printed "54.414 M"
    out = g(torch.randn(1, 1, 256, 256))
    assert out.shape == (1, 2, 256, 256) and out.abs().max() <= 1
    assert sum(isinstance(m, torch.nn.Dropout) for m in g.modules()) == 3


def test_patchgan_is_70x70_with_a_30x30_map_at_256():
    d = build_discriminator(ModelConfig())
    assert count_parameters(PatchDiscriminator(6)) == 2_768_705  # pix2pix's "2.769 M" for 6 input channels
    assert d(torch.randn(2, 1, 256, 256), torch.randn(2, 2, 256, 256)).shape == (2, 1, 30, 30)
    convs = [m for m in d.modules() if isinstance(m, torch.nn.Conv2d)]
    receptive, jump = 1, 1
    for c in convs:
        receptive += (c.kernel_size[0] - 1) * jump
        jump *= c.stride[0]
    assert receptive == 70
    assert abs(convs[1].weight.std().item() - 0.02) < 0.002  # N(0, 0.02) init


@pytest.mark.slow
def test_backbone_weights_file_is_loaded_and_conv1_summed_over_rgb(tmp_path):
    import torchvision
    resnet = torchvision.models.resnet18(weights=None)
    torch.save(resnet.state_dict(), tmp_path / "r18.pth")
    g = build_generator(ModelConfig(backbone_weights=str(tmp_path / "r18.pth")))
    conv1 = g.layers[0][0]
    assert conv1.in_channels == 1
    assert torch.allclose(conv1.weight, resnet.conv1.weight.sum(1, keepdim=True))
    assert torch.equal(g.layers[0][4][0].conv1.weight, resnet.layer1[0].conv1.weight)


def test_wrong_backbone_file_is_a_clear_error(tmp_path):
    import torchvision
    torch.save(torchvision.models.resnet34(weights=None).state_dict(), tmp_path / "r34.pth")
    with pytest.raises(UserError, match="not a torchvision resnet18"):
        build_generator(ModelConfig(backbone_weights=str(tmp_path / "r34.pth")))
    (tmp_path / "junk.pth").write_bytes(b"\x00" * 100)
    with pytest.raises(UserError, match="junk.pth"):
        build_generator(ModelConfig(backbone_weights=str(tmp_path / "junk.pth")))


RESNET18_URL = "https://download.pytorch.org/models/resnet18-f37072fd.pth"  # torchvision's, as documented


def test_imagenet_weights_are_torchvisions_file_in_the_torch_hub_cache(torch_home):
    assert imagenet_weights("resnet18").url == RESNET18_URL
    assert hub_file(RESNET18_URL) == torch_home / "hub" / "checkpoints" / "resnet18-f37072fd.pth"


def test_pretrained_is_the_default_and_reads_the_cached_file(torch_home):
    from conftest import DOWNLOADS
    assert ModelConfig().pretrained
    before = len(DOWNLOADS)
    state, source = imagenet_body("resnet18")
    on_disk = torch.load(hub_file(RESNET18_URL), weights_only=True)
    assert state.keys() == on_disk.keys()
    assert torch.equal(state["layer1.0.conv1.weight"], on_disk["layer1.0.conv1.weight"])
    assert str(hub_file(RESNET18_URL)) in source and "cached" in source and "ResNet18_Weights.IMAGENET1K_V1" in source
    assert len(DOWNLOADS) == before


@pytest.mark.slow
def test_default_generator_body_is_the_cached_imagenet_file_and_no_pretrained_is_random(caplog):
    on_disk = torch.load(hub_file(RESNET18_URL), weights_only=True)
    with caplog.at_level("INFO", logger="gan_colorizer"):
        g = build_generator(ModelConfig())
    assert torch.allclose(g.layers[0][0].weight, on_disk["conv1.weight"].sum(1, keepdim=True))
    assert torch.equal(g.layers[0][4][0].conv1.weight, on_disk["layer1.0.conv1.weight"])
    assert "body weights from torchvision ResNet18_Weights.IMAGENET1K_V1" in caplog.text
    assert "resnet18-f37072fd.pth (cached)" in caplog.text
    caplog.clear()
    with caplog.at_level("INFO", logger="gan_colorizer"):
        g = build_generator(ModelConfig(pretrained=False))
    assert not torch.equal(g.layers[0][4][0].conv1.weight, on_disk["layer1.0.conv1.weight"])
    assert "random init (--no-pretrained)" in caplog.text


def test_offline_without_the_cached_file_is_one_line_naming_it_where_it_goes_and_no_pretrained(empty_torch_home):
    from conftest import DOWNLOADS
    before = len(DOWNLOADS)
    with pytest.raises(UserError) as e:
        build_generator(ModelConfig())
    message = str(e.value)
    assert "\n" not in message and "resnet18-f37072fd.pth" in message and "--no-pretrained" in message
    assert str(empty_torch_home / "hub" / "checkpoints") in message and RESNET18_URL in message
    assert DOWNLOADS[before:] == [RESNET18_URL]  # torchvision's own loader tried, and was refused
    assert not any(empty_torch_home.rglob("*.pth"))
    with pytest.raises(UserError, match="resnet18-f37072fd.pth"):  # before a run claims its folders
        check_body_weights(ModelConfig())


def test_first_use_downloads_into_the_cache_under_torchvisions_name(empty_torch_home, fake_download):
    import torchvision
    files, urls = fake_download
    torch.manual_seed(3)
    files["resnet18-f37072fd.pth"] = torchvision.models.resnet18(weights=None).state_dict()
    check_body_weights(ModelConfig())  # what training calls before it writes anything
    path = empty_torch_home / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    assert urls == [RESNET18_URL] and path.is_file()
    state, source = imagenet_body("resnet18")  # now from the cache: no second download
    assert urls == [RESNET18_URL] and f"{path} (cached)" in source
    assert torch.equal(state["fc.weight"], files["resnet18-f37072fd.pth"]["fc.weight"])


def test_first_use_log_says_the_weights_were_downloaded(empty_torch_home, fake_download):
    import torchvision
    files, _ = fake_download
    files["resnet18-f37072fd.pth"] = torchvision.models.resnet18(weights=None).state_dict()
    _, source = imagenet_body("resnet18")
    assert source.endswith(f"(downloaded from {RESNET18_URL})")


def test_a_truncated_cached_file_is_a_user_error_saying_delete_it(empty_torch_home):
    path = empty_torch_home / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(UserError, match=r"resnet18-f37072fd\.pth: not a readable .*delete it"):
        imagenet_body("resnet18")


def test_pix2pix_unet_has_no_pretrained_body_and_ignores_the_flag(empty_torch_home, caplog):
    from conftest import DOWNLOADS
    from gan_colorizer.config import defaults, update, validate
    before = len(DOWNLOADS)
    cfg = validate(update(defaults("pretrain"), {"generator": "unet", "unet_filters": 4}))
    assert cfg.model.pretrained  # the default, untouched: nothing to load for this generator
    check_body_weights(cfg.model)
    with caplog.at_level("INFO", logger="gan_colorizer"):
        g = build_generator(cfg.model)
    assert isinstance(g, UNetGenerator) and "has no pretrained body" in caplog.text
    assert len(DOWNLOADS) == before and not empty_torch_home.exists()


def test_backbone_weights_take_the_place_of_the_default_imagenet_body(empty_torch_home, tmp_path):
    from gan_colorizer.config import defaults, update, validate
    cfg = validate(update(defaults("pretrain"), {"backbone_weights": str(tmp_path / "r18.pth")}))
    with pytest.raises(UserError, match="--backbone-weights .*r18.pth: file not found"):
        check_body_weights(cfg.model)  # not the ImageNet file: the one named
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "r18.pth")
    check_body_weights(cfg.model)
    assert not empty_torch_home.exists()


def test_resnet_body_without_weights_takes_one_channel():
    body = build_body("resnet34")
    assert body(torch.randn(1, 1, 64, 64)).shape == (1, 512, 2, 2)
