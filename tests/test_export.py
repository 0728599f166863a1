"""ONNX export: the exported generator runs in onnxruntime at batch and spatial sizes it was not traced at."""
import pytest
import torch

pytest.importorskip("onnx", reason="the optional [export] dependencies (onnx, onnxruntime) are not installed")
ort = pytest.importorskip("onnxruntime", reason="the optional [export] dependencies are not installed")

from gan_colorizer.models.registry import load_generator  # noqa: E402
from gan_colorizer.colorize.onnx import main  # noqa: E402


@pytest.mark.slow
def test_exported_generator_agrees_with_pytorch_on_new_batch_and_spatial_sizes(tiny_checkpoint, tmp_path, capsys):
    import onnx
    path = tmp_path / "onnx" / "generator.onnx"
    assert main(["--checkpoint", str(tiny_checkpoint), "--out", str(path)]) == 0
    assert "checked in onnxruntime" in capsys.readouterr().out
    meta = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    assert meta["size_multiple"] == "32" and "L / 50 - 1" in meta["input"] and "ab / 110" in meta["output"]
    generator, _, _ = load_generator(tiny_checkpoint)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    torch.manual_seed(1)
    for n, h, w in [(3, 96, 32), (1, 160, 128)]:  # neither batch 1 at 64x96, the traced example
        gray_l = torch.rand(n, 1, h, w) * 2 - 1
        with torch.inference_mode():
            expected = generator(gray_l).numpy()
        got = session.run(["ab"], {"gray_l": gray_l.numpy()})[0]
        assert got.shape == (n, 2, h, w)
        assert abs(got - expected).max() < 1e-3


def test_export_of_a_missing_checkpoint_is_one_line(tmp_path, capsys):
    assert main(["--checkpoint", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "g.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1 and not (tmp_path / "g.onnx").exists()
