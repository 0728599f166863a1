"""A week-long run must not be lost: kills, signals, NaN steps, failing disks, bad checkpoints and bad data.

The runs use the pix2pix U-Net with 8 filters at 256 px (fast on CPU, and its dropout makes resume depend on
the RNG stream too) for 3 steps per epoch. Killed runs are real CLI processes; resumes run in-process.
"""
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import ROOT, make_photo_folder, run_dirs_args
from test_training import checkpoint_weights, scalar_values

from gan_colorizer import checkpoint as ckpt_io

from gan_colorizer.models.registry import load_generator
from gan_colorizer.checkpoint import KILL_AT_ENV, KILL_SIGNAL_ENV
from gan_colorizer.data.dataset import PhotoDataset
from gan_colorizer.train import loop as training
from gan_colorizer.train import setup as train_setup
from gan_colorizer.train import steps as steps_module
from gan_colorizer.train.cli import main

FAST = ["--generator", "unet", "--unet-filters", "8", "--image-size", "256", "--batch-size", "2", "--epoch-size", "6",
        "--val-fraction", "0.2", "--num-workers", "0", "--amp", "off", "--log-every", "1", "--image-every", "100"]
GAN = ["--d-filters", "8"]
STEPS = 7  # two epochs of 3 steps and one step into the third


def cli(script, *args, env=None):
    return [sys.executable, str(ROOT / script), *map(str, args)], dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))


def run_cli(script, *args, env=None) -> subprocess.CompletedProcess:
    command, full_env = cli(script, *args, env=env)
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300, env=full_env)


def gan_args(tmp, name, data, *extra):
    return ["--data", data, *FAST, *GAN, "--max-steps", STEPS, "--checkpoint-every", 2, *run_dirs_args(tmp, name),
            *extra]


def assert_same_weights(a, b):
    wa, wb = checkpoint_weights(a), checkpoint_weights(b)
    assert set(wa) == set(wb) and any(k.startswith("discriminator.") for k in wa)
    assert [k for k in wa if not torch.equal(wa[k], wb[k])] == []


