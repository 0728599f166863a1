import json
from pathlib import Path

import pytest
import torch
from conftest import make_photo_folder
from test_images import make_odd_files

from gan_colorizer.config import DataConfig
from gan_colorizer.data.dataset import (
    EpochSampler,
    PhotoDataset,
    prepare_files,
    sample_photos,
    save_split,
    scan_folder,
)
from gan_colorizer.errors import UserError


def test_scan_counts_used_skipped_and_gray_files(tmp_path, caplog):
    expected = make_odd_files(tmp_path / "odd")
    scan = scan_folder(tmp_path / "odd", keep_gray=False)
    bad = {n for n, o in expected.items() if o not in ("ok", "gray")}
    assert {Path(p).name for p in scan.used} == {n for n, o in expected.items() if o == "ok"}
    assert {Path(p).name for p in scan.gray} == {n for n, o in expected.items() if o == "gray"}
    assert {p.split("/")[-1] for p, _ in scan.skipped} == bad
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == len(bad) and all("skipped" in w for w in warnings)


def test_gray_files_are_kept_when_asked(tmp_path):
    make_odd_files(tmp_path / "odd")
    scan = scan_folder(tmp_path / "odd", keep_gray=True)
    assert not scan.gray and any(Path(p).name == "gray.png" for p in scan.used)


def test_folder_without_usable_image_is_a_user_error(tmp_path):
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "a.jpg").write_text("no")
    with pytest.raises(UserError, match="no usable image"):
        scan_folder(tmp_path / "junk", keep_gray=False)
    with pytest.raises(UserError, match="no such folder"):
        scan_folder(tmp_path / "missing", keep_gray=False)
    with pytest.raises(UserError, match="a.jpg: a file, not a folder"):
        scan_folder(tmp_path / "junk" / "a.jpg", keep_gray=False)


def test_split_files_and_counts_are_saved_in_the_run_dir(tmp_path, photo_folder):
    split = prepare_files(DataConfig(data=str(photo_folder), val_fraction=0.25), seed=0)
    line = save_split(split, tmp_path)
    assert (tmp_path / "train_files.txt").read_text().splitlines() == split.train
    assert (tmp_path / "val_files.txt").read_text().splitlines() == split.val
    assert sorted(split.train + split.val) == sorted(str(p) for p in photo_folder.resolve().iterdir())
    summary = json.loads((tmp_path / "data.json").read_text())
    assert summary["train"]["used"] == len(split.train) and summary["val"]["used"] == len(split.val) >= 1
    assert f"{len(split.train)} training and {len(split.val)} validation images" in line


def test_the_data_line_says_where_validation_came_from(tmp_path):
    train, val = make_photo_folder(tmp_path / "train", 4)[0].parent, make_photo_folder(tmp_path / "val", 2)[0].parent
    lines = {}
    for name, cfg in {"given": DataConfig(data=str(train), val_data=str(val)),
                      "share": DataConfig(data=str(train), val_fraction=0.5), "embedded": DataConfig()}.items():
        (tmp_path / name).mkdir()
        lines[name] = save_split(prepare_files(cfg, seed=3), tmp_path / name)
    assert f"training: {train}; validation: {val};" in lines["given"]  # the --val-data folder
    assert f"training: {train}; validation: 0.5 of --data, seed 3;" in lines["share"]
    assert "training: the embedded sample photos; validation: embedded:val;" in lines["embedded"]


def test_embedded_sample_photos_exist_and_are_color():
    train, val = sample_photos()
    assert len(train) >= 6 and len(val) >= 2 and not set(train) & set(val)
    split = prepare_files(DataConfig(), seed=0)
    assert split.embedded and len(split.train) == len(train) and len(split.val) == len(val)


def test_dataset_gives_uint8_crops_determined_by_the_key(photo_folder):
    paths = sorted(photo_folder.iterdir())
    ds = PhotoDataset(paths, 32, train=True)
    a, flip_a = ds[(3, 12345)]
    b, flip_b = ds[(3, 12345)]
    c, _ = ds[(3, 999)]
    assert a.dtype == torch.uint8 and a.shape == (3, 32, 32)
    assert torch.equal(a, b) and flip_a == flip_b and not torch.equal(a, c)
    val = PhotoDataset(paths, 32, train=False)
    assert torch.equal(val[(0, 1)][0], val[(0, 2)][0]) and val[(0, 1)][1] is False


def test_dataset_skips_a_file_broken_after_the_scan(photo_folder, capsys):
    paths = sorted(photo_folder.iterdir())
    ds = PhotoDataset(paths, 32, train=True)
    paths[2].write_bytes(b"corrupted meanwhile")
    pixels, _ = ds[(2, 0)]
    assert pixels.shape == (3, 32, 32)
    assert f"skipped {paths[2]}" in capsys.readouterr().err


def test_sampler_permutes_per_epoch_resumes_mid_epoch_and_shards_ranks():
    s = EpochSampler(10, seed=1, shuffle=True, epoch_size=16)
    s.set_epoch(0)
    epoch0 = list(s)
    assert len(epoch0) == 16 and {i for i, _ in epoch0} == set(range(10))
    s.set_epoch(1)
    assert list(s) != epoch0
    s.set_epoch(0, start=6)
    assert list(s) == epoch0[6:] and len(s) == 10
    ranks = [EpochSampler(10, 1, True, 16, rank=r, world=2) for r in range(2)]
    shards = [list(r) for r in ranks]
    assert sorted(shards[0] + shards[1]) == sorted(epoch0) and not set(shards[0]) & set(shards[1])


def test_saved_file_lists_hold_absolute_paths_even_for_a_relative_data_flag(tmp_path, monkeypatch):
    make_photo_folder(tmp_path / "rel", 4)
    monkeypatch.chdir(tmp_path)
    split = prepare_files(DataConfig(data="rel", val_fraction=0.25), seed=0)
    save_split(split, tmp_path)
    listed = (tmp_path / "train_files.txt").read_text().split()
    assert listed and all(Path(p).is_absolute() and Path(p).is_file() for p in listed)
