"""Shards and scan caches from elsewhere, crafted to harm: each case one clear line, nothing written outside --out,
no memory runaway, and what is sane still read. Also what held before and must keep holding (link, device and FIFO
members, PNG bombs)."""
import io
import json
import logging
import re
import resource
import tarfile
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import make_photo_folder
from torch.utils.data import DataLoader

from gan_colorizer.data import scan, shards
from gan_colorizer.data.dataset import scan_files
from gan_colorizer.evaluate.protocols import resolve_data
from gan_colorizer.data.shard_stream import ShardStream, ShardValStream, shard_loader
from gan_colorizer.data.shards import ShardOptions, list_members, shard_counts, write_shards
from test_shards import _jpeg, _tar


def _octal(n: int, width: int) -> bytes:
    return b"%0*o" % (width - 1, n) + b"\0"


def sparse_member(name: str, declared: int, stored: bytes = b"\xff\xd8 junk") -> bytes:
    """The bytes of a GNU sparse member (type S) whose map declares `declared` bytes and stores only `stored`: what
    tarfile expands to `declared` bytes when the member is read."""
    info = tarfile.TarInfo(name)
    info.size, info.type = len(stored), tarfile.GNUTYPE_SPARSE
    header = bytearray(info.tobuf(tarfile.GNU_FORMAT)[:512])
    header[386:398], header[398:410] = _octal(declared - len(stored), 12), _octal(len(stored), 12)
    header[483:495] = _octal(declared, 12)  # the real size
    header[148:156] = b" " * 8
    header[148:156] = b"%06o\0 " % sum(header)
    return bytes(header) + stored + b"\0" * (-len(stored) % 512)


def _tar_bytes(members: list) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _tar_with(path: Path, before: list, raw: bytes, after: list) -> Path:
    """A tar of (name, bytes) members with raw header + data bytes between them."""
    head = _tar_bytes(before).rstrip(b"\0")
    path.write_bytes(head + b"\0" * (-len(head) % 512) + raw + _tar_bytes(after))
    return path


def _stream_all(shard: Path, n: int) -> list:
    stream = ShardStream([shard], [n], 32, 0.5, 0, 0, 0, 1, 1, 1)
    return [p for p, _ in shard_loader(stream, 1, 0, False)]


def _val_all(shard: Path) -> list:
    return [p for p, _ in DataLoader(ShardValStream([shard], 32, 0, 1), batch_size=1)]


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.mark.parametrize("declared", [64 << 20, 4 << 30])
def test_a_sparse_member_declaring_gigabytes_is_one_line_and_never_read(tmp_path, capfd, caplog, monkeypatch,
                                                                          declared):
    shard = _tar_with(tmp_path / "val-000000.tar", [("a.jpg", _jpeg(1))], sparse_member("big.jpg", declared),
                      [("c.jpg", _jpeg(2))])
    assert shard.stat().st_size < 20_000
    peak = _peak_mb()
    members, error = list_members(shard)
    assert [m.key for m in members] == ["a", "c"] and error is None
    assert caplog.text.count("big.jpg: a sparse member") == 1
    monkeypatch.setattr(logging.getLogger("gan_colorizer"), "handlers", [])  # an earlier test's setup_logging
    capfd.readouterr()  # would send the listing's own log lines to stderr too: only the loaders' lines below
    assert len(_stream_all(shard, 2)) == 2 and len(_val_all(shard)) == 2
    err = [line for line in capfd.readouterr().err.splitlines() if line.startswith("warning:")]
    assert len(err) == 2 and all(re.search(r"skipped .*val-000000.tar:big.jpg: a sparse member \([\d,]+ bytes", e)
                                 for e in err)
    assert _peak_mb() - peak < 50  # nothing near the declared size was ever held


def test_a_member_larger_than_its_shard_or_the_limit_is_not_read(tmp_path, capfd, caplog, monkeypatch):
    good = [(f"s{i}.jpg", _jpeg(i)) for i in range(2)]
    info = tarfile.TarInfo("huge.jpg")
    info.size = 3 << 30  # declared; the file ends long before
    cut = _tar_with(tmp_path / "cut.tar", good, info.tobuf(tarfile.GNU_FORMAT) + b"\xff\xd8" * 100, [])
    assert [m.key for m in list_members(cut)[0]] == ["s0", "s1"] and list_members(cut)[1] == "unexpected end of data"
    assert len(_stream_all(cut, 2)) == 2
    assert f"warning: skipped the rest of {cut}: unexpected end of data" in capfd.readouterr().err
    monkeypatch.setattr(shards, "MAX_MEMBER_BYTES", 4000)  # a real shard holding a member over the limit
    whole = _tar(tmp_path / "whole.tar", good + [("big.jpg", b"\xff" * 5000)])
    assert [m.key for m in list_members(whole)[0]] == ["s0", "s1"]
    assert "whole.tar:big.jpg: 5,000 bytes, over the limit of 4,000 for one file" in caplog.text