def error_lines(err: str) -> list[str]:
    assert "Traceback" not in err
    return [line for line in err.splitlines() if line.startswith("error:")]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted stage-2 run of STEPS steps from the command line, shared by the kill and signal tests."""
    tmp = tmp_path_factory.mktemp("reference")
    data = tmp / "photos"
    make_photo_folder(data, 6)
    result = run_cli("train_gan.py", *gan_args(tmp, "ref", data))
    assert result.returncode == 0, result.stderr
    return tmp, data


def _resume(last, *extra) -> int:
    return main("gan", ["--resume", str(last), "--max-steps", str(STEPS), *extra])


@pytest.mark.system
def test_sigkill_mid_epoch_resumes_to_the_same_weights(reference, tmp_path):
    """Killed during step 5 (after the update, before its bookkeeping): last.pt of step 4 is mid-epoch."""
    ref, data = reference
    result = run_cli("train_gan.py", *gan_args(tmp_path, "k", data), env={KILL_AT_ENV: "step:5"})
    assert result.returncode == -signal.SIGKILL
    last = tmp_path / "checkpoints" / "k" / "last.pt"
    ckpt = ckpt_io.load(last)
    assert (ckpt["step"], ckpt["epoch"], ckpt["batch_in_epoch"]) == (4, 1, 1)
    time.sleep(1.1)  # event files are named by the second they start in: keep the resumed run's name after the first
    assert _resume(last) == 0
    assert ckpt_io.load(last)["step"] == STEPS
    assert_same_weights(last, ref / "checkpoints" / "ref" / "last.pt")
    losses = scalar_values(tmp_path / "runs" / "k", "loss/g_l1")
    assert [s for s, _ in losses] == list(range(1, STEPS + 1))  # what the killed run logged past step 4 is purged
    assert losses == scalar_values(ref / "runs" / "ref", "loss/g_l1")


@pytest.mark.system
def test_sigkill_during_a_checkpoint_write_keeps_the_previous_file(reference, tmp_path, capsys):
    """Killed with last.pt of step 4 half written: the epoch-end file of step 3 is intact and the run goes on."""
    ref, data = reference
    result = run_cli("train_gan.py", *gan_args(tmp_path, "w", data), env={KILL_AT_ENV: "save:4"})
    assert result.returncode == -signal.SIGKILL
    folder = tmp_path / "checkpoints" / "w"
    partial = list(folder.glob(".last.pt.*.tmp"))
    assert len(partial) == 1 and 0 < partial[0].stat().st_size < (folder / "last.pt").stat().st_size
    assert ckpt_io.load(folder / "last.pt")["step"] == 3
    assert _resume(folder / "last.pt") == 0
    assert "removed the temporary file" in capsys.readouterr().out and not list(folder.glob(".*.tmp"))
    assert_same_weights(folder / "last.pt", ref / "checkpoints" / "ref" / "last.pt")


@pytest.mark.system
def test_sigint_finishes_the_step_writes_last_pt_and_exits_130(reference, tmp_path, monkeypatch, capsys):
    ref, data = reference
    monkeypatch.setenv(KILL_AT_ENV, "step:5")
    monkeypatch.setenv(KILL_SIGNAL_ENV, "SIGINT")
    before = signal.getsignal(signal.SIGINT)
    assert main("gan", list(map(str, gan_args(tmp_path, "i", data)))) == 130
    assert signal.getsignal(signal.SIGINT) is before  # handlers restored for in-process callers
    last = tmp_path / "checkpoints" / "i" / "last.pt"
    err = capsys.readouterr().err
    assert f"stopped by SIGINT at step 5 in epoch 2/20; {last} holds step 5: continue with --resume {last}" in err
    assert ckpt_io.load(last)["step"] == 5
    monkeypatch.delenv(KILL_AT_ENV)
    assert _resume(last) == 0
    assert_same_weights(last, ref / "checkpoints" / "ref" / "last.pt")


@pytest.mark.system
def test_a_stop_in_the_first_epoch_and_its_resume_name_the_epoch_the_progress_named(photo_folder, tmp_path,
                                                                                    monkeypatch, capsys):
    """Epochs are counted from 1 in every message: the progress lines, the stop, the resume, the epoch ends."""
    monkeypatch.setenv(KILL_AT_ENV, "step:2")
    monkeypatch.setenv(KILL_SIGNAL_ENV, "SIGINT")
    args = ["--data", str(photo_folder), *FAST, "--epochs", "2", *run_dirs_args(tmp_path, "e")]
    assert main("pretrain", args) == 130
    out, err = capsys.readouterr()
    assert [progress_epoch(line) for line in out.splitlines() if progress_epoch(line)] == ["epoch 1/2"] * 2
    last = tmp_path / "checkpoints" / "e" / "last.pt"
    assert f"stopped by SIGINT at step 2 in epoch 1/2; {last} holds step 2" in err
    monkeypatch.delenv(KILL_AT_ENV)
    assert main("pretrain", ["--resume", str(last)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert f"resumed {last} at step 2 in epoch 1/2 (2 steps into it)" in out
    assert [progress_epoch(line) for line in out if progress_epoch(line)] == ["epoch 1/2"] + ["epoch 2/2"] * 3
    assert [line.split(":")[0] for line in out if line.startswith("epoch ")] == ["epoch 1/2 step 3", "epoch 2/2 step 6"]


def progress_epoch(line: str) -> str | None:
    """'epoch 1/2' of a dated progress line (what a log file shows off a terminal), else None."""
    found = re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (epoch \d+/\d+) step ", line)
    return found and found.group(1)


@pytest.mark.system
def test_sigterm_stops_cleanly_with_exit_143(photo_folder, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(KILL_AT_ENV, "step:2")
    monkeypatch.setenv(KILL_SIGNAL_ENV, "SIGTERM")
    before = signal.getsignal(signal.SIGTERM)
    assert main("pretrain", ["--data", str(photo_folder), *FAST, *run_dirs_args(tmp_path, "t")]) == 143
    assert signal.getsignal(signal.SIGTERM) is before
    assert "stopped by SIGTERM at step 2 in epoch 1/20" in capsys.readouterr().err
    assert ckpt_io.load(tmp_path / "checkpoints" / "t" / "last.pt")["step"] == 2


@pytest.mark.system
def test_a_signal_during_validation_cuts_it_short_and_writes_no_partial_best(photo_folder, tmp_path, monkeypatch,
                                                                             capsys):
    original = training.validation_sums

    def interrupted_validation(*args):
        os.kill(os.getpid(), signal.SIGINT)  # as if Ctrl-C came while the validation set is being scored
        return original(*args)
    monkeypatch.setattr(training, "validation_sums", interrupted_validation)
    assert main("pretrain", ["--data", str(photo_folder), *FAST, *run_dirs_args(tmp_path, "v")]) == 130
    folder = tmp_path / "checkpoints" / "v"
    ckpt = ckpt_io.load(folder / "last.pt")
    assert (ckpt["step"], ckpt["epoch"], ckpt["metrics"]) == (3, 1, {}) and not (folder / "best.pt").exists()
    assert "stopped by SIGINT at step 3 in epoch 1/20" in capsys.readouterr().err  # during epoch 1's validation


@pytest.mark.parametrize("where", ["last step", "validation"])
@pytest.mark.system
def test_an_epoch_whose_validation_a_stop_prevented_is_validated_first_on_resume(where, photo_folder, tmp_path,
                                                                                monkeypatch, capsys):
    """A stop on an epoch's last step (or during its validation) leaves that epoch unscored: the resumed run scores it
    before its next step, so best.pt weighs every epoch."""
    if where == "last step":
        monkeypatch.setenv(KILL_AT_ENV, "step:3")  # 3 steps an epoch
        monkeypatch.setenv(KILL_SIGNAL_ENV, "SIGTERM")
    else:
        original = training.validation_sums
        monkeypatch.setattr(training, "validation_sums", lambda *a: (os.kill(os.getpid(), signal.SIGTERM),
                                                                     original(*a))[1])
    args = ["--data", str(photo_folder), *FAST, "--epochs", "2", *run_dirs_args(tmp_path, "u")]
    assert main("pretrain", args) == 143
    capsys.readouterr()
    last = tmp_path / "checkpoints" / "u" / "last.pt"
    assert ckpt_io.load(last)["unvalidated"] is True
    monkeypatch.undo()
    time.sleep(1.1)  # event files are named by the second they start in
    assert main("pretrain", ["--resume", str(last)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in out if line.startswith("epoch ")] == ["epoch 1/2 step 3", "epoch 2/2 step 6"]
    assert [step for step, _ in scalar_values(tmp_path / "runs" / "u", "val/l1")] == [3, 6]
    assert ckpt_io.load(last)["unvalidated"] is False


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
@pytest.mark.system
def test_signal_to_the_process_group_with_workers_stops_without_traceback(reference, tmp_path, sig):
    """As a terminal's Ctrl-C or a cluster's SIGTERM: the workers get the signal too."""
    _, data = reference
    args = ["--data", data, *FAST, "--num-workers", "2", "--max-steps", 10000, *run_dirs_args(tmp_path, "g")]
    command, env = cli("pretrain_generator.py", *args)
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        for line in proc.stdout:
            if line.startswith("epoch 1/"):
                time.sleep(0.2)  # into the next epoch's steps
                os.killpg(proc.pid, sig)
                break
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 128 + sig, err
    assert "Traceback" not in err and "Exception ignored" not in err
    assert f"stopped by {signal.Signals(sig).name} at step" in err
    assert ckpt_io.load(tmp_path / "checkpoints" / "g" / "last.pt")["step"] >= 3


# --- NaN / Inf steps -------------------------------------------------------------------------------------------

def poison(monkeypatch, name: str, steps: set):
    """Make the step functions' `name` loss NaN on the given calls (one call per step with one micro-batch)."""
    original, calls = getattr(steps_module, name), {"n": 0}

    def nan_on_some_calls(*args, **kwargs):
        calls["n"] += 1
        total, parts = original(*args, **kwargs)
        if calls["n"] in steps:
            total, parts = total * float("nan"), {k: v * float("nan") for k, v in parts.items()}
        return total, parts
    monkeypatch.setattr(steps_module, name, nan_on_some_calls)


