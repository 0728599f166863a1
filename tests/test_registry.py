"""Published models by name (models/registry.py, colorize/published.py): --checkpoint NAME fetches the authors' file
as their libraries do (torch.hub's cache, huggingface_hub's cache) and colorizes with it. Nothing is downloaded: the
files are random weights in the published container format, laid out in temporary caches as the libraries lay
them out, and every download is blocked (conftest.py). colorize.py and visualize.py run in-process (their main(argv),
as the user's command line would call it) where torch.hub's cache is the question: TORCH_HOME is read at each call;
huggingface_hub reads HF_HOME and HF_HUB_OFFLINE once at import, so its cases run in a subprocess."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image
from skimage.color import rgb2lab

from conftest import color_image, run_script

ZHANG_URL = "https://colorizers.s3.us-east-2.amazonaws.com/colorization_release_v2-9b330a0b.pth"
DDCOLOR_REPO, DDCOLOR_FILE = "piddnad/ddcolor_paper_tiny", "pytorch_model.bin"
HF_REVISION = "0123456789abcdef0123456789abcdef01234567"  # any commit id: refs/main points the cache at it


@pytest.fixture(scope="module")
def zhang_hub(tmp_path_factory):
    """A torch.hub cache holding zhang-eccv16's file under its published name: a bare state dict of random weights."""
    import torch

    from gan_colorizer.models import zhang
    home = tmp_path_factory.mktemp("zhang_torch_home")
    path = home / "hub" / "checkpoints" / ZHANG_URL.rsplit("/", 1)[1]
    path.parent.mkdir(parents=True)
    torch.manual_seed(16)
    torch.save(zhang.ECCV16().state_dict(), path)
    return home


@pytest.fixture
def zhang_cached(zhang_hub, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(zhang_hub))
    return zhang_hub


def lab_l(path) -> np.ndarray:
    return rgb2lab(np.asarray(Image.open(path).convert("RGB")) / 255.0)[..., 0]


@pytest.fixture
def main_of(capsys, monkeypatch):
    """Run a tool's main(argv) in-process as its script would: a result with returncode, stdout and stderr."""
    def run(main, *args, cwd=None):
        if cwd is not None:
            monkeypatch.chdir(cwd)
        code = main(list(map(str, args)))
        out, err = capsys.readouterr()
        return SimpleNamespace(returncode=code, stdout=out, stderr=err)
    return run


@pytest.fixture
def colorize(main_of):
    """colorize.py's main(argv) in-process."""
    from gan_colorizer.colorize import cli
    return lambda *args, **kwargs: main_of(cli.main, *args, **kwargs)


def colorize_named(run, tmp_path, name: str, extra=(), **kwargs):
    """colorize.py (run: in-process or run_script's subprocess) on a small photo with --checkpoint NAME."""
    photo = tmp_path / "photo.png"
    color_image(1).save(photo)
    return run(photo, "--checkpoint", name, "--out", tmp_path / "out", *extra, **kwargs)


def colorize_subprocess(*args, **kwargs):
    return run_script("colorize.py", *args, **kwargs)


