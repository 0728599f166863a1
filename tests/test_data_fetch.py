"""gan-colorizer-data: the tutorial's selection rule on a list the size of the real archive, and the download path
for real through fastai's own untar_data from a loopback HTTP server (nothing leaves this machine), with its cache,
its checksum refusal, the offline line, links, shards and `list`."""
import functools
import http.server
import json
import os
import sys
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest
from conftest import DEAD_PROXY, color_image

from gan_colorizer.data import fetch
from gan_colorizer.data.cli import main

ARCHIVE_PHOTOS = 20_000  # "about 20,000 images" (the tutorial's notebook); the split only needs >= 10,000


def the_tutorials_code(paths):
    """moein-shariatnia/Deep-Learning, Image Colorization Tutorial, section 1.1, as written there (global numpy)."""
    state = np.random.get_state()
    try:
        np.random.seed(123)
        paths_subset = np.random.choice(paths, 10_000, replace=False)
        rand_idxs = np.random.permutation(10_000)
        return list(paths_subset[rand_idxs[:8000]]), list(paths_subset[rand_idxs[8000:]])
    finally:
        np.random.set_state(state)


def test_the_split_is_the_tutorials_on_a_list_the_size_of_the_archive():
    paths = [f"/data/coco_sample/train_sample/{i:012d}.jpg" for i in range(ARCHIVE_PHOTOS)]
    train, val = fetch.tutorial_split(paths)
    want_train, want_val = the_tutorials_code(np.array(paths))
    assert (train, val) == (want_train, want_val)
    assert (len(train), len(val), len(set(train) | set(val))) == (8000, 2000, 10_000)
    other_seed = fetch.tutorial_split(paths, fetch.TutorialSplit(seed=124))
    assert other_seed[0] != train


def test_too_few_photos_or_a_bad_train_count_is_one_line():
    with pytest.raises(fetch.UserError, match="holds 5 photos, fewer than --subset 10"):
        fetch.tutorial_split([str(i) for i in range(5)], fetch.TutorialSplit(count=10, train=8))
    with pytest.raises(fetch.UserError, match="--train 10: must be between 1 and"):
        fetch.tutorial_split([str(i) for i in range(20)], fetch.TutorialSplit(count=10, train=10))


@pytest.fixture(scope="module")
def coco_archive(tmp_path_factory) -> Path:
    """A coco_sample.tgz laid out as fastai's: coco_sample/train_sample/*.jpg (12 photos)."""
    root = tmp_path_factory.mktemp("served")
    photos = root / "coco_sample" / "train_sample"
    photos.mkdir(parents=True)
    for i in range(12):
        color_image(i, (40, 32)).save(photos / f"{i:012d}.jpg", quality=90)
    with tarfile.open(root / "coco_sample.tgz", "w:gz") as tar:
        tar.add(root / "coco_sample", arcname="coco_sample")
    (root / "broken.tgz").write_bytes((root / "coco_sample.tgz").read_bytes()[:3000])  # a cut-off download
    return root / "coco_sample.tgz"


@pytest.fixture
def server(coco_archive):
    """http://127.0.0.1:PORT/ serving the archive's folder; requests counted."""
    hits = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            hits.append(self.path)

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler,
                                                                                directory=str(coco_archive.parent)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/coco_sample.tgz", hits
    httpd.shutdown()
    httpd.server_close()


def _run(out, url, cache, *extra):
    return main(["coco-sample", "--out", str(out), "--url", url, "--cache", str(cache), "--subset", "10",
                 "--train", "8", *extra])


