"""Zhang et al.'s ECCV16 and SIGGRAPH17 colorizers (gan_colorizer/models/zhang.py): the published files' parameter
names and shapes, loading a file in their container (a bare state dict) weights-only, the authors' preprocessing,
the 313-bin decoding and the SIGGRAPH17 hint inputs. Nothing is downloaded: the files are random weights."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image
from skimage import color

from conftest import assert_same_network, one_line_refusal
from conftest import load_published as load

from gan_colorizer.ab_bins import bin_tensor
from gan_colorizer.models import zhang

MANIFESTS = Path(__file__).parent / "data" / "published"
BY_NAME = {entry.name: entry for entry in zhang.MODELS}


@pytest.fixture(scope="module")
def nets() -> dict:
    torch.manual_seed(0)
    return {name: entry.build().eval() for name, entry in BY_NAME.items()}


def shapes(state: dict) -> dict:
    return {name: list(tensor.shape) for name, tensor in state.items()}


def published_file(net: torch.nn.Module, folder: Path, name: str, legacy: bool = False) -> Path:
    """A random-weight file as the authors publish theirs: torch.save of the bare state dict (legacy: torch's
    pre-1.6 format, whose size the published files' byte counts fit; the zip format's does not)."""
    path = folder / name
    torch.save(net.state_dict(), path, _use_new_zipfile_serialization=not legacy)
    return path


@pytest.mark.parametrize("name", ["zhang-eccv16", "zhang-siggraph17"])
def test_state_dict_has_the_published_files_names_and_shapes(nets, name):
    manifest = json.loads((MANIFESTS / f"{name}.json").read_text())
    assert shapes(nets[name].state_dict()) == manifest
    assert list(nets[name].state_dict()) == list(manifest)  # the same order too: the release's layer layout


def test_models_declare_the_release_files_and_render_size():
    assert [entry.name for entry in zhang.MODELS] == ["zhang-eccv16", "zhang-siggraph17"]
    urls = [entry.weights.url.rsplit("/", 1)[1] for entry in zhang.MODELS]
    assert urls == ["colorization_release_v2-9b330a0b.pth", "siggraph17-df00044c.pth"]
    assert all(e.render_size == 256 and e.weights.container is None and e.licence for e in zhang.MODELS)


@pytest.mark.parametrize("legacy", [True, False], ids=["legacy-format", "zip-format"])
@pytest.mark.parametrize("name", ["zhang-eccv16", "zhang-siggraph17"])
def test_published_file_loads_weights_only_and_strictly(nets, tmp_path, name, legacy):
    path = published_file(nets[name], tmp_path, "weights.pth", legacy)
    assert_same_network(load(name, path), nets[name], torch.rand(1, 1, 64, 64) * 100)  # Lab L


@pytest.mark.parametrize("name, other", [("zhang-eccv16", "zhang-siggraph17"), ("zhang-siggraph17", "zhang-eccv16")])
def test_the_other_models_file_is_refused_in_one_line_naming_it(nets, tmp_path, name, other):
    path = published_file(nets[other], tmp_path, f"{other}.pth")
    assert one_line_refusal(lambda: load(name, path)).startswith(f"{path}: {name} weights do not fit")


def test_a_file_that_is_not_a_state_dict_is_refused_in_one_line(tmp_path):
    path = tmp_path / "notes.pth"
    path.write_text("not weights")
    assert "notes.pth: not a readable zhang-eccv16 weight" in one_line_refusal(lambda: load("zhang-eccv16", path))


@pytest.mark.parametrize("photo", ["astronaut", "chelsea", "camera"])
def test_prepare_is_the_authors_pil_resize_and_scikit_image_l(photo):
    """Their preprocess_img: PIL's bicubic to 256 x 256 of the 8-bit photo (gray tiled to RGB), L by rgb2lab."""
    rgb8 = getattr(skimage.data, photo)()
    rgb8_3 = np.tile(rgb8[:, :, None], 3) if rgb8.ndim == 2 else rgb8
    small = np.asarray(Image.fromarray(rgb8_3).resize((256, 256), resample=Image.Resampling.BICUBIC))
    expected = torch.from_numpy(color.rgb2lab(small)[:, :, 0]).float()
    pixels = torch.from_numpy(rgb8 if rgb8.ndim == 3 else rgb8[:, :, None]).permute(2, 0, 1)[None]
    l = zhang.prepare(pixels.float() / 255.0)  # noqa: E741
    assert l.shape == (1, 1, 256, 256) and l.dtype == torch.float32
    assert (l[0, 0] - expected).abs().max() < 1e-4


def test_eccv16_decodes_its_bins_to_lab_ab(nets):
    """The distribution's mean over the 313 bins, in Lab units: a distribution peaked on one bin gives its ab."""
    net = nets["zhang-eccv16"]
    assert torch.allclose(net.model_out.weight.view(2, 313).T * 110.0, bin_tensor())
    logits = torch.full((1, 313, 4, 4), -50.0)
    logits[:, 200] = 50.0
    with torch.no_grad():
        ab = net.model_out(torch.softmax(logits, dim=1)) * zhang.AB_RANGE
    assert torch.allclose(ab[0, :, 0, 0], bin_tensor()[200], atol=1e-3)


def test_siggraph17_automatic_mode_is_zero_hints_and_a_hint_reaches_the_network(nets):
    net = nets["zhang-siggraph17"]
    torch.manual_seed(1)
    l = torch.rand(1, 1, 64, 64) * 100  # noqa: E741
    hint_ab, hint_mask = zhang.hint_maps(l)
    assert hint_ab.shape == (1, 2, 64, 64) and hint_mask.shape == (1, 1, 64, 64)
    assert not hint_ab.any() and not hint_mask.any()
    hint_ab, hint_mask = zhang.hint_maps(l, [(10, 20, 40.0, -30.0)], patch=3)
    assert hint_mask.sum() == 9 and hint_mask[0, 0, 9:12, 19:22].all()
    assert (hint_ab[0, :, 9:12, 19:22] == torch.tensor([40.0, -30.0]).view(2, 1, 1)).all()
    assert hint_ab.abs().sum() == 9 * (40 + 30)
    with torch.no_grad():
        automatic = net(l)
        assert torch.equal(net(l, *zhang.hint_maps(l)), automatic)
        assert not torch.equal(net(l, hint_ab, hint_mask), automatic)
    with pytest.raises(ValueError, match="together"):
        net(l, hint_ab)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["zhang-eccv16", "zhang-siggraph17"])
def test_a_published_file_colorizes_a_photo_prepare_forward_to_ab(nets, tmp_path, name):
    entry, net = BY_NAME[name], load(name, published_file(nets[name], tmp_path, "weights.pth"))
    rgb = torch.from_numpy(skimage.data.astronaut()).permute(2, 0, 1)[None].float() / 255.0
    with torch.no_grad():
        ab = entry.to_ab(net(entry.prepare(rgb)), rgb)
    assert ab.shape == (1, 2, 256, 256) and ab.dtype == torch.float32
    assert torch.isfinite(ab).all() and ab.abs().max() <= 128.0 and ab.std() > 0
