import pytest
import torch

from gan_colorizer.config import ModelConfig
from gan_colorizer.errors import UserError
from gan_colorizer.networks import (
    PatchDiscriminator,
    UNetGenerator,
    build_discriminator,
    build_generator,
    count_parameters,
    resnet_body,
)


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


def test_pretrained_without_local_weights_names_the_file_and_never_downloads(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(UserError, match=r"resnet18-f37072fd\.pth"):
        build_generator(ModelConfig(pretrained=True))
    assert not any(tmp_path.rglob("*.pth"))


def test_resnet_body_without_weights_takes_one_channel():
    body = resnet_body("resnet34")
    assert body(torch.randn(1, 1, 64, 64)).shape == (1, 512, 2, 2)