def one_error_line(result) -> str:
    """The single stderr line of a refused run (exit 2, no traceback)."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def test_colorize_cli_with_a_published_name_colorizes_from_the_torch_hub_cache(zhang_cached, colorize, tmp_path):
    photo = tmp_path / "photo.png"
    color_image(3, size=(120, 90)).save(photo)
    result = colorize(photo, "--checkpoint", "zhang-eccv16", "--out", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assert "zhang-eccv16" in result.stdout and "cached" in result.stdout
    out = tmp_path / "out" / "photo.png"
    colored = np.asarray(Image.open(out).convert("RGB"), dtype=np.float64)
    assert colored.shape == (90, 120, 3)
    assert np.abs(colored - colored.mean(axis=2, keepdims=True)).max() > 2  # colour, not gray
    # the photo's own L kept (scikit-image's Lab, not ours): within the 8-bit rounding and gamut clipping
    assert np.median(np.abs(lab_l(out) - lab_l(photo))) < 0.5


def test_flags_a_published_model_does_not_take_are_named_on_the_start_line(zhang_cached, colorize, tmp_path):
    result = colorize_named(colorize, tmp_path, "zhang-eccv16", extra=("--image-size", "384", "--amp", "bf16"))
    assert result.returncode == 0, result.stderr
    start = result.stdout.splitlines()[0]
    assert "image size 256" in start and "--image-size / --amp ignored: a published model runs as its authors" in start
    plain = colorize_named(colorize, tmp_path, "zhang-eccv16", extra=("--overwrite",))
    assert "ignored" not in plain.stdout


def test_a_published_model_colorizes_in_the_python_api_at_its_render_size(zhang_cached):
    from gan_colorizer.colorize.api import Colorizer
    colorizer = Colorizer.from_pretrained("zhang-eccv16")
    assert colorizer.render_size == 256 and colorizer.render_shape(90, 400) == (256, 256)
    image = color_image(5, size=(64, 48))
    assert colorizer.colorize(image).size == (64, 48)
    # from_checkpoint takes the name too (what colorize.py calls)
    assert Colorizer.from_checkpoint("zhang-eccv16").published.model.name == "zhang-eccv16"


def test_a_video_goes_through_a_published_model(zhang_cached):
    from gan_colorizer.colorize.api import Colorizer
    from gan_colorizer.colorize.video import colorized_frames
    frames = [np.asarray(color_image(i, size=(64, 48))) for i in range(3)]
    out = list(colorized_frames(Colorizer.from_pretrained("zhang-eccv16"), frames, batch_size=2))
    assert len(out) == 3 and out[0].shape == (48, 64, 3)


def test_offline_with_nothing_cached_is_one_line_naming_the_file_where_it_goes_and_its_url(empty_torch_home,
                                                                                          colorize, tmp_path):
    line = one_error_line(colorize_named(colorize, tmp_path, "zhang-eccv16"))
    assert "colorization_release_v2-9b330a0b.pth" in line
    assert str(empty_torch_home / "hub" / "checkpoints") in line and ZHANG_URL in line
    assert not (tmp_path / "out").exists()


def test_no_download_reads_the_cache_only_in_colorize_and_evaluate(empty_torch_home, colorize, tmp_path):
    from conftest import DOWNLOADS, make_photo_folder

    from gan_colorizer.errors import UserError
    from gan_colorizer.evaluate.run import EvalOptions, evaluate
    attempted = len(DOWNLOADS)
    line = one_error_line(colorize_named(colorize, tmp_path, "zhang-eccv16", extra=("--no-download",)))
    assert "colorization_release_v2-9b330a0b.pth" in line and "--no-download" in line
    make_photo_folder(tmp_path / "photos", 1)
    with pytest.raises(UserError, match="--no-download"):
        evaluate(EvalOptions(checkpoints=["zhang-eccv16"], data=str(tmp_path / "photos"), out=str(tmp_path / "eval"),
                             num_workers=0, download=False))
    assert len(DOWNLOADS) == attempted  # neither tried the network


def test_an_unknown_name_is_one_line_listing_the_names(colorize, tmp_path):
    line = one_error_line(colorize_named(colorize, tmp_path, "ddcolor-huge"))
    assert "ddcolor-huge" in line and "zhang-eccv16" in line and "deoldify-artistic" in line


def test_a_file_named_like_a_model_wins_over_the_name(zhang_cached, colorize, tmp_path):
    (tmp_path / "zhang-eccv16").write_bytes(b"not a checkpoint")
    assert "not a readable checkpoint" in one_error_line(colorize_named(colorize, tmp_path, "zhang-eccv16",
                                                                        cwd=tmp_path))


def test_onnx_engine_with_a_published_name_says_it_is_not_supported(zhang_cached):
    from gan_colorizer.colorize.api import Colorizer
    from gan_colorizer.errors import UserError
    with pytest.raises(UserError, match="zhang-eccv16 runs with torch only"):
        Colorizer.from_pretrained("zhang-eccv16", engine="onnx")


def hf_cache(home, repo: str, file: str, contents) -> None:
    """huggingface_hub's cache layout: models--OWNER--NAME/refs/main holding a commit, snapshots/COMMIT/FILE."""
    import torch
    folder = home / "hub" / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(HF_REVISION)
    (folder / "snapshots" / HF_REVISION).mkdir(parents=True)
    torch.save(contents, folder / "snapshots" / HF_REVISION / file)


