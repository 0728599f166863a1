"""The ResNet U-Net (models/resunet.py) is fastai's DynamicUnet without fastai and without its build-time forward passes:
the same parameter names and shapes, the same weights from the same seed, the same outputs for the same weights."""
import subprocess
import sys

import pytest
import torch

from gan_colorizer.models.bodies import build_body
from gan_colorizer.models.resunet import ResUNet


def fastai_unet(backbone: str, n_out: int) -> torch.nn.Module:
    """The net the ResNet U-Net was built as before models/resunet.py: fastai's DynamicUnet traced at 256 px, its output cast to
    fastai's tensor subclass left out, in training mode."""
    from fastai.vision.models.unet import DynamicUnet
    net = DynamicUnet(build_body(backbone), n_out=n_out, img_size=(256, 256))
    net.layers = net.layers[:-1]
    return net.train()


def moved(state: dict) -> dict:
    """Every float tensor moved off its initial value (zero biases and BatchNorm statistics too), so no term can hide:
    scaled by 0.9-1.1 and shifted by up to 0.005 (running variances stay positive)."""
    g = torch.Generator().manual_seed(1)

    def move(v):
        return v * (0.9 + 0.2 * torch.rand(v.shape, generator=g)) + 0.01 * (torch.rand(v.shape, generator=g) - 0.5)
    return {k: move(v) if v.is_floating_point() else v for k, v in state.items()}


@pytest.mark.parametrize("backbone, n_out", [("resnet18", 2), pytest.param("resnet34", 313, marks=pytest.mark.slow),
                                             pytest.param("resnet50", 2, marks=pytest.mark.slow)])
def test_the_resunet_is_fastais_dynamic_unet_same_weights_from_a_seed_and_same_outputs(backbone, n_out):
    torch.manual_seed(0)
    reference = fastai_unet(backbone, n_out)
    torch.manual_seed(0)
    ours = ResUNet(build_body(backbone), n_out)
    expected, got = reference.state_dict(), ours.state_dict()
    assert list(got) == list(expected)
    assert [k for k in expected if not torch.equal(got[k], expected[k])] == []
    state = moved(expected)
    reference.load_state_dict(state)
    ours.load_state_dict(state)
    for shape in [(2, 1, 64, 96), (1, 1, 72, 100)]:  # the second's sides are no multiples of 32: the resizes run
        gray_l = torch.rand(shape) * 2 - 1
        for mode in ("eval", "train"):  # train: batch statistics, and the running ones updated alike
            with torch.no_grad():
                want = getattr(reference, mode)()(gray_l).as_subclass(torch.Tensor)
                assert want.isfinite().all() and torch.equal(getattr(ours, mode)()(gray_l), want), (shape, mode)
        assert [k for k, v in reference.state_dict().items() if not torch.equal(ours.state_dict()[k], v)] == []


def test_loading_a_checkpoint_imports_no_fastai(tiny_checkpoint):
    code = ("import sys; from gan_colorizer.models.registry import load_generator; "
            f"load_generator({str(tiny_checkpoint)!r}); print(sorted(m for m in sys.modules if 'fastai' in m))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"
