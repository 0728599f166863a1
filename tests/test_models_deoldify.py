"""DeOldify's artistic, stable and video generators (gan_colorizer/models/deoldify.py): the published files'
parameter names and shapes, loading a file in the container their learner saves weights-only, the authors' PIL
preprocessing and 8-bit render, and a photo through prepare -> network -> to_ab. Nothing is downloaded: the files
are random weights. The ResNet101 models (218 M parameters) are built on the meta device except in the slow tier."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import skimage.data
import torch
import torchvision
from PIL import Image
from skimage import color

from conftest import assert_same_network, one_line_refusal
from conftest import load_published as load

from gan_colorizer.models import deoldify

MANIFESTS = Path(__file__).parent / "data" / "published"
BY_NAME = {entry.name: entry for entry in deoldify.MODELS}
ARCHITECTURE = {"deoldify-artistic": "artistic", "deoldify-stable": "stable",
                "deoldify-video": "stable"}  # video is stable's network with other weights


def settled(net: torch.nn.Module) -> torch.nn.Module:
    """Random weights a trained file could hold: spectral norm's u, v (random at first, so a weight can be scaled
    by any amount) converged and BatchNorm's statistics taken by three training-mode passes over noise."""
    norms = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for m in norms:
        m.momentum = None  # a cumulative average: the statistics are the passes' own
        m.reset_running_stats()
    net.train()
    with torch.no_grad():
        for _ in range(3):
            net(torch.randn(2, 3, 64, 64))
    for m in norms:
        m.momentum = 0.1
    return net.eval()


@pytest.fixture(scope="module")
def artistic() -> torch.nn.Module:
    torch.manual_seed(0)
    return settled(BY_NAME["deoldify-artistic"].build())


@pytest.fixture(scope="module")
def artistic_file(artistic, tmp_path_factory) -> Path:
    """The random artistic weights as their learner saves them (255 MB: written once for the module)."""
    return learner_file(artistic, tmp_path_factory.mktemp("deoldify") / "ColorizeArtistic_gen.pth")


def shapes(state: dict) -> dict:
    return {name: list(tensor.shape) for name, tensor in state.items()}


def manifest(name: str) -> dict:
    return json.loads((MANIFESTS / f"deoldify-{ARCHITECTURE[name]}.json").read_text())


def learner_file(net: torch.nn.Module, path: Path) -> Path:
    """A file as their fastai learner saves it (Learner.save, with_opt=True): the state dict under 'model' and the
    optimizer's state dict under 'opt', whose learning rates fastai leaves as slices (its default lr, slice(3e-3))."""
    groups = [{"lr": slice(None, 0.003, None), "betas": (0.9, 0.99), "eps": 1e-08, "weight_decay": 0,
               "amsgrad": False, "params": [i]} for i in range(6)]
    torch.save({"model": net.state_dict(), "opt": {"state": {}, "param_groups": groups}}, path)
    return path


@pytest.mark.parametrize("name", list(ARCHITECTURE))
def test_state_dict_has_the_published_files_names_and_shapes(artistic, name):
    if name == "deoldify-artistic":
        state = artistic.state_dict()
    else:
        with torch.device("meta"):  # ResNet101's and the wide decoder's 0.9 GB of floats are never allocated
            state = BY_NAME[name].build().state_dict()
    assert shapes(state) == manifest(name)
    assert list(state) == list(manifest(name))  # the order fastai's DynamicUnet registers them in


def test_models_declare_the_readme_files_render_sizes_and_container():
    assert list(BY_NAME) == list(ARCHITECTURE)
    files = [entry.weights.url.split("?")[0].rsplit("/", 1)[1] for entry in deoldify.MODELS]
    assert files == ["ColorizeArtistic_gen.pth", "ColorizeStable_gen.pth", "ColorizeVideo_gen.pth"]
    assert [entry.render_size for entry in deoldify.MODELS] == [35 * 16, 35 * 16, 21 * 16]
    assert all(e.weights.container == "model" and e.licence.startswith("MIT") for e in deoldify.MODELS)


def test_a_learner_file_loads_weights_only_and_strictly(artistic, artistic_file):
    assert_same_network(load("deoldify-artistic", artistic_file), artistic, torch.randn(1, 3, 64, 64))


@pytest.mark.filterwarnings("ignore:.*to a meta parameter")  # the wide model on meta: its copies are no-ops
@pytest.mark.parametrize("other", ["artistic-into-stable", "resnet34-body"])
def test_another_models_file_is_refused_in_one_line_naming_it(artistic_file, tmp_path, other):
    if other == "resnet34-body":  # torchvision's ImageNet classifier, whose weights the artistic body started from
        path, name = tmp_path / "resnet34-b627a593.pth", "deoldify-artistic"
        torch.save(torchvision.models.resnet34().state_dict(), path)
    else:
        path, name = artistic_file, "deoldify-stable"
    with torch.device("meta"):
        message = one_line_refusal(lambda: load(name, path))
    assert message.startswith(f"{path}: {name} weights do not fit")


def test_a_file_that_is_not_a_state_dict_is_refused_in_one_line(tmp_path):
    path = tmp_path / "notes.pth"
    path.write_text("not weights")
    with torch.device("meta"):
        message = one_line_refusal(lambda: load("deoldify-video", path))
    assert "notes.pth: not a readable deoldify-video weight" in message