def test_coco_sample_downloads_through_fastai_and_writes_the_tutorials_split(server, tmp_path, capsys):
    url, hits = server
    out, cache = tmp_path / "split", tmp_path / "fastai"
    assert _run(out, url, cache) == 0
    assert hits == ["/coco_sample.tgz"]
    assert (cache / "archive" / "coco_sample.tgz").is_file()  # fastai's cache layout, under the base it was given
    photos = sorted(str(p) for p in (cache / "data" / "coco_sample" / "train_sample").glob("*.jpg"))
    want_train, want_val = fetch.tutorial_split(photos, fetch.TutorialSplit(count=10, train=8))
    assert (out / "train.txt").read_text().split() == want_train
    assert (out / "val.txt").read_text().split() == want_val
    links = sorted(out.glob("*/*.jpg"))
    assert len(links) == 10 and all(p.is_symlink() and p.resolve().is_file() for p in links)
    assert sorted(os.path.realpath(p) for p in (out / "val").iterdir()) == sorted(want_val)
    record = json.loads((out / "split.json").read_text())
    assert (record["photos"], record["train"], record["val"], record["seed"]) == (12, 8, 2, 123)
    assert "8 training and 2 validation photos of 12" in capsys.readouterr().out

    assert _run(out, DEAD_PROXY + "/coco_sample.tgz", cache, "--seed", "7") == 0  # cached: no network needed
    assert len(hits) == 1
    seven = fetch.tutorial_split(photos, fetch.TutorialSplit(seed=7, count=10, train=8))
    assert seven != (want_train, want_val)
    assert [sorted(os.path.realpath(p) for p in (out / role).iterdir()) for role in ("train", "val")] == \
        [sorted(files) for files in seven]  # seed 123's links are gone
    assert _run(out, DEAD_PROXY + "/coco_sample.tgz", cache, "--no-links") == 0
    assert list(out.glob("*/*.jpg")) == [] and len((out / "train.txt").read_text().split()) == 8
    assert main(["list", "--cache", str(cache), "--out", str(out)]) == 0
    listed = capsys.readouterr().out
    assert f"extracted at {cache / 'data' / 'coco_sample'}; split into {out}: 8 / 2, seed 123, sorted order" in listed
    lines = {line.split()[0]: line for line in listed.splitlines() if line.startswith("  ")}
    assert lines["imagenet-ctest10k"].endswith("; no published figure read")
    assert lines["ade20k-val2k"].endswith("; published figures: DDColor, Kang et al., ICCV 2023 (arXiv 2212.11613v5), "
                                          "Table 1")


def left_behind(*roots: Path) -> list[str]:
    return sorted(str(p) for root in roots if root.exists() for p in [root, *root.rglob("*")])


def test_offline_is_one_line_saying_what_is_missing_where_it_goes_and_its_url_and_leaves_nothing(tmp_path, capsys):
    cache, out = tmp_path / "fastai", tmp_path / "out"
    dead = DEAD_PROXY + "/coco_sample.tgz"  # a closed port: refused at once, as offline
    assert _run(out, dead, cache) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert err.startswith(f"error: coco-sample: coco_sample.tgz is not in {cache / 'archive'} and cannot be "
                          f"downloaded from {dead} (")
    assert err.endswith(f"put it there (or its extracted folder at {cache / 'data' / 'coco_sample'}) and run again")
    assert left_behind(out, cache) == []  # no --out, no fastai config.ini, archive/ or its .lock


def test_offline_keeps_what_the_user_had_and_removes_only_what_it_made(tmp_path, capsys, monkeypatch):
    """$FASTAI_HOME (no --cache) holding the user's config and another archive; an --out that existed, empty."""
    from fastai.data.external import fastai_cfg
    home, out = tmp_path / "home", tmp_path / "out"
    (home / "archive").mkdir(parents=True)
    (home / "config.ini").write_text("[DEFAULT]\ndata = data\narchive = archive\n")
    (home / "archive" / "other.tgz").write_bytes(b"mine")
    out.mkdir()
    monkeypatch.setenv("FASTAI_HOME", str(home))
    fastai_cfg.cache_clear()  # fastai keeps the config of the first $FASTAI_HOME it read
    try:
        assert main(["coco-sample", "--out", str(out), "--url", DEAD_PROXY + "/coco_sample.tgz"]) == 2
    finally:
        fastai_cfg.cache_clear()
    assert f"coco_sample.tgz is not in {home / 'archive'}" in capsys.readouterr().err
    assert left_behind(out, home) == sorted(map(str, [out, home, home / "archive", home / "config.ini",
                                                      home / "archive" / "other.tgz"]))


