"""Hostile ONNX files given as --checkpoint: tiny models made here with onnx.helper. A model that breaks the contract
(its metadata, its input or output) is refused at load in one line naming the file; an output that is wrong for one
photo (a shape other than its input's, NaN) fails that photo alone; external data outside the model's folder is
refused by onnxruntime (the floor in setup.cfg). Nothing here allocates more than a few MB."""
import os
import re

import numpy as np
import pytest
from conftest import color_image

from gan_colorizer.colorize import cli as colorize_cli
from gan_colorizer.colorize import engines
from gan_colorizer.errors import UserError

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402

META = {"size_multiple": "32", "l_scale": "50", "ab_scale": "110"}


def tensor(name, channels, t=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, t, ["N", channels, "H", "W"])


def const(name, values, t=TensorProto.FLOAT):
    values = np.asarray(values, dtype=np.float32 if t == TensorProto.FLOAT else np.int64)
    return helper.make_tensor(name, t, list(values.shape), values.tobytes(), raw=True)


def model(tmp_path, nodes, inits=(), meta=None, inputs=None, outputs=None, name="m.onnx"):
    """An ONNX file of the graph (default input gray_l (N, 1, H, W), output ab (N, 2, H, W)) with our metadata."""
    graph = helper.make_graph(nodes, "g", inputs or [tensor("gray_l", 1)], outputs or [tensor("ab", 2)],
                              initializer=list(inits))
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    for key, value in {**META, **(meta or {})}.items():
        if value is not None:
            m.metadata_props.add(key=key, value=str(value))
    path = tmp_path / name
    onnx.save(m, str(path))
    return path


def ab_of(source="gray_l", out="ab"):
    """Nodes making a plausible ab (N, 2, H, W) from a 1-channel tensor: (0.1 L, -0.1 L)."""
    return [helper.make_node("Mul", [source, "pos"], ["a"]), helper.make_node("Mul", [source, "neg"], ["b"]),
            helper.make_node("Concat", ["a", "b"], [out], axis=1)], [const("pos", 0.1), const("neg", -0.1)]


def good(tmp_path, meta=None, name="m.onnx"):
    nodes, inits = ab_of()
    return model(tmp_path, nodes, inits, meta, name=name)


def hint_echo(tmp_path, meta=None, hint_channels=3, name="hints.onnx"):
    """A hint model of ours (inputs gray_l and hints, 'hints' in its metadata): ab = (0.1 L, -0.1 L) plus the hinted
    ab, so a hint's colour is known where it is given."""
    nodes, inits = ab_of(out="auto")
    nodes += [helper.make_node("Slice", ["hints", "start", "end", "axis"], ["hinted"]),
              helper.make_node("Add", ["auto", "hinted"], ["ab"])]
    inits += [const("start", [0], TensorProto.INT64), const("end", [2], TensorProto.INT64),
              const("axis", [1], TensorProto.INT64)]
    return model(tmp_path, nodes, inits, {"hints": "hinted ab / 110, then the mask", **(meta or {})},
                 inputs=[tensor("gray_l", 1), tensor("hints", hint_channels)], name=name)