def adam_steps(ckpt, net="g") -> int:
    """How many updates Adam made (its per-parameter step count)."""
    return int(next(iter(ckpt["optimizers"][net]["state"].values()))["step"])


@pytest.mark.slow
def test_a_nan_step_is_skipped_counted_and_training_goes_on(photo_folder, tmp_path, monkeypatch, capsys):
    poison(monkeypatch, "reconstruction", {2})
    assert main("pretrain", ["--data", str(photo_folder), *FAST, "--max-steps", "4", *run_dirs_args(tmp_path, "n")]) == 0
    ckpt = ckpt_io.load(tmp_path / "checkpoints" / "n" / "last.pt")
    assert ckpt["step"] == 4 and ckpt["skipped_steps"] == 1 and adam_steps(ckpt) == 3
    assert all(torch.isfinite(w).all() for w in ckpt["generator"].values())
    assert "step 2: non-finite loss or gradient (g_l1 nan): step skipped" in capsys.readouterr().err
    skipped = dict(scalar_values(tmp_path / "runs" / "n", "train/skipped_steps"))
    assert skipped[1] == 0 and skipped[2] == 1 and skipped[4] == 1
    assert [s for s, _ in scalar_values(tmp_path / "runs" / "n", "loss/g_l1")] == [1, 3, 4]  # no NaN in the curve


@pytest.mark.slow
def test_too_many_bad_steps_in_a_row_stop_with_exit_3_and_keep_the_last_good_checkpoint(photo_folder, tmp_path,
                                                                                        monkeypatch, capsys):
    poison(monkeypatch, "reconstruction", set(range(3, 100)))
    args = ["--data", str(photo_folder), *FAST, "--checkpoint-every", "2", "--max-bad-steps", "3", "--max-steps", "50"]
    assert main("pretrain", [*args, *run_dirs_args(tmp_path, "d")]) == 3
    last = tmp_path / "checkpoints" / "d" / "last.pt"
    [line] = error_lines(capsys.readouterr().err)
    assert "training diverged: 3 steps in a row (steps 3-5)" in line and "g_l1 nan" in line
    assert f"{last} (step 2) is the last good state" in line
    ckpt = ckpt_io.load(last)  # the epoch end at step 3 fell in the bad streak: not written
    assert ckpt["step"] == 2 and all(torch.isfinite(w).all() for w in ckpt["generator"].values())


