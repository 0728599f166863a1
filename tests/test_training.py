"""Both stages end to end: command line, outputs, TensorBoard tags, checkpoints, determinism and resume."""
import json
import re

import pytest
import torch
from conftest import TINY, make_photo_folder, run_dirs_args, run_script
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from gan_colorizer import checkpoint as ckpt_io

from gan_colorizer.models.registry import load_generator
from gan_colorizer.train.cli import main

pytestmark = pytest.mark.slow  # every test here trains or runs a script (make test-fast leaves them out)

STAGE1_TAGS = {"loss/g_l1", "val/l1", "val/psnr", "perf/img_per_sec", "lr/g"}
STAGE2_TAGS = STAGE1_TAGS | {"loss/g_gan", "loss/d_real", "loss/d_fake"}


def events(run_dir) -> EventAccumulator:
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    return acc


def scalar_values(run_dir, tag) -> list[tuple[int, float]]:
    return [(e.step, e.value) for e in events(run_dir).Scalars(tag)]


@pytest.fixture(scope="module")
def stage1(tmp_path_factory):
    """A 2-step stage-1 run from the command line, shared by the tests below."""
    tmp = tmp_path_factory.mktemp("stage1")
    data = tmp / "photos"
    make_photo_folder(data, 6)
    result = run_script("pretrain_generator.py", "--data", data, "--val-fraction", "0.34", "--max-steps", "2",
                        "--viz-every", "2", *TINY, *run_dirs_args(tmp, "s1"))
    return tmp, data, result


def test_stage1_runs_from_the_command_line_and_writes_everything(stage1):
    tmp, _, result = stage1
    assert result.returncode == 0, result.stderr
    run_dir, ckpt_dir = tmp / "runs" / "s1", tmp / "checkpoints" / "s1"
    assert (ckpt_dir / "last.pt").is_file() and (ckpt_dir / "best.pt").is_file()
    for name in ("config.json", "data.json", "train_files.txt", "val_files.txt"):
        assert (run_dir / name).is_file(), name
    assert json.loads((run_dir / "config.json").read_text())["stage"] == "pretrain"
    assert list((run_dir / "samples").glob("step_*.png"))
    acc = events(run_dir)
    assert STAGE1_TAGS <= set(acc.Tags()["scalars"])
    assert "val/samples" in acc.Tags()["images"]
    assert any("config" in t for t in acc.Tags()["tensors"])
    assert "resnet18-f37072fd.pth (cached)" in result.stdout  # the default ImageNet body, from conftest's cache
    n_val = len((run_dir / "val_files.txt").read_text().splitlines())
    assert f"{6 - n_val} training and {n_val} validation images" in result.stdout


def test_viz_every_puts_feature_maps_ab_histograms_and_difference_maps_in_tensorboard(stage1):
    tmp, _, _ = stage1
    acc = EventAccumulator(str(tmp / "runs" / "s1"), size_guidance={"images": 0, "histograms": 0})
    acc.Reload()
    images = {"features/encoder.stem", "features/bottleneck", "errors/val_samples", "ab/distribution"}
    assert images <= set(acc.Tags()["images"])
    assert set(acc.Tags()["histograms"]) == {"ab/pred_a", "ab/pred_b", "ab/real_a", "ab/real_b"}
    assert [e.step for e in acc.Images("features/bottleneck")] == [2]  # every 2 steps, not at step 1
    n_val = len((tmp / "runs" / "s1" / "val_files.txt").read_text().splitlines())
    assert acc.Histograms("ab/real_a")[0].histogram_value.num == n_val * 64 * 64  # the fixed validation samples


def test_stage1_checkpoint_reloads_and_rebuilds_the_generator_without_flags(stage1):
    tmp, _, _ = stage1
    generator, cfg, ckpt = load_generator(tmp / "checkpoints" / "s1" / "last.pt")
    assert cfg.data.image_size == 64 and ckpt["step"] == 2 and ckpt["format_version"] == 1
    assert {"generator", "optimizers", "scaler", "epoch", "step", "best_metric", "rng", "config"} <= set(ckpt)
    assert generator(torch.zeros(1, 1, 64, 64)).shape == (1, 2, 64, 64)
    best = ckpt_io.load(tmp / "checkpoints" / "s1" / "best.pt")
    assert "optimizers" not in best and best["metrics"]["val/l1"] > 0


def test_stage2_starts_from_stage1_and_logs_gan_losses(stage1):
    tmp, data, _ = stage1
    result = run_script("train_gan.py", "--data", data, "--val-fraction", "0.34", "--max-steps", "2",
                        "--init-generator", tmp / "checkpoints" / "s1" / "best.pt", "--gan-mode", "lsgan",
                        *TINY, *run_dirs_args(tmp, "s2"))
    assert result.returncode == 0, result.stderr
    assert "generator: trained weights (generator) from" in result.stdout  # stage 1 kept no EMA copy
    assert STAGE2_TAGS <= set(events(tmp / "runs" / "s2").Tags()["scalars"])
    ckpt = ckpt_io.load(tmp / "checkpoints" / "s2" / "last.pt")
    assert {"generator", "discriminator"} <= set(ckpt) and set(ckpt["optimizers"]) == {"g", "d"}
    assert ckpt["config"]["optim"]["gan_mode"] == "lsgan"