@pytest.mark.slow  # DDColor tiny at 512 x 512 on the CPU, in a subprocess: 5-10 s
def test_ddcolor_tiny_colorizes_from_the_hugging_face_cache_offline(tmp_path, monkeypatch):
    import torch

    from gan_colorizer.models import ddcolor
    torch.manual_seed(23)
    hf_cache(tmp_path / "hf", DDCOLOR_REPO, DDCOLOR_FILE, ddcolor.build_tiny().state_dict())
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    photo = tmp_path / "photo.jpg"
    color_image(2, size=(80, 60)).save(photo, quality=95)
    result = run_script("colorize.py", photo, "--checkpoint", "ddcolor-tiny", "--out", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assert "ddcolor-tiny" in result.stdout and "snapshots" in result.stdout
    assert Image.open(tmp_path / "out" / "photo.png").size == (80, 60)


def test_ddcolor_offline_with_an_empty_hugging_face_cache_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    line = one_error_line(colorize_named(colorize_subprocess, tmp_path, "ddcolor-tiny"))
    assert DDCOLOR_FILE in line and DDCOLOR_REPO in line and "HF_HUB_OFFLINE" in line
    assert str(tmp_path / "hf" / "hub" / "models--piddnad--ddcolor_paper_tiny") in line
    assert f"https://huggingface.co/{DDCOLOR_REPO}/resolve/main/{DDCOLOR_FILE}" in line


def test_a_deoldify_learner_file_reads_through_torch_hub_with_its_slices(empty_torch_home):
    """DeOldify's files are fastai learners: {'model': ..., 'opt': ...} with slices in the optimizer state, which
    torch.hub's weights-only load refuses unless they are allowed (torch >= 2.5)."""
    import torch

    from gan_colorizer.models import registry
    from gan_colorizer.weights import hub_file
    model = registry.find("deoldify-artistic")
    path = hub_file(model.weights.url)
    path.parent.mkdir(parents=True)
    weights = {"layers.0.weight": torch.ones(2, 3)}
    torch.save({"model": weights, "opt": {"param_groups": [{"lr": slice(3e-3)}]}}, path)
    if not hasattr(torch.serialization, "safe_globals"):
        pytest.skip("torch < 2.5 has no safe_globals: learner files are refused in one line there")
    contents, file, source = registry._hub_contents(model, download=False)
    assert file == path and "cached" in source
    assert torch.equal(registry.STATE_FROM[model.name](contents)["layers.0.weight"], weights["layers.0.weight"])


@pytest.mark.slow  # evaluate.py in a subprocess with two models: 7-11 s
def test_evaluate_ranks_a_published_model_with_our_own_and_gray_and_records_its_file(zhang_cached, tiny_checkpoint,
                                                                                     tmp_path):
    import hashlib
    import json

    from conftest import make_photo_folder
    make_photo_folder(tmp_path / "photos", 3)
    out = tmp_path / "eval"
    weights = zhang_cached / "hub" / "checkpoints" / ZHANG_URL.rsplit("/", 1)[1]
    result = run_script("evaluate.py", "--checkpoint", "zhang-eccv16", "--checkpoint", tiny_checkpoint,
                        "--checkpoint", weights, "--data", tmp_path / "photos", "--out", out, "--image-size", "32",
                        "--batch-size", "3", "--num-workers", "1")
    assert result.returncode == 0, result.stderr
    summary = json.loads((out / "summary.json").read_text())
    models = summary["models"]
    assert {"gray", "zhang-eccv16", "tiny"} <= set(models)
    zhang_row = models["zhang-eccv16"]
    assert models[weights.stem]["published"] == "zhang-eccv16"  # the file given as a path: its parameters say which
    assert zhang_row["weights_file"] == str(weights) and zhang_row["render_size"] == 256
    assert zhang_row["weights_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert zhang_row["source"] == "https://github.com/richzhang/colorization"
    rows = (out / "metrics.csv").read_text().splitlines()
    assert any("zhang-eccv16" in row for row in rows[1:])


@pytest.mark.slow  # visualize.py end to end, twice, with feature grids of 9 stages: 5-10 s
def test_visualize_shows_a_published_models_stages_at_its_render_size(zhang_cached, main_of, tmp_path):
    import json

    from gan_colorizer.inspect import cli as visualize_cli
    photo = tmp_path / "photo.png"
    color_image(1, size=(90, 60)).save(photo)
    result = main_of(visualize_cli.main, "--checkpoint", "zhang-eccv16", "--image", photo, "--out", tmp_path / "viz",
                     "--top", "2")
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "viz" / "layers.json").read_text())
    assert summary["published"] == "zhang-eccv16" and summary["input_size"] == [256, 256]
    assert [layer["name"] for layer in summary["layers"]] == [
        "encoder.conv1", "encoder.conv2", "encoder.conv3", "encoder.conv4", "encoder.conv5", "bottleneck.conv6",
        "bottleneck.conv7", "decoder.conv8", "head.out"]
    assert summary["layers"][0]["shape"] == [64, 128, 128] and summary["layers"][-2]["shape"] == [313, 64, 64]
    for name in ("input.png", "prediction.png", "truth.png", "difference.png", "ab_prediction.png",
                 summary["layers"][-1]["channels"]):
        assert Image.open(tmp_path / "viz" / name).size[0] > 0
    prediction = np.asarray(Image.open(tmp_path / "viz" / "prediction.png").convert("RGB"), dtype=float)
    assert prediction.shape == (256, 256, 3) and np.abs(prediction - prediction.mean(axis=2, keepdims=True)).max() > 2
    # --layers by group, and the flags a published model cannot take, each one line
    decoder = main_of(visualize_cli.main, "--checkpoint", "zhang-eccv16", "--image", photo, "--out",
                      tmp_path / "dec", "--layers", "decoder,head")
    assert decoder.returncode == 0, decoder.stderr
    assert [x["name"] for x in json.loads((tmp_path / "dec" / "layers.json").read_text())["layers"]] == [
        "decoder.conv8", "head.out"]
    pixel = one_error_line(main_of(visualize_cli.main, "--checkpoint", "zhang-eccv16", "--image", photo, "--out",
                                   tmp_path / "px", "--pixel", "3,3"))
    assert "--pixel" in pixel and "published" in pixel
    size = one_error_line(main_of(visualize_cli.main, "--checkpoint", "zhang-eccv16", "--image", photo, "--out",
                                  tmp_path / "sz", "--image-size", "128"))
    assert "256" in size and not (tmp_path / "px").exists() and not (tmp_path / "sz").exists()


