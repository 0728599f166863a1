"""The ONNX engines without torch: the numpy Lab maths against color.py / inference.py, the torch and ONNX engines
agreeing on whole photos, colorize.py and the API with torch and fastai refused, and a virtual environment holding
only requirements-colorize.txt's packages."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import ROOT, color_image
from PIL import Image

from gan_colorizer.colorize import inference as torch_maths
from gan_colorizer.colorize import inference_numpy as numpy_maths

# sys.meta_path hook for a subprocess: any import of torch, torchvision or fastai raises (and says who asked)
BLOCKER = textwrap.dedent("""
    import importlib.abc, sys, traceback
    class RefuseTorch(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] in ("torch", "torchvision", "fastai"):
                raise ImportError(f"torch-free test: {name} imported by\\n" + "".join(traceback.format_stack()[-6:-1]))
    sys.meta_path.insert(0, RefuseTorch())
""")


def tiny_onnx(path: Path, seed: int = 0) -> tuple[Path, torch.nn.Conv2d]:
    """A 3x3 convolution gray_l -> ab written as ONNX with our metadata (no torch export), and the same convolution
    as a torch module: one network, so two engines' outputs differ only by the maths around it."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(seed)
    weight, bias = (rng.standard_normal((2, 1, 3, 3)) * 0.2).astype(np.float32), np.array([0.05, -0.1], np.float32)
    dims = ["batch", 1, "height", "width"]
    graph = helper.make_graph(
        [helper.make_node("Conv", ["gray_l", "w", "b"], ["ab"], pads=[1, 1, 1, 1])], "tiny",
        [helper.make_tensor_value_info("gray_l", TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info("ab", TensorProto.FLOAT, ["batch", 2, "height", "width"])],
        [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(bias, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for key, value in {"size_multiple": "32", "l_scale": "50.0", "ab_scale": "110.0", "head": "regression"}.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))
    conv = torch.nn.Conv2d(1, 2, 3, padding=1)
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(weight))
        conv.bias.copy_(torch.from_numpy(bias))
    return path, conv


def photos(folder: Path) -> Path:
    """A colour JPEG with EXIF, a gray PNG, an RGBA PNG (alpha kept) and a palette PNG: the cases output rules see."""
    folder.mkdir()
    exif = Image.Exif()
    exif[0x0132] = "1950:01:01 00:00:00"  # DateTime
    color_image(1, size=(131, 97)).save(folder / "color.jpg", exif=exif, quality=95)
    color_image(2, size=(80, 100)).convert("L").save(folder / "gray.png")
    rgba = color_image(3, size=(90, 70)).convert("RGBA")
    rgba.putalpha(Image.fromarray(np.tile(np.arange(90, dtype=np.uint8) * 2, (70, 1))))
    rgba.save(folder / "alpha.png")
    color_image(4, size=(300, 40)).convert("P").save(folder / "strip.png")
    return folder


def test_numpy_lab_maths_matches_the_torch_functions():
    """Each numpy step against its torch twin (color.py, inference.py), to float32 precision."""
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (97, 131, 3), dtype=np.uint8)
    for px in (pixels, pixels[..., :1]):  # colour and gray
        expected = torch_maths.full_res_l(torch.from_numpy(px).permute(2, 0, 1)[None])[0, 0].numpy()
        assert np.abs(numpy_maths.full_res_l(px) - expected).max() < 1e-5
    gray_l = numpy_maths.full_res_l(pixels)
    for shape in [(32, 64), (64, 96), (160, 192), (97, 131)]:  # down, down, up (a small photo), same
        expected = torch_maths.downsample_l(torch.from_numpy(gray_l)[None, None], shape)[0].numpy()
        assert np.abs(numpy_maths.downsample_l(gray_l, shape) - expected).max() < 1e-4, shape
    ab = (rng.standard_normal((1, 2, 32, 64)) * 0.3).astype(np.float32)
    for h, w in [(301, 517), (32, 64), (1000, 37), (5, 3), (64, 128)]:
        expected = F.interpolate(torch.from_numpy(ab), size=(h, w), mode="bicubic", align_corners=False).numpy()
        got = np.concatenate([rows for _, _, rows in numpy_maths.upsampled_ab_rows(ab, h, w)], 2)
        assert got.shape == expected.shape and np.abs(got - expected).max() < 1e-5, (h, w)
    controls = {"temperature": 7.0, "saturation": 1.3, "hue": 25.0}
    expected = torch_maths.apply_controls(torch.from_numpy(ab), **controls).numpy()
    assert np.abs(numpy_maths.apply_controls(ab, **controls) - expected).max() < 1e-6
    small_ab = ab[:, :, :24, :40]
    torch_rows = torch_maths.TorchPipeline(None, None).rgb8_rows(torch.from_numpy(gray_l)[None, None],
                                                                 torch.from_numpy(small_ab))
    rgb_torch = np.concatenate([rows for _, rows in torch_rows])
    rgb_numpy = np.concatenate([rows for _, rows in numpy_maths.recombined_rows(gray_l, small_ab)])
    diff = np.abs(rgb_torch.astype(int) - rgb_numpy)
    assert rgb_numpy.shape == (97, 131, 3) and diff.max() <= 1 and (diff > 0).mean() < 1e-3  # rounding ties only


