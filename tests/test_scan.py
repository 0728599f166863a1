"""The scan cache (checked once per file, keyed by path, size and mtime) and the compact file lists."""
import gc
import io
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import dated_lines, make_photo_folder
from test_images import make_odd_files

import gan_colorizer.data.scan as scan_module
from gan_colorizer.config import DataConfig
from gan_colorizer.data.dataset import EpochSampler, PhotoDataset, prepare_files, scan_folder
from gan_colorizer.data.scan import PathArray, cache_file, cached_outcomes


@pytest.fixture
def cache_home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def checked(monkeypatch) -> list[str]:
    """The names of the files the scan decodes."""
    names, real = [], scan_module.check
    monkeypatch.setattr(scan_module, "check", lambda path: names.append(Path(path).name) or real(path))
    return names


def outcome(scan) -> tuple:
    return sorted(scan.used), sorted(scan.gray), sorted(scan.skipped)


def test_a_second_scan_decodes_nothing_and_gives_the_same_outcome(tmp_path, cache_home, checked, caplog):
    expected = make_odd_files(tmp_path / "odd")
    first = scan_folder(tmp_path / "odd", keep_gray=False)
    assert sorted(checked) == sorted(expected) and cache_file(tmp_path / "odd").is_file()
    checked.clear()
    caplog.clear()
    second = scan_folder(tmp_path / "odd", keep_gray=False)
    assert checked == [] and outcome(second) == outcome(first)
    bad = [r for r in caplog.records if "skipped" in r.getMessage()]
    assert len(bad) == len(first.skipped) > 0  # unreadable files still get their line on every run
    kept = scan_folder(tmp_path / "odd", keep_gray=True)  # the other setting (e.g. another stage) shares the cache
    assert checked == [] and not kept.gray and len(kept.used) == len(first.used) + len(first.gray)


def test_changed_and_new_files_are_checked_again_and_removed_ones_dropped(tmp_path, cache_home, checked):
    paths = make_photo_folder(tmp_path / "p", 6)
    scan_folder(tmp_path / "p", keep_gray=False)
    checked.clear()
    paths[0].write_bytes(b"broken now")
    make_photo_folder(tmp_path / "new", 1)[0].rename(tmp_path / "p" / "zz_new.png")
    paths[1].unlink()
    scan = scan_folder(tmp_path / "p", keep_gray=False)
    assert sorted(checked) == sorted([paths[0].name, "zz_new.png"])
    assert [Path(p).name for p, _ in scan.skipped] == [paths[0].name] and len(scan.used) == 5
    cached = cached_outcomes(tmp_path / "p")
    assert paths[1].name not in cached and cached["zz_new.png"][3:] == (None, False)
    assert cached[paths[0].name][3] == "not an image (format not recognized)" and len(cached) == 6


def test_the_split_is_the_same_cold_and_cached(tmp_path, cache_home):
    make_photo_folder(tmp_path / "p", 12)
    cfg = DataConfig(data=str(tmp_path / "p"), val_fraction=0.25)
    cold, cached = prepare_files(cfg, seed=3), prepare_files(cfg, seed=3)
    assert (cold.train, cold.val, cold.summary) == (cached.train, cached.val, cached.summary)


def test_an_unwritable_cache_leaves_one_warning_and_the_run_goes_on(tmp_path, monkeypatch, caplog):
    (tmp_path / "cache").write_text("a file where the cache folder should be")  # as a read-only disk refuses
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    make_photo_folder(tmp_path / "p", 4)
    scan = scan_folder(tmp_path / "p", keep_gray=False)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(scan.used) == 4 and len(warnings) == 1 and "scan cache not written" in warnings[0]