def test_names_that_leave_the_folder_are_skipped_and_save_images_writes_only_under_out(tmp_path, caplog):
    """evaluate --save-images names each PNG after its sample key: ../, absolute and a/../../ names would write
    anywhere (the writer makes folders and replaces files). They are skipped, one line each."""
    absolute = str(tmp_path / "abs" / "x.jpg")
    hostile = ["../up.jpg", absolute, "a/../../deep.jpg", "b/../../../../../tmp/far.jpg"]
    shard = _tar(tmp_path / "val-000000.tar", [("ok.jpg", _jpeg(0))] + [(n, _jpeg(i + 1)) for i, n in
                                                                        enumerate(hostile)])
    members, names = resolve_data(str(shard))
    assert names == ["ok.jpg"]
    lines = [r.getMessage() for r in caplog.records if "leaves the folder" in r.getMessage()]
    assert len(lines) == 4 and all("\n" not in line for line in lines)
    assert len(_val_all(shard)) == 1


@pytest.mark.slow
def test_evaluate_save_images_on_hostile_shards_writes_nothing_outside_out(tmp_path, tiny_checkpoint):
    from gan_colorizer.evaluate.run import EvalOptions, evaluate
    work = tmp_path / "work"
    work.mkdir()
    hostile = ["../up.jpg", str(tmp_path / "abs.jpg"), "a/../../deep.jpg"]
    shard = _tar(work / "val-000000.tar", [("ok.jpg", _jpeg(0))] + [(n, _jpeg(i + 1)) for i, n in enumerate(hostile)])
    before = {p for p in tmp_path.rglob("*")}
    out = work / "out" / "deeper"
    summary = evaluate(EvalOptions(checkpoints=[str(tiny_checkpoint)], data=str(shard), out=str(out), image_size=32,
                                   num_workers=0, device="cpu", download=False, save_images=True))
    assert summary["n_images"] == 1
    written = {p for p in tmp_path.rglob("*")} - before
    assert written and all(p == out or out in p.parents or p in out.parents for p in written)
    assert sorted(p.name for p in (out / "truth").rglob("*.png")) == ["ok.png"]


def test_a_lying_index_is_one_line_and_the_shards_are_counted_from_their_headers(tmp_path, caplog):
    shard = _tar(tmp_path / "train-000000.tar", [(f"s{i}.jpg", _jpeg(i)) for i in range(4)])
    for claim in ("lots", -3, 2.5, True, None, [1]):
        (tmp_path / "index.json").write_text(json.dumps({"format": shards.FORMAT, "shards": {shard.name: claim}}))
        caplog.clear()
        assert shard_counts([shard]) == [4]
        assert len(caplog.records) == 1 and "index.json unreadable (a shard's count is not a whole" in caplog.text
    (tmp_path / "index.json").write_text(json.dumps({"format": shards.FORMAT, "shards": {shard.name: 1_000_000}}))
    caplog.clear()
    assert shard_counts([shard]) == [4]
    assert [r.getMessage() for r in caplog.records] == [
        f"warning: {tmp_path / 'index.json'} says 1000000 samples for train-000000.tar, more than its "
        f"{shard.stat().st_size} bytes can hold: the shards there are counted from their headers"]
    for junk in ("[1, 2]", '"text"', '{"format": "gan_colorizer-shards", "shards": [4]}'):
        (tmp_path / "index.json").write_text(junk)
        assert shard_counts([shard]) == [4]


def test_writer_training_and_evaluation_count_the_same_photos_under_dunder_folders(tmp_path):
    """__x__/ folders and __a.jpg names: the writer wrote 9, training read 8 and evaluation 7 (webdataset's metadata
    rule against a startswith("__") filter); one rule now, and every photo is a sample."""
    photos = tmp_path / "photos"
    make_photo_folder(photos, 5)
    make_photo_folder(photos / "__x__", 2, start_seed=20)
    make_photo_folder(photos / "n01" / "__y__", 1, start_seed=30)
    (photos / "n01" / "__y__" / "photo_000.jpg").rename(photos / "__a.jpg")
    make_photo_folder(photos / "__z__", 1, start_seed=40)
    (photos / "__z__" / "photo_000.jpg").rename(photos / "__z__" / "__b__.jpg")
    index = write_shards(ShardOptions(data=str(photos), out=str(tmp_path / "shards"), val_fraction=0.0))
    shard = tmp_path / "shards" / "train-000000.tar"
    assert index["shards"] == {"train-000000.tar": 9}
    assert len(_stream_all(shard, 9)) == 9 and len(_val_all(shard)) == 9
    assert len(resolve_data(str(shard))[1]) == 9 and len(list_members(shard)[0]) == 9