@pytest.mark.parametrize("name", ["zhang-siggraph17", "ddcolor-tiny", "deoldify-artistic", "deoldify-stable"])
def test_every_published_networks_stages_fire_once_each_in_forward_order(name):
    """anatomy.stages on a published network: its named_stages, whose hooks fire once per forward, in their order."""
    import torch

    from gan_colorizer.inspect.anatomy import stages
    from gan_colorizer.models import registry
    model = registry.find(name)
    torch.manual_seed(0)
    net = model.build().eval()
    found = stages(net)
    assert {s.group for s in found} <= {"encoder", "bottleneck", "decoder", "head"} and found[-1].group == "head"
    fired = []
    handles = [s.module.register_forward_hook(lambda m, i, o, n=s.name: fired.append(n)) for s in found]
    with torch.no_grad():
        net(model.prepare(torch.rand(1, 1, 64, 64)) if name.startswith("zhang") else torch.rand(1, 3, 64, 64))
    for handle in handles:
        handle.remove()
    assert fired == [s.name for s in found]


def test_the_onnx_export_refuses_a_published_name_in_one_line_saying_why(tmp_path):
    from gan_colorizer.colorize import onnx
    from gan_colorizer.errors import UserError
    with pytest.raises(UserError) as refused:
        onnx.export_command(onnx.build_parser().parse_args(["--checkpoint", "zhang-eccv16", "--out",
                                                            str(tmp_path / "m.onnx")]))
    message = str(refused.value)
    assert "the ONNX export takes our checkpoints only" in message and "preparation" in message
    assert "\n" not in message and not (tmp_path / "m.onnx").exists()