@pytest.mark.parametrize("phase, d_updates, g_updates", [("discriminator_loss", 1, 1), ("generator_loss", 2, 1)])
@pytest.mark.slow
def test_gan_nan_in_the_d_phase_skips_both_nets_in_the_g_phase_only_g(photo_folder, tmp_path, monkeypatch,
                                                                     phase, d_updates, g_updates):
    poison(monkeypatch, phase, {1})
    args = ["--data", str(photo_folder), *FAST, *GAN, "--max-steps", "2", *run_dirs_args(tmp_path, "g")]
    assert main("gan", args) == 0
    ckpt = ckpt_io.load(tmp_path / "checkpoints" / "g" / "last.pt")
    assert ckpt["skipped_steps"] == 1
    assert (adam_steps(ckpt, "d"), adam_steps(ckpt, "g")) == (d_updates, g_updates)


def test_fp16_overflow_steps_are_skipped_and_lower_the_scale():
    from gan_colorizer.runtime import Runtime, Scalers
    rt = Runtime("cpu", "off", channels_last=False)
    rt.scaler = Scalers("cpu", enabled=True, init_scale=2.0**16)  # what --amp fp16 uses on CUDA
    net = torch.nn.Linear(3, 1)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    before = [p.detach().clone() for p in net.parameters()]
    rt.backward(net(torch.ones(1, 3)).sum() * 1e35)  # finite loss, gradients overflow once scaled
    assert rt.step(opt, rt.finite_gradients(opt)) is False
    assert rt.scaler["g"].get_scale() == 2.0**15 and all(torch.equal(a, b) for a, b in zip(before, net.parameters()))
    opt.zero_grad()
    rt.backward(net(torch.ones(1, 3)).sum())
    assert rt.step(opt, rt.finite_gradients(opt)) is True
    assert not torch.equal(before[0], net.weight)


# --- failing disks ---------------------------------------------------------------------------------------------

def failing_save(monkeypatch, fail_on: set, error=OSError(28, "No space left on device")):
    """torch.save that writes half a file, then fails with `error`, on the given calls."""
    original, calls = torch.save, {"n": 0}

    def save(obj, f, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] in fail_on:
            f.write(b"partial")
            raise error
        return original(obj, f, *args, **kwargs)
    monkeypatch.setattr(torch, "save", save)


@pytest.mark.slow
def test_a_failed_checkpoint_write_is_retried_and_training_goes_on(photo_folder, tmp_path, monkeypatch, capsys):
    failing_save(monkeypatch, {2})
    args = ["--data", str(photo_folder), *FAST, "--val-fraction", "0", "--checkpoint-every", "1", "--max-steps", "3"]
    assert main("pretrain", [*args, *run_dirs_args(tmp_path, "r")]) == 0
    folder = tmp_path / "checkpoints" / "r"
    err = capsys.readouterr().err
    assert f"cannot write checkpoint {folder / 'last.pt'}: No space left on device; the previous file is intact" in err
    assert "training goes on" in err
    assert ckpt_io.load(folder / "last.pt")["step"] == 3 and not list(folder.glob(".*.tmp"))


@pytest.mark.slow
def test_a_disk_that_stays_full_stops_the_run_with_last_pt_intact(photo_folder, tmp_path, monkeypatch, capsys):
    failing_save(monkeypatch, set(range(2, 100)))
    args = ["--data", str(photo_folder), *FAST, "--val-fraction", "0", "--checkpoint-every", "1", "--max-steps", "9"]
    assert main("pretrain", [*args, *run_dirs_args(tmp_path, "f")]) == 2
    [line] = error_lines(capsys.readouterr().err)
    folder = tmp_path / "checkpoints" / "f"
    assert line == f"error: cannot write checkpoint {folder / 'last.pt'}: No space left on device; the previous file is intact"
    monkeypatch.undo()
    assert ckpt_io.load(folder / "last.pt")["step"] == 1 and not list(folder.glob(".*.tmp"))


@pytest.mark.slow
def test_a_folder_that_cannot_be_written_is_a_one_line_error(photo_folder, tmp_path, monkeypatch, capsys):
    import tempfile

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")  # what chmod -w gives (root ignores chmod, hence the patch)
    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    args = ["--data", str(photo_folder), *FAST, "--max-steps", "1", *run_dirs_args(tmp_path, "p")]
    assert main("pretrain", args) == 2
    [line] = error_lines(capsys.readouterr().err)
    assert "cannot write checkpoint" in line and "Permission denied; no earlier file exists" in line


