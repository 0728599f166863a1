"""Training starts from torchvision's ImageNet body by default (conftest.py's cache holds a random stand-in), stops
before writing anything when it can be neither read nor downloaded, and checkpoints never need it again."""
import os
import subprocess
import sys
import urllib.error

import pytest
import torch
from conftest import DOWNLOADS, TINY, run_dirs_args, run_script

from gan_colorizer.train.cli import main

RESNET18 = "resnet18-f37072fd.pth"


def test_the_suite_can_download_nothing_in_process_or_in_the_processes_it_starts(torch_home):
    assert os.environ["TORCH_HOME"] == str(torch_home)
    with pytest.raises(urllib.error.URLError, match="blocks downloads"):
        torch.hub.load_state_dict_from_url("https://download.pytorch.org/models/not-cached-0123abcd.pth")
    fetch = "import urllib.request; urllib.request.urlopen('https://download.pytorch.org/models/', timeout=10)"
    result = subprocess.run([sys.executable, "-c", fetch], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "Connection refused" in result.stderr, result.stderr[-500:]


def test_offline_without_the_imagenet_file_training_exits_2_with_one_line_and_writes_nothing(
        tmp_path, photo_folder, empty_torch_home, capsys):
    code = main("pretrain", ["--data", str(photo_folder), *TINY, *run_dirs_args(tmp_path, "offline")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert RESNET18 in err and str(empty_torch_home / "hub" / "checkpoints") in err and "--no-pretrained" in err
    assert not (tmp_path / "runs").exists() and not (tmp_path / "checkpoints").exists()


@pytest.mark.slow
def test_a_script_offline_exits_2_and_cannot_reach_the_network(tmp_path, photo_folder, empty_torch_home):
    """A subprocess has no monkeypatched download: conftest's dead proxy is what keeps it off the network."""
    result = run_script("pretrain_generator.py", "--data", photo_folder, *TINY, *run_dirs_args(tmp_path, "s"))
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert RESNET18 in result.stderr and "--no-pretrained" in result.stderr and "Connection refused" in result.stderr
    assert not (tmp_path / "runs").exists() and not (tmp_path / "checkpoints").exists()
    assert not any(empty_torch_home.rglob("*.pth"))


@pytest.mark.slow
def test_checkpoints_carry_every_weight_resume_init_generator_and_colorize_never_read_imagenet(
        tmp_path, photo_folder, monkeypatch, capsys):
    from gan_colorizer.colorize.api import Colorizer
    before = len(DOWNLOADS)
    args = ["--data", str(photo_folder), *TINY, "--max-steps", "1"]
    assert main("pretrain", [*args, *run_dirs_args(tmp_path, "s1")]) == 0  # the default: conftest's cached file
    out = capsys.readouterr().out
    assert "body weights from torchvision ResNet18_Weights.IMAGENET1K_V1" in out and f"{RESNET18} (cached)" in out
    empty = tmp_path / "empty_torch_home"
    monkeypatch.setenv("TORCH_HOME", str(empty))  # from here on there is no ImageNet file, and no download
    ckpt = tmp_path / "checkpoints" / "s1"
    assert main("pretrain", ["--resume", str(ckpt / "last.pt"), "--max-steps", "2"]) == 0
    assert main("gan", [*args, "--init-generator", str(ckpt / "best.pt"), *run_dirs_args(tmp_path, "s2")]) == 0
    out = capsys.readouterr().out
    assert "body weights" not in out and "random init" not in out
    assert Colorizer.from_checkpoint(ckpt / "best.pt", device="cpu") is not None
    assert len(DOWNLOADS) == before and not empty.exists()


@pytest.mark.slow
def test_no_pretrained_trains_a_random_body_and_says_so(tmp_path, photo_folder, empty_torch_home, capsys):
    assert main("pretrain", ["--data", str(photo_folder), *TINY, "--max-steps", "1", "--no-pretrained",
                             *run_dirs_args(tmp_path, "r")]) == 0
    assert "random init (--no-pretrained)" in capsys.readouterr().out and not empty_torch_home.exists()
    saved = torch.load(tmp_path / "checkpoints" / "r" / "last.pt", weights_only=False)
    assert saved["config"]["model"]["pretrained"] is False