def test_a_published_file_given_as_a_path_is_told_by_its_parameters(zhang_hub, colorize, tmp_path):
    import shutil
    weights = tmp_path / "downloads" / "my_copy.pth"
    weights.parent.mkdir()
    shutil.copy(zhang_hub / "hub" / "checkpoints" / ZHANG_URL.rsplit("/", 1)[1], weights)
    photo = tmp_path / "photo.png"
    color_image(4).save(photo)
    result = colorize(photo, "--checkpoint", weights, "--out", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assert "its parameters are zhang-eccv16's" in result.stdout
    assert Image.open(tmp_path / "out" / "photo.png").size == color_image(4).size


def test_identify_reads_ddcolor_training_files_and_refuses_other_state_dicts(tmp_path):
    import torch
    import torchvision

    from gan_colorizer.models import ddcolor, registry
    torch.manual_seed(1)
    torch.save({"params": ddcolor.build_tiny().state_dict()}, tmp_path / "net_g_ema.pth")  # the authors' training file
    assert registry.load_file(tmp_path / "net_g_ema.pth").model.name == "ddcolor-tiny"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), tmp_path / "resnet18.pth")
    assert registry.load_file(tmp_path / "resnet18.pth") is None
    assert registry.load_file(tmp_path / "missing.pth") is None


def test_a_file_that_is_neither_ours_nor_published_keeps_the_checkpoint_error(colorize, tmp_path):
    import torch
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "other.pt")
    line = one_error_line(colorize_named(colorize, tmp_path, str(tmp_path / "other.pt")))
    assert "not a gan_colorizer checkpoint" in line


@pytest.mark.slow  # evaluate.py with --report, two models: 6-10 s
def test_the_report_shows_a_published_models_stages_beside_our_own(zhang_cached, tiny_checkpoint, tmp_path):
    """evaluate.py --report: the layer views of the page hold zhang-eccv16's stages at its render size, as for ours."""
    from conftest import make_photo_folder

    from gan_colorizer.evaluate.run import EvalOptions, evaluate
    make_photo_folder(tmp_path / "photos", 2)
    evaluate(EvalOptions(checkpoints=["zhang-eccv16", str(tiny_checkpoint)], data=str(tmp_path / "photos"),
                         out=str(tmp_path / "out"), image_size=32, batch_size=2, num_workers=0, grid_images=0,
                         report=True, report_images=1, report_worst=0))
    folder = tmp_path / "out" / "report"
    zhang_layers = sorted(p.name for p in (folder / "layers" / "zhang-eccv16").glob("*_channels.png"))
    assert [name.split("_", 1)[1][: -len("_channels.png")] for name in zhang_layers] == [
        "encoder.conv1", "encoder.conv2", "encoder.conv3", "encoder.conv4", "encoder.conv5", "bottleneck.conv6",
        "bottleneck.conv7", "decoder.conv8", "head.out"]
    assert len(list((folder / "layers" / "tiny").glob("*_channels.png"))) > 0
    html = (folder / "index.html").read_text()
    assert "No layer view" not in html and "layers/zhang-eccv16/08_head.out_channels.png" in html