@pytest.mark.parametrize("photo", ["astronaut", "chelsea", "camera"])
def test_prepare_is_the_authors_pil_stretch_to_gray_at_the_render_size(photo):
    """Their ColorizerFilter: the RGB photo stretched to 560 x 560 by PIL's bilinear, gray by PIL ('LA', then RGB
    again), / 255 and ImageNet-normalised. And, by the 601 luma weights instead of PIL's fixed point, the same gray
    to one 8-bit level."""
    rgb8 = getattr(skimage.data, photo)()
    small = Image.fromarray(rgb8).convert("RGB").resize((560, 560), resample=Image.Resampling.BILINEAR)
    theirs = np.asarray(small.convert("LA").convert("RGB"), dtype=np.float32) / 255.0
    mean, std = np.array([0.485, 0.456, 0.406], np.float32), np.array([0.229, 0.224, 0.225], np.float32)
    pixels = torch.from_numpy(rgb8 if rgb8.ndim == 3 else rgb8[:, :, None]).permute(2, 0, 1)[None]
    x = BY_NAME["deoldify-artistic"].prepare(pixels.float() / 255.0)
    assert x.shape == (1, 3, 560, 560) and x.dtype == torch.float32
    assert np.array_equal(x[0].permute(1, 2, 0).numpy(), (theirs - mean) / std)
    gray = (x[0].permute(1, 2, 0).numpy() * std + mean) * 255.0
    luma = np.asarray(small, dtype=np.float64) @ np.array([0.299, 0.587, 0.114])
    assert np.abs(gray - luma[:, :, None]).max() <= 1.0


def test_to_ab_is_the_lab_colour_of_their_8_bit_render():
    """Their render: output * std + mean, clamped to [0, 1], * 255, truncated to 8 bits. Three pixels a quarter
    level above (200, 30, 60), (12, 140, 250) and gray 128, and one far outside the range (clamped: white)."""
    levels = torch.tensor([[200.25, 30.25, 60.25], [12.25, 140.25, 250.25], [128.25] * 3, [400.0, 300.0, 999.0]])
    mean, std = torch.tensor(deoldify.IMAGENET_MEAN), torch.tensor(deoldify.IMAGENET_STD)
    output = ((levels / 255.0 - mean) / std).T.reshape(1, 3, 1, 4)
    ab = deoldify.to_ab(output, torch.zeros(1, 3, 8, 8))
    expected = color.rgb2lab(np.array([[[200, 30, 60], [12, 140, 250], [128] * 3, [255] * 3]], np.uint8))
    assert ab.shape == (1, 2, 1, 4) and ab.dtype == torch.float32
    assert np.abs(ab[0].permute(1, 2, 0).numpy() - expected[:, :, 1:]).max() < 1e-3


def test_self_attention_lets_every_position_reach_every_other():
    """With gamma = 0 (its start) the layer passes its input; with gamma set, changing one position changes the
    output at every position, as a convolution's would not."""
    torch.manual_seed(3)
    layer = deoldify.SelfAttention(32)
    x = torch.randn(1, 32, 6, 6)
    with torch.no_grad():
        layer(x)  # one training-mode pass: spectral norm's u, v estimate the scale (random ones saturate the softmax)
        layer.eval()
        assert torch.equal(layer(x), x)
        layer.gamma.fill_(0.5)
        changed = x.clone()
        changed[:, :, 0, 0] += 1.0
        moved = (layer(changed) - layer(x)).abs().amax(1)[0]
    assert (moved[1:, 1:] > 0).all()


@pytest.mark.filterwarnings("ignore:.*weight_norm.*:FutureWarning")
def test_weight_norm_conv_computes_torchs_weight_norm():
    """The same parameters give the output of torch's own (legacy) weight_norm, whose names the files carry."""
    torch.manual_seed(4)
    ours = deoldify.WeightNormConv(8, 12)
    reference = torch.nn.utils.weight_norm(torch.nn.Conv2d(8, 12, 1))
    assert list(ours.state_dict()) == list(reference.state_dict())
    reference.load_state_dict(ours.state_dict())
    x = torch.randn(2, 8, 5, 5)
    with torch.no_grad():
        assert torch.allclose(ours(x), reference(x), atol=1e-6)


def test_the_network_keeps_sides_that_are_odd_multiples_of_16(artistic):
    """Render sizes are multiples of 16 (35 x 16 = 560): the bottom step's odd side is nearest-resized to the skip's,
    and the output, within the sigmoid's range, comes back at the input's size."""
    with torch.no_grad():
        out = artistic(torch.randn(1, 3, 80, 48))
    assert out.shape == (1, 3, 80, 48) and torch.isfinite(out).all()
    assert out.min() > -3.0 and out.max() < 3.0


@pytest.mark.slow
@pytest.mark.parametrize("name", list(ARCHITECTURE))
def test_a_published_file_colorizes_a_photo_prepare_forward_to_ab(artistic, tmp_path, name):
    entry = BY_NAME[name]
    torch.manual_seed(0)
    net = artistic if name == "deoldify-artistic" else settled(entry.build())
    net = load(name, learner_file(net, tmp_path / "weights.pth"))
    rgb = torch.from_numpy(skimage.data.astronaut()).permute(2, 0, 1)[None].float() / 255.0
    with torch.no_grad():
        ab = entry.to_ab(net(entry.prepare(rgb)), rgb)
    assert ab.shape == (1, 2, entry.render_size, entry.render_size) and ab.dtype == torch.float32
    assert torch.isfinite(ab).all() and ab.abs().max() <= 128.0 and ab.std() > 0