@pytest.mark.slow
def test_a_full_run_folder_costs_the_logs_not_the_run(photo_folder, tmp_path, monkeypatch, capsys):
    from torch.utils.tensorboard import SummaryWriter

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(SummaryWriter, "add_scalar", full)
    assert main("pretrain", ["--data", str(photo_folder), *FAST, "--max-steps", "2", *run_dirs_args(tmp_path, "tb")]) == 0
    err = capsys.readouterr().err
    assert err.count("cannot write to") == 1 and "training and checkpoints go on" in err
    assert ckpt_io.load(tmp_path / "checkpoints" / "tb" / "last.pt")["step"] == 2


# --- loading checkpoints ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def stage1_last(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("stage1")
    data = tmp / "photos"
    make_photo_folder(data, 4)
    assert main("pretrain", ["--data", str(data), *FAST, "--max-steps", "1", *run_dirs_args(tmp, "s")]) == 0
    return tmp / "checkpoints" / "s" / "last.pt", data


class RunsCode:
    marker = None

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def bad_checkpoint(kind: str, good, folder):
    path = folder / f"{kind}.pt"
    if kind == "truncated":
        path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    elif kind == "random":
        path.write_bytes(os.urandom(4096))
    elif kind == "code":
        RunsCode.marker = folder / "code-ran"
        torch.save({"config": {}, "generator": {"w": RunsCode()}}, path)
    elif kind == "newer":
        torch.save({**torch.load(good, weights_only=True), "format_version": 99}, path)
    return path


ENTRY_POINTS = {
    "resume": lambda path, data, tmp: main("pretrain", ["--resume", str(path)]),
    "init-generator": lambda path, data, tmp: main("gan", ["--init-generator", str(path), "--data", str(data), *FAST,
                                                           *run_dirs_args(tmp, "x")]),
    "load_generator": lambda path, data, tmp: load_generator(path),
}


@pytest.mark.parametrize("entry", ENTRY_POINTS)
@pytest.mark.parametrize("kind", ["truncated", "random", "code", "newer"])
def test_unusable_checkpoints_are_one_line_errors_at_every_entry_point(stage1_last, tmp_path, capsys, kind, entry):
    good, data = stage1_last
    path = bad_checkpoint(kind, good, tmp_path)
    if entry == "load_generator":
        with pytest.raises(ckpt_io.UserError) as e:
            ENTRY_POINTS[entry](path, data, tmp_path)
        message = str(e.value)
    else:
        assert ENTRY_POINTS[entry](path, data, tmp_path) == 2
        [message] = error_lines(capsys.readouterr().err)
    assert str(path) in message and "\n" not in message
    assert not (tmp_path / "code-ran").exists()


def test_another_architecture_names_the_fields_at_every_entry_point(stage1_last, tmp_path, capsys):
    good, data = stage1_last
    assert main("pretrain", ["--resume", str(good), "--unet-filters", "16"]) == 2
    assert main("gan", ["--init-generator", str(good), "--data", str(data), *FAST, "--unet-filters", "16",
                        *run_dirs_args(tmp_path, "a")]) == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 2 and all("unet_filters: checkpoint 8, this run 16" in line for line in lines)


def test_resume_from_best_pt_or_a_damaged_last_pt_is_one_line(stage1_last, tmp_path, capsys):
    good, _ = stage1_last
    best = good.with_name("best.pt")
    damaged = {k: v for k, v in torch.load(good, weights_only=True).items() if k != "rng"}
    torch.save(damaged, tmp_path / "damaged.pt")
    assert main("pretrain", ["--resume", str(best)]) == 2
    assert main("pretrain", ["--resume", str(tmp_path / "damaged.pt"), *run_dirs_args(tmp_path, "d")]) == 2
    lines = error_lines(capsys.readouterr().err)
    assert "holds weights only (best.pt); resume from last.pt" in lines[0]
    assert lines[1] == f"error: {tmp_path / 'damaged.pt'}: damaged resume state (KeyError: 'rng')"


@pytest.mark.parametrize("wrapper", ["module.", "_orig_mod.", "module._orig_mod.", "generator."])
def test_wrapped_parameter_names_are_remapped_with_a_note(stage1_last, tmp_path, caplog, wrapper):
    good, _ = stage1_last
    ckpt = torch.load(good, weights_only=True)
    ckpt["generator"] = {wrapper + k: v for k, v in ckpt["generator"].items()}
    torch.save(ckpt, tmp_path / "wrapped.pt")
    generator, _, _ = load_generator(tmp_path / "wrapped.pt")
    assert "parameter names remapped from a wrapped or older layout" in caplog.text
    reference, _, _ = load_generator(good)
    assert all(torch.equal(a, b) for a, b in zip(generator.state_dict().values(), reference.state_dict().values()))


