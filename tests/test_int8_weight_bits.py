"""int8's weight bits follow the CPU (VNNI or not), are what the file holds, and a file made for VNNI says so where
there is none."""
import logging

import numpy as np
import pytest
from conftest import make_photo_folder

from gan_colorizer import cpu
from gan_colorizer.colorize import engines, int8
from gan_colorizer.colorize.onnx import main as export_main


def test_the_cpus_instruction_sets_come_from_its_flags_line(tmp_path):
    assert cpu.isa("fpu sse avx2 avx512f avx512_vnni avx512_bf16") == ["avx2", "avx512f", "avx512_vnni", "avx512_bf16"]
    assert cpu.has_vnni("avx2 avx_vnni") and cpu.has_vnni("avx512_vnni")
    assert not cpu.has_vnni("fpu avx2 avx512f") and not cpu.has_vnni("")
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: fpu avx2\n")
    assert cpu.proc_field("flags", str(info)) == "fpu avx2" and cpu.proc_field("bogus", str(info)) is None
    assert cpu.proc_field("flags", str(tmp_path / "missing")) is None


def test_where_the_flags_cannot_be_read_vnni_is_unknown_and_auto_picks_7(monkeypatch):
    monkeypatch.setattr(cpu, "proc_field", lambda *a: None)  # no /proc/cpuinfo: not Linux
    assert cpu.has_vnni() is None and int8.weight_bits("auto") == 7
    assert cpu.has_vnni("avx512_vnni")  # a flags line given is still read


def test_a_cpuinfo_that_is_not_text_is_no_flags(tmp_path):
    (tmp_path / "cpuinfo").write_bytes(b"flags\t: \xff\xfe avx2\n")
    assert cpu.proc_field("flags", str(tmp_path / "cpuinfo")) is None


def test_auto_weight_bits_are_8_with_vnni_and_7_without(monkeypatch):
    for vnni, bits in ((True, 8), (False, 7)):
        monkeypatch.setattr(int8, "has_vnni", lambda: vnni)
        assert int8.weight_bits("auto") == bits
    assert int8.weight_bits("7") == 7 and int8.weight_bits("8") == 8


@pytest.fixture(scope="module")
def by_bits(tiny_checkpoint, tmp_path_factory):
    """{bits: the tiny checkpoint's int8 export with those weight bits}."""
    root = tmp_path_factory.mktemp("bits")
    make_photo_folder(root / "calibration", 3, size=(96, 80))
    out = {}
    for bits in (7, 8):
        out[bits] = root / f"g-{bits}.onnx"
        assert export_main(["--checkpoint", str(tiny_checkpoint), "--out", str(out[bits]), "--no-check", "--int8",
                            "--calibration", str(root / "calibration"), "--image-size", "64",
                            "--weight-bits", str(bits), "--max-change", "0"]) == 0
    return out


def test_the_file_holds_weights_of_the_bits_asked_for_and_says_so(by_bits):
    import onnx
    from onnx import numpy_helper
    for bits, path in by_bits.items():
        model = onnx.load(str(path))
        weights = [numpy_helper.to_array(w) for w in model.graph.initializer if w.data_type == onnx.TensorProto.INT8]
        assert len(weights) > 20
        # symmetric per-channel: each channel's largest weight at the top of the range, 64 (7 bits) or 127 (8 bits)
        assert max(int(np.abs(w.astype(int)).max()) for w in weights) == {7: 64, 8: 127}[bits]
        meta = {p.key: p.value for p in model.metadata_props}
        assert f"per-channel {bits}-bit int8 weights" in meta["quantization"]


def test_an_8_bit_file_on_a_cpu_without_vnni_gets_a_note_and_a_7_bit_one_none(by_bits, monkeypatch, caplog):
    for vnni, bits, noted in ((False, 8, True), (True, 8, False), (False, 7, False), (None, 8, False)):
        monkeypatch.setattr(engines, "has_vnni", lambda: vnni)
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            engines.OnnxNetwork(str(by_bits[bits]))
        notes = [r.getMessage() for r in caplog.records if "VNNI" in r.getMessage()]
        assert bool(notes) == noted, (vnni, bits, notes)
        if noted:
            assert str(by_bits[bits]) in notes[0] and "--weight-bits 7" in notes[0]


def test_weight_bits_without_int8_is_refused(tiny_checkpoint, tmp_path, capsys):
    code = export_main(["--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path / "g.onnx"), "--weight-bits", "8"])
    assert code == 2 and "--weight-bits 8: only an --int8 model has int8 weights" in capsys.readouterr().err
    assert not (tmp_path / "g.onnx").exists()


def test_an_int8_file_from_before_the_bits_were_written_is_taken_as_8_bit(by_bits, monkeypatch, caplog):
    import onnx
    monkeypatch.setattr(engines, "has_vnni", lambda: False)
    model = onnx.load(str(by_bits[8]))
    meta = {p.key: p.value for p in model.metadata_props}
    meta["quantization"] = "int8 static QDQ, per-channel int8 weights, uint8 activations, minmax calibration"
    with caplog.at_level(logging.WARNING):
        engines.OnnxNetwork(model.SerializeToString(), meta)
    assert any("8-bit int8 weights" in r.getMessage() and "this model" in r.getMessage() for r in caplog.records)