def refused(path, capsys, match: str):
    """colorize.py with the model: exit 2, one line naming the file and matching `match`, nothing written."""
    photos = path.parent / "photos"
    photos.mkdir(exist_ok=True)
    color_image(1).save(photos / "a.png")
    code = colorize_cli.main([str(photos), "--out", str(path.parent / "out"), "--checkpoint", str(path),
                              "--image-size", "32"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert err.startswith(f"error: {path}: ") and match in err, err
    assert not (path.parent / "out").exists()


def test_a_well_formed_model_colorizes(tmp_path, capsys):
    path = good(tmp_path)
    color_image(1).save(tmp_path / "a.png")
    assert colorize_cli.main([str(tmp_path / "a.png"), "--out", str(tmp_path / "out"), "--checkpoint", str(path),
                              "--image-size", "32"]) == 0
    assert (tmp_path / "out" / "a.png").is_file()


@pytest.mark.parametrize("value, match", [
    ("100000", "size_multiple '100000': expected an integer in 1..256"),  # drove the process to 23 GB
    ("0", "size_multiple '0': expected an integer in 1..256"),  # ZeroDivisionError
    ("-32", "size_multiple '-32': expected an integer in 1..256"),
    ("32.5", "size_multiple '32.5': expected an integer in 1..256"),
    ("thirty-two", "size_multiple 'thirty-two': expected an integer in 1..256")])
def test_a_size_multiple_out_of_range_is_refused_before_any_allocation(tmp_path, value, match):
    path = good(tmp_path, {"size_multiple": value})
    with pytest.raises(UserError, match=f"^{path}: metadata {match}"):
        engines.load_onnx(path)


@pytest.mark.parametrize("meta, match", [
    ({"l_scale": "fifty"}, "metadata l_scale 'fifty': not a number"),
    ({"decoding": "mode\x1b[2J\nerror: fake"}, "metadata decoding: not one line of printable text"),
    ({"decoding": "x" * 1000}, "metadata decoding: not one line of printable text")])
def test_metadata_that_is_not_what_we_write_is_refused(tmp_path, meta, match):
    path = good(tmp_path, meta)
    with pytest.raises(UserError, match=f"^{path}: {match}"):
        engines.load_onnx(path)


def test_a_hint_model_reads_its_hints_and_zeros_without_them(tmp_path):
    from test_hints_colorize import RED, ab_at, gray_photo

    from gan_colorizer.colorize.api import Colorizer
    from gan_colorizer.hints import parse_color
    network = engines.load_onnx(hint_echo(tmp_path))
    gray_l = np.linspace(-1, 1, 2 * 32 * 64, dtype=np.float32).reshape(2, 1, 32, 64)
    hints = np.random.default_rng(0).uniform(-1, 1, (2, 3, 32, 64)).astype(np.float32)
    assert network.takes_hints and np.array_equal(network(gray_l), network(gray_l, np.zeros_like(hints)))
    assert np.allclose(network(gray_l, hints) - network(gray_l), hints[:, :2], atol=1e-6)
    with pytest.raises(ValueError, match=r"hints \(2, 3, 32, 32\): expected \(2, 3, 32, 64\)"):
        network(gray_l, hints[..., :32])
    colorizer = Colorizer(network, render_size=64)
    out = colorizer.colorize(gray_photo(), hints=[{"x": 40, "y": 30, "color": RED, "radius": 2}])
    assert colorizer.takes_hints and np.abs(ab_at(out, 40, 30) - parse_color(RED)).max() < 2.5
    automatic = np.asarray(colorizer.colorize(gray_photo()))
    assert np.array_equal(np.asarray(out)[100, 130], automatic[100, 130])  # away from the hint: the automatic colour
    assert not np.array_equal(np.asarray(out)[30, 40], automatic[30, 40])


@pytest.mark.parametrize("change, match", [
    ({"hint_channels": 2}, "input hints has 2 channels: expected 3 (hinted a, b and the mask)"),
    ({"meta": {"hints": None}}, "its inputs include hints, its metadata says nothing of them"),
    ({"meta": {"hints": "the metadata alone"}, "plain": True},
     "its inputs do not include hints, its metadata says it takes them")])
def test_hint_inputs_that_break_the_contract_are_refused(tmp_path, change, match):
    plain = change.pop("plain", False)
    path = good(tmp_path, change["meta"]) if plain else hint_echo(tmp_path, **change)
    with pytest.raises(UserError, match=f"^{re.escape(str(path))}: {re.escape(match)}"):
        engines.load_onnx(path)


def test_an_automatic_onnx_model_refuses_hints_in_one_line(tmp_path):
    from gan_colorizer.colorize.api import Colorizer
    colorizer = Colorizer(engines.load_onnx(good(tmp_path)), render_size=32)
    with pytest.raises(UserError, match=r"^hints: the onnx model takes no hints \(its export has no hints input\): "
                                        r"export a model trained with --hints"):
        colorizer.colorize(color_image(1), hints=[{"x": 1, "y": 1, "color": "#c83c28"}])


def test_three_input_channels_are_refused_in_one_line(tmp_path, capsys):
    nodes, inits = ab_of("first")
    nodes.insert(0, helper.make_node("Slice", ["gray_l", "start", "end", "axis"], ["first"]))
    inits += [const("start", [0], TensorProto.INT64), const("end", [1], TensorProto.INT64),
              const("axis", [1], TensorProto.INT64)]
    path = model(tmp_path, nodes, inits, inputs=[tensor("gray_l", 3)])
    refused(path, capsys, "input gray_l has 3 channels: expected 1 (L)")


def test_an_output_not_named_ab_is_refused_in_one_line(tmp_path, capsys):
    nodes, inits = ab_of(out="colour")
    path = model(tmp_path, nodes, inits, outputs=[tensor("colour", 2)])
    refused(path, capsys, "outputs colour (tensor(float)): expected one output, ab")


def test_an_output_of_three_channels_or_of_integers_is_refused(tmp_path):
    nodes, inits = ab_of()
    nodes[2].input.append("a")  # a, b, a
    path = model(tmp_path, nodes, inits, outputs=[tensor("ab", 3)])
    with pytest.raises(UserError, match="output ab has 3 channels: expected 2"):
        engines.load_onnx(path)
    nodes, inits = ab_of(out="ab_float")
    nodes.append(helper.make_node("Cast", ["ab_float"], ["ab"], to=TensorProto.INT64))
    path = model(tmp_path, nodes, inits, outputs=[tensor("ab", 2, TensorProto.INT64)], name="int.onnx")
    with pytest.raises(UserError, match=r"outputs ab \(tensor\(int64\)\): expected one output, ab \(tensor\(float\)\)"):
        engines.load_onnx(path)


def test_a_graph_failing_at_run_time_is_refused_at_load_not_as_a_traceback(tmp_path, capsys):
    """A tensor onnxruntime cannot allocate (its size overflows: no memory is taken) raises onnxruntime's own
    exception class, which is no RuntimeError; the model is tried once at load, so colorize.py stops in one line."""
    shape = const("shape", [1, 2, 1 << 31, 1 << 31], TensorProto.INT64)
    nodes = [helper.make_node("ConstantOfShape", ["shape"], ["zeros"]),
             helper.make_node("Add", ["zeros", "gray_l"], ["ab"])]
    refused(model(tmp_path, nodes, [shape]), capsys, "fails on a test input")


def test_nan_everywhere_and_a_wrong_shape_everywhere_are_refused_at_load(tmp_path):
    nodes, inits = ab_of("nan_l")
    nodes.insert(0, helper.make_node("Mul", ["gray_l", "nan"], ["nan_l"]))
    path = model(tmp_path, nodes, inits + [const("nan", float("nan"))])
    with pytest.raises(UserError, match="fails on a test input: its ab holds NaN or infinite values"):
        engines.load_onnx(path)
    nodes, inits = ab_of(out="small")  # ab at 4x the input's size: onnxruntime refuses to write it before allocating it
    nodes.append(helper.make_node("Resize", ["small", "", "scales"], ["ab"], mode="nearest"))
    path = model(tmp_path, nodes, inits + [const("scales", [1, 1, 4, 4])], name="big.onnx")
    with pytest.raises(UserError, match=r"its ab would be \(1, 2, 128, 128\) for gray_l \(1, 1, 32, 32\)"):
        engines.load_onnx(path)


def width_gated(tmp_path, bad: str):
    """A model that behaves on inputs up to 32 wide (the load test) and fails on wider ones: with `bad` "nan" its
    ab is NaN there, with "shape" its ab is transposed (H and W swapped)."""
    nodes, inits = ab_of(out="ab0")
    if bad == "shape":
        nodes.append(helper.make_node("Transpose", ["ab0"], ["ab"], perm=[0, 1, 3, 2]))
        return model(tmp_path, nodes, inits)
    nodes += [helper.make_node("Shape", ["gray_l"], ["shape"], start=3),  # the width, as a 1-element tensor
              helper.make_node("Cast", ["shape"], ["width"], to=TensorProto.FLOAT),
              helper.make_node("Sub", ["limit", "width"], ["room"]),
              helper.make_node("Sqrt", ["room"], ["gate"]),  # NaN past the limit
              helper.make_node("Mul", ["ab0", "gate"], ["ab"])]
    return model(tmp_path, nodes, inits + [const("limit", [32.5])])


@pytest.mark.parametrize("bad, reason", [("nan", "its ab holds NaN or infinite values"),
                                         ("shape", "its ab would be (1, 2, 64, 32) for gray_l (1, 1, 32, 64)")])
def test_a_bad_output_fails_that_photo_alone_and_the_folder_goes_on(tmp_path, capsys, bad, reason):
    path = width_gated(tmp_path, bad)
    photos = tmp_path / "photos"
    photos.mkdir()
    color_image(1, size=(40, 40)).save(photos / "square.png")  # seen at 32 x 32
    color_image(2, size=(80, 40)).save(photos / "wide.png")  # seen at 32 x 64
    code = colorize_cli.main([str(photos), "--out", str(tmp_path / "out"), "--checkpoint", str(path),
                              "--image-size", "32", "--batch-size", "1"])
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if line.strip()]
    assert code == 1 and sorted(p.name for p in (tmp_path / "out").iterdir()) == ["square.png"]
    assert errors == [f"error: {photos / 'wide.png'}: colorization failed ({reason})"], captured.err
    assert "1 colorized, 1 failed" in captured.out


def test_a_bad_output_is_a_runtime_error_for_api_callers(tmp_path):
    from gan_colorizer.colorize.api import Colorizer
    colorizer = Colorizer.from_checkpoint(width_gated(tmp_path, "nan"), render_size=32)
    assert colorizer.colorize(color_image(1, size=(40, 40))).size == (40, 40)
    with pytest.raises(RuntimeError, match="its ab holds NaN"):
        colorizer.colorize(color_image(2, size=(80, 40)))


def external_model(folder, location: str):
    """A good model whose multiplier lives in external data at `location` (relative to the model's folder)."""
    from onnx.external_data_helper import set_external_data
    weight = const("w", [0.5])
    set_external_data(weight, location=location, offset=0, length=4)
    weight.ClearField("raw_data")
    weight.data_location = TensorProto.EXTERNAL
    nodes, inits = ab_of("scaled")
    nodes.insert(0, helper.make_node("Mul", ["gray_l", "w"], ["scaled"]))
    return model(folder, nodes, inits + [weight], name=f"m-{abs(hash(location))}.onnx")


def test_external_data_outside_the_models_folder_or_through_links_is_refused(tmp_path):
    folder, outside = tmp_path / "model", tmp_path / "outside"
    folder.mkdir()
    outside.mkdir()
    np.array([0.25], np.float32).tofile(outside / "secret.bin")
    np.array([0.5], np.float32).tofile(folder / "weights.bin")
    os.symlink(outside / "secret.bin", folder / "link.bin")
    os.symlink(outside, folder / "linked-folder")
    assert engines.load_onnx(external_model(folder, "weights.bin")).multiple == 32  # inside: read
    for location in ["../outside/secret.bin", str(outside / "secret.bin"), "link.bin", "linked-folder/secret.bin"]:
        path = external_model(folder, location)
        with pytest.raises(UserError, match=f"^{path}: not an ONNX model .*External data path"):
            engines.load_onnx(path)


def test_sparse_external_data_outside_the_models_folder_is_refused(tmp_path):
    """onnxruntime 1.24-1.26 checked dense initializers only: a sparse one read any file (1.27 refuses it)."""
    from onnx.external_data_helper import set_external_data
    (tmp_path / "model").mkdir()
    np.array([0.25], np.float32).tofile(tmp_path / "secret.bin")
    values = const("w", [0.5])
    set_external_data(values, location="../secret.bin", offset=0, length=4)
    values.ClearField("raw_data")
    values.data_location = TensorProto.EXTERNAL
    sparse = helper.make_sparse_tensor(values, const("w_index", [0], TensorProto.INT64), [1])
    nodes, inits = ab_of("scaled")
    nodes.insert(0, helper.make_node("Mul", ["gray_l", "w"], ["scaled"]))
    graph = helper.make_graph(nodes, "g", [tensor("gray_l", 1)], [tensor("ab", 2)], initializer=inits,
                              sparse_initializer=[sparse])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    for key, value in META.items():
        m.metadata_props.add(key=key, value=value)
    path = tmp_path / "model" / "sparse.onnx"
    onnx.save(m, str(path))
    with pytest.raises(UserError, match=f"^{path}: not an ONNX model"):
        engines.load_onnx(path)


def test_the_onnxruntime_floor_is_the_first_release_that_refuses_those_paths():
    """setup.cfg and requirements-colorize.txt name the same floor, and the installed onnxruntime meets it."""
    import re
    from pathlib import Path

    import onnxruntime
    root = Path(__file__).resolve().parents[1]
    floors = {name: re.findall(r"^\s*onnxruntime>=([\d.]+)", (root / name).read_text(), re.M)
              for name in ("setup.cfg", "requirements-colorize.txt")}
    assert floors == {"setup.cfg": ["1.27"], "requirements-colorize.txt": ["1.27"]}
    assert tuple(map(int, onnxruntime.__version__.split(".")[:2])) >= (1, 27)