@pytest.mark.slow
def test_a_ddp_checkpoint_starts_stage_2_and_resumes(stage1_last, tmp_path, capsys):
    good, data = stage1_last
    ckpt = torch.load(good, weights_only=True)
    ckpt["generator"] = {"module." + k: v for k, v in ckpt["generator"].items()}
    torch.save(ckpt, tmp_path / "ddp.pt")
    args = ["--init-generator", str(tmp_path / "ddp.pt"), "--data", str(data), *FAST, *GAN, "--max-steps", "1"]
    assert main("gan", [*args, *run_dirs_args(tmp_path, "w")]) == 0
    assert main("pretrain", ["--resume", str(tmp_path / "ddp.pt"), "--max-steps", "2", *run_dirs_args(tmp_path, "r")]) == 0
    assert capsys.readouterr().out.count("parameter names remapped") == 2


# --- data that breaks while training runs ----------------------------------------------------------------------

def break_files_after_the_scan(monkeypatch, action):
    original = train_setup.prepare_files

    def scan_then_break(*args, **kwargs):
        split = original(*args, **kwargs)
        action(split)
        return split
    monkeypatch.setattr(train_setup, "prepare_files", scan_then_break)


@pytest.mark.slow
def test_images_deleted_or_corrupted_during_training_are_skipped(photo_folder, tmp_path, monkeypatch, capsys):
    def delete_and_corrupt(split):
        Path(split.train[0]).unlink()
        Path(split.train[1]).write_bytes(b"\xff\xd8 half a jpeg")
    break_files_after_the_scan(monkeypatch, delete_and_corrupt)
    args = ["--data", str(photo_folder), *FAST, "--val-fraction", "0.25", "--max-steps", "6"]
    assert main("pretrain", [*args, *run_dirs_args(tmp_path, "b")]) == 0
    err = capsys.readouterr().err
    assert "during training: file not found" in err and err.count("warning: skipped") >= 2
    assert ckpt_io.load(tmp_path / "checkpoints" / "b" / "last.pt")["step"] == 6


@pytest.mark.slow
def test_a_hung_data_disk_times_out_with_last_pt_written(photo_folder, tmp_path, monkeypatch, capsys):
    """A worker stops delivering after two batches; --loader-timeout ends the wait, and the run can resume."""
    original = PhotoDataset.__getitem__
    calls = {"n": 0}

    def hangs_in_the_worker(self, key):
        in_worker = torch.utils.data.get_worker_info() is not None
        calls["n"] += in_worker  # the worker's own copy of the count
        if in_worker and calls["n"] > 4:
            time.sleep(60)
        return original(self, key)
    monkeypatch.setattr(PhotoDataset, "__getitem__", hangs_in_the_worker)
    monkeypatch.setattr(torch.utils.data._utils, "MP_STATUS_CHECK_INTERVAL", 0.2)  # quick worker shutdown
    args = ["--data", str(photo_folder), *FAST, "--num-workers", "1", "--loader-timeout", "1", "--max-steps", "9"]
    assert main("pretrain", [*args, *run_dirs_args(tmp_path, "h")]) == 2
    last = tmp_path / "checkpoints" / "h" / "last.pt"
    [line] = error_lines(capsys.readouterr().err)
    assert f"--data {photo_folder}: no batch from the DataLoader workers in 1 s (--loader-timeout)" in line
    assert f"{last} holds step 2: continue with --resume {last}" in line
    assert ckpt_io.load(last)["step"] == 2


@pytest.mark.slow
def test_resume_keeps_the_files_the_run_started_with(photo_folder, tmp_path, capsys):
    args = ["--data", str(photo_folder), *FAST, "--val-fraction", "0.25", "--max-steps", "3"]
    assert main("pretrain", [*args, *run_dirs_args(tmp_path, "c")]) == 0
    train_files = (tmp_path / "runs" / "c" / "train_files.txt").read_text().splitlines()
    make_photo_folder(photo_folder / "added", 3, start_seed=50)
    os.remove(train_files[0])
    last = tmp_path / "checkpoints" / "c" / "last.pt"
    assert main("pretrain", ["--resume", str(last), "--max-steps", "6"]) == 0
    captured = capsys.readouterr()
    n_val = len((tmp_path / "runs" / "c" / "val_files.txt").read_text().splitlines())
    assert f"{len(train_files)} training and {n_val} validation images: the file lists this run started" in captured.out
    assert f"1 of the 8 images of this run are gone since it started (e.g. {train_files[0]})" in captured.err
    assert (tmp_path / "runs" / "c" / "train_files.txt").read_text().splitlines() == train_files
    (tmp_path / "runs" / "c" / "train_files.txt").write_text("damaged")  # then the folder is scanned again, with a word
    assert main("pretrain", ["--resume", str(last), "--max-steps", "7"]) == 0
    assert "the training or validation files are not those of the checkpoint" in capsys.readouterr().err