def test_a_corrupt_cache_is_ignored(tmp_path, cache_home, checked):
    make_photo_folder(tmp_path / "p", 3)
    scan_folder(tmp_path / "p", keep_gray=False)
    good = cache_file(tmp_path / "p").read_bytes()
    with np.load(cache_file(tmp_path / "p")) as saved:
        arrays = dict(saved)
    odd = []
    for change in ({"meta": np.frombuffer(b"[]", np.uint8)}, {"reason": arrays["reason"] - 5}):
        np.savez(data := io.BytesIO(), **{**arrays, **change})
        odd.append(data.getvalue())
    for corrupt in (b"{not json", good[:len(good) // 2], good.replace(b"stamps", b"stampz"), *odd):
        cache_file(tmp_path / "p").write_bytes(corrupt)
        checked.clear()
        assert len(scan_folder(tmp_path / "p", keep_gray=False).used) == 3 and len(checked) == 3


def test_a_dangling_link_is_checked_on_every_run_without_rewriting_the_cache(tmp_path, cache_home, checked):
    make_photo_folder(tmp_path / "p", 2)
    (tmp_path / "p" / "gone.png").symlink_to("nowhere.png")
    first = scan_folder(tmp_path / "p", keep_gray=False)
    written = cache_file(tmp_path / "p").stat().st_mtime_ns
    checked.clear()
    second = scan_folder(tmp_path / "p", keep_gray=False)
    assert checked == ["gone.png"] and outcome(second) == outcome(first) and len(first.skipped) == 1
    assert cache_file(tmp_path / "p").stat().st_mtime_ns == written


def test_path_array_holds_no_object_per_file_and_returns_each_path():
    names = [Path(f"/data/d{i % 7}/img_{i}.jpg") for i in range(1000)] + [Path("/data/caf\u00e9.jpg"),
                                                                       Path(os.fsdecode(b"/data/raw\xff.jpg"))]
    array = PathArray(names)
    assert list(array) == names and array[-1] == names[-1] and len(array) == len(names)
    assert not [o for o in gc.get_referents(*vars(array).values()) if not isinstance(o, type)]
    with pytest.raises(IndexError):
        array[len(names)]


def test_the_dataset_and_sampler_keep_no_per_file_objects(tmp_path):
    paths = make_photo_folder(tmp_path / "p", 5)
    dataset = PhotoDataset(paths, 32, train=True)
    assert isinstance(dataset.paths, PathArray) and list(dataset.paths) == paths
    sampler = EpochSampler(5, seed=0, shuffle=True, epoch_size=8)
    order, seeds = sampler._keys()
    assert order.dtype.kind == "i" and seeds.dtype.kind == "i" and len(order) == 8
    keys = list(sampler)
    assert all(type(i) is int and type(s) is int for i, s in keys)
    sampler.set_epoch(0, start=3)
    assert list(sampler) == keys[3:]


def test_sampler_keys_are_those_runs_saved_before_the_arrays(tmp_path):
    """Resume positions of older runs stay valid: the keys are still drawn as (randperm..., randint) per epoch."""
    import torch
    g = torch.Generator().manual_seed(5 * 1_000_003 + 2)
    order = torch.cat([torch.randperm(7, generator=g) for _ in range(3)])[:16].tolist()
    seeds = torch.randint(0, 2**62, (16,), generator=g).tolist()
    for rank in range(2):
        sampler = EpochSampler(7, seed=5, shuffle=True, epoch_size=16, rank=rank, world=2)
        sampler.set_epoch(2, start=1)
        assert list(sampler) == list(zip(order, seeds))[rank::2][1:]


def test_a_file_skipped_for_its_permissions_is_checked_again_after_a_chmod(tmp_path, cache_home, monkeypatch):
    """A chmod changes the ctime only (not size or mtime). Tests run as root, which reads any file: the denial is
    simulated, the chmod is real."""
    paths = make_photo_folder(tmp_path / "p", 3)
    real = scan_module.check
    monkeypatch.setattr(scan_module, "check", lambda path: ("[Errno 13] Permission denied", False)
                        if Path(path) == paths[0] else real(path))
    assert [Path(p) for p, _ in scan_folder(tmp_path / "p", keep_gray=False).skipped] == [paths[0]]
    monkeypatch.setattr(scan_module, "check", real)
    before = os.stat(paths[0])
    while os.stat(paths[0]).st_ctime_ns == before.st_ctime_ns:  # a coarse filesystem clock may need a moment
        os.chmod(paths[0], 0o600 if os.stat(paths[0]).st_mode & 0o044 else 0o644)
    assert (os.stat(paths[0]).st_mtime_ns, os.stat(paths[0]).st_size) == (before.st_mtime_ns, before.st_size)
    scan = scan_folder(tmp_path / "p", keep_gray=False)
    assert not scan.skipped and len(scan.used) == 3
    assert scan_module._read(cache_file(tmp_path / "p"), str((tmp_path / "p").resolve()))[2].reasons == []  # pruned


def test_off_a_terminal_the_scan_says_how_far_it_is_in_dated_lines(tmp_path, cache_home, caplog):
    make_photo_folder(tmp_path / "p", 3)
    with caplog.at_level("INFO", logger="gan_colorizer"):
        scan_folder(tmp_path / "p", keep_gray=False)
    lines = dated_lines(caplog.messages, "scan")  # a bar drew nothing here (no terminal): before, no line at all
    assert len(lines) == 1 and " scan 3/3 file, " in lines[0] and lines[0].endswith(" file/s")
