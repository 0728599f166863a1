import errno
import io
import os

import pytest
import torch

from gan_colorizer import checkpoint as ckpt_io

from gan_colorizer.models.registry import load_generator
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


class NearlyFullDisk(io.RawIOBase):
    """A file on a disk with `room` bytes left: writes fill it, then fail with ENOSPC, as a real disk does."""

    def __init__(self, fd, room):
        self.fd, self.room = fd, room

    def writable(self):
        return True

    def write(self, b):
        if self.room <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        n = os.write(self.fd, bytes(b[:self.room]))
        self.room -= n
        return n

    def close(self):
        if not self.closed:
            os.close(self.fd)
        super().close()


def test_a_real_full_disk_is_a_one_line_error_not_a_zip_writer_traceback(tmp_path, monkeypatch):
    """torch.save itself (not a stand-in) on a full disk: its zip writer raises RuntimeError("unexpected pos ..."),
    with the ENOSPC behind it as context. That is what CI met when /tmp filled up; a tmpfs of 2 MB gives the same."""
    path = tmp_path / "last.pt"
    ckpt_io.save_atomic({"a": torch.ones(2)}, path)
    monkeypatch.setattr(os, "fdopen", lambda fd, mode: io.BufferedWriter(NearlyFullDisk(fd, room=50_000)))
    with pytest.raises(UserError) as err:
        ckpt_io.save_atomic({"a": torch.zeros(1_000_000)}, path)
    assert str(err.value) == f"cannot write checkpoint {path}: No space left on device; the previous file is intact"
    monkeypatch.undo()
    assert torch.equal(torch.load(path, weights_only=True)["a"], torch.ones(2))
    assert os.listdir(tmp_path) == ["last.pt"]


@pytest.mark.parametrize("content, reason", [
    (b"", "empty file"),
    (b"\x00garbage" * 50, "not a file torch.save wrote: it starts with b'\\x00gar'"),
    (b"hi\n", "not a file torch.save wrote: it starts with b'hi\\n'"),
    (b"PK\x03\x04" + b"\x00" * 100, "truncated or damaged: PytorchStreamReader failed reading zip archive"),
])
def test_unreadable_checkpoints_are_one_line_errors(tmp_path, content, reason):
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(UserError) as err:
        ckpt_io.load(path)
    assert str(err.value).startswith(f"{path}: not a readable checkpoint ({reason}") and "\n" not in str(err.value)


def test_an_onnx_export_given_as_a_checkpoint_is_named_as_one(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"\x08\x08\x12\x07pytorch" + b"\x00" * 50)  # an ONNX protobuf's first fields
    with pytest.raises(UserError, match=r"model.onnx: not a readable checkpoint \(an ONNX export: this tool reads "
                                        r"PyTorch checkpoints"):
        ckpt_io.load(path)


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


@pytest.mark.parametrize("names", [
    ["module.layers.0.weight", "module.head.bias"],  # DistributedDataParallel
    ["_orig_mod.layers.0.weight", "_orig_mod.head.bias"],  # torch.compile
    ["module._orig_mod.layers.0.weight", "module._orig_mod.head.bias"],  # DDP around a compiled net
    ["_orig_mod.module.layers.0.weight", "_orig_mod.module.head.bias"],  # compile around DDP
    ["layers.0._orig_mod.weight", "head.bias"],  # a compiled submodule
])
def test_wrapper_segments_are_removed(names):
    state = dict(zip(names, (1, 2)))
    assert ckpt_io.strip_wrappers(state) == {"layers.0.weight": 1, "head.bias": 2}


def test_names_that_only_contain_module_are_left_alone():
    state = {"submodule.weight": 1, "module_norm.bias": 2}
    assert ckpt_io.strip_wrappers(state) == state
    assert ckpt_io.strip_wrappers({"module.a": 1}, expected=["module.a"]) == {"module.a": 1}


def test_a_shared_wrapper_prefix_is_removed_only_when_it_makes_the_names_fit():
    state = {"generator.layers.0.weight": 1, "generator.head.bias": 2}
    fits = ckpt_io.strip_wrappers(state, expected=["layers.0.weight", "head.bias"])
    assert fits == {"layers.0.weight": 1, "head.bias": 2}
    assert ckpt_io.strip_wrappers(state, expected=["other.weight"]) == state


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


class RunsACommand:
    def __reduce__(self):
        return (os.system, ("true",))


@pytest.mark.parametrize("reader", ["checkpoint", "weight file"])
def test_a_file_torch_refuses_is_one_line_without_torchs_advice_to_load_it_unsafely(tmp_path, reader):
    """torch's text says to retry with weights_only=False, which would run the file's code: never repeated."""
    from gan_colorizer.weights import load_state_dict_file
    path = tmp_path / "evil.pt"
    torch.save({"config": {}, "generator": {"w": RunsACommand()}}, path)
    with pytest.raises(UserError) as e:
        ckpt_io.load(path) if reader == "checkpoint" else load_state_dict_file(path, "LPIPS weights")
    message = str(e.value)
    assert message.startswith(f"{path}: not a readable") and "\n" not in message
    assert "system" in message and "weights-only load refuses" in message  # what it holds, and that nothing ran
    assert "weights_only" not in message and "False" not in message


@pytest.mark.parametrize("model", ["default", "unet-classification"])
def test_a_generator_built_from_a_checkpoint_runs_no_forward_pass_and_draws_no_random_number(model, tiny_checkpoint,
                                                                                          tmp_path):
    """Its layout is in the config and its weights in the file: nothing to trace, nothing to initialise."""
    from gan_colorizer.models.registry import build_generator
    path = tiny_checkpoint
    if model != "default":
        cfg = update(defaults("pretrain"), {"generator": "unet", "unet_filters": 8, "head": "classification"})
        path = tmp_path / "unet.pt"
        ckpt_io.save_atomic({"format_version": 1, "stage": "pretrain", "config": cfg.to_dict(),
                             "generator": build_generator(cfg.model, load_pretrained=False).state_dict()}, path)
    forwards = []
    hook = torch.nn.modules.module.register_module_forward_hook(lambda m, i, o: forwards.append(type(m).__name__))
    rng = torch.get_rng_state()
    try:
        generator, _, ckpt = load_generator(path)
    finally:
        hook.remove()
    assert forwards == []  # fastai's DynamicUnet ran two dummy passes through the ResNet body to find its layout
    assert torch.equal(torch.get_rng_state(), rng)  # nor were weights drawn that the file's replace
    state = generator.state_dict()
    assert state.keys() == ckpt["generator"].keys()
    assert all(torch.equal(state[k], v) for k, v in ckpt["generator"].items())
