"""Shared fixtures: tiny color photos made on the fly, a way to run the scripts as a user would, and a torch.hub
cache of weight files the tests make, with every download blocked."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
DEAD_PROXY = "http://127.0.0.1:9"  # the discard port: a connection there is refused at once
DOWNLOADS: list[str] = []  # every download attempted in this process (all blocked)


def blocked_download(url, dst, *args, **kwargs):
    """torch.hub.download_url_to_file in tests: records the URL and fails as an offline machine does."""
    import urllib.error
    DOWNLOADS.append(url)
    raise urllib.error.URLError(f"tests/conftest.py blocks downloads ({url})")


@pytest.fixture(scope="session", autouse=True)
def torch_home(tmp_path_factory) -> Path:
    """No test reaches the network. TORCH_HOME is a fresh torch.hub cache holding what the tests use (a seeded random
    torchvision resnet18 under the real file name), torch.hub's download is blocked in this process, the Hugging Face
    cache is empty and offline (HF_HUB_OFFLINE), and every proxy is dead for the processes tests start (they inherit
    TORCH_HOME, HF_HOME and the proxies)."""
    import torch
    import torchvision

    from gan_colorizer.models.bodies import imagenet_weights

    from gan_colorizer.weights import hub_file
    home = tmp_path_factory.mktemp("torch_home")
    patch = pytest.MonkeyPatch()
    patch.setenv("TORCH_HOME", str(home))
    patch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg_cache")))  # scan caches (scan.py)
    patch.setenv("HF_HOME", str(tmp_path_factory.mktemp("hf_home")))  # an empty Hugging Face cache, and offline
    patch.delenv("HF_HUB_CACHE", raising=False)
    patch.setenv("HF_HUB_OFFLINE", "1")
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        patch.setenv(var, DEAD_PROXY)
    for var in ("no_proxy", "NO_PROXY"):
        patch.setenv(var, "127.0.0.1,localhost")  # the browser tests talk to chromium on 127.0.0.1
    patch.setattr(torch.hub, "download_url_to_file", blocked_download)
    path = hub_file(imagenet_weights("resnet18").url)
    path.parent.mkdir(parents=True)
    torch.manual_seed(18)
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    yield home
    patch.undo()


@pytest.fixture
def empty_torch_home(tmp_path, monkeypatch) -> Path:
    """An empty torch.hub cache for one test: an offline machine on first use (downloads stay blocked)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_torch_home"))
    return tmp_path / "empty_torch_home"


@pytest.fixture
def fake_download(monkeypatch):
    """An online machine: torch.hub's download writes `files[name]` (a state dict) at the path it asks for.
    Returns (files to fill, the URLs downloaded)."""
    import torch
    files, urls = {}, []

    def download(url, dst, *args, **kwargs):
        urls.append(url)
        torch.save(files[Path(url).name], dst)
    monkeypatch.setattr(torch.hub, "download_url_to_file", download)
    return files, urls