def test_numpy_chunks_cover_every_row_once(monkeypatch):
    monkeypatch.setattr(numpy_maths, "CHUNK_PIXELS", 500)  # many chunks, with a ragged last one
    ab = np.random.default_rng(1).standard_normal((1, 2, 8, 16)).astype(np.float32)
    rows = list(numpy_maths.upsampled_ab_rows(ab, 45, 31))
    assert len(rows) == 3 and [r[1] for r in rows[:-1]] == [r[0] for r in rows[1:]] and rows[-1][1] == 45
    expected = F.interpolate(torch.from_numpy(ab), size=(45, 31), mode="bicubic", align_corners=False).numpy()
    assert np.abs(np.concatenate([r[2] for r in rows], 2) - expected).max() < 1e-5


def test_torch_and_onnx_engines_give_the_same_photos_alpha_exif_and_mood(tmp_path):
    from gan_colorizer.colorize.api import Colorizer
    model, conv = tiny_onnx(tmp_path / "tiny.onnx")
    on_torch, on_onnx = Colorizer(conv), Colorizer.from_checkpoint(model)
    assert (on_torch.engine, on_onnx.engine) == ("torch", "onnx")
    for path in sorted(photos(tmp_path / "in").iterdir()):
        for controls in ({}, {"temperature": 9.0, "saturation": 1.4, "hue": -30.0}):
            a, b = on_torch.colorize(path, **controls), on_onnx.colorize(path, **controls)
            assert (a.mode, a.size, a.info.get("exif")) == (b.mode, b.size, b.info.get("exif")), path
            diff = np.abs(np.asarray(a).astype(int) - np.asarray(b))
            assert diff.max() <= 1 and (diff > 0).mean() < 1e-2, (path.name, controls)
            assert np.ptp(np.asarray(b.convert("RGB")).astype(int), axis=-1).max() > 2  # colour, not gray


def run_blocked(code: str, cwd: Path) -> subprocess.CompletedProcess:
    """Python code in a subprocess whose every torch / torchvision / fastai import raises."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-c", BLOCKER + textwrap.dedent(code)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_the_onnx_path_imports_neither_torch_nor_fastai(tmp_path):
    model, _ = tiny_onnx(tmp_path / "tiny.onnx")
    photos(tmp_path / "in")
    (tmp_path / "best.pt").write_bytes(b"a PyTorch checkpoint")
    done = run_blocked(f"""
        import runpy, sys
        from gan_colorizer import Colorizer
        out = Colorizer.from_checkpoint({str(model)!r}).colorize({str(tmp_path / 'in' / 'alpha.png')!r}, hue=10.0)
        print(out.mode, out.size)
        sys.argv = ["colorize.py", "in", "--checkpoint", "tiny.onnx", "--out", "out", "--temperature", "5"]
        try:
            runpy.run_path({str(ROOT / 'colorize.py')!r}, run_name="__main__")
        except SystemExit as e:
            print("exit", e.code)
        from gan_colorizer.colorize.cli import main
        print("pt", main(["in", "--checkpoint", "best.pt", "--out", "out-pt"]))
    """, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == "RGBA (90, 70)" and "exit 0" in done.stdout and "pt 2" in done.stdout
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["alpha.png", "color.png", "gray.png", "strip.png"]
    refusal = [line for line in done.stderr.splitlines() if "best.pt" in line]
    assert len(refusal) == 1 and "needs torch" in refusal[0] and not (tmp_path / "out-pt").exists()


def test_an_onnx_hint_model_runs_automatic_without_torch_and_hints_there_are_one_line(tmp_path):
    from test_onnx_files import hint_echo
    model = hint_echo(tmp_path)
    photos(tmp_path / "in")
    (tmp_path / "hints.json").write_text('[{"x": 5, "y": 5, "color": "#c83c28"}]')
    done = run_blocked(f"""
        from gan_colorizer import Colorizer
        from gan_colorizer.colorize.cli import main
        from gan_colorizer.errors import UserError
        colorizer = Colorizer.from_checkpoint({str(model)!r})
        print(colorizer.takes_hints, colorizer.colorize({str(tmp_path / 'in' / 'gray.png')!r}).size)
        try:
            colorizer.colorize({str(tmp_path / 'in' / 'gray.png')!r}, hints=[{{"x": 5, "y": 5, "color": "#c83c28"}}])
        except UserError as e:
            print("refused:", e)
        print("exit", main(["in/gray.png", "--checkpoint", {str(model)!r}, "--hints", "hints.json", "--out", "out"]))
    """, tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("True (") and lines[1].startswith("refused: hints: hints need torch") and \
        lines[-1] == "exit 2", done.stdout
    assert "error: --hints hints.json: " in done.stderr and "hints need torch" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "out").exists()


def test_the_import_blocker_refuses_torch(tmp_path):
    """The test above can fail: the torch engine's maths under the same hook is refused."""
    done = run_blocked("import gan_colorizer.colorize.inference", tmp_path)
    assert done.returncode != 0 and "torch-free test: torch imported by" in done.stderr