def test_a_deoldify_file_is_told_by_its_parameters_as_a_learner_or_unwrapped():
    """load_file reads a local file through weights.load_state_dict_file, which already unwraps {'model': ...}: the
    DeOldify family must match the bare state dict too (an outside check found learner files refused)."""
    import torch

    from gan_colorizer.models import registry
    model = registry.find("deoldify-artistic")
    with torch.device("meta"):
        state = model.build().state_dict()
    for contents in ({"model": state, "opt": {}}, state):
        assert registry.identify(registry.Path("ColorizeArtistic_gen.pth"), contents) is model


def test_nan_or_inf_weights_are_one_line_not_a_black_photo(zhang_hub, colorize, tmp_path):
    import torch
    state = torch.load(zhang_hub / "hub" / "checkpoints" / ZHANG_URL.rsplit("/", 1)[1], weights_only=True)
    state["model8.6.weight"][0, 0, 0, 0] = float("nan")
    torch.save(state, tmp_path / "damaged.pth")
    line = one_error_line(colorize_named(colorize, tmp_path, str(tmp_path / "damaged.pth")))
    assert "damaged.pth: zhang-eccv16's weights hold NaN or Inf (model8.6.weight)" in line
    assert not (tmp_path / "out").exists()


def test_an_unknown_name_lists_the_names_in_evaluate_and_visualize_too(main_of, tmp_path):
    from conftest import make_photo_folder

    from gan_colorizer.evaluate import cli as evaluate_cli
    from gan_colorizer.inspect import cli as visualize_cli
    make_photo_folder(tmp_path / "photos", 1)
    photo = next((tmp_path / "photos").iterdir())
    for main, args in ((evaluate_cli.main, ["--data", tmp_path / "photos", "--out", tmp_path / "e"]),
                       (visualize_cli.main, ["--image", photo, "--out", tmp_path / "v"])):
        line = one_error_line(main_of(main, "--checkpoint", "ddcolor-small", *args))
        assert "ddcolor-small" in line and "ddcolor-tiny" in line and "zhang-eccv16" in line


def test_a_cached_file_the_weights_only_load_refuses_is_one_line_in_our_words(tmp_path, monkeypatch, colorize):
    import os

    import torch
    path = tmp_path / "th" / "hub" / "checkpoints" / ZHANG_URL.rsplit("/", 1)[1]
    path.parent.mkdir(parents=True)
    torch.save({"model1.0.weight": os.system}, path)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    line = one_error_line(colorize_named(colorize, tmp_path, "zhang-eccv16"))
    assert "holds Python objects (posix.system)" in line and "nothing in it was run" in line
    assert "weights_only=False" not in line and "delete it" in line


@pytest.mark.slow  # a full DeOldify artistic file (250 MB) written, identified and run
def test_a_deoldify_learner_file_given_as_a_path_colorizes(colorize, tmp_path):
    import torch

    from gan_colorizer.models import registry
    torch.manual_seed(5)
    model = registry.find("deoldify-artistic")
    learner = {"model": model.build().state_dict(), "opt": {"param_groups": [{"lr": slice(3e-3)}]}}
    torch.save(learner, tmp_path / "ColorizeArtistic_gen.pth")
    photo = tmp_path / "photo.png"
    color_image(2, size=(64, 48)).save(photo)
    result = colorize(photo, "--checkpoint", tmp_path / "ColorizeArtistic_gen.pth", "--out", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assert "its parameters are deoldify-artistic's" in result.stdout
    assert Image.open(tmp_path / "out" / "photo.png").size == (64, 48)
