"""DDColor's tiny and large models (gan_colorizer/models/ddcolor.py, ddcolor_decoder.py): the published files' parameter
names and shapes, loading a file in either of the authors' containers weights-only, the authors' OpenCV
preprocessing at 512, and a photo through prepare -> network -> to_ab. Nothing is downloaded: the files are random
weights. The large model (ConvNeXt-L, 228 M parameters) is built on the meta device except in the slow tier."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data
import torch

from conftest import assert_same_network, one_line_refusal
from conftest import load_published as load

from gan_colorizer.models import ddcolor, zhang
from gan_colorizer.models.ddcolor_decoder import sine_positions

MANIFESTS = Path(__file__).parent / "data" / "published"
BY_NAME = {entry.name: entry for entry in ddcolor.MODELS}
ARCHITECTURE = {"ddcolor-tiny": "tiny", "ddcolor-large": "large", "ddcolor-paper": "large",
                "ddcolor-artistic": "large"}  # the paper's and the artistic weights are DDColor-L's layout


@pytest.fixture(scope="module")
def tiny() -> torch.nn.Module:
    torch.manual_seed(0)
    return BY_NAME["ddcolor-tiny"].build().eval()


def shapes(state: dict) -> dict:
    return {name: list(tensor.shape) for name, tensor in state.items()}


def manifest(name: str) -> dict:
    return json.loads((MANIFESTS / f"ddcolor-{ARCHITECTURE[name]}.json").read_text())


@pytest.mark.parametrize("name", list(ARCHITECTURE))
def test_state_dict_has_the_published_files_names_and_shapes(tiny, name):
    if name == "ddcolor-tiny":
        state = tiny.state_dict()
    else:
        with torch.device("meta"):  # ConvNeXt-L's 0.9 GB of floats are never allocated
            state = BY_NAME[name].build().state_dict()
    assert shapes(state) == manifest(name)
    assert list(state) == list(manifest(name))  # the order of the authors' basicsr DDColor, which wrote the files


def test_models_declare_the_hugging_face_files_and_render_size():
    assert list(BY_NAME) == list(ARCHITECTURE)
    assert [e.weights.hf_repo for e in ddcolor.MODELS] == [
        "piddnad/ddcolor_paper_tiny", "piddnad/ddcolor_modelscope", "piddnad/ddcolor_paper", "piddnad/ddcolor_artistic"]
    assert all(e.weights.hf_file == "pytorch_model.bin" and e.weights.container is None for e in ddcolor.MODELS)
    assert all(e.render_size == 512 and e.licence and e.weights.url is None for e in ddcolor.MODELS)


@pytest.mark.parametrize("container", ["bare", "params"])
def test_a_published_file_loads_weights_only_and_strictly(tiny, tmp_path, container):
    """Hugging Face's pytorch_model.bin is the bare state dict; the authors' training files (ModelScope's
    pytorch_model.pt) hold it under 'params'; files from before 2023-08 may still carry the dropped head_cls."""
    state = dict(tiny.state_dict())
    if container == "params":
        state = {"params": {**state, "encoder.arch.head_cls.weight": torch.zeros(4, 768),
                            "encoder.arch.head_cls.bias": torch.zeros(4)}}
    path = tmp_path / "pytorch_model.bin"
    torch.save(state, path)
    assert_same_network(load("ddcolor-tiny", path), tiny, torch.rand(1, 3, 64, 64))


@pytest.mark.filterwarnings("ignore:.*to a meta parameter")  # the large model on meta: its copies are no-ops
@pytest.mark.parametrize("other", ["tiny-into-large", "zhang-eccv16"])
def test_another_models_file_is_refused_in_one_line_naming_it(tiny, tmp_path, other):
    if other == "zhang-eccv16":
        state, name = zhang.ECCV16().state_dict(), "ddcolor-tiny"
    else:
        state, name = tiny.state_dict(), "ddcolor-large"
    path = tmp_path / f"{other}.pth"
    torch.save(state, path)
    with torch.device("meta"):
        message = one_line_refusal(lambda: load(name, path))
    assert message.startswith(f"{path}: {name} weights do not fit")


def test_a_file_that_is_not_a_state_dict_is_refused_in_one_line(tmp_path):
    path = tmp_path / "notes.pt"
    path.write_text("not weights")
    assert "notes.pt: not a readable ddcolor-tiny weight" in one_line_refusal(lambda: load("ddcolor-tiny", path))


@pytest.mark.parametrize("photo", ["astronaut", "chelsea", "hubble_deep_field", "camera"])  # 512, up, down, gray
def test_prepare_is_the_authors_opencv_gray_at_512(photo):
    """Their ColorizationPipeline, step by step as they write it (BGR): the 8-bit photo / 255, cv2.resize to
    512 x 512, its Lab L, (L, 0, 0) back to RGB. And, by scikit-image's exact Lab instead of OpenCV's tables, the
    same gray to under one 8-bit level."""
    rgb8 = getattr(skimage.data, photo)()
    rgb8_3 = np.tile(rgb8[:, :, None], 3) if rgb8.ndim == 2 else rgb8
    small = cv2.resize((rgb8_3[:, :, ::-1] / 255.0).astype(np.float32), (512, 512))
    l = cv2.cvtColor(small, cv2.COLOR_BGR2Lab)[:, :, :1]  # noqa: E741
    theirs = cv2.cvtColor(np.concatenate([l, np.zeros_like(l), np.zeros_like(l)], axis=2), cv2.COLOR_LAB2RGB)
    exact_l = skimage.color.rgb2lab(small[:, :, ::-1])[:, :, :1]
    exact = skimage.color.lab2rgb(np.concatenate([exact_l, np.zeros_like(exact_l), np.zeros_like(exact_l)], axis=2))
    pixels = torch.from_numpy(rgb8 if rgb8.ndim == 3 else rgb8[:, :, None]).permute(2, 0, 1)[None]
    gray = ddcolor.prepare(pixels.float() / 255.0)
    assert gray.shape == (1, 3, 512, 512) and gray.dtype == torch.float32
    assert np.array_equal(gray[0].permute(1, 2, 0).numpy(), theirs)
    assert np.abs(gray[0].permute(1, 2, 0).numpy() - exact).max() < 1 / 255  # measured: up to 0.5 of a level


def test_sine_positions_are_detrs_normalised_grid():
    """Row and column numbers scaled to (0, 2 pi]: channel 0 is sin(row angle), channel 1 its cos (wavelength 1),
    channel 128 sin(column angle); the last pixel's angles are 2 pi (to 1e-6)."""
    pos = sine_positions(4, 8, "cpu")
    assert pos.shape == (32, 1, 256)
    grid = pos.view(4, 8, 256)
    rows = torch.arange(1, 5).float() / 4 * 2 * torch.pi
    cols = torch.arange(1, 9).float() / 8 * 2 * torch.pi
    assert torch.allclose(grid[:, 0, 0], rows.sin(), atol=1e-5)
    assert torch.allclose(grid[:, 0, 1], rows.cos(), atol=1e-5)
    assert torch.allclose(grid[0, :, 128], cols.sin(), atol=1e-5)
    assert torch.allclose(grid[0, :, 255], (cols / 10000 ** (126 / 128)).cos(), atol=1e-5)


