import os

import pytest
import torch

from gan_colorizer import checkpoint as ckpt_io
from gan_colorizer.config import defaults, update
from gan_colorizer.errors import UserError


def test_atomic_save_leaves_the_old_file_intact_when_the_write_fails(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    ckpt_io.save_atomic({"a": torch.ones(2)}, path)

    def broken_save(obj, f):
        f.write(b"partial")
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(UserError, match="No space left on device"):
        ckpt_io.save_atomic({"a": torch.zeros(2)}, path)
    monkeypatch.undo()
    assert torch.equal(torch.load(path, weights_only=True)["a"], torch.ones(2))
    assert os.listdir(tmp_path) == ["last.pt"]  # no temporary file left behind


@pytest.mark.parametrize("content", [b"", b"\x00garbage" * 50])
def test_unreadable_checkpoints_are_one_line_errors(tmp_path, content):
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(UserError) as err:
        ckpt_io.load(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_pickle_that_would_run_code_is_refused_without_running(tmp_path):
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))
    torch.save({"config": {}, "generator": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(UserError, match="not a readable checkpoint"):
        ckpt_io.load(tmp_path / "evil.pt")
    assert not marker.exists()


def test_architecture_mismatch_names_the_field():
    saved, wanted = defaults("pretrain"), update(defaults("pretrain"), {"backbone": "resnet34"})
    with pytest.raises(UserError, match="backbone: checkpoint 'resnet18', this run 'resnet34'"):
        ckpt_io.check_architecture(saved, wanted, "x.pt")


def test_wrapper_prefixes_are_removed():
    state = {"module.layers.0.weight": 1, "_orig_mod.x": 2, "plain": 3}
    assert ckpt_io.strip_wrappers(state) == {"layers.0.weight": 1, "x": 2, "plain": 3}


def test_rng_state_round_trips_through_a_weights_only_file(tmp_path):
    import random
    import numpy as np
    torch.manual_seed(5)
    random.seed(5)
    np.random.seed(5)
    torch.save(ckpt_io.rng_state(), tmp_path / "rng.pt")
    expected = (torch.rand(3), random.random(), np.random.rand())
    ckpt_io.set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    assert torch.equal(torch.rand(3), expected[0]) and random.random() == expected[1]
    assert np.random.rand() == expected[2]
