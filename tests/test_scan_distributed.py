"""The folder scan under torchrun (gloo, 2 processes): the files not in the cache are checked by both ranks, and
the file lists and the cache are those of a single-process scan."""
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_distributed import _torchrun
from test_images import make_odd_files

from gan_colorizer.config import DataConfig
from gan_colorizer.data.dataset import prepare_files
from gan_colorizer.data.scan import cached_outcomes
pytestmark = pytest.mark.system  # torchrun

SCRIPT = """
import json, sys
from pathlib import Path
from gan_colorizer.data import scan
from gan_colorizer.config import DataConfig
from gan_colorizer.data.dataset import prepare_files
from gan_colorizer.errors import UserError
from gan_colorizer.train import distributed

checked, real = [], scan.check
scan.check = lambda path: checked.append(str(path)) or real(path)
d, _ = distributed.setup("cpu")
split = distributed.on_main_sharing_scan(d, lambda: prepare_files(DataConfig(data=sys.argv[1], val_fraction=0.1), 0))
try:
    distributed.on_main_sharing_scan(d, lambda: prepare_files(DataConfig(data=sys.argv[2]), 0))
    error = None
except UserError as e:
    error = str(e)
out = {"checked": checked, "train": [str(p) for p in split.train], "val": [str(p) for p in split.val],
       "summary": split.summary, "error": error}
Path(sys.argv[3], f"rank{d.rank}.json").write_text(json.dumps(out))
distributed.cleanup()
"""


def tiny_photo_folder(folder: Path, n: int) -> None:
    """n colored 32x32 JPEGs in subfolders of 500 (a few distinct files written over and over: quick to make)."""
    rng = np.random.default_rng(0)
    blobs = []
    for _ in range(16):
        buf = io.BytesIO()
        pixels = rng.integers(0, 256, (1, 1, 3)) + rng.integers(-40, 40, (32, 32, 3))
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buf, "JPEG")
        blobs.append(buf.getvalue())
    for i in range(n):
        sub = folder / f"d{i // 500}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"{i:05d}.jpg").write_bytes(blobs[i % len(blobs)])


def test_two_ranks_share_the_scan_and_get_the_single_process_lists_and_cache(tmp_path, monkeypatch):
    """3,000 files: several rounds of SCAN_ROUND files per rank, each rank checking about half of them."""
    data = tmp_path / "photos"
    tiny_photo_folder(data, 3000)
    make_odd_files(data / "odd")  # unreadable and gray files among them
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "a.jpg").write_bytes(b"not a photo")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache-two"))
    (tmp_path / "scan.py").write_text(SCRIPT)
    result = _torchrun(2, str(tmp_path / "scan.py"), data, tmp_path / "broken", tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    shared_cache = cached_outcomes(data)

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache-one"))
    single = prepare_files(DataConfig(data=str(data), val_fraction=0.1), 0)
    n_files = len(shared_cache)
    assert n_files > 3000 and len(single.train) + len(single.val) < n_files  # some left out
    for rank in ranks:
        assert (rank["train"], rank["val"]) == ([str(p) for p in single.train], [str(p) for p in single.val])
        assert rank["summary"] == ranks[0]["summary"]
        assert "no usable image" in rank["error"]  # a UserError on rank 0 stops every rank in one line
    assert ranks[0]["summary"] == single.summary
    checked = [set(r["checked"]) for r in ranks]
    assert not checked[0] & checked[1]  # each file checked once, by one rank
    assert len(checked[0]) + len(checked[1]) == n_files + 1  # + the broken folder's file
    assert min(len(c) for c in checked) > 0.4 * n_files
    assert cached_outcomes(data) == shared_cache  # the single-process scan's cache