def test_the_network_keeps_the_input_size_and_reads_the_whole_image(tiny):
    """Gray RGB in, ab of the same size out; a change in one corner reaches the far corner (the colour queries
    attend to every pixel), as a local network's would not."""
    torch.manual_seed(2)
    gray = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        ab = tiny(gray)
        changed = gray.clone()
        changed[:, :, :8, :8] = 1.0 - changed[:, :, :8, :8]
        far = tiny(changed)[:, :, -8:, -8:]
    assert ab.shape == (1, 2, 64, 96) and torch.isfinite(ab).all()
    assert not torch.equal(far, ab[:, :, -8:, -8:])


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ddcolor-tiny", "ddcolor-large"])
def test_a_published_file_colorizes_a_photo_prepare_forward_to_ab(tmp_path, name):
    entry = BY_NAME[name]
    torch.manual_seed(0)
    path = tmp_path / "pytorch_model.bin"
    torch.save(entry.build().state_dict(), path)
    net = load(name, path)
    rgb = torch.from_numpy(skimage.data.astronaut()).permute(2, 0, 1)[None].float() / 255.0
    with torch.no_grad():
        ab = entry.to_ab(net(entry.prepare(rgb)), rgb)
    assert ab.shape == (1, 2, 512, 512) and ab.dtype == torch.float32
    assert torch.isfinite(ab).all() and ab.std() > 0