def test_the_real_address_offline_says_how_large_the_missing_archive_is(tmp_path):
    import urllib.error
    archive = tmp_path / "archive" / "coco_sample.tgz"
    error = fetch.fetch_error(urllib.error.URLError("no network"), fetch.COCO_SAMPLE_URL, archive,
                              tmp_path / "data" / "coco_sample", whole=False, kept=False)
    assert str(error).startswith(f"coco-sample: coco_sample.tgz (3.2 GB) is not in {archive.parent} and cannot be "
                                 f"downloaded from {fetch.COCO_SAMPLE_URL} (")


def test_without_fastai_it_is_one_line_and_nothing_is_left(tmp_path, capsys, monkeypatch):
    for module in ("fastai", "fastai.data", "fastai.data.external", "fastdownload"):
        monkeypatch.setitem(sys.modules, module, None)  # import fails as when not installed
    assert _run(tmp_path / "out", DEAD_PROXY + "/coco_sample.tgz", tmp_path / "fastai") == 2
    err = capsys.readouterr().err.strip()
    assert err == ("error: coco-sample downloads through fastai, which is not installed: pip install "
                   "'gan_colorizer[data]' (or fastai)")
    assert left_behind(tmp_path / "out", tmp_path / "fastai") == []


def test_a_download_that_fails_fastais_checksum_is_refused_and_removed(server, tmp_path, capsys, monkeypatch):
    url, _ = server
    import fastdownload.core
    monkeypatch.setattr(fastdownload.core, "read_checks", lambda module: {url: (1234, "0" * 32)})
    assert _run(tmp_path / "out", url, tmp_path / "fastai") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "size or checksum is not fastai's" in err and "; removed)" in err
    assert left_behind(tmp_path / "out", tmp_path / "fastai") == []


def test_an_archive_that_cannot_be_extracted_is_one_line(server, coco_archive, tmp_path, capsys):
    url, _ = server
    cache = tmp_path / "fastai"
    assert _run(tmp_path / "out", url.replace("coco_sample.tgz", "broken.tgz"), cache) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert err.startswith(f"error: coco-sample: cannot extract {cache / 'archive' / 'broken.tgz'}")
    assert err.endswith("removed: run again") and left_behind(tmp_path / "out", cache) == []
    (cache / "archive").mkdir(parents=True)  # the user's own copy is theirs to remove
    (cache / "archive" / "broken.tgz").write_bytes((coco_archive.parent / "broken.tgz").read_bytes())
    assert _run(tmp_path / "out", url.replace("coco_sample.tgz", "broken.tgz"), cache) == 2
    assert capsys.readouterr().err.strip().endswith("remove it and run again")
    assert (cache / "archive" / "broken.tgz").is_file() and not (tmp_path / "out").exists()


def test_shards_hold_the_tutorials_train_and_val(server, tmp_path):
    url, _ = server
    out = tmp_path / "split"
    assert _run(out, url, tmp_path / "fastai", "--shards") == 0
    index = json.loads((out / "shards" / "index.json").read_text())
    assert index["shards"] == {"train-000000.tar": 8, "val-000000.tar": 2}
    with tarfile.open(out / "shards" / "val-000000.tar") as tar:
        keys = sorted(Path(m.name).stem for m in tar.getmembers())
    assert keys == sorted(Path(p).stem for p in (out / "val.txt").read_text().split())


def test_an_out_folder_holding_other_files_is_refused_before_any_download(tmp_path, capsys):
    (tmp_path / "out" / "train").mkdir(parents=True)
    (tmp_path / "out" / "train" / "mine.jpg").write_bytes(b"x")
    assert _run(tmp_path / "out", DEAD_PROXY + "/coco_sample.tgz", tmp_path / "fastai") == 2
    assert "train/ holds files that are not links (mine.jpg)" in capsys.readouterr().err
    assert not (tmp_path / "fastai").exists()
