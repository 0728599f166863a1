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
