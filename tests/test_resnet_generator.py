"""pix2pix / CycleGAN's resnet_9blocks as --generator resnet9: its size against a count by hand, its stages, and the
whole way a generator goes: trains, evaluates, colorizes a photo and a video's frames, exports to ONNX with parity."""
import pytest
import torch
from conftest import generator_goes_the_whole_way

from gan_colorizer.inspect.anatomy import stages
from gan_colorizer.models.pix2pix import ResnetGenerator
from gan_colorizer.runtime import count_parameters


def test_parameters_are_pix2pixs_resnet_9blocks_counted_by_hand():
    f, cin, cout, n = 64, 1, 2, 9
    by_hand = (cin * f * 49 + 2 * f  # 7x7 stem, no bias (batch norm follows), and its BatchNorm
               + f * 2 * f * 9 + 2 * 2 * f + 2 * f * 4 * f * 9 + 2 * 4 * f  # two stride-2 convs
               + n * 2 * (4 * f * 4 * f * 9 + 2 * 4 * f)  # 9 blocks of two 3x3 convs
               + 4 * f * 2 * f * 9 + 2 * 2 * f + 2 * f * f * 9 + 2 * f  # two transposed convs
               + f * cout * 49 + cout)  # the 7x7 output conv, with its bias
    # CycleGAN's G (3 -> 3 channels, instance norm, so biases instead of batch norm's 2 per channel) prints 11.378 M,
    # 11,378,179: the same network less 4,161 here (channels in and out, and the norm's parameters)
    assert count_parameters(ResnetGenerator(cin, cout, f, n)) == by_hand == 11_378_179 - 4_161


def test_its_stages_fire_in_forward_order_and_the_output_is_full_size():
    net = ResnetGenerator(1, 2, 8).eval()
    found, fired = stages(net), []
    hooks = [s.module.register_forward_hook(lambda m, i, o, n=s.name: fired.append((n, o.shape[-1]))) for s in found]
    with torch.no_grad():
        out = net(torch.rand(1, 1, 64, 64))
    for hook in hooks:
        hook.remove()
    assert [name for name, _ in fired] == [s.name for s in found] and len(found) == 15
    assert dict(fired)["encoder.down2"] == 16 and dict(fired)["head.out"] == 64 and out.abs().max() <= 1


@pytest.mark.slow  # a short stage-1 run, evaluation, colorizing, the ONNX export and the feature maps
def test_resnet9_trains_evaluates_colorizes_and_exports(tmp_path, capsys):
    summary = generator_goes_the_whole_way(tmp_path, capsys, "r9", ["--generator", "resnet9", "--unet-filters", "8"])
    assert summary["models"]["r9"]["generator"] == "resnet9"