def test_stage1_fine_tunes_a_checkpoints_generator_with_init_generator(stage1, caplog):
    """pretrain_generator.py --init-generator: a stage-1 run (new photos, more steps) that starts from another run's
    generator, its architecture and weights; its own optimizer, step counter and folders."""
    tmp, data, _ = stage1
    best = tmp / "checkpoints" / "s1" / "best.pt"
    args = ["--data", str(data), "--val-fraction", "0.34", "--max-steps", "1", "--init-generator", str(best), *TINY,
            "--amp", "off", *run_dirs_args(tmp, "s1-tuned")]
    with caplog.at_level("INFO", logger="gan_colorizer"):
        assert main("pretrain", args) == 0
    assert f"generator: trained weights (generator) from {best}" in caplog.text
    start, _, _ = load_generator(best)
    tuned, cfg, ckpt = load_generator(tmp / "checkpoints" / "s1-tuned" / "last.pt")
    assert (ckpt["stage"], ckpt["step"], cfg.run.init_generator) == ("pretrain", 1, str(best))
    moved = max((a - b).abs().max().item() for a, b in zip(tuned.parameters(), start.parameters()))
    assert 0 < moved <= 2 * cfg.optim.lr  # one Adam step from the checkpoint's weights (its first moves ~lr each)


def test_a_run_shorter_than_log_every_still_logs_its_losses_at_its_last_step(tmp_path, caplog):
    data = make_photo_folder(tmp_path / "photos", 6)[0].parent
    args = ["--data", str(data), "--val-fraction", "0.34", "--max-steps", "3", *TINY, "--log-every", "20",
            "--no-pretrained", "--amp", "off"]
    with caplog.at_level("INFO", logger="gan_colorizer"):
        assert main("pretrain", [*args, *run_dirs_args(tmp_path, "short")]) == 0
    losses = scalar_values(tmp_path / "runs" / "short", "loss/g_l1")
    assert [step for step, _ in losses] == [3] and losses[0][1] > 0
    assert "perf/img_per_sec" in events(tmp_path / "runs" / "short").Tags()["scalars"]
    assert any(line.startswith("epoch 2/20 step 3: g_l1 ") for line in caplog.messages)  # 2 steps per epoch


def test_off_a_terminal_training_logs_a_dated_line_every_log_every_steps(tmp_path):
    """As under nohup or a batch scheduler: stderr is a pipe, so no bar; the lines say where the run is, its losses,
    its speed and when the epoch and the run end, and the epoch numbers agree with the epoch-end lines."""
    data = make_photo_folder(tmp_path / "photos", 6)[0].parent  # 4 training photos, batches of 2: 2 steps an epoch
    result = run_script("pretrain_generator.py", "--data", data, "--val-fraction", "0.34", "--epochs", "3",
                        "--max-steps", "5", *TINY, "--log-every", "2", "--image-every", "100", "--no-pretrained",
                        "--amp", "off", *run_dirs_args(tmp_path, "lines"))
    assert result.returncode == 0, result.stderr
    line = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d epoch (\d)/3 step (\d)/5 \((\d)/2 of the epoch\): "
                      r"g_l1 [\d.]+; [\d.]+ img/s; ETA epoch \d+:\d\d:\d\d, run \d+:\d\d:\d\d$")
    found = [line.match(text) for text in result.stdout.splitlines()]
    assert [m.groups() for m in found if m] == [("1", "2", "2"), ("2", "4", "2"), ("3", "5", "1")], result.stdout
    ends = [text.split(":")[0] for text in result.stdout.splitlines() if text.startswith("epoch ")]
    assert ends == ["epoch 1/3 step 2", "epoch 2/3 step 4", "epoch 3/3 step 5"]  # --max-steps ends epoch 3 early
    assert "epoch 1/3:" not in result.stderr  # no progress bar drawn into a log file


def test_a_config_json_fed_back_with_config_gives_the_same_config(stage1, tmp_path):
    from gan_colorizer.config import Config
    from gan_colorizer.train.cli import resolve_config
    saved = stage1[0] / "runs" / "s1" / "config.json"
    written = Config.from_dict(json.loads(saved.read_text()))
    assert resolve_config("pretrain", {"config": str(saved)}) == written
    assert written.data.image_size == 64 and written.optim.max_steps == 2  # what the run was given, not defaults
    result = run_script("pretrain_generator.py", "--config", tmp_path / "missing.json")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert [line for line in result.stderr.splitlines() if line.startswith("error:")] == [
        f"error: {tmp_path / 'missing.json'}: cannot read the config file (No such file or directory)"]