def requirement_names(path: Path) -> list[str]:
    lines = [line.split("#")[0].strip() for line in path.read_text().splitlines()]
    return [line.split(">")[0].split("=")[0].split("<")[0].split("[")[0].strip() for line in lines if line]


def with_dependencies(names: list[str]) -> set[str]:
    """The distributions names need, as installed in this environment (extras' requirements left out)."""
    from importlib.metadata import distribution
    from packaging.requirements import Requirement
    seen, todo = set(), list(names)
    while todo:
        dist = distribution(todo.pop())
        if dist.metadata["Name"].lower() in seen:
            continue
        seen.add(dist.metadata["Name"].lower())
        for req in map(Requirement, dist.requires or []):
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return seen


def link_distributions(names: set[str], site: Path) -> list[str]:
    """Symlink each installed distribution's top-level files and folders into site (a venv's site-packages)."""
    from importlib.metadata import distribution
    linked = []
    for name in sorted(names):
        dist = distribution(name)
        tops = {Path(f).parts[0] for f in dist.files or [] if not str(f).startswith("..")}
        for top in tops:
            source = Path(dist.locate_file(top))
            if source.exists() and not (site / top).exists():
                (site / top).symlink_to(source)
                linked.append(top)
    return linked


@pytest.mark.slow
@pytest.mark.system
def test_a_venv_without_torch_colorizes_like_torch(tiny_checkpoint, tmp_path):
    """requirements-colorize.txt's packages (and their dependencies) plus gan_colorizer, nothing else: colorize.py
    and the API run an exported model there, and match the torch engine on the same photos."""
    from gan_colorizer.colorize.api import Colorizer
    from gan_colorizer.colorize.onnx import main as export
    assert export(["--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path / "g.onnx"), "--no-check"]) == 0
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "venv")], check=True)
    python = tmp_path / "venv" / "bin" / "python"
    site = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    wanted = with_dependencies(requirement_names(ROOT / "requirements-colorize.txt"))
    assert {"numpy", "pillow", "onnxruntime"} <= wanted and not {"torch", "fastai", "onnx"} & wanted
    link_distributions(wanted, site)
    (site / "gan_colorizer").symlink_to(ROOT / "gan_colorizer")
    folder = photos(tmp_path / "in")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    code = textwrap.dedent(f"""
        import json, sys
        for name in ("torch", "fastai", "torchvision"):
            try:
                __import__(name)
                sys.exit(f"{{name}} is importable in the torch-free venv")
            except ImportError:
                pass
        from gan_colorizer import Colorizer
        from gan_colorizer.colorize.cli import main
        Colorizer.from_checkpoint("g.onnx").colorize("in/color.jpg", saturation=1.3).save("api.png")
        code = main(["in", "--checkpoint", "g.onnx", "--out", "out", "--hue", "20"])
        loaded = sorted(m for m in sys.modules if m.startswith(("torch", "fastai")))
        print(json.dumps({{"exit": code, "modules": loaded}}))
    """)
    done = subprocess.run([python, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == {"exit": 0, "modules": []}
    on_torch = Colorizer.from_checkpoint(tiny_checkpoint, "cpu", amp="off")
    pairs = [(tmp_path / "api.png", on_torch.colorize(folder / "color.jpg", saturation=1.3))]
    pairs += [(tmp_path / "out" / f"{p.stem}.png", on_torch.colorize(p, hue=20.0)) for p in sorted(folder.iterdir())]
    for written, expected in pairs:
        with Image.open(written) as img:
            diff = np.abs(np.asarray(img).astype(int) - np.asarray(expected))
        assert img.mode == expected.mode and diff.max() <= 2 and diff.mean() < 0.05, (written.name, diff.max())