def test_resume_with_every_training_image_gone_says_the_disk_may_be_unmounted(photo_folder, tmp_path):
    from gan_colorizer.config import DataConfig
    from gan_colorizer.data.dataset import prepare_files, save_split, saved_split, split_digest
    from gan_colorizer.errors import UserError
    split = prepare_files(DataConfig(data=str(photo_folder)), seed=0)
    save_split(split, tmp_path)
    for path in split.train:
        os.unlink(path)
    with pytest.raises(UserError, match="training images of this run are gone .*: is the data disk mounted"):
        saved_split(tmp_path, split_digest(split), embedded=False)


def small_run(data, tmp_path, name="l", **flags):
    """The config of a small stage-1 run (what the CLI would resolve), for start() called in-process."""
    from gan_colorizer.train.cli import resolve_config
    return resolve_config("pretrain", {"data": str(data), "generator": "unet", "unet_filters": 8, "image_size": 256,
                                       "batch_size": 2, "num_workers": 0, "name": name,
                                       "runs_dir": str(tmp_path / "runs"),
                                       "checkpoints_dir": str(tmp_path / "checkpoints"), **flags})


def test_two_processes_cannot_train_the_same_run(photo_folder, tmp_path):
    from gan_colorizer.errors import UserError
    cfg = small_run(photo_folder, tmp_path)
    first = train_setup.start(cfg)
    try:
        with pytest.raises(UserError, match=f"this run is being trained by pid {os.getpid()}"):
            train_setup.start(cfg)
    finally:
        first.lock.release()
    train_setup.start(cfg).lock.release()  # free again once the first is done


# --- the pieces ------------------------------------------------------------------------------------------------

def test_stop_signals_set_a_flag_then_a_second_signal_stops_at_once():
    from gan_colorizer.train.guard import StopSignals, StopWaiting
    def like_pytorchs_worker_check(signum, frame):
        pass
    previous_sigchld = signal.signal(signal.SIGCHLD, like_pytorchs_worker_check)
    before = signal.getsignal(signal.SIGINT), like_pytorchs_worker_check
    with StopSignals() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.requested and stop.name == "SIGTERM"
        with pytest.raises(StopWaiting):
            with stop.waiting_for_data():
                pass
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGCHLD)) == before  # PyTorch's check is back
    signal.signal(signal.SIGCHLD, previous_sigchld)


def test_a_stop_signal_ends_a_wait_for_data_at_once():
    from gan_colorizer.train.guard import StopSignals, StopWaiting
    with StopSignals() as stop:
        with pytest.raises(StopWaiting):
            with stop.waiting_for_data():
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(5)  # never reached in full


def test_checkpoints_are_due_by_steps_or_minutes_and_failed_writes_are_borne_up_to_a_limit(caplog):
    from gan_colorizer.errors import UserError
    from gan_colorizer.train.saver import CheckpointSchedule
    now = [0.0]
    schedule = CheckpointSchedule(every_steps=5, every_minutes=10, max_failures=2, clock=lambda: now[0])
    assert [s for s in range(1, 12) if schedule.due(s)] == [5, 10]
    now[0] = 601
    assert schedule.due(1)

    def disk_full():
        raise UserError("cannot write checkpoint last.pt: No space left on device; the previous file is intact")
    assert schedule.write(disk_full, final=False) is False and not schedule.due(1)  # next try in 10 minutes
    assert "training goes on" in caplog.text
    with pytest.raises(UserError):
        schedule.write(disk_full, final=False)  # the second in a row
    assert schedule.write(lambda: None, final=False) and schedule.failures == 0
    with pytest.raises(UserError):
        schedule.write(disk_full, final=True)  # the run's last write: no later try


def test_making_a_loader_iterator_leaves_the_global_rng_alone(photo_folder):
    """Else a run resumed mid-epoch would draw its dropout masks from a shifted RNG stream."""
    from gan_colorizer.data.dataset import EpochSampler, make_loader
    dataset = PhotoDataset(sorted(photo_folder.iterdir()), 32, train=True)
    loader = make_loader(dataset, EpochSampler(len(dataset), 0, True), 2, 0, False, True)
    torch.manual_seed(3)
    expected = torch.rand(2)
    torch.manual_seed(3)
    next(iter(loader))
    assert torch.equal(torch.rand(2), expected)