def test_folder_without_images_exits_2_with_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "broken.jpg").write_bytes(b"")
    result = run_script("pretrain_generator.py", "--data", tmp_path / "empty", *run_dirs_args(tmp_path, "x"))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "no usable image" in errors[0] and str(tmp_path / "empty") in errors[0]
    assert "skipped" in result.stderr and "empty file" in result.stderr


def test_bad_arguments_exit_2_without_traceback(tmp_path):
    result = run_script("train_gan.py", "--image-size", "100", *run_dirs_args(tmp_path, "x"))
    assert result.returncode == 2 and "--image-size 100" in result.stderr and "Traceback" not in result.stderr
    result = run_script("train_gan.py", "--init-generator", tmp_path / "nope.pt", *run_dirs_args(tmp_path, "x"))
    assert result.returncode == 2 and "nope.pt" in result.stderr and "Traceback" not in result.stderr


def _train(tmp_path, stage, name, data, *extra):
    args = ["--data", str(data), "--val-fraction", "0.2", "--epoch-size", "6", *TINY, *run_dirs_args(tmp_path, name),
            *map(str, extra)]
    assert main(stage, args) == 0


def checkpoint_weights(path) -> dict:
    """Both nets' tensors of a checkpoint, as one flat dict."""
    ckpt = torch.load(path, weights_only=True)
    return {f"{net}.{k}": v for net in ("generator", "discriminator") for k, v in ckpt.get(net, {}).items()}


def test_same_seed_gives_identical_losses(tmp_path):
    data = tmp_path / "photos"
    make_photo_folder(data, 6)
    _train(tmp_path, "pretrain", "a", data, "--max-steps", 3)
    _train(tmp_path, "pretrain", "b", data, "--max-steps", 3)
    losses_a = scalar_values(tmp_path / "runs" / "a", "loss/g_l1")
    assert len(losses_a) == 3
    assert losses_a == scalar_values(tmp_path / "runs" / "b", "loss/g_l1")


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path):
    """2N steps == N steps + resume + N steps, across an epoch boundary, for stage 2 (both nets, both optimizers)."""
    data = tmp_path / "photos"
    make_photo_folder(data, 6)
    _train(tmp_path, "gan", "straight", data, "--max-steps", 4)
    _train(tmp_path, "gan", "split", data, "--max-steps", 2)
    assert main("gan", ["--resume", str(tmp_path / "checkpoints" / "split" / "last.pt"), "--max-steps", "4"]) == 0
    straight, resumed = (checkpoint_weights(tmp_path / "checkpoints" / n / "last.pt") for n in ("straight", "split"))
    assert set(straight) == set(resumed) and any(k.startswith("discriminator.") for k in straight)
    different = [k for k in straight if not torch.equal(straight[k], resumed[k])]
    assert not different
    ckpt = ckpt_io.load(tmp_path / "checkpoints" / "split" / "last.pt")
    assert ckpt["step"] == 4 and ckpt["epoch"] == 1  # 3 steps per epoch: one epoch done, one step into the next
    losses = scalar_values(tmp_path / "runs" / "split", "loss/g_l1")
    assert [s for s, _ in losses] == [1, 2, 3, 4]
    assert losses == scalar_values(tmp_path / "runs" / "straight", "loss/g_l1")


def test_resume_with_another_architecture_names_the_mismatch(tmp_path, capsys):
    data = tmp_path / "photos"
    make_photo_folder(data, 4)
    _train(tmp_path, "pretrain", "r", data, "--max-steps", 1)
    code = main("pretrain", ["--resume", str(tmp_path / "checkpoints" / "r" / "last.pt"), "--backbone", "resnet34"])
    assert code == 2 and "backbone: checkpoint 'resnet18', this run 'resnet34'" in capsys.readouterr().err


def test_existing_run_is_not_overwritten(tmp_path, capsys):
    data = tmp_path / "photos"
    make_photo_folder(data, 4)
    _train(tmp_path, "pretrain", "once", data, "--max-steps", 1)
    args = ["--data", str(data), *TINY, *run_dirs_args(tmp_path, "once")]
    assert main("pretrain", args) == 2
    assert "--resume" in capsys.readouterr().err


def test_grad_accumulation_and_the_pix2pix_unet_train(tmp_path):
    data = tmp_path / "photos"
    make_photo_folder(data, 3, size=(300, 260))
    args = ["--generator", "unet", "--image-size", "256", "--batch-size", "1", "--grad-accum", "2", "--max-steps", "1",
            "--epoch-size", "2", "--num-workers", "0", "--val-fraction", "0.34"]
    _train_args = ["--data", str(data), *args, *run_dirs_args(tmp_path, "unet")]
    assert main("gan", _train_args) == 0
    ckpt = ckpt_io.load(tmp_path / "checkpoints" / "unet" / "last.pt")
    assert ckpt["step"] == 1 and ckpt["config"]["model"]["generator"] == "unet"