def test_links_devices_fifos_and_png_bombs_in_shards_are_never_read_as_photos(tmp_path, capfd):
    """What held, kept: members that are no regular file are no samples; a PNG declaring 400 MP+ is refused from its
    header."""
    from PIL import Image
    buf = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buf, "PNG")
    png = bytearray(buf.getvalue())
    png[16:24] = (30000).to_bytes(4, "big") * 2  # IHDR width and height: 900 MP declared
    png[29:33] = zlib.crc32(bytes(png[12:29])).to_bytes(4, "big")
    path = tmp_path / "val-000000.tar"
    with tarfile.open(path, "w") as tar:
        for kind, extra in ((tarfile.SYMTYPE, {"linkname": "/etc/passwd"}), (tarfile.LNKTYPE, {"linkname": "ok.jpg"}),
                            (tarfile.CHRTYPE, {}), (tarfile.FIFOTYPE, {}), (tarfile.DIRTYPE, {})):
            info = tarfile.TarInfo(f"{kind.decode()}.jpg")
            info.type = kind
            for k, v in extra.items():
                setattr(info, k, v)
            tar.addfile(info)
        for name, data in (("ok.jpg", _jpeg(0)), ("bomb.png", bytes(png))):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    assert [m.key for m in list_members(path)[0]] == ["ok", "bomb"]
    assert len(_val_all(path)) == 1
    assert "bomb.png during validation: too large: 30000x30000" in capfd.readouterr().err


# ------------------------------------------------------------------------------------------------ the scan cache
def _tamper(cache: Path, reasons=None, compress=False) -> None:
    with np.load(cache) as saved:
        arrays = {k: saved[k] for k in saved.files}
    meta = json.loads(arrays["meta"].tobytes())
    if reasons is not None:
        meta["reasons"] = reasons
        arrays["reason"] = np.zeros_like(arrays["reason"])  # every file unreadable, for reason 0
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    (np.savez_compressed if compress else np.savez)(cache, **arrays)


def test_reasons_from_a_tampered_cache_are_printed_as_data(tmp_path, caplog):
    folder = tmp_path / "p"
    paths = make_photo_folder(folder, 3)
    names, stamps = [str(p) for p in paths], [tuple(map(int, (p.stat().st_size, p.stat().st_mtime_ns,
                                                              p.stat().st_ctime_ns))) for p in paths]
    scan_files(names, "p", False, 1, root=folder, stamps=stamps)
    _tamper(scan.cache_file(folder), reasons=["\x1b[2J\x1b[31mowned\nerror: fake line\r"])
    caplog.clear()
    result = scan_files(names, "p", False, 1, root=folder, stamps=stamps)
    lines = [r.getMessage() for r in caplog.records]
    assert len(result.skipped) == 3 and len(lines) == 3
    assert all("\x1b" not in line and "\n" not in line and "\r" not in line and "\\x1b[31mowned\\nerror" in line
               for line in lines)


@pytest.mark.parametrize("damage", ["compressed", "reasons not text"])
def test_a_cache_that_is_not_ours_is_ignored_and_every_file_checked(tmp_path, caplog, damage):
    caplog.set_level(logging.INFO, "gan_colorizer")
    folder = tmp_path / "p"
    paths = make_photo_folder(folder, 3)
    names, stamps = [str(p) for p in paths], [tuple(map(int, (p.stat().st_size, p.stat().st_mtime_ns,
                                                              p.stat().st_ctime_ns))) for p in paths]
    scan_files(names, "p", False, 1, root=folder, stamps=stamps)
    cache = scan.cache_file(folder)
    _tamper(cache, reasons=[{"x": 1}] if damage == "reasons not text" else None, compress=damage == "compressed")
    if damage == "compressed":
        assert any(i.compress_type != zipfile.ZIP_STORED for i in zipfile.ZipFile(cache).infolist())
    caplog.clear()
    result = scan_files(names, "p", False, 1, root=folder, stamps=stamps)
    assert len(result.used) == 3 and "every file is checked again" in caplog.text