def color_image(seed: int, size=(48, 40)) -> Image.Image:
    """A smooth, saturated color field with a few blocks: it has chroma everywhere, like a photo."""
    rng = np.random.default_rng(seed)
    w, h = size
    y, x = np.mgrid[0:h, 0:w] / max(w, h)
    phase = rng.uniform(0, 2 * np.pi, 3)
    rgb = np.stack([0.5 + 0.45 * np.sin(4 * x + 3 * y * (c + 1) + phase[c]) for c in range(3)], axis=-1)
    for _ in range(3):
        x0, y0 = rng.integers(0, w // 2), rng.integers(0, h // 2)
        rgb[y0:y0 + h // 3, x0:x0 + w // 3] = rng.uniform(0, 1, 3)
    return Image.fromarray((rgb * 255).round().astype(np.uint8), "RGB")


def dated_lines(text, what: str) -> list[str]:
    """The progress lines off a terminal (console.Progress: '<date> <time> WHAT done/total unit, rate...') about
    `what` in text (a str, or a list of logged messages)."""
    import re
    lines = text.splitlines() if isinstance(text, str) else text
    return [line for line in lines if re.match(rf"\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d {re.escape(what)} ", line)]


def make_photo_folder(folder: Path, n: int, size=(48, 40), start_seed: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"photo_{i:03d}.{'png' if i % 2 else 'jpg'}"
        color_image(start_seed + i, size).save(path, quality=95)
        paths.append(path)
    return paths


@pytest.fixture
def photo_folder(tmp_path) -> Path:
    folder = tmp_path / "photos"
    make_photo_folder(folder, 8)
    return folder


def run_script(script: str, *args, cwd=None, timeout=600) -> subprocess.CompletedProcess:
    """Run one of the top-level scripts in a subprocess, as a user would."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, str(ROOT / script), *map(str, args)], cwd=cwd or ROOT,
                          capture_output=True, text=True, timeout=timeout, env=env)


def run_dirs_args(tmp_path: Path, name: str) -> list[str]:
    return ["--name", name, "--runs-dir", str(tmp_path / "runs"), "--checkpoints-dir", str(tmp_path / "checkpoints")]


TINY = ["--image-size", "64", "--batch-size", "2", "--num-workers", "0", "--log-every", "1", "--image-every", "1"]


@pytest.fixture(scope="session")
def built_resunet():
    """The default generator (resnet18 ResUNet, seeded random weights), built once: a build costs 1-2 s of CPU.
    Tests take copies (the `resunet` fixture) or its weights (`tiny_checkpoint`), never this module itself."""
    import torch

    from gan_colorizer.config import defaults
    from gan_colorizer.models.registry import build_generator
    torch.manual_seed(0)
    return build_generator(defaults("pretrain").model, load_pretrained=False)


@pytest.fixture
def resunet(built_resunet):
    """A fresh copy of the default generator as build_generator returns it (training mode, untouched weights)."""
    import copy
    return copy.deepcopy(built_resunet)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, built_resunet) -> Path:
    """A stage-1 checkpoint of the default generator (seeded random weights), saved as training saves it."""
    from gan_colorizer.checkpoint import save_atomic
    from gan_colorizer.config import defaults
    cfg = defaults("pretrain")
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_atomic({"format_version": 1, "stage": "pretrain", "config": cfg.to_dict(),
                 "generator": built_resunet.state_dict(), "step": 1, "epoch": 0, "metrics": {}}, path)
    return path


@pytest.fixture(scope="module")
def cached_colorizer(tiny_checkpoint):
    """One real checkpoint load per module; each in-process colorize.py call (`cli`) then reuses the generator."""
    from gan_colorizer import Colorizer
    return Colorizer.from_checkpoint(tiny_checkpoint, device="cpu", render_size=64, amp="off")


@pytest.fixture
def cli(cached_colorizer, tiny_checkpoint, monkeypatch, capsys):
    """Run colorize.py's main(argv) in-process with the cached generator: (exit code, stdout, stderr)."""
    from gan_colorizer import Colorizer
    from gan_colorizer.colorize import cli as colorize_cli

    def load(args):
        return Colorizer(cached_colorizer.generator, cached_colorizer.runtime, args.image_size)
    monkeypatch.setattr(colorize_cli, "load_colorizer", load)

    def run(*args):
        code = colorize_cli.main([*map(str, args), "--checkpoint", str(tiny_checkpoint), "--image-size", "64"])
        out, err = capsys.readouterr()
        return code, out, err
    return run


def load_published(name: str, path):
    """A published model's weight file through the weights-only path it takes: its family's reader and container
    (models/registry.py: DeOldify's learner slices allowed), then load_weights' strict names and shapes."""
    from gan_colorizer.checkpoint import load_weights
    from gan_colorizer.models import deoldify, registry
    from gan_colorizer.weights import load_state_dict_file
    model = registry.find(name)
    read = deoldify.read_published if model.weights.container == "model" else load_state_dict_file
    net = model.build()
    load_weights(net, registry.STATE_FROM[name](read(path, f"{name} weight")), path, name)
    return net.eval()


def assert_same_network(net, reference, *inputs) -> None:
    """net holds reference's weights, tensor for tensor, and gives its outputs on inputs."""
    import torch
    for key, tensor in reference.state_dict().items():
        assert torch.equal(net.state_dict()[key], tensor), key
    with torch.no_grad():
        assert torch.equal(net(*inputs), reference(*inputs))


def one_line_refusal(call) -> str:
    """The UserError call() raises, as its message, checked to be one line."""
    from gan_colorizer.errors import UserError
    with pytest.raises(UserError) as refused:
        call()
    message = str(refused.value)
    assert "\n" not in message
    return message


def generator_goes_the_whole_way(tmp_path: Path, capsys, name: str, flags: list[str], layers: str = "") -> dict:
    """The whole way a generator goes, at 64 px on six photos: two stage-1 steps, evaluation, colorizing a photo and
    a video's frames, the ONNX export checked in onnxruntime, visualize.py's feature maps (of `layers`, or all).
    Returns evaluation's summary, with visualize's layers.json under "visualized"."""
    import torch

    from gan_colorizer import Colorizer
    from gan_colorizer.colorize.onnx import main as export
    from gan_colorizer.colorize.video import colorized_frames
    from gan_colorizer.evaluate.run import EvalOptions, evaluate
    from gan_colorizer.inspect.cli import main as visualize
    from gan_colorizer.train.cli import main
    make_photo_folder(tmp_path / "photos", 6)
    args = ["--data", str(tmp_path / "photos"), *flags, "--image-size", "64", "--batch-size", "2", "--max-steps", "2",
            "--num-workers", "0", "--amp", "off", *run_dirs_args(tmp_path, name)]
    assert main("pretrain", args) == 0
    best = tmp_path / "checkpoints" / name / "best.pt"
    summary = evaluate(EvalOptions(checkpoints=[str(best)], data=str(tmp_path / "photos"), out=str(tmp_path / "e"),
                                   image_size=64, num_workers=0, grid_images=0))
    colorizer = Colorizer.from_checkpoint(best, device="cpu", render_size=64)
    assert colorizer.colorize(color_image(3, size=(90, 70))).size == (90, 70)
    frames = [torch.rand(48, 64, 3).mul(255).byte().numpy() for _ in range(2)]
    assert [f.shape for f in colorized_frames(colorizer, frames, batch_size=2)] == [(48, 64, 3)] * 2
    assert export(["--checkpoint", str(best), "--out", str(tmp_path / f"{name}.onnx")]) == 0
    assert "checked in onnxruntime" in capsys.readouterr().out
    color_image(4, (70, 50)).save(tmp_path / "photo.png")
    assert visualize(["--checkpoint", str(best), "--image", str(tmp_path / "photo.png"), "--out",
                      str(tmp_path / "viz"), "--image-size", "64", *(["--layers", layers] if layers else [])]) == 0
    summary["visualized"] = json.loads((tmp_path / "viz" / "layers.json").read_text())
    return summary