@pytest.mark.system
def test_a_worker_killed_by_the_oom_killer_is_a_one_line_error(photo_folder, tmp_path, monkeypatch, capsys):
    """PyTorch reports the death while the loop waits for data or, through SIGCHLD, mid-step: one line either way."""
    original = PhotoDataset.__getitem__
    calls = {"n": 0}

    def killed_in_the_worker(self, key):
        in_worker = torch.utils.data.get_worker_info() is not None
        calls["n"] += in_worker
        if in_worker and calls["n"] > 8:
            os.kill(os.getpid(), signal.SIGKILL)
        return original(self, key)
    monkeypatch.setattr(PhotoDataset, "__getitem__", killed_in_the_worker)
    args = ["--data", str(photo_folder), *FAST, "--num-workers", "1", "--checkpoint-every", "1", "--max-steps", "9",
            "--loader-timeout", "30"]
    assert main("pretrain", [*args, *run_dirs_args(tmp_path, "o")]) == 2
    [line] = error_lines(capsys.readouterr().err)
    # PyTorch's own words (SIGCHLD, or the wait for data) or ours (the worker died while handing over a batch, and its
    # death fired PyTorch's check again while the workers were shut down: Guard._shut_down_workers)
    assert f"--data {photo_folder}: " in line and ("DataLoader worker (pid" in line or "DataLoader worker died" in line)
    last = tmp_path / "checkpoints" / "o" / "last.pt"
    if last.exists():  # the batches a killed worker had not yet handed over are lost with it
        assert f"{last} holds step {ckpt_io.load(last)['step']}: continue with --resume" in line


# --- issue 14: no lost run, nothing left by a failed start, no temporary file outliving a killed write ---------

NO_PROCESS = 4_194_305  # above Linux's largest pid_max: no process has this id


def test_a_run_started_while_another_of_that_name_scans_its_data_is_refused(photo_folder, tmp_path, monkeypatch):
    """B scans its data slowly; A, with the same --name, starts meanwhile. Unlocked, A could finish and B would then
    train fresh over A's last.pt: B holds the run lock from before its scan, so A is refused."""
    from gan_colorizer.errors import UserError
    scan, starts = train_setup.prepare_files, []

    def slow_scan(data_cfg, seed, *rule):
        if not starts:  # B's scan: A starts in the middle of it
            starts.append("A")
            with pytest.raises(UserError, match=f"this run is being trained by pid {os.getpid()}"):
                train_setup.start(small_run(photo_folder, tmp_path))
        return scan(data_cfg, seed, *rule)
    monkeypatch.setattr(train_setup, "prepare_files", slow_scan)
    train_setup.start(small_run(photo_folder, tmp_path)).lock.release()
    assert starts == ["A"]


@pytest.mark.parametrize("fault", ["no images", "fewer batches than --grad-accum"])
def test_a_run_that_fails_at_start_up_leaves_no_run_folder_and_no_lock(photo_folder, tmp_path, fault):
    from gan_colorizer.errors import UserError
    data = tmp_path / "empty" if fault == "no images" else photo_folder
    data.mkdir(exist_ok=True)
    (tmp_path / "runs" / "kept").mkdir(parents=True)  # a folder that was there before is not removed
    for name in ("l", "kept"):
        with pytest.raises(UserError):
            train_setup.start(small_run(data, tmp_path, name, **({"grad_accum": 50} if "grad" in fault else {})))
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["kept"]
    assert not list((tmp_path / "checkpoints").glob("*/.lock")) and not list((tmp_path / "checkpoints").glob("*"))


def test_the_temporary_file_of_a_killed_write_is_removed_by_the_next_run_into_that_folder(photo_folder, tmp_path):
    """colorize.py's outputs and a run folder; the temporary file of a writer still running stays."""
    from PIL import Image

    from gan_colorizer.colorize.files import save_atomic
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        out, run_dir = tmp_path / "out", tmp_path / "runs" / "l"
        for folder in (out, run_dir):
            folder.mkdir(parents=True)
            (folder / f".a.png.{NO_PROCESS}-1.part").write_bytes(b"half a file")
            (folder / f".b.png.{alive.pid}-1.part").write_bytes(b"being written")
        save_atomic(Image.new("RGB", (4, 4)), out / "c.png")
        train_setup.start(small_run(photo_folder, tmp_path)).lock.release()
        for folder in (out, run_dir):
            assert sorted(p.name for p in folder.glob(".*.part")) == [f".b.png.{alive.pid}-1.part"]
    finally:
        alive.kill()
        alive.wait()


@pytest.mark.parametrize("error", [EOFError, ConnectionResetError])
def test_a_worker_dying_while_it_hands_over_a_batch_is_one_line(error):
    """A worker killed mid-transfer surfaces as EOFError / ConnectionResetError from multiprocessing's fd sharing, not
    as the DataLoader's RuntimeError (the OOM test above met it when the kill fell there): one line all the same."""
    from gan_colorizer.data.dataset import LoaderFailure, guarded

    class Dying:
        def __iter__(self):
            yield "batch 1"
            raise error

    batches = guarded(Dying(), "photos/", timeout=30)
    assert next(batches) == "batch 1"
    with pytest.raises(LoaderFailure) as e:
        next(batches)
    assert str(e.value).startswith("photos/: data loading failed (a DataLoader worker died") and "\n" not in str(e.value)
