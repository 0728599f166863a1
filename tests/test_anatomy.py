import pytest
import torch

from gan_colorizer.inspect.anatomy import GROUPS, group_of, stages
from gan_colorizer.models.pix2pix import UNetGenerator
from gan_colorizer.runtime import count_parameters


@pytest.mark.parametrize("kind, size", [("resunet", 64), ("unet", 256)])
def test_stages_run_from_encoder_to_head_with_shrinking_then_growing_maps(kind, size, request):
    g = (request.getfixturevalue("resunet") if kind == "resunet" else UNetGenerator(1, 2)).eval()
    found = stages(g)
    assert [s.group for s in found] == sorted((s.group for s in found), key=GROUPS.index)
    shapes = {}

    def record(name):
        def hook(module, inputs, output):
            shapes.setdefault(name, output.shape)
        return hook
    hooks = [s.module.register_forward_hook(record(s.name)) for s in found]
    with torch.no_grad():
        g(torch.randn(1, 1, size, size))
    for h in hooks:
        h.remove()
    assert set(shapes) == {s.name for s in found}
    bottleneck = shapes["bottleneck"][-1]
    assert bottleneck < shapes[found[0].name][-1] and shapes[found[-1].name][-2:] == (size, size)
    assert shapes[found[-1].name][1] == 2


def test_every_parameter_belongs_to_one_group(resunet):
    g = resunet
    groups = group_of(g)
    counted = sum(sum(p.numel() for p in dict(g.named_modules())[n].parameters(recurse=False)) for n in groups)
    assert counted == count_parameters(g)
    assert set(groups.values()) == set(GROUPS)


def test_each_stage_is_the_module_its_name_says_and_an_unnamed_network_is_an_error(resunet):
    """Checked against the modules' own qualified names: the label a plot shows is where the layer is."""
    where = {id(m): name for name, m in resunet.named_modules()}
    expected = {"encoder.stem": "layers.0.2", "encoder.layer1": "layers.0.4", "encoder.layer4": "layers.0.7",
                "bottleneck": "layers.3", "decoder.block1": "layers.4", "decoder.block4": "layers.7",
                "decoder.upsample": "layers.8", "head.resblock": "layers.11", "head.out": "layers.12"}
    found = {s.name: where[id(s.module)] for s in stages(resunet)}
    assert {name: found[name] for name in expected} == expected
    net = UNetGenerator(1, 2, 4)
    assert {s.name: s.module for s in stages(net)}["encoder.down3"] is net.down3
    with pytest.raises(ValueError, match="Conv2d names no stages"):
        stages(torch.nn.Conv2d(1, 2, 3))
